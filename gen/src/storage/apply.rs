//! `fedigen storage apply`: bring a Garage cluster to a [`Description`] through the admin API v2, idempotently.
//!
//! Why each rule (Garage 2.x behaviour, checked against 2.5.0):
//! - Layout: Garage's docs demand one writer, every change staged before one Apply, and never the same version
//!   applied twice; and an Apply with nothing staged still makes a new version. So the current layout is read,
//!   compared with the description ([`plan_layout`], pure), only the differences are staged (foreign staged
//!   changes are reverted first), and `version + 1` is applied once, only when something differs.
//! - Buckets and keys: read in bulk first ([`super::inventory`]: every authenticated call costs Garage an
//!   argon2 check of the token, ~0.1 s), created or imported only when missing, with no lookup of what the
//!   bulk read showed missing; permissions and website access are compared with what Garage reports and
//!   changed only where they differ (every AllowBucketKey writes a new timestamp, so calling it blindly would
//!   never be a no-op). The per-key and per-bucket jobs may run on several clients at once
//!   ([`apply_with`], [`super::parallel`]).
//! - So a second run only reads: [`Report::changing_calls`] counts the POSTs, and the tests hold it to zero.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{Admin, ApiError};
use super::description::{Description, Key, ZoneRedundancy};
use super::inventory::{self, BucketState, Inventory};
use super::parallel;

/// How long `apply` waits, and how often it polls.
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    /// For the admin API to answer and every described node to be up.
    pub nodes: Duration,
    /// For the cluster to be healthy (a write quorum for every partition) after the layout.
    pub health: Duration,
    /// Between polls.
    pub poll: Duration,
}

impl Default for Waits {
    fn default() -> Self {
        Waits {
            nodes: Duration::from_secs(120),
            health: Duration::from_secs(120),
            poll: Duration::from_millis(500),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// One line per change, in the order made; empty when the cluster already matched.
    pub changes: Vec<String>,
    /// How many calls that may change the cluster (POSTs) were sent: zero on a second run.
    pub changing_calls: usize,
    /// The layout version after the run.
    pub layout_version: u64,
}

/// Why a run stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyError {
    /// Garage's admin API never answered (exit status 3).
    Unreachable(String),
    /// A key's secret file cannot be read or holds no secret (exit status 3: the machine lacks it).
    Secret(String),
    /// A step failed: what was done, Garage's error, and what to do (exit status 1).
    Step {
        /// The step (`apply the layout`).
        step: String,
        /// Garage's error or the condition that failed.
        error: String,
        /// What the operator can do.
        hint: String,
    },
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::Unreachable(m) | ApplyError::Secret(m) => write!(f, "{m}"),
            ApplyError::Step { step, error, hint } => {
                write!(f, "could not {step}: {error}\n  hint: {hint}")
            }
        }
    }
}

impl std::error::Error for ApplyError {}

/// A node's role in a layout, as the admin API reports and takes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Role {
    pub(crate) id: String,
    pub(crate) zone: String,
    #[serde(default)]
    pub(crate) capacity: Option<u64>,
    #[serde(default)]
    pub(crate) tags: Vec<String>,
}

/// One staged change of the layout.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RoleChange {
    /// Give the node this role (add it, or change its zone, capacity or tags).
    Set(Role),
    /// Take the node out of the layout (its data is moved away: draining).
    Remove(String),
}

impl RoleChange {
    fn id(&self) -> &str {
        match self {
            RoleChange::Set(r) => &r.id,
            RoleChange::Remove(id) => id,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            RoleChange::Set(r) => json!({
                "id": r.id, "zone": r.zone, "capacity": r.capacity, "tags": r.tags,
            }),
            RoleChange::Remove(id) => json!({ "id": id, "remove": true }),
        }
    }
}

/// The layout as `GetClusterLayout` reports it: what is current and what is staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CurrentLayout {
    pub(crate) version: u64,
    pub(crate) roles: Vec<Role>,
    pub(crate) zone_redundancy: ZoneRedundancy,
    pub(crate) staged: Vec<RoleChange>,
    pub(crate) staged_zone_redundancy: Option<ZoneRedundancy>,
}

/// What to do to the layout: the result of comparing the description with the current layout.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct LayoutPlan {
    /// Clear staged changes someone else made (they differ from what the description needs).
    pub(crate) revert: bool,
    /// Role changes to stage, sorted by node id (empty: none to send).
    pub(crate) stage: Vec<RoleChange>,
    /// Zone redundancy to stage.
    pub(crate) stage_zone_redundancy: Option<ZoneRedundancy>,
    /// The differences between the current layout and the description (what the new version will change).
    pub(crate) differences: Vec<RoleChange>,
    /// Apply `version + 1`: only when the description differs from the current layout.
    pub(crate) apply: bool,
}

/// The description's nodes as layout roles (the node's name is its one tag).
fn desired_roles(description: &Description) -> Vec<Role> {
    description
        .nodes
        .iter()
        .map(|n| Role {
            id: n.id.clone(),
            zone: n.zone.clone(),
            capacity: Some(n.capacity_bytes),
            tags: vec![n.name.clone()],
        })
        .collect()
}

/// Compares the description with the current layout: which role changes and parameters to stage, whether
/// staged changes made by someone else must be reverted first, and whether to apply. Pure, so the rules are
/// tested without Garage.
pub(crate) fn plan_layout(description: &Description, current: &CurrentLayout) -> LayoutPlan {
    let have: BTreeMap<&str, &Role> = current.roles.iter().map(|r| (r.id.as_str(), r)).collect();
    let want = desired_roles(description);
    let want_ids: BTreeSet<&str> = want.iter().map(|r| r.id.as_str()).collect();
    let mut differences: Vec<RoleChange> = want
        .iter()
        .filter(|r| have.get(r.id.as_str()) != Some(r))
        .cloned()
        .map(RoleChange::Set)
        .collect();
    differences.extend(
        current
            .roles
            .iter()
            .filter(|r| !want_ids.contains(r.id.as_str()))
            .map(|r| RoleChange::Remove(r.id.clone())),
    );
    differences.sort_by(|a, b| a.id().cmp(b.id()));
    let zone_redundancy = (current.zone_redundancy != description.zone_redundancy)
        .then_some(description.zone_redundancy);
    let mut staged = current.staged.clone();
    staged.sort_by(|a, b| a.id().cmp(b.id()));
    let nothing_staged = staged.is_empty() && current.staged_zone_redundancy.is_none();
    let staged_is_ours = staged == differences && current.staged_zone_redundancy == zone_redundancy;
    let apply = !differences.is_empty() || zone_redundancy.is_some();
    if staged_is_ours {
        // Nothing to stage: either nothing differs, or a run stopped between staging and applying.
        return LayoutPlan {
            differences,
            apply,
            ..LayoutPlan::default()
        };
    }
    LayoutPlan {
        revert: !nothing_staged,
        stage: differences.clone(),
        stage_zone_redundancy: zone_redundancy,
        differences,
        apply,
    }
}

