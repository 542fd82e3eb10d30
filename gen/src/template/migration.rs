//! The data of `templates/_tests/migration.nix.hbs` ([`MigrationTest`]): one operator's migration as a NixOS VM
//! test. Provider A's machines and provider B's machines both run the operator's generated modules (the same
//! domain, applications and settings: what `fedigen migrate plan` puts at B), a client reaches them. Each provider
//! has its own object storage, a one-node Garage test cluster ([`DeploymentStorage::on_side`]: its own node name
//! and test key, the operator's buckets, its own test S3 keys, and its own `s3.`/`media.` hosts under the
//! provider's domain: A's the specification's, B's [`PROVIDER_B_DOMAIN`]), and each side's nodes resolve that
//! side's names. The test seeds A through each application's admin action and `[test]` steps (a status with an
//! image), proves the media is in A's bucket, runs the engine (`fedigen migrate run`, with a job built here the
//! way the planner builds it, pointed at the test's nodes: databases, buckets between the two clusters, folders,
//! identity), and checks at B: the applications healthy, the identity files byte for byte A's, the engine's own
//! verification equal, A's applications stopped; then the client follows the DNS switch, every object A held is
//! in B's bucket with the same bytes, and where every database moved the data reads back at B through the same
//! domain with its media served from B's media host.

use std::collections::BTreeMap;

use serde::Serialize;

use super::context::{DeploymentStorage, DeploymentTest, StorageSide, TestNode, TestSecretFile};
use super::test_keys::test_s3_key;
use crate::deploy::{self, python_name};
use crate::migrate::job::{
    BucketMove, Commands, DatabaseMove, DirectoryMove, Job, Postgres, S3, SecretMove,
};
use crate::migrate::plan::{HEALTH_TIMEOUT_SECONDS, MIGRATE_SECRETS, freeze_units, target_start};
use crate::model::{Catalog, Operator, Spec};
use crate::state::Engine;

/// Provider B's domain in the migration tests: its object storage's hosts are `s3.` and `media.` under it (A's are
/// under the specification's provider domain). A reserved test name (RFC 2606), no real provider's.
pub(crate) const PROVIDER_B_DOMAIN: &str = "provider-b.test";

/// The unit serving a Garage node's S3 and media endpoints: kept running through the move on a machine that also
/// runs the test's Garage node, as the real planner keeps it ([`freeze_units`]).
#[cfg(test)]
const ENDPOINT_UNIT: &str = crate::migrate::plan::WEB_UNIT;

/// One application machine of the migration: its node at A, its node at B, and the job B runs.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationMachine {
    /// The machine's name (`<operator>-<app>`).
    pub machine: String,
    /// The application.
    pub application: String,
    /// The node at provider A (its `stored` steps print URLs on A's media host).
    pub a: TestNode,
    /// The node at provider B (its `stored` steps expect B's media host).
    pub b: TestNode,
    /// The job `fedigen migrate run` gets at B, as JSON data (placed in `/etc/fedigen/migrate.json`).
    pub job: serde_json::Value,
    /// The application's own units (its manifest's health units) that the freeze stops at A and that B starts:
    /// not a Garage node's (nor the endpoints' nginx on a machine running the test's Garage node).
    pub units: Vec<String>,
    /// The identity files that must be equal at both sides.
    pub identity_files: Vec<String>,
    /// The manifest's admin action run at A before the move (a shell command), if any.
    pub seed: Option<String>,
    /// What the move leaves to people in this test (databases of other engines), for the description.
    pub not_moved: Vec<String>,
    /// Whether every database of the application moves, so the data the steps made at A reads back at B.
    pub read_back: bool,
    /// What other servers know the instance by (the manifest's `[[test.identity]]`), read at A after the seed and
    /// at B after the DNS switch: equal, or followers and peers stop trusting it. Only where `read_back` (the keys
    /// live in the databases).
    pub public_identity: Vec<IdentityData>,
}

