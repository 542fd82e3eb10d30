//! The migration job: the JSON file `fedigen migrate run|verify|rollback` is given. It names, for one operator,
//! every database, bucket, directory and identity secret to move (each with its source at the old provider and
//! its target at the new one) and the commands that freeze the source, start and health-check the target, switch
//! DNS, and start the source again on rollback.
//!
//! Why a file of its own: the planner (`fedigen migrate plan`) writes it from the manifests' `[state]` and the
//! two providers' specifications, and it is the one input of the code that runs on the machines and in the
//! tests. It holds **no secrets**: passwords and S3 keys are files named here and read when a step runs.
//! Commands are argument vectors, never shell text.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::state::Engine;

/// A whole migration of one operator from one provider to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// The operator being moved (for messages and the journal).
    pub operator: String,
    /// The databases, each dumped at the source after the freeze and restored at the target.
    #[serde(default)]
    pub databases: Vec<DatabaseMove>,
    /// The buckets, copied while the source runs and again (the delta) after the freeze.
    #[serde(default)]
    pub buckets: Vec<BucketMove>,
    /// The directories, copied while the source runs and again (the delta) after the freeze.
    #[serde(default)]
    pub directories: Vec<DirectoryMove>,
    /// The identity secrets, placed at the target after the freeze.
    #[serde(default)]
    pub identity: Vec<SecretMove>,
    /// The commands of the freeze, the target's start, its health checks, the DNS switch and the rollback.
    #[serde(default)]
    pub commands: Commands,
}

/// One database to move (PostgreSQL, or MySQL/MariaDB).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseMove {
    /// A short name, unique in the job (the journal's step names use it).
    pub name: String,
    /// The engine of both sides: `postgresql` (the default, so jobs written before MySQL was supported stay
    /// valid and serialise as before) or `mysql` (MySQL or MariaDB: dumped with `mariadb-dump`/`mysqldump`,
    /// restored with the client; see `mysql.rs`). `source` and `target` are then MySQL connections: `host` a
    /// socket file (or the folder holding `mysqld.sock`) or a host name, and `port` must be given for TCP.
    #[serde(default, skip_serializing_if = "Engine::is_postgresql")]
    pub engine: Engine,
    /// Where it is now.
    pub source: Postgres,
    /// Where it goes: the database must exist (the target's module creates it), owned by `user`.
    pub target: Postgres,
    /// Replicate the database while the source serves (PostgreSQL logical replication), so the freeze only
    /// waits for the last changes instead of dumping and restoring it whole. Absent: dump and restore after the
    /// freeze, as before. Used only when the source allows it (`wal_level = logical`, checked read-only before
    /// anything); otherwise the run falls back to dump and restore and says why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<Replication>,
    /// Columns holding absolute URLs of the source's media host (Pixelfed's `media.cdn_url`), rewritten at the
    /// target after the restore (step `rewrite:NAME`) so they name the target's; verification compares the
    /// source's rows as the rewrite leaves them. Empty: nothing is rewritten.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub url_rewrites: Vec<UrlRewrite>,
}

/// One column whose values beginning with `from` begin with `to` after the move.
///
/// Why a prefix and not a host: the stored URL is the media host *and* the bucket's path
/// (`https://media.provider-a.example/op-pixelfed-media/…`), and the bucket's name may differ at the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlRewrite {
    /// The table (in the database's default schema).
    pub table: String,
    /// The column.
    pub column: String,
    /// The source's prefix (`https://media.a.example/op-media/`).
    pub from: String,
    /// The target's prefix.
    pub to: String,
}

/// The two extra roles logical replication needs, beside the application's roles of `source` and `target`.
///
/// Why roles of their own: the subscription's connection to the source must be allowed to replicate (the
/// `REPLICATION` attribute, and `SELECT` on the tables for their first copy), and in PostgreSQL 15 only a
/// superuser may create a subscription at the target (16 adds `pg_create_subscription`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replication {
    /// How the **target's server** reaches the source's database: host and port as seen from the target's
    /// machine, a role with `REPLICATION` (or a superuser) and its password file. fedigen also uses it to read
    /// the source's replication state and to drop the replication slot. The password is put in the
    /// subscription's connection string at the target (readable by its superusers only) until the freeze
    /// drops the subscription.
    pub publisher: Postgres,
    /// A superuser at the target, in the target database: it creates, waits for and drops the subscription.
    pub subscriber: Postgres,
}

