//! Deployments: for every operator of a specification, one NixOS machine per application, and the entry points
//! that deploy them (the flake's `nixosConfigurations`, a NixOps4 deployment).
//!
//! Everything here is data from the specification turned into Nix with the emitter ([`crate::nix`]): settings
//! pass through [`crate::nix::value::from_json`] (so a setting can never become code), secrets become paths on
//! the machine (never values, never store paths), and the runtime backend decides the machine's hardware
//! settings. The files are planned like every generated file ([`crate::generate`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::emit::{Verification, emit_file};
use crate::model::{self, Catalog, Operator, Runtime, SecretRef, Spec};
use crate::nix::value::{DataPolicy, from_json};
use crate::nix::verify::VerifyError;
use crate::nix::{AttrName, AttrPath, Entry, Expr, Ident, LexicalError, Param, SourcePath};
use crate::write::marker_text;

mod base;
mod dns;
pub(crate) use dns::{TTL as ZONE_TTL, address_records};
pub mod host_keys;
mod machine;
pub(crate) use machine::garage_capacity;
mod network;
mod nixops4;
mod provider;
pub(crate) mod secrets;
pub(crate) mod sops;
pub mod storage;
pub mod tofu;
mod vm_ids;

pub(crate) use dns::ca_domain;
pub use network::DeployTarget;
pub(crate) use network::is_qualified_host;

use base::{base_module, machine_base};
use host_keys::{HostKeys, host_keys_path};
use machine::{garage_machine, machine_module};
use nixops4::nixops4;
use provider::{garage_cluster_module, provider_module};

/// The folder of generated deployments.
pub(crate) const DEPLOYMENTS: &str = "deployments";

/// The module every application machine imports, `deployments/provider.nix`: the provider's services (ACME
/// account, SMTP relay, S3 endpoint), written once instead of in every machine.
pub(crate) const PROVIDER_MODULE: &str = "provider.nix";

/// The module every machine running a Garage node imports, `deployments/garage-cluster.nix`: the cluster's
/// settings (replication, region, secrets), the same on every node. Garage nodes import `provider.nix` too: their
/// nginx gets the S3 and media hosts' certificates from the provider's ACME account.
pub(crate) const GARAGE_CLUSTER_MODULE: &str = "garage-cluster.nix";

/// The module every machine imports, `deployments/base.nix`: what the provider's runtime backend gives every
/// machine (the guest profile or image module, the root file system and boot loader where the backend decides
/// them, `nixpkgs.hostPlatform`), written once. What differs per machine (cores, memory, disk, a bare-metal
/// host's hardware and boot loader) is in the machine's own file.
pub(crate) const BASE_MODULE: &str = "base.nix";

/// Where a named secret (`{ secret = "name" }`) is placed on the machine by the provider's tooling.
pub(crate) const NAMED_SECRETS_DIR: &str = "/run/secrets";

/// The NixOS release the generated machines are first installed with (`system.stateVersion`).
pub(crate) const STATE_VERSION: &str = "26.05";

/// Why deployments could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// A name or value cannot be written in Nix.
    #[error(transparent)]
    Lexical(#[from] LexicalError),
    /// Emitted text failed verification (a bug in fedigen).
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A setting cannot be written as Nix data.
    #[error("{0}")]
    Data(String),
}

/// One machine of the deployment: an operator's application, or a Garage node with a machine of its own. Every
/// name generated for it comes from [`machines`], which planning and validation (`crate::model::check`) both
/// read, so the names checked for collisions are the names written.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedMachine {
    /// The NixOS configuration's name and host name: `<operator>-<application>` or `garage-<node>`. It is the
    /// attribute name in `deployments/default.nix` and `nixops4.nix`, and its VM's resource label in
    /// `tofu/main.tf.json`.
    pub name: String,
    /// The file of its module, relative to `deployments/`: `<operator>/<application>.nix` or
    /// `garage/<node>.nix`.
    pub file: String,
    /// The domain it is in (`networking.domain`): the operator's, or the provider's for a Garage node.
    pub domain: String,
    /// What it runs, and so what in the specification it comes from.
    pub role: MachineRole,
    /// `[user@]host[:port]` to deploy to, when the specification says (a bare-metal machine's host's).
    pub ssh: Option<String>,
    /// Its network as the specification gives it (static addresses or DHCP); `None` when it gives none.
    pub network: Option<model::Network>,
}

