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

use super::context::{DeploymentTest, TestNode, TestSecretFile, garage_environment_secret};
use super::test_keys::{
    TEST_ADMIN_TOKEN, printf_octal, test_node_key, test_secret_value, with_test_node_ids,
};
use crate::deploy::python_name;
use crate::deploy::secrets::Holds;
use crate::deploy::storage;
use crate::model::{Catalog, Spec};

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
            let mut secrets = vec![garage_environment_secret()];
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
