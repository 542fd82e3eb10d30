//! One machine's module: an operator's application, or a Garage node on a machine of its own.

use super::*;

/// The NixOS module of one application's machine (with a Garage node when one shares it). Its `fediversity`
/// names are [`fediversity_names`] and its application's are [`application_names`], the names validation checks.
pub(super) fn machine_module(
    spec: &Spec,
    spec_dir: &Path,
    operator: &Operator,
    app: &str,
    application: &model::OperatorApplication,
    manifest: &crate::manifest::Manifest,
    catalog: &Catalog,
) -> Result<Expr, DeployError> {
    let capacity = application.resources.resolve(manifest.resources);
    let bare_metal_host = operator.machines.get(app).and_then(|m| m.host.as_deref());
    let (machine, _) = application_machine(operator, app);
    let mut provider_modules = Vec::new();
    let mut fediversity = Vec::new();
    let mut shared_node = None;
    for (name, what) in fediversity_names(spec, &machine, app) {
        match what {
            FediversityName::Domain => fediversity.push(Entry::binding(
                AttrPath::from(AttrName::new(&name)?),
                Expr::string(&operator.domain)?,
            )),
            FediversityName::Admin => fediversity.push(Entry::binding(
                AttrPath::from(AttrName::new(&name)?),
                Expr::attrs(vec![
                    Entry::dotted("username", Expr::string(&operator.admin.username)?)?,
                    Entry::dotted("email", Expr::string(&operator.admin.email)?)?,
                ]),
            )),
            // The provider-wide settings are bound together, once for every machine, in the provider module.
            FediversityName::Provider => {
                if !provider_modules.contains(&PROVIDER_MODULE) {
                    provider_modules.push(PROVIDER_MODULE);
                }
            }
            FediversityName::Application => {
                let mut app_entries = Vec::new();
                for (key, held) in application_names(application) {
                    let value = match held {
                        ApplicationName::Enable => Expr::Bool(true),
                        ApplicationName::Subdomain(subdomain) => Expr::string(subdomain)?,
                        ApplicationName::Setting(_, value) => data(value)?,
                        ApplicationName::Secret(_, secret) => {
                            Expr::runtime_path(&secret_path(secret))?
                        }
                    };
                    app_entries.push(Entry::binding(AttrPath::from(AttrName::new(&key)?), value));
                }
                if let MachineRole::Application { operator: i, .. } =
                    machine_role(spec, operator, app)
                    && let Some(entry) =
                        super::storage::object_storage_entry(spec, catalog, i, app)?
                {
                    app_entries.push(entry);
                }
                fediversity.push(Entry::binding(
                    AttrPath::from(AttrName::new(&name)?),
                    Expr::attrs(app_entries),
                ));
            }
            FediversityName::GarageNode(node) => {
                provider_modules.push(GARAGE_CLUSTER_MODULE);
                fediversity.extend(super::storage::node_entries(spec, catalog, &node)?);
                shared_node = Some(node);
            }
            // Bound below, once everything the machine runs is known.
            FediversityName::Secrets => {}
        }
    }
    // The Garage cluster's secrets, when a node shares the machine, are declared in garage-cluster.nix (once).
    let mut secrets =
        secrets::application_secrets(spec, catalog, app, application, manifest, false);
    if let Some(node) = &shared_node {
        secrets.extend(super::storage::node_secrets(spec, catalog, node));
        secrets.sort_by(|a, b| a.name.cmp(&b.name));
    }
    // This application's own copy of the provider's SMTP password (provider.nix binds the rest of `smtp`).
    if let Some(smtp_secret) = secrets
        .iter()
        .find(|s| s.name == secrets::smtp_secret_name(app))
    {
        fediversity.push(Entry::dotted(
            "smtp.passwordFile",
            Expr::runtime_path(&smtp_secret.path)?,
        )?);
    }
    fediversity.push(secrets::secrets_binding(&secrets)?);
    if sops::sops(spec).is_some() {
        provider_modules.push(sops::SOPS_MODULE);
    }
    let mut entries = machine_base(
        spec,
        spec_dir,
        capacity,
        bare_metal_host,
        (&machine, &operator.domain),
        operator.machines.get(app).and_then(|m| m.network.as_ref()),
        &provider_modules,
    )?;
    entries.push(Entry::dotted("fediversity", Expr::attrs(fediversity))?);
    entries.extend(sops::sops_secrets(spec, Some(&operator.name), &secrets)?);
    Ok(Expr::attrs(entries))
}

/// The NixOS module of a Garage node's own machine, `garage-<node>`, in the provider's domain. The cluster's
/// settings come from `deployments/garage-cluster.nix`; nothing else of the provider's is needed.
pub(super) fn garage_machine(
    spec: &Spec,
    spec_dir: &Path,
    (name, node_name, node): (&str, &str, &model::GarageNode),
    catalog: &Catalog,
) -> Result<Expr, DeployError> {
    let capacity = garage_capacity(node, catalog);
    let domain = &spec.provider.domain;
    let mut entries = machine_base(
        spec,
        spec_dir,
        capacity,
        node.host.as_deref(),
        (name, domain),
        node.network.as_ref(),
        // provider.nix for the ACME account: the node's nginx gets certificates for the S3 and media hosts.
        &[PROVIDER_MODULE, GARAGE_CLUSTER_MODULE]
            .into_iter()
            .chain(sops::sops(spec).map(|_| sops::SOPS_MODULE))
            .collect::<Vec<_>>(),
    )?;
    let mut fediversity = vec![Entry::dotted("domain", Expr::string(domain)?)?];
    fediversity.extend(super::storage::node_entries(spec, catalog, node_name)?);
    let secrets = super::storage::node_secrets(spec, catalog, node_name);
    if !secrets.is_empty() {
        fediversity.push(secrets::secrets_binding(&secrets)?);
    }
    entries.push(Entry::dotted("fediversity", Expr::attrs(fediversity))?);
    // The node's own files through sops-nix too (the cluster's are in garage-cluster.nix).
    entries.extend(sops::sops_secrets(spec, None, &secrets)?);
    Ok(Expr::attrs(entries))
}

/// The resources of a Garage node's own machine: the Garage manifest's, with a disk of the node's capacity plus
/// the manifest's disk (the system, Garage's metadata and logs): the layout capacity is what Garage fills with
/// data, so a disk of only that size (the old `max`) left nothing for the rest. The one place they are derived,
/// for the machine's module, its provisioning (`deployments/tofu/`) and the per-machine limit check.
pub(crate) fn garage_capacity(node: &model::GarageNode, catalog: &Catalog) -> model::Resources {
    let defaults = catalog
        .manifests
        .get(model::OBJECT_STORAGE_APPLICATION)
        .map(|m| m.resources)
        .unwrap_or(crate::manifest::Resources {
            cores: 2,
            memory_mib: 2048,
            disk_gib: 0,
        });
    model::Resources {
        cores: defaults.cores,
        memory_mib: defaults.memory_mib,
        disk_gib: defaults.disk_gib.saturating_add(node.capacity_gib),
    }
}

/// The role of an operator's application machine (its operator's index), for the parts keyed by operator.
fn machine_role(spec: &Spec, operator: &Operator, app: &str) -> MachineRole {
    let index = spec
        .operators
        .iter()
        .position(|o| o.name == operator.name)
        .unwrap_or_default();
    MachineRole::Application {
        operator: index,
        application: app.to_owned(),
    }
}
