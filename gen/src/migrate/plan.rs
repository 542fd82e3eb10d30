//! `fedigen migrate plan`: what moving one operator from provider A to provider B means, before anything moves.
//!
//! Why a plan of its own: a migration stops an operator's services for a while and changes its DNS, so the
//! people doing it need to know in advance whether B can take the operator at all (every conflict named, where
//! it is), what moves and how much of it, how long the services are down and why, which DNS records change and
//! when to lower their TTL, and how to go back. The plan is computed from the two specifications and the
//! manifests' `[state]` only (no connection, unless `--measure` asks for sizes), and it writes the engine's jobs
//! ([`super::job::Job`], one per application machine, since each job places identity files on the machine it
//! runs on), so what is planned is exactly what `fedigen migrate run` does.
//!
//! The operator at B: the same name, domain, contact, admin, applications, settings, resources and secret
//! references as at A; B's runtime, storage, DNS and limits; its machines from `--machines` (B's addresses) or
//! none. That specification is validated like any other ([`crate::model::from_document`]); each problem is a
//! conflict, located in A's file (the operator's own fields), the machines file, or B's file.
//!
//! Conventions of the jobs (documented in `fedigen migrate plan --help`): each runs as root on the operator's
//! application machine at B; the source is reached over ssh (`root@<A's deploy target>`); the files the job
//! names and that B's provider places before the run are under [`MIGRATE_SECRETS`] (database passwords, S3 key
//! files); buckets are `<operator>-<bucket>` on each provider's Garage (the per-operator names of the storage
//! plan).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::job::{
    BucketMove, Commands, DatabaseMove, DirectoryMove, Job, Postgres, Replication, S3, SecretMove,
    UrlRewrite,
};
use crate::deploy::{self, MachineRole};
use crate::manifest::Manifest;
use crate::model::{
    self, Catalog, FieldPath, Machine, Operator, Spec, SpecDocument, SpecReport, path::Step,
};
use crate::position::Position;
use crate::state::{self, Engine, UrlForm};

#[path = "plan_render.rs"]
mod render;

pub use render::render_table;

#[path = "plan_measure.rs"]
mod measure;

#[path = "plan_certs.rs"]
mod certs;

pub use measure::measure;

/// Where the files a job names and B's provider places before the run live, on B's application machine:
/// database passwords (`<database>-source-password`), S3 key files (`<bucket>-source.env`, `<bucket>-target.env`).
pub const MIGRATE_SECRETS: &str = "/run/secrets/fedigen-migrate";

/// The TTL the operator's records are lowered to before the switch, in seconds.
pub const LOWERED_TTL: u32 = 60;

/// The commands starting an application at B after the move: its `[state] setup_units` run again first (they
/// derive state from what moved: Pixelfed's `pixelfed-data-setup` rewrites `.env`, migrates and caches the
/// configuration, and ran at B's boot before the move; `restart` runs a oneshot again), then its health units
/// started. Used by the planner's jobs and the migration VM tests' alike.
pub(crate) fn target_start(manifest: &Manifest) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    if !manifest.state.stores.is_empty() {
        // target_stop stopped them before the copy; they load the moved data before the application starts.
        let mut start = vec!["systemctl".to_owned(), "start".into()];
        start.extend(manifest.state.stores.iter().cloned());
        commands.push(start);
    }
    if !manifest.state.setup_units.is_empty() {
        let mut restart = vec!["systemctl".to_owned(), "restart".into()];
        restart.extend(manifest.state.setup_units.iter().cloned());
        commands.push(restart);
    }
    if !manifest.health.units.is_empty() {
        // `restart`, not `start`: a unit found running (pulled in by a setup unit, or left by an earlier run)
        // must come up again with the moved data and secrets.
        let mut start = vec!["systemctl".to_owned(), "restart".into()];
        start.extend(manifest.health.units.iter().cloned());
        commands.push(start);
    }
    if !manifest.state.timers.is_empty() {
        // The freeze's counterpart: target_stop stopped them at B.
        let mut start = vec!["systemctl".to_owned(), "start".into()];
        start.extend(manifest.state.timers.iter().cloned());
        commands.push(start);
    }
    commands
}

/// The commands stopping the application at B before anything moves (the job's `target_stop`): B is deployed
/// first, so its applications run on empty state. B's nginx keeps serving (B's Garage endpoints, where B's
/// machine serves them, and the placeholder pages). Used by the planner's jobs and the migration VM tests' alike.
pub(crate) fn target_stop(manifest: &Manifest) -> Vec<Vec<String>> {
    let units = freeze_units(manifest, true);
    if units.is_empty() {
        return Vec::new();
    }
    let mut stop = vec!["systemctl".to_owned(), "stop".into()];
    stop.extend(units);
    let mut commands = vec![stop];
    if !manifest.state.stores.is_empty() {
        // After the application: B's Redis would otherwise save its own (empty) data over the moved dump.rdb
        // when it stops later, and the application would reconnect to it.
        let mut stop = vec!["systemctl".to_owned(), "stop".into()];
        stop.extend(manifest.state.stores.iter().cloned());
        commands.push(stop);
    }
    commands
}

/// The freeze's commands at A (`host`): stop the [`freeze_units`], then, once nothing writes to them, the
/// application's stores (`[state] stores`: its Redis server, which writes `dump.rdb` as it stops). Two
/// commands, not one: a single `systemctl stop` orders the jobs only by the units' `After=`, and the upstream
/// modules do not order every application unit after its Redis server. Used by the planner's jobs and the
/// migration VM tests' alike.
pub(crate) fn freeze_commands(
    host: &str,
    manifest: &Manifest,
    machine_serves_garage: bool,
) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let units = freeze_units(manifest, machine_serves_garage);
    if !units.is_empty() {
        commands.push(remote_systemctl(host, "stop", &units));
    }
    if !manifest.state.stores.is_empty() {
        commands.push(remote_systemctl(host, "stop", &manifest.state.stores));
    }
    commands
}

/// A rollback's commands at A (`host`, the job's `source_start`): the stores first (the application connects
/// to them as it starts), then the [`source_start_units`]. Used by the planner's jobs and the migration VM
/// tests' alike.
pub(crate) fn source_start_commands(
    host: &str,
    manifest: &Manifest,
    machine_serves_garage: bool,
) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    if !manifest.state.stores.is_empty() {
        commands.push(remote_systemctl(host, "start", &manifest.state.stores));
    }
    let units = source_start_units(manifest, machine_serves_garage);
    if !units.is_empty() {
        commands.push(remote_systemctl(host, "start", &units));
    }
    commands
}

/// The unit serving a machine's web endpoints: the application's virtual hosts, and on a machine that also runs
/// one of the provider's Garage nodes (a node's `machine`), that node's S3 and media endpoints
/// (`modules/garage.nix`: nginx virtual hosts).
pub(crate) const WEB_UNIT: &str = "nginx.service";