/// A PostgreSQL connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Postgres {
    /// A host name, an address, or a folder holding the server's Unix socket (`/run/postgresql`).
    pub host: String,
    /// The server's port.
    #[serde(default = "default_pg_port")]
    pub port: u16,
    /// The role to connect as (at the target: the application's, so restored objects are its own).
    pub user: String,
    /// The database.
    pub database: String,
    /// A file holding the role's password, when the server asks for one (read when the step runs).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The user of this machine the PostgreSQL tools run as for this connection (fedigen runs as root). Why:
    /// over a Unix socket NixOS's PostgreSQL authenticates by `peer` (`local all all peer`, the default of
    /// `services.postgresql.authentication`): the OS user must be the role, so a root fedigen connecting as the
    /// application's role is refused. On NixOS the application's role is its service user (`mastodon`,
    /// `matrix-synapse`, `peertube`, `pixelfed`). Absent: the tools run as fedigen's own user, as before.
    ///
    /// For MySQL likewise: the server authenticates local
    /// socket connections by it (MariaDB's `unix_socket` for the users NixOS's `ensureUsers` creates). The
    /// dump is then read on standard input, opened by root, since the journal folder is root's alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_user: Option<String>,
    /// Whether and how the connection is encrypted. Why: a database crossing from one provider to another
    /// holds the actors' private keys and every account's e-mail and password hash; across a network it must
    /// not travel in clear (issue #16's operator review, B3), so a connection to a host on the network
    /// requires TLS unless the job says otherwise.
    #[serde(default, skip_serializing_if = "Tls::is_default")]
    pub tls: Tls,
}

impl Postgres {
    /// The encryption this connection asks for: the job's `tls.mode`, or else `require` for a host on the
    /// network and `prefer` (libpq's own default) for a Unix socket or the loopback, where nothing crosses a
    /// network.
    pub fn tls_mode(&self) -> TlsMode {
        self.tls.mode.unwrap_or_else(|| {
            let host = self.host.as_str();
            let local = host.starts_with('/')
                || host.eq_ignore_ascii_case("localhost")
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if local {
                TlsMode::Prefer
            } else {
                TlsMode::Require
            }
        })
    }
}

/// A database connection's encryption: libpq's `sslmode` and root certificate, which the MySQL tools get as
/// their `--ssl` options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// The mode; absent: [`Postgres::tls_mode`]'s default by host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<TlsMode>,
    /// The certificate of the CA that signed the server's (PEM), for `verify-ca` and `verify-full`; read by
    /// the tools at the machine that runs them (for a replicated database's publisher: by B's PostgreSQL
    /// server, as its OS user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl Tls {
    fn is_default(&self) -> bool {
        *self == Tls::default()
    }
}

/// How a connection is encrypted, by libpq's names (`sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Never encrypted (a private network the provider vouches for).
    Disable,
    /// Encrypted when the server offers it (libpq's default; no protection against an active attacker).
    Prefer,
    /// Always encrypted; the server's certificate is not checked.
    Require,
    /// Encrypted, and the server's certificate signed by `ca_file`.
    VerifyCa,
    /// Encrypted, the server's certificate signed by `ca_file` and naming the host.
    VerifyFull,
}

impl TlsMode {
    /// libpq's name of the mode (`sslmode=`).
    pub fn libpq(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

fn default_pg_port() -> u16 {
    5432
}

/// One bucket to move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketMove {
    /// A short name, unique in the job.
    pub name: String,
    /// The bucket at the source's object storage.
    pub source: S3,
    /// The bucket at the target's object storage (it must exist, writable with the key).
    pub target: S3,
}

/// A bucket on an S3 endpoint, and the key to use there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3 {
    /// The endpoint URL (`https://s3.provider.example`, path-style requests).
    pub endpoint: String,
    /// The region the endpoint expects (Garage's `s3_region`).
    pub region: String,
    /// The bucket.
    pub bucket: String,
    /// An environment file with `AWS_ACCESS_KEY_ID=` and `AWS_SECRET_ACCESS_KEY=` lines (what the application
    /// itself reads), read when the step runs and passed to rclone in its environment only.
    pub key_file: PathBuf,
}

