//! What an application keeps: the `[state]` section of its manifest, and the static scan of an upstream NixOS
//! module that finds the state it keeps (`StateDirectory=`, `dataDir` defaults).
//!
//! Why declared once, in the manifest: a migration between providers must move everything an application
//! keeps — databases, buckets, directories, and the identity that makes it the same Fediverse server (signing,
//! encryption and push keys) — and nothing else may guess at it. The migration job, the VM tests and `template
//! check` all read this one declaration; `template check` compares it with what the upstream module keeps, so a
//! directory upstream adds does not silently stay behind at the old provider.

use std::collections::BTreeMap;

use rnix::ast::{self, HasEntry};
use rowan::ast::AstNode;
use serde::Deserialize;

use crate::nix::literal::{attrpath_names, position, string_literal};
use crate::position::Position;

/// An application's state, as its manifest declares it (`[state]`). Empty for an application that keeps
/// nothing (or whose manifest does not say yet).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// The upstream module's file inside nixpkgs (`nixos/modules/services/web-apps/mastodon.nix`), which
    /// `template check` scans for the state it keeps when a nixpkgs checkout is given.
    #[serde(default)]
    pub upstream_module: Option<String>,
    /// The databases, by name (the database's own name on the server).
    #[serde(default)]
    pub databases: BTreeMap<String, Database>,
    /// The object-storage buckets, by the name or kind the application's `needs.s3_buckets` gives them.
    #[serde(default)]
    pub buckets: Vec<String>,
    /// The directories, by a short name (`data`, `media`).
    #[serde(default)]
    pub directories: BTreeMap<String, Directory>,
    /// The identity that must move with the server, by a short name (`secret_key_base`, `signing_key`).
    #[serde(default)]
    pub identity: BTreeMap<String, Identity>,
    /// Units that derive state from what moved (the environment file, caches of the configuration, database
    /// migrations), run again at the new provider after the move and before the applications start: upstream
    /// runs them once at boot, before the moved data was there (Pixelfed's `pixelfed-data-setup.service`).
    #[serde(default)]
    pub setup_units: Vec<String>,
    /// Units the freeze stops beyond the health units, each started again only through a health unit that wants
    /// it (globs allowed, as `systemctl` matches loaded units): Mastodon's `mastodon-streaming-<n>.service` are
    /// only `wantedBy` `mastodon-streaming.target` (mastodon.nix, `streamingUnits`), so stopping the target
    /// leaves them running and serving the streaming API while A's data is copied.
    #[serde(default)]
    pub freeze_also: Vec<String>,
    /// Timers whose service changes the state (`mastodon-media-auto-remove.timer`, `pixelfed-cron.timer`): the
    /// freeze stops each with its service (`<name>.service`, the timer's default unit), so none runs inside the
    /// window, and every start of the application (B's after the move, A's on rollback) starts the timer again.
    #[serde(default)]
    pub timers: Vec<String>,
    /// The application's own local stores whose content is state (its Redis server, `redis-<name>.service`,
    /// which the upstream module creates with `redis.createLocally`: Sidekiq's queued deliveries and retries,
    /// Mastodon's home feeds, PeerTube's and Pixelfed's job queues). The freeze stops them after the
    /// application, so nothing writes to them any more and redis-server writes `dump.rdb` as it exits (nixpkgs'
    /// redis.nix keeps the save points `[900 1] [300 10] [60 10000]` by default, and Redis saves on SIGTERM when
    /// one is configured); their directory moves as a `[state.directories]` entry; every start of the
    /// application (B's after the move, A's on rollback) starts them first.
    #[serde(default)]
    pub stores: Vec<String>,
    /// Columns holding absolute URLs of the application's media host (`[[state.url_columns]]`): after a move
    /// they are rewritten from the old provider's media prefix to the new one's (Pixelfed stores
    /// `https://<media host>/<bucket>/…` in `media.cdn_url` when a photo is stored).
    #[serde(default)]
    pub url_columns: Vec<UrlColumn>,
}