/// Parses `GetClusterLayout`'s answer.
fn parse_layout(value: &Value) -> Result<CurrentLayout, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Parameters {
        zone_redundancy: Value,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Layout {
        version: u64,
        roles: Vec<Role>,
        parameters: Parameters,
        #[serde(default)]
        staged_role_changes: Vec<Value>,
        #[serde(default)]
        staged_parameters: Option<Parameters>,
    }
    let bad = |detail: String| ApiError::BadAnswer {
        endpoint: "GetClusterLayout".into(),
        detail,
    };
    let layout: Layout = serde_json::from_value(value.clone()).map_err(|e| bad(e.to_string()))?;
    let zr = |v: &Value| match v {
        Value::String(s) if s == "maximum" => Ok(ZoneRedundancy::Maximum),
        _ => v["atLeast"]
            .as_u64()
            .map(|n| ZoneRedundancy::AtLeast(n as u32))
            .ok_or_else(|| bad(format!("zoneRedundancy {v}"))),
    };
    let staged = layout
        .staged_role_changes
        .iter()
        .map(|c| {
            if c["remove"] == Value::Bool(true) {
                Ok(RoleChange::Remove(
                    c["id"].as_str().unwrap_or("").to_owned(),
                ))
            } else {
                serde_json::from_value(c.clone())
                    .map(RoleChange::Set)
                    .map_err(|e| bad(e.to_string()))
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(CurrentLayout {
        version: layout.version,
        roles: layout.roles,
        zone_redundancy: zr(&layout.parameters.zone_redundancy)?,
        staged,
        staged_zone_redundancy: layout
            .staged_parameters
            .map(|p| zr(&p.zone_redundancy))
            .transpose()?,
    })
}

fn zone_redundancy_json(z: ZoneRedundancy) -> Value {
    match z {
        ZoneRedundancy::Maximum => json!("maximum"),
        ZoneRedundancy::AtLeast(n) => json!({ "atLeast": n }),
    }
}

/// Bytes for people: `2.0 GiB`.
fn human_bytes(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.1} GiB", b / GIB)
    } else {
        format!("{:.1} MiB", b / MIB)
    }
}

/// Runs one step's call, turning Garage's refusal into a [`ApplyError::Step`] with `hint`, and an unreachable
/// Garage into [`ApplyError::Unreachable`].
fn step<T>(result: Result<T, ApiError>, what: &str, hint: &str) -> Result<T, ApplyError> {
    result.map_err(|e| match e {
        ApiError::Unreachable { .. } => ApplyError::Unreachable(e.to_string()),
        _ => ApplyError::Step {
            step: what.to_owned(),
            error: e.to_string(),
            hint: hint.to_owned(),
        },
    })
}

/// Brings the cluster behind `admin` to `description`: nodes up, layout, health, keys, then buckets. The
/// report's `changing_calls` counts the POSTs this run sent.
pub fn apply(
    admin: &mut dyn Admin,
    description: &Description,
    waits: Waits,
) -> Result<Report, ApplyError> {
    apply_with(admin, &mut [], description, waits)
}

/// [`apply`], with the key and bucket work spread over the `extra` clients (of the same node, or of other
/// nodes of the cluster), one thread each; `admin` does the reads and the layout. With no extra client,
/// everything runs on `admin`, in order.
pub fn apply_with(
    admin: &mut dyn Admin,
    extra: &mut [Box<dyn Admin + Send + '_>],
    description: &Description,
    waits: Waits,
) -> Result<Report, ApplyError> {
    let mut resolved = resolve_key_ids(description)?;
    resolve_self(admin, &mut resolved, waits)?;
    let description = &resolved;
    let mut report = Report::default();
    let mut posts = 0usize;
    // Every described node must be connected only to change the layout (the first deployment, a node added or
    // removed). Otherwise the admin API answering is enough: a node down for maintenance must not stop a new
    // operator's buckets and keys, which need only a healthy or degraded cluster (checked below).
    let all_nodes = if layout_changes(admin, description, waits)? {
        Wanted::Every
    } else {
        Wanted::AdminApi
    };
    wait_for_nodes(admin, description, waits, all_nodes)?;
    layout(admin, description, &mut report, &mut posts)?;
    wait_for_health(admin, waits)?;
    let inventory = step(
        inventory::read(admin),
        "read the cluster's keys and buckets",
        "check the admin token",
    )?;
    let keys_done = keys(admin, extra, description, &inventory)?;
    let jobs: Vec<_> = description
        .buckets
        .iter()
        .map(|b| (b, inventory.bucket(&b.name)))
        .collect();
    let buckets_done = parallel::run(admin, extra, &jobs, &bucket)?;
    for done in keys_done.into_iter().chain(buckets_done) {
        report.changes.extend(done.changes);
        posts += done.posts;
    }
    report.changing_calls = posts;
    Ok(report)
}

impl From<parallel::Incomplete> for ApplyError {
    fn from(_: parallel::Incomplete) -> Self {
        ApplyError::Step {
            step: "run the provisioning jobs".into(),
            error: "some jobs did not run".into(),
            hint: "run apply again".into(),
        }
    }
}

/// What [`wait_for_nodes`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    /// The admin API answering.
    AdminApi,
    /// The admin API answering and every described node connected.
    Every,
}

/// Whether the layout differs from the description (or holds changes staged by someone else), reading it once
/// the admin API answers (bounded by `waits.nodes`).
fn layout_changes(
    admin: &mut dyn Admin,
    description: &Description,
    waits: Waits,
) -> Result<bool, ApplyError> {
    wait_for_nodes(admin, description, waits, Wanted::AdminApi)?;
    let current = read_layout(admin)?;
    let plan = plan_layout(description, &current);
    Ok(plan.apply || plan.revert || !plan.stage.is_empty() || plan.stage_zone_redundancy.is_some())
}

/// Waits until the admin API answers and, when `wanted` is [`Wanted::Every`], every described node is connected.
fn wait_for_nodes(
    admin: &mut dyn Admin,
    description: &Description,
    waits: Waits,
    wanted: Wanted,
) -> Result<(), ApplyError> {
    let deadline = Instant::now() + waits.nodes;
    loop {
        let (missing, last_error) = match admin.get("GetClusterStatus", &[]) {
            Ok(_) if wanted == Wanted::AdminApi => return Ok(()),
            Ok(status) => {
                let up: BTreeSet<&str> = status["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|n| n["isUp"] == Value::Bool(true))
                    .filter_map(|n| n["id"].as_str())
                    .collect();
                let missing: Vec<String> = description
                    .nodes
                    .iter()
                    .filter(|n| !up.contains(n.id.as_str()))
                    .map(|n| format!("{} ({}…)", n.name, &n.id[..16]))
                    .collect();
                if missing.is_empty() {
                    return Ok(());
                }
                (missing, None)
            }
            Err(e @ ApiError::Unreachable { .. }) => (Vec::new(), Some(e)),
            Err(e) => {
                return step(
                    Err(e),
                    "read the cluster status",
                    "check the admin token (GARAGE_ADMIN_TOKEN or --token-file) is the node's admin_token",
                );
            }
        };
        if Instant::now() >= deadline {
            if let Some(e) = last_error {
                return Err(ApplyError::Unreachable(format!(
                    "{e} (waited {} s); check that garage runs and [admin] api_bind_addr is this address",
                    waits.nodes.as_secs()
                )));
            }
            return Err(ApplyError::Step {
                step: "see every node of the description connected".into(),
                error: format!(
                    "not connected after {} s: {}",
                    waits.nodes.as_secs(),
                    missing.join(", ")
                ),
                hint: "check that these nodes run, share the same rpc_secret, and are reachable at their rpc_public_addr; bootstrap_peers must list them".into(),
            });
        }
        std::thread::sleep(waits.poll);
    }
}

/// The cluster's current layout (`GetClusterLayout`), parsed.
fn read_layout(admin: &mut dyn Admin) -> Result<CurrentLayout, ApplyError> {
    let answer = step(
        admin.get("GetClusterLayout", &[]),
        "read the cluster layout",
        "check the admin token",
    )?;
    step(
        parse_layout(&answer),
        "read the cluster layout",
        "this Garage is not a 2.x version fedigen supports",
    )
}

/// Stages the layout differences and applies them once.
fn layout(
    admin: &mut dyn Admin,
    description: &Description,
    report: &mut Report,
    posts: &mut usize,
) -> Result<(), ApplyError> {
    let current = read_layout(admin)?;
    report.layout_version = current.version;
    let plan = plan_layout(description, &current);
    if plan.revert {
        *posts += 1;
        step(
            admin.post("RevertClusterLayout", &[], &Value::Null),
            "revert staged layout changes made outside fedigen",
            "inspect them with `garage layout show`",
        )?;
        report
            .changes
            .push("layout: reverted staged changes made outside fedigen".into());
    }
    if !plan.stage.is_empty() || plan.stage_zone_redundancy.is_some() {
        let mut body =
            json!({ "roles": plan.stage.iter().map(RoleChange::to_json).collect::<Vec<_>>() });
        if let Some(z) = plan.stage_zone_redundancy {
            body["parameters"] = json!({ "zoneRedundancy": zone_redundancy_json(z) });
        }
        *posts += 1;
        step(
            admin.post("UpdateClusterLayout", &[], &body),
            "stage the layout changes",
            "check the node ids and capacities in the description",
        )?;
    }
    if !plan.apply {
        return Ok(());
    }
    let names: BTreeMap<&str, &str> = description
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), n.name.as_str()))
        .collect();
    let old: BTreeMap<&str, &Role> = current.roles.iter().map(|r| (r.id.as_str(), r)).collect();
    for change in &plan.differences {
        let line = match change {
            RoleChange::Set(role) => {
                let name = names.get(role.id.as_str()).copied().unwrap_or("?");
                let what = if old.contains_key(role.id.as_str()) {
                    "changed to"
                } else {
                    "added:"
                };
                format!(
                    "layout: node {name} ({}…) {what} zone {}, capacity {}",
                    &role.id[..16],
                    role.zone,
                    human_bytes(role.capacity.unwrap_or(0))
                )
            }
            RoleChange::Remove(id) => {
                let name = old
                    .get(id.as_str())
                    .and_then(|r| r.tags.first())
                    .map_or("?", String::as_str);
                format!(
                    "layout: node {name} ({}…) removed; its data is being moved away: stop its machine only when `garage layout history` shows no draining version",
                    id.get(..16).unwrap_or(id)
                )
            }
        };
        report.changes.push(line);
    }
    if let Some(z) = plan.stage_zone_redundancy {
        report.changes.push(format!(
            "layout: zone redundancy set to {}",
            match z {
                ZoneRedundancy::Maximum => "maximum".to_owned(),
                ZoneRedundancy::AtLeast(n) => n.to_string(),
            }
        ));
    }
    let version = current.version + 1;
    *posts += 1;
    step(
        admin.post("ApplyClusterLayout", &[], &json!({ "version": version })),
        &format!("apply layout version {version}"),
        "if Garage says the version is invalid, another writer applied a layout meanwhile: run apply again (it re-reads the layout); otherwise check the zones and capacities (Garage needs at least replication_factor storage nodes and enough zones)",
    )?;
    report.layout_version = version;
    report
        .changes
        .push(format!("layout: applied version {version}"));
    Ok(())
}

