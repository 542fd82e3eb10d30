//! The data of `templates/_tests/storage.nix.hbs` ([`StorageTest`]): the provider's object storage as a NixOS VM
//! test. Every Garage node of the provider runs from its generated machine (a node that shares an operator's
//! machine runs on a Garage-only test node with that machine's host name instead, so the test boots Garage and
//! not the operator's application), one operator's Mastodon machine stores its media in its bucket, and a client
//! reaches them. The test checks the provisioning unit on the first node, `/health` on every node, that every
//! node sees the others, that Mastodon's uploaded image is served from `https://media.<provider>/<bucket>/`
//! with the bytes uploaded, and that a second `fedigen storage apply` changes nothing.
//!
//! Node keys: the generated description and `bootstrap_peers` name the provider's node ids, whose secret keys
//! the test cannot have. The test gives each node a fixed test key (seeded from its name, [`test_node_key`])
//! and the description and peers with those ids instead; nothing else of the cluster's settings changes.

use std::collections::BTreeMap;

use serde::Serialize;

use super::context::{DeploymentTest, TestNode, TestSecretFile};
use super::shell::step_command;
use crate::deploy::python_name;
use crate::deploy::secrets::Holds;
use crate::deploy::storage;
use crate::manifest::test_plan::StepNode;
use crate::model::Operator;
use crate::model::{Catalog, Spec};
use crate::storage::description::Description;
use crate::storage::node_key::NodeKey;

/// The test's RPC secret (64 hex digits), admin and metrics tokens: the environment file every node reads.
pub(crate) const TEST_ENVIRONMENT: &str = "GARAGE_RPC_SECRET=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\nGARAGE_ADMIN_TOKEN=fedigen-test-admin-token\nGARAGE_METRICS_TOKEN=fedigen-test-metrics-token\n";

/// The admin token of [`TEST_ENVIRONMENT`], for the script's admin API calls.
pub(crate) const TEST_ADMIN_TOKEN: &str = "fedigen-test-admin-token";

/// One Garage node of the storage test (`nodes.[i].*`).
#[derive(Debug, Clone, Serialize)]
pub struct StorageNode {
    /// The test node's name (the machine's name, `garage-<node>` or the shared machine's).
    pub name: String,
    /// Its name in the test script.
    pub python: String,
    /// The Garage node's name in the provider's description (`ams1`).
    pub node: String,
    /// Its generated machine module, relative to `vm-tests/generated/`; `None` for a Garage-only node standing
    /// in for an operator's machine.
    pub module: Option<String>,
    /// The operator machine this node stands in for, if any (for the description and the script's comments).
    pub replaces: Option<String>,
    /// The host name other nodes reach its RPC by in the test (its machine's FQDN, in every node's `hosts`).
    pub rpc_host: String,
    /// `host:port` of its RPC in the test (what `bootstrap_peers` names).
    pub rpc_public_addr: String,
    /// Its test node key (seed and public key), as octal escapes for `printf` (binary: not a text secret).
    pub node_key_printf: String,
    /// Where the machine reads its node key.
    pub node_key_path: String,
    /// The text secret files to place (the environment file; on the first node the applications' key files).
    pub secrets: Vec<TestSecretFile>,
    /// Whether it is the node that runs `fedigen-storage-apply`.
    pub first: bool,
}

/// The data of `templates/_tests/storage.nix.hbs`.
#[derive(Debug, Clone, Serialize)]
pub struct StorageTest {
    /// The NixOS test's name (`fedigen-storage`).
    pub test_name: String,
    /// The harness header's description.
    pub description: String,
    /// The cores the test needs.
    pub cores: u32,
    /// Every host name of the test, by node name (in every node's `/etc/hosts`).
    pub hosts: BTreeMap<String, Vec<String>>,
    /// The Garage nodes, the first one first.
    pub nodes: Vec<StorageNode>,
    /// The storage description the first node applies: the generated one with the test nodes' ids.
    pub description_json: serde_json::Value,
    /// `bootstrap_peers` with the test nodes' ids.
    pub bootstrap_peers: Vec<String>,
    /// The S3 API's host (`s3.<provider domain>`).
    pub s3_host: String,
    /// The public media host (`media.<provider domain>`).
    pub media_host: String,
    /// The Mastodon machine storing its media in the cluster.
    pub mastodon: TestNode,
    /// What the URL of an uploaded image must start with: `https://media.<provider domain>/<bucket>/`.
    pub media_prefix: String,
    /// The admin token the script's admin API calls send.
    pub admin_token: String,
    /// The Mastodon key's file on the first node (what the apply unit imports, `AWS_ACCESS_KEY_ID=…`).
    pub mastodon_key_file: String,
    /// The provider's domain (`fediversity.domain` of a Garage-only node).
    pub provider_domain: String,
    /// The cluster's S3 region (what an S3 client signs with).
    pub region: String,
    /// How many Garage nodes (each must see this many up).
    pub node_count: usize,
}