/// The units the freeze stops at A (and `target_stop` at B): the application's health units, but not the web
/// server where it also serves A's Garage endpoints (`machine_serves_garage`); then the manifest's
/// `[state] freeze_also` (units only a health unit starts, such as Mastodon's streaming processes), and its
/// `[state] timers` each with its service (a run of `tootctl media remove` or Pixelfed's scheduler inside the
/// window would change A's data after the bulk copy read it, or B's before the move replaced it).
///
/// Why keep nginx there and not stop it, nor make the application's virtual hosts answer 503: the job reads A's
/// buckets through those endpoints after the freeze (the delta copy), and other operators' applications read and
/// serve their media through them the whole time; stopping nginx cuts both off. With the application's own
/// units stopped, its virtual hosts answer 502, which federating servers and clients treat as temporary and
/// retry, as they would a 503. A 503 page would need A's nginx configuration changed during the move (a deploy
/// at A, and one to undo on rollback), a step that can fail inside the window for a status code's difference.
pub(crate) fn freeze_units(manifest: &Manifest, machine_serves_garage: bool) -> Vec<String> {
    let state = &manifest.state;
    let mut units = health_units(manifest, machine_serves_garage);
    units.extend(state.freeze_also.iter().cloned());
    for timer in &state.timers {
        units.push(timer.clone());
        if let Some(name) = timer.strip_suffix(".timer") {
            units.push(format!("{name}.service"));
        }
    }
    units
}

/// The units a rollback starts at A again (the job's `source_start`): the health units the freeze stopped (a
/// target among them starts what it wants, the `freeze_also` units) and the timers; never a timer's service,
/// which its timer runs.
pub(crate) fn source_start_units(manifest: &Manifest, machine_serves_garage: bool) -> Vec<String> {
    let mut units = health_units(manifest, machine_serves_garage);
    units.extend(manifest.state.timers.iter().cloned());
    units
}

/// `ssh HOST systemctl VERB UNIT…`, each unit quoted for the remote shell ssh hands the words to, so a glob
/// (`mastodon-streaming-*.service`) reaches systemctl, which matches it against the loaded units, instead of
/// being expanded against the files of root's home there. Used by the planner's jobs and the migration VM tests'.
pub(crate) fn remote_systemctl(host: &str, verb: &str, units: &[String]) -> Vec<String> {
    let mut argv = vec![
        "ssh".to_owned(),
        host.to_owned(),
        "systemctl".into(),
        verb.into(),
    ];
    argv.extend(units.iter().map(|u| crate::template::shell_quote(u)));
    argv
}

/// The health units of the application at a machine: all, but not the web server where it also serves the
/// provider's Garage endpoints (see [`freeze_units`]).
pub(crate) fn health_units(manifest: &Manifest, machine_serves_garage: bool) -> Vec<String> {
    manifest
        .health
        .units
        .iter()
        .filter(|u| !(machine_serves_garage && u.as_str() == WEB_UNIT))
        .cloned()
        .collect()
}

/// Whether the machine `machine` of `spec` runs one of the provider's Garage nodes (whose endpoints its nginx
/// serves).
pub(crate) fn serves_garage(spec: &Spec, machine: &str) -> bool {
    spec.provider.object_storage.as_ref().is_some_and(|s| {
        s.nodes
            .values()
            .any(|n| n.machine.as_deref() == Some(machine))
    })
}

/// How long the jobs' health checks may take at B, in seconds (a Mastodon's first start runs its asset and
/// database checks: minutes, not seconds).
pub const HEALTH_TIMEOUT_SECONDS: u64 = 600;

/// The version of the JSON form of [`Plan`]; it changes when a field changes meaning or goes away.
pub const PLAN_SCHEMA: u32 = 1;

/// The throughput assumed when none is given, in bytes per second (100 MB/s: a gigabit link, well used).
pub const ASSUMED_THROUGHPUT: u64 = 100_000_000;

/// What the plan is asked for.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The operator to move (its `name` at A).
    pub operator: &'a str,
    /// Provider A's specification, as read (its positions locate conflicts in the operator's fields).
    pub from: &'a SpecDocument,
    /// Provider B's specification, as read.
    pub to: &'a SpecDocument,
    /// The applications A runs.
    pub from_catalog: &'a Catalog,
    /// The applications B runs (often the same templates).
    pub to_catalog: &'a Catalog,
    /// The operator's machines at B, by application, and the file they come from (for messages).
    pub machines: Option<(&'a str, BTreeMap<String, Machine>)>,
    /// The throughput of the copies, in bytes per second; `None` assumes [`ASSUMED_THROUGHPUT`].
    pub throughput: Option<u64>,
    /// How much of the buckets and folders changes between the bulk copy and the freeze, in per mille.
    pub change_permille: u32,
    /// A program that publishes B's zone for the operator's domain (`PROGRAM <zone> <zone file>`): the job's
    /// DNS switch. Without it the switch is a step for people.
    pub dns_command: Option<&'a str>,
    /// A's PostgreSQL is set up for logical replication ([`REPLICATOR_ROLE`], `wal_level = logical`): the jobs
    /// name the replication roles, so each database is copied while A serves. The deployments do not set this
    /// up themselves yet, so the provider says so (`--replicate`); the engine still checks it read-only before
    /// anything and dumps and restores a database A cannot replicate.
    pub replicate: bool,
}

/// The role at A that B's server replicates from (`REPLICATION`, `SELECT` on the application's tables), with its
/// password at B in `MIGRATE_SECRETS/<database>-replicator-password`: set up by A's provider for `--replicate`.
pub const REPLICATOR_ROLE: &str = "fedigen_replicator";

/// The superuser at B that creates the subscription (PostgreSQL 15 allows only a superuser to), reached over the
/// socket as the OS user of the same name: nixpkgs' `local all postgres peer map=postgres` with the ident map
/// `postgres postgres postgres`.
pub const TARGET_SUPERUSER: &str = "postgres";

/// Why no plan could be made at all (the input is at fault: exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Provider A's specification itself is invalid.
    #[error("{0}")]
    FromInvalid(Box<SpecReport>),
    /// Provider B's specification itself is invalid (before the operator is added).
    #[error("{0}")]
    ToInvalid(Box<SpecReport>),
    /// A has no such operator.
    #[error("{file}: no operator `{operator}`; its operators are {known}")]
    NoOperator {
        /// A's file.
        file: String,
        /// The operator asked for.
        operator: String,
        /// A's operators, listed for people.
        known: String,
    },
}

/// The whole plan: `--json` prints it as it is (schema [`PLAN_SCHEMA`], documented field by field here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// [`PLAN_SCHEMA`].
    pub schema: u32,
    /// The operator moved.
    pub operator: String,
    /// Its domain, the same at both providers.
    pub domain: String,
    /// Provider A.
    pub from: Side,
    /// Provider B.
    pub to: Side,
    /// Why B cannot take the operator as it is; empty when it can. Each is located.
    pub conflicts: Vec<Conflict>,
    /// What people must do by hand (state the engine does not move, secrets B must hold).
    pub manual: Vec<String>,
    /// Every database, bucket, directory and identity secret of the operator's enabled applications.
    pub moves: Vec<Move>,
    /// The engine's steps, per application machine, in the order they run.
    pub steps: Vec<MachineSteps>,
    /// The expected downtime, and how it is estimated.
    pub downtime: Downtime,
    /// The DNS changes.
    pub dns: DnsPlan,
    /// How to go back, and what is lost when going back after the switch.
    pub rollback: Vec<String>,
}

