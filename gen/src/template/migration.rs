//! The data of `templates/_tests/migration.nix.hbs` ([`MigrationTest`]): one operator's migration as a NixOS VM
//! test. Provider A's machines and provider B's machines both run the operator's generated modules (the same
//! domain, applications and settings: what `fedigen migrate plan` puts at B), a client reaches them. Each provider
//! has its own object storage, a one-node Garage test cluster ([`DeploymentStorage::on_side`]: its own node name
//! and test key, the operator's buckets, its own test S3 keys, and its own `s3.`/`media.` hosts under the
//! provider's domain: A's the specification's, B's [`PROVIDER_B_DOMAIN`]), and each side's nodes resolve that
//! side's names. The test seeds A through each application's admin action and `[test]` steps (a status with an
//! image), proves the media is in A's bucket, lets B's job into A's databases as the planner asks A's provider to
//! (over TCP with a password), runs the engine (`fedigen migrate run`, with a job built here the way the planner
//! builds it, its databases by the planner's own [`database_move`], pointed at the test's nodes: databases of both
//! engines, buckets between the two clusters, folders, identity), and checks at B: the applications healthy, the
//! identity files byte for byte A's, the engine's own verification equal, A's applications stopped; then the
//! client follows the DNS switch, every object A held is in B's bucket with the same bytes, and the data reads
//! back at B through the same domain with its media served from B's media host. An application whose manifest has
//! `[[test.federation.moved]]` steps gets a peer ([`MigrationPeer`]): a third instance under another domain that
//! federates with A's node before the move and must still hear from B's after it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::context::{
    DeploymentStorage, DeploymentTest, FederationInstance, FederationStepData, FederationTest,
    Health, StorageSide, TestNode, TestResources, TestSecretFile,
};
use super::shell::shell_quote;
use super::test_data::{DataNode, data_file};
use super::test_keys::{test_database_password, test_s3_key};
use crate::deploy::{self, python_name};
use crate::manifest::Manifest;
use crate::manifest::test_plan::Instance;
use crate::migrate::job::{BucketMove, Commands, DatabaseMove, DirectoryMove, Job, S3, SecretMove};
use crate::migrate::plan::{
    HEALTH_TIMEOUT_SECONDS, MIGRATE_SECRETS, database_move, freeze_commands, freeze_units,
    health_units, source_start_commands, target_start, target_stop,
};
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
    /// The application's own units (its manifest's health units) that B starts and the job's health checks:
    /// not a Garage node's (nor the endpoints' nginx on a machine running the test's Garage node).
    pub units: Vec<String>,
    /// The shell command that succeeds while any unit the freeze stops at A is active (`systemctl is-active`
    /// exits 0 if one of its units is): the health units above, the manifest's `freeze_also` (globs, quoted,
    /// as systemctl matches them against the loaded units) and its timers with their services. After the move
    /// it must fail at A.
    pub stopped_check: String,
    /// The identity files that must be equal at both sides.
    pub identity_files: Vec<String>,
    /// The manifest's admin action run at A before the move (a shell command), if any.
    pub seed: Option<String>,
    /// What A's provider does so B's job reads each database at A (the planner's manual step), run at A after
    /// the seed.
    pub source_access: Vec<SourceAccess>,
    /// What other servers know the instance by (the manifest's `[[test.identity]]`), read at A after the seed and
    /// at B after the DNS switch: equal, or followers and peers stop trusting it.
    pub public_identity: Vec<IdentityData>,
    /// A third instance federating with this machine's application, when its manifest has
    /// `[[test.federation.moved]]` steps.
    pub peer: Option<MigrationPeer>,
}

/// What A's provider does once so B's job can read one database at A: the planner's manual step ("A's database
/// must accept B over TCP with a password"), done as A's provider would, as root on A's machine through the
/// database server's local socket.
#[derive(Debug, Clone, Serialize)]
pub struct SourceAccess {
    /// What it does, for the test's log.
    pub description: String,
    /// The shell command.
    pub command: String,
}

/// The addresses of the NixOS test network (the driver's `192.168.<vlan>.<node>`): where B's job connects from.
const TEST_NETWORK_HOSTS: &str = "192.168.%";