/// One directory to move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryMove {
    /// A short name, unique in the job.
    pub name: String,
    /// Where it is: an absolute path on the machine running the job, or `ssh://host/absolute/path`.
    pub source: String,
    /// Where it goes, in the same forms. The target's contents become exactly the source's.
    pub target: String,
}

/// One identity secret to place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretMove {
    /// A short name, unique in the job (`secret_key_base`): never the value.
    pub name: String,
    /// The file at the source: an absolute path here, or `ssh://host/absolute/path` (read with `ssh host cat`).
    pub source: String,
    /// The file at the target, written atomically with `owner`, `group` and `mode`.
    pub target: PathBuf,
    /// The user owning the target file (changed only when the job runs as root).
    pub owner: String,
    /// Its group.
    pub group: String,
    /// Its mode, octal (`"0600"`); never readable by others.
    pub mode: String,
}

/// The commands of a migration, each an argument vector run without a shell. Each must be idempotent: a
/// resumed run may repeat the one it was killed in.
///
/// `Default` is written out (not derived) so that a job built in code gets the same health timeout as one read
/// from JSON: a derived default of 0 seconds would be refused by [`Job::problems`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commands {
    /// Stop the target's applications before anything is copied (the run's first step, and again on rollback).
    /// B is deployed before the move, so NixOS has started them on empty state: running, they would hold B's
    /// databases and folders while these are replaced, and keep B's own secrets in their environment after the
    /// identity moved (`start` would find them active and change nothing). Empty in jobs written before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_stop: Vec<Vec<String>>,
    /// Stop the source's applications (or make them read-only): after these, its data no longer changes.
    #[serde(default)]
    pub freeze: Vec<Vec<String>>,
    /// Start the target's applications.
    #[serde(default)]
    pub start: Vec<Vec<String>>,
    /// Checks that the target works; each is retried until it succeeds or `health_timeout_seconds` pass.
    #[serde(default)]
    pub health: Vec<Vec<String>>,
    /// How long the health checks may take, in seconds.
    #[serde(default = "default_health_timeout")]
    pub health_timeout_seconds: u64,
    /// Switch DNS to the target: the last step, after which the source is no longer the server.
    #[serde(default)]
    pub dns_switch: Vec<Vec<String>>,
    /// Start the source again (`fedigen migrate rollback`), undoing the freeze.
    #[serde(default)]
    pub source_start: Vec<Vec<String>>,
}

impl Default for Commands {
    fn default() -> Self {
        Commands {
            target_stop: Vec::new(),
            freeze: Vec::new(),
            start: Vec::new(),
            health: Vec::new(),
            health_timeout_seconds: default_health_timeout(),
            dns_switch: Vec::new(),
            source_start: Vec::new(),
        }
    }
}

fn default_health_timeout() -> u64 {
    300
}

pub use crate::json_document::Problem;

/// Why a migration job was refused: every problem, each at its JSON path.
pub type JobError = crate::json_document::InvalidDocument;

/// Where a directory is: here, or on another machine reached over ssh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An absolute path on this machine.
    Local(PathBuf),
    /// `ssh://host/path`: the host (`user@host` allowed) and the absolute path there.
    Ssh {
        /// The ssh destination.
        host: String,
        /// The absolute path on it.
        path: String,
    },
}