/// A fixed test key for Garage node `node`: its seed is the node's name repeated (tests only; the id is the
/// public key, so every node's id is known when the test is generated).
pub(crate) fn test_node_key(node: &str) -> NodeKey {
    let mut seed = [0u8; 32];
    let name = format!("fedigen-test-{node}");
    for (i, b) in seed.iter_mut().enumerate() {
        *b = name.as_bytes()[i % name.len()];
    }
    NodeKey::from_seed(seed)
}

/// The description's nodes with their test keys' ids ([`test_node_key`]): the one place a VM test replaces the
/// provider's node ids, whose secret keys a test cannot have.
pub(crate) fn with_test_node_ids(description: &mut Description) {
    for node in &mut description.nodes {
        node.id = test_node_key(&node.name).id();
    }
}

/// The test S3 key file of an operator's application (`AWS_ACCESS_KEY_ID=`, `AWS_SECRET_ACCESS_KEY=`), the same
/// on the application's machine and in the Garage node's copy. Each application of each operator has a key id
/// of its own, derived from both names: `fedigen storage apply` refuses one id under two names or files
/// (`resolve_key_ids`), so one shared test key would stop the provisioning unit of any test with two applications.
pub(crate) fn test_s3_key(operator: &str, app: &str) -> String {
    use sha2::{Digest, Sha256};
    let hex = |what: &str| {
        Sha256::digest(format!("fedigen-test-s3-{what}/{operator}/{app}"))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    format!(
        "AWS_ACCESS_KEY_ID=GK{}\nAWS_SECRET_ACCESS_KEY={}\n",
        &hex("id")[..24],
        hex("secret")
    )
}

/// The test value of a Garage node's secret: the node's key copy of an application's S3 key ([`test_s3_key`],
/// by the operator's index), else the generic placeholder of `deploy::storage::test_secret`.
fn test_secret_value(spec: &Spec, holds: &Holds) -> String {
    match holds {
        Holds::S3Key {
            operator: Some(i),
            app,
        } => spec
            .operators
            .get(*i)
            .map(|o| test_s3_key(&o.name, app))
            .unwrap_or_else(|| storage::test_secret(holds)),
        _ => storage::test_secret(holds),
    }
}

/// `bytes` as `printf` octal escapes (`\101`), so a binary file is written by a shell without a tool of its own.
fn printf_octal(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:03o}")).collect()
}