/// One provider, as the plan names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Side {
    /// The specification file.
    pub file: String,
    /// The provider's name.
    pub provider: String,
    /// Its runtime backend (`qemu`, `proxmox`, `bare-metal`).
    pub runtime: String,
    /// Its S3 endpoint (`https://s3.<domain>`), when it has object storage.
    pub s3_endpoint: Option<String>,
}

/// One reason B cannot take the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conflict {
    /// The file and position (`b.toml:12:3`), or the file alone when the place has no position.
    pub at: String,
    /// The field, as a path in that file (`operators[3].domain`).
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// The kinds of state that move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A database.
    Database,
    /// An object-storage bucket.
    Bucket,
    /// A directory on the application's machine.
    Directory,
    /// An identity secret.
    Identity,
}

impl Kind {
    /// The kind as the table writes it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Database => "database",
            Kind::Bucket => "bucket",
            Kind::Directory => "directory",
            Kind::Identity => "identity",
        }
    }
}

/// One piece of state that moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Move {
    /// The application it belongs to.
    pub application: String,
    /// What it is.
    pub kind: Kind,
    /// Its name in the manifest's `[state]` (the database's name, the bucket's, the directory's or secret's key).
    pub name: String,
    /// Where it is at A.
    pub source: String,
    /// Where it goes at B.
    pub target: String,
    /// Its size in bytes, when measured (`--measure`); `null` when unknown.
    pub bytes: Option<u64>,
    /// Whether `fedigen migrate run` moves it (false: a step for people, see `manual`).
    pub automatic: bool,
    /// A database the job replicates while A serves (`--replicate`): its copy is in the bulk phase and only
    /// the catch-up in the freeze window. Absent (false) for every other move.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replicated: bool,
}

/// The engine's steps on one machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineSteps {
    /// The application machine at B the job runs on (`<operator>-<application>`).
    pub machine: String,
    /// The steps, as the journal names them, in order (from `migrate::run::steps`).
    pub steps: Vec<String>,
}

/// The expected downtime. All durations are whole seconds; a duration that depends on an unknown size is
/// `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Downtime {
    /// The throughput used, in bytes per second.
    pub throughput_bytes_per_second: u64,
    /// Whether it was given (`flag`) or assumed (`assumed`, [`ASSUMED_THROUGHPUT`]).
    pub throughput_source: String,
    /// The share of buckets and folders assumed to change between the bulk copy and the freeze, per mille.
    pub change_permille: u32,
    /// The bulk copy, while A still serves (no downtime).
    pub bulk_seconds: Option<u64>,
    /// The freeze window: the services are down from the freeze until B is started and healthy.
    pub freeze_seconds: Option<u64>,
    /// What the freeze window is made of.
    pub parts: Vec<DowntimePart>,
    /// How it is estimated, for people.
    pub method: String,
}

/// One part of the freeze window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DowntimePart {
    /// What it is.
    pub what: String,
    /// The bytes it moves or reads, when known.
    pub bytes: Option<u64>,
    /// Its expected duration, when known.
    pub seconds: Option<u64>,
}

/// The DNS side of the move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsPlan {
    /// The zone (the operator's domain).
    pub zone: String,
    /// The TTL of A's zone now, in seconds.
    pub ttl: u32,
    /// The TTL to lower the changing records to ([`LOWERED_TTL`]).
    pub lowered_ttl: u32,
    /// Lower it at least this long before the switch (the old TTL: caches may hold the old records that long).
    pub lower_before_seconds: u32,
    /// The zone's name servers at A and at B (a change is a delegation change at the registry).
    pub name_servers: NameServers,
    /// Every address record that changes.
    pub changes: Vec<DnsChange>,
    /// When the zone cannot be compared (a provider writes no zone), why.
    pub note: Option<String>,
}

/// The zone's name servers at each provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameServers {
    /// At A.
    pub from: Vec<String>,
    /// At B.
    pub to: Vec<String>,
}

/// One record set that changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsChange {
    /// The owner name, fully qualified without the final dot.
    pub name: String,
    /// `A` or `AAAA`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The addresses at A (empty: the record is new).
    pub from: Vec<String>,
    /// The addresses at B (empty: the record goes away, e.g. a machine without a static address at B).
    pub to: Vec<String>,
}

/// A plan and the engine's jobs it implies, one per application machine at B (empty when there are
/// conflicts: B cannot run the operator yet).
#[derive(Debug, Clone)]
pub struct Planned {
    /// The plan.
    pub plan: Plan,
    /// `(machine, job)`, in the order of the plan's steps.
    pub jobs: Vec<(String, Job)>,
}

impl Plan {
    /// The plan as deterministic, pretty JSON (`--json`).
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a plan serialises");
        text.push('\n');
        text
    }

    /// Recomputes [`Plan::downtime`] from the moves' sizes (after `--measure` filled them in).
    pub fn estimate(&mut self) {
        self.downtime = downtime(
            &self.moves,
            self.downtime.throughput_bytes_per_second,
            &self.downtime.throughput_source,
            self.downtime.change_permille,
        );
    }
}