impl PlannedMachine {
    /// Its fully qualified domain name, `<name>.<domain>`.
    pub(crate) fn fqdn(&self) -> String {
        format!("{}.{}", self.name, self.domain)
    }
}

/// What a planned machine runs: an operator's application (a Garage node may share that machine), or a Garage
/// node on a machine of its own. Each role names what it holds, so a node's name is never read as an application.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum MachineRole {
    /// The enabled application `application` of the operator at index `operator` of `operators`.
    Application {
        /// The operator's index.
        operator: usize,
        /// The application's name (a key of the operator's `applications`).
        application: String,
    },
    /// The Garage node of this name (a key of `provider.object_storage.nodes`).
    GarageNode(String),
}

impl MachineRole {
    /// What in the specification the machine's names come from, for messages about them.
    pub(crate) fn origin(&self) -> Origin {
        match self {
            Self::Application {
                operator,
                application,
            } => Origin::Application {
                operator: *operator,
                application: application.clone(),
            },
            Self::GarageNode(node) => Origin::GarageNode(node.clone()),
        }
    }
}

/// What in a specification a generated name comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Origin {
    /// An enabled application of the operator at this index of `operators`.
    Application {
        /// The operator's index.
        operator: usize,
        /// The application's name.
        application: String,
    },
    /// A Garage node of the provider's object storage.
    GarageNode(String),
    /// The domain of the operator at this index.
    OperatorDomain(usize),
    /// The provider's S3 endpoint (`<garage subdomain>.<provider domain>`; Garage also answers for
    /// `<bucket>.<endpoint>`).
    S3Endpoint,
    /// The provider's public media host (`media.<provider domain>`): Garage's web endpoint behind nginx, every
    /// public bucket at `/<bucket>/`.
    S3WebEndpoint,
}

/// The name (from [`Operator::machine_name`]) and module file (relative to `deployments/`) of an operator's
/// application machine: the one place they are derived, for [`machines`], the modules and the VM tests.
pub(crate) fn application_machine(operator: &Operator, app: &str) -> (String, String) {
    (
        operator.machine_name(app),
        format!("{}/{app}.nix", operator.name),
    )
}

/// The name and module file (relative to `deployments/`) of a Garage node's own machine, `garage-<node>` and
/// `garage/<node>.nix`: the one place they are derived, for [`machines`].
pub(crate) fn garage_node_machine(node: &str) -> (String, String) {
    (
        format!("{}-{node}", model::OBJECT_STORAGE_APPLICATION),
        format!("{}/{node}.nix", model::OBJECT_STORAGE_APPLICATION),
    )
}

/// Every machine of a specification, in the order planned: each operator's enabled applications that have a
/// manifest, then the Garage nodes with machines of their own. The one place machine names and files are derived.
pub fn machines(spec: &Spec, catalog: &Catalog) -> Vec<PlannedMachine> {
    let mut machines = Vec::new();
    for (i, operator) in spec.operators.iter().enumerate() {
        for (app, application) in &operator.applications {
            if !application.enable || !catalog.manifests.contains_key(app) {
                continue;
            }
            let (name, file) = application_machine(operator, app);
            machines.push(PlannedMachine {
                name,
                file,
                domain: operator.domain.clone(),
                role: MachineRole::Application {
                    operator: i,
                    application: app.clone(),
                },
                ssh: deploy_ssh(
                    spec,
                    operator.machines.get(app).and_then(|m| m.ssh.as_ref()),
                    operator.machines.get(app).and_then(|m| m.host.as_deref()),
                ),
                network: operator.machines.get(app).and_then(|m| m.network.clone()),
            });
        }
    }
    if let Some(storage) = &spec.provider.object_storage {
        for (node_name, node) in storage.nodes.iter().filter(|(_, n)| n.machine.is_none()) {
            let (name, file) = garage_node_machine(node_name);
            machines.push(PlannedMachine {
                name,
                file,
                domain: spec.provider.domain.clone(),
                role: MachineRole::GarageNode(node_name.clone()),
                ssh: deploy_ssh(spec, node.ssh.as_ref(), node.host.as_deref()),
                network: node.network.clone(),
            });
        }
    }
    machines
}