/// One `[[test.identity]]` of a manifest, its command whole.
#[derive(Debug, Clone, Serialize)]
pub struct IdentityData {
    /// Which identity it is.
    pub description: String,
    /// Whether it runs on the client (through the domain, as a remote server reads it).
    pub on_client: bool,
    /// The shell command, `FEDIGEN_HOST` exported first; prints the identity.
    pub command: String,
}

/// The data of `templates/_tests/migration.nix.hbs`.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationTest {
    /// The NixOS test's name (`fedigen-migrate-<operator>`).
    pub test_name: String,
    /// The harness header's description.
    pub description: String,
    /// The cores the test needs.
    pub cores: u32,
    /// The machines, A and B.
    pub machines: Vec<MigrationMachine>,
    /// The host names provider A's nodes resolve, by node: A's machines and A's object storage.
    pub hosts_a: BTreeMap<String, Vec<String>>,
    /// The host names provider B's nodes resolve: B's machines, B's object storage, and A's S3 host (the job
    /// running at B reads A's buckets).
    pub hosts_b: BTreeMap<String, Vec<String>>,
    /// The host names the client resolves before the DNS switch: A's, and B's object storage.
    pub hosts_client: BTreeMap<String, Vec<String>>,
    /// Provider A's object storage, when an application of the operator keeps files in buckets.
    pub storage_a: Option<DeploymentStorage>,
    /// Provider B's, likewise.
    pub storage_b: Option<DeploymentStorage>,
}

fn renamed(node: &TestNode, side: &str) -> TestNode {
    let name = format!("{}-{side}", node.name);
    TestNode {
        python: python_name(&name),
        name,
        ..node.clone()
    }
}

/// The host names of `nodes` (each its own), as a test's `hosts` argument.
fn node_hosts(nodes: &[TestNode]) -> BTreeMap<String, Vec<String>> {
    nodes
        .iter()
        .map(|n| (n.name.clone(), vec![n.host.clone()]))
        .collect()
}