impl StorageTest {
    /// The storage test of the provider, or `None` when it has no object storage, no description (no bucket)
    /// or no operator running Mastodon with it.
    pub fn new(spec: &Spec, catalog: &Catalog) -> Option<Self> {
        let storage = spec.provider.object_storage.as_ref()?;
        let mut description = storage::description(spec, catalog)?;
        let (s3_host, media_host, _) = storage::endpoint_hosts(spec, catalog)?;
        let first = storage::designated_node(storage)?.to_owned();
        let mastodon_manifest = catalog.manifests.get("mastodon")?;
        let operator = spec.operators.iter().find(|o| {
            o.applications
                .get("mastodon")
                .is_some_and(|a| a.enable && a.buckets.len() <= 1)
        })?;
        let deployment = DeploymentTest::new(spec, catalog, operator);
        let machine = crate::deploy::application_machine(operator, "mastodon").0;
        let mastodon = deployment.nodes.into_iter().find(|n| n.name == machine)?;
        let bucket = storage::bucket_name(
            operator,
            "mastodon",
            &mastodon_manifest.needs.s3_buckets,
            "media",
        );
        let machines = crate::deploy::machines(spec, catalog);
        let mut nodes = Vec::new();
        let mut peers = Vec::new();
        let mut hosts: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, node) in &storage.nodes {
            let planned = storage::node_machine(&machines, name, node)?;
            // The machine's own addresses are the provider's, not the test network's: the nodes name each other
            // by their FQDNs in `hosts`, and each announces its test address (garageTest in the template).
            let rpc_host = planned.fqdn();
            let rpc_public_addr = storage::host_port(&rpc_host, storage::RPC_PORT);
            let key = test_node_key(name);
            let id = key.id();
            peers.push(format!("{id}@{rpc_public_addr}"));
            let shared = node.machine.is_some();
            let test_name = if shared {
                format!("garage-{name}")
            } else {
                planned.name.clone()
            };
            let mut secrets = vec![TestSecretFile {
                name: "garage-environment".into(),
                path: "/run/secrets/garage-environment".into(),
                value: TEST_ENVIRONMENT.into(),
                owner: "root".into(),
                group: "root".into(),
                mode: "0400".into(),
                unit: "garage.service".into(),
            }];
            let mut node_key_path = String::new();
            for secret in storage::node_secrets(spec, catalog, name) {
                if matches!(secret.holds, Holds::NodeKey(_)) {
                    node_key_path = secret.path.clone();
                    continue;
                }
                let value = test_secret_value(spec, &secret.holds);
                secrets.push(TestSecretFile {
                    name: secret.name.clone(),
                    path: secret.path.clone(),
                    value,
                    owner: secret.owner.clone(),
                    group: secret.group.clone(),
                    mode: secret.mode.to_owned(),
                    unit: secret.unit.clone(),
                });
            }
            if node_key_path.is_empty() {
                return None;
            }
            let mut names = vec![rpc_host.clone()];
            if *name == first {
                // The endpoints resolve to every node in production; one is enough for the test.
                names.extend([s3_host.clone(), media_host.clone()]);
            }
            hosts.insert(test_name.clone(), names);
            nodes.push(StorageNode {
                python: python_name(&test_name),
                name: test_name,
                node: name.clone(),
                module: (!shared)
                    .then(|| format!("../../{}/{}", crate::deploy::DEPLOYMENTS, planned.file)),
                replaces: shared.then(|| planned.name.clone()),
                rpc_host,
                rpc_public_addr,
                node_key_printf: printf_octal(&key.secret_bytes()),
                node_key_path,
                secrets,
                first: *name == first,
            });
        }
        hosts.insert(mastodon.name.clone(), vec![mastodon.host.clone()]);
        with_test_node_ids(&mut description);
        description.comment = Some(
            "The provider's storage description with the VM test's node ids (fedigen's storage test).".into(),
        );
        let nodes_len = nodes.len();
        let cores = nodes_len as u32 * 2 + mastodon.cores;
        Some(Self {
            test_name: "fedigen-storage".into(),
            description: format!(
                "object storage of {}: a {}-node Garage cluster provisioned by fedigen, Mastodon's media of {} in bucket {bucket} served from {media_host}, a second apply changing nothing",
                spec.provider.name,
                nodes.len(),
                operator.name
            ),
            cores,
            hosts,
            nodes,
            description_json: serde_json::to_value(&description).ok()?,
            bootstrap_peers: peers,
            media_prefix: format!("https://{media_host}/{bucket}/"),
            s3_host,
            media_host,
            mastodon,
            admin_token: TEST_ADMIN_TOKEN.into(),
            mastodon_key_file: storage::node_key_copy(&operator.name, "mastodon").1,
            provider_domain: spec.provider.domain.clone(),
            region: storage.region.clone(),
            node_count: nodes_len,
        })
    }
}

/// The Garage-only node a deployment test adds when no machine of the operator runs a Garage node
/// (`storage.extra.*` of `templates/_tests/deployment.nix.hbs`).
#[derive(Debug, Clone, Serialize)]
pub struct ExtraGarageNode {
    /// Its test node name (`garage`).
    pub name: String,
    /// Its name in the test script.
    pub python: String,
    /// The provider's domain (its `fediversity.domain`).
    pub provider_domain: String,
}