impl SourceAccess {
    /// The access of B's job to database `d` at A, with the password its source's `password_file` holds (a test
    /// password of hexadecimal digits, [`test_database_password`], read from that file on A too).
    ///
    /// PostgreSQL: the role gets the password (psql's `:"role"` and `:'password'` quote them; the `side` module's
    /// `host … scram-sha-256` lines take it); the role's other connections stay local by peer. MariaDB: an account
    /// `<user>@'192.168.%'` (the test network) with the password and the privileges `migrate plan` asks A's
    /// provider for (SELECT, LOCK TABLES, SHOW VIEW, TRIGGER, EVENT on the database, SELECT on `mysql.proc` for
    /// routines), so the test proves the account production will have. Not `<user>@'%'`: nixpkgs' mysql.nix
    /// makes the local account with no host part, which is `@'%'` with `unix_socket`, so `CREATE USER IF NOT
    /// EXISTS` changed nothing and B was refused (review 22, F1); the test network's pattern is more specific, so
    /// TCP logins from B take it while the local socket login (host `localhost`) keeps the `unix_socket` one.
    /// `CREATE OR REPLACE` sets the password even where an account was left. `REQUIRE SSL`, as the planner asks
    /// of A's provider: B's job connects with TLS (the `side` module gives MariaDB a certificate), and a login in
    /// clear is refused, so the move proves it was encrypted (PostgreSQL's side: `hostssl` lines).
    fn of(d: &DatabaseMove) -> Self {
        let file = d
            .source
            .password_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let password = format!("\"$(cat {})\"", shell_quote(&file));
        let command = match d.engine {
            Engine::Postgresql => format!(
                "{{ printf '%s\\n' {}; printf '%s%s%s\\n' {} {password} {}; printf '%s\\n' {}; }} | runuser -u postgres -- psql -v ON_ERROR_STOP=1 --dbname=postgres",
                shell_quote(&format!("\\set role '{}'", d.source.user)),
                shell_quote("\\set password '"),
                shell_quote("'"),
                shell_quote("ALTER ROLE :\"role\" WITH LOGIN PASSWORD :'password';"),
            ),
            Engine::Mysql => {
                let account = format!(
                    "{}@'{TEST_NETWORK_HOSTS}'",
                    crate::migrate::mysql::quote_identifier(&d.source.user)
                );
                format!(
                    "printf '%s%s%s\\n' {} {password} {} | mariadb --user=root",
                    shell_quote(&format!("CREATE OR REPLACE USER {account} IDENTIFIED BY '")),
                    shell_quote(&format!(
                        "' REQUIRE SSL; GRANT SELECT, LOCK TABLES, SHOW VIEW, TRIGGER, EVENT ON {}.* TO {account}; GRANT SELECT ON mysql.proc TO {account};",
                        crate::migrate::mysql::quote_identifier(&d.source.database)
                    )),
                )
            }
        };
        Self {
            description: format!(
                "A's provider lets B's job read the {} database {} over TCP as {} with a password",
                d.engine.name(),
                d.name,
                d.source.user
            ),
            command,
        }
    }
}

/// A third instance of a machine's application, under another domain (the federation test's second instance),
/// federating with the operator's: the manifest's `[[test.federation.steps]]` run with A's node as the first
/// instance before the move, its `[[test.federation.moved]]` with B's node after the move and the DNS switch (the
/// peer then resolves the application's host at B). Built as the federation test builds its instances
/// (`common.testInstance`, from the same [`FederationTest`] data).
#[derive(Debug, Clone, Serialize)]
pub struct MigrationPeer {
    /// Its node (`name`: `<machine>-peer`, `python`), domain, host, virtual host and HTTP checks.
    pub instance: FederationInstance,
    /// Whether it serves HTTPS.
    pub https: bool,
    /// Its resources (the manifest's defaults, as each federation test instance's).
    pub resources: TestResources,
    /// The options taking its secret files: option name to the file's path.
    pub secret_options: BTreeMap<String, String>,
    /// Its test secret files.
    pub secret_files: Vec<TestSecretFile>,
    /// The nixpkgs packages the steps use.
    pub packages: Vec<String>,
    /// The application's settings its tests need (an attribute set, possibly empty).
    pub settings: serde_json::Value,
    /// The upstream settings every test node of the application needs (`[test] config`).
    pub config: serde_json::Value,
    /// The upstream settings of federating in the test network (`[test.federation] config`): A's and B's nodes of
    /// the machine get them too.
    pub federation_config: serde_json::Value,
    /// The units and ports that must be up on it (its HTTP checks are the instance's).
    pub health: Health,
    /// The federation steps before the move: the first instance is A's node.
    pub steps: Vec<FederationStepData>,
    /// The steps after the move and the DNS switch: the first instance is B's node.
    pub moved: Vec<FederationStepData>,
}

