//! Secrets through sops-nix, when the specification asks for it (`[provider.secrets] backend = "sops"`).
//!
//! Every secret file a machine declares in `fediversity.secrets` ([`super::secrets`]) becomes one
//! `sops.secrets."<name>"` of sops-nix (`Mic92/sops-nix`, `modules/sops/default.nix`), with the same path, owner,
//! group and mode, so the `fediversity-secrets-check` unit checks the files sops-nix placed exactly as it checks
//! files the provider placed. What this maps onto, as sops-nix reads it:
//!
//! - `sopsFile` is `sops.defaultSopsFile` of `deployments/sops.nix` (imported by every machine), a Nix path
//!   literal: the *encrypted* file is copied into the store with the configuration, which is what sops-nix expects
//!   (`validateSopsFiles` requires a store path) and is safe — it holds only ciphertext. The decrypted value is written by `sops-install-secrets` on the machine, at
//!   activation, to `/run/secrets.d/<generation>/<name>` (a ramfs), never to the store.
//! - The attribute name decides where the real file is (`/run/secrets/<name>`, `/run/secrets` being a symlink to
//!   the current generation). A secret whose path is under `/run/secrets/` gets the rest of its path as its name,
//!   so sops-nix writes the file exactly there and creates no symlink (`symlinkSecretsAndTemplates` skips a path
//!   equal to `/run/secrets/<name>`); a path elsewhere gets the `fediversity.secrets` name, and sops-nix links
//!   the path to `/run/secrets/<name>`. Validation refuses two secrets of one machine with one name.
//! - `key` is where the value is inside the sops file ([`sops_key`]): a named secret (`{ secret = "smtp" }`) is
//!   the top-level key of that name, the same for every machine and every consumer reading it; a file reference
//!   is keyed by where the specification declares it, `operators/<operator>/<application>/<secret>`, or
//!   `provider/garage/<secret>` (the Garage cluster's) and `provider/smtp-password`. sops-nix reads `a/b/c` as
//!   nested maps (`recurseSecretKey`), so the provider writes them nested; validation refuses a named secret
//!   called `operators` or `provider` when such keys exist (one key cannot be a value and a map).
//! - `owner` and `group` are set explicitly (sops-nix's default group is the owner's primary group); the owners are
//!   the services' users, which their NixOS modules declare, and sops-nix installs secrets after users and
//!   groups exist (its activation script runs after `users` and `groups`, its systemd unit after
//!   `systemd-sysusers`/`userborn`). No secret is `neededForUsers`.
//! - `restartUnits` is the unit that reads the file: a changed secret restarts its reader.
//!
//! The machines import `inputs.sops-nix.nixosModules.sops` through the entry points that build them (the flake's
//! `nixosConfigurations` and the NixOps4 members, from `deployments/inputs.nix`), and `deployments/sops.nix` (every
//! machine imports it) says which key decrypts: `sops.age.keyFile`, or by default the age key sops-nix derives
//! from the machine's SSH ed25519 host key (`sops.age.sshKeyPaths` defaults to the ed25519 keys of
//! `services.openssh.hostKeys`, and every machine runs sshd).

use super::secrets::{Holds, MachineSecret, declared_at};
use super::*;
use crate::model::{Diagnostic, FieldPath, SecretsBackend};

/// The module every machine imports when secrets come through sops-nix, `deployments/sops.nix`: the sops file and
/// which key decrypts it, written once.
pub(crate) const SOPS_MODULE: &str = "sops.nix";

/// The module listing the flake inputs' NixOS modules every machine needs, `deployments/inputs.nix`: a function of
/// the flake's inputs, so the flake and the NixOps4 members import the same list, generated from the
/// specification.
pub(crate) const INPUTS_MODULE: &str = "inputs.nix";

/// The map of the sops file holding the operators' secrets given as files: `operators/<operator>/<app>/<secret>`.
pub(crate) const OPERATOR_KEYS: &str = "operators";

/// The map of the sops file holding the provider's secrets given as files: `provider/smtp-password`,
/// `provider/garage/<secret>`.
pub(crate) const PROVIDER_KEYS: &str = "provider";