/// Plans the move of `request.operator` from A to B.
pub fn plan(request: &Request<'_>) -> Result<Planned, PlanError> {
    let from = model::from_document(request.from, request.from_catalog)
        .map_err(|r| PlanError::FromInvalid(Box::new(r)))?;
    let to_alone = model::from_document(request.to, request.to_catalog)
        .map_err(|r| PlanError::ToInvalid(Box::new(r)))?;
    let Some(index_a) = from
        .operators
        .iter()
        .position(|o| o.name == request.operator)
    else {
        return Err(PlanError::NoOperator {
            file: request.from.name.clone(),
            operator: request.operator.to_owned(),
            known: list(from.operators.iter().map(|o| o.name.as_str())),
        });
    };
    let operator = from.operators[index_a].clone();
    let mut moved = operator.clone();
    let mut manual = Vec::new();
    moved.machines = match &request.machines {
        Some((_, machines)) => machines.clone(),
        None => {
            // Without B's addresses the machines take DHCP there: valid, but their names get no DNS record.
            manual.push(
                "the machines at B get their addresses from DHCP (no --machines was given): their names get no DNS record at B; give --machines FILE with B's static addresses".to_owned(),
            );
            operator
                .applications
                .iter()
                .filter(|(_, a)| a.enable)
                .map(|(app, _)| {
                    (
                        app.clone(),
                        Machine {
                            network: Some(model::Network {
                                dhcp: true,
                                ..model::Network::default()
                            }),
                            ..Machine::default()
                        },
                    )
                })
                .collect()
        }
    };

    let mut conflicts = named_conflicts(request, &operator, index_a, &to_alone);
    let index_b = to_alone.operators.len();
    let mut value = request.to.value.clone();
    let operators = value
        .as_object_mut()
        .expect("a valid specification is an object")
        .entry("operators")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    operators
        .as_array_mut()
        .expect("operators is a list")
        .push(serde_json::to_value(&moved).expect("an operator serialises"));
    let combined = SpecDocument {
        value,
        diagnostics: Vec::new(),
        ..request.to.clone()
    };
    // The validation names an operator or domain taken too; the plan's own conflict says it better.
    let moved_path = FieldPath::root().key("operators").index(index_b);
    let named: BTreeSet<FieldPath> = ["name", "domain"]
        .into_iter()
        .filter(|field| {
            to_alone.operators.iter().any(|o| match *field {
                "name" => o.name == operator.name,
                _ => o.domain == operator.domain,
            })
        })
        .map(|field| moved_path.key(field))
        .collect();
    let target = match model::from_document(&combined, request.to_catalog) {
        Ok(spec) => Some(spec),
        Err(report) => {
            for located in report.problems {
                let conflict = locate(request, index_a, index_b, &located.diagnostic);
                // The same place named by the plan's own conflict (an application B lacks): said once.
                let again = conflicts
                    .iter()
                    .any(|c| c.at == conflict.at && c.field == conflict.field);
                if !named.contains(&located.diagnostic.path) && !again {
                    conflicts.push(conflict);
                }
            }
            None
        }
    };

    let mut moves = Vec::new();
    let mut jobs = Vec::new();
    let from_machines = deploy::machines(&from, request.from_catalog);
    for (app, application) in operator.applications.iter().filter(|(_, a)| a.enable) {
        let Some(manifest) = request.from_catalog.manifests.get(app) else {
            continue;
        };
        let source_host = from_machines
            .iter()
            .find(|m| {
                m.role
                    == MachineRole::Application {
                        operator: index_a,
                        application: app.clone(),
                    }
            })
            .map(|m| {
                let t = m.deploy_target();
                format!("{}@{}", t.user.as_deref().unwrap_or("root"), t.host)
            })
            .unwrap_or_else(|| format!("root@{}.{}", operator.machine_name(app), operator.domain));
        let job = application_job(
            &from,
            target.as_ref(),
            request,
            &operator,
            app,
            manifest,
            &source_host,
            &mut moves,
            &mut manual,
        );
        let _ = application;
        jobs.push((operator.machine_name(app), job));
    }
    // The switch publishes B's whole zone: with several machines, the first job to reach `dns` would move the
    // others' names too, while one of them may still fail and roll back to A (operator review, B5). Then no job
    // switches, and the plan says to switch once every job is healthy.
    if jobs.len() > 1
        && let Some(program) = request.dns_command
    {
        for (_, job) in &mut jobs {
            job.commands.dns_switch.clear();
        }
        manual.push(format!(
            "switch DNS for {} once, after every job above has passed `health` (its journal lists it): `{program} {} deployments/dns/{}.zone`; the zone names all {} machines, so no job runs it (a job's `dns` step does nothing)",
            operator.domain,
            operator.domain,
            operator.domain,
            jobs.len()
        ));
    }
    if let Some(program) = request.dns_command
        && jobs.iter().any(|(_, j)| !j.commands.dns_switch.is_empty())
    {
        manual.push(format!(
            "the `dns` step runs `{program} {} deployments/dns/{}.zone` in the folder `fedigen migrate run` is started in on B's machine (a relative path): copy B's generated deployments/dns/ there first, or edit the job's `dns_switch`",
            operator.domain, operator.domain
        ));
    }
    manual.extend(preparations(&operator, &jobs, &from, request));
    let steps = jobs
        .iter()
        .map(|(machine, job)| MachineSteps {
            machine: machine.clone(),
            steps: super::run::steps(job),
        })
        .collect();
    if request.dns_command.is_none() {
        manual.push(format!(
            "switch DNS for {}: publish B's records below (no --dns-command was given, so each job's `dns` step does nothing)",
            operator.domain
        ));
    }
    let dns = dns_plan(
        &from,
        request.from_catalog,
        target.as_ref(),
        request.to_catalog,
        &operator.domain,
        &to_alone,
    );
    // A switch publishes B's zone: a name whose every address is gone at B (B's machines on DHCP, no
    // --machines) would vanish from the DNS at the switch (operator review S7 b).
    if let Some(program) = request.dns_command {
        let mut unaddressed: Vec<&str> = dns
            .changes
            .iter()
            .filter(|c| !c.from.is_empty())
            .map(|c| c.name.as_str())
            .filter(|name| {
                dns.changes
                    .iter()
                    .filter(|c| c.name == *name)
                    .all(|c| c.to.is_empty())
            })
            .collect();
        unaddressed.dedup();
        if !unaddressed.is_empty() {
            conflicts.push(Conflict {
                at: request
                    .machines
                    .as_ref()
                    .map_or_else(|| "the command line".to_owned(), |(file, _)| (*file).to_owned()),
                field: "--dns-command".to_owned(),
                message: format!(
                    "`{program}` would publish B's zone, where {} {} no address (B's machines have no static address: give --machines FILE with them), so the switch would take {} off the DNS",
                    unaddressed.join(", "),
                    if unaddressed.len() == 1 { "has" } else { "have" },
                    if unaddressed.len() == 1 { "it" } else { "them" },
                ),
            });
        }
    }
    let (throughput, source) = match request.throughput {
        Some(t) => (t, "flag"),
        None => (ASSUMED_THROUGHPUT, "assumed"),
    };
    let plan = Plan {
        schema: PLAN_SCHEMA,
        operator: operator.name.clone(),
        domain: operator.domain.clone(),
        from: side(request.from, &from, request.from_catalog),
        to: side(request.to, &to_alone, request.to_catalog),
        downtime: downtime(&moves, throughput, source, request.change_permille),
        conflicts,
        manual,
        moves,
        steps,
        dns,
        rollback: rollback(&operator),
    };
    let jobs = if plan.conflicts.is_empty() {
        jobs
    } else {
        Vec::new()
    };
    Ok(Planned { plan, jobs })
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.map(|i| format!("`{i}`")).collect();
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

fn side(document: &SpecDocument, spec: &Spec, catalog: &Catalog) -> Side {
    Side {
        file: document.name.clone(),
        provider: spec.provider.name.clone(),
        runtime: match &spec.provider.runtime {
            model::Runtime::Qemu(_) => "qemu",
            model::Runtime::Proxmox(_) => "proxmox",
            model::Runtime::BareMetal(_) => "bare-metal",
        }
        .to_owned(),
        s3_endpoint: deploy::s3_host(spec, catalog).map(|h| format!("https://{h}")),
    }
}

/// A position in a document's text, for a path there (`None` when the path is not in the text).
fn position_of(document: &SpecDocument, path: &FieldPath, key: bool) -> Option<Position> {
    let target = if key {
        model::diagnostic::Target::Key
    } else {
        model::diagnostic::Target::Value
    };
    let span = document.span(path, target);
    (!document.text.is_empty() && span.start <= document.text.len())
        .then(|| Position::of_offset(&document.text, span.start))
}

fn at(document: &SpecDocument, path: &FieldPath, key: bool) -> String {
    match position_of(document, path, key) {
        Some(p) => format!("{}:{}:{}", document.name, p.line, p.column),
        None => document.name.clone(),
    }
}

/// The conflicts the plan names itself, clearer than the validation's: an operator or domain B already has,
/// a bucket name B's Garage already holds, an application B's catalog lacks.
fn named_conflicts(
    request: &Request<'_>,
    operator: &Operator,
    index_a: usize,
    to: &Spec,
) -> Vec<Conflict> {
    let mut out = Vec::new();
    let b = request.to;
    for (j, other) in to.operators.iter().enumerate() {
        let here = FieldPath::root().key("operators").index(j);
        if other.name == operator.name {
            out.push(Conflict {
                at: at(b, &here.key("name"), false),
                field: format!("operators[{j}].name"),
                message: format!(
                    "provider {} already has an operator `{}` (operators[{j}]): B runs machines and buckets by this name; rename one of them at B first",
                    to.provider.name, other.name
                ),
            });
        }
        if other.domain == operator.domain {
            out.push(Conflict {
                at: at(b, &here.key("domain"), false),
                field: format!("operators[{j}].domain"),
                message: format!(
                    "provider {} already serves the domain `{}` (operator `{}`): one domain is one Fediverse server; remove it at B, or move to another provider",
                    to.provider.name, other.domain, other.name
                ),
            });
        }
    }
    let taken: BTreeMap<String, (usize, String)> = to
        .operators
        .iter()
        .enumerate()
        .flat_map(|(j, o)| {
            o.applications
                .iter()
                .filter(|(_, a)| a.enable)
                .filter_map(|(app, _)| request.to_catalog.manifests.get(app).map(|m| (app, m)))
                .flat_map(move |(app, m)| {
                    let kinds = &m.needs.s3_buckets;
                    m.state.buckets.iter().map(move |kind| {
                        (
                            deploy::storage::bucket_name(o, app, kinds, kind),
                            (j, app.clone()),
                        )
                    })
                })
        })
        .collect();
    // Every application, enabled or not: a disabled one keeps its settings in the specification, which B must
    // be able to read.
    for (app, application) in &operator.applications {
        let a_path = FieldPath::root()
            .key("operators")
            .index(index_a)
            .key("applications")
            .key(app);
        let Some(manifest) = request.to_catalog.manifests.get(app) else {
            out.push(Conflict {
                at: at(request.from, &a_path, true),
                field: format!("operators[{index_a}].applications.{app}"),
                message: format!(
                    "provider B's templates have no application `{app}`; B offers {}",
                    list(request.to_catalog.manifests.keys().map(String::as_str))
                ),
            });
            continue;
        };
        if !application.enable {
            continue;
        }
        for bucket in &manifest.state.buckets {
            let name =
                deploy::storage::bucket_name(operator, app, &manifest.needs.s3_buckets, bucket);
            if let Some((j, other_app)) = taken.get(&name) {
                out.push(Conflict {
                    at: at(
                        b,
                        &FieldPath::root()
                            .key("operators")
                            .index(*j)
                            .key("applications")
                            .key(other_app),
                        true,
                    ),
                    field: format!("operators[{j}].applications.{other_app}"),
                    message: format!(
                        "the bucket `{name}` of {app} is taken at B by {other_app} of operator `{}`: Garage bucket names are cluster-wide",
                        to.operators[*j].name
                    ),
                });
            }
        }
    }
    out
}

/// A validation problem of the combined specification, located where it can be fixed: under the moved
/// operator in A's file (or the machines file), elsewhere in B's.
fn locate(
    request: &Request<'_>,
    index_a: usize,
    index_b: usize,
    d: &model::Diagnostic,
) -> Conflict {
    let moved = FieldPath::root().key("operators").index(index_b);
    let mut message = d.message.clone();
    if let Some(hint) = &d.hint {
        message.push_str("; ");
        message.push_str(hint);
    }
    if let Some((related, _)) = &d.related
        && !related.starts_with(&moved)
    {
        message.push_str(&format!(
            " (with {} at {})",
            related,
            at(request.to, related, true)
        ));
    }
    let key = d.target == model::diagnostic::Target::Key;
    if d.path.starts_with(&moved) {
        let rest = &d.path.0[moved.0.len()..];
        if let (Some((file, _)), Some(Step::Key(first))) = (&request.machines, rest.first())
            && first == "machines"
        {
            return Conflict {
                at: (*file).to_owned(),
                field: FieldPath(rest[1..].to_vec()).to_string(),
                message: format!("at B: {message}"),
            };
        }
        let mut in_a = FieldPath::root().key("operators").index(index_a);
        in_a.0.extend(rest.iter().cloned());
        Conflict {
            at: at(request.from, &in_a, key),
            field: in_a.to_string(),
            message: format!("at B: {message}"),
        }
    } else {
        Conflict {
            at: at(request.to, &d.path, key),
            field: d.path.to_string(),
            message,
        }
    }
}

/// The source's and the target's connection of database `name`: PostgreSQL over TCP at A with a password
/// file, and B's socket folder as the application's role; MySQL (MariaDB, nixpkgs' default for Pixelfed) over
/// TCP at A on port 3306 with a password file, and at B the socket nixpkgs' pixelfed.nix gives the
/// application (`/run/mysqld/mysqld.sock`) as its user, run as that OS user (its `ensureUsers` entry
/// authenticates with `unix_socket`).
fn database_connections(
    db: &state::Database,
    name: &str,
    source_host: String,
) -> (Postgres, Postgres) {
    let (port, socket, os_user) = match db.engine {
        // B's PostgreSQL authenticates the socket by peer (nixpkgs' default `local all all peer`): the tools run
        // as the OS user named like the role, which in nixpkgs is the service's user (mastodon: user =
        // database.user = name, asserted with createLocally; matrix-synapse: the template's role
        // "matrix-synapse" = the unit's user; peertube: user and database.user both default "peertube").
        Engine::Postgresql => (5432, "/run/postgresql", Some(db.user.clone())),
        Engine::Mysql => (3306, "/run/mysqld/mysqld.sock", Some(db.user.clone())),
    };
    (
        Postgres {
            host: source_host,
            port,
            user: db.user.clone(),
            database: name.to_owned(),
            password_file: Some(format!("{MIGRATE_SECRETS}/{name}-source-password").into()),
            os_user: None,
            tls: Default::default(),
        },
        Postgres {
            host: socket.into(),
            port,
            user: db.user.clone(),
            database: name.to_owned(),
            password_file: None,
            os_user,
            tls: Default::default(),
        },
    )
}

/// The URL rewrites of database `name`: each of the manifest's `[[state.url_columns]]` in it, from A's media
/// prefix of its bucket (`https://<A's media host>/<A's bucket>/`, what `AWS_URL` made of it) to B's. Without
/// object storage at both sides there is no prefix to rewrite to: a manual step says so. `from` and `target`
/// are each side's specification and the applications it runs.
#[allow(clippy::too_many_arguments)]
fn url_rewrites(
    from: (&Spec, &Catalog),
    target: Option<(&Spec, &Catalog)>,
    operator: &Operator,
    app: &str,
    manifest: &Manifest,
    name: &str,
    manual: &mut Vec<String>,
) -> Vec<UrlRewrite> {
    let from_kinds = from
        .1
        .manifests
        .get(app)
        .map_or(&manifest.needs.s3_buckets, |m| &m.needs.s3_buckets);
    let hosts_of = |(spec, catalog): (&Spec, &Catalog)| {
        deploy::storage::endpoint_hosts(spec, catalog).map(|(s3, media, _)| (s3, media))
    };
    let hosts = (hosts_of(from), target.and_then(hosts_of));
    let mut out = Vec::new();
    for c in manifest
        .state
        .url_columns
        .iter()
        .filter(|c| c.database == name)
    {
        let (Some(a), Some(b)) = &hosts else {
            manual.push(format!(
                "{app}: `{}.{}` of database `{name}` holds URLs of the `{}` bucket's media host, and A or B has no object storage to rewrite them between: rewrite them by hand after the restore",
                c.table, c.column, c.bucket
            ));
            continue;
        };
        let from_bucket = deploy::storage::bucket_name(operator, app, from_kinds, &c.bucket);
        let to_bucket =
            deploy::storage::bucket_name(operator, app, &manifest.needs.s3_buckets, &c.bucket);
        let prefix = |(s3, media): &(String, String), bucket: &str| match c.form {
            UrlForm::Media => format!("https://{media}/{bucket}/"),
            UrlForm::S3 => format!("https://{bucket}.{s3}/"),
        };
        let (from, to) = (prefix(a, &from_bucket), prefix(b, &to_bucket));
        if from != to {
            out.push(UrlRewrite {
                table: c.table.clone(),
                column: c.column.clone(),
                from,
                to,
            });
        }
    }
    out
}

/// The move of database `name` (`db`, of `app` in `manifest`) from A's machine `a_host` to B's: the connections
/// ([`database_connections`]) and the URL rewrites ([`url_rewrites`], between `from`'s and `target`'s media
/// hosts), without replication (the planner adds it when asked). The one place deciding how a database moves, for
/// the planner's jobs and the migration VM tests' alike, so a test exercises the connections the planner writes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn database_move(
    from: (&Spec, &Catalog),
    target: Option<(&Spec, &Catalog)>,
    operator: &Operator,
    app: &str,
    manifest: &Manifest,
    name: &str,
    db: &state::Database,
    a_host: String,
    manual: &mut Vec<String>,
) -> DatabaseMove {
    let (source, target_connection) = database_connections(db, name, a_host);
    DatabaseMove {
        name: name.to_owned(),
        engine: db.engine,
        source,
        target: target_connection,
        replication: None,
        url_rewrites: url_rewrites(from, target, operator, app, manifest, name, manual),
    }
}