impl MigrationPeer {
    /// The peer of machine `machine` (its nodes `a` and `b`), when `manifest` has `[[test.federation.moved]]`.
    fn new(manifest: &Manifest, machine: &str, a: &TestNode, b: &TestNode) -> Option<Self> {
        let federation = manifest
            .test
            .federation
            .as_ref()
            .filter(|f| !f.moved.is_empty())?;
        let test = FederationTest::new(manifest)?;
        let name = format!("{machine}-peer");
        let instance = FederationInstance {
            python: python_name(&name),
            name,
            ..FederationInstance::of(manifest, Instance::Second)
        };
        let peer = (instance.python.as_str(), instance.host.as_str());
        Some(Self {
            steps: FederationStepData::all(&federation.steps, (&a.python, &a.host), peer),
            moved: FederationStepData::all(&federation.moved, (&b.python, &b.host), peer),
            https: test.https,
            resources: test.resources,
            secret_options: test
                .secrets
                .values()
                .map(|s| (s.option.clone(), s.test_path.clone()))
                .collect(),
            secret_files: test.secret_files,
            packages: test.packages,
            settings: test.settings,
            config: test.config,
            federation_config: test.federation_config,
            health: test.health,
            instance,
        })
    }
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

/// The data of `templates/_tests/migration.nix.hbs`: one operator's migration test file, which calls the test
/// every operator shares (`vm-tests/generated/lib/migration.nix`) with the operator's data file.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationTestFile {
    /// The cores the test needs (the harness header).
    pub cores: u32,
    /// The harness header's description.
    pub description: String,
    /// The operator's data file ([`MigrationTest::data_json`]), beside the test file.
    pub data_file: String,
}

/// A migration test's data file ([`MigrationTest::data_json`]): what `lib/migration.nix` reads of a
/// [`MigrationTest`], named field by field, so that a field added to a struct for another test (a deployment
/// test's upgrade, say) does not reach the file unseen.
#[derive(Serialize)]
struct Data<'a> {
    #[serde(rename = "//")]
    marker: &'a str,
    test_name: &'a str,
    machines: Vec<MachineData<'a>>,
    hosts_a: &'a BTreeMap<String, Vec<String>>,
    hosts_b: &'a BTreeMap<String, Vec<String>>,
    hosts_client: &'a BTreeMap<String, Vec<String>>,
    hosts_peer: Option<&'a BTreeMap<String, Vec<String>>>,
    storage_a: Option<&'a DeploymentStorage>,
    storage_b: Option<&'a DeploymentStorage>,
}

/// A [`MigrationMachine`] in the data file, its nodes as [`NodeData`].
#[derive(Serialize)]
struct MachineData<'a> {
    machine: &'a str,
    application: &'a str,
    a: NodeData<'a>,
    b: NodeData<'a>,
    job: &'a serde_json::Value,
    units: &'a [String],
    stopped_check: &'a str,
    identity_files: &'a [String],
    seed: Option<&'a str>,
    source_access: &'a [SourceAccess],
    public_identity: &'a [IdentityData],
    peer: Option<&'a MigrationPeer>,
}