/// The SSH target of a machine as the specification writes it: its own `ssh`, or on bare metal its host's.
fn deploy_ssh(spec: &Spec, ssh: Option<&String>, host: Option<&str>) -> Option<String> {
    match &spec.provider.runtime {
        Runtime::BareMetal(bare) => host.and_then(|h| bare.hosts.get(h)).map(|h| h.ssh.clone()),
        _ => ssh.cloned(),
    }
}

/// The provider's S3 endpoint host, when it has object storage: the Garage manifest's subdomain (`s3`) in the
/// provider's domain.
pub(crate) fn s3_host(spec: &Spec, catalog: &Catalog) -> Option<String> {
    spec.provider.object_storage.as_ref()?;
    let subdomain = catalog
        .manifests
        .get(model::OBJECT_STORAGE_APPLICATION)
        .map_or("s3", |m| m.application.subdomain.as_str());
    Some(format!("{subdomain}.{}", spec.provider.domain))
}

/// Every host name a request can reach, with its origin, in this order: the provider's S3 and S3 web endpoints,
/// operator domains, then each enabled application's host. Machines' own names are [`PlannedMachine::fqdn`].
pub(crate) fn host_names(spec: &Spec, catalog: &Catalog) -> Vec<(String, Origin)> {
    let mut hosts: Vec<(String, Origin)> = Vec::new();
    if let Some(s3) = s3_host(spec, catalog) {
        hosts.push((s3.clone(), Origin::S3Endpoint));
        if let Some((_, media, _)) = storage::endpoint_hosts(spec, catalog) {
            hosts.push((media, Origin::S3WebEndpoint));
        }
    }
    hosts.extend(
        spec.operators
            .iter()
            .enumerate()
            .map(|(i, op)| (op.domain.clone(), Origin::OperatorDomain(i))),
    );
    for (i, op) in spec.operators.iter().enumerate() {
        for (app, _) in op.applications.iter().filter(|(_, a)| a.enable) {
            let Some(manifest) = catalog.manifests.get(app) else {
                continue;
            };
            hosts.push((
                op.host_name(app, manifest),
                Origin::Application {
                    operator: i,
                    application: app.clone(),
                },
            ));
        }
    }
    hosts
}

/// The names an application machine's configuration binds in `fediversity` (in its own file and in the provider
/// modules it imports), each with what it comes from: its domain, the provider-wide settings every application
/// reads, the application itself, and Garage when a node shares the machine. [`machine_module`] binds exactly
/// these; validation refuses a specification that binds one twice.
pub(crate) fn fediversity_names(
    spec: &Spec,
    machine: &str,
    app: &str,
) -> Vec<(String, FediversityName)> {
    let mut names = vec![
        ("domain".to_owned(), FediversityName::Domain),
        ("admin".to_owned(), FediversityName::Admin),
    ];
    names.extend(
        ["acme"]
            .into_iter()
            .chain(spec.provider.smtp.as_ref().map(|_| "smtp"))
            .chain(spec.provider.object_storage.as_ref().map(|_| "s3"))
            .map(|n| (n.to_owned(), FediversityName::Provider)),
    );
    names.push(("secrets".to_owned(), FediversityName::Secrets));
    names.push((app.to_owned(), FediversityName::Application));
    if let Some(storage) = &spec.provider.object_storage
        && let Some((node, _)) = storage
            .nodes
            .iter()
            .find(|(_, n)| n.machine.as_deref() == Some(machine))
    {
        names.push((
            model::OBJECT_STORAGE_APPLICATION.to_owned(),
            FediversityName::GarageNode(node.clone()),
        ));
    }
    names
}