impl Location {
    /// Reads `text` (`/abs/path` or `ssh://host/abs/path`), refusing relative paths and `..`.
    pub fn parse(text: &str) -> Result<Location, String> {
        let clean = |p: &str| {
            p.starts_with('/') && !p.split('/').skip(1).any(|c| c == "." || c == "..") && p != "/"
        };
        if let Some(rest) = text.strip_prefix("ssh://") {
            let (host, path) = rest
                .split_once('/')
                .map(|(h, p)| (h, format!("/{p}")))
                .ok_or_else(|| format!("`{text}` has no path: write ssh://host/absolute/path"))?;
            if host.is_empty() || host.starts_with('-') || host.contains(char::is_whitespace) {
                return Err(format!("`{text}`: `{host}` is not an ssh destination"));
            }
            if !clean(&path) {
                return Err(format!(
                    "`{text}`: the path must be absolute, not `/`, without `.` or `..`"
                ));
            }
            Ok(Location::Ssh {
                host: host.to_owned(),
                path,
            })
        } else if clean(text) {
            Ok(Location::Local(PathBuf::from(text)))
        } else {
            Err(format!(
                "`{text}` must be an absolute path (not `/`, without `.` or `..`) or ssh://host/absolute/path"
            ))
        }
    }
}

impl Job {
    /// Parses and validates a job; `source` names the file in messages.
    pub fn parse(text: &str, source: &str) -> Result<Job, JobError> {
        crate::json_document::parse(text, source, "migration job", Self::problems)
    }

