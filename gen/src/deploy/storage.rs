//! Object storage in the deployments: everything the generated machines need of the provider's Garage cluster,
//! derived here once from the specification, so the NixOS files, the storage description and the component
//! tests all read the same values.
//!
//! - Each Garage node's settings ([`node_settings`]): `rpc_public_addr` (the node's `rpc_address`, default its
//!   machine's static address, its FQDN only on DHCP), `bootstrap_peers` naming every node by the id the provider made (`fedigen storage
//!   node-key`), so the cluster forms with no manual step, and one `root_domain` from the provider's domain for
//!   every node (never a machine's own domain: a node on an operator's machine would otherwise answer for other
//!   names). The admin API listens on loopback only; S3 and the web endpoint too, behind nginx with TLS.
//! - Per operator and application with `needs.s3_buckets`, one bucket per bucket kind, named
//!   `<operator>-<application>` (one kind) or `<operator>-<application>-<kind>` (several, `_` → `-`), or as the
//!   specification overrides it (`applications.<app>.buckets.<kind>`), and one S3 key ([`applications`]).
//! - The storage description (`deployments/storage.json`, [`description`]) that `fedigen storage apply` brings
//!   the cluster to, on one designated node ([`designated_node`], the first node by name: Garage wants a single
//!   layout writer).
//! - The key file of each application: `/run/secrets/<app>-s3-key` on its machine (read as the manifest's
//!   `needs.s3_key` says), and `/run/secrets/garage-s3-key-<operator>-<app>` on the designated node, read as
//!   root by the apply unit. The same file, placed twice by the provider's tooling.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::secrets::{Holds, MachineSecret, SECRET_MODE, app_key_path};
use super::*;
use crate::model::path::FieldPath;
use crate::storage::config::{AdminApi, GarageSettings, S3Api, S3Web, peer};
use crate::storage::description::{Bucket, Description, Key, bucket_name_problem, is_hex};

/// Garage's RPC port: the one port the nodes must reach on each other.
pub(crate) const RPC_PORT: u16 = 3901;

/// The storage description beside the machines' folders, `deployments/storage.json`.
pub(crate) const DESCRIPTION_FILE: &str = "storage.json";

/// The unit on the designated node that runs `fedigen storage apply`.
pub(crate) const APPLY_UNIT: &str = "fedigen-storage-apply.service";

/// The host under the provider's domain that serves every public bucket (`https://media.<domain>/<bucket>/…`).
pub(crate) const MEDIA_SUBDOMAIN: &str = "media";

/// The name (in `fediversity.secrets`) and path of an application's S3 key file on the designated node.
pub(crate) fn node_key_copy(operator: &str, app: &str) -> (String, String) {
    let name = format!(
        "{}-s3-key-{operator}-{app}",
        model::OBJECT_STORAGE_APPLICATION
    );
    let path = format!("{NAMED_SECRETS_DIR}/{name}");
    (name, path)
}

/// The name of a Garage node's key file in `fediversity.secrets`.
pub(crate) const NODE_KEY_SECRET_NAME: &str = "garage-node-key";

/// One operator's application with object storage: its buckets by kind and where each name comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppStorage {
    /// The operator's index in `operators`.
    pub operator: usize,
    /// The operator's name.
    pub operator_name: String,
    /// The application.
    pub app: String,
    /// `(kind, bucket name, overridden in the specification)`, in the manifest's order of kinds.
    pub buckets: Vec<(String, String, bool)>,
    /// Whether the buckets are public through Garage's web endpoint (`needs.s3_website`), but see `private`.
    pub website: bool,
    /// The kinds kept off the web endpoint although `website` is set (`needs.s3_private`): [`AppStorage::website`].
    pub private: Vec<String>,
    /// Whether the application reaches its buckets as `<bucket>.<S3 host>` (`needs.s3_virtual_host`).
    pub virtual_host: bool,
}

impl AppStorage {
    /// Whether the bucket of `kind` gets website access: the application's `s3_website` and not a private kind
    /// (as `Needs::website`), so `storage apply` never opens a private bucket on the media host.
    pub(crate) fn website(&self, kind: &str) -> bool {
        self.website && !self.private.iter().any(|k| k == kind)
    }
}

/// The bucket name derived for one kind: `<operator>-<app>` when the application has one kind, else
/// `<operator>-<app>-<kind>` with the kind's `_` written `-` (bucket names hold no `_`).
pub(crate) fn derived_bucket_name(operator: &str, app: &str, kind: &str, kinds: usize) -> String {
    if kinds == 1 {
        format!("{operator}-{app}")
    } else {
        format!("{operator}-{app}-{}", kind.replace('_', "-"))
    }
}

/// The bucket of `kind` for an operator's application whose manifest declares `kinds` (`needs.s3_buckets`): the
/// specification's `buckets.<kind>` when given, else the derived name. The one naming rule that generation,
/// provisioning and migration plans share, so a plan moves exactly the buckets the deployment created.
pub(crate) fn bucket_name(
    operator: &model::Operator,
    app: &str,
    kinds: &[String],
    kind: &str,
) -> String {
    operator
        .applications
        .get(app)
        .and_then(|a| a.buckets.get(kind))
        .cloned()
        .unwrap_or_else(|| derived_bucket_name(&operator.name, app, kind, kinds.len()))
}

/// Every enabled application with object storage, in the order of `operators` and then by application name.
pub(crate) fn applications(spec: &Spec, catalog: &Catalog) -> Vec<AppStorage> {
    let mut out = Vec::new();
    for (i, operator) in spec.operators.iter().enumerate() {
        operator_applications(&mut out, i, operator, catalog);
    }
    out
}