/// What a name in a machine's `fediversity` set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FediversityName {
    /// The machine's domain (the operator's), bound in the machine's own file.
    Domain,
    /// The operator's first administrator (`operators[].admin`), bound in the machine's own file.
    Admin,
    /// A provider-wide setting (`acme`, `smtp`, `s3`), bound once in `deployments/provider.nix`, which every
    /// application machine imports.
    Provider,
    /// Every secret file of the machine (`fediversity.secrets`, see [`secrets`]), bound in the machine's own file.
    Secrets,
    /// The application the machine runs.
    Application,
    /// The Garage node sharing the machine: `garage`, bound in `deployments/garage-cluster.nix`, which the
    /// machine imports.
    GarageNode(String),
}

/// The names an application binds in its own set (`fediversity.<app>`), each with where it comes from:
/// `enable`, `subdomain` when overridden, each setting, and `<secret>File` for each provided secret.
pub(crate) fn application_names(
    application: &model::OperatorApplication,
) -> Vec<(String, ApplicationName<'_>)> {
    let mut names = vec![("enable".to_owned(), ApplicationName::Enable)];
    if let Some(subdomain) = &application.subdomain {
        names.push((
            "subdomain".to_owned(),
            ApplicationName::Subdomain(subdomain),
        ));
    }
    for (name, value) in &application.settings {
        names.push((name.clone(), ApplicationName::Setting(name, value)));
    }
    for (name, secret) in &application.secrets {
        names.push((format!("{name}File"), ApplicationName::Secret(name, secret)));
    }
    names
}

/// What a name in an application's set holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ApplicationName<'a> {
    /// `enable = true`.
    Enable,
    /// The subdomain override.
    Subdomain(&'a str),
    /// A setting, by its name in `settings`.
    Setting(&'a str, &'a Value),
    /// A provided secret's file, by its name in `secrets`.
    Secret(&'a str, &'a SecretRef),
}

/// What a generation keeps from the repository: the provider's SSH host keys (beside the specification) and the
/// Proxmox VM ids (`deployments/tofu/vm-ids.json`). Empty for a first generation, or in a test.
#[derive(Debug, Default)]
pub struct Kept {
    /// The machines' SSH host keys; a machine without one is left out of the NixOps4 deployment.
    pub host_keys: HostKeys,
    /// The VM ids given so far; machines keep theirs, new machines get new ones.
    pub vm_ids: tofu::VmIds,
}

/// Plans `deployments/` with nothing kept (see [`plan_keeping`]): no host keys, so the NixOps4 deployment has no
/// members, and VM ids allocated afresh.
pub fn plan(
    spec: &Spec,
    catalog: &Catalog,
    spec_name: &str,
) -> Result<BTreeMap<PathBuf, String>, DeployError> {
    plan_keeping(spec, catalog, spec_name, &Kept::default())
}

/// Plans `deployments/`: one file per machine, `default.nix` (machine name → module), `nixops4.nix` (a member
/// for each machine with a key in `kept`), and for the Proxmox backend `tofu/` (the OpenTofu configuration that
/// creates every machine's VM, [`tofu`], keeping the VM ids of `kept`), and with `provider.dns` one DNS zone file
/// per operator domain and the provider's (`dns/<zone>.zone`). `spec_name` names the specification in markers.
pub fn plan_keeping(
    spec: &Spec,
    catalog: &Catalog,
    spec_name: &str,
    kept: &Kept,
) -> Result<BTreeMap<PathBuf, String>, DeployError> {
    let files = std::sync::Mutex::new(BTreeMap::new());
    plan_streaming(
        spec,
        catalog,
        spec_name,
        kept,
        &|path: &Path, text: &str| {
            files
                .lock()
                .expect("no panic holds it")
                .insert(path.to_owned(), text.to_owned());
            Ok::<(), DeployError>(())
        },
    )?;
    Ok(files.into_inner().expect("no panic holds it"))
}