/// One `[[test.object_storage]]` step of a deployment test's machine (`nodes.[i].stored.[j].*`).
#[derive(Debug, Clone, Serialize)]
pub struct StoredStepData {
    /// What it shows.
    pub description: String,
    /// Whether it runs on the client (else on the application's machine).
    pub on_client: bool,
    /// Retried until it succeeds.
    pub wait: bool,
    /// The command, `FEDIGEN_HOST` and `FEDIGEN_MEDIA_PREFIX` exported first.
    pub command: String,
    /// What every URL it prints must start with: `https://media.<provider>/<bucket>/`.
    pub prefix: String,
    /// The application's S3 key file on the Garage node, to read the object back through the S3 API.
    pub key_file: String,
}

/// The object storage of a deployment test (`storage.*` of `templates/_tests/deployment.nix.hbs`): one Garage node
/// (the operator's machine hosting one, else a Garage-only node the test adds) with replication factor 1, no
/// peers, and the provisioning unit applying a description of that node and this operator's buckets and keys;
/// nginx serving the S3 host (with its virtual-host bucket aliases) and the media host with the test CA's
/// certificates, and every node resolving those names to it. Without it the applications' S3 endpoint does not
/// exist in the test (review-14 F2) or a lone node of a three-copy cluster never becomes healthy (F4).
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentStorage {
    /// The test node running Garage.
    pub node: String,
    /// Its name in the test script.
    pub python: String,
    /// The node the test adds, when no machine of the operator runs Garage.
    pub extra: Option<ExtraGarageNode>,
    /// The Garage node's test key (seed and public key) as `printf` octal escapes.
    pub node_key_printf: String,
    /// Where the machine reads its node key.
    pub node_key_path: String,
    /// The text secret files the Garage node gets (the operator's key copies; an added node also the
    /// environment file).
    pub secrets: Vec<TestSecretFile>,
    /// The description the node applies, as JSON text: itself and the operator's buckets.
    pub storage_json: String,
    /// The S3 API's host.
    pub s3_host: String,
    /// The public media host.
    pub media_host: String,
    /// The cluster's S3 region.
    pub region: String,
}