/// The moves and the job of one application.
#[allow(clippy::too_many_arguments)]
fn application_job(
    from: &Spec,
    target: Option<&Spec>,
    request: &Request<'_>,
    operator: &Operator,
    app: &str,
    manifest: &Manifest,
    source_host: &str,
    moves: &mut Vec<Move>,
    manual: &mut Vec<String>,
) -> Job {
    let state = &manifest.state;
    let machine = operator.machine_name(app);
    let mut job = Job {
        operator: operator.name.clone(),
        databases: Vec::new(),
        buckets: Vec::new(),
        directories: Vec::new(),
        identity: Vec::new(),
        commands: Commands {
            health_timeout_seconds: HEALTH_TIMEOUT_SECONDS,
            ..Commands::default()
        },
    };
    for (name, db) in &state.databases {
        moves.push(Move {
            application: app.to_owned(),
            kind: Kind::Database,
            name: name.clone(),
            source: format!("{} database {name} on {source_host}", db.engine.name()),
            target: format!("{} database {name} on {machine} at B", db.engine.name()),
            bytes: None,
            automatic: true,
            replicated: request.replicate && db.engine == Engine::Postgresql,
        });
        let a_host = source_host
            .rsplit_once('@')
            .map_or(source_host, |(_, h)| h)
            .to_owned();
        // B's server reaches A's as the job does (A's machine, port 5432), as the replicator role; the
        // subscription is B's superuser's, over B's socket by peer. PostgreSQL only (logical replication).
        let replication =
            (request.replicate && db.engine == Engine::Postgresql).then(|| Replication {
                publisher: Postgres {
                    host: a_host.clone(),
                    port: 5432,
                    user: REPLICATOR_ROLE.to_owned(),
                    database: name.clone(),
                    password_file: Some(
                        format!("{MIGRATE_SECRETS}/{name}-replicator-password").into(),
                    ),
                    os_user: None,
                    tls: Default::default(),
                },
                subscriber: Postgres {
                    host: "/run/postgresql".into(),
                    port: 5432,
                    user: TARGET_SUPERUSER.to_owned(),
                    database: name.clone(),
                    password_file: None,
                    os_user: Some(TARGET_SUPERUSER.to_owned()),
                    tls: Default::default(),
                },
            });
        let mut rewrites_manual = Vec::new();
        let moved = database_move(
            (from, request.from_catalog),
            target.map(|t| (t, request.to_catalog)),
            operator,
            app,
            manifest,
            name,
            db,
            a_host,
            &mut rewrites_manual,
        );
        let source = &moved.source;
        // NixOS lets the application's role in only through the local socket (PostgreSQL's peer, MariaDB's
        // unix_socket): the job reaches A over TCP with a password, which A's provider must set up (review-21 F3).
        let access = match db.engine {
            Engine::Postgresql => format!(
                "a password on the role and a pg_hba.conf `hostssl {name} {} <B's address>/32 scram-sha-256` line, with `ssl = on` and a certificate: the job requires TLS (`sslmode=require`; the connection's `tls` in the job sets another mode, e.g. `verify-full` with the CA's certificate)",
                source.user
            ),
            Engine::Mysql => format!(
                "a MariaDB account `{}`@'<B's address>' IDENTIFIED BY the password REQUIRE SSL (the server with `ssl_cert` and `ssl_key`: the job connects with `--ssl`), granted SELECT, LOCK TABLES, SHOW VIEW, TRIGGER and EVENT on `{name}`.* and SELECT on `mysql.proc` (MariaDB 11.3 and later: SHOW CREATE ROUTINE on `{name}`.*), or the dump leaves out routines without an error",
                source.user
            ),
        };
        manual.push(format!(
            "{app}: A's {} database `{name}` must accept {machine} at B over TCP on port {} as `{}` with a password ({access}; the port open to B alone: the dump holds the actors' private keys), that password placed at B in {}",
            db.engine.name(),
            source.port,
            source.user,
            source
                .password_file
                .as_ref()
                .map_or_else(String::new, |p| p.display().to_string()),
        ));
        manual.extend(rewrites_manual);
        job.databases.push(DatabaseMove {
            replication,
            ..moved
        });
    }
    if job.databases.iter().any(|d| d.replication.is_some()) {
        let names = list(
            job.databases
                .iter()
                .filter(|d| d.replication.is_some())
                .map(|d| d.name.as_str()),
        );
        manual.push(format!(
            "{app}: database {names} is replicated while A serves (--replicate): A's PostgreSQL must run with wal_level = logical and a free replication slot and WAL sender, and have the role `{REPLICATOR_ROLE}` (LOGIN REPLICATION, SELECT on the database's tables) reachable from {machine} at B on port 5432 (a pg_hba.conf host line), its password placed at B in {MIGRATE_SECRETS}/<database>-replicator-password; the run checks this read-only before anything and dumps and restores a database A cannot replicate, saying why"
        ));
    }
    let endpoint = |spec: &Spec, catalog: &Catalog| {
        deploy::s3_host(spec, catalog).map(|h| {
            (
                format!("https://{h}"),
                spec.provider
                    .object_storage
                    .as_ref()
                    .map(|s| s.region.clone())
                    .unwrap_or_default(),
            )
        })
    };
    let from_s3 = endpoint(from, request.from_catalog);
    let to_s3 = target.and_then(|t| endpoint(t, request.to_catalog));
    // A's bucket is named by A's manifest (its kinds), B's by B's: the same rule the deployments were made by.
    let from_kinds = request
        .from_catalog
        .manifests
        .get(app)
        .map_or(&manifest.needs.s3_buckets, |m| &m.needs.s3_buckets);
    for bucket in &state.buckets {
        let name = deploy::storage::bucket_name(operator, app, from_kinds, bucket);
        let target_name =
            deploy::storage::bucket_name(operator, app, &manifest.needs.s3_buckets, bucket);
        moves.push(Move {
            application: app.to_owned(),
            kind: Kind::Bucket,
            name: bucket.clone(),
            source: from_s3
                .as_ref()
                .map_or_else(|| name.clone(), |(e, _)| format!("{e}/{name}")),
            target: to_s3.as_ref().map_or_else(
                || format!("{target_name} at B"),
                |(e, _)| format!("{e}/{target_name}"),
            ),
            bytes: None,
            automatic: true,
            replicated: false,
        });
        if let (Some((se, sr)), Some((te, tr))) = (&from_s3, &to_s3) {
            job.buckets.push(BucketMove {
                name: bucket.clone(),
                source: S3 {
                    endpoint: se.clone(),
                    region: sr.clone(),
                    bucket: name.clone(),
                    key_file: format!("{MIGRATE_SECRETS}/{name}-source.env").into(),
                },
                target: S3 {
                    endpoint: te.clone(),
                    region: tr.clone(),
                    bucket: target_name.clone(),
                    key_file: format!("{MIGRATE_SECRETS}/{target_name}-target.env").into(),
                },
            });
        }
    }
    for (name, dir) in &state.directories {
        let source = format!("ssh://{source_host}{}", dir.path);
        moves.push(Move {
            application: app.to_owned(),
            kind: Kind::Directory,
            name: name.clone(),
            source: source.clone(),
            target: format!("{} on {machine} at B", dir.path),
            bytes: None,
            automatic: true,
            replicated: false,
        });
        job.directories.push(DirectoryMove {
            name: name.clone(),
            source,
            target: dir.path.clone(),
        });
    }
    for cert in certs::certificate_moves(&operator.host_name(app, manifest), source_host) {
        moves.push(Move {
            application: app.to_owned(),
            kind: Kind::Directory,
            name: cert.name.clone(),
            source: cert.source.clone(),
            target: format!("{} on {machine} at B", cert.target),
            bytes: None,
            automatic: true,
            replicated: false,
        });
        job.directories.push(cert);
    }
    for (name, id) in &state.identity {
        // A file the application keeps moves as a file; a secret the provider provides (`secret`) is placed
        // at B by B's own secret tooling (sops-nix, agenix, its store), so B must be given A's value instead.
        let Some(file) = &id.file else {
            let reference = id.secret.as_deref().and_then(|secret| {
                operator
                    .applications
                    .get(app)
                    .and_then(|a| a.secrets.get(secret))
            });
            let at_a = match reference {
                Some(model::SecretRef::File(f)) => format!("file {f} at A"),
                Some(model::SecretRef::Secret(n)) => format!("A's secret store: {n}"),
                None => format!("{app}'s secret {}", id.secret.as_deref().unwrap_or(name)),
            };
            moves.push(Move {
                application: app.to_owned(),
                kind: Kind::Identity,
                name: name.clone(),
                source: at_a.clone(),
                target: "B's secret tooling, the same reference".to_owned(),
                bytes: None,
                automatic: false,
                replicated: false,
            });
            manual.push(format!(
                "{app}: the identity secret `{name}` ({}) is provided by the provider ({at_a}): place the same value with B's secret tooling before B is deployed",
                id.description
            ));
            continue;
        };
        let source = format!("ssh://{source_host}{file}");
        moves.push(Move {
            application: app.to_owned(),
            kind: Kind::Identity,
            name: name.clone(),
            source: source.clone(),
            target: format!("{file} on {machine} at B"),
            bytes: None,
            automatic: true,
            replicated: false,
        });
        job.identity.push(SecretMove {
            name: name.clone(),
            source,
            target: file.into(),
            owner: id.owner.clone(),
            group: id.group.clone(),
            mode: id.mode.clone(),
        });
    }
    let units = &manifest.health.units;
    if !units.is_empty() {
        // A's machine: the one named like B's in A's specification (the operator and application are the same).
        let garage = serves_garage(from, &machine);
        job.commands
            .freeze
            .extend(freeze_commands(source_host, manifest, garage));
        job.commands
            .source_start
            .extend(source_start_commands(source_host, manifest, garage));
        job.commands.target_stop = target_stop(manifest);
        job.commands.start.extend(target_start(manifest));
        for unit in units {
            job.commands.health.push(vec![
                "systemctl".into(),
                "is-active".into(),
                "--quiet".into(),
                unit.clone(),
            ]);
        }
    }
    let host = operator.host_name(app, manifest);
    for check in manifest
        .health
        .http
        .iter()
        .filter(|c| c.port.is_none() && (200..400).contains(&c.status))
    {
        // `--insecure`: B's certificate comes from ACME's HTTP-01 challenge, which only succeeds once the names
        // resolve to B (after `dns`); until then nginx serves NixOS's self-signed placeholder. The check asks
        // whether the application answers through B's nginx; the certificate is a manual step of the plan.
        job.commands.health.push(vec![
            "curl".into(),
            "--insecure".into(),
            "--fail".into(),
            "--silent".into(),
            "--show-error".into(),
            "--output".into(),
            "/dev/null".into(),
            "--resolve".into(),
            format!("{host}:443:127.0.0.1"),
            format!("https://{host}{}", check.path),
        ]);
    }
    if let Some(program) = request.dns_command {
        job.commands.dns_switch.push(vec![
            program.to_owned(),
            operator.domain.clone(),
            format!("deployments/dns/{}.zone", operator.domain),
        ]);
    }
    job
}