    /// The job as deterministic, pretty JSON.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a job serialises");
        text.push('\n');
        text
    }

    /// Every problem of the job, each at its JSON path; empty when it is valid.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut problem = |path: String, message: String| out.push(Problem { path, message });
        if self.operator.trim().is_empty() {
            problem(
                "operator".into(),
                "must name the operator being moved".into(),
            );
        }
        let names = |kind: &str, list: Vec<&str>, problem: &mut dyn FnMut(String, String)| {
            let mut seen = BTreeSet::new();
            for (i, name) in list.into_iter().enumerate() {
                let path = format!("{kind}[{i}].name");
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
                {
                    problem(
                        path,
                        format!(
                            "`{name}` must be letters, digits, `-`, `_` or `.` (it names journal steps)"
                        ),
                    );
                } else if !seen.insert(name) {
                    problem(path, format!("`{name}` is used twice among the {kind}"));
                }
            }
        };
        names(
            "databases",
            self.databases.iter().map(|d| d.name.as_str()).collect(),
            &mut problem,
        );
        names(
            "buckets",
            self.buckets.iter().map(|d| d.name.as_str()).collect(),
            &mut problem,
        );
        names(
            "directories",
            self.directories.iter().map(|d| d.name.as_str()).collect(),
            &mut problem,
        );
        names(
            "identity",
            self.identity.iter().map(|d| d.name.as_str()).collect(),
            &mut problem,
        );
        for (i, db) in self.databases.iter().enumerate() {
            if db.engine == Engine::Mysql {
                mysql_problems(i, db, &mut problem);
            }
            rewrite_problems(i, db, &mut problem);
            let mut sides = vec![("source", &db.source), ("target", &db.target)];
            if let Some(r) = &db.replication {
                sides.push(("replication.publisher", &r.publisher));
                sides.push(("replication.subscriber", &r.subscriber));
                if r.publisher.database != db.source.database {
                    problem(
                        format!("databases[{i}].replication.publisher.database"),
                        format!(
                            "`{}` must be the source's database `{}`",
                            r.publisher.database, db.source.database
                        ),
                    );
                }
                if r.subscriber.database != db.target.database {
                    problem(
                        format!("databases[{i}].replication.subscriber.database"),
                        format!(
                            "`{}` must be the target's database `{}`",
                            r.subscriber.database, db.target.database
                        ),
                    );
                }
            }
            for (side, pg) in sides {
                for (field, value) in [
                    ("host", &pg.host),
                    ("user", &pg.user),
                    ("database", &pg.database),
                ] {
                    if value.is_empty() || value.starts_with('-') {
                        problem(
                            format!("databases[{i}].{side}.{field}"),
                            "must not be empty or start with `-`".into(),
                        );
                    }
                }
                if let Some(user) = &pg.os_user
                    && (user.is_empty()
                        || user.starts_with('-')
                        || user.contains(|c: char| c.is_whitespace() || c == '/' || c == ':'))
                {
                    problem(
                        format!("databases[{i}].{side}.os_user"),
                        format!("`{user}` is not a user name of the machine"),
                    );
                }
                if let Some(file) = &pg.password_file
                    && !file.is_absolute()
                {
                    problem(
                        format!("databases[{i}].{side}.password_file"),
                        "must be an absolute path".into(),
                    );
                }
            }
        }
        for (i, b) in self.buckets.iter().enumerate() {
            for (side, s3) in [("source", &b.source), ("target", &b.target)] {
                if !(s3.endpoint.starts_with("http://") || s3.endpoint.starts_with("https://")) {
                    problem(
                        format!("buckets[{i}].{side}.endpoint"),
                        format!("`{}` must be an http:// or https:// URL", s3.endpoint),
                    );
                }
                if s3.bucket.is_empty() || s3.bucket.contains(['/', ':']) {
                    problem(
                        format!("buckets[{i}].{side}.bucket"),
                        format!("`{}` is not a bucket name", s3.bucket),
                    );
                }
                if !s3.key_file.is_absolute() {
                    problem(
                        format!("buckets[{i}].{side}.key_file"),
                        "must be an absolute path".into(),
                    );
                }
            }
            if b.source.endpoint == b.target.endpoint && b.source.bucket == b.target.bucket {
                problem(
                    format!("buckets[{i}].target"),
                    "is the source bucket itself".into(),
                );
            }
        }
        for (i, d) in self.directories.iter().enumerate() {
            let mut locations = Vec::new();
            for (side, text) in [("source", &d.source), ("target", &d.target)] {
                match Location::parse(text) {
                    Ok(l) => locations.push(l),
                    Err(m) => problem(format!("directories[{i}].{side}"), m),
                }
            }
            if let [Location::Local(a), Location::Local(b)] = locations.as_slice()
                && (a.starts_with(b) || b.starts_with(a))
            {
                problem(
                    format!("directories[{i}].target"),
                    "source and target must not contain one another".into(),
                );
            }
        }
        for (i, s) in self.identity.iter().enumerate() {
            if let Err(m) = Location::parse(&s.source) {
                problem(format!("identity[{i}].source"), m);
            }
            if !s.target.is_absolute() || s.target.starts_with("/nix/store") {
                problem(
                    format!("identity[{i}].target"),
                    "must be an absolute path outside /nix/store".into(),
                );
            }
            if Path::new(&s.source) == s.target {
                problem(
                    format!("identity[{i}].target"),
                    "is the source file itself".into(),
                );
            }
            if let Err(m) = crate::state::mode_bits(&s.mode) {
                problem(format!("identity[{i}].mode"), m);
            }
        }
        let c = &self.commands;
        for (kind, list) in [
            ("freeze", &c.freeze),
            ("start", &c.start),
            ("health", &c.health),
            ("dns_switch", &c.dns_switch),
            ("source_start", &c.source_start),
        ] {
            for (i, argv) in list.iter().enumerate() {
                if argv.first().is_none_or(|p| p.is_empty()) {
                    problem(
                        format!("commands.{kind}[{i}]"),
                        "must be a non-empty argument vector: [\"program\", \"arg\", …]".into(),
                    );
                }
            }
        }
        if c.health_timeout_seconds == 0 {
            problem(
                "commands.health_timeout_seconds".into(),
                "must be at least 1".into(),
            );
        }
        out
    }
}