/// The sops-nix module, as the flake's inputs name it.
const SOPS_NIX_MODULE: &str = "inputs.sops-nix.nixosModules.sops";

/// The sops-nix settings of a specification, when it chose that backend.
pub(crate) fn sops(spec: &Spec) -> Option<&model::Sops> {
    match &spec.provider.secrets {
        Some(SecretsBackend::Sops(sops)) => Some(sops),
        _ => None,
    }
}

/// The key of a secret inside the sops file: a named secret's name (shared by every consumer of it), or for a
/// file reference the place the specification declares it (`operator` is the operator whose application reads
/// it; the Garage cluster's secrets and the SMTP password are the provider's).
pub(crate) fn sops_key(operator: Option<&str>, secret: &MachineSecret) -> String {
    if let SecretRef::Secret(name) = &secret.reference {
        return name.clone();
    }
    match (&secret.holds, operator) {
        (Holds::SmtpPassword, _) => format!("{PROVIDER_KEYS}/smtp-password"),
        (Holds::Manifest { app, secret: name }, Some(operator)) if !secret.provider => {
            format!("{OPERATOR_KEYS}/{operator}/{app}/{name}")
        }
        (Holds::Manifest { app, secret: name }, _) => format!("{PROVIDER_KEYS}/{app}/{name}"),
        // The S3 key the provider made for an operator's application: one value, placed on the application's
        // machine and (a copy) on the designated Garage node, so both read one key of the sops file.
        (Holds::S3Key { app, .. }, Some(operator)) => {
            format!("{PROVIDER_KEYS}/{GARAGE_KEYS}/s3-keys/{operator}/{app}")
        }
        (Holds::S3Key { app, .. }, None) => format!("{PROVIDER_KEYS}/{GARAGE_KEYS}/s3-keys/{app}"),
        (Holds::NodeKey(node), _) => {
            format!("{PROVIDER_KEYS}/{GARAGE_KEYS}/nodes/{node}/node_key")
        }
    }
}

/// The map of the provider's Garage secrets in the sops file (the cluster's, the nodes' keys, the S3 keys).
const GARAGE_KEYS: &str = model::OBJECT_STORAGE_APPLICATION;

/// [`sops_key`] with the operator a secret belongs to: the designated Garage node's copy of an S3 key names its
/// operator itself (the node's machine has none).
fn spec_sops_key(spec: &Spec, operator: Option<&str>, secret: &MachineSecret) -> String {
    match &secret.holds {
        Holds::S3Key {
            operator: Some(i), ..
        } => sops_key(spec.operators.get(*i).map(|o| o.name.as_str()), secret),
        _ => sops_key(operator, secret),
    }
}

/// The attribute name of a secret in `sops.secrets`: its path below `/run/secrets/` (so sops-nix writes the file
/// there, no symlink), or its `fediversity.secrets` name for a path elsewhere (linked there by sops-nix).
pub(crate) fn sops_name(secret: &MachineSecret) -> String {
    match secret
        .path
        .strip_prefix(NAMED_SECRETS_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
    {
        Some(rest) if !rest.is_empty() => rest.to_owned(),
        _ => secret.name.clone(),
    }
}

/// The sops `format` of the encrypted file, from its extension: `json` for `.json`, else `yaml` (validation
/// accepts only `.yaml`, `.yml` and `.json`).
fn format(sops_file: &str) -> &'static str {
    if sops_file.ends_with(".json") {
        "json"
    } else {
        "yaml"
    }
}

