//! The typed deployment model: one hosting provider's runtime environment and its operators' deployments.
//!
//! This is the contract between the Fediversity panel (JSON), hand-written provider specifications (TOML) and
//! Nix-minded users (a `.nix` file evaluated by the real Nix) on one side and the generator on the other. A
//! specification is loaded in four steps, each in its own module, data passed forward:
//!
//! 1. `source`: the text is parsed into a JSON value plus an index from field paths to byte ranges, so every
//!    later error can point at the exact key or value (`file:line:column`), whatever the input format.
//! 2. [`shape`]: the value is checked against the structure of the model (unknown fields with a "did you mean",
//!    missing fields, types, formats of domains, e-mail addresses, paths, ranges) and application settings
//!    against their manifests. The same structure prints the JSON Schema, so the schema cannot drift from the
//!    validator.
//! 3. serde turns the value into the typed [`Spec`].
//! 4. `check`: cross-checks that need the whole model (unique names and domains, colliding host names and
//!    ports, resources within the provider's limits, references between machines, hosts and Garage nodes).
//!
//! Every problem is collected, never only the first: [`SpecReport`] holds them all and renders them like rustc.
//!
//! Applications are not hard-coded: an operator's `applications` map is keyed by the names of the manifests
//! in `templates/` ([`Catalog`]), and each application's `settings` and `secrets` are validated by its
//! manifest. The one application the model names is Garage ([`OBJECT_STORAGE_APPLICATION`]), because the
//! provider's object storage *is* a Garage cluster.
//!
//! Secrets are references only ([`SecretRef`]): the model has no field that can hold a secret value.

#[cfg(test)]
mod agreement;
pub(crate) mod check;
pub(crate) mod diagnostic;
pub mod network;
mod network_check;
pub(crate) mod path;
pub(crate) mod report;
pub mod shape;
pub(crate) mod source;
pub(crate) mod ssh;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::manifest::{Manifest, ManifestError};

pub use crate::manifest::Resources;
pub use diagnostic::Diagnostic;
pub use network::{Dns, Network, ProviderNetwork, StaticAddress};
pub use path::FieldPath;
pub use report::SpecReport;
pub use source::{Format, SourceEntry, SourceIndex, SpecDocument};

/// The application whose manifest describes the provider's object storage nodes (their ports and resources).
pub const OBJECT_STORAGE_APPLICATION: &str = "garage";

/// The ACME directory used when a specification names none: Let's Encrypt's production endpoint, the same
/// default as NixOS' `security.acme.defaults.server`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The SMTP submission port used when a relay names none (RFC 6409).
pub const SMTP_SUBMISSION_PORT: u16 = 587;

/// A whole specification: one provider and the operators it hosts.
///
/// These structs and the structure tree ([`shape::spec_shape`]) both describe every field: the tree checks the
/// untyped document (every problem at its place, the JSON Schema), the structs are the typed model with defaults.
/// A test (`agreement.rs`) holds them to the same names, optionality and value classes, field by field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The hosting provider and its runtime environment.
    pub provider: Provider,
    /// The organisations whose applications the provider runs, in the order written.
    #[serde(default)]
    pub operators: Vec<Operator>,
}

/// A hosting provider: where and how machines run, and the shared services every operator uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// A short identifier (`[a-z][a-z0-9-]*`), used in generated names.
    pub name: String,
    /// The provider's base domain: machines are named `<machine>.<domain>` on the provider's network.
    pub domain: String,
    /// Where machines run.
    pub runtime: Runtime,
    /// The ACME account for TLS certificates of every application.
    pub acme: Acme,
    /// The relay for outgoing mail; required when an enabled application needs SMTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<Smtp>,
    /// The provider's Garage cluster; required when an enabled application needs S3 buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_storage: Option<ObjectStorage>,
    /// What one machine and one operator may use; no limits when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Network defaults of every machine (name servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<ProviderNetwork>,
    /// The DNS zones' name servers, contact and CA; no zone files are written without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    /// The public SSH keys the deployment logs in with as root (`ssh-ed25519 AAAA…`): authorized on every
    /// machine, in its image too, so NixOps4 can reach a machine the image just started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deploy_keys: Vec<String>,
    /// How secrets reach the machines: files the provider places (the default), or sops-nix decrypting one
    /// encrypted file of the repository on each machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<SecretsBackend>,
}

/// How the secret files every machine declares (`fediversity.secrets`) get there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "kebab-case")]
pub enum SecretsBackend {
    /// The provider's tooling places each file at its path (`install -o … -m 0400`), the default.
    Files,
    /// sops-nix decrypts each secret from one encrypted file kept in the repository, at activation.
    Sops(Sops),
}

