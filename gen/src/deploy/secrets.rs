//! The secrets of one machine, in one place: every file a service of the machine reads, with its path, owner,
//! group and mode (from the manifests' `reader`/`credential`), declared as `fediversity.secrets.<name>` in the
//! machine's own module (the Garage cluster's in `deployments/garage-cluster.nix`, which every node's machine
//! imports, so that provider facts are written once); and the check that runs before the services reading them (the `fediversity-secrets-check`
//! unit of `modules/fediversity.nix`), so that no service ever starts with a missing or unreadable (empty) secret.
//!
//! Why owners matter: Synapse, Mastodon's init unit and PeerTube read their files as their service user (Synapse
//! and Mastodon with `PrivateUsers=true`), so a root-only file fails them — PeerTube silently, with an empty
//! secret in its configuration. Files systemd itself reads (`EnvironmentFile=`, `LoadCredential=`) stay root-only.
//!
//! The provider's one SMTP password is read by several applications, each as its own user: each consumer gets a
//! file of its own (`/run/secrets/<app>-<name>` for a named secret), which the provider's tooling places once per
//! consumer from the one secret in its store.

use super::*;
use crate::manifest::{Manifest, SecretAccess};
use crate::model::FieldPath;

/// The mode of every secret file: readable by its owner only (the reader, or root for a credential).
pub(crate) const SECRET_MODE: &str = "0400";

/// The unit that checks the secret files before the services reading them start.
pub(crate) const CHECK_UNIT: &str = "fediversity-secrets-check";

/// One secret file of a machine, as `fediversity.secrets.<name>` declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MachineSecret {
    /// Its name in `fediversity.secrets`: `<app>-<secret>` (`mastodon-smtp-password`, `garage-environment`).
    pub name: String,
    /// Its path on the machine.
    pub path: String,
    /// The owning user: the service user reading it, or `root` for a credential.
    pub owner: String,
    /// The owning group.
    pub group: String,
    /// Its mode, [`SECRET_MODE`].
    pub mode: &'static str,
    /// The unit that reads it (the check runs before it).
    pub unit: String,
    /// What in the specification it holds.
    pub holds: Holds,
    /// Whether the provider declares it (the Garage cluster's secrets, the SMTP password), not the machine's
    /// operator: an operator may run an application named like the provider's (`garage`), whose secrets are its own.
    pub provider: bool,
    /// The specification's reference to it: a file the provider places, or a named secret (for sops-nix, the key
    /// of the value in the sops file, see `super::sops::sops_key`).
    pub reference: SecretRef,
}

/// What a machine's secret file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Holds {
    /// The secret of this name in the manifest of this application (Garage's for the cluster's).
    Manifest {
        /// The application.
        app: String,
        /// The secret's name in its manifest.
        secret: String,
    },
    /// The provider's SMTP password.
    SmtpPassword,
    /// An application's S3 key file: on its machine (`operator` `None`), or the designated Garage node's copy
    /// (the operator's index).
    S3Key {
        /// The operator, for the designated node's copy.
        operator: Option<usize>,
        /// The application.
        app: String,
    },
    /// The key file of this Garage node.
    NodeKey(String),
}

impl MachineSecret {
    fn new(
        name: String,
        reference: &SecretRef,
        path: String,
        access: SecretAccess<'_>,
        holds: Holds,
    ) -> Self {
        Self {
            provider: false,
            holds,
            reference: reference.clone(),
            name,
            path,
            owner: access.owner().to_owned(),
            group: access.group().to_owned(),
            mode: SECRET_MODE,
            unit: access.unit().to_owned(),
        }
    }
}

/// The path of one consumer's copy of a shared provider secret: a named secret becomes
/// `/run/secrets/<app>-<name>`, so no two applications share a file (each owns its copy); a file reference is a
/// path the provider chose on each machine, kept as given.
pub(crate) fn consumer_path(secret: &SecretRef, app: &str) -> String {
    match secret {
        SecretRef::File(path) => path.clone(),
        SecretRef::Secret(name) => format!("{NAMED_SECRETS_DIR}/{app}-{name}"),
    }
}

/// The name of the provider's SMTP password in `fediversity.secrets` for one consumer.
pub(crate) fn smtp_secret_name(app: &str) -> String {
    format!("{app}-smtp-password")
}