/// The DNS changes: every address record of the operator's zone at A against the same zone at B.
fn dns_plan(
    from: &Spec,
    from_catalog: &Catalog,
    target: Option<&Spec>,
    to_catalog: &Catalog,
    zone: &str,
    to_alone: &Spec,
) -> DnsPlan {
    let servers = |spec: &Spec| {
        spec.provider
            .dns
            .as_ref()
            .map(|d| d.name_servers.clone())
            .unwrap_or_default()
    };
    let mut note = None;
    if from.provider.dns.is_none() {
        note = Some("provider A writes no zone files (no provider.dns): the records below are what B's zone holds; compare them with A's DNS by hand".to_owned());
    } else if to_alone.provider.dns.is_none() {
        note = Some(
            "provider B writes no zone files (no provider.dns): B's records must be made by hand"
                .to_owned(),
        );
    }
    let group = |records: Vec<(String, std::net::IpAddr)>| {
        let mut sets: BTreeMap<(String, &'static str), Vec<String>> = BTreeMap::new();
        for (name, address) in records {
            let kind = if address.is_ipv4() { "A" } else { "AAAA" };
            sets.entry((name, kind))
                .or_default()
                .push(address.to_string());
        }
        sets
    };
    let before = group(deploy::address_records(from, from_catalog, zone));
    let after = match target {
        Some(t) => group(deploy::address_records(t, to_catalog, zone)),
        None => {
            note.get_or_insert_with(|| {
                "B's records are unknown until the conflicts are resolved".to_owned()
            });
            BTreeMap::new()
        }
    };
    let keys: BTreeSet<&(String, &str)> = before.keys().chain(after.keys()).collect();
    let changes = if target.is_some() {
        keys.into_iter()
            .filter(|k| before.get(*k) != after.get(*k))
            .map(|k| DnsChange {
                name: k.0.clone(),
                kind: k.1.to_owned(),
                from: before.get(k).cloned().unwrap_or_default(),
                to: after.get(k).cloned().unwrap_or_default(),
            })
            .collect()
    } else {
        Vec::new()
    };
    DnsPlan {
        zone: zone.to_owned(),
        ttl: deploy::ZONE_TTL,
        lowered_ttl: LOWERED_TTL,
        lower_before_seconds: deploy::ZONE_TTL,
        name_servers: NameServers {
            from: servers(from),
            to: servers(to_alone),
        },
        changes,
        note,
    }
}

fn seconds(bytes: u64, throughput: u64) -> u64 {
    bytes.div_ceil(throughput.max(1))
}

/// The expected downtime from the moves' sizes. The engine's order decides what is inside the freeze window:
/// the delta of buckets and folders, every database dumped and restored in full, or for a replicated one only
/// its catch-up (its first copy is in the bulk phase, while A serves), the identity, the verification (which
/// reads every bucket and folder, and every database's tables, on both sides), the start and the health checks.
fn downtime(moves: &[Move], throughput: u64, source: &str, change_permille: u32) -> Downtime {
    let sum = |kinds: &[Kind], replicated: bool| -> Option<u64> {
        moves
            .iter()
            .filter(|m| m.automatic && kinds.contains(&m.kind) && m.replicated == replicated)
            .map(|m| m.bytes)
            .sum()
    };
    let copied = sum(&[Kind::Bucket, Kind::Directory], false);
    let dumped = sum(&[Kind::Database], false);
    let replicated = sum(&[Kind::Database], true);
    let databases = dumped.zip(replicated).map(|(d, r)| d.saturating_add(r));
    let change = |b: u64| b.saturating_mul(u64::from(change_permille)).div_ceil(1000);
    let delta = copied.map(change);
    let part = |what: &str, bytes: Option<u64>| DowntimePart {
        what: what.to_owned(),
        bytes,
        seconds: bytes.map(|b| seconds(b, throughput)),
    };
    let mut parts = vec![
        part(
            "delta copy of buckets and folders (the change since the bulk copy)",
            delta,
        ),
        part(
            "databases: dumped at A (pg_dump -Fc, mariadb-dump), then restored at B (each in full)",
            dumped.map(|b| b.saturating_mul(2)),
        ),
    ];
    let any_replicated = moves.iter().any(|m| m.replicated);
    if any_replicated {
        parts.push(part(
            "replicated databases: catch-up of the change since the bulk phase (--change-percent), then sequences and large objects",
            replicated.map(change),
        ));
    }
    parts.extend([
        part(
            "verification: every bucket and folder read at both sides, every database's tables hashed at both",
            copied
                .zip(databases)
                .map(|(c, d)| c.saturating_add(d).saturating_mul(2)),
        ),
        DowntimePart {
            what: "freeze, identity, start and health checks (fixed)".to_owned(),
            bytes: None,
            seconds: Some(60),
        },
    ]);
    let freeze_seconds = parts.iter().map(|p| p.seconds).sum();
    Downtime {
        throughput_bytes_per_second: throughput,
        throughput_source: source.to_owned(),
        change_permille,
        bulk_seconds: copied
            .zip(replicated)
            .map(|(c, r)| seconds(c.saturating_add(r), throughput)),
        freeze_seconds,
        parts,
        method: format!(
            "sizes / throughput ({} MB/s, {}): the bulk copy runs while A serves{}; the freeze window is the delta ({}.{} % of buckets and folders, --change-percent), {}, the verification, and a fixed minute; a size not measured (--measure) leaves its part unknown",
            throughput / 1_000_000,
            if source == "flag" {
                "--throughput"
            } else {
                "assumed; measure it and pass --throughput"
            },
            if any_replicated {
                " (and the replicated databases' first copy)"
            } else {
                ""
            },
            change_permille / 10,
            change_permille % 10,
            if any_replicated {
                "the replicated databases' catch-up (the same share of them), the others in full (dumped and restored)"
            } else {
                "the databases in full (dumped and restored)"
            }
        ),
    }
}

/// What B's provider prepares before any job runs, and what the providers keep after the switch, said once per
/// plan: what the jobs assume but cannot do themselves (operator review of the plans, S9, B2, B4).
fn preparations(
    operator: &Operator,
    jobs: &[(String, Job)],
    from: &Spec,
    request: &Request<'_>,
) -> Vec<String> {
    let machines = list(jobs.iter().map(|(m, _)| m.as_str()));
    let mut out = vec![
        format!(
            "before the jobs: root at each machine at B ({machines}) logs in to its machine at A over ssh without a prompt (the freeze, the folder and identity copies, and the verification read A through it), and A's machines have fedigen on their PATH (`fedigen migrate manifest` lists A's folders for the verification)"
        ),
        "the jobs move each application host's certificate from A (/var/lib/acme/<host>), so B serves A's certificate from its start; B orders its own with its own ACME account once the names resolve to it (not lego's .lego/<host>: renewing A's order with B's account is refused); a host whose certificate A does not get from NixOS's ACME module stops the job at its first copy, before the freeze: remove its `tls-` folder from the job, and place the certificate at B yourself".to_owned(),
    ];
    if jobs.iter().any(|(_, j)| !j.buckets.is_empty()) {
        out.push(format!(
            "the bucket key files at B: {MIGRATE_SECRETS}/<bucket>-source.env (A's key, read access) and <bucket>-target.env (B's key), AWS_ACCESS_KEY_ID= and AWS_SECRET_ACCESS_KEY= lines, root-only"
        ));
        let media = deploy::storage::endpoint_hosts(from, request.from_catalog)
            .map(|(_, media, _)| media)
            .unwrap_or_else(|| "A's media host".to_owned());
        out.push(format!(
            "after the switch, A's provider keeps serving {media} for {}'s buckets (or redirects it to B's media host) for months: servers that received {}'s posts before the move hold the media URLs on A's host and fetch them again when their caches expire",
            operator.name, operator.name
        ));
    }
    out.push(format!(
        "after the switch: disable {}'s applications at A (`systemctl disable` or a deploy without them), or a reboot of A starts a second server under the same name and keys",
        operator.name
    ));
    out
}

fn rollback(operator: &Operator) -> Vec<String> {
    vec![
        format!(
            "before the DNS switch: `fedigen migrate rollback --job <job> --journal <dir>` on each machine stops {}'s applications at B and starts them at A again; A's data was never written, so nothing is lost (if B had started, what its queues sent in that time, such as scheduled posts, was sent from B)",
            operator.name
        ),
        "after the DNS switch: B is the server; going back means a migration from B to A, and whatever was posted, uploaded or federated at B since the switch stays at B unless it is moved back the same way".to_owned(),
        "while caches still hold A's addresses (up to the lowered TTL after the switch), some clients and federating servers reach A, which is stopped: their requests fail and are retried by the senders' delivery queues (Mastodon and Synapse retry for days, PeerTube and Pixelfed for hours), so nothing is lost if the window is short".to_owned(),
    ]
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