/// The sops-nix backend: where the encrypted file is, and the key each machine decrypts it with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sops {
    /// The encrypted file (`.yaml`, `.yml` or `.json`, written with `sops`), committed in the repository, relative
    /// to the specification file. Only this encrypted file enters the Nix store.
    pub sops_file: String,
    /// The machine's age key file (`sops.age.keyFile`), placed by the provider; when absent, each machine
    /// decrypts with the age key sops-nix derives from its SSH ed25519 host key (`sops.age.sshKeyPaths`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_key_file: Option<String>,
}

/// The runtime backend that creates and runs machines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "kebab-case")]
pub enum Runtime {
    /// Local QEMU virtual machines (tests, development).
    Qemu(Qemu),
    /// Virtual machines on a Proxmox VE cluster.
    Proxmox(Proxmox),
    /// Physical hosts, one machine per host.
    BareMetal(BareMetal),
}

impl Runtime {
    /// The Nix system every machine is built for (`nixpkgs.hostPlatform`): NixOps4 evaluates machines with
    /// `nixosSystem` without a `system` argument, so each machine must say it.
    pub fn host_platform(&self) -> &str {
        match self {
            Self::Qemu(Qemu { host_platform })
            | Self::Proxmox(Proxmox { host_platform, .. })
            | Self::BareMetal(BareMetal { host_platform, .. }) => host_platform,
        }
    }
}

/// The platform machines are built for when the specification does not say (`nixpkgs.hostPlatform`).
pub const DEFAULT_HOST_PLATFORM: &str = "x86_64-linux";

fn default_host_platform() -> String {
    DEFAULT_HOST_PLATFORM.to_owned()
}

/// Local QEMU virtual machines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Qemu {
    /// The Nix system of the machines (`nixpkgs.hostPlatform`), e.g. `x86_64-linux`.
    #[serde(default = "default_host_platform")]
    pub host_platform: String,
}

impl Default for Qemu {
    fn default() -> Self {
        Self {
            host_platform: default_host_platform(),
        }
    }
}

/// A Proxmox VE cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proxmox {
    /// The API endpoint, `https://…/api2/json`.
    pub api_url: String,
    /// The cluster node machines are created on.
    pub node: String,
    /// The storage for machine disks (e.g. `local-zfs`).
    pub storage: String,
    /// The network bridge machines are attached to (e.g. `vmbr0`).
    pub bridge: String,
    /// The API token (`user@realm!tokenid=…`), as a reference.
    pub api_token: SecretRef,
    /// The first VM id given to a new machine (default 100): a range of its own on a cluster that runs other
    /// VMs too. Ids already given are kept (`deployments/tofu/vm-ids.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_vm_id: Option<u32>,
    /// The Nix system of the machines (`nixpkgs.hostPlatform`), e.g. `x86_64-linux`.
    #[serde(default = "default_host_platform")]
    pub host_platform: String,
}

/// Physical hosts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BareMetal {
    /// The hosts by name; machines are placed on them by name.
    pub hosts: BTreeMap<String, Host>,
    /// The Nix system of the machines (`nixpkgs.hostPlatform`), e.g. `x86_64-linux`.
    #[serde(default = "default_host_platform")]
    pub host_platform: String,
}

/// One physical host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// How to reach it for deployment: `[user@]host[:port]`.
    pub ssh: String,
    /// Its `hardware-configuration.nix` (from `nixos-generate-config`), committed in the repository, relative to
    /// the specification file: pure flake evaluation reads no file outside the repository.
    pub hardware_config: String,
    /// The boot loader the host starts with; `hardware-configuration.nix` does not say it.
    pub boot_loader: BootLoader,
}

/// The boot loader of a bare-metal host (NixOS `boot.loader.*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BootLoader {
    /// systemd-boot on an EFI system partition mounted at `/boot`.
    SystemdBoot,
    /// GRUB installed on a disk (BIOS boot).
    Grub {
        /// The disk GRUB is installed on, e.g. `/dev/disk/by-id/…` (`boot.loader.grub.device`).
        device: String,
    },
}

/// The ACME account (NixOS `security.acme`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acme {
    /// The account's contact address (`security.acme.defaults.email`).
    pub email: String,
    /// The ACME directory URL (`security.acme.defaults.server`).
    #[serde(default = "lets_encrypt")]
    pub server: String,
    /// The CA's terms of service are accepted (`security.acme.acceptTerms`); must be `true`.
    pub accept_terms: bool,
}

