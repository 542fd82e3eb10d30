//! The data of `templates/_tests/migration.nix.hbs` ([`MigrationTest`]): one operator's migration as a NixOS VM
//! test. Provider A's machines and provider B's machines both run the operator's generated modules (the same
//! domain, applications and settings: what `fedigen migrate plan` puts at B), a client reaches them; the test
//! seeds A through each application's admin action, runs the engine (`fedigen migrate run`, with a job built
//! here the way the planner builds it, pointed at the test's nodes), and checks at B: the applications healthy,
//! the identity files byte for byte A's (the same signing and encryption keys), the engine's own verification
//! equal, and A's applications stopped.

use serde::Serialize;

use super::context::{DeploymentTest, TestNode};
use crate::deploy::python_name;
use crate::migrate::job::{Commands, DatabaseMove, DirectoryMove, Job, Postgres, SecretMove};
use crate::model::{Catalog, Operator, Spec};
use crate::state::Engine;

/// One application machine of the migration: its node at A, its node at B, and the job B runs.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationMachine {
    /// The machine's name (`<operator>-<app>`).
    pub machine: String,
    /// The application.
    pub application: String,
    /// The node at provider A.
    pub a: TestNode,
    /// The node at provider B.
    pub b: TestNode,
    /// The job `fedigen migrate run` gets at B, as JSON data (placed in `/etc/fedigen/migrate.json`).
    pub job: serde_json::Value,
    /// The application's own units (its manifest's health units): stopped at A by the freeze, started at B.
    /// Other units of the machine (a Garage node it shares) are no part of the move.
    pub units: Vec<String>,
    /// The identity files that must be equal at both sides.
    pub identity_files: Vec<String>,
    /// The manifest's admin action run at A before the move (a shell command), if any.
    pub seed: Option<String>,
    /// What the move leaves to people in this test (databases of other engines), for the description.
    pub not_moved: Vec<String>,
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
}

fn renamed(node: &TestNode, side: &str) -> TestNode {
    let name = format!("{}-{side}", node.name);
    TestNode {
        python: python_name(&name),
        name,
        ..node.clone()
    }
}

impl MigrationTest {
    /// The migration test of one operator, from its deployment test's nodes (each machine twice).
    pub fn new(spec: &Spec, catalog: &Catalog, operator: &Operator) -> Self {
        let deployment = DeploymentTest::new(spec, catalog, operator);
        let mut machines = Vec::new();
        for node in &deployment.nodes {
            let Some(app) = node.name.strip_prefix(&format!("{}-", operator.name)) else {
                continue;
            };
            let Some(manifest) = catalog.manifests.get(app) else {
                continue;
            };
            let a = renamed(node, "a");
            let b = renamed(node, "b");
            let source = format!("root@{}", a.name);
            let state = &manifest.state;
            let mut not_moved = Vec::new();
            let databases = state
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
                    source: Postgres {
                        host: a.name.clone(),
                        port: 5432,
                        user: db.user.clone(),
                        database: name.clone(),
                        password_file: None,
                    },
                    target: Postgres {
                        host: "/run/postgresql".into(),
                        port: 5432,
                        user: db.user.clone(),
                        database: name.clone(),
                        password_file: None,
                    },
                    replication: None,
                })
                .collect();
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
            let units = &manifest.health.units;
            let with = |mut argv: Vec<String>| {
                argv.extend(units.iter().cloned());
                argv
            };
            let ssh = |verb: &str| {
                with(vec![
                    "ssh".into(),
                    source.clone(),
                    "systemctl".into(),
                    verb.into(),
                ])
            };
            let job = Job {
                operator: operator.name.clone(),
                databases,
                buckets: Vec::new(),
                directories,
                identity: identity.clone(),
                commands: Commands {
                    freeze: vec![ssh("stop")],
                    start: vec![with(vec!["systemctl".into(), "start".into()])],
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
                    health_timeout_seconds: crate::migrate::plan::HEALTH_TIMEOUT_SECONDS,
                    dns_switch: Vec::new(),
                    source_start: vec![ssh("start")],
                },
            };
            debug_assert!(job.problems().is_empty(), "{:?}", job.problems());
            machines.push(MigrationMachine {
                machine: node.name.clone(),
                application: app.to_owned(),
                identity_files: identity
                    .iter()
                    .map(|s| s.target.display().to_string())
                    .collect(),
                job: serde_json::to_value(&job).expect("a job serialises"),
                units: units.clone(),
                seed: manifest.admin_action.as_ref().map(|a| a.command.clone()),
                not_moved,
                a,
                b,
            });
        }
        let not_moved: Vec<String> = machines.iter().flat_map(|m| m.not_moved.clone()).collect();
        Self {
            test_name: format!("fedigen-migrate-{}", operator.name),
            description: format!(
                "operator {}: seeded at provider A, moved to provider B with `fedigen migrate run` (databases, folders, identity; buckets need both Garage clusters, not in this test{}), B healthy with A's identity, A stopped",
                operator.name,
                if not_moved.is_empty() {
                    String::new()
                } else {
                    format!("; not moved: {}", not_moved.join(", "))
                }
            ),
            cores: deployment.cores.saturating_mul(2).max(1),
            machines,
        }
    }
}