/// Waits until a write quorum is available for every partition.
fn wait_for_health(admin: &mut dyn Admin, waits: Waits) -> Result<(), ApplyError> {
    let deadline = Instant::now() + waits.health;
    loop {
        let health = step(
            admin.get("GetClusterHealth", &[]),
            "read the cluster health",
            "check the admin token",
        )?;
        let status = health["status"].as_str().unwrap_or("");
        if status == "healthy" || status == "degraded" {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ApplyError::Step {
                step: "wait for the cluster to be healthy".into(),
                error: format!(
                    "still {status:?} after {} s ({} of {} storage nodes up, {} of {} partitions with a quorum)",
                    waits.health.as_secs(),
                    health["storageNodesUp"]
                        .as_u64()
                        .or(health["storageNodesOk"].as_u64())
                        .unwrap_or(0),
                    health["storageNodes"].as_u64().unwrap_or(0),
                    health["partitionsQuorum"].as_u64().unwrap_or(0),
                    health["partitions"].as_u64().unwrap_or(0),
                ),
                hint: "start the missing storage nodes, or check their network (`garage status`)"
                    .into(),
            });
        }
        std::thread::sleep(waits.poll);
    }
}

/// A single node described without an id is the driven node itself: its id from `GetNodeInfo?node=self`,
/// waiting (bounded) for the admin API to answer.
fn resolve_self(
    admin: &mut dyn Admin,
    description: &mut Description,
    waits: Waits,
) -> Result<(), ApplyError> {
    let Some(node) = description.nodes.iter_mut().find(|n| n.id.is_empty()) else {
        return Ok(());
    };
    let deadline = Instant::now() + waits.nodes;
    loop {
        match admin.get("GetNodeInfo", &[("node", "self")]) {
            Ok(info) => {
                let id = info["success"]
                    .as_object()
                    .and_then(|m| m.keys().next().cloned())
                    .filter(|id| super::description::is_hex(id, 64));
                return match id {
                    Some(id) => {
                        node.id = id;
                        Ok(())
                    }
                    None => Err(ApplyError::Step {
                        step: "find the driven node's id".into(),
                        error: format!("GetNodeInfo?node=self answered {info}"),
                        hint: "give the node's id in the description (`garage node id`)".into(),
                    }),
                };
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(ApplyError::Unreachable(format!(
                    "Garage's admin API did not answer GetNodeInfo: {e}"
                )));
            }
            Err(_) => std::thread::sleep(waits.poll),
        }
    }
}