/// [`plan_keeping`], giving each file to `sink` as soon as it is emitted (from rayon's threads, in no particular
/// order) instead of holding them all: `fedigen generate` writes each into its staging at once (issue #18). The
/// first error reported is the first machine's, as for [`plan_keeping`]; a sink's error stops the planning.
pub fn plan_streaming<E: From<DeployError> + Send>(
    spec: &Spec,
    catalog: &Catalog,
    spec_name: &str,
    kept: &Kept,
    sink: &(dyn Fn(&Path, &str) -> Result<(), E> + Sync),
) -> Result<(), E> {
    let header = |what: &str| vec![marker_text(&format!("{spec_name} ({what})"))];
    let spec_dir = Path::new(spec_name).parent().unwrap_or(Path::new(""));
    // Each machine is described, emitted, verified and handed to the sink on rayon's threads, and its expression
    // and text dropped at once: at 10,000 operators, holding all 40,000 expressions until the last was emitted
    // was most of the peak memory (issue #18). Results are taken in the machines' order, so the first error
    // reported is the first machine's.
    let described: Vec<Result<Option<PlannedMachine>, E>> = {
        use rayon::prelude::*;
        machines(spec, catalog)
            .into_par_iter()
            .map(|machine| {
                let (module, what) = match &machine.role {
                    MachineRole::Application {
                        operator,
                        application: app,
                    } => {
                        let operator = &spec.operators[*operator];
                        let application = &operator.applications[app];
                        let manifest = &catalog.manifests[app];
                        (
                            machine_module(
                                spec,
                                spec_dir,
                                operator,
                                app,
                                application,
                                manifest,
                                catalog,
                            )?,
                            format!("operator {}, application {app}", operator.name),
                        )
                    }
                    MachineRole::GarageNode(node_name) => {
                        let Some(storage) = &spec.provider.object_storage else {
                            return Ok(None);
                        };
                        let node = &storage.nodes[node_name];
                        (
                            garage_machine(
                                spec,
                                spec_dir,
                                (&machine.name, node_name, node),
                                catalog,
                            )?,
                            format!("Garage node {node_name}"),
                        )
                    }
                };
                let (path, text) = machine_file(&machine, &module, &header(&what))?;
                drop(module);
                sink(&path, &text)?;
                Ok(Some(machine))
            })
            .collect()
    };
    let mut machines = Vec::with_capacity(described.len());
    for machine in described {
        if let Some(machine) = machine? {
            machines.push(machine);
        }
    }
    // The files beside the machines' folders: each with the marker, what it is (`what`) and a line on its use.
    let top_level = |name: &str, what: &str, purpose: &str, module: &Expr| {
        let mut lines = header(what);
        lines.extend(purpose.lines().map(str::to_owned));
        let path = format!("{DEPLOYMENTS}/{name}");
        let text =
            emit_file(&path, &lines, module, Verification::Syntax).map_err(DeployError::from)?;
        sink(Path::new(&path), &text)
    };
    top_level(
        BASE_MODULE,
        "the runtime backend's base",
        "Imported by every machine: what the runtime backend gives each machine (boot, disks, platform), written once.",
        &base_module(&spec.provider.runtime, &spec.provider.deploy_keys)?,
    )?;
    top_level(
        PROVIDER_MODULE,
        "the provider's services",
        "Imported by every application machine: the ACME account, SMTP relay and S3 endpoint, written once.\nThe SMTP password file is each application's own (`fediversity.smtp.passwordFile` and `fediversity.secrets` in its machine's file, owned by its service user):\nthe provider's tooling places the one secret once per consumer path.",
        &provider_module(spec, catalog)?,
    )?;
    if let Some(storage) = &spec.provider.object_storage {
        top_level(
            GARAGE_CLUSTER_MODULE,
            "the Garage cluster",
            "Imported by every machine running a Garage node: the cluster's settings, the same on every node.",
            &garage_cluster_module(spec, catalog, storage)?,
        )?;
    }
    if let Some(sops) = sops::sops(spec) {
        top_level(
            sops::SOPS_MODULE,
            "secrets through sops-nix",
            "Imported by every machine: the encrypted sops file and the key each machine decrypts it with (without `age_key_file`,\nsops-nix's default: the age key of the machine's SSH ed25519 host key, `ssh-to-age < ssh_host_ed25519_key.pub`).\nEach machine's `sops.secrets` are the files of its `fediversity.secrets` (README, \"Placing secrets\").",
            &sops::sops_module(sops, spec_dir)?,
        )?;
    }
    top_level(
        sops::INPUTS_MODULE,
        "the flake inputs' modules of every machine",
        "The NixOS modules of the flake's inputs every machine imports besides its own file (sops-nix's when secrets come\nthrough sops): the flake's nixosConfigurations and the NixOps4 members import this list.",
        &sops::inputs_module(spec)?,
    )?;
    let index = Expr::attrs(
        machines
            .iter()
            .map(|m| {
                Ok(Entry::binding(
                    AttrPath::from(AttrName::new(&m.name)?),
                    Expr::SourcePath(SourcePath::new(&format!("./{}", m.file))?),
                ))
            })
            .collect::<Result<Vec<_>, LexicalError>>()
            .map_err(DeployError::from)?,
    );
    top_level(
        "default.nix",
        "every machine, by name",
        "Machine name → NixOS module; the flake turns each into `nixosConfigurations.<name>`.",
        &index,
    )?;
    let keys_file = host_keys_path(Path::new(spec_name));
    let missing = kept.host_keys.missing(&machines);
    let mut purpose = format!(
        "`nixops4 apply` deploys every machine, `nixops4 apply <machine>` one; SSH host keys from {}.",
        keys_file.display()
    );
    if !missing.is_empty() {
        purpose.push_str(&format!(
            " Left out until their SSH host keys are there (`fedigen validate` lists them): {}.",
            missing.join(", ")
        ));
    }
    top_level(
        "nixops4.nix",
        "the NixOps4 deployment",
        &purpose,
        &nixops4(&machines, &kept.host_keys, &sops::input_modules(spec)?)?,
    )?;
    if let Runtime::Proxmox(proxmox) = &spec.provider.runtime {
        for (path, text) in tofu::plan(spec, proxmox, catalog, &machines, &kept.vm_ids, spec_name)?
        {
            sink(&path, &text)?;
        }
    }
    if let Some(mut description) = storage::description(spec, catalog) {
        description.comment = Some(
            marker_text(&format!("{spec_name} (the storage description)"))
                + " The cluster, buckets and keys `fedigen storage apply` brings Garage to, on the first Garage node; no secrets (key files are paths on that node).",
        );
        sink(
            &PathBuf::from(DEPLOYMENTS).join(storage::DESCRIPTION_FILE),
            &description.to_json(),
        )?;
    }
    for (path, text) in dns::zones(
        spec,
        catalog,
        &machines,
        &marker_text(&format!("{spec_name} (DNS zone)")),
    ) {
        sink(&path, &text)?;
    }
    Ok(())
}