/// `sops.secrets = { … }` for the secrets a module declares in `fediversity.secrets`; `operator` is the operator
/// of the machine (none for `deployments/garage-cluster.nix`). The sops file and its format are
/// `sops.defaultSopsFile` and `sops.defaultSopsFormat` of `deployments/sops.nix`, which every machine imports.
/// `None` when the backend is not sops or there is no secret.
pub(crate) fn sops_secrets(
    spec: &Spec,
    operator: Option<&str>,
    secrets: &[MachineSecret],
) -> Result<Option<Entry>, DeployError> {
    if sops(spec).is_none() || secrets.is_empty() {
        return Ok(None);
    }
    let entries = secrets
        .iter()
        .map(|s| {
            Ok(Entry::binding(
                AttrPath::from(AttrName::new(&sops_name(s))?),
                Expr::attrs(vec![
                    Entry::dotted("key", Expr::string(&spec_sops_key(spec, operator, s))?)?,
                    Entry::dotted("path", Expr::runtime_path(&s.path)?)?,
                    Entry::dotted("owner", Expr::string(&s.owner)?)?,
                    Entry::dotted("group", Expr::string(&s.group)?)?,
                    Entry::dotted("mode", Expr::string(s.mode)?)?,
                    Entry::dotted("restartUnits", Expr::List(vec![Expr::string(&s.unit)?]))?,
                ]),
            ))
        })
        .collect::<Result<Vec<_>, DeployError>>()?;
    Ok(Some(Entry::dotted("sops.secrets", Expr::attrs(entries))?))
}

/// `deployments/sops.nix`: the encrypted file every secret is read from and the key every machine decrypts it
/// with. `spec_dir` is the specification's folder relative to the repository (the sops file is relative to it).
/// With `age_key_file`, that file alone decrypts (`sops.age.keyFile`, SSH host keys not used); without, sops-nix's
/// default: the age key it derives from the machine's SSH ed25519 host key.
pub(crate) fn sops_module(sops: &model::Sops, spec_dir: &Path) -> Result<Expr, DeployError> {
    let file = super::base::repository_path(spec_dir, &sops.sops_file, "the sops file")?;
    let mut entries = vec![
        Entry::Binding {
            comment: vec![
                "A path literal: the ENCRYPTED file is copied into the store with the configuration, as sops-nix"
                    .to_owned(),
                "expects (validateSopsFiles); the values are decrypted on the machine, into /run/secrets, at activation."
                    .to_owned(),
            ],
            path: AttrPath::dotted("sops.defaultSopsFile")?,
            value: Expr::SourcePath(SourcePath::new(&format!("../{file}"))?),
        },
        Entry::dotted(
            "sops.defaultSopsFormat",
            Expr::string(format(&sops.sops_file))?,
        )?,
    ];
    // Without `age_key_file`, nothing is set: sops-nix's default `sops.age.sshKeyPaths` is the ed25519 keys of
    // `services.openssh.hostKeys`, which every machine has (sshd runs on every machine).
    if let Some(key_file) = &sops.age_key_file {
        entries.push(Entry::dotted(
            "sops.age.keyFile",
            Expr::runtime_path(key_file)?,
        )?);
        entries.push(Entry::dotted("sops.age.sshKeyPaths", Expr::List(vec![]))?);
    }
    Ok(Expr::attrs(entries))
}

/// The NixOS modules of the flake's inputs every machine imports besides its own file: sops-nix's when the
/// backend is sops.
pub(crate) fn input_modules(spec: &Spec) -> Result<Vec<Expr>, DeployError> {
    Ok(match sops(spec) {
        Some(_) => vec![Expr::reference(SOPS_NIX_MODULE)?],
        None => Vec::new(),
    })
}

/// `deployments/inputs.nix`: `inputs: [ … ]`, the [`input_modules`], for the flake's `nixosConfigurations`.
pub(crate) fn inputs_module(spec: &Spec) -> Result<Expr, DeployError> {
    Ok(Expr::Lambda(
        Param::Ident(Ident::new("inputs")?),
        Box::new(Expr::List(input_modules(spec)?)),
    ))
}