/// What a URL rewrite may not be: an empty table, column or prefix, or two prefixes one of which begins the
/// other (a rewritten value would begin with `from` again, and a resumed rewrite would change it twice).
fn rewrite_problems(i: usize, db: &DatabaseMove, problem: &mut dyn FnMut(String, String)) {
    for (j, r) in db.url_rewrites.iter().enumerate() {
        for (field, value) in [
            ("table", &r.table),
            ("column", &r.column),
            ("from", &r.from),
            ("to", &r.to),
        ] {
            if value.is_empty() {
                problem(
                    format!("databases[{i}].url_rewrites[{j}].{field}"),
                    "must not be empty".into(),
                );
            }
        }
        if !r.from.is_empty()
            && !r.to.is_empty()
            && (r.from.starts_with(&r.to) || r.to.starts_with(&r.from))
        {
            problem(
                format!("databases[{i}].url_rewrites[{j}].to"),
                format!(
                    "`{}` and `from` `{}` begin one another, so the rewrite could not be repeated safely: give both prefixes up to their differing host, ending in `/`",
                    r.to, r.from
                ),
            );
        }
        // Several rewrites of one column (one per bucket): a value one rewrites must not be another's to rewrite,
        // nor a value two of them claim.
        for (k, other) in db.url_rewrites.iter().enumerate().skip(j + 1) {
            if other.table != r.table || other.column != r.column {
                continue;
            }
            let overlap = |x: &str, y: &str| {
                !x.is_empty() && !y.is_empty() && (x.starts_with(y) || y.starts_with(x))
            };
            if overlap(&r.from, &other.from)
                || overlap(&r.to, &other.from)
                || overlap(&other.to, &r.from)
            {
                problem(
                    format!("databases[{i}].url_rewrites[{k}].from"),
                    format!(
                        "rewrites {j} and {k} of `{}.{}` overlap (`{}` → `{}`, `{}` → `{}`): a value could be rewritten twice; give each bucket's prefix up to the differing bucket or host, ending in `/`",
                        r.table, r.column, r.from, r.to, other.from, other.to
                    ),
                );
            }
        }
    }
}