fn lets_encrypt() -> String {
    LETS_ENCRYPT.to_owned()
}

/// The provider's SMTP relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    /// The relay's host name.
    pub host: String,
    /// The submission port.
    #[serde(default = "smtp_port")]
    pub port: u16,
    /// The login.
    pub user: String,
    /// The password, as a reference.
    pub password: SecretRef,
    /// The sender address of mail the applications send.
    pub from: String,
}

fn smtp_port() -> u16 {
    SMTP_SUBMISSION_PORT
}

/// The provider's Garage cluster (S3 object storage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectStorage {
    /// How many copies of each object Garage keeps; at most the number of nodes.
    pub replication_factor: u8,
    /// The S3 region name clients use.
    pub region: String,
    /// The cluster's nodes by name.
    pub nodes: BTreeMap<String, GarageNode>,
    /// The secrets the Garage manifest says are provided (e.g. its RPC secret), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretRef>,
}

/// One Garage node. It runs on its own machine `garage-<name>`, or on an application's machine (`machine`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GarageNode {
    /// The failure domain (Garage's layout zone), e.g. a data centre.
    pub zone: String,
    /// The storage capacity the node offers.
    pub capacity_gib: u32,
    /// Share an application's machine (`<operator>-<application>`) instead of running on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// How to reach the node's own machine for deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<String>,
    /// The bare-metal host of the node's own machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The network of the node's own machine: static addresses, or DHCP said explicitly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// The host name or IP address the other nodes reach this node's RPC port at (default: its machine's
    /// static IPv4 address, else IPv6, else on DHCP its FQDN); Garage announces `<rpc_address>:3901` and the
    /// others list it in `bootstrap_peers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_address: Option<String>,
    /// The node's public key, 64 lowercase hex digits, as `fedigen storage node-key` prints it: known before the
    /// node starts, so every node's `bootstrap_peers` can name it and the cluster forms by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// The node's secrets: `node_key`, the 64-byte key file `fedigen storage node-key` wrote (placed into
    /// Garage's `metadata_dir` before it starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<GarageNodeSecrets>,
}

impl GarageNode {
    /// The node's key file, when the specification gives one.
    pub fn node_key(&self) -> Option<&SecretRef> {
        self.secrets.as_ref().map(|s| &s.node_key)
    }
}

/// A Garage node's secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GarageNodeSecrets {
    /// The node's 64-byte key file (`fedigen storage node-key`).
    pub node_key: SecretRef,
}

/// The one secret of a Garage node (`provider.object_storage.nodes.<n>.secrets.node_key`).
pub const NODE_KEY_SECRET: &str = "node_key";

/// What one machine and one operator may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// The most one machine may have.
    pub per_machine: Resources,
    /// The most all of one operator's machines may have together.
    pub per_operator: Resources,
}

/// An organisation whose applications the provider runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    /// A short identifier (`[a-z][a-z0-9-]*`, at most 32 characters), used in machine names.
    pub name: String,
    /// The operator's domain; applications live at `<subdomain>.<domain>`.
    pub domain: String,
    /// Who the provider contacts (an e-mail address).
    pub contact: String,
    /// The first administrator account created in every application.
    pub admin: Admin,
    /// The applications by manifest name.
    #[serde(default)]
    pub applications: BTreeMap<String, OperatorApplication>,
    /// Where each application's machine is deployed, by application name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub machines: BTreeMap<String, Machine>,
}

/// The first administrator account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// The account name (`[a-z][a-z0-9_]*`, at most 30 characters: valid for every application).
    pub username: String,
    /// The account's e-mail address.
    pub email: String,
}

/// One application of an operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorApplication {
    /// Whether it is deployed; a disabled application keeps its settings.
    #[serde(default = "enabled")]
    pub enable: bool,
    /// The host name's first labels, replacing the manifest's default subdomain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
    /// Resources requested beyond the manifest's.
    #[serde(default, skip_serializing_if = "ResourceRequest::is_empty")]
    pub resources: ResourceRequest,
    /// Typed settings, by the manifest's option names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, Value>,
    /// The secrets the manifest says are provided, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretRef>,
    /// Bucket names replacing the derived `<operator>-<application>[-<kind>]`, by the manifest's bucket kind
    /// (`needs.s3_buckets`), e.g. `buckets.media = "uni-photos"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub buckets: BTreeMap<String, String>,
}

fn enabled() -> bool {
    true
}