/// Every secret file of an application's machine: the application's own (each as its manifest says), its copy
/// of the SMTP password when its module passes that to upstream, and the Garage cluster's when a node shares the
/// machine. Sorted by name.
pub(crate) fn application_secrets(
    spec: &Spec,
    catalog: &Catalog,
    app: &str,
    application: &model::OperatorApplication,
    manifest: &Manifest,
    garage_node: bool,
) -> Vec<MachineSecret> {
    let mut secrets = Vec::new();
    for (name, secret) in &application.secrets {
        if let Some(spec_secret) = manifest.secrets.get(name) {
            secrets.push(MachineSecret::new(
                format!("{app}-{name}"),
                secret,
                secret_path(secret),
                spec_secret.access(),
                Holds::Manifest {
                    app: app.to_owned(),
                    secret: name.clone(),
                },
            ));
        }
    }
    if let (Some(smtp), Some(reads)) = (&spec.provider.smtp, &manifest.needs.smtp_password) {
        secrets.push(MachineSecret {
            provider: true,
            ..MachineSecret::new(
                smtp_secret_name(app),
                &smtp.password,
                consumer_path(&smtp.password, app),
                reads.access(),
                Holds::SmtpPassword,
            )
        });
    }
    if spec.provider.object_storage.is_some()
        && let Some(key) = app_key_secret_file(app, manifest)
    {
        secrets.push(key);
    }
    if garage_node {
        secrets.extend(garage_secrets(spec, catalog));
    }
    secrets.sort_by(|a, b| a.name.cmp(&b.name));
    secrets
}

/// The Garage cluster's secret files on a machine running a node (the same on every node).
pub(crate) fn garage_secrets(spec: &Spec, catalog: &Catalog) -> Vec<MachineSecret> {
    let app = model::OBJECT_STORAGE_APPLICATION;
    let (Some(storage), Some(manifest)) =
        (&spec.provider.object_storage, catalog.manifests.get(app))
    else {
        return Vec::new();
    };
    storage
        .secrets
        .iter()
        .filter_map(|(name, secret)| {
            let access = manifest.secrets.get(name)?.access();
            Some(MachineSecret {
                provider: true,
                ..MachineSecret::new(
                    format!("{app}-{name}"),
                    secret,
                    secret_path(secret),
                    access,
                    Holds::Manifest {
                        app: app.to_owned(),
                        secret: name.clone(),
                    },
                )
            })
        })
        .collect()
}

/// The place in the specification where a machine's secret is declared, for messages: `operator` is the index of
/// the machine's operator (none for a Garage node's own machine); the provider's secrets are the provider's.
pub(crate) fn declared_at(operator: Option<usize>, secret: &MachineSecret) -> FieldPath {
    match (&secret.holds, operator) {
        (Holds::SmtpPassword, _) => FieldPath::of(&["provider", "smtp", "password"]),
        (Holds::Manifest { app, secret: name }, Some(i)) if !secret.provider => {
            FieldPath::of(&["operators"])
                .index(i)
                .key("applications")
                .key(app)
                .key("secrets")
                .key(name)
        }
        (Holds::Manifest { secret: name, .. }, _) => {
            FieldPath::of(&["provider", "object_storage", "secrets", name])
        }
        // An application's S3 key: declared by the application's entry (the provider makes the key for it).
        (Holds::S3Key { operator, app }, at) => match operator.or(at) {
            Some(i) => FieldPath::of(&["operators"])
                .index(i)
                .key("applications")
                .key(app),
            None => FieldPath::of(&["provider", "object_storage"]),
        },
        (Holds::NodeKey(node), _) => FieldPath::of(&[
            "provider",
            "object_storage",
            "nodes",
            node,
            "secrets",
            "node_key",
        ]),
    }
}

/// `fediversity.secrets = { <name> = { path; owner; group; mode; unit; }; … }` for a machine's module.
pub(crate) fn secrets_binding(secrets: &[MachineSecret]) -> Result<Entry, DeployError> {
    let entries = secrets
        .iter()
        .map(|s| {
            Ok(Entry::binding(
                AttrPath::from(AttrName::new(&s.name)?),
                Expr::attrs(vec![
                    Entry::dotted("path", Expr::runtime_path(&s.path)?)?,
                    Entry::dotted("owner", Expr::string(&s.owner)?)?,
                    Entry::dotted("group", Expr::string(&s.group)?)?,
                    Entry::dotted("mode", Expr::string(s.mode)?)?,
                    Entry::dotted("unit", Expr::string(&s.unit)?)?,
                ]),
            ))
        })
        .collect::<Result<Vec<_>, DeployError>>()?;
    Ok(Entry::dotted("secrets", Expr::attrs(entries))?)
}