/// The description with every key that names no id given the `AWS_ACCESS_KEY_ID=` of its secret file (the
/// generated description's form: the id travels with the secret), then checked again as a whole, so two files
/// holding one id, or a file whose id is malformed, stop the run before anything changes.
pub fn resolve_key_ids(description: &Description) -> Result<Description, ApplyError> {
    let mut resolved = description.clone();
    let mut by_file: BTreeMap<std::path::PathBuf, String> = BTreeMap::new();
    for key in resolved.buckets.iter_mut().flat_map(|b| b.keys.iter_mut()) {
        if !key.id.is_empty() {
            continue;
        }
        if let Some(id) = by_file.get(&key.secret_file) {
            key.id = id.clone();
            continue;
        }
        let path = key.secret_file.clone();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ApplyError::Secret(format!(
                "cannot read the S3 key of {} from {}: {}",
                key.name,
                path.display(),
                crate::io_error::describe(&e)
            ))
        })?;
        let id = text
            .lines()
            .map(|l| l.trim())
            .map(|l| l.strip_prefix("export ").unwrap_or(l))
            .find_map(|l| l.strip_prefix("AWS_ACCESS_KEY_ID="))
            .map(|v| v.trim().trim_matches(['"', '\'']).to_owned())
            .unwrap_or_default();
        if !super::description::is_key_id(&id) {
            return Err(ApplyError::Secret(format!(
                "{} (the S3 key of {}) has no AWS_ACCESS_KEY_ID= line with GK and 24 lowercase hex digits{}; write it with `fedigen storage s3-key --out {}`",
                path.display(),
                key.name,
                if id.is_empty() {
                    String::new()
                } else {
                    format!(" (found \"{id}\")")
                },
                path.display()
            )));
        }
        by_file.insert(path, id.clone());
        key.id = id;
    }
    let problems = resolved.problems();
    if let Some(first) = problems.first() {
        return Err(ApplyError::Step {
            step: "read the keys' ids from their secret files".into(),
            error: problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            hint: format!(
                "each application's key file must hold a key id of its own ({first}); write a fresh one with `fedigen storage s3-key`"
            ),
        });
    }
    Ok(resolved)
}

/// Reads a key's secret from its file: an environment file's `AWS_SECRET_ACCESS_KEY=` line, or the bare
/// secret.
pub(crate) fn read_secret(key: &Key) -> Result<String, ApplyError> {
    let path = &key.secret_file;
    let text = std::fs::read_to_string(path).map_err(|e| {
        ApplyError::Secret(format!(
            "cannot read the secret of key {} from {}: {}",
            key.id,
            path.display(),
            crate::io_error::describe(&e)
        ))
    })?;
    secret_from_text(&text, &key.id, path)
}

fn secret_from_text(text: &str, id: &str, path: &Path) -> Result<String, ApplyError> {
    let unquote = |v: &str| {
        let v = v.trim();
        for q in ['"', '\''] {
            if let Some(inner) = v.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
                return inner.to_owned();
            }
        }
        v.to_owned()
    };
    let mut secret = None;
    let mut env_file = false;
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line);
        if let Some(v) = line.strip_prefix("AWS_SECRET_ACCESS_KEY=") {
            secret = Some(unquote(v));
            env_file = true;
        } else if let Some(v) = line.strip_prefix("AWS_ACCESS_KEY_ID=") {
            env_file = true;
            if unquote(v) != id {
                return Err(ApplyError::Secret(format!(
                    "{} is for key {}, but the description names it for key {id}",
                    path.display(),
                    unquote(v)
                )));
            }
        }
    }
    let secret = match (env_file, secret) {
        (true, Some(s)) => s,
        (true, None) => String::new(),
        (false, _) => text.trim().to_owned(),
    };
    if secret.is_empty() {
        return Err(ApplyError::Secret(format!(
            "{} holds no secret for key {id} (an AWS_SECRET_ACCESS_KEY= line, or the bare secret)",
            path.display()
        )));
    }
    Ok(secret)
}