/// Resources an operator requests for one application; each one absent takes the manifest's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRequest {
    /// CPU cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    /// Memory in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u32>,
    /// Disk in GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_gib: Option<u32>,
}

impl ResourceRequest {
    /// Whether nothing is requested (so serialisation can leave it out).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The resources the machine gets: the request, or the manifest's default for what is not requested.
    pub fn resolve(&self, default: Resources) -> Resources {
        Resources {
            cores: self.cores.unwrap_or(default.cores),
            memory_mib: self.memory_mib.unwrap_or(default.memory_mib),
            disk_gib: self.disk_gib.unwrap_or(default.disk_gib),
        }
    }
}

/// Where an application's machine is deployed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// How to reach it: `[user@]host[:port]` (QEMU and Proxmox backends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<String>,
    /// The bare-metal host it runs on (bare-metal backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Its network: static addresses, or DHCP said explicitly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
}

/// A reference to a secret; the value itself never appears in a specification or in the Nix store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretRef {
    /// A file on the target machine (`{ file = "/run/secrets/…" }`), e.g. placed by sops-nix or agenix.
    File(String),
    /// A named secret in the provider's secret store (`{ secret = "…" }`), placed on the machine at deployment.
    Secret(String),
}

impl Operator {
    /// The host name of one of its applications: the subdomain (override or the manifest's) and the domain.
    pub fn host_name(&self, application: &str, manifest: &Manifest) -> String {
        let sub = self
            .applications
            .get(application)
            .and_then(|a| a.subdomain.as_deref())
            .unwrap_or(&manifest.application.subdomain);
        format!("{sub}.{}", self.domain)
    }

    /// The name of the machine an application of this operator runs on, `<operator>-<application>`: the one place
    /// it is derived (`crate::deploy::application_machine` takes it from here, so the model needs nothing of
    /// the deployment it plans).
    pub fn machine_name(&self, application: &str) -> String {
        format!("{}-{application}", self.name)
    }
}

impl OperatorApplication {
    /// The settings with the manifest's defaults filled in for what is not set.
    pub fn settings_with_defaults(&self, manifest: &Manifest) -> BTreeMap<String, Value> {
        let mut settings = self.settings.clone();
        for (name, option) in &manifest.options {
            if let Some(default) = &option.default {
                settings
                    .entry(name.clone())
                    .or_insert_with(|| default.clone());
            }
        }
        settings
    }
}

/// The applications a specification may use: every manifest in a templates folder, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    /// The manifests by application name.
    pub manifests: BTreeMap<String, Manifest>,
}

impl Catalog {
    /// Loads every `templates/*/manifest.toml`.
    pub fn load(templates: &Path) -> Result<Self, ManifestError> {
        Ok(Self::from_manifests(Manifest::load_all(templates)?))
    }

    /// Indexes manifests by application name.
    pub fn from_manifests(manifests: impl IntoIterator<Item = Manifest>) -> Self {
        Self {
            manifests: manifests
                .into_iter()
                .map(|m| (m.application.name.clone(), m))
                .collect(),
        }
    }
}

/// Why a specification could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{}: {}", path.display(), io_problem(source))]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file's extension names no supported format.
    #[error("{}: unknown specification format; use a .toml, .json or .nix file", .0.display())]
    UnknownFormat(PathBuf),
    /// A `.nix` specification could not be evaluated.
    #[error("{}: evaluating with Nix: {source}", path.display())]
    Nix {
        /// The file.
        path: PathBuf,
        /// Nix's error.
        source: crate::eval::EvalError,
    },
    /// The specification is invalid; the report holds every problem.
    #[error("{0}")]
    Invalid(Box<SpecReport>),
}

impl LoadError {
    /// Whether the input is at fault (exit status 2) rather than the environment (exit status 3). A Nix
    /// evaluation error is the input's fault; Nix missing or failing to run is the environment's. A file that
    /// does not exist, is a folder or is not text is the input's fault; a file that exists but cannot be read
    /// (permissions, a failing disk) is the environment's.
    pub fn is_invalid_input(&self) -> bool {
        use crate::eval::EvalError;
        use std::io::ErrorKind;
        match self {
            Self::Invalid(_) | Self::UnknownFormat(_) => true,
            Self::Nix { source, .. } => matches!(source, EvalError::Nix { .. }),
            Self::Io { source, .. } => matches!(
                source.kind(),
                ErrorKind::NotFound
                    | ErrorKind::IsADirectory
                    | ErrorKind::NotADirectory
                    | ErrorKind::InvalidData
                    | ErrorKind::InvalidFilename
            ),
        }
    }
}

