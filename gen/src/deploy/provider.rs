//! The provider's modules written once: `deployments/provider.nix` (ACME, SMTP, S3 endpoint) for application
//! machines and `deployments/garage-cluster.nix` for Garage nodes.

use super::*;

/// `deployments/provider.nix`: the provider-wide settings every application reads (ACME, SMTP relay, S3
/// endpoint), bound once for all application machines. The domain is each machine's own.
pub(super) fn provider_module(spec: &Spec, catalog: &Catalog) -> Result<Expr, DeployError> {
    let provider = &spec.provider;
    let mut fediversity = vec![
        Entry::dotted("acme.email", Expr::string(&provider.acme.email)?)?,
        Entry::dotted("acme.server", Expr::string(&provider.acme.server)?)?,
    ];
    if let Some(smtp) = &provider.smtp {
        fediversity.push(Entry::dotted(
            "smtp",
            Expr::attrs(vec![
                Entry::dotted("host", Expr::string(&smtp.host)?)?,
                Entry::dotted("port", Expr::Int(i64::from(smtp.port)))?,
                Entry::dotted("user", Expr::string(&smtp.user)?)?,
                // The password file is each consumer's own (`fediversity.smtp.passwordFile` in its machine's
                // file, owned by its service user): see `secrets::consumer_path`.
                Entry::dotted("fromAddress", Expr::string(&smtp.from)?)?,
            ]),
        )?);
    }
    if let (Some(storage), Some(s3)) = (&provider.object_storage, s3_host(spec, catalog)) {
        fediversity.push(Entry::dotted(
            "s3.endpoint",
            Expr::string(&format!("https://{s3}"))?,
        )?);
        fediversity.push(Entry::dotted("s3.region", Expr::string(&storage.region)?)?);
        if let Some((_, media, _)) = super::storage::endpoint_hosts(spec, catalog) {
            fediversity.push(Entry::dotted(
                "s3.publicUrl",
                Expr::string(&format!("https://{media}"))?,
            )?);
        }
    }
    Ok(Expr::attrs(vec![Entry::dotted(
        "fediversity",
        Expr::attrs(fediversity),
    )?]))
}

/// `deployments/garage-cluster.nix`: the settings of the provider's Garage cluster, the same on every node.
/// The cluster's secret files are declared here too (`fediversity.secrets`), once for every node's machine.
pub(super) fn garage_cluster_module(
    spec: &Spec,
    catalog: &Catalog,
    storage: &model::ObjectStorage,
) -> Result<Expr, DeployError> {
    let secrets = super::secrets::garage_secrets(spec, catalog);
    let mut garage = garage_entries(storage)?;
    garage.extend(super::storage::cluster_entries(spec, catalog)?);
    let mut entries = vec![Entry::dotted(
        "fediversity",
        Expr::attrs(vec![
            Entry::binding(
                AttrPath::from(AttrName::new(model::OBJECT_STORAGE_APPLICATION)?),
                Expr::attrs(garage),
            ),
            super::secrets::secrets_binding(&secrets)?,
        ]),
    )?];
    // The same files through sops-nix, when the specification chose it (the cluster's: no operator).
    entries.extend(super::sops::sops_secrets(spec, None, &secrets)?);
    Ok(Expr::attrs(entries))
}

/// `enable = true; …` for `fediversity.garage` on a machine that runs a node of the provider's Garage cluster.
fn garage_entries(storage: &model::ObjectStorage) -> Result<Vec<Entry>, DeployError> {
    let mut entries = vec![
        Entry::dotted("enable", Expr::Bool(true))?,
        Entry::dotted(
            "replicationFactor",
            Expr::Int(i64::from(storage.replication_factor)),
        )?,
        Entry::dotted("region", Expr::string(&storage.region)?)?,
    ];
    for (name, secret) in &storage.secrets {
        entries.push(Entry::binding(
            AttrPath::from(AttrName::new(&format!("{name}File"))?),
            Expr::runtime_path(&secret_path(secret))?,
        ));
    }
    Ok(entries)
}