/// [`applications`] of the operator at index `operator` alone: what one operator's deployment test asks for
/// (asking [`applications`] for each operator's test made generation quadratic in the number of operators;
/// issue #18).
pub(crate) fn operator_storage(spec: &Spec, catalog: &Catalog, operator: usize) -> Vec<AppStorage> {
    let mut out = Vec::new();
    if let Some(o) = spec.operators.get(operator) {
        operator_applications(&mut out, operator, o, catalog);
    }
    out
}

/// [`applications`] of one operator (`i`, its index), by application name, appended to `out`. A machine's file
/// asks for its own operator's only: asking [`applications`] for every machine made generation quadratic in
/// the number of operators (issue #18: 4,000 machines × 4,000 applications' bucket names).
fn operator_applications(
    out: &mut Vec<AppStorage>,
    i: usize,
    operator: &model::Operator,
    catalog: &Catalog,
) {
    for (app, application) in operator.applications.iter().filter(|(_, a)| a.enable) {
        #[cfg(test)]
        tests::LOOKED_AT.with(|n| n.set(n.get() + 1));
        let Some(manifest) = catalog.manifests.get(app) else {
            continue;
        };
        let kinds = &manifest.needs.s3_buckets;
        if kinds.is_empty() {
            continue;
        }
        let buckets = kinds
            .iter()
            .map(|kind| {
                (
                    kind.clone(),
                    bucket_name(operator, app, kinds, kind),
                    application.buckets.contains_key(kind),
                )
            })
            .collect();
        out.push(AppStorage {
            operator: i,
            operator_name: operator.name.clone(),
            app: app.clone(),
            buckets,
            website: manifest.needs.s3_website,
            private: manifest.needs.s3_private.clone(),
            virtual_host: manifest.needs.s3_virtual_host,
        });
    }
}

/// The node that runs `fedigen storage apply`: the first by name (Garage's docs demand one layout writer).
pub(crate) fn designated_node(storage: &model::ObjectStorage) -> Option<&str> {
    storage.nodes.keys().next().map(String::as_str)
}

/// The machine a node runs on: its own `garage-<node>`, or the application machine it shares.
pub(crate) fn node_machine<'a>(
    machines: &'a [PlannedMachine],
    node_name: &str,
    node: &model::GarageNode,
) -> Option<&'a PlannedMachine> {
    let name = match &node.machine {
        Some(m) => m.clone(),
        None => garage_node_machine(node_name).0,
    };
    machines.iter().find(|m| m.name == name)
}

/// The address other nodes reach a node's RPC at: its `rpc_address`, else its machine's static address
/// ([`static_address`]), else (DHCP) its machine's FQDN. An address, not the FQDN, where the spec has one: NixOS
/// maps a machine's own FQDN to 127.0.0.2 in /etc/hosts (`networking.hosts`), and Garage resolves
/// `rpc_public_addr` once at start, so a node named by its FQDN would announce 127.0.0.2 to its peers.
pub(crate) fn rpc_address(spec: &Spec, catalog: &Catalog, node_name: &str) -> Option<String> {
    let node = spec
        .provider
        .object_storage
        .as_ref()?
        .nodes
        .get(node_name)?;
    if let Some(address) = &node.rpc_address {
        return Some(address.clone());
    }
    let machines = machines(spec, catalog);
    let machine = node_machine(&machines, node_name, node)?;
    Some(static_address(machine).map_or_else(|| machine.fqdn(), |a| a.to_string()))
}

/// A machine's address for the other nodes: its static IPv4 address, else its static IPv6 one (IPv4 first, so a
/// cluster whose nodes all have IPv4 never mixes families); `None` on DHCP, where the provider knows no address.
pub(crate) fn static_address(machine: &PlannedMachine) -> Option<std::net::IpAddr> {
    let addresses = machine.addresses();
    addresses
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addresses.first())
        .copied()
}