/// A [`TestNode`] in the data file: what the shared test reads of it (A's steps, B's rechecks; not the
/// deployment test's repeatability and upgrade).
#[derive(Serialize)]
struct NodeData<'a> {
    name: &'a str,
    python: &'a str,
    module: &'a str,
    host: &'a str,
    https: bool,
    cores: u32,
    memory_mib: u32,
    secrets: &'a [TestSecretFile],
    packages: &'a [String],
    virtual_host: &'a [String],
    settings: &'a serde_json::Value,
    config: &'a serde_json::Value,
    health: HealthData<'a>,
    /// The unit making the operator's administrator, when the module makes one.
    admin_unit: Option<&'a str>,
    steps: &'a [super::context::StepData],
    rechecks: &'a [super::context::StepData],
    garage: bool,
    stored: &'a [super::context::StoredStepData],
}

/// What must be up on a node, as the shared test checks it: the units, and the HTTP checks.
#[derive(Serialize)]
struct HealthData<'a> {
    units: &'a [String],
    http: &'a [super::context::HttpCommand],
}

impl<'a> NodeData<'a> {
    fn of(
        node: &'a TestNode,
        steps: &'a [super::context::StepData],
        rechecks: &'a [super::context::StepData],
    ) -> Self {
        Self {
            name: &node.name,
            python: &node.python,
            module: &node.module,
            host: &node.host,
            https: node.https,
            cores: node.cores,
            memory_mib: node.memory_mib,
            secrets: &node.secrets,
            packages: &node.packages,
            virtual_host: &node.virtual_host,
            settings: &node.settings,
            config: &node.config,
            health: HealthData {
                units: &node.health.units,
                http: &node.health.http,
            },
            admin_unit: node.admin.as_ref().map(|a| a.unit.as_str()),
            steps,
            rechecks,
            garage: node.garage,
            stored: &node.stored,
        }
    }
}