/// What one job did: its change lines, in order, and how many POSTs it sent.
#[derive(Debug, Default)]
struct Done {
    changes: Vec<String>,
    posts: usize,
}

/// One described key, its secret, and its name in Garage when the inventory lists it.
struct KeyJob<'a> {
    key: &'a Key,
    secret: String,
    existing_name: Option<String>,
}

/// Imports every described key the inventory lacks; checks the secret of those it lists (one `GetKeyInfo`
/// each: Garage shows secrets only key by key); renames those whose name differs.
fn keys(
    admin: &mut dyn Admin,
    extra: &mut [Box<dyn Admin + Send + '_>],
    description: &Description,
    inventory: &Inventory,
) -> Result<Vec<Done>, ApplyError> {
    let mut seen = BTreeSet::new();
    let mut jobs = Vec::new();
    for key in description.buckets.iter().flat_map(|b| &b.keys) {
        if !seen.insert(key.id.as_str()) {
            continue;
        }
        jobs.push(KeyJob {
            key,
            secret: read_secret(key)?,
            existing_name: inventory.keys.get(&key.id).cloned(),
        });
    }
    parallel::run(admin, extra, &jobs, &key_job)
}

fn key_job(admin: &mut dyn Admin, job: &KeyJob) -> Result<Done, ApplyError> {
    let (key, secret) = (job.key, job.secret.as_str());
    let mut done = Done::default();
    let Some(name) = &job.existing_name else {
        done.posts += 1;
        step(
            admin.post(
                "ImportKey",
                &[],
                &json!({ "accessKeyId": key.id, "secretAccessKey": secret, "name": key.name }),
            ),
            &format!("import key {}", key.id),
            "if Garage says the key exists, it was deleted once and its id can never be imported again: give the key a new id",
        )?;
        done.changes
            .push(format!("key {} ({}) imported", key.id, key.name));
        return Ok(done);
    };
    let info = step(
        admin.get(
            "GetKeyInfo",
            &[("id", key.id.as_str()), ("showSecretKey", "true")],
        ),
        &format!("look up key {}", key.id),
        "check the admin token",
    )?;
    if info["secretAccessKey"].as_str() != Some(secret) {
        return Err(ApplyError::Step {
            step: format!("provision key {}", key.id),
            error: format!(
                "the key exists in Garage with another secret than {} holds",
                key.secret_file.display()
            ),
            hint: "Garage cannot change a key's secret, and a deleted key id can never be imported again: rotate the key by giving it a new id (and a new secret) in the specification".into(),
        });
    }
    if name != &key.name {
        done.posts += 1;
        step(
            admin.post(
                "UpdateKey",
                &[("id", key.id.as_str())],
                &json!({ "name": key.name }),
            ),
            &format!("rename key {}", key.id),
            "check the key name",
        )?;
        done.changes
            .push(format!("key {} renamed to {}", key.id, key.name));
    }
    Ok(done)
}

/// The read/write/owner flags of a permission object.
fn flags(v: &Value) -> [bool; 3] {
    ["read", "write", "owner"].map(|f| v[f] == Value::Bool(true))
}

fn perm_json(f: [bool; 3]) -> Value {
    json!({ "read": f[0], "write": f[1], "owner": f[2] })
}

fn perm_words(f: [bool; 3]) -> String {
    ["read", "write", "owner"]
        .iter()
        .zip(f)
        .filter(|(_, on)| *on)
        .map(|(w, _)| *w)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Creates the bucket if missing (without looking up what the inventory says is missing), sets its website
/// access, and its keys' permissions exactly.
fn bucket(
    admin: &mut dyn Admin,
    (bucket, state): &(&super::description::Bucket, BucketState),
) -> Result<Done, ApplyError> {
    let mut done = Done::default();
    let name = bucket.name.as_str();
    let look_up = |admin: &mut dyn Admin| {
        step(
            admin.get("GetBucketInfo", &[("globalAlias", name)]),
            &format!("look up bucket {name}"),
            "check the admin token",
        )
    };
    let found = match state {
        BucketState::Known(info) => Some(info.clone()),
        BucketState::Missing => None,
        BucketState::Unknown => match admin.get("GetBucketInfo", &[("globalAlias", name)]) {
            Err(e) if e.is_not_found() => None,
            other => Some(step(
                other,
                &format!("look up bucket {name}"),
                "check the admin token",
            )?),
        },
    };
    let info = match found {
        Some(info) => info,
        None => {
            done.posts += 1;
            match admin.post("CreateBucket", &[], &json!({ "globalAlias": name })) {
                Ok(info) => {
                    done.changes.push(format!("bucket {name} created"));
                    info
                }
                // Someone created it meanwhile: read it again.
                Err(e) if e.is_conflict() => look_up(admin)?,
                Err(e) => step(
                    Err(e),
                    &format!("create bucket {name}"),
                    "check the bucket name and the cluster health",
                )?,
            }
        }
    };
    let id = info["id"].as_str().unwrap_or_default().to_owned();
    let website = info["websiteAccess"] == Value::Bool(true);
    let index_ok = info["websiteConfig"]["indexDocument"].as_str() == Some("index.html");
    if bucket.website != website || (bucket.website && !index_ok) {
        let access = if bucket.website {
            json!({ "enabled": true, "indexDocument": "index.html" })
        } else {
            json!({ "enabled": false })
        };
        done.posts += 1;
        step(
            admin.post(
                "UpdateBucket",
                &[("id", id.as_str())],
                &json!({ "websiteAccess": access }),
            ),
            &format!("set website access of bucket {name}"),
            "check the cluster health",
        )?;
        done.changes.push(format!(
            "bucket {name}: website access {}",
            if bucket.website {
                "enabled"
            } else {
                "disabled"
            }
        ));
    }
    let current: BTreeMap<String, [bool; 3]> = info["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| {
            Some((
                k["accessKeyId"].as_str()?.to_owned(),
                flags(&k["permissions"]),
            ))
        })
        .collect();
    let mut wanted: BTreeMap<String, [bool; 3]> =
        current.keys().map(|k| (k.clone(), [false; 3])).collect();
    for key in &bucket.keys {
        wanted.insert(key.id.clone(), [key.read, key.write, key.owner]);
    }
    for (key, want) in &wanted {
        let have = current.get(key).copied().unwrap_or([false; 3]);
        let allow = [0, 1, 2].map(|i| want[i] && !have[i]);
        let deny = [0, 1, 2].map(|i| have[i] && !want[i]);
        for (endpoint, change, verb) in [
            ("AllowBucketKey", allow, "allowed"),
            ("DenyBucketKey", deny, "denied"),
        ] {
            if change.iter().any(|c| *c) {
                done.posts += 1;
                step(
                    admin.post(
                        endpoint,
                        &[],
                        &json!({ "bucketId": id, "accessKeyId": key, "permissions": perm_json(change) }),
                    ),
                    &format!("change the permissions of key {key} on bucket {name}"),
                    "check the key exists (it is imported before the buckets are set up)",
                )?;
                done.changes.push(format!(
                    "bucket {name}: key {key} {verb} {}",
                    perm_words(change)
                ));
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn description() -> Description {
        Description::new(3)
            .with_node("a", &id(1), "ams", 1 << 30)
            .with_node("b", &id(2), "ams", 1 << 30)
            .with_node("c", &id(3), "rtm", 1 << 30)
    }

    fn role(n: u8, name: &str, zone: &str) -> Role {
        Role {
            id: id(n),
            zone: zone.into(),
            capacity: Some(1 << 30),
            tags: vec![name.into()],
        }
    }

    fn empty() -> CurrentLayout {
        CurrentLayout {
            version: 0,
            roles: vec![],
            zone_redundancy: ZoneRedundancy::Maximum,
            staged: vec![],
            staged_zone_redundancy: None,
        }
    }

    fn matching() -> CurrentLayout {
        CurrentLayout {
            version: 1,
            roles: vec![
                role(1, "a", "ams"),
                role(2, "b", "ams"),
                role(3, "c", "rtm"),
            ],
            ..empty()
        }
    }

    #[test]
    fn a_fresh_cluster_gets_every_role_and_one_apply() {
        let plan = plan_layout(&description(), &empty());
        assert!(!plan.revert);
        assert!(plan.apply);
        assert_eq!(plan.stage.len(), 3);
        assert_eq!(plan.stage, plan.differences);
        assert_eq!(plan.stage_zone_redundancy, None);
    }

    /// Applying with nothing staged still makes a new version in Garage: a matching layout must lead to no
    /// call at all.
    #[test]
    fn a_matching_layout_needs_nothing() {
        assert_eq!(
            plan_layout(&description(), &matching()),
            LayoutPlan::default()
        );
    }

    #[test]
    fn only_differences_are_staged_and_absent_nodes_removed() {
        let mut current = matching();
        current.roles[1].capacity = Some(2 << 30);
        current.roles.push(role(9, "old", "rtm"));
        let d = description().with_node("d", &id(4), "fra", 1 << 30);
        let plan = plan_layout(&d, &current);
        assert_eq!(
            plan.stage,
            vec![
                RoleChange::Set(role(2, "b", "ams")),
                RoleChange::Set(role(4, "d", "fra")),
                RoleChange::Remove(id(9)),
            ]
        );
        assert!(plan.apply && !plan.revert);
    }

    /// A run stopped between staging and applying: the staged changes are exactly ours, so only Apply is left.
    #[test]
    fn staged_changes_equal_to_ours_are_applied_without_restaging() {
        let mut current = empty();
        current.staged = vec![
            RoleChange::Set(role(3, "c", "rtm")),
            RoleChange::Set(role(1, "a", "ams")),
            RoleChange::Set(role(2, "b", "ams")),
        ];
        let plan = plan_layout(&description(), &current);
        assert!(plan.apply && !plan.revert && plan.stage.is_empty());
    }

    #[test]
    fn foreign_staged_changes_are_reverted() {
        let mut current = matching();
        current.staged = vec![RoleChange::Remove(id(2))];
        let plan = plan_layout(&description(), &current);
        assert!(plan.revert, "foreign staged removal must be reverted");
        assert!(!plan.apply, "nothing differs from the current layout");
        assert!(plan.stage.is_empty());
        let mut current = empty();
        current.staged = vec![RoleChange::Set(role(7, "x", "ams"))];
        let plan = plan_layout(&description(), &current);
        assert!(plan.revert && plan.apply);
        assert_eq!(plan.stage.len(), 3);
        // A staged parameter change of someone else's too.
        let mut current = matching();
        current.staged_zone_redundancy = Some(ZoneRedundancy::AtLeast(1));
        assert!(plan_layout(&description(), &current).revert);
    }

    #[test]
    fn zone_redundancy_is_staged_when_it_differs() {
        let mut d = description();
        d.zone_redundancy = ZoneRedundancy::AtLeast(2);
        let plan = plan_layout(&d, &matching());
        assert_eq!(plan.stage_zone_redundancy, Some(ZoneRedundancy::AtLeast(2)));
        assert!(plan.apply && plan.stage.is_empty());
    }

    #[test]
    fn garages_layout_answer_parses() {
        let answer = json!({
            "version": 3,
            "roles": [{"id": id(1), "zone": "ams", "tags": ["a"], "capacity": 1073741824u64,
                       "storedPartitions": 256, "usableCapacity": 1073741824u64}],
            "parameters": {"zoneRedundancy": {"atLeast": 2}},
            "partitionSize": 4194304,
            "stagedRoleChanges": [{"id": id(2), "remove": true},
                                  {"id": id(3), "zone": "rtm", "tags": ["c"], "capacity": null}],
            "stagedParameters": {"zoneRedundancy": "maximum"}
        });
        let layout = parse_layout(&answer).unwrap();
        assert_eq!(layout.version, 3);
        assert_eq!(layout.roles, vec![role(1, "a", "ams")]);
        assert_eq!(layout.zone_redundancy, ZoneRedundancy::AtLeast(2));
        assert_eq!(
            layout.staged,
            vec![
                RoleChange::Remove(id(2)),
                RoleChange::Set(Role {
                    capacity: None,
                    ..role(3, "c", "rtm")
                })
            ]
        );
        assert_eq!(layout.staged_zone_redundancy, Some(ZoneRedundancy::Maximum));
    }

    /// The stand-in's view of a converged cluster, and two runs: the first changes, the second sends no POST.
    fn apply_on_fake(
        fake: &mut crate::storage::fake::FakeGarage,
        d: &Description,
    ) -> Result<Report, ApplyError> {
        let waits = Waits {
            nodes: Duration::from_millis(50),
            health: Duration::from_millis(50),
            poll: Duration::from_millis(5),
        };
        apply(fake, d, waits)
    }

    fn with_buckets(dir: &Path) -> Description {
        use crate::storage::description::Bucket;
        let key = |n: u32, name: &str, read, write, owner| {
            let id = format!("GK{n:024x}");
            let file = dir.join(&id);
            std::fs::write(&file, format!("AWS_SECRET_ACCESS_KEY=secret{n}\n")).unwrap();
            Key {
                id,
                secret_file: file,
                name: name.into(),
                read,
                write,
                owner,
            }
        };
        description()
            .with_bucket(Bucket {
                name: "opa-mastodon".into(),
                website: true,
                keys: vec![key(1, "opa/mastodon", true, true, false)],
            })
            .with_bucket(Bucket {
                name: "opa-peertube".into(),
                website: false,
                keys: vec![
                    key(2, "opa/peertube", true, false, true),
                    key(1, "opa/mastodon", true, false, false),
                ],
            })
    }

    /// A node down stops only what needs every node: a new operator's bucket is still made on the laid-out
    /// cluster, but a layout change waits for the missing node and names it (review: a node in maintenance must
    /// not block onboarding, and the unit retries on failure).
    #[test]
    fn a_node_down_blocks_layout_changes_only() {
        use crate::storage::description::Bucket;
        let dir = tempfile::tempdir().unwrap();
        let d = with_buckets(dir.path());
        let ids: Vec<String> = d.nodes.iter().map(|n| n.id.clone()).collect();
        let mut fake = crate::storage::fake::FakeGarage::new(&ids);
        apply_on_fake(&mut fake, &d).unwrap();
        let down = fake.up.pop().unwrap();
        let grown = d.clone().with_bucket(Bucket {
            name: "opb-mastodon".into(),
            website: true,
            keys: Vec::new(),
        });
        let report = apply_on_fake(&mut fake, &grown).unwrap();
        assert!(fake.buckets.contains_key("opb-mastodon"), "{report:?}");
        let mut moved = grown.clone();
        moved.nodes[0].capacity_bytes *= 2;
        let error = apply_on_fake(&mut fake, &moved).unwrap_err().to_string();
        assert!(error.contains(&down[..16]), "{error}");
        assert_eq!(fake.version, 1, "no layout applied while a node is missing");
    }

    #[test]
    fn a_second_run_sends_no_post() {
        let dir = tempfile::tempdir().unwrap();
        let d = with_buckets(dir.path());
        let ids: Vec<String> = d.nodes.iter().map(|n| n.id.clone()).collect();
        let mut fake = crate::storage::fake::FakeGarage::new(&ids);
        let first = apply_on_fake(&mut fake, &d).unwrap();
        assert_eq!(first.layout_version, 1);
        assert_eq!(fake.version, 1);
        assert_eq!(fake.roles.len(), 3);
        assert!(fake.buckets["opa-mastodon"].1);
        assert_eq!(
            fake.buckets["opa-peertube"].2[&format!("GK{:024x}", 2)],
            [true, false, true]
        );
        assert_eq!(fake.keys.len(), 2);
        assert_eq!(
            first.changing_calls,
            fake.posts.len(),
            "the report counts every POST"
        );
        assert_eq!(first.changes.len(), 12, "{first:?}");
        fake.posts.clear();
        let second = apply_on_fake(&mut fake, &d).unwrap();
        assert_eq!(fake.posts, Vec::<String>::new());
        assert_eq!(second.changes, Vec::<String>::new());
        assert_eq!(fake.version, 1, "no new layout version");
    }

    /// Many pairs, and how many calls each run costs: Garage verifies the admin token (argon2, ~0.1 s) on
    /// every call, so a first run sends only the writes it needs (no lookup of what the bulk read showed
    /// missing) and a no-op run reads in bulk: no per-bucket lookup, one secret check per key.
    #[test]
    fn runs_read_in_bulk_and_look_up_nothing_known_missing() {
        use crate::storage::description::Bucket;
        let dir = tempfile::tempdir().unwrap();
        let pairs = 60u32;
        let mut d = description();
        for n in 1..=pairs {
            let id = format!("GK{n:024x}");
            let file = dir.path().join(&id);
            std::fs::write(&file, format!("AWS_SECRET_ACCESS_KEY=s{n}\n")).unwrap();
            d = d.with_bucket(Bucket {
                name: format!("op{n}-mastodon"),
                website: true,
                keys: vec![Key {
                    id,
                    secret_file: file,
                    name: format!("op{n}/mastodon"),
                    read: true,
                    write: true,
                    owner: false,
                }],
            });
        }
        let ids: Vec<String> = d.nodes.iter().map(|n| n.id.clone()).collect();
        let mut fake = crate::storage::fake::FakeGarage::new(&ids);
        let count = |v: &[String], e: &str| v.iter().filter(|x| *x == e).count();
        apply_on_fake(&mut fake, &d).unwrap();
        assert_eq!(count(&fake.gets, "GetBucketInfo"), 0, "{:?}", fake.gets);
        assert_eq!(count(&fake.gets, "GetKeyInfo"), 0, "{:?}", fake.gets);
        // Layout: Update + Apply; per pair: ImportKey, CreateBucket, UpdateBucket, AllowBucketKey.
        assert_eq!(fake.posts.len(), 2 + 4 * pairs as usize, "{:?}", fake.posts);
        fake.posts.clear();
        fake.gets.clear();
        let second = apply_on_fake(&mut fake, &d).unwrap();
        assert_eq!(second.changing_calls, 0);
        assert!(fake.posts.is_empty());
        assert_eq!(count(&fake.gets, "GetBucketInfo"), 0, "{:?}", fake.gets);
        assert_eq!(count(&fake.gets, "GetKeyInfo"), pairs as usize);
        assert!(
            fake.gets.len() <= pairs as usize + 8,
            "{} GETs for {pairs} pairs",
            fake.gets.len()
        );
    }

    /// A Garage without `ListBucketsInfo` (2.0): buckets are looked up one by one, and the runs still
    /// converge and then send nothing.
    #[test]
    fn without_bucket_listing_buckets_are_looked_up() {
        let dir = tempfile::tempdir().unwrap();
        let d = with_buckets(dir.path());
        let ids: Vec<String> = d.nodes.iter().map(|n| n.id.clone()).collect();
        let mut fake = crate::storage::fake::FakeGarage::new(&ids);
        fake.no_bucket_listing = true;
        let first = apply_on_fake(&mut fake, &d).unwrap();
        assert_eq!(first.changes.len(), 12, "{first:?}");
        fake.posts.clear();
        let second = apply_on_fake(&mut fake, &d).unwrap();
        assert!(fake.posts.is_empty() && second.changes.is_empty());
        // One lookup per bucket and run, never two.
        let lookups = fake.gets.iter().filter(|g| *g == "GetBucketInfo").count();
        assert_eq!(lookups, 2 * d.buckets.len(), "{:?}", fake.gets);
    }

    /// Jobs spread over several clients give the same cluster and the same report, in the same order.
    #[test]
    fn parallel_clients_converge_to_the_same_report() {
        use crate::storage::fake::{FakeGarage, Shared};
        let dir = tempfile::tempdir().unwrap();
        let d = with_buckets(dir.path());
        let ids: Vec<String> = d.nodes.iter().map(|n| n.id.clone()).collect();
        let mut alone = FakeGarage::new(&ids);
        let sequential = apply_on_fake(&mut alone, &d).unwrap();
        let shared = Shared(std::sync::Arc::new(std::sync::Mutex::new(FakeGarage::new(
            &ids,
        ))));
        let mut extra: Vec<Box<dyn Admin + Send>> = (0..4)
            .map(|_| Box::new(shared.clone()) as Box<dyn Admin + Send>)
            .collect();
        let waits = Waits {
            nodes: Duration::from_millis(50),
            health: Duration::from_millis(50),
            poll: Duration::from_millis(5),
        };
        let parallel = apply_with(&mut shared.clone(), &mut extra, &d, waits).unwrap();
        assert_eq!(parallel, sequential);
        let g = shared.0.lock().unwrap();
        assert_eq!(g.buckets, alone.buckets);
        assert_eq!(g.keys, alone.keys);
        drop(g);
        let again = apply_with(&mut shared.clone(), &mut extra, &d, waits).unwrap();
        assert_eq!(again.changing_calls, 0);
    }

    #[test]
    fn drift_is_corrected_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let d = with_buckets(dir.path());
        let ids: Vec<String> = d.nodes.iter().map(|n| n.id.clone()).collect();
        let mut fake = crate::storage::fake::FakeGarage::new(&ids);
        apply_on_fake(&mut fake, &d).unwrap();
        // Someone grants a foreign key, an extra flag, turns the website off and stages a removal.
        let foreign = format!("GK{:024x}", 9);
        let bucket = fake.buckets.get_mut("opa-mastodon").unwrap();
        bucket.1 = false;
        bucket.2.insert(foreign.clone(), [true, true, true]);
        bucket.2.get_mut(&format!("GK{:024x}", 1)).unwrap()[2] = true;
        fake.staged.insert(id(2), RoleChange::Remove(id(2)));
        fake.posts.clear();
        let report = apply_on_fake(&mut fake, &d).unwrap();
        assert_eq!(
            fake.posts,
            [
                "RevertClusterLayout",
                "UpdateBucket",
                "DenyBucketKey",
                "DenyBucketKey"
            ],
            "{report:?}"
        );
        assert_eq!(
            fake.version, 1,
            "nothing differed from the current layout: no Apply"
        );
        assert!(fake.staged.is_empty());
        let bucket = &fake.buckets["opa-mastodon"];
        assert_eq!(bucket.2[&foreign], [false; 3]);
        assert_eq!(bucket.2[&format!("GK{:024x}", 1)], [true, true, false]);
        assert!(bucket.1);
    }

    #[test]
    fn a_key_with_another_secret_is_a_loud_failure() {
        let dir = tempfile::tempdir().unwrap();
        let d = with_buckets(dir.path());
        let ids: Vec<String> = d.nodes.iter().map(|n| n.id.clone()).collect();
        let mut fake = crate::storage::fake::FakeGarage::new(&ids);
        fake.keys.insert(
            format!("GK{:024x}", 1),
            ("other".into(), "opa/mastodon".into()),
        );
        let e = apply_on_fake(&mut fake, &d).unwrap_err();
        assert!(
            matches!(&e, ApplyError::Step { hint, .. } if hint.contains("new id")),
            "{e}"
        );
        assert!(!fake.posts.iter().any(|p| p == "ImportKey"));
    }

    #[test]
    fn a_node_that_never_comes_up_is_named() {
        let d = description();
        let mut fake = crate::storage::fake::FakeGarage::new(&[id(1), id(2)]);
        let e = apply_on_fake(&mut fake, &d).unwrap_err().to_string();
        assert!(e.contains("c (03030303"), "{e}");
        assert!(fake.posts.is_empty());
    }

    #[test]
    fn secrets_come_from_an_env_file_or_a_bare_file() {
        let p = Path::new("/s");
        let gk = format!("GK{}", "a".repeat(24));
        let env = format!("AWS_ACCESS_KEY_ID={gk}\nAWS_SECRET_ACCESS_KEY=\"s3cr3t\"\n");
        assert_eq!(secret_from_text(&env, &gk, p).unwrap(), "s3cr3t");
        assert_eq!(secret_from_text("  bare\n", &gk, p).unwrap(), "bare");
        let other = env.replace(&gk, &format!("GK{}", "b".repeat(24)));
        assert!(matches!(
            secret_from_text(&other, &gk, p),
            Err(ApplyError::Secret(m)) if m.contains("is for key GKbbb")
        ));
        assert!(secret_from_text(&format!("AWS_ACCESS_KEY_ID={gk}\n"), &gk, p).is_err());
        assert!(secret_from_text("\n", &gk, p).is_err());
    }
}