/// What the sops backend needs of a specification whose fields are valid: a sops file sops-nix can read
/// (`.yaml`, `.yml`, `.json`); no two secrets of one machine with one `sops.secrets` name; and keys that fit one
/// file: no key both a value and a map of others (`a` and `a/b`), and no two file references with one key.
pub(crate) fn check(spec: &Spec, catalog: &Catalog, out: &mut Vec<Diagnostic>) {
    let Some(sops) = sops(spec) else {
        return;
    };
    if ![".yaml", ".yml", ".json"]
        .iter()
        .any(|ext| sops.sops_file.ends_with(ext))
    {
        out.push(
            Diagnostic::new(
                FieldPath::of(&["provider", "secrets", "sops_file"]),
                format!(
                    "the sops file `{}` is neither YAML nor JSON",
                    sops.sops_file
                ),
                "not a .yaml, .yml or .json file",
            )
            .hint("sops-nix reads YAML or JSON sops files: name it e.g. `secrets/provider.yaml` and create it with `sops secrets/provider.yaml`"),
        );
    }
    // key → where it is declared, and whether it is a named secret (shared on purpose).
    let mut keys: BTreeMap<String, (FieldPath, bool)> = BTreeMap::new();
    let mut conflicts: Vec<Diagnostic> = Vec::new();
    for (operator, machine, secrets) in machine_secrets(spec, catalog) {
        let mut names: BTreeMap<String, &MachineSecret> = BTreeMap::new();
        for secret in &secrets {
            let at = declared_at(operator, secret);
            let name = sops_name(secret);
            if let Some(first) = names.insert(name.clone(), secret) {
                out.push(
                    Diagnostic::new(
                        at.clone(),
                        format!(
                            "the secrets `{}` and `{}` of `{}` would both be `sops.secrets.\"{name}\"`",
                            first.name, secret.name, machine
                        ),
                        "a sops-nix name another secret of the machine has",
                    )
                    .related(declared_at(operator, first), format!("`{}`", first.name))
                    .hint(format!(
                        "sops-nix writes `{NAMED_SECRETS_DIR}/{name}` for one of them: give `{}` another path",
                        secret.name
                    )),
                );
            }
            let operator_name = operator.map(|i| spec.operators[i].name.as_str());
            let key = spec_sops_key(spec, operator_name, secret);
            let named = matches!(secret.reference, SecretRef::Secret(_));
            match keys.get(&key) {
                Some((first, first_named)) if *first != at && !(named && *first_named) => {
                    conflicts.push(
                        Diagnostic::new(
                            at.clone(),
                            format!("two secrets would be the key `{key}` of the sops file"),
                            "a key another secret has",
                        )
                        .related(first.clone(), "the other secret")
                        .hint(
                            "name the secrets (`{ secret = \"…\" }`) so each has a key of its own",
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    keys.insert(key, (at, named));
                }
            }
        }
    }
    for (key, (at, _)) in &keys {
        let prefix = format!("{key}/");
        if let Some((inner, (inner_at, _))) = keys.range(prefix.clone()..).next()
            && inner.starts_with(&prefix)
        {
            conflicts.push(
                Diagnostic::new(
                    at.clone(),
                    format!(
                        "the key `{key}` of the sops file would be both a secret and the map holding `{inner}`"
                    ),
                    "a key that is also a map of keys",
                )
                .related(inner_at.clone(), format!("`{inner}`"))
                .hint(format!("give the secret another name than `{OPERATOR_KEYS}` or `{PROVIDER_KEYS}`, the maps of the secrets given as files")),
            );
        }
    }
    out.extend(conflicts);
}

/// Every machine's secret files, as planned, with the index of the machine's operator (none for a Garage node's
/// own machine) and the machine's name. A machine sharing a Garage node declares the cluster's secrets too.
fn machine_secrets(
    spec: &Spec,
    catalog: &Catalog,
) -> Vec<(Option<usize>, String, Vec<MachineSecret>)> {
    machines(spec, catalog)
        .into_iter()
        .map(|machine| match &machine.role {
            MachineRole::Application {
                operator,
                application,
            } => {
                let shares_garage = spec.provider.object_storage.as_ref().is_some_and(|s| {
                    s.nodes
                        .values()
                        .any(|n| n.machine.as_deref() == Some(machine.name.as_str()))
                });
                let app = &spec.operators[*operator].applications[application];
                let manifest = &catalog.manifests[application];
                let mut secrets = super::secrets::application_secrets(
                    spec,
                    catalog,
                    application,
                    app,
                    manifest,
                    shares_garage,
                );
                secrets.extend(super::storage::shared_node_secrets(
                    spec,
                    catalog,
                    &machine.name,
                ));
                (Some(*operator), machine.name, secrets)
            }
            MachineRole::GarageNode(node) => {
                let mut secrets = super::secrets::garage_secrets(spec, catalog);
                secrets.extend(super::storage::node_secrets(spec, catalog, node));
                (None, machine.name, secrets)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nix::print::print_expr;

    fn secret(name: &str, path: &str, reference: SecretRef, holds: Holds) -> MachineSecret {
        MachineSecret {
            name: name.to_owned(),
            path: path.to_owned(),
            owner: "mastodon".to_owned(),
            group: "mastodon".to_owned(),
            mode: super::super::secrets::SECRET_MODE,
            unit: "mastodon-init-dirs.service".to_owned(),
            provider: matches!(holds, Holds::SmtpPassword)
                || matches!(&holds, Holds::Manifest { app, .. } if app == "garage"),
            holds,
            reference,
        }
    }

    fn manifest(app: &str, secret: &str) -> Holds {
        Holds::Manifest {
            app: app.to_owned(),
            secret: secret.to_owned(),
        }
    }

    #[test]
    fn keys_are_the_secret_name_or_where_the_file_is_declared() {
        let cases = [
            (
                secret(
                    "mastodon-smtp-password",
                    "/run/secrets/mastodon-smtp-password",
                    SecretRef::Secret("smtp-password".into()),
                    Holds::SmtpPassword,
                ),
                Some("op"),
                "smtp-password",
            ),
            (
                secret(
                    "mastodon-smtp-password",
                    "/var/lib/smtp",
                    SecretRef::File("/var/lib/smtp".into()),
                    Holds::SmtpPassword,
                ),
                Some("op"),
                "provider/smtp-password",
            ),
            (
                secret(
                    "mastodon-vapid",
                    "/etc/vapid",
                    SecretRef::File("/etc/vapid".into()),
                    manifest("mastodon", "vapid"),
                ),
                Some("op"),
                "operators/op/mastodon/vapid",
            ),
            (
                secret(
                    "garage-rpc",
                    "/etc/rpc",
                    SecretRef::File("/etc/rpc".into()),
                    manifest("garage", "rpc"),
                ),
                Some("op"),
                "provider/garage/rpc",
            ),
            (
                secret(
                    "garage-rpc",
                    "/run/secrets/garage-rpc",
                    SecretRef::Secret("garage-rpc".into()),
                    manifest("garage", "rpc"),
                ),
                None,
                "garage-rpc",
            ),
        ];
        for (secret, operator, key) in cases {
            assert_eq!(sops_key(operator, &secret), key, "{secret:?}");
        }
    }

    /// The sops example with `edit` applied to its text, and every problem `model::check` finds in it: message and
    /// where, as `field.path: message`.
    fn problems_of_example(edit: impl Fn(String) -> String) -> Vec<String> {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let text = edit(std::fs::read_to_string(repo.join("examples/sops/provider.toml")).unwrap());
        let catalog = Catalog::load(&repo.join("templates")).unwrap();
        let spec: Spec = toml::from_str(&text).unwrap();
        crate::model::check::check(&spec, &catalog)
            .iter()
            .map(|d| format!("{}: {}", d.path, d.message))
            .collect()
    }

    #[test]
    fn the_example_passes_and_each_sops_problem_is_found_where_it_is() {
        assert_eq!(problems_of_example(|t| t), Vec::<String>::new());
        assert_eq!(
            problems_of_example(|t| t.replace(
                "sops_file = \"secrets.yaml\"",
                "sops_file = \"secrets.txt\""
            )),
            ["provider.secrets.sops_file: the sops file `secrets.txt` is neither YAML nor JSON"]
        );
        // A named secret called like the map of the operators' file secrets, next to one of those.
        assert_eq!(
            problems_of_example(|t| t
                .replace(
                    "{ secret = \"smtp-password\" }",
                    "{ secret = \"operators\" }"
                )
                .replace(
                    "secrets.synapseSecrets = { secret = \"dijkstad-synapse\" }",
                    "secrets.synapseSecrets = { file = \"/var/lib/synapse-secrets\" }"
                )),
            [
                "provider.smtp.password: the key `operators` of the sops file would be both a secret and the map holding `operators/dijkstad/matrix-synapse/synapseSecrets`"
            ]
        );
        // The Garage cluster's file elsewhere is `sops.secrets.garage-environment` (linked by sops-nix); on the
        // machine its node shares, a named secret `garage-environment` would be written to that same name.
        let found = problems_of_example(|t| {
            t.replace(
                "secrets.synapseSecrets = { secret = \"dijkstad-synapse\" }",
                "secrets.synapseSecrets = { secret = \"garage-environment\" }",
            )
            .replace(
                "capacity_gib = 100\nnetwork.ipv4 = { address = \"192.0.2.21/24\", gateway = \"192.0.2.1\" }",
                "capacity_gib = 10\nmachine = \"dijkstad-matrix-synapse\"",
            )
            // Room for the node beside Synapse (a node's capacity fits the disk its machine has left).
            .replace(
                "settings = { enableRegistration = false }\n",
                "settings = { enableRegistration = false }\nresources = { disk_gib = 40 }\n",
            )
        });
        assert_eq!(
            found,
            [
                "operators[0].applications.matrix-synapse.secrets.synapseSecrets: the secrets `garage-environment` and `matrix-synapse-synapseSecrets` of `dijkstad-matrix-synapse` would both be `sops.secrets.\"garage-environment\"`"
            ]
        );
    }

    #[test]
    fn a_missing_sops_file_is_refused_at_its_field() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let spec_path = dir.path().join("provider.toml");
        std::fs::write(
            &spec_path,
            std::fs::read_to_string(repo.join("examples/sops/provider.toml")).unwrap(),
        )
        .unwrap();
        let catalog = Catalog::load(&repo.join("templates")).unwrap();
        let Err(crate::model::LoadError::Invalid(report)) =
            crate::model::load(&spec_path, &catalog)
        else {
            panic!("a specification without its sops file loads");
        };
        let text = report.render(false);
        assert!(
            text.contains(
                "error: provider.secrets.sops_file: the sops file `secrets.yaml` does not exist"
            ) && text.contains("create it with `sops secrets.yaml`"),
            "{text}"
        );
        std::fs::write(dir.path().join("secrets.yaml"), "x: ENC[…]\n").unwrap();
        assert!(crate::model::load(&spec_path, &catalog).is_ok());
    }

    #[test]
    fn names_below_run_secrets_are_the_path_so_no_symlink_is_made() {
        let holds = || Holds::SmtpPassword;
        let r = || SecretRef::Secret("x".into());
        assert_eq!(
            sops_name(&secret(
                "a-b",
                "/run/secrets/mastodon-smtp-password",
                r(),
                holds()
            )),
            "mastodon-smtp-password"
        );
        assert_eq!(
            sops_name(&secret("a-b", "/run/secrets/deep/er", r(), holds())),
            "deep/er"
        );
        assert_eq!(
            sops_name(&secret("a-b", "/run/secretsX/y", r(), holds())),
            "a-b"
        );
        assert_eq!(sops_name(&secret("a-b", "/etc/y", r(), holds())), "a-b");
    }

    #[test]
    fn the_key_module_uses_the_age_key_file_or_the_host_key() {
        let with_file = print_expr(
            &sops_module(
                &model::Sops {
                    sops_file: "../secrets/provider.json".into(),
                    age_key_file: Some("/var/lib/sops-nix/key.txt".into()),
                },
                Path::new("examples"),
            )
            .unwrap(),
        );
        assert!(
            with_file.contains("  sops.defaultSopsFile = ../secrets/provider.json;\n"),
            "{with_file}"
        );
        assert!(
            with_file.contains(
                "  sops.defaultSopsFormat = \"json\";\n  sops.age.keyFile = \"/var/lib/sops-nix/key.txt\";\n  sops.age.sshKeyPaths = [ ];\n"
            ),
            "{with_file}"
        );
        let default = print_expr(
            &sops_module(
                &model::Sops {
                    sops_file: "secrets.yaml".into(),
                    age_key_file: None,
                },
                Path::new("examples"),
            )
            .unwrap(),
        );
        assert!(
            default.contains("sops.defaultSopsFile = ../examples/secrets.yaml;"),
            "{default}"
        );
        assert!(
            default.contains("sops.defaultSopsFormat = \"yaml\";"),
            "{default}"
        );
        assert!(!default.contains("sops.age"), "{default}");
    }
}