/// One database column holding absolute URLs of one of the application's buckets, as its media host serves
/// them (`https://<media host>/<bucket>/<key>`).
///
/// Why declared: such a URL names the provider it was stored at, and nothing in the application rewrites it
/// when the provider changes; the migration must (the job's `url_rewrites`, step `rewrite:NAME`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlColumn {
    /// The database (one of `[state.databases]`).
    pub database: String,
    /// The bucket whose URLs it holds (one of `buckets`).
    pub bucket: String,
    /// The table.
    pub table: String,
    /// The column.
    pub column: String,
    /// Where upstream writes the URL (for reviewers).
    pub source: String,
    /// Which URL of the bucket the column holds: `media` (the default), what the media host serves; or `s3`, the
    /// object's URL on the S3 endpoint in virtual-host form, `https://<bucket>.<S3 host>/<key>` (PeerTube stores
    /// that and puts its `base_url` in front only when it hands the URL out).
    #[serde(default)]
    pub form: UrlForm,
}

/// The form of a stored URL of a bucket's object ([`UrlColumn::form`]), so a move knows the prefix to rewrite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UrlForm {
    /// `https://<media host>/<bucket>/<key>`: the provider's media host (Garage's web endpoint behind it).
    #[default]
    Media,
    /// `https://<bucket>.<S3 host>/<key>`: the S3 endpoint, the bucket as the host's first label.
    S3,
}

/// A database engine the migration can dump and restore. Also the migration job's `databases[].engine`
/// (PostgreSQL when absent, so jobs written before MySQL was supported keep their meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// PostgreSQL: moved with `pg_dump -Fc` and `pg_restore` (or logical replication).
    #[default]
    Postgresql,
    /// MySQL or MariaDB (Pixelfed's default in nixpkgs): moved with `mariadb-dump`/`mysqldump` and the
    /// `mariadb`/`mysql` client (`gen/src/migrate/mysql.rs`).
    Mysql,
}

impl Engine {
    /// The engine's name as the manifest writes it.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Postgresql => "postgresql",
            Engine::Mysql => "mysql",
        }
    }

    /// Whether this is PostgreSQL, the default (a job's `engine` is left out then).
    pub fn is_postgresql(&self) -> bool {
        *self == Engine::Postgresql
    }
}

/// One database.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// The engine.
    pub engine: Engine,
    /// The role (user) that owns the database and that the application connects as.
    pub user: String,
    /// Where upstream fixes the name and user (for reviewers).
    pub source: String,
}

/// One directory the application keeps.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    /// The absolute path on the application's machine.
    pub path: String,
    /// The user owning it (the service's user).
    pub owner: String,
    /// Its group.
    pub group: String,
    /// Where upstream keeps it (`StateDirectory = "mastodon"` of the mastodon units), for reviewers.
    pub source: String,
}

/// One piece of identity: a secret that must be the same at the new provider.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// What it is and what breaks when it changes.
    pub description: String,
    /// The file the upstream module keeps it in on the machine (generated there on first start), or absent
    /// when it is one of the manifest's `[secrets]` (then `secret` names it).
    #[serde(default)]
    pub file: Option<String>,
    /// The manifest secret holding it, when the provider provides it (its file comes from the specification).
    #[serde(default)]
    pub secret: Option<String>,
    /// The owner of the file at the new provider.
    pub owner: String,
    /// Its group.
    pub group: String,
    /// Its mode, in octal (`"0600"`).
    pub mode: String,
}

impl Identity {
    /// The mode as a number, when it is an octal mode of at most four digits without write or any access for
    /// others (a secret is never world-readable).
    pub fn mode_bits(&self) -> Result<u32, String> {
        mode_bits(&self.mode)
    }
}