impl DeploymentStorage {
    /// The object storage of `operator`'s deployment test, or `None` when none of its applications stores files in
    /// buckets (or the provider has no object storage). Marks the node hosting Garage in `nodes` (dropping the
    /// placeholder node key it would otherwise get), gives each application's `[[test.object_storage]]` steps to
    /// its node, and adds the endpoint names to `hosts`.
    pub(crate) fn new(
        spec: &Spec,
        catalog: &Catalog,
        operator: &Operator,
        nodes: &mut [TestNode],
        hosts: &mut BTreeMap<String, Vec<String>>,
    ) -> Option<Self> {
        let storage = spec.provider.object_storage.as_ref()?;
        let index = spec
            .operators
            .iter()
            .position(|o| o.name == operator.name)?;
        let apps: Vec<storage::AppStorage> = storage::applications(spec, catalog)
            .into_iter()
            .filter(|a| a.operator == index)
            .collect();
        if apps.is_empty() {
            return None;
        }
        let mut description = storage::description(spec, catalog)?;
        let (s3_host, media_host, _) = storage::endpoint_hosts(spec, catalog)?;
        // The node of an operator's machine, else the cluster's first node (on a node the test adds).
        let hosted = storage.nodes.iter().find_map(|(name, node)| {
            let machine = node.machine.as_deref()?;
            nodes
                .iter()
                .position(|n| n.name == machine)
                .map(|i| (name.clone(), i))
        });
        let node_name = match &hosted {
            Some((name, _)) => name.clone(),
            None => storage::designated_node(storage)?.to_owned(),
        };
        description.replication_factor = 1;
        description.nodes.retain(|n| n.name == node_name);
        let buckets: Vec<&str> = apps
            .iter()
            .flat_map(|a| a.buckets.iter().map(|(_, b, _)| b.as_str()))
            .collect();
        description
            .buckets
            .retain(|b| buckets.contains(&b.name.as_str()));
        with_test_node_ids(&mut description);
        description.comment = Some(format!(
            "The storage description of {}'s deployment test: one node, the operator's buckets (fedigen's deployment test).",
            operator.name
        ));
        let mut secrets: Vec<TestSecretFile> = apps
            .iter()
            .map(|a| {
                let (name, path) = storage::node_key_copy(&a.operator_name, &a.app);
                TestSecretFile {
                    name,
                    path,
                    value: test_s3_key(&a.operator_name, &a.app),
                    owner: "root".into(),
                    group: "root".into(),
                    mode: "0400".into(),
                    unit: storage::APPLY_UNIT.into(),
                }
            })
            .collect();
        let node_key_path = storage::node_secrets(spec, catalog, &node_name)
            .into_iter()
            .find(|s| matches!(s.holds, Holds::NodeKey(_)))
            .map(|s| s.path)
            .unwrap_or_else(|| format!("/run/secrets/{}", storage::NODE_KEY_SECRET_NAME));
        let mut names = vec![s3_host.clone(), media_host.clone()];
        for app in apps.iter().filter(|a| a.virtual_host) {
            names.extend(app.buckets.iter().map(|(_, b, _)| format!("{b}.{s3_host}")));
        }
        let (node, python, extra) = match hosted {
            Some((_, i)) => {
                // The test key replaces the placeholder the machine's secrets place (common.testNodeKey runs after).
                let machine = &mut nodes[i];
                machine.garage = true;
                machine.secrets.extend(secrets.iter().cloned());
                machine.packages.push("rclone".into());
                (machine.name.clone(), machine.python.clone(), None)
            }
            None => {
                secrets.insert(
                    0,
                    TestSecretFile {
                        name: "garage-environment".into(),
                        path: "/run/secrets/garage-environment".into(),
                        value: TEST_ENVIRONMENT.into(),
                        owner: "root".into(),
                        group: "root".into(),
                        mode: "0400".into(),
                        unit: "garage.service".into(),
                    },
                );
                let name = "garage".to_owned();
                (
                    name.clone(),
                    python_name(&name),
                    Some(ExtraGarageNode {
                        python: python_name(&name),
                        name,
                        provider_domain: spec.provider.domain.clone(),
                    }),
                )
            }
        };
        hosts.entry(node.clone()).or_default().extend(names);
        for machine in nodes.iter_mut() {
            let Some(app) = apps.iter().find(|a| machine.application == a.app) else {
                continue;
            };
            let Some(manifest) = catalog.manifests.get(&app.app) else {
                continue;
            };
            let key_file = storage::node_key_copy(&app.operator_name, &app.app).1;
            machine.stored = manifest
                .test
                .object_storage
                .iter()
                .filter_map(|step| {
                    let bucket = app.buckets.iter().find(|(k, _, _)| *k == step.kind)?;
                    let prefix = format!("https://{media_host}/{}/", bucket.1);
                    Some(StoredStepData {
                        description: format!("{}: {}", machine.name, step.description),
                        on_client: step.on == StepNode::Client,
                        wait: step.wait,
                        command: step_command(
                            &[
                                ("FEDIGEN_HOST", &machine.host),
                                ("FEDIGEN_MEDIA_PREFIX", &prefix),
                            ],
                            &step.run,
                        ),
                        prefix,
                        key_file: key_file.clone(),
                    })
                })
                .collect();
        }
        let key = test_node_key(&node_name);
        Some(Self {
            node,
            python,
            extra,
            node_key_printf: printf_octal(&key.secret_bytes()),
            node_key_path,
            secrets,
            storage_json: description.to_json(),
            s3_host,
            media_host,
            region: storage.region.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_node_keys_differ_per_node_and_are_stable() {
        assert_ne!(test_node_key("ams1").id(), test_node_key("ams2").id());
        assert_eq!(test_node_key("ams1").id(), test_node_key("ams1").id());
    }

    #[test]
    fn printf_octal_round_trips_every_byte() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = printf_octal(&bytes);
        let back: Vec<u8> = text
            .split('\\')
            .skip(1)
            .map(|o| u8::from_str_radix(o, 8).unwrap())
            .collect();
        assert_eq!(back, bytes);
    }
}