/// `more`'s host names added to `hosts`.
fn merged(
    mut hosts: BTreeMap<String, Vec<String>>,
    more: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, Vec<String>> {
    for (node, names) in more {
        hosts
            .entry(node.clone())
            .or_default()
            .extend(names.iter().cloned());
    }
    hosts
}

impl MigrationTest {
    /// The migration test of one operator, from its deployment test's machines (each machine twice, at A and at
    /// B), with one object storage per provider.
    pub fn new(spec: &Spec, catalog: &Catalog, operator: &Operator) -> Self {
        let (machines_a, cores) = DeploymentTest::machines(spec, catalog, operator);
        let mut nodes_a: Vec<TestNode> = machines_a.iter().map(|n| renamed(n, "a")).collect();
        let mut nodes_b: Vec<TestNode> = machines_a.iter().map(|n| renamed(n, "b")).collect();
        let side_a = StorageSide {
            suffix: "-a".into(),
            keys: String::new(),
        };
        let side_b = StorageSide {
            suffix: "-b".into(),
            keys: format!("@{PROVIDER_B_DOMAIN}"),
        };
        // B's machines hold B's keys (the application's own S3 key file too), never A's.
        for node in &mut nodes_b {
            let a_key = test_s3_key(&operator.name, &node.application);
            for secret in node.secrets.iter_mut().filter(|s| s.value == a_key) {
                secret.value = side_b.s3_key(&operator.name, &node.application);
            }
        }
        // B's provider, with this operator alone: cloning every operator for each operator's test made
        // generation quadratic in the number of operators (issue #18: 7 % of the CPU at 300 operators).
        let spec_b = Spec {
            provider: crate::model::Provider {
                domain: PROVIDER_B_DOMAIN.into(),
                ..spec.provider.clone()
            },
            operators: vec![operator.clone()],
        };
        let mut storage_hosts_a = BTreeMap::new();
        let mut storage_hosts_b = BTreeMap::new();
        let storage_a = DeploymentStorage::on_side(
            spec,
            catalog,
            operator,
            &mut nodes_a,
            &mut storage_hosts_a,
            &side_a,
        );
        let storage_b = DeploymentStorage::on_side(
            &spec_b,
            catalog,
            operator,
            &mut nodes_b,
            &mut storage_hosts_b,
            &side_b,
        );
        let hosts_a = merged(node_hosts(&nodes_a), &storage_hosts_a);
        let mut hosts_b = merged(node_hosts(&nodes_b), &storage_hosts_b);
        if let Some(a) = &storage_a {
            hosts_b
                .entry(a.node.clone())
                .or_default()
                .push(a.s3_host.clone());
        }
        let hosts_client = merged(hosts_a.clone(), &storage_hosts_b);
        let s3 = |storage: &Option<DeploymentStorage>| {
            storage
                .as_ref()
                .map(|s| (format!("https://{}", s.s3_host), s.region.clone()))
        };
        let (s3_a, s3_b) = (s3(&storage_a), s3(&storage_b));
        let mut machines = Vec::new();
        for (a, mut b) in nodes_a.into_iter().zip(nodes_b) {
            let app = a.application.clone();
            let Some(manifest) = catalog.manifests.get(&app) else {
                continue;
            };
            let machine = a
                .name
                .strip_suffix("-a")
                .unwrap_or(a.name.as_str())
                .to_owned();
            let source = format!("root@{}", a.name);
            let state = &manifest.state;
            let mut not_moved = Vec::new();
            let databases: Vec<DatabaseMove> = state
                .databases
                .iter()
                .filter(|(name, db)| {
                    let moved = db.engine == Engine::Postgresql;
                    if !moved {
                        not_moved.push(format!("{app}'s {} database {name}", db.engine.name()));
                    }
                    moved
                })
                .map(|(name, db)| DatabaseMove {
                    name: name.clone(),
                    engine: Default::default(),
                    source: Postgres {
                        host: a.name.clone(),
                        port: 5432,
                        user: db.user.clone(),
                        database: name.clone(),
                        password_file: None,
                        os_user: None,
                    },
                    target: Postgres {
                        host: "/run/postgresql".into(),
                        port: 5432,
                        user: db.user.clone(),
                        database: name.clone(),
                        password_file: None,
                        // As the real planner: the tools run as the role's OS user (peer authentication).
                        os_user: Some(db.user.clone()),
                    },
                    replication: None,
                    url_rewrites: Vec::new(),
                })
                .collect();
            // Each bucket between the two clusters, named by the one rule (both sides run the same manifest), with
            // the key files the planner names (A's key and B's, placed at B as B's provider would).
            let mut buckets = Vec::new();
            if let (Some((endpoint_a, region_a)), Some((endpoint_b, region_b))) = (&s3_a, &s3_b) {
                for kind in &state.buckets {
                    let bucket = deploy::storage::bucket_name(
                        operator,
                        &app,
                        &manifest.needs.s3_buckets,
                        kind,
                    );
                    let source_key = format!("{MIGRATE_SECRETS}/{bucket}-source.env");
                    let target_key = format!("{MIGRATE_SECRETS}/{bucket}-target.env");
                    for (path, value) in [
                        (&source_key, test_s3_key(&operator.name, &app)),
                        (&target_key, side_b.s3_key(&operator.name, &app)),
                    ] {
                        b.secrets.push(TestSecretFile {
                            name: path.rsplit('/').next().unwrap_or(path).to_owned(),
                            path: path.clone(),
                            value,
                            owner: "root".into(),
                            group: "root".into(),
                            mode: "0400".into(),
                            unit: "fedigen-migrate".into(),
                        });
                    }
                    buckets.push(BucketMove {
                        name: kind.clone(),
                        source: S3 {
                            endpoint: endpoint_a.clone(),
                            region: region_a.clone(),
                            bucket: bucket.clone(),
                            key_file: source_key.into(),
                        },
                        target: S3 {
                            endpoint: endpoint_b.clone(),
                            region: region_b.clone(),
                            bucket,
                            key_file: target_key.into(),
                        },
                    });
                }
            }
            let directories = state
                .directories
                .iter()
                .map(|(name, dir)| DirectoryMove {
                    name: name.clone(),
                    source: format!("ssh://{source}{}", dir.path),
                    target: dir.path.clone(),
                })
                .collect();
            let identity: Vec<SecretMove> = state
                .identity
                .iter()
                .filter_map(|(name, id)| {
                    let file = id.file.as_ref()?;
                    Some(SecretMove {
                        name: name.clone(),
                        source: format!("ssh://{source}{file}"),
                        target: file.into(),
                        owner: id.owner.clone(),
                        group: id.group.clone(),
                        mode: id.mode.clone(),
                    })
                })
                .collect();
            // A machine running the test's Garage node keeps serving its endpoints through the move.
            let units: Vec<String> = freeze_units(manifest, a.garage);
            let ssh = |verb: &str| {
                let mut argv = vec![
                    "ssh".to_owned(),
                    source.clone(),
                    "systemctl".into(),
                    verb.into(),
                ];
                argv.extend(units.iter().cloned());
                argv
            };
            let job = Job {
                operator: operator.name.clone(),
                databases,
                buckets,
                directories,
                identity: identity.clone(),
                commands: Commands {
                    target_stop: Vec::new(),
                    freeze: vec![ssh("stop")],
                    start: target_start(manifest),
                    health: units
                        .iter()
                        .map(|u| {
                            vec![
                                "systemctl".into(),
                                "is-active".into(),
                                "--quiet".into(),
                                u.clone(),
                            ]
                        })
                        .collect(),
                    health_timeout_seconds: HEALTH_TIMEOUT_SECONDS,
                    // The test switches the client's /etc/hosts itself, after the run (the client is no machine
                    // of either provider for the job to reach).
                    dns_switch: Vec::new(),
                    source_start: vec![ssh("start")],
                },
            };
            debug_assert!(job.problems().is_empty(), "{:?}", job.problems());
            machines.push(MigrationMachine {
                machine,
                application: app.clone(),
                identity_files: identity
                    .iter()
                    .map(|s| s.target.display().to_string())
                    .collect(),
                job: serde_json::to_value(&job).expect("a job serialises"),
                units,
                seed: manifest.admin_action.as_ref().map(|a| a.command.clone()),
                public_identity: if not_moved.is_empty() {
                    manifest
                        .test
                        .identity
                        .iter()
                        .map(|step| IdentityData {
                            description: step.description.clone(),
                            on_client: step.on == crate::manifest::test_plan::StepNode::Client,
                            command: super::shell::step_command(
                                &[("FEDIGEN_HOST", &a.host)],
                                &step.run,
                            ),
                        })
                        .collect()
                } else {
                    Vec::new()
                },
                read_back: not_moved.is_empty(),
                not_moved,
                a,
                b,
            });
        }
        let not_moved: Vec<String> = machines.iter().flat_map(|m| m.not_moved.clone()).collect();
        let extra = [&storage_a, &storage_b]
            .iter()
            .filter(|s| s.as_ref().is_some_and(|s| s.extra.is_some()))
            .count() as u32;
        Self {
            test_name: format!("fedigen-migrate-{}", operator.name),
            description: format!(
                "operator {}: seeded at provider A (media in A's Garage), moved to provider B with `fedigen migrate run` (databases, buckets between the two Garage clusters, folders, identity), B healthy with A's identity and A's objects, the data read back at B through the same domain after the DNS switch, A stopped{}",
                operator.name,
                if not_moved.is_empty() {
                    String::new()
                } else {
                    format!("; not moved (so not read back): {}", not_moved.join(", "))
                }
            ),
            // Both sides' machines, and each side's Garage-only node (two cores).
            cores: cores.saturating_mul(2).saturating_add(2 * extra).max(1),
            machines,
            hosts_a,
            hosts_b,
            hosts_client,
            storage_a,
            storage_b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> (Spec, Catalog) {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap();
        crate::deploy::load_spec(repo, &repo.join("examples/provider.toml")).unwrap()
    }

    fn secret<'a>(node: &'a TestNode, path: &str) -> &'a str {
        node.secrets
            .iter()
            .find(|s| s.path == path)
            .map(|s| s.value.as_str())
            .unwrap_or_else(|| panic!("{}: no secret {path}", node.name))
    }

    /// Each side reads its own cluster with its own key: A's machine, A's Garage and the job's source key file
    /// hold A's key; B's machine, B's Garage and the job's target key file B's, which differs. One shared key
    /// would let a job reading a bucket with the other side's key pass the test.
    #[test]
    fn each_side_has_its_own_cluster_and_keys() {
        let (spec, catalog) = example();
        let operator = spec
            .operators
            .iter()
            .find(|o| o.name == "amstelland")
            .unwrap();
        let test = MigrationTest::new(&spec, &catalog, operator);
        let (a, b) = (
            test.storage_a.as_ref().unwrap(),
            test.storage_b.as_ref().unwrap(),
        );
        assert_ne!(a.node, b.node);
        assert_ne!(a.node_key_printf, b.node_key_printf, "two node keys");
        assert_eq!(a.s3_host, format!("s3.{}", spec.provider.domain));
        assert_eq!(b.s3_host, format!("s3.{PROVIDER_B_DOMAIN}"));
        let mastodon = test
            .machines
            .iter()
            .find(|m| m.application == "mastodon")
            .unwrap();
        let job: Job = serde_json::from_value(mastodon.job.clone()).unwrap();
        assert!(job.problems().is_empty());
        let bucket = &job.buckets[0];
        assert_eq!(bucket.source.endpoint, format!("https://{}", a.s3_host));
        assert_eq!(bucket.target.endpoint, format!("https://{}", b.s3_host));
        let copy = crate::deploy::storage::node_key_copy("amstelland", "mastodon").1;
        let held = |s: &DeploymentStorage| {
            s.secrets
                .iter()
                .find(|f| f.path == copy)
                .unwrap()
                .value
                .clone()
        };
        let source = secret(&mastodon.b, &bucket.source.key_file.display().to_string()).to_owned();
        let target = secret(&mastodon.b, &bucket.target.key_file.display().to_string()).to_owned();
        assert_eq!(source, held(a));
        assert_eq!(target, held(b));
        assert_ne!(source, target);
        assert_eq!(secret(&mastodon.a, "/run/secrets/mastodon-s3-key"), held(a));
        assert_eq!(secret(&mastodon.b, "/run/secrets/mastodon-s3-key"), held(b));
        // The client resolves A's application and both media hosts until the switch; B's nodes both S3 hosts.
        let names = |hosts: &BTreeMap<String, Vec<String>>| -> Vec<String> {
            hosts.values().flatten().cloned().collect()
        };
        assert!(names(&test.hosts_client).contains(&b.media_host));
        assert!(names(&test.hosts_b).contains(&a.s3_host));
        assert!(!names(&test.hosts_a).contains(&b.s3_host));
    }

    /// A machine that runs the side's Garage node keeps the endpoints' nginx through the move (PeerTube's shares
    /// rtm1 in the example): stopping it at A would cut the job off A's bucket.
    #[test]
    fn a_machine_running_garage_keeps_its_endpoints() {
        let (spec, catalog) = example();
        let operator = spec
            .operators
            .iter()
            .find(|o| o.name == "zeeinstituut")
            .unwrap();
        let test = MigrationTest::new(&spec, &catalog, operator);
        let peertube = &test.machines[0];
        assert!(peertube.a.garage && peertube.b.garage);
        assert!(!peertube.units.iter().any(|u| u == ENDPOINT_UNIT));
        assert!(!peertube.units.is_empty());
    }
}