/// The body of the check `fediversity-secrets-check` runs (POSIX sh, after `set --` with five words per secret:
/// name, path, owner, group, mode). For each secret it requires a non-empty regular file (following the symlink
/// sops-nix places) with exactly that owner, group and mode, and otherwise names the secret, its path, what was
/// expected and how to place it; it checks every secret before failing, so one run lists all that are wrong.
/// Exit 0 when all are in place, 1 when one is not, 2 when the arguments are malformed.
pub(crate) const CHECK_SCRIPT: &str = r#"status=0
if [ $(($# % 5)) -ne 0 ]; then
  echo "fediversity-secrets-check: the arguments come in fives (name, path, owner, group, mode), got $#" >&2
  exit 2
fi
while [ "$#" -gt 0 ]; do
  name=$1 path=$2 owner=$3 group=$4 mode=$5
  shift 5
  place="place it with owner $owner, group $group and mode $mode, e.g. \`install -o $owner -g $group -m $mode <file> $path\` (sops-nix or the provider's secret tooling does this)"
  if [ ! -f "$path" ]; then
    echo "fediversity-secrets-check: secret $name: no file at $path; $place" >&2
    status=1
    continue
  fi
  if ! actual=$(stat -L -c '%U %G %a' -- "$path"); then
    echo "fediversity-secrets-check: secret $name: cannot read the owner and mode of $path; $place" >&2
    status=1
    continue
  fi
  expected="$owner $group $(printf '%o' "0$mode")"
  if [ "$actual" != "$expected" ]; then
    echo "fediversity-secrets-check: secret $name: $path has owner, group and mode $actual, not $owner $group $mode; $place" >&2
    status=1
    continue
  fi
  if [ ! -s "$path" ]; then
    echo "fediversity-secrets-check: secret $name: $path is empty; $place" >&2
    status=1
  fi
done
exit "$status"
"#;

/// The name of an application's S3 key file in its machine's `fediversity.secrets`.
pub(crate) fn app_key_secret(app: &str) -> String {
    format!("{app}-s3-key")
}

/// The path of an application's S3 key file on its machine.
pub(crate) fn app_key_path(app: &str) -> String {
    format!("{NAMED_SECRETS_DIR}/{}", app_key_secret(app))
}

/// The S3 key file on an application's machine, read as its manifest's `needs.s3_key` says.
pub(crate) fn app_key_secret_file(app: &str, manifest: &Manifest) -> Option<MachineSecret> {
    let access = manifest.needs.s3_key_access()?;
    Some(MachineSecret {
        name: app_key_secret(app),
        path: app_key_path(app),
        owner: access.owner().to_owned(),
        group: access.group().to_owned(),
        mode: SECRET_MODE,
        unit: access.unit().to_owned(),
        holds: Holds::S3Key {
            operator: None,
            app: app.to_owned(),
        },
        provider: true,
        reference: SecretRef::File(app_key_path(app)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    /// The words `set --` receives for these secrets, in the order [`CHECK_SCRIPT`] reads them (what
    /// `lib.escapeShellArgs` of `modules/fediversity.nix` passes on the machine).
    fn check_arguments(secrets: &[MachineSecret]) -> Vec<String> {
        secrets
            .iter()
            .flat_map(|s| {
                [
                    s.name.clone(),
                    s.path.clone(),
                    s.owner.clone(),
                    s.group.clone(),
                    s.mode.to_owned(),
                ]
            })
            .collect()
    }

    fn secret(name: &str, path: &Path, owner: &str, group: &str) -> MachineSecret {
        MachineSecret {
            name: name.to_owned(),
            path: path.display().to_string(),
            owner: owner.to_owned(),
            group: group.to_owned(),
            mode: SECRET_MODE,
            unit: "x.service".to_owned(),
            holds: Holds::SmtpPassword,
            provider: true,
            reference: SecretRef::File(path.display().to_string()),
        }
    }

    /// Runs the check as the machine does (POSIX sh, the arguments after `set --`), returning the exit code and
    /// what it printed on stderr.
    fn run_check(secrets: &[MachineSecret]) -> (i32, String) {
        let out = Command::new("sh")
            .arg("-c")
            .arg(CHECK_SCRIPT)
            .arg("fediversity-secrets-check")
            .args(check_arguments(secrets))
            .output()
            .expect("sh runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// The current user and group names, as `stat -c '%U %G'` shows them for a file this process creates.
    fn me(dir: &Path) -> (String, String) {
        let probe = dir.join("probe");
        std::fs::write(&probe, "x").unwrap();
        let out = Command::new("stat")
            .args(["-c", "%U %G"])
            .arg(&probe)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let (u, g) = text.trim().split_once(' ').unwrap();
        (u.to_owned(), g.to_owned())
    }

    #[test]
    fn the_check_passes_on_files_placed_as_declared() {
        let dir = tempfile::tempdir().unwrap();
        let (user, group) = me(dir.path());
        let a = dir.path().join("a");
        let b = dir.path().join("b with space");
        write(&a, "secret", 0o400);
        write(&b, "secret", 0o400);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&b, &link).unwrap();
        let (code, stderr) = run_check(&[
            secret("app-a", &a, &user, &group),
            secret("app-b", &link, &user, &group),
        ]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(stderr, "");
    }

    #[test]
    fn the_check_fails_naming_each_misplaced_secret() {
        let dir = tempfile::tempdir().unwrap();
        let (user, group) = me(dir.path());
        let missing = dir.path().join("missing");
        let loose = dir.path().join("loose");
        write(&loose, "secret", 0o444);
        let empty = dir.path().join("empty");
        write(&empty, "", 0o400);
        let good = dir.path().join("good");
        write(&good, "secret", 0o400);
        let (code, stderr) = run_check(&[
            secret("app-missing", &missing, &user, &group),
            secret("app-loose", &loose, &user, &group),
            secret("app-empty", &empty, &user, &group),
            secret("app-good", &good, &user, &group),
        ]);
        assert_eq!(code, 1, "{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 3, "one line per misplaced secret:\n{stderr}");
        assert!(
            lines[0].starts_with(&format!(
                "fediversity-secrets-check: secret app-missing: no file at {}; place it with owner {user}, group {group} and mode 0400, e.g. `install -o {user} -g {group} -m 0400 <file> {}`",
                missing.display(),
                missing.display()
            )),
            "{stderr}"
        );
        assert!(
            lines[1].starts_with(&format!(
                "fediversity-secrets-check: secret app-loose: {} has owner, group and mode {user} {group} 444, not {user} {group} 0400;",
                loose.display()
            )),
            "{stderr}"
        );
        assert!(
            lines[2].starts_with(&format!(
                "fediversity-secrets-check: secret app-empty: {} is empty;",
                empty.display()
            )),
            "{stderr}"
        );
    }

    #[test]
    fn the_check_fails_on_a_file_of_another_owner() {
        let dir = tempfile::tempdir().unwrap();
        let (user, group) = me(dir.path());
        let file = dir.path().join("theirs");
        write(&file, "secret", 0o400);
        // The file is ours; the declaration says another user reads it (on the machine: root-owned while the
        // service user reads it, the case Synapse's PrivateUsers cannot read).
        let (code, stderr) = run_check(&[secret("app-theirs", &file, "nobody", &group)]);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains(&format!(
                "secret app-theirs: {} has owner, group and mode {user} {group} 400, not nobody {group} 0400",
                file.display()
            )),
            "{stderr}"
        );
        // And the other way round, when this test may give the file away (as root).
        if user == "root" {
            let status = Command::new("chown")
                .args(["nobody"])
                .arg(&file)
                .status()
                .unwrap();
            assert!(status.success());
            let (code, stderr) = run_check(&[secret("app-theirs", &file, "root", &group)]);
            assert_eq!(code, 1, "{stderr}");
            assert!(
                stderr.contains("has owner, group and mode nobody "),
                "{stderr}"
            );
        } else {
            eprintln!(
                "not root: the case of a file given to `nobody` is left out (chown needs root)"
            );
        }
    }

    #[test]
    fn malformed_arguments_are_refused() {
        let out = Command::new("sh")
            .arg("-c")
            .arg(CHECK_SCRIPT)
            .arg("fediversity-secrets-check")
            .args(["a", "b"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
    }

    #[test]
    fn the_check_script_is_shellcheck_clean() {
        let Ok(out) = Command::new("shellcheck")
            .args(["--shell=sh", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(CHECK_SCRIPT.as_bytes())?;
                child.wait_with_output()
            })
        else {
            eprintln!("shellcheck is not installed: the check script's lint is left out");
            return;
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