/// `host:port`, with an IPv6 address in brackets (how Garage parses `rpc_public_addr` and peers).
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `bootstrap_peers`: every node that has an id, `<id>@<rpc address>:3901` (a node's own entry is harmless:
/// Garage recognises itself).
pub(crate) fn bootstrap_peers(spec: &Spec, catalog: &Catalog) -> Vec<String> {
    let Some(storage) = &spec.provider.object_storage else {
        return Vec::new();
    };
    storage
        .nodes
        .iter()
        .filter_map(|(name, node)| {
            let id = node.node_id.as_ref()?;
            let address = rpc_address(spec, catalog, name)?;
            Some(peer(id, &host_port(&address, RPC_PORT)))
        })
        .collect()
}

/// The S3 endpoint's host (`s3.<provider domain>`), the public media host (`media.<provider domain>`) and
/// Garage's internal web root (`web.s3.<provider domain>`, only nginx's Host mapping uses it).
pub(crate) fn endpoint_hosts(spec: &Spec, catalog: &Catalog) -> Option<(String, String, String)> {
    let s3 = s3_host(spec, catalog)?;
    Some((
        s3.clone(),
        format!("{MEDIA_SUBDOMAIN}.{}", spec.provider.domain),
        format!("web.{s3}"),
    ))
}

/// The Garage settings every node shares (all but `rpc_public_addr`), as the generated
/// `deployments/garage-cluster.nix` gives them to `services.garage.settings` (through
/// `fediversity.garage.settings`). `metadata_dir` and `data_dir` are nixpkgs' defaults, left to the module.
pub(crate) fn cluster_settings(spec: &Spec, catalog: &Catalog) -> Option<GarageSettings> {
    let storage = spec.provider.object_storage.as_ref()?;
    let (s3, _, web) = endpoint_hosts(spec, catalog)?;
    Some(GarageSettings {
        metadata_dir: "/var/lib/garage/meta".into(),
        data_dir: "/var/lib/garage/data".into(),
        db_engine: "sqlite".into(),
        replication_factor: u32::from(storage.replication_factor),
        consistency_mode: None,
        rpc_bind_addr: format!("[::]:{RPC_PORT}"),
        rpc_public_addr: String::new(),
        bootstrap_peers: bootstrap_peers(spec, catalog),
        s3_api: S3Api {
            api_bind_addr: "127.0.0.1:3900".into(),
            s3_region: storage.region.clone(),
            root_domain: Some(format!(".{s3}")),
        },
        s3_web: Some(S3Web {
            bind_addr: "127.0.0.1:3902".into(),
            root_domain: format!(".{web}"),
        }),
        admin: AdminApi {
            api_bind_addr: "127.0.0.1:3903".into(),
        },
    })
}

/// One node's whole Garage settings: [`cluster_settings`] with its `rpc_public_addr`. What the machine's
/// `/etc/garage.toml` holds (rendered by nixpkgs' `pkgs.formats.toml`), and what the component tests start
/// real Garage nodes with (rendered by [`GarageSettings::to_toml`]).
pub fn node_settings(spec: &Spec, catalog: &Catalog, node_name: &str) -> Option<GarageSettings> {
    let mut settings = cluster_settings(spec, catalog)?;
    settings.rpc_public_addr = host_port(&rpc_address(spec, catalog, node_name)?, RPC_PORT);
    Some(settings)
}

/// The settings as the Nix value `fediversity.garage.settings` binds: the TOML keys, without the directories
/// (nixpkgs' `services.garage.settings.metadata_dir`/`data_dir` defaults are the same paths) and without
/// `rpc_public_addr` (each node's own file binds it).
pub(crate) fn settings_value(settings: &GarageSettings) -> Value {
    let mut value = serde_json::to_value(settings).expect("settings serialise");
    if let Value::Object(map) = &mut value {
        for key in ["metadata_dir", "data_dir", "rpc_public_addr"] {
            map.remove(key);
        }
    }
    value
}

/// The storage description of the specification: the nodes with their zone, capacity and id, and per
/// operator's application its buckets, each with the application's key (read+write; its id is the key file's).
/// `None` when there is no object storage, or while a node has no `node_id` (validation warns then).
pub fn description(spec: &Spec, catalog: &Catalog) -> Option<Description> {
    description_of(spec, &applications(spec, catalog))
}

/// [`description`] with the buckets of `apps` alone (one operator's, for its deployment test, without going
/// through every operator's: issue #18).
pub(crate) fn description_of(spec: &Spec, apps: &[AppStorage]) -> Option<Description> {
    let storage = spec.provider.object_storage.as_ref()?;
    let mut description = Description::new(u32::from(storage.replication_factor));
    for (name, node) in &storage.nodes {
        description = description.with_node(
            name,
            node.node_id.as_ref()?,
            &node.zone,
            u64::from(node.capacity_gib) << 30,
        );
    }
    for app in apps {
        let (_, key_path) = node_key_copy(&app.operator_name, &app.app);
        for (kind, bucket, _) in &app.buckets {
            description = description.with_bucket(Bucket {
                name: bucket.clone(),
                website: app.website(kind),
                keys: vec![Key {
                    id: String::new(),
                    secret_file: key_path.clone().into(),
                    name: format!("{}/{}", app.operator_name, app.app),
                    read: true,
                    write: true,
                    owner: false,
                }],
            });
        }
    }
    Some(description)
}

/// The secrets of the machine running Garage node `node_name`: its node key (read as root by the step before
/// `garage.service` that places it), and on the designated node every application's key file (read as root
/// by the apply unit).
pub(crate) fn node_secrets(spec: &Spec, catalog: &Catalog, node_name: &str) -> Vec<MachineSecret> {
    let Some(storage) = &spec.provider.object_storage else {
        return Vec::new();
    };
    let mut out: Vec<MachineSecret> = node_key_secret(spec, node_name).into_iter().collect();
    if designated_node(storage) == Some(node_name) && description(spec, catalog).is_some() {
        for app in applications(spec, catalog) {
            let (name, path) = node_key_copy(&app.operator_name, &app.app);
            out.push(MachineSecret {
                name,
                path: path.clone(),
                owner: "root".into(),
                group: "root".into(),
                mode: SECRET_MODE,
                unit: APPLY_UNIT.to_owned(),
                holds: Holds::S3Key {
                    operator: Some(app.operator),
                    app: app.app.clone(),
                },
                provider: true,
                reference: SecretRef::File(path.clone()),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The node key secret of Garage node `node_name` (the first of its [`node_secrets`]), without the applications'
/// keys: what a deployment test asks for, once per operator (issue #18).
pub(crate) fn node_key_secret(spec: &Spec, node_name: &str) -> Option<MachineSecret> {
    let key = spec
        .provider
        .object_storage
        .as_ref()?
        .nodes
        .get(node_name)?
        .node_key()?;
    Some(MachineSecret {
        name: NODE_KEY_SECRET_NAME.to_owned(),
        path: secret_path(key),
        owner: "root".into(),
        group: "root".into(),
        mode: SECRET_MODE,
        unit: "garage.service".into(),
        holds: Holds::NodeKey(node_name.to_owned()),
        provider: true,
        reference: key.clone(),
    })
}

/// [`node_secrets`] of the Garage node sharing the application machine `machine`, if one does.
pub(crate) fn shared_node_secrets(
    spec: &Spec,
    catalog: &Catalog,
    machine: &str,
) -> Vec<MachineSecret> {
    let Some(storage) = &spec.provider.object_storage else {
        return Vec::new();
    };
    storage
        .nodes
        .iter()
        .filter(|(_, n)| n.machine.as_deref() == Some(machine))
        .flat_map(|(name, _)| node_secrets(spec, catalog, name))
        .collect()
}

/// The file a VM test places for an object-storage secret (a harmless value in a test's store): a key file
/// `fedigen storage apply` accepts, or 64 bytes for a node key.
pub(crate) fn test_secret(holds: &Holds) -> String {
    match holds {
        Holds::NodeKey(_) => "0".repeat(64),
        _ => format!(
            "AWS_ACCESS_KEY_ID=GK{}\nAWS_SECRET_ACCESS_KEY={}\n",
            "0".repeat(24),
            "1".repeat(64)
        ),
    }
}

/// The node-specific part of `fediversity.garage` in the machine running node `node_name`: its
/// `rpc_public_addr`, the file of its node key, and on the designated node the provisioning unit with the
/// description (`../storage.json`, relative to the machine's file one folder below `deployments/`).
pub(crate) fn node_entries(
    spec: &Spec,
    catalog: &Catalog,
    node_name: &str,
) -> Result<Vec<Entry>, DeployError> {
    let Some(storage) = &spec.provider.object_storage else {
        return Ok(Vec::new());
    };
    let mut entries = Vec::new();
    if let Some(settings) = node_settings(spec, catalog, node_name) {
        entries.push(Entry::dotted(
            "garage.settings.rpc_public_addr",
            Expr::string(&settings.rpc_public_addr)?,
        )?);
    }
    if let Some(key) = storage.nodes.get(node_name).and_then(|n| n.node_key()) {
        entries.push(Entry::dotted(
            "garage.nodeKeyFile",
            Expr::runtime_path(&secret_path(key))?,
        )?);
    }
    if designated_node(storage) == Some(node_name) && description(spec, catalog).is_some() {
        entries.push(Entry::dotted(
            "garage.provision",
            Expr::attrs(vec![
                Entry::dotted("enable", Expr::Bool(true))?,
                Entry::dotted(
                    "description",
                    Expr::SourcePath(SourcePath::new(&format!("../{DESCRIPTION_FILE}"))?),
                )?,
            ]),
        )?);
    }
    Ok(entries)
}

/// Every node's `address:80` for the ACME relay (`fediversity.garage.endpoints.acmePeers`): its machine's static
/// IPv4 address, else its IPv6 one; a node on DHCP has none the provider knows and is left out. Addresses, not names:
/// nginx resolves upstream names once at start and would not start while DNS is down.
pub(crate) fn acme_peers(spec: &Spec, catalog: &Catalog) -> Vec<String> {
    let Some(storage) = &spec.provider.object_storage else {
        return Vec::new();
    };
    let machines = machines(spec, catalog);
    storage
        .nodes
        .iter()
        .filter_map(|(name, node)| {
            let address = static_address(node_machine(&machines, name, node)?)?;
            Some(host_port(&address.to_string(), 80))
        })
        .collect()
}

/// The cluster-wide part of `fediversity.garage` (in `deployments/garage-cluster.nix`): the shared settings
/// and the endpoints nginx serves.
pub(crate) fn cluster_entries(spec: &Spec, catalog: &Catalog) -> Result<Vec<Entry>, DeployError> {
    let (Some(settings), Some((s3, media, _))) = (
        cluster_settings(spec, catalog),
        endpoint_hosts(spec, catalog),
    ) else {
        return Ok(Vec::new());
    };
    let vhost_buckets: Vec<Value> = applications(spec, catalog)
        .iter()
        .filter(|a| a.virtual_host)
        .flat_map(|a| a.buckets.iter().map(|(_, b, _)| json!(b)))
        .collect();
    Ok(vec![
        Entry::dotted("settings", data(&settings_value(&settings))?)?,
        Entry::dotted(
            "endpoints",
            Expr::attrs(vec![
                Entry::dotted("enable", Expr::Bool(true))?,
                Entry::dotted("s3Host", Expr::string(&s3)?)?,
                Entry::dotted("mediaHost", Expr::string(&media)?)?,
                Entry::dotted("vhostBuckets", data(&Value::Array(vhost_buckets))?)?,
                Entry::dotted(
                    "acmePeers",
                    data(&Value::Array(
                        acme_peers(spec, catalog)
                            .into_iter()
                            .map(Value::String)
                            .collect(),
                    ))?,
                )?,
            ]),
        )?,
    ])
}

/// `fediversity.<app>.objectStorage = { buckets = { <kind> = "<name>"; … }; keyFile = "…"; }` for an
/// application machine, when the application keeps media in S3.
pub(crate) fn object_storage_entry(
    spec: &Spec,
    catalog: &Catalog,
    operator: usize,
    app: &str,
) -> Result<Option<Entry>, DeployError> {
    spec.provider.object_storage.as_ref().map_or(Ok(None), |_| {
        let mut own = Vec::new();
        if let Some(o) = spec.operators.get(operator) {
            operator_applications(&mut own, operator, o, catalog);
        }
        let Some(storage) = own.into_iter().find(|a| a.app == app) else {
            return Ok(None);
        };
        let buckets: serde_json::Map<String, Value> = storage
            .buckets
            .iter()
            .map(|(kind, name, _)| (kind.clone(), json!(name)))
            .collect();
        Ok(Some(Entry::dotted(
            "objectStorage",
            Expr::attrs(vec![
                Entry::dotted("buckets", data(&Value::Object(buckets))?)?,
                Entry::dotted("keyFile", Expr::runtime_path(&app_key_path(app))?)?,
            ]),
        )?))
    })
}

/// Problems of the object storage part of a specification that only the derived names show: node ids
/// (64 lowercase hex, unique), node keys given with ids, `rpc_address`, bucket overrides naming a kind the
/// manifest has, and every bucket name valid for Garage and unique across the specification; for
/// `crate::model::check`.
/// The longest DNS name (RFC 1035: 255 octets on the wire, 253 characters written out).
const MAX_DNS_NAME: usize = 253;

pub(crate) fn problems(spec: &Spec, catalog: &Catalog) -> Vec<StorageProblem> {
    let mut out = Vec::new();
    let Some(storage) = &spec.provider.object_storage else {
        return out;
    };
    let mut ids: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, node) in &storage.nodes {
        let at = |field: &str| FieldPath::of(&["provider", "object_storage", "nodes", name, field]);
        match &node.node_id {
            Some(id) if !is_hex(id, 64) => out.push(StorageProblem::error(
                at("node_id"),
                format!("`{id}` is not a Garage node id"),
                "not 64 lowercase hex digits",
                "run `fedigen storage node-key --out <file>` and copy the id it prints (64 lowercase hex digits)",
            )),
            Some(id) => {
                if let Some(first) = ids.insert(id, name) {
                    out.push(StorageProblem::error(
                        at("node_id"),
                        format!("Garage nodes `{first}` and `{name}` have the same node id"),
                        "the id of another node",
                        "each node has a key of its own: run `fedigen storage node-key` for this node",
                    ));
                }
                if node.node_key().is_none() {
                    out.push(StorageProblem::error(
                        at("node_id"),
                        format!("Garage node `{name}` has a node id but no `secrets.node_key`"),
                        "an id without its key",
                        "add `secrets.node_key = { file = \"…\" }` (the file `fedigen storage node-key` wrote): Garage must run with the key whose public half is this id",
                    ));
                }
            }
            None => {
                if node.node_key().is_some() {
                    out.push(StorageProblem::error(
                        at("secrets"),
                        format!("Garage node `{name}` has a `secrets.node_key` but no `node_id`"),
                        "a key without its id",
                        "add `node_id = \"…\"`: the id `fedigen storage node-key` printed for this key",
                    ));
                }
            }
        }
        if let Some(address) = &node.rpc_address {
            let ip = address.parse::<std::net::IpAddr>().is_ok();
            if !ip && !is_qualified_host(address) {
                out.push(StorageProblem::error(
                    at("rpc_address"),
                    format!("`{address}` is neither an IP address nor a host name with a domain"),
                    "not an address",
                    "give the address the other nodes reach this node at, e.g. `192.0.2.21` or `garage-ams1.example.org` (no port: Garage's RPC port is 3901)",
                ));
            }
        }
    }
    let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let s3 = s3_host(spec, catalog);
    for app in applications(spec, catalog) {
        let operator = &spec.operators[app.operator];
        let base = FieldPath::of(&["operators"])
            .index(app.operator)
            .key("applications")
            .key(&app.app);
        let kinds: Vec<&str> = app.buckets.iter().map(|(k, _, _)| k.as_str()).collect();
        for kind in operator.applications[&app.app].buckets.keys() {
            if !kinds.contains(&kind.as_str()) {
                let path = base.key("buckets").key(kind);
                out.push(StorageProblem::error(
                    path,
                    format!("`{}` has no bucket kind `{kind}`", app.app),
                    "not a bucket kind of the application",
                    format!("its manifest's bucket kinds: {}", kinds.join(", ")),
                ));
            }
        }
        for (kind, name, overridden) in &app.buckets {
            let path = if *overridden {
                base.key("buckets").key(kind)
            } else {
                base.clone()
            };
            if let Some(why) = bucket_name_problem(name) {
                out.push(StorageProblem::error(
                    path.clone(),
                    format!("the bucket name `{name}` ({} of operator `{}`) is not valid for Garage: {why}", app.app, app.operator_name),
                    "not a valid bucket name",
                    if *overridden {
                        "choose 3 to 63 characters of a-z, 0-9, '-' and '.', starting and ending with a letter or digit".to_owned()
                    } else {
                        format!("the derived name is too long or malformed: set `buckets.{kind} = \"…\"` for this application")
                    },
                ));
            }
            // A client addressing the bucket virtual-host style reaches `<bucket>.<s3 host>` (the module's
            // `serverAliases` and the certificate's names): a DNS name holds at most 253 characters.
            if app.virtual_host
                && let Some(s3) = &s3
                && bucket_name_problem(name).is_none()
                && name.len() + 1 + s3.len() > MAX_DNS_NAME
            {
                out.push(StorageProblem::error(
                    path.clone(),
                    format!(
                        "the bucket `{name}` ({} of operator `{}`) is reached at `{name}.{s3}`, {} characters; a DNS name holds at most {MAX_DNS_NAME}",
                        app.app,
                        app.operator_name,
                        name.len() + 1 + s3.len()
                    ),
                    "a virtual-host name too long for DNS",
                    format!(
                        "set `buckets.{kind} = \"…\"` to a name of at most {} characters, or give the provider a shorter `domain`",
                        MAX_DNS_NAME.saturating_sub(1 + s3.len())
                    ),
                ));
            }
            if let Some(first) = names.get(name) {
                out.push(StorageProblem::error(
                    path.clone(),
                    format!("the bucket name `{name}` is used twice (first by {}): bucket names are global to the Garage cluster", first[0]),
                    "a bucket name already taken",
                    format!("set `buckets.{kind} = \"…\"` to a name of its own"),
                ));
            } else {
                names.insert(
                    name.clone(),
                    vec![format!("`{}` of operator `{}`", app.app, app.operator_name)],
                );
            }
        }
    }
    out
}

/// One object-storage problem for validation: where (field path segments), what, a short label, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageProblem {
    /// The field it is about.
    pub path: FieldPath,
    /// What is wrong.
    pub message: String,
    /// A short label for the field.
    pub label: String,
    /// How to fix it.
    pub hint: String,
}

impl StorageProblem {
    fn error(path: FieldPath, message: String, label: &str, hint: impl Into<String>) -> Self {
        Self {
            path,
            message,
            label: label.to_owned(),
            hint: hint.into(),
        }
    }
}

/// What a valid specification leaves undone for object storage, for `validate` to warn about: nodes without a
/// `node_id` (the cluster cannot form by itself, and no storage description is generated).
pub(crate) fn warnings(spec: &Spec) -> Vec<String> {
    let Some(storage) = &spec.provider.object_storage else {
        return Vec::new();
    };
    storage
        .nodes
        .iter()
        .filter(|(_, n)| n.node_id.is_none())
        .map(|(name, _)| {
            format!(
                "Garage node `{name}` has no `node_id`: the other nodes cannot name it in `bootstrap_peers`, and no storage description (layout, buckets, keys) is generated until every node has one; run `fedigen storage node-key --out <file>`, then set `provider.object_storage.nodes.{name}.node_id` to the id it prints and `secrets.node_key = {{ file = \"…\" }}`"
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn catalog() -> Catalog {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
        Catalog::load(&dir).expect("the repository's manifests load")
    }

    const ID1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const ID2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    thread_local! {
        /// How many operators' applications [`operator_applications`] looked at on this thread.
        pub(super) static LOOKED_AT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// One operator's deployment test looks at that operator's applications a bounded number of times, whatever
    /// the number of other operators (issue #18: it asked every operator's, three times, for each test: quadratic
    /// generation), and its storage description is the provider's with that operator's buckets only.
    #[test]
    fn a_deployment_test_looks_at_its_own_operator_only() {
        let operators: Vec<(String, &str)> = (0..40)
            .map(|i| {
                (
                    format!("op{i}"),
                    "applications.mastodon = {}\napplications.peertube = {}",
                )
            })
            .collect();
        let operators: Vec<(&str, &str)> =
            operators.iter().map(|(n, a)| (n.as_str(), *a)).collect();
        let spec = spec(&two_nodes(), &operators);
        let catalog = catalog();
        for (i, operator) in spec.operators.iter().enumerate() {
            LOOKED_AT.with(|n| n.set(0));
            let test = crate::template::DeploymentTest::new(&spec, &catalog, operator);
            let looked = LOOKED_AT.with(std::cell::Cell::get);
            assert!(
                looked <= 3 * operator.applications.len(),
                "operator {i}'s test looked at {looked} applications of {} operators",
                spec.operators.len()
            );
            drop(test);
            let own = operator_storage(&spec, &catalog, i);
            let mut all = description(&spec, &catalog).unwrap();
            all.buckets.retain(|b| {
                own.iter()
                    .any(|a| a.buckets.iter().any(|(_, name, _)| *name == b.name))
            });
            assert_eq!(description_of(&spec, &own).unwrap(), all);
        }
    }

    /// A provider with two nodes and the given operators (`name`, applications as TOML lines).
    fn spec(nodes: &str, operators: &[(&str, &str)]) -> Spec {
        let mut text = format!(
            r#"
[provider]
name = "p"
domain = "p.example"
runtime = {{ backend = "qemu" }}
acme = {{ email = "h@p.example", accept_terms = true }}

[provider.object_storage]
replication_factor = 2
region = "garage"
{nodes}
"#
        );
        for (name, apps) in operators {
            text.push_str(&format!(
                "\n[[operators]]\nname = \"{name}\"\ndomain = \"{name}.example\"\ncontact = \"a@{name}.example\"\nadmin = {{ username = \"admin\", email = \"a@{name}.example\" }}\n{apps}\n"
            ));
        }
        toml::from_str(&text).expect("the test specification has the model's shape")
    }

    fn two_nodes() -> String {
        format!(
            "nodes.a = {{ zone = \"z1\", capacity_gib = 10, node_id = \"{ID1}\", rpc_address = \"192.0.2.1\", secrets.node_key = {{ file = \"/run/secrets/k\" }} }}\nnodes.b = {{ zone = \"z2\", capacity_gib = 20, node_id = \"{ID2}\", secrets.node_key = {{ file = \"/run/secrets/k\" }} }}"
        )
    }

    fn messages(spec: &Spec) -> Vec<String> {
        problems(spec, &catalog())
            .into_iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect()
    }

    /// The ACME relay reaches each node at its machine's static address, IPv4 before IPv6, IPv6 in brackets; a
    /// node on DHCP is left out (nginx would not start on a name it cannot resolve).
    #[test]
    fn acme_peers_are_the_nodes_static_addresses() {
        let nodes = format!(
            "nodes.a = {{ zone = \"z\", capacity_gib = 1, node_id = \"{ID1}\", network.ipv4 = {{ address = \"192.0.2.21/24\", gateway = \"192.0.2.1\" }}, network.ipv6 = {{ address = \"2001:db8::21/64\", gateway = \"2001:db8::1\" }} }}\nnodes.b = {{ zone = \"z\", capacity_gib = 1, node_id = \"{ID2}\", network.ipv6 = {{ address = \"2001:db8::22/64\", gateway = \"2001:db8::1\" }} }}\nnodes.c = {{ zone = \"z\", capacity_gib = 1, network.dhcp = true }}"
        );
        let spec = spec(&nodes, &[]);
        assert_eq!(
            acme_peers(&spec, &catalog()),
            ["192.0.2.21:80", "[2001:db8::22]:80"]
        );
    }

    /// Review-14 F6: a node without `rpc_address` announces its machine's static address (IPv4 before IPv6,
    /// IPv6 in brackets), never its FQDN, which NixOS maps to 127.0.0.2 on the node itself; only a node on DHCP
    /// falls back to the FQDN. The peers list names the nodes by the same addresses.
    #[test]
    fn rpc_addresses_default_to_the_static_address() {
        let nodes = format!(
            "nodes.a = {{ zone = \"z\", capacity_gib = 1, node_id = \"{ID1}\", network.ipv4 = {{ address = \"192.0.2.21/24\", gateway = \"192.0.2.1\" }}, network.ipv6 = {{ address = \"2001:db8::21/64\", gateway = \"2001:db8::1\" }} }}\nnodes.b = {{ zone = \"z\", capacity_gib = 1, node_id = \"{ID2}\", network.ipv6 = {{ address = \"2001:db8::22/64\", gateway = \"2001:db8::1\" }} }}\nnodes.c = {{ zone = \"z\", capacity_gib = 1, network.dhcp = true }}"
        );
        let spec = spec(&nodes, &[]);
        let catalog = catalog();
        let addr = |n: &str| node_settings(&spec, &catalog, n).unwrap().rpc_public_addr;
        assert_eq!(addr("a"), "192.0.2.21:3901");
        assert_eq!(addr("b"), "[2001:db8::22]:3901");
        assert_eq!(addr("c"), "garage-c.p.example:3901");
        assert_eq!(
            bootstrap_peers(&spec, &catalog),
            [
                format!("{ID1}@192.0.2.21:3901"),
                format!("{ID2}@[2001:db8::22]:3901")
            ]
        );
    }

    /// A machine's `objectStorage` names exactly the buckets [`applications`] lists for its operator and
    /// application (overrides included), though it asks only its own operator (issue #18: asking every operator
    /// for every machine made generation quadratic).
    #[test]
    fn a_machine_file_names_the_buckets_its_operator_has() {
        let spec = spec(
            &two_nodes(),
            &[
                (
                    "uni",
                    "applications.mastodon = {}\napplications.peertube = {}",
                ),
                (
                    "club",
                    "applications.mastodon.buckets.media = \"club-media\"",
                ),
                (
                    "zoo",
                    "applications.peertube = {}\napplications.mastodon = {}",
                ),
            ],
        );
        let catalog = catalog();
        let all = applications(&spec, &catalog);
        assert_eq!(all.len(), 5);
        for storage in &all {
            let entry = object_storage_entry(&spec, &catalog, storage.operator, &storage.app)
                .unwrap()
                .expect("an application with buckets has an objectStorage entry");
            let text = crate::nix::print::print_expr(&Expr::attrs(vec![entry]));
            for (kind, name, _) in &storage.buckets {
                assert!(
                    text.contains(&format!("{kind} = \"{name}\";")),
                    "{kind} = {name} missing from {text}"
                );
            }
            let others = all
                .iter()
                .filter(|o| (o.operator, &o.app) != (storage.operator, &storage.app))
                .flat_map(|o| &o.buckets)
                .filter(|(_, n, _)| !storage.buckets.iter().any(|(_, m, _)| m == n));
            for (_, name, _) in others {
                assert!(!text.contains(&format!("\"{name}\"")), "{name} in {text}");
            }
        }
    }

    #[test]
    fn names_come_from_operator_application_and_kind() {
        let spec = spec(
            &two_nodes(),
            &[
                (
                    "uni",
                    "applications.mastodon = {}\napplications.peertube = {}",
                ),
                (
                    "club",
                    "applications.mastodon.buckets.media = \"club-media\"",
                ),
            ],
        );
        let catalog = catalog();
        let names: Vec<(String, String)> = applications(&spec, &catalog)
            .into_iter()
            .flat_map(|a| a.buckets.into_iter().map(|(kind, name, _)| (kind, name)))
            .collect();
        assert_eq!(
            names,
            [
                ("media", "uni-mastodon"),
                ("web_videos", "uni-peertube-web-videos"),
                ("streaming_playlists", "uni-peertube-streaming-playlists"),
                ("original_video_files", "uni-peertube-original-video-files"),
                ("user_exports", "uni-peertube-user-exports"),
                ("captions", "uni-peertube-captions"),
                ("media", "club-media"),
            ]
            .map(|(k, n)| (k.to_owned(), n.to_owned()))
        );
        assert_eq!(messages(&spec), Vec::<String>::new());
        let description = description(&spec, &catalog).expect("every node has an id");
        assert_eq!(description.nodes.len(), 2);
        assert_eq!(description.nodes[1].capacity_bytes, 20 << 30);
        let uni = &description.buckets[0];
        assert_eq!(uni.keys[0].name, "uni/mastodon");
        assert_eq!(
            uni.keys[0].secret_file,
            std::path::PathBuf::from("/run/secrets/garage-s3-key-uni-mastodon")
        );
        assert!(uni.keys[0].id.is_empty(), "the id is the key file's");
        // Website access per kind: PeerTube's private kinds (needs.s3_private) stay off the media host, the
        // rest of a website application's buckets are on it.
        let website: Vec<(&str, bool)> = description
            .buckets
            .iter()
            .map(|b| (b.name.as_str(), b.website))
            .collect();
        assert_eq!(
            website,
            [
                ("uni-mastodon", true),
                ("uni-peertube-web-videos", true),
                ("uni-peertube-streaming-playlists", true),
                ("uni-peertube-original-video-files", false),
                ("uni-peertube-user-exports", false),
                ("uni-peertube-captions", true),
                ("club-media", true),
            ]
        );
        assert!(
            description.problems().is_empty(),
            "{:?}",
            description.problems()
        );
        // Node a is addressed as given, node b by its machine's FQDN; IPv6 in brackets.
        let settings = node_settings(&spec, &catalog, "a").unwrap();
        assert_eq!(settings.rpc_public_addr, "192.0.2.1:3901");
        assert_eq!(
            settings.bootstrap_peers,
            [
                format!("{ID1}@192.0.2.1:3901"),
                format!("{ID2}@garage-b.p.example:3901")
            ]
        );
        assert_eq!(
            settings.s3_api.root_domain.as_deref(),
            Some(".s3.p.example")
        );
        assert_eq!(settings.admin.api_bind_addr, "127.0.0.1:3903");
        assert_eq!(host_port("2001:db8::1", 3901), "[2001:db8::1]:3901");
        // Exactly the first node provisions.
        assert_eq!(
            designated_node(spec.provider.object_storage.as_ref().unwrap()),
            Some("a")
        );
        let on = |n: &str| {
            node_secrets(&spec, &catalog, n)
                .iter()
                .filter(|s| s.unit == APPLY_UNIT)
                .count()
        };
        assert_eq!((on("a"), on("b")), (3, 0));
    }

    #[test]
    fn node_ids_keys_and_addresses_are_checked() {
        let nodes = format!(
            "nodes.a = {{ zone = \"z\", capacity_gib = 1, node_id = \"{ID1}\", secrets.node_key = {{ file = \"/k\" }} }}\nnodes.b = {{ zone = \"z\", capacity_gib = 1, node_id = \"{ID1}\", rpc_address = \"garage-b\", secrets.node_key = {{ file = \"/k\" }} }}\nnodes.c = {{ zone = \"z\", capacity_gib = 1, node_id = \"ABC\" }}\nnodes.d = {{ zone = \"z\", capacity_gib = 1, secrets.node_key = {{ file = \"/k\" }} }}"
        );
        let found = messages(&spec(&nodes, &[]));
        assert_eq!(
            found,
            [
                "provider.object_storage.nodes.b.node_id: Garage nodes `a` and `b` have the same node id",
                "provider.object_storage.nodes.b.rpc_address: `garage-b` is neither an IP address nor a host name with a domain",
                "provider.object_storage.nodes.c.node_id: `ABC` is not a Garage node id",
                "provider.object_storage.nodes.d.secrets: Garage node `d` has a `secrets.node_key` but no `node_id`",
            ],
            "{found:#?}"
        );
        let spec = spec(&nodes, &[]);
        assert!(
            description(&spec, &catalog()).is_none(),
            "no description while a node has no id"
        );
        assert_eq!(warnings(&spec).len(), 1, "node d has no id");
    }

    #[test]
    fn bucket_overrides_are_checked_at_their_field() {
        let found = messages(&spec(
            &two_nodes(),
            &[
                ("uni", "applications.mastodon = {}"),
                (
                    "club",
                    "applications.mastodon.buckets = { media = \"uni-mastodon\", videos = \"x-y\" }\napplications.pixelfed.buckets.media = \"Club_Pics\"",
                ),
            ],
        ));
        assert_eq!(
            found,
            [
                "operators[1].applications.mastodon.buckets.videos: `mastodon` has no bucket kind `videos`",
                "operators[1].applications.mastodon.buckets.media: the bucket name `uni-mastodon` is used twice (first by `mastodon` of operator `uni`): bucket names are global to the Garage cluster",
                "operators[1].applications.pixelfed.buckets.media: the bucket name `Club_Pics` (pixelfed of operator `club`) is not valid for Garage: only lowercase letters, digits, '-' and '.' are allowed",
            ],
            "{found:#?}"
        );
    }

    /// A bucket addressed virtual-host style must fit in a DNS name with the S3 host after it; one addressed by
    /// path only (no alias) may not be refused for it.
    #[test]
    fn virtual_host_names_fit_in_dns() {
        let label = "d".repeat(63);
        let domain = |last: usize| format!("{label}.{label}.{label}.{}.example", "e".repeat(last));
        for app in ["peertube", "mastodon"] {
            let mut with = spec(
                &two_nodes(),
                &[("uni", &format!("applications.{app} = {{}}"))],
            );
            // 240 characters: with `s3.` 243, and any `<bucket>.` before it more than 253.
            with.provider.domain = domain(40);
            let expected: Vec<String> = applications(&with, &catalog())
                .into_iter()
                .filter(|a| a.virtual_host)
                .flat_map(|a| a.buckets)
                .map(|(_, bucket, _)| {
                    let host = format!("{bucket}.s3.{}", domain(40));
                    format!(
                        "operators[0].applications.{app}: the bucket `{bucket}` ({app} of operator `uni`) is reached at `{host}`, {} characters; a DNS name holds at most 253",
                        host.len()
                    )
                })
                .collect();
            // PeerTube addresses its buckets virtual-host style, Mastodon by path (no such name to fit).
            assert_eq!(expected.is_empty(), app == "mastodon");
            assert_eq!(messages(&with), expected);
            // 41 characters shorter: every name fits.
            with.provider.domain = format!("{label}.{label}.{label}.example");
            assert_eq!(messages(&with), Vec::<String>::new());
        }
    }

    proptest! {
        /// Whatever the operators and overrides, validation accepts exactly the specifications whose bucket
        /// names are all valid for Garage and pairwise distinct.
        #[test]
        fn bucket_names_accepted_iff_valid_and_unique(
            operators in proptest::collection::btree_map(
                "[a-z]([a-z0-9-]{0,30}[a-z0-9])?",
                (
                    proptest::sample::subsequence(vec!["mastodon", "peertube", "pixelfed", "matrix-synapse"], 0..=4),
                    proptest::option::of(prop_oneof!["a-mastodon", "b-pixelfed", "shared", "x_y", "ab"]),
                ),
                1..5,
            )
        ) {
            let ops: Vec<(String, String)> = operators
                .iter()
                .map(|(name, (apps, over))| {
                    let lines = apps
                        .iter()
                        .enumerate()
                        .map(|(i, app)| match over {
                            Some(b) if i == 0 && *app != "peertube" => {
                                format!("applications.{app}.buckets.media = \"{b}\"")
                            }
                            _ => format!("applications.{app} = {{}}"),
                        })
                        .collect::<Vec<_>>()
                        .join("\n");
                    (name.clone(), lines)
                })
                .collect();
            let refs: Vec<(&str, &str)> = ops.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            let spec = spec(&two_nodes(), &refs);
            let catalog = catalog();
            let names: Vec<String> = applications(&spec, &catalog)
                .into_iter()
                .flat_map(|a| a.buckets.into_iter().map(|(_, n, _)| n))
                .collect();
            let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
            let good = distinct.len() == names.len()
                && names.iter().all(|n| bucket_name_problem(n).is_none());
            let found = problems(&spec, &catalog);
            prop_assert_eq!(found.is_empty(), good, "{:?} {:?}", names, found);
            if let Some(d) = description(&spec, &catalog) && good {
                prop_assert!(d.problems().is_empty(), "{:?}", d.problems());
            }
        }
    }
}