/// Emits a machine's module as `deployments/<operator>/<application>.nix`.
fn machine_file(
    machine: &PlannedMachine,
    module: &Expr,
    header: &[String],
) -> Result<(PathBuf, String), DeployError> {
    let path = PathBuf::from(DEPLOYMENTS).join(&machine.file);
    let text = emit_file(
        &path.display().to_string(),
        header,
        module,
        Verification::Syntax,
    )?;
    Ok((path, text))
}

fn data(value: &Value) -> Result<Expr, DeployError> {
    from_json(value, DataPolicy::default()).map_err(|errors| {
        DeployError::Data(
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}

/// A secret reference as the path of its file on the machine.
pub(crate) fn secret_path(secret: &SecretRef) -> String {
    match secret {
        SecretRef::File(path) => path.clone(),
        SecretRef::Secret(name) => format!("{NAMED_SECRETS_DIR}/{name}"),
    }
}

/// Loads the specification at `path` with the repository's templates, for planning.
pub fn load_spec(repo: &Path, path: &Path) -> Result<(Spec, Catalog), String> {
    let catalog = Catalog::load(&repo.join("templates")).map_err(|e| e.to_string())?;
    let spec = model::load(path, &catalog).map_err(|e| e.to_string())?;
    Ok((spec, catalog))
}

/// The name the NixOS test driver gives a node in the test script (its `pythonize_name`).
pub fn python_name(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if c.is_ascii_alphanumeric() && !(i == 0 && c.is_ascii_digit()) || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