impl State {
    /// The problems of `url_columns`: a database or bucket the state does not declare, a table or column that
    /// is not a plain identifier, a column declared twice.
    fn url_column_problems(&self, out: &mut Vec<(String, String)>) {
        let identifier = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !s.as_bytes()[0].is_ascii_digit()
        };
        let mut seen = std::collections::BTreeSet::new();
        for (i, c) in self.url_columns.iter().enumerate() {
            if !self.databases.contains_key(&c.database) {
                out.push((
                    format!("url_columns.{i}.database"),
                    format!(
                        "`{}` is not one of [state.databases] ({})",
                        c.database,
                        list(
                            &self
                                .databases
                                .keys()
                                .map(String::as_str)
                                .collect::<Vec<_>>()
                        )
                    ),
                ));
            }
            if !self.buckets.contains(&c.bucket) {
                out.push((
                    format!("url_columns.{i}.bucket"),
                    format!(
                        "`{}` is not one of the state's buckets ({})",
                        c.bucket,
                        list(&self.buckets.iter().map(String::as_str).collect::<Vec<_>>())
                    ),
                ));
            }
            for (field, value) in [("table", &c.table), ("column", &c.column)] {
                if !identifier(value) {
                    out.push((
                        format!("url_columns.{i}.{field}"),
                        format!("`{value}` must be a plain identifier: letters, digits and `_`, not starting with a digit, at most 64"),
                    ));
                }
            }
            // One column may hold URLs of several buckets (PeerTube's `videoFile.fileUrl`: web videos and
            // streaming playlists), each its own prefix.
            if !seen.insert((&c.database, &c.table, &c.column, &c.bucket)) {
                out.push((
                    format!("url_columns.{i}"),
                    format!(
                        "`{}.{}` of database `{}` is declared twice for bucket `{}`",
                        c.table, c.column, c.database, c.bucket
                    ),
                ));
            }
        }
    }

    /// Every problem of the declaration against the rest of the manifest, as (path below `state`, message):
    /// absolute paths, an identity that says where it lives exactly once, secrets that exist, and every
    /// bucket the application needs declared (and no other).
    pub fn problems(&self, secrets: &[&str], needed_buckets: &[String]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let absolute = |p: &str| {
            p.starts_with('/')
                && !p
                    .split('/')
                    .skip(1)
                    .any(|c| c.is_empty() || c == "." || c == "..")
                && !p.starts_with("/nix/store")
        };
        for (name, dir) in &self.directories {
            if !absolute(&dir.path) {
                out.push((
                    format!("directories.{name}.path"),
                    format!("`{}` must be an absolute path outside /nix/store, without empty, `.` or `..` components", dir.path),
                ));
            }
        }
        for (i, unit) in self.timers.iter().enumerate() {
            if unit
                .strip_suffix(".timer")
                .is_none_or(|n| n.is_empty() || n.contains(['*', '?', '[']))
            {
                out.push((
                    format!("timers[{i}]"),
                    format!("`{unit}` must be a timer's unit name, `<name>.timer`, without a glob"),
                ));
            }
        }
        for (i, unit) in self.freeze_also.iter().enumerate() {
            if !unit.ends_with(".service") || unit.contains(char::is_whitespace) {
                out.push((
                    format!("freeze_also[{i}]"),
                    format!("`{unit}` must be a service's unit name or glob, `<name>.service`"),
                ));
            }
        }
        for (i, unit) in self.stores.iter().enumerate() {
            if unit.strip_suffix(".service").is_none_or(|n| {
                n.is_empty() || n.contains(['*', '?', '[']) || n.contains(char::is_whitespace)
            }) {
                out.push((
                    format!("stores[{i}]"),
                    format!(
                        "`{unit}` must be a service's unit name, `<name>.service`, without a glob"
                    ),
                ));
            }
        }
        for (name, id) in &self.identity {
            match (&id.file, &id.secret) {
                (Some(file), None) if !absolute(file) => out.push((
                    format!("identity.{name}.file"),
                    format!("`{file}` must be an absolute path outside /nix/store"),
                )),
                (None, Some(secret)) if !secrets.contains(&secret.as_str()) => out.push((
                    format!("identity.{name}.secret"),
                    format!(
                        "no secret `{secret}` in [secrets]; the secrets are {}",
                        list(secrets)
                    ),
                )),
                (Some(_), Some(_)) | (None, None) => out.push((
                    format!("identity.{name}"),
                    "say where it lives: `file = \"/var/lib/…\"` (kept by the upstream module) or `secret = \"<name>\"` (one of [secrets]), not both".into(),
                )),
                _ => {}
            }
            if let Err(reason) = id.mode_bits() {
                out.push((format!("identity.{name}.mode"), reason));
            }
        }
        self.url_column_problems(&mut out);
        for bucket in needed_buckets {
            if !self.buckets.contains(bucket) {
                out.push((
                    "buckets".into(),
                    format!("`needs.s3_buckets` has `{bucket}`, which the state does not list: add it to `buckets`, or a migration leaves its objects behind"),
                ));
            }
        }
        for bucket in &self.buckets {
            if !needed_buckets.contains(bucket) {
                out.push((
                    "buckets".into(),
                    format!(
                        "`{bucket}` is not one of `needs.s3_buckets` ({})",
                        list(
                            &needed_buckets
                                .iter()
                                .map(String::as_str)
                                .collect::<Vec<_>>()
                        )
                    ),
                ));
            }
        }
        out
    }

    /// Whether `path` (a directory upstream keeps) is moved: a declared directory is it or holds it.
    pub fn covers(&self, path: &str) -> bool {
        let path = path.trim_end_matches('/');
        self.directories.values().any(|d| {
            let dir = d.path.trim_end_matches('/');
            path == dir
                || path
                    .strip_prefix(dir)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }
}

fn list(items: &[&str]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items
            .iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A directory an upstream module keeps, found by [`scan_upstream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamDirectory {
    /// The absolute path (`StateDirectory = "x"` is `/var/lib/x`).
    pub path: String,
    /// Where in the module.
    pub position: Position,
    /// What declares it: `StateDirectory` or `dataDir`.
    pub how: &'static str,
}

/// The directories an upstream NixOS module keeps, read statically (never evaluated): every
/// `StateDirectory = …` binding (a string, a list of strings, or `lib.mkIf cond "x"`: the string literals of
/// its value that are relative names; `/var/lib/` is systemd's prefix) and every `dataDir`/`stateDir` option
/// whose `default` is an absolute string. Sorted by path, one entry per path (the first place).
pub fn scan_upstream(text: &str) -> Vec<UpstreamDirectory> {
    let root = rnix::Root::parse(text).syntax();
    let mut found: BTreeMap<String, UpstreamDirectory> = BTreeMap::new();
    for node in root.descendants() {
        let Some(binding) = ast::AttrpathValue::cast(node) else {
            continue;
        };
        let (Some(path), Some(value)) = (binding.attrpath(), binding.value()) else {
            continue;
        };
        let Ok(names) = attrpath_names(&path) else {
            continue;
        };
        let Some(last) = names.last() else { continue };
        let at = position(text, binding.syntax());
        if last == "StateDirectory" {
            for s in value.syntax().descendants().filter_map(ast::Str::cast) {
                let Some(name) = string_literal(&s) else {
                    continue;
                };
                // `lib.mkIf (cfg.dataDir == "/var/lib/x") "x"`: the absolute string is the condition.
                if name.is_empty() || name.starts_with('/') {
                    continue;
                }
                for part in name.split_whitespace() {
                    let path = format!("/var/lib/{part}");
                    found.entry(path.clone()).or_insert(UpstreamDirectory {
                        path,
                        position: at,
                        how: "StateDirectory",
                    });
                }
            }
        } else if (last == "dataDir" || last == "stateDir")
            && let Some(default) = option_default(&value)
            && default.starts_with('/')
            && !default.starts_with("/nix/store")
        {
            let path = default.trim_end_matches('/').to_owned();
            found.entry(path.clone()).or_insert(UpstreamDirectory {
                path,
                position: at,
                how: "dataDir",
            });
        }
    }
    found.into_values().collect()
}

/// The `default = "…";` string of an `mkOption { … }` call, when the text fixes it.
fn option_default(value: &ast::Expr) -> Option<String> {
    let ast::Expr::Apply(apply) = value else {
        return None;
    };
    let ast::Expr::AttrSet(set) = apply.argument()? else {
        return None;
    };
    set.attrpath_values().find_map(|b| {
        let names = attrpath_names(&b.attrpath()?).ok()?;
        if names != ["default"] {
            return None;
        }
        match b.value()? {
            ast::Expr::Str(s) => string_literal(&s),
            _ => None,
        }
    })
}

/// What an upstream module keeps that `state` does not declare, one message per directory, each said at the
/// manifest (`manifest_file:line:column`, the line of `[state]` or of `upstream_module` in `manifest_text`)
/// and naming where upstream keeps it (`module_file:line:column`) and how to fix it.
pub fn undeclared(
    state: &State,
    manifest_file: &str,
    manifest_text: &str,
    module_file: &str,
    module_text: &str,
) -> Vec<String> {
    let at = manifest_text
        .lines()
        .position(|l| l.trim_start().starts_with("upstream_module"))
        .or_else(|| manifest_text.lines().position(|l| l.trim() == "[state]"))
        .map(|i| format!("{manifest_file}:{}:1", i + 1))
        .unwrap_or_else(|| format!("{manifest_file}:1:1"));
    let directories = scan_upstream(module_text)
        .into_iter()
        .filter(|d| !state.covers(&d.path))
        .map(|d| {
            format!(
                "{at}: [state]: the upstream module keeps `{}` ({} at {module_file}:{}), which no [state.directories] entry holds: declare it (path, owner, group, source), or a migration leaves it behind",
                d.path, d.how, d.position
            )
        });
    let timers = scan_timers(module_text)
        .into_iter()
        .filter(|(unit, _)| !state.timers.contains(unit))
        .map(|(unit, position)| {
            format!(
                "{at}: [state]: the upstream module runs `{unit}` ({module_file}:{position}), which [state] timers does not list: add it, or the timer's service may run inside a migration's freeze window and B's start leaves it stopped"
            )
        });
    directories.chain(timers).collect()
}

/// The timers an upstream NixOS module defines, read statically (never evaluated): `startAt` of a
/// `systemd.services.<name>` (systemd makes `<name>.timer` of it) and every `systemd.timers.<name>`, with a
/// literal name; each once, at its first place. Option declarations (`options.…startAt = mkOption …`) are not
/// timers.
pub fn scan_timers(text: &str) -> Vec<(String, Position)> {
    let root = rnix::Root::parse(text).syntax();
    let mut found: BTreeMap<String, Position> = BTreeMap::new();
    for node in root.descendants() {
        let Some(binding) = ast::AttrpathValue::cast(node.clone()) else {
            continue;
        };
        // The binding's whole path: its own names after those of the bindings it is nested in.
        let mut names = Vec::new();
        let mut complete = true;
        for ancestor in node.ancestors().filter_map(ast::AttrpathValue::cast) {
            match ancestor.attrpath().map(|p| attrpath_names(&p)) {
                Some(Ok(mut own)) => {
                    own.extend(names);
                    names = own;
                }
                _ => {
                    complete = false;
                    break;
                }
            }
        }
        if !complete || names.first().is_some_and(|n| n == "options") {
            continue;
        }
        let unit = names.windows(3).enumerate().find_map(|(i, w)| {
            let rest = &names[i + 3..];
            match (w[0].as_str(), w[1].as_str()) {
                ("systemd", "services") if rest == ["startAt"] => Some(format!("{}.timer", w[2])),
                ("systemd", "timers") if rest.is_empty() => Some(format!("{}.timer", w[2])),
                _ => None,
            }
        });
        if let Some(unit) = unit {
            found
                .entry(unit)
                .or_insert_with(|| position(text, binding.syntax()));
        }
    }
    found.into_iter().collect()
}

/// The `[state]` section `template import` drafts from what [`scan_upstream`] found: one directory per path,
/// with TODO owners, and TODO reminders for databases, buckets and identity (which no scan can find).
pub fn draft(found: &[UpstreamDirectory], upstream_module: Option<&str>) -> String {
    let mut out = String::from(
        "\n# TODO: the state the application keeps, which a migration between providers moves: its databases\n\
         # ([state.databases.<name>]), buckets (the kinds of needs.s3_buckets), directories, and identity (the\n\
         # secrets that make it the same server: signing, encryption and push keys, each with its file).\n[state]\n",
    );
    if let Some(module) = upstream_module {
        out.push_str(&format!(
            "upstream_module = {}\n",
            toml::Value::String(module.to_owned())
        ));
    }
    let mut used = std::collections::BTreeSet::new();
    for (i, dir) in found.iter().enumerate() {
        let base = dir
            .path
            .rsplit('/')
            .next()
            .filter(|n| {
                !n.is_empty()
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .map(str::to_owned)
            .unwrap_or_else(|| "dir".to_owned());
        let name = if used.insert(base.clone()) {
            base
        } else {
            let name = format!("{base}-{i}");
            used.insert(name.clone());
            name
        };
        out.push_str(&format!(
            "\n[state.directories.{name}]\npath = {}\nowner = \"TODO\"\ngroup = \"TODO\"\nsource = {}\n",
            toml::Value::String(dir.path.clone()),
            toml::Value::String(format!(
                "TODO: check — {} at line {}",
                dir.how, dir.position.line
            )),
        ));
    }
    out
}

/// An octal file mode for a secret: three or four octal digits, nothing for others.
pub(crate) fn mode_bits(mode: &str) -> Result<u32, String> {
    let bits = ((3..=4).contains(&mode.len()) && mode.bytes().all(|b| (b'0'..=b'7').contains(&b)))
        .then(|| u32::from_str_radix(mode, 8).ok())
        .flatten()
        .ok_or_else(|| format!("`{mode}` is not an octal mode such as \"0600\""))?;
    if bits & 0o007 != 0 {
        return Err(format!(
            "`{mode}` lets every user of the machine read or change the secret; use \"0600\" or \"0640\""
        ));
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_directories_and_data_dirs_are_found_statically() {
        let text = r#"{ lib, cfg, ... }: {
  options.services.x.dataDir = lib.mkOption { type = lib.types.str; default = "/var/lib/x-data/"; };
  config.systemd.services.a.serviceConfig = {
    StateDirectory = "alpha";
    CacheDirectory = "not-state";
  };
  config.systemd.services.b.serviceConfig.StateDirectory = lib.mkIf (cfg.dataDir == "/var/lib/beta") "beta";
  config.systemd.services.c.serviceConfig.StateDirectory = [ "gamma" "gamma/sub" ];
  config.systemd.services.d.serviceConfig.StateDirectory = "alpha";
}"#;
        let found: Vec<(String, &str, usize)> = scan_upstream(text)
            .into_iter()
            .map(|d| (d.path, d.how, d.position.line))
            .collect();
        assert_eq!(
            found,
            vec![
                ("/var/lib/alpha".into(), "StateDirectory", 4),
                ("/var/lib/beta".into(), "StateDirectory", 7),
                ("/var/lib/gamma".into(), "StateDirectory", 8),
                ("/var/lib/gamma/sub".into(), "StateDirectory", 8),
                ("/var/lib/x-data".into(), "dataDir", 2),
            ]
        );
    }

    fn dir(path: &str) -> Directory {
        Directory {
            path: path.into(),
            owner: "u".into(),
            group: "g".into(),
            source: "s".into(),
        }
    }

    #[test]
    fn an_undeclared_upstream_directory_is_named_at_the_manifest() {
        let module = "{ ... }: {\n  a.serviceConfig.StateDirectory = \"kept\";\n  b.serviceConfig.StateDirectory = \"other\";\n}\n";
        let mut state = State::default();
        state.directories.insert("d".into(), dir("/var/lib/kept"));
        let manifest = "[application]\n[state]\nupstream_module = \"m.nix\"\n";
        let found = undeclared(&state, "t/manifest.toml", manifest, "nixpkgs/m.nix", module);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("t/manifest.toml:3:1: [state]: the upstream module keeps `/var/lib/other` (StateDirectory at nixpkgs/m.nix:3:3)"),
            "{}",
            found[0]
        );
        state.directories.insert("e".into(), dir("/var/lib/other"));
        assert!(undeclared(&state, "t", manifest, "m", module).is_empty());
    }

    #[test]
    fn a_declared_directory_covers_itself_and_what_it_holds_only() {
        let mut state = State::default();
        state.directories.insert("d".into(), dir("/var/lib/x"));
        assert!(state.covers("/var/lib/x"));
        assert!(state.covers("/var/lib/x/"));
        assert!(state.covers("/var/lib/x/media"));
        assert!(!state.covers("/var/lib/xy"));
        assert!(!state.covers("/var/lib"));
    }

    #[test]
    fn identity_modes_and_places_are_checked() {
        let id = |file: Option<&str>, secret: Option<&str>, mode: &str| Identity {
            description: "d".into(),
            file: file.map(Into::into),
            secret: secret.map(Into::into),
            owner: "u".into(),
            group: "g".into(),
            mode: mode.into(),
        };
        let mut state = State::default();
        state
            .identity
            .insert("ok".into(), id(Some("/var/lib/x/k"), None, "0600"));
        state
            .identity
            .insert("both".into(), id(Some("/k"), Some("s"), "0600"));
        state
            .identity
            .insert("world".into(), id(None, Some("s"), "0644"));
        state
            .identity
            .insert("nosecret".into(), id(None, Some("t"), "600"));
        state
            .identity
            .insert("relative".into(), id(Some("k"), None, "0640"));
        let problems = state.problems(&["s"], &[]);
        let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "identity.both",
                "identity.nosecret.secret",
                "identity.relative.file",
                "identity.world.mode"
            ]
        );
        assert!(problems[3].1.contains("every user"), "{problems:?}");
    }

    /// Timers found as upstream writes them: `startAt` inside a (possibly `mkIf`-wrapped, nested) service, a
    /// `systemd.timers.<name>`; not an option declared `startAt`, nor a name computed at evaluation. An undeclared
    /// one is reported at the manifest; a declared one is not.
    #[test]
    fn upstream_timers_are_found_and_undeclared_ones_reported() {
        let module = r#"{ lib, cfg, ... }: {
  options.services.x.cleanup.startAt = lib.mkOption { default = "daily"; };
  config = lib.mkIf cfg.enable {
    systemd.services.x-cleanup = lib.mkIf cfg.cleanup.enable {
      script = "true";
      startAt = cfg.cleanup.startAt;
    };
    systemd.services = { x-web.serviceConfig.Type = "simple"; };
    systemd.timers.x-cron = { wantedBy = [ "timers.target" ]; };
    systemd.services."x-${toString 1}".startAt = "hourly";
  };
}
"#;
        let found: Vec<String> = scan_timers(module).into_iter().map(|(u, _)| u).collect();
        assert_eq!(found, ["x-cleanup.timer", "x-cron.timer"]);
        let state = State {
            timers: vec!["x-cron.timer".into()],
            ..State::default()
        };
        let messages = undeclared(
            &state,
            "t/manifest.toml",
            "[state]\n",
            "nixpkgs/m.nix",
            module,
        );
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert!(
            messages[0].starts_with("t/manifest.toml:1:1: [state]: the upstream module runs `x-cleanup.timer` (nixpkgs/m.nix:6:7)"),
            "{messages:?}"
        );
    }

    /// Each URL column names a declared database and bucket, plain identifiers, once.
    #[test]
    fn url_columns_are_checked_against_the_state() {
        let column = |database: &str, bucket: &str, table: &str, column: &str| UrlColumn {
            database: database.into(),
            bucket: bucket.into(),
            table: table.into(),
            column: column.into(),
            source: "s".into(),
            form: UrlForm::Media,
        };
        let mut state = State {
            buckets: vec!["media".into()],
            url_columns: vec![
                column("pixelfed", "media", "media", "cdn_url"),
                column("other", "videos", "media", "cdn_url"),
                column("pixelfed", "media", "media; DROP", "1x"),
                column("pixelfed", "media", "media", "cdn_url"),
            ],
            ..State::default()
        };
        state.databases.insert(
            "pixelfed".into(),
            Database {
                engine: Engine::Mysql,
                user: "pixelfed".into(),
                source: "s".into(),
            },
        );
        let problems = state.problems(&[], &["media".into()]);
        let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "url_columns.1.database",
                "url_columns.1.bucket",
                "url_columns.2.table",
                "url_columns.2.column",
                "url_columns.3"
            ],
            "{problems:?}"
        );
        assert!(problems[0].1.contains("`pixelfed`"), "{problems:?}");
    }

    #[test]
    fn buckets_needed_and_declared_must_agree() {
        let state = State {
            buckets: vec!["media".into(), "extra".into()],
            ..State::default()
        };
        let problems = state.problems(&[], &["media".into(), "videos".into()]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].1.contains("`videos`"));
        assert!(problems[1].1.contains("`extra` is not one of"));
    }
}