/// What a MySQL database move may not have: replication (PostgreSQL's logical replication only), or a TCP
/// connection on PostgreSQL's default port (the field's default, so surely not given).
fn mysql_problems(i: usize, db: &DatabaseMove, problem: &mut dyn FnMut(String, String)) {
    if db.replication.is_some() {
        problem(
            format!("databases[{i}].replication"),
            "is PostgreSQL's logical replication; a `mysql` database is dumped and restored after the freeze: remove it".into(),
        );
    }
    for (side, c) in [("source", &db.source), ("target", &db.target)] {
        if !c.host.starts_with('/') && c.port == default_pg_port() {
            problem(
                format!("databases[{i}].{side}.port"),
                format!(
                    "is PostgreSQL's port {}: give the MySQL server's port (usually 3306), or a socket path as `host`",
                    c.port
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> serde_json::Value {
        serde_json::json!({
            "operator": "op",
            "databases": [{"name": "db",
                "source": {"host": "/run/postgresql", "user": "u", "database": "d"},
                "target": {"host": "10.0.0.2", "port": 5433, "user": "u", "database": "d", "password_file": "/run/pw"}}],
            "buckets": [{"name": "media",
                "source": {"endpoint": "https://s3.a", "region": "garage", "bucket": "op-m", "key_file": "/run/a"},
                "target": {"endpoint": "https://s3.b", "region": "garage", "bucket": "op-m", "key_file": "/run/b"}}],
            "directories": [{"name": "data", "source": "ssh://a.example/var/lib/x", "target": "/var/lib/x"}],
            "identity": [{"name": "k", "source": "/mnt/a/k", "target": "/var/lib/x/k", "owner": "x", "group": "x", "mode": "0600"}],
            "commands": {"freeze": [["ssh", "a.example", "systemctl", "stop", "x.target"]]}
        })
    }

    #[test]
    fn a_valid_job_round_trips() {
        let text = job().to_string();
        let parsed = Job::parse(&text, "job.json").unwrap();
        assert_eq!(parsed.databases[0].source.port, 5432);
        assert_eq!(parsed.commands.health_timeout_seconds, 300);
        assert_eq!(Job::parse(&parsed.to_json(), "again").unwrap(), parsed);
    }

    /// A job built in code with `Commands::default()` is as valid as one read from JSON without `commands`:
    /// the same health timeout, never the 0 seconds `Job::problems` refuses.
    #[test]
    fn default_commands_have_the_json_default_health_timeout() {
        assert_eq!(Commands::default().health_timeout_seconds, 300);
        let mut v = job();
        v.as_object_mut().unwrap().remove("commands");
        let parsed = Job::parse(&v.to_string(), "job.json").unwrap();
        assert_eq!(parsed.commands, Commands::default());
        let built = Job {
            commands: Commands::default(),
            ..parsed
        };
        assert!(built.problems().is_empty(), "{:?}", built.problems());
    }

    /// Without `tls`, a connection to a host on the network requires TLS and one over a socket or the loopback
    /// prefers it; the job's mode wins; a job without `tls` keeps its JSON; a mode libpq does not know is
    /// refused.
    #[test]
    fn tls_is_required_across_a_network_unless_the_job_says_otherwise() {
        let parsed = Job::parse(&job().to_string(), "job.json").unwrap();
        assert!(!parsed.to_json().contains("tls"));
        let d = &parsed.databases[0];
        assert_eq!(d.source.tls_mode(), TlsMode::Prefer, "a Unix socket");
        assert_eq!(d.target.tls_mode(), TlsMode::Require, "10.0.0.2");
        for (host, mode) in [
            ("127.0.0.1", TlsMode::Prefer),
            ("::1", TlsMode::Prefer),
            ("[::1]", TlsMode::Prefer),
            ("LOCALHOST", TlsMode::Prefer),
            ("db.provider-a.example", TlsMode::Require),
            ("2001:db8::5", TlsMode::Require),
            ("mastodon-a", TlsMode::Require),
        ] {
            let pg = Postgres {
                host: host.into(),
                ..d.source.clone()
            };
            assert_eq!(pg.tls_mode(), mode, "{host}");
        }
        let mut v = job();
        v["databases"][0]["target"]["tls"] =
            serde_json::json!({"mode": "verify-full", "ca_file": "/etc/ca.pem"});
        let parsed = Job::parse(&v.to_string(), "job.json").unwrap();
        assert_eq!(parsed.databases[0].target.tls_mode(), TlsMode::VerifyFull);
        assert_eq!(parsed.databases[0].target.tls_mode().libpq(), "verify-full");
        assert_eq!(Job::parse(&parsed.to_json(), "again").unwrap(), parsed);
        v["databases"][0]["target"]["tls"] = serde_json::json!({"mode": "allow"});
        assert!(Job::parse(&v.to_string(), "job.json").is_err());
    }

    /// `os_user` is optional: a job without it keeps its JSON (and so its journal's digest) byte for byte; one
    /// with it round-trips; a name that cannot be a user is refused at its path.
    #[test]
    fn os_user_is_optional_and_checked() {
        let text = job().to_string();
        let parsed = Job::parse(&text, "job.json").unwrap();
        assert_eq!(parsed.databases[0].target.os_user, None);
        assert!(!parsed.to_json().contains("os_user"));
        let mut v = job();
        v["databases"][0]["target"]["os_user"] = "mastodon".into();
        let parsed = Job::parse(&v.to_string(), "job.json").unwrap();
        assert_eq!(
            parsed.databases[0].target.os_user.as_deref(),
            Some("mastodon")
        );
        assert_eq!(Job::parse(&parsed.to_json(), "again").unwrap(), parsed);
        for bad in ["", "-u", "a b", "../x", "a:b"] {
            v["databases"][0]["target"]["os_user"] = bad.into();
            let err = Job::parse(&v.to_string(), "job.json")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("databases[0].target.os_user") && err.contains("is not a user name"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_at_its_json_path() {
        let mut v = job();
        v["buckets"][0]["target"] = v["buckets"][0]["source"].clone();
        v["directories"][0]["target"] = "var/lib/x".into();
        v["identity"][0]["mode"] = "0644".into();
        let first = v["identity"][0].clone();
        v["identity"].as_array_mut().unwrap().push(first);
        v["commands"]["start"] = serde_json::json!([[]]);
        let err = Job::parse(&v.to_string(), "job.json").unwrap_err();
        let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "identity[1].name",
                "buckets[0].target",
                "directories[0].target",
                "identity[0].mode",
                "identity[1].mode",
                "commands.start[0]"
            ],
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("invalid migration job job.json:\n  ")
        );
    }

    /// Replication roles are optional (old jobs stay valid and serialise as before), and each must connect to
    /// the database its side moves.
    #[test]
    fn replication_roles_are_optional_and_checked() {
        let parsed = Job::parse(&job().to_string(), "j").unwrap();
        assert!(parsed.databases[0].replication.is_none());
        assert!(!parsed.to_json().contains("replication"));
        let mut v = job();
        v["databases"][0]["replication"] = serde_json::json!({
            "publisher": {"host": "a.example", "user": "replicator", "database": "other", "password_file": "pw"},
            "subscriber": {"host": "/run/postgresql", "user": "postgres", "database": "d"}
        });
        let err = Job::parse(&v.to_string(), "j").unwrap_err();
        let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "databases[0].replication.publisher.database",
                "databases[0].replication.publisher.password_file"
            ],
            "{err}"
        );
        v["databases"][0]["replication"]["publisher"]["database"] = "d".into();
        v["databases"][0]["replication"]["publisher"]["password_file"] = "/run/rep".into();
        let parsed = Job::parse(&v.to_string(), "j").unwrap();
        assert_eq!(Job::parse(&parsed.to_json(), "again").unwrap(), parsed);
    }

    /// The engine is optional (PostgreSQL: old jobs read and serialise as before); a MySQL database may not ask
    /// for replication nor use PostgreSQL's default port over TCP; URL prefixes must not begin one another.
    #[test]
    fn engines_and_url_rewrites_are_checked() {
        let parsed = Job::parse(&job().to_string(), "j").unwrap();
        assert_eq!(parsed.databases[0].engine, Engine::Postgresql);
        assert!(!parsed.to_json().contains("engine") && !parsed.to_json().contains("url_rewrites"));
        let mut v = job();
        v["databases"][0]["engine"] = "mysql".into();
        v["databases"][0]["source"]["host"] = "a.example".into();
        v["databases"][0]["replication"] = serde_json::json!({
            "publisher": {"host": "a.example", "user": "r", "database": "d", "password_file": "/pw"},
            "subscriber": {"host": "/t", "user": "postgres", "database": "d"}
        });
        v["databases"][0]["url_rewrites"] = serde_json::json!([
            {"table": "media", "column": "cdn_url", "from": "https://m.a/b/", "to": "https://m.b/b/"},
            {"table": "media", "column": "x", "from": "https://m.a/", "to": "https://m.a/b/"},
            {"table": "", "column": "x", "from": "https://m.a/", "to": "https://m.b/"}
        ]);
        let err = Job::parse(&v.to_string(), "j").unwrap_err();
        let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "databases[0].replication",
                "databases[0].source.port",
                "databases[0].url_rewrites[1].to",
                "databases[0].url_rewrites[2].table"
            ],
            "{err}"
        );
        v["databases"][0]
            .as_object_mut()
            .unwrap()
            .remove("replication");
        v["databases"][0]["source"]["port"] = 3306.into();
        v["databases"][0]["url_rewrites"]
            .as_array_mut()
            .unwrap()
            .truncate(1);
        let parsed = Job::parse(&v.to_string(), "j").unwrap();
        assert_eq!(parsed.databases[0].engine, Engine::Mysql);
        assert_eq!(Job::parse(&parsed.to_json(), "again").unwrap(), parsed);
    }

    #[test]
    fn a_type_error_is_located() {
        let mut v = job();
        v["databases"][0]["target"]["port"] = "5433".into();
        let err = Job::parse(&v.to_string(), "j").unwrap_err();
        assert_eq!(err.problems[0].path, "databases[0].target.port");
        v["databases"][0]["target"]["port"] = 5433.into();
        v["buckets"][0]["extra"] = 1.into();
        let err = Job::parse(&v.to_string(), "j").unwrap_err();
        assert!(
            err.problems[0].message.contains("unknown field `extra`"),
            "{err}"
        );
    }

    #[test]
    fn locations_are_absolute_or_ssh() {
        assert_eq!(
            Location::parse("ssh://root@h/var/lib/x").unwrap(),
            Location::Ssh {
                host: "root@h".into(),
                path: "/var/lib/x".into()
            }
        );
        for bad in [
            "x",
            "/",
            "/a/../b",
            "ssh://h",
            "ssh://-oProxy=x/a",
            "ssh:///a",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }
}