/// One operator's migration test as data: the argument of the function `templates/_tests/migration-lib.nix.hbs`
/// renders, written as JSON beside the operator's test file ([`MigrationTest::data_json`]).
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
    /// The host names the machines' peers resolve (`null` when none has a peer): the client's (a peer is
    /// elsewhere on the Internet), and each peer's own. A's and B's nodes resolve the peers' hosts too.
    pub hosts_peer: Option<BTreeMap<String, Vec<String>>>,
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
    /// The operator's data file: this test as pretty JSON, the generated-file marker `marker` its first member
    /// (`"//"`, [`crate::write::JSON_MARKER`]). Why JSON and not Nix: the data is most of a migration test, and
    /// the shared function reads it with `builtins.fromJSON`, so a large provider's generation writes and checks
    /// it at serde's speed, not a Nix parser's (issue #18).
    ///
    /// What a rendered test refused, the data is refused for here, since the shared function cannot: a node's
    /// module that is no source path relative to the test file (`nix-source-path`: the function would import
    /// whatever path the data named), a script name that is no Python identifier (`py-name`: it is written into
    /// the script as code), a node name given twice, `client` included (a set literal refused that; the
    /// function's `listToAttrs` and `//` would keep one node silently), and any value `nix-value` refused (a NUL,
    /// which `builtins.fromJSON` would cut the string at; an integer outside Nix's; `_type` and the other names
    /// the module system reads as directives).
    pub fn data_json(&self, marker: &str) -> Result<String, String> {
        let data = Data {
            marker,
            test_name: &self.test_name,
            machines: self
                .machines
                .iter()
                .map(|m| MachineData {
                    machine: &m.machine,
                    application: &m.application,
                    a: NodeData::of(&m.a, &m.a.steps, &[]),
                    b: NodeData::of(&m.b, &[], &m.b.rechecks),
                    job: &m.job,
                    units: &m.units,
                    stopped_check: &m.stopped_check,
                    identity_files: &m.identity_files,
                    seed: m.seed.as_deref(),
                    source_access: &m.source_access,
                    public_identity: &m.public_identity,
                    peer: m.peer.as_ref(),
                })
                .collect(),
            hosts_a: &self.hosts_a,
            hosts_b: &self.hosts_b,
            hosts_client: &self.hosts_client,
            hosts_peer: self.hosts_peer.as_ref(),
            storage_a: self.storage_a.as_ref(),
            storage_b: self.storage_b.as_ref(),
        };
        let mut nodes = Vec::new();
        for machine in &self.machines {
            for side in [&machine.a, &machine.b] {
                nodes.push(DataNode {
                    name: &side.name,
                    python: &side.python,
                    module: Some(&side.module),
                });
            }
            if let Some(peer) = &machine.peer {
                nodes.push(DataNode {
                    name: &peer.instance.name,
                    python: &peer.instance.python,
                    module: None,
                });
            }
        }
        let storages = [&self.storage_a, &self.storage_b];
        for extra in storages.iter().filter_map(|s| s.as_ref()?.extra.as_ref()) {
            nodes.push(DataNode {
                name: &extra.name,
                python: &extra.python,
                module: None,
            });
        }
        let garage: Vec<&str> = storages
            .iter()
            .filter_map(|s| Some(s.as_ref()?.python.as_str()))
            .collect();
        data_file(&self.test_name, &nodes, &garage, &data)
    }

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
        // B's job reaches A's machines by their node names (`ssh root@<machine>-a`, the databases' host). The test
        // network's /etc/hosts names each node by its networking.hostName only (nixpkgs'
        // nixos/lib/testing/network.nix, networking.extraHosts), which the generated module sets to the machine's
        // own name, the same at A and at B: without this, B could not resolve A's node (review-34).
        for a in &nodes_a {
            hosts_b
                .entry(a.name.clone())
                .or_default()
                .push(a.name.clone());
        }
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
        let mut peer_hosts = BTreeMap::new();
        let mut peer_cores = 0u32;
        for (mut a, mut b) in nodes_a.into_iter().zip(nodes_b) {
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
            // Each database as the planner moves it (the one place: connections, URL rewrites between A's media
            // host and B's), from A's node; its password file placed at B, where the job reads it, and at A, where
            // the test gives it to the role or account as A's provider would.
            let mut manual = Vec::new();
            let databases: Vec<DatabaseMove> = state
                .databases
                .iter()
                .map(|(name, db)| {
                    database_move(
                        (spec, catalog),
                        Some((&spec_b, catalog)),
                        operator,
                        &app,
                        manifest,
                        name,
                        db,
                        a.name.clone(),
                        &mut manual,
                    )
                })
                .collect();
            debug_assert!(manual.is_empty(), "{manual:?}");
            for d in &databases {
                let Some(path) = &d.source.password_file else {
                    continue;
                };
                let path = path.display().to_string();
                let secret = TestSecretFile {
                    name: path.rsplit('/').next().unwrap_or(&path).to_owned(),
                    value: test_database_password(&operator.name, &d.name),
                    path,
                    owner: "root".into(),
                    group: "root".into(),
                    mode: "0400".into(),
                    unit: "fedigen-migrate".into(),
                };
                a.secrets.push(secret.clone());
                b.secrets.push(secret);
            }
            let source_access = databases.iter().map(SourceAccess::of).collect();
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
            let units: Vec<String> = health_units(manifest, a.garage);
            // A's stores (its Redis server) stop with the application and are checked with it.
            let mut stopped: Vec<String> = freeze_units(manifest, a.garage);
            stopped.extend(manifest.state.stores.iter().cloned());
            let job = Job {
                operator: operator.name.clone(),
                databases,
                buckets,
                directories,
                identity: identity.clone(),
                commands: Commands {
                    target_stop: target_stop(manifest),
                    freeze: freeze_commands(&source, manifest, a.garage),
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
                    source_start: source_start_commands(&source, manifest, a.garage),
                },
            };
            debug_assert!(job.problems().is_empty(), "{:?}", job.problems());
            let peer = MigrationPeer::new(manifest, &machine, &a, &b);
            if let Some(peer) = &peer {
                peer_hosts.insert(peer.instance.name.clone(), vec![peer.instance.host.clone()]);
                peer_cores = peer_cores.saturating_add(peer.resources.cores);
            }
            machines.push(MigrationMachine {
                machine,
                application: app.clone(),
                identity_files: identity
                    .iter()
                    .map(|s| s.target.display().to_string())
                    .collect(),
                job: serde_json::to_value(&job).expect("a job serialises"),
                units,
                stopped_check: format!(
                    "systemctl is-active {}",
                    stopped
                        .iter()
                        .map(|u| shell_quote(u))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                seed: manifest.admin_action.as_ref().map(|a| a.command.clone()),
                source_access,
                public_identity: manifest
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
                    .collect(),
                peer,
                a,
                b,
            });
        }
        // The peers: A's and B's nodes resolve them (they federate with them), and they resolve what the client
        // does (A's names until their own DNS switch) and each other's.
        let hosts_peer =
            (!peer_hosts.is_empty()).then(|| merged(hosts_client.clone(), &peer_hosts));
        let hosts_a = merged(hosts_a, &peer_hosts);
        let hosts_b = merged(hosts_b, &peer_hosts);
        let extra = [&storage_a, &storage_b]
            .iter()
            .filter(|s| s.as_ref().is_some_and(|s| s.extra.is_some()))
            .count() as u32;
        let peers: Vec<&str> = machines
            .iter()
            .filter_map(|m| m.peer.as_ref().map(|_| m.machine.as_str()))
            .collect();
        Self {
            test_name: format!("fedigen-migrate-{}", operator.name),
            description: format!(
                "operator {}: seeded at provider A (media in A's Garage), moved to provider B with `fedigen migrate run` (databases over TCP with a password, buckets between the two Garage clusters, folders, identity), B healthy with A's identity and A's objects, the data read back at B through the same domain after the DNS switch, A stopped{}",
                operator.name,
                if peers.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; a peer instance under another domain federating with {} before the move still hears from it at B",
                        peers.join(", ")
                    )
                }
            ),
            // Both sides' machines, each side's Garage-only node (two cores), and the peers.
            cores: cores
                .saturating_mul(2)
                .saturating_add(2 * extra)
                .saturating_add(peer_cores)
                .max(1),
            machines,
            hosts_a,
            hosts_b,
            hosts_client,
            hosts_peer,
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

    /// The data file is the test as JSON, marker first, and refuses what a rendered test refused: a module that
    /// is no source path, a script name that is no Python identifier, a node name given twice (`client`
    /// included).
    #[test]
    fn data_files_hold_the_test_and_refuse_what_a_rendered_test_refused() {
        let (spec, catalog) = example();
        let test = MigrationTest::new(&spec, &catalog, &spec.operators[0]);
        let text = test.data_json("Generated by fedigen from x").unwrap();
        assert!(
            text.starts_with("{\n  \"//\": \"Generated by fedigen from x\","),
            "{text}"
        );
        let data: serde_json::Value = serde_json::from_str(&text).unwrap();
        let whole = serde_json::to_value(&test).unwrap();
        for key in [
            "test_name",
            "hosts_a",
            "hosts_b",
            "hosts_client",
            "hosts_peer",
            "storage_a",
        ] {
            assert_eq!(data[key], whole[key], "{key}");
        }
        let (machine, whole_machine) = (&data["machines"][0], &whole["machines"][0]);
        for key in ["job", "units", "source_access", "public_identity", "peer"] {
            assert_eq!(machine[key], whole_machine[key], "{key}");
        }
        // Only what the shared test reads of a node: A's steps, B's rechecks, not the deployment test's upgrade.
        assert_eq!(machine["a"]["steps"], whole_machine["a"]["steps"]);
        assert_eq!(machine["b"]["rechecks"], whole_machine["b"]["rechecks"]);
        assert_eq!(machine["b"]["steps"], serde_json::json!([]));
        assert!(
            machine["a"].get("upgrade").is_none()
                && machine["a"].get("repeat_description").is_none()
        );
        let refused = |change: &dyn Fn(&mut MigrationTest), says: &str| {
            let mut bad = test.clone();
            change(&mut bad);
            let e = bad.data_json("m").unwrap_err();
            assert!(e.contains(says), "{says}: {e}");
        };
        refused(
            &|t| t.machines[0].a.module = "/etc/x.nix".into(),
            "/etc/x.nix",
        );
        refused(
            &|t| t.machines[0].b.python = "import os".into(),
            "no Python identifier",
        );
        refused(
            &|t| t.machines[0].b.name = "client".into(),
            "client is given twice",
        );
        // `builtins.fromJSON` would cut the string at the NUL: refused as `nix-value` refused it.
        refused(&|t| t.machines[0].a.host = "a\u{0}b".into(), "NUL");
        refused(
            &|t| t.machines[0].b.name = t.machines[0].a.name.clone(),
            "is given twice",
        );
        let garage = test.storage_a.clone().unwrap();
        if let Some(extra) = &garage.extra {
            let name = extra.name.clone();
            refused(&|t| t.machines[0].a.name = name.clone(), "is given twice");
        }
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

    /// Issue #16: Pixelfed's MySQL database moves in the test's job as the planner moves it (A's node over TCP on
    /// port 3306 with the password file the planner names; B's socket as the application's OS user), that password
    /// file holds the same test password at B (where the job reads it, root's, 0400) and at A (where the test gives
    /// it to the account, as A's provider would), and the stored media URLs are rewritten from A's media prefix
    /// to B's: the prefixes the test's `stored` steps expect at A and at B. Fails on a job leaving MySQL out.
    #[test]
    fn pixelfed_moves_its_mysql_database_with_a_password_and_its_media_urls_to_b() {
        let (spec, catalog) = example();
        let operator = spec
            .operators
            .iter()
            .find(|o| o.name == "amstelland")
            .unwrap();
        let test = MigrationTest::new(&spec, &catalog, operator);
        let pixelfed = test
            .machines
            .iter()
            .find(|m| m.application == "pixelfed")
            .unwrap();
        let job: Job = serde_json::from_value(pixelfed.job.clone()).unwrap();
        assert!(job.problems().is_empty(), "{:?}", job.problems());
        let db = job
            .databases
            .iter()
            .find(|d| d.engine == Engine::Mysql)
            .expect("Pixelfed's MySQL database is in the job");
        assert_eq!(db.source.host, pixelfed.a.name);
        assert_eq!(db.source.port, 3306);
        assert_eq!(db.target.host, "/run/mysqld/mysqld.sock");
        assert_eq!(db.target.os_user.as_deref(), Some(db.target.user.as_str()));
        let file = db
            .source
            .password_file
            .as_ref()
            .expect("A's account has a password")
            .display()
            .to_string();
        assert!(file.starts_with(MIGRATE_SECRETS), "{file}");
        let placed = |node: &TestNode| {
            node.secrets
                .iter()
                .find(|s| s.path == file)
                .unwrap_or_else(|| panic!("{}: no {file}", node.name))
                .clone()
        };
        let (at_a, at_b) = (placed(&pixelfed.a), placed(&pixelfed.b));
        assert_eq!(at_a.value, at_b.value);
        assert_eq!(
            (at_b.owner.as_str(), at_b.group.as_str(), at_b.mode.as_str()),
            ("root", "root", "0400")
        );
        assert!(
            pixelfed
                .source_access
                .iter()
                .any(|s| s.command.contains(&file)),
            "{:?}",
            pixelfed.source_access
        );
        // Every stored URL column is rewritten from the prefix A's stored steps print to the one B's expect.
        assert!(!db.url_rewrites.is_empty());
        let prefixes = |node: &TestNode| -> Vec<String> {
            node.stored.iter().map(|s| s.prefix.clone()).collect()
        };
        assert!(!prefixes(&pixelfed.b).is_empty());
        for rewrite in &db.url_rewrites {
            assert!(prefixes(&pixelfed.a).contains(&rewrite.from), "{rewrite:?}");
            assert!(prefixes(&pixelfed.b).contains(&rewrite.to), "{rewrite:?}");
        }
        assert!(!test.description.contains("not moved"));
    }

    /// The access commands hand each server the SQL meant, whatever the quoting, and never the password as an
    /// argument (it would be readable in /proc/*/cmdline while the client runs; review 22, W3): run in bash as
    /// the test driver runs them, with the database clients and `cat` replaced by functions printing their
    /// arguments and standard input, MariaDB reads the account with the file's password and the database's
    /// privileges from its input, and psql sets the role's password through variables it reads there.
    #[test]
    fn source_access_gives_each_server_the_statements_meant() {
        let (spec, catalog) = example();
        let run = |operator: &str, app: &str| -> (String, String) {
            let operator = spec.operators.iter().find(|o| o.name == operator).unwrap();
            let test = MigrationTest::new(&spec, &catalog, operator);
            let machine = test.machines.iter().find(|m| m.application == app).unwrap();
            let stubs = "cat() { printf 'the-password\\n'; }\n\
                         mariadb() { printf 'argv:'; printf ' [%s]' \"$@\"; printf '\\nstdin: '; command cat; }\n\
                         runuser() { printf 'argv:'; printf ' [%s]' \"$@\"; printf '\\nstdin: '; command cat; }\n";
            let command = &machine.source_access[0].command;
            let out = std::process::Command::new("bash")
                .args(["-c", &format!("set -euo pipefail\n{stubs}{command}")])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let out = String::from_utf8(out.stdout).unwrap();
            let (argv, stdin) = out.split_once("\nstdin: ").expect("the client ran");
            assert!(!argv.contains("the-password"), "password in argv: {argv}");
            (argv.to_owned(), stdin.to_owned())
        };
        assert_eq!(
            run("amstelland", "pixelfed"),
            (
                "argv: [--user=root]".to_owned(),
                "CREATE OR REPLACE USER `pixelfed`@'192.168.%' IDENTIFIED BY 'the-password' REQUIRE SSL; GRANT SELECT, LOCK TABLES, SHOW VIEW, TRIGGER, EVENT ON `pixelfed`.* TO `pixelfed`@'192.168.%'; GRANT SELECT ON mysql.proc TO `pixelfed`@'192.168.%';\n".to_owned()
            )
        );
        let (argv, stdin) = run("digitalevrijheid", "matrix-synapse");
        assert!(argv.contains("[-v] [ON_ERROR_STOP=1]"), "{argv}");
        assert_eq!(
            stdin,
            "\\set role 'matrix-synapse'\n\\set password 'the-password'\nALTER ROLE :\"role\" WITH LOGIN PASSWORD :'password';\n"
        );
    }

    /// A machine whose manifest has `[[test.federation.moved]]` (Matrix's) gets a peer under the federation
    /// test's second domain: A's and B's nodes resolve it, it resolves the application's host (at A's node until
    /// its DNS switch), its steps run with A's node first and its moved steps with B's, and its cores count.
    #[test]
    fn a_machine_with_moved_federation_steps_has_a_peer() {
        let (spec, catalog) = example();
        let operator = spec
            .operators
            .iter()
            .find(|o| o.name == "digitalevrijheid")
            .unwrap();
        let test = MigrationTest::new(&spec, &catalog, operator);
        let matrix = test
            .machines
            .iter()
            .find(|m| m.application == "matrix-synapse")
            .unwrap();
        let peer = matrix.peer.as_ref().expect("Matrix has moved steps");
        let manifest = &catalog.manifests["matrix-synapse"];
        let second = FederationInstance::of(manifest, Instance::Second);
        assert_eq!(peer.instance.name, format!("{}-peer", matrix.machine));
        assert_eq!(peer.instance.host, second.host);
        for hosts in [&test.hosts_a, &test.hosts_b] {
            assert_eq!(hosts[&peer.instance.name], vec![second.host.clone()]);
        }
        let hosts_peer = test.hosts_peer.as_ref().unwrap();
        assert!(hosts_peer[&matrix.a.name].contains(&matrix.a.host));
        assert!(hosts_peer[&peer.instance.name].contains(&peer.instance.host));
        let firsts = |steps: &[FederationStepData]| -> Vec<String> {
            steps
                .iter()
                .filter(|s| s.python != peer.instance.python)
                .map(|s| s.python.clone())
                .collect()
        };
        assert!(
            !firsts(&peer.steps).is_empty()
                && firsts(&peer.steps).iter().all(|p| *p == matrix.a.python)
        );
        assert!(
            !firsts(&peer.moved).is_empty()
                && firsts(&peer.moved).iter().all(|p| *p == matrix.b.python)
        );
        let without: u32 = {
            let mut plain = catalog.clone();
            if let Some(m) = plain.manifests.get_mut("matrix-synapse")
                && let Some(f) = m.test.federation.as_mut()
            {
                f.moved.clear();
            }
            MigrationTest::new(&spec, &plain, operator).cores
        };
        assert_eq!(test.cores, without + peer.resources.cores);
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