/// What went wrong reading a specification file, for people (no `os error` numbers).
fn io_problem(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::NotFound => "no such specification file; check the path".to_owned(),
        ErrorKind::IsADirectory => "a folder, not a specification file".to_owned(),
        ErrorKind::PermissionDenied => {
            "cannot read the specification: permission denied".to_owned()
        }
        _ => format!(
            "cannot read the specification: {}",
            crate::io_error::describe(error)
        ),
    }
}

/// Reads, parses, validates and types a specification file; the format is chosen by its extension. Then the
/// files it names beside itself (bare-metal hosts' hardware configurations) must exist, relative to its folder.
pub fn load(path: &Path, catalog: &Catalog) -> Result<Spec, LoadError> {
    let mut document = SpecDocument::read(path)?;
    // The value is taken out of the document, not copied: the report needs only the text and the index (at
    // 10,000 operators the copy was as large as the rest of the load; issue #18).
    let value = std::mem::take(&mut document.value);
    let spec = typed(&document, value, catalog).map_err(|r| LoadError::Invalid(Box::new(r)))?;
    let missing = check::files(&spec, path.parent().unwrap_or(Path::new("")));
    if missing.is_empty() {
        Ok(spec)
    } else {
        Err(LoadError::Invalid(Box::new(SpecReport::new(
            &document, missing,
        ))))
    }
}

/// What a valid specification leaves undone for the deployment, for `validate` to warn about without refusing it:
/// no deploy key (NixOps4 could not log in to a machine started from its image), machines on DHCP (their names
/// get no DNS record).
pub fn network_warnings(spec: &Spec, catalog: &Catalog) -> Vec<String> {
    let mut warnings = network_check::warnings(spec, catalog);
    warnings.extend(crate::deploy::storage::warnings(spec));
    warnings
}

/// Validates and types a parsed document, reporting every problem at once.
pub fn from_document(document: &SpecDocument, catalog: &Catalog) -> Result<Spec, SpecReport> {
    typed(document, document.value.clone(), catalog)
}

/// [`from_document`] for the document's `value`, given apart (the document's own is not read): [`load`] moves
/// it out of the document rather than copying it.
fn typed(document: &SpecDocument, mut value: Value, catalog: &Catalog) -> Result<Spec, SpecReport> {
    let mut diagnostics = document.diagnostics.clone();
    if diagnostics.is_empty() {
        diagnostics.extend(shape::check(&value, catalog));
        shape::canonicalize(&mut value, catalog);
    }
    let structural: std::collections::BTreeSet<FieldPath> =
        diagnostics.iter().map(|d| d.path.clone()).collect();
    let spec = serde_json::from_value::<Spec>(value);
    match spec {
        Ok(spec) => {
            let semantic = check::check(&spec, catalog);
            // A cross-check about a field that already failed its own check would only repeat it.
            // Looked up in the sorted set (an ancestor, or the first path from it on being a descendant), so
            // that many problems do not cost their product.
            diagnostics.extend(semantic.into_iter().filter(|d| {
                let ancestor = (0..=d.path.0.len())
                    .any(|n| structural.contains(&FieldPath(d.path.0[..n].to_vec())));
                let descendant = structural
                    .range(d.path.clone()..)
                    .next()
                    .is_some_and(|p| p.starts_with(&d.path));
                !(ancestor || descendant)
            }));
            if diagnostics.is_empty() {
                Ok(spec)
            } else {
                Err(SpecReport::new(document, diagnostics))
            }
        }
        Err(e) => {
            if diagnostics.is_empty() {
                // The structure check accepted what serde refused: report it rather than hide it.
                diagnostics.push(Diagnostic::new(
                    FieldPath::root(),
                    format!("the specification does not fit the model: {e}"),
                    "here",
                ));
            }
            Err(SpecReport::new(document, diagnostics))
        }
    }
}

/// The JSON form of a specification, as the panel sends it and as the JSON Schema describes it.
pub fn to_json(spec: &Spec) -> Value {
    serde_json::to_value(spec).expect("the model serialises to JSON")
}

/// The TOML form of a specification.
pub fn to_toml(spec: &Spec) -> Result<String, String> {
    let value = source::json_to_toml(&to_json(spec))?;
    toml::to_string(&value).map_err(|e| e.to_string())
}

/// The JSON Schema (draft 2020-12) of specifications, with each application's settings from its manifest.
pub fn json_schema(catalog: &Catalog) -> Value {
    shape::json_schema(catalog)
}
