//! PostgreSQL: dump at the source (`pg_dump -Fc`), restore at the target (`pg_restore` in one transaction, so a
//! killed restore leaves the target as it was), and what verification compares ([`Fingerprint`]: per table
//! its rows and a checksum of them, sequences, large objects and the schema, computed by each server).
//!
//! The tools are found in `FEDIGEN_PG_BIN` when set (a folder such as `/usr/lib/postgresql/15/bin`), else on
//! PATH. A password is read from the job's `password_file` when a step runs and given to the tool in its
//! environment (`PGPASSWORD`), never on the command line.

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};

use super::exec::{self, ExecError};
use super::job::Postgres;
use crate::io_error::IoError;

/// A PostgreSQL step failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// A tool failed or is missing.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// A password file or dump could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
}

fn tool(name: &str) -> PathBuf {
    match std::env::var_os("FEDIGEN_PG_BIN").filter(|v| !v.is_empty()) {
        Some(dir) => Path::new(&dir).join(name),
        None => PathBuf::from(name),
    }
}

/// A PostgreSQL tool (`pg_dump`, `pg_restore`, `psql`) set up for the connection `pg`: host, port, role, no
/// password prompt, the password (if any) in its environment, and run as `pg.os_user` when the job names one.
/// Every PostgreSQL tool the migration runs is made here, so none can miss the connection's OS user.
///
/// Why an OS user: over a Unix socket NixOS's PostgreSQL authenticates by `peer` (nixpkgs
/// `services.postgresql.authentication`: `local all all peer`), so the tool must run as the OS user named like
/// the role, and `fedigen migrate run` runs as root. Such a tool may not open files in the journal folder
/// (root's, mode 0700): dumps reach it as open files ([`exec::Io`]), never by name.
pub(crate) fn command(name: &str, pg: &Postgres) -> Result<Command, PgError> {
    let mut c = Command::new(tool(name));
    c.arg("--host")
        .arg(&pg.host)
        .arg("--port")
        .arg(pg.port.to_string())
        .arg("--username")
        .arg(&pg.user)
        .arg("--no-password")
        .env("PGCONNECT_TIMEOUT", "15")
        // The job's encryption, never the caller's environment's (a PGSSLMODE=disable left in a shell).
        .env("PGSSLMODE", pg.tls_mode().libpq())
        .env_remove("PGSSLROOTCERT")
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE");
    if let Some(ca) = &pg.tls.ca_file {
        c.env("PGSSLROOTCERT", ca);
    }
    if let Some(file) = &pg.password_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| IoError::new("read the database password from", file, e))?;
        c.env("PGPASSWORD", text.trim_end_matches(['\n', '\r']));
    }
    if let Some(user) = &pg.os_user {
        let missing = |reason: String| ExecError::Missing {
            program: name.to_owned(),
            what: format!("connect to {}", describe(pg)),
            reason,
        };
        let os = exec::os_user(user).ok_or_else(|| {
            missing(format!(
                "the connection's `os_user` is `{user}`, and this machine has no such user: name the OS user of the role's service (on NixOS the application's `services.*.user`), or deploy the target first"
            ))
        })?;
        exec::run_as(&mut c, &os).map_err(missing)?;
    }
    Ok(c)
}

/// The connection `pg` for people: `database D as role R at HOST:PORT`, and the OS user the tools run as.
pub(crate) fn describe(pg: &Postgres) -> String {
    let os = pg.os_user.clone().unwrap_or_else(exec::current_user);
    format!(
        "database {} as role {} at {} port {}, tools run as OS user {os}",
        pg.database, pg.user, pg.host, pg.port
    )
}

/// Runs a tool made by [`command`] for `pg`, with `io`; a refusal the connection's settings explain is said with
/// how to fix it ([`refusal_fix`]).
fn run(c: Command, pg: &Postgres, what: &str, io: exec::Io<'_>) -> Result<exec::Output, PgError> {
    exec::checked_with(c, &format!("{what}: {}", describe(pg)), io).map_err(|e| match e {
        ExecError::Failed {
            program,
            what,
            status,
            output,
        } => match refusal_fix(pg, &output) {
            Some(fix) => PgError::Exec(ExecError::Failed {
                program,
                what,
                status,
                output: format!("{output}\n  {fix}"),
            }),
            None => PgError::Exec(ExecError::Failed {
                program,
                what,
                status,
                output,
            }),
        },
        other => PgError::Exec(other),
    })
}

/// How to fix a refusal by the server at `pg`, from what the tool wrote (`output`): peer or ident authentication
/// (the OS user is not the role), or encryption (TLS required by the job and not offered by the server, or
/// required by the server's pg_hba.conf and turned off by the job).
fn refusal_fix(pg: &Postgres, output: &str) -> Option<String> {
    if output.contains("Peer authentication failed")
        || output.contains("Ident authentication failed")
    {
        let os = pg.os_user.clone().unwrap_or_else(exec::current_user);
        return Some(match &pg.os_user {
            None => format!(
                "the server at {} authenticates local connections by the OS user (pg_hba.conf `peer`, the NixOS default), and the tool ran as `{os}`, not `{}`: set `\"os_user\": \"{}\"` on this connection in the job (the OS user of the role's service; the planner sets it for /run/postgresql), or give the role a password and a `password_file`, then run the same command again",
                pg.host, pg.user, pg.user
            ),
            Some(_) => format!(
                "the server at {} authenticates local connections by the OS user (pg_hba.conf `peer`), and the tool ran as `{os}`, which may not log in as role `{}`: set `os_user` on this connection to the OS user the role maps to (pg_ident.conf, or the same name), then run the same command again",
                pg.host, pg.user
            ),
        });
    }
    if output.contains("could not connect to the publisher") {
        return Some(
            "B's PostgreSQL server connects to A's itself for the subscription, with the job's `replication.publisher` connection (host, port, role, password and `tls.mode` all go into the connection string B's server uses): A's pg_hba.conf must take that role from B's address (over TLS: a `hostssl` line, unless the publisher's `tls.mode` is `disable`); fix the one or the other, then run the same command again".to_owned(),
        );
    }
    if output.contains("server does not support SSL") {
        return Some(format!(
            "the job requires TLS for this connection (`{}`; the default for a host on the network: the database holds the actors' private keys) and the server at {} offers none: turn it on there (NixOS: `services.postgresql.settings.ssl = true` with `ssl_cert_file` and `ssl_key_file`, the key readable by postgres alone) and accept B with a `hostssl` line in pg_hba.conf, then run the same command again; only on a private network the provider vouches for, set `\"tls\": {{ \"mode\": \"disable\" }}` on this connection in the job instead",
            pg.tls_mode().libpq(),
            pg.host
        ));
    }
    if output.contains("no encryption") && output.contains("pg_hba.conf") {
        return Some(format!(
            "the server at {} accepts this role only over TLS (a `hostssl` line), and the job's `tls.mode` for this connection is `{}`: remove it (TLS is the default for a host on the network) or set `require`, then run the same command again",
            pg.host,
            pg.tls_mode().libpq()
        ));
    }
    None
}

/// Dumps `pg` in pg_dump's custom format to `file` (written beside it and renamed: whole or absent).
///
/// Uncompressed (`--compress=0`): the dump is made inside the freeze window and lives only until the restore
/// minutes later on the same machine, and `-Fc`'s default gzip runs single-threaded in pg_dump — it was most of
/// the window (issue #16's benchmark: 107 s of a 219 s window for a 1 GB database). The file is kept (not a
/// pipe into pg_restore) because the journal's resume relies on it: a run killed during the restore restores
/// the same file again without dumping again.
pub fn dump(pg: &Postgres, file: &Path) -> Result<(), PgError> {
    dump_with(pg, file, &[])
}

/// [`dump`] with more pg_dump options (`--schema-only` for the replicated path's schema).
pub(crate) fn dump_with(pg: &Postgres, file: &Path, options: &[&str]) -> Result<(), PgError> {
    let tmp = file.with_extension("dump.partial");
    let _ = std::fs::remove_file(&tmp);
    // Opened here (mode 0600) and given to pg_dump as its output: it may run as another user (`os_user`).
    // A regular file is seekable, so the archive still gets its table of contents with data offsets.
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| IoError::new("create", &tmp, e))?;
    let mut c = command("pg_dump", pg)?;
    c.args(options)
        .arg("--format=custom")
        .arg("--compress=0")
        .arg(&pg.database);
    let io = exec::Io {
        stdout: Some(out),
        ..exec::Io::default()
    };
    run(c, pg, "dump", io)?;
    std::fs::rename(&tmp, file).map_err(|e| IoError::new("replace", file, e))?;
    Ok(())
}

/// The dump `file`, opened for a tool's standard input.
fn open_dump(file: &Path) -> Result<exec::Stdin<'static>, PgError> {
    let f = std::fs::File::open(file).map_err(|e| IoError::new("read", file, e))?;
    Ok(exec::Stdin::File(f))
}

/// Restores the dump `file` into `pg`, replacing what is there, in one transaction: objects become the
/// connecting role's (the application's), privileges are left to the target's module.
///
/// Extensions the target database already has are left out of the restore (their `CREATE`, their `--clean`
/// `DROP` and their `COMMENT`): there they are usually a superuser's, created by the target's module (PeerTube's
/// `pg_trgm` and `unaccent`), and only their owner may drop or comment on them. The others are created by the
/// restore, which the application's role may do for trusted extensions; [`missing_extensions`] refuses the rest
/// before the freeze.
pub fn restore(pg: &Postgres, file: &Path) -> Result<(), PgError> {
    empty(pg)?;
    let present = extensions(pg)?;
    // The dump and the list reach pg_restore as open files (standard input, fd 3): it may run as another user
    // (`os_user`), which may not open the journal folder. Standard input is the dump file itself, seekable, so
    // pg_restore reads it as it would by name (only `--jobs` needs a name, and it is not used).
    let mut list = command("pg_restore", pg)?;
    list.arg("--list");
    let toc = run(
        list,
        pg,
        "read the dump",
        exec::Io {
            stdin: open_dump(file)?,
            ..exec::Io::default()
        },
    )?;
    let list_text = without_extensions(&String::from_utf8_lossy(&toc.stdout), &present);
    let mut c = command("pg_restore", pg)?;
    c.args([
        "--single-transaction",
        "--exit-on-error",
        "--clean",
        "--if-exists",
        "--no-owner",
        "--no-privileges",
        "--use-list=/dev/fd/3",
    ])
    .arg("--dbname")
    .arg(&pg.database);
    run(
        c,
        pg,
        "restore",
        exec::Io {
            stdin: open_dump(file)?,
            stdout: None,
            fd3: Some(list_text.as_bytes()),
            fd3_owner: pg
                .os_user
                .as_deref()
                .and_then(exec::os_user)
                .map(|u| (u.uid, u.gid)),
        },
    )?;
    Ok(())
}

/// What [`empty`] runs: drops, in the connected database, every object the connecting role owns that is not
/// part of an extension — its schemas but `public` (with what they hold), then tables, views, materialized
/// views, sequences, routines and types in the others — and nothing of another role's.
const EMPTY_SQL: &str = r#"
DO $fedigen$
DECLARE
  me oid := (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user);
  r record;
BEGIN
  FOR r IN
    SELECT n.nspname FROM pg_catalog.pg_namespace n
    WHERE n.nspowner = me AND n.nspname <> 'public' AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_namespace'::regclass AND d.objid = n.oid AND d.deptype = 'e')
  LOOP
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', r.nspname);
  END LOOP;
  FOR r IN
    SELECT c.oid::regclass::text AS name, c.relkind FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relowner = me AND c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S')
      AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
    ORDER BY c.relkind = 'S', c.oid
  LOOP
    IF to_regclass(r.name) IS NOT NULL THEN
      EXECUTE format('DROP %s %s CASCADE',
        CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
        r.name);
    END IF;
  END LOOP;
  FOR r IN
    SELECT p.oid::regprocedure::text AS name FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE p.proowner = me AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
  LOOP
    EXECUTE format('DROP ROUTINE IF EXISTS %s CASCADE', r.name);
  END LOOP;
  FOR r IN
    SELECT t.oid::regtype::text AS name, t.typtype FROM pg_catalog.pg_type t
    JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
    WHERE t.typowner = me AND t.typtype IN ('e', 'd', 'r', 'm', 'c')
      AND (t.typrelid = 0 OR (SELECT relkind FROM pg_catalog.pg_class WHERE oid = t.typrelid) = 'c')
      AND n.nspname NOT LIKE 'pg\_%' AND n.nspname <> 'information_schema'
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
  LOOP
    IF to_regtype(r.name) IS NOT NULL THEN
      EXECUTE format('DROP %s %s CASCADE', CASE r.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, r.name);
    END IF;
  END LOOP;
END
$fedigen$;
"#;

/// Empties `pg`'s database of the connecting role's objects before a restore.
///
/// Why: B is deployed before the move, so its application has already run its migrations there, and may have
/// made objects A's dump does not have (a newer version's table, type or routine). `pg_restore --clean` drops
/// only what the dump holds, so those would stay beside A's data: what the application finds is then neither
/// A's schema nor B's, and the verification's schema digest differs. Not `DROP OWNED BY`: it also revokes the
/// role's privileges on objects it does not own (the `public` schema, granted by NixOS's `ensurePermissions`),
/// after which the restore cannot create anything; extensions' objects (a superuser's, or the role's trusted
/// ones) are kept, as the restore leaves present extensions alone.
pub fn empty(pg: &Postgres) -> Result<(), PgError> {
    psql_script(pg, EMPTY_SQL).map(drop)
}

/// `pg_restore --list` output with the entries of the extensions in `skip` (`EXTENSION - name` and `COMMENT -
/// EXTENSION name`) commented out.
fn without_extensions(toc: &str, skip: &[String]) -> String {
    let mut out = String::with_capacity(toc.len());
    for line in toc.lines() {
        // `ID; OID OID DESC SCHEMA NAME OWNER`: an extension's schema is `-` and its owner empty.
        let entry = line
            .split_once("; ")
            .filter(|(id, _)| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|(_, rest)| rest.splitn(3, ' ').nth(2))
            .map(str::trim_end);
        let drop = entry.is_some_and(|e| {
            skip.iter().any(|name| {
                e == format!("EXTENSION - {name}") || e == format!("COMMENT - EXTENSION {name}")
            })
        });
        if drop {
            out.push_str("; ");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The extensions of `pg`'s database, by name (`plpgsql`, in every database, left out).
pub fn extensions(pg: &Postgres) -> Result<Vec<String>, PgError> {
    let text = psql(
        pg,
        "SELECT extname FROM pg_catalog.pg_extension WHERE extname <> 'plpgsql' ORDER BY 1",
    )?;
    Ok(text
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Every reason the dump of `source` cannot be restored at `target` as it is, each a sentence naming the
/// cause and the fix (empty when it can): the database's encoding, collation and character type differ (a
/// restore would fail on characters the target cannot hold, or leave indexes sorted another way; Synapse
/// refuses to start on a database whose collation is not `C`), or an extension is missing
/// ([`missing_extensions`]). Read-only at both sides.
pub fn restore_problems(source: &Postgres, target: &Postgres) -> Result<Vec<String>, PgError> {
    let query = "SELECT pg_catalog.pg_encoding_to_char(encoding), datcollate, datctype FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()";
    let (a, b) = (psql(source, query)?, psql(target, query)?);
    let mut out = Vec::new();
    let fields = |t: &str| {
        t.trim_end()
            .split('\t')
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let (a, b) = (fields(&a), fields(&b));
    for (i, what) in [
        "encoding",
        "collation (LC_COLLATE)",
        "character type (LC_CTYPE)",
    ]
    .iter()
    .enumerate()
    {
        if let (Some(x), Some(y)) = (a.get(i), b.get(i))
            && x != y
        {
            out.push(format!(
                "database {} has the {what} `{x}` at the source and `{y}` at the target: create the target database as the source's (CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING '{}' LC_COLLATE '{}' LC_CTYPE '{}'), then run the same command again",
                source.database,
                target.database,
                target.user,
                a[0],
                a.get(1).map_or("", String::as_str),
                a.get(2).map_or("", String::as_str),
            ));
        }
    }
    out.extend(version_problems(
        &source.database,
        server_major(source)?,
        server_major(target)?,
        client_major()?,
    ));
    out.extend(missing_extensions(source, target)?);
    Ok(out)
}

/// The major version of the server `pg` reaches (`server_version_num` 150008 is 15).
fn server_major(pg: &Postgres) -> Result<u32, PgError> {
    let text = psql(pg, "SHOW server_version_num")?;
    text.trim().parse::<u32>().map(|n| n / 10_000).map_err(|e| {
        PgError::Io(IoError::new(
            "read the server version of",
            describe(pg),
            std::io::Error::other(format!("`{}`: {e}", text.trim())),
        ))
    })
}

/// The major version of the `pg_dump` the migration runs (`pg_dump (PostgreSQL) 15.8 (Debian …)` is 15), if it
/// says one.
fn client_major() -> Result<Option<u32>, PgError> {
    let mut c = Command::new(tool("pg_dump"));
    c.arg("--version");
    let out = exec::checked(c, "read pg_dump's version")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|w| w.starts_with(|ch: char| ch.is_ascii_digit()))
        .and_then(|w| w.split(['.', 'b', 'r']).next()?.parse().ok()))
}

/// Why the versions forbid the move of `database`, one sentence each with the fix (empty when they allow it):
/// `pg_dump` refuses a server of a newer major version than its own ("aborting because of server version
/// mismatch"), and a dump is restored into the same or a newer major version only (an older server may not know
/// what the dump creates). Checked before the freeze, so the refusal never comes inside the window.
pub(crate) fn version_problems(
    database: &str,
    source: u32,
    target: u32,
    client: Option<u32>,
) -> Vec<String> {
    let mut out = Vec::new();
    if target < source {
        out.push(format!(
            "database {database}: the target's PostgreSQL is {target}, older than the source's {source}: a dump restores into the same or a newer major version only; deploy B with PostgreSQL {source} or newer (services.postgresql.package), then run the same command again"
        ));
    }
    if let Some(client) = client
        && client < source
    {
        out.push(format!(
            "database {database}: this machine's pg_dump is PostgreSQL {client}'s, older than the source's server ({source}), and pg_dump refuses a newer server: install PostgreSQL {source}'s client tools (or newer) and name their folder in FEDIGEN_PG_BIN, then run the same command again"
        ));
    }
    out
}

/// Why the restore at `target` could not create an extension `source` uses: one sentence per extension, naming
/// it and saying how to fix it (empty when the restore can run).
///
/// Why before the freeze: `CREATE EXTENSION` of an untrusted extension needs a superuser, which the
/// application's role is not; found at the restore step, it would stop the migration with the source frozen.
pub fn missing_extensions(source: &Postgres, target: &Postgres) -> Result<Vec<String>, PgError> {
    let wanted = extensions(source)?;
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let names = wanted
        .iter()
        .map(|n| quote_literal(n))
        .collect::<Vec<_>>()
        .join(", ");
    // name, present in the database, installed on the server, trusted (any version), the role a superuser.
    let query = format!(
        "SELECT w.name,
                EXISTS (SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname = w.name),
                EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions a WHERE a.name = w.name),
                COALESCE((SELECT bool_or(v.trusted) FROM pg_catalog.pg_available_extension_versions v
                          WHERE v.name = w.name), false),
                (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
         FROM unnest(ARRAY[{names}]::text[]) AS w(name) ORDER BY 1"
    );
    let mut out = Vec::new();
    for line in psql(target, &query)?.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [name, present, available, trusted, superuser] = f[..] else {
            continue;
        };
        if present == "t" || (available == "t" && (trusted == "t" || superuser == "t")) {
            continue;
        }
        let fix = format!(
            "create it there as a superuser (`CREATE EXTENSION \"{name}\";` in database {db}; on NixOS in the application's module or services.postgresql.initialScript), then run the same command again",
            db = target.database
        );
        out.push(if available == "t" {
            format!(
                "database {} at the source uses the extension `{name}`, which only a superuser can create, and the target's role `{}` is none: {fix}",
                source.database, target.user
            )
        } else {
            format!(
                "database {} at the source uses the extension `{name}`, which the target's PostgreSQL does not have installed (on NixOS: services.postgresql.extensions); then {fix}",
                source.database
            )
        });
    }
    Ok(out)
}

/// What verification compares of a database, computed by the server (nothing of the data is transferred):
/// per table its rows and a checksum of their contents, each sequence's value, the large objects, and a digest
/// of the schema.
///
/// Why not a digest of a second full dump of each side (as before issue #16's benchmark): that moved and
/// hashed the whole database twice inside the freeze window (49–70 s for 1 GB). The checksum of a table is
/// the sum of a 64-bit hash of each row's text (`hashtextextended`, PostgreSQL's own, the same on servers of
/// the same byte order), so it does not depend on the order the rows are stored in and a changed, missing or
/// extra row changes it. Why not the MD5 of each row's text (until the replicated path made verification most
/// of the freeze window): the same scan took 3.5 times as long (3.8–4.2 s against 1.0–1.2 s for a 197 MB table
/// here), spent turning each MD5 into numbers. Why the row's text and not `hash_record_extended` (faster
/// still): its hashes follow each type's equality, not its value (`1.0` and `1.00` hash alike), and some types
/// (`json`) have none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint {
    /// `schema.table` → (rows, checksum of the rows).
    pub tables: BTreeMap<String, (u64, String)>,
    /// `schema.sequence` → its last value (`unset` before its first use).
    pub sequences: BTreeMap<String, String>,
    /// The large objects: how many, and a checksum of their numbers and contents.
    pub large_objects: (u64, String),
    /// SHA-256 of `pg_dump --schema-only --no-owner --no-privileges` without comments.
    pub schema: String,
}

/// `count(*)` and the sum of the two 64-bit halves of the MD5 (hex, the column `h`) over the rows, the latter
/// as `high:low` numeric text: the large objects' checksum (few, and their contents are hashed by MD5 first).
const CHECKSUM: &str = "count(*), coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0) || ':' || coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0)";

/// `count(*)` and the sum (numeric, exact) of the 64-bit hash of each row's text, for the table alias `r`.
pub(crate) const ROW_CHECKSUM: &str =
    "count(*), coalesce(sum(pg_catalog.hashtextextended(r::text, 0)), 0)::text";

/// How many connections one side's fingerprint uses at most: the machine's cores (the hashing is the server's
/// CPU; on one machine with both servers, more would only queue).
pub(crate) fn connections() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

/// SHA-256 of `pg_dump --schema-only --no-owner --no-privileges` of `pg`'s database, without comments.
pub(crate) fn schema_digest(pg: &Postgres) -> Result<String, PgError> {
    let mut c = command("pg_dump", pg)?;
    c.args(["--schema-only", "--no-owner", "--no-privileges"])
        .arg(&pg.database);
    let dump = run(c, pg, "dump the schema", exec::Io::default())?;
    Ok(digest_without_comments(&dump.stdout))
}

/// Pages of a table read by one query: from, and up to (exclusive; `None`: to the end).
type PageRange = (u64, Option<u64>);

/// One query of a fingerprint: some whole tables, or a range of one table's pages.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unit {
    /// (table, its page range) — `None`: the whole table.
    parts: Vec<(String, Option<PageRange>)>,
    /// Bytes it reads, for the order.
    bytes: u64,
}

/// Splits the tables (name, bytes, pages) into about `connections` equal shares of bytes: a table larger than a
/// share is cut into ranges of its pages (each row is in exactly one: the last range is open-ended); the smaller
/// ones are packed together. Largest first, so the pool ends together.
fn units(tables: &[(String, u64, u64)], connections: usize) -> Vec<Unit> {
    let total: u64 = tables.iter().map(|t| t.1).sum();
    let share = (total / connections.max(1) as u64).max(8 << 20);
    let mut out = Vec::new();
    let mut small = Unit {
        parts: Vec::new(),
        bytes: 0,
    };
    for (name, bytes, pages) in tables {
        if *bytes > share && *pages > 1 {
            let n = bytes
                .div_ceil(share)
                .min(*pages)
                .min(connections.max(1) as u64);
            let step = pages.div_ceil(n);
            for i in 0..n {
                let from = i * step;
                let to = (i + 1 < n).then_some((i + 1) * step);
                out.push(Unit {
                    parts: vec![(name.clone(), Some((from, to)))],
                    bytes: bytes / n,
                });
            }
            continue;
        }
        if small.bytes + bytes > share && !small.parts.is_empty() {
            out.push(std::mem::replace(
                &mut small,
                Unit {
                    parts: Vec::new(),
                    bytes: 0,
                },
            ));
        }
        small.parts.push((name.clone(), None));
        small.bytes += bytes;
    }
    if !small.parts.is_empty() {
        out.push(small);
    }
    out.sort_by_key(|u| std::cmp::Reverse(u.bytes));
    out
}

/// The SQL of one [`Unit`]: per part, the table's name, its rows and the sum of their hashes.
fn unit_query(unit: &Unit) -> String {
    unit.parts
        .iter()
        .map(|(t, range)| {
            let filter = match range {
                None => String::new(),
                Some((from, None)) => format!(" WHERE r.ctid >= '({from},0)'::tid"),
                Some((from, Some(to))) => {
                    format!(" WHERE r.ctid >= '({from},0)'::tid AND r.ctid < '({to},0)'::tid")
                }
            };
            format!(
                "SELECT {}, {ROW_CHECKSUM} FROM {t} AS r{filter}",
                quote_literal(t)
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// The [`Fingerprint`] without its schema: tables, sequences, large objects, on up to `connections`
/// connections at once (tables, and ranges of a large table's pages, in parallel; the sums of the parts are
/// the table's sum, so the result does not depend on how it was cut).
///
/// Why in parallel: inside the freeze window the target's side is what the window waits for, and one
/// connection hashes on one core.
pub(crate) fn data_fingerprint(pg: &Postgres, connections: usize) -> Result<Fingerprint, PgError> {
    let listing = psql(
        pg,
        "SELECT format('%I.%I', schemaname, relname), pg_catalog.pg_table_size(relid), pg_catalog.pg_relation_size(relid) / current_setting('block_size')::bigint FROM pg_catalog.pg_stat_user_tables ORDER BY 1",
    )?;
    let tables: Vec<(String, u64, u64)> = listing
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            match f[..] {
                [name, bytes, pages] => Some((
                    name.to_owned(),
                    bytes.trim().parse().unwrap_or(0),
                    pages.trim().parse().unwrap_or(0),
                )),
                _ => None,
            }
        })
        .collect();
    let queue = std::sync::Mutex::new(units(&tables, connections).into_iter());
    let sums = std::sync::Mutex::new(BTreeMap::<String, (u64, i128)>::new());
    for (name, ..) in &tables {
        sums.lock()
            .expect("not poisoned")
            .insert(name.clone(), (0, 0));
    }
    let worker = || -> Result<(), PgError> {
        loop {
            let Some(unit) = queue.lock().expect("not poisoned").next() else {
                return Ok(());
            };
            let text = psql(pg, &unit_query(&unit))?;
            let mut sums = sums.lock().expect("not poisoned");
            for line in text.lines() {
                let f: Vec<&str> = line.split('\t').collect();
                if let [table, n, sum] = f[..] {
                    let entry = sums.entry(table.to_owned()).or_default();
                    entry.0 = entry.0.saturating_add(n.trim().parse().unwrap_or(u64::MAX));
                    entry.1 = entry
                        .1
                        .wrapping_add(sum.trim().parse().unwrap_or(i128::MAX));
                }
            }
        }
    };
    let mut out = Fingerprint::default();
    let results = std::thread::scope(|scope| {
        let workers: Vec<_> = (1..connections.max(1))
            .map(|_| scope.spawn(worker))
            .collect();
        let rest = sequences_and_large_objects(pg);
        let mine = worker();
        let others: Vec<_> = workers
            .into_iter()
            .map(|w| w.join().expect("a fingerprint thread panicked"))
            .collect();
        (rest, mine, others)
    });
    let (rest, mine, others) = results;
    mine?;
    for r in others {
        r?;
    }
    let (sequences, large_objects) = rest?;
    out.tables = sums
        .into_inner()
        .expect("not poisoned")
        .into_iter()
        .map(|(t, (n, sum))| (t, (n, sum.to_string())))
        .collect();
    out.sequences = sequences;
    out.large_objects = large_objects;
    Ok(out)
}

/// The sequences' values and the large objects' count and checksum.
#[allow(clippy::type_complexity)]
fn sequences_and_large_objects(
    pg: &Postgres,
) -> Result<(BTreeMap<String, String>, (u64, String)), PgError> {
    let mut sequences = BTreeMap::new();
    for line in psql(
        pg,
        "SELECT format('%I.%I', schemaname, sequencename), coalesce(last_value::text, 'unset') FROM pg_catalog.pg_sequences ORDER BY 1",
    )?
    .lines()
    {
        if let Some((name, value)) = line.split_once('\t') {
            sequences.insert(name.to_owned(), value.to_owned());
        }
    }
    let lo = psql(
        pg,
        &format!(
            "SELECT {CHECKSUM} FROM (SELECT md5(oid::text || ':' || md5(lo_get(oid))) AS h FROM pg_catalog.pg_largeobject_metadata) AS s"
        ),
    )?;
    let large_objects = match lo.trim_end().split_once('\t') {
        Some((n, sum)) => (n.parse().unwrap_or(u64::MAX), sum.to_owned()),
        None => (0, String::new()),
    };
    Ok((sequences, large_objects))
}

/// Every difference between the source's fingerprint `a` and the target's `b`, one line each.
pub fn differences(a: &Fingerprint, b: &Fingerprint) -> Vec<String> {
    let mut out = table_differences(&a.tables, &b.tables);
    for (seq, v) in &a.sequences {
        match b.sequences.get(seq) {
            None => out.push(format!("sequence {seq}: only at the source")),
            Some(w) if w != v => out.push(format!(
                "sequence {seq}: last value {v} at the source, {w} at the target"
            )),
            Some(_) => {}
        }
    }
    for seq in b.sequences.keys().filter(|s| !a.sequences.contains_key(*s)) {
        out.push(format!("sequence {seq}: only at the target"));
    }
    if a.large_objects.0 != b.large_objects.0 {
        out.push(format!(
            "large objects: {} at the source, {} at the target",
            a.large_objects.0, b.large_objects.0
        ));
    } else if a.large_objects.1 != b.large_objects.1 {
        out.push(format!(
            "large objects: {} on both sides, but their numbers or contents differ",
            a.large_objects.0
        ));
    }
    if a.schema != b.schema {
        out.push("the schemas differ: compare `pg_dump --schema-only --no-owner --no-privileges` of both".into());
    }
    out
}

/// SHA-256 (hex) of a plain dump without its comment lines and the random `\restrict` key lines PostgreSQL
/// 15.14 and later write: equal for two databases with the same schema.
fn digest_without_comments(dump: &[u8]) -> String {
    let mut hasher = Sha256::new();
    for line in dump.split(|b| *b == b'\n') {
        if line.starts_with(b"--")
            || line.starts_with(b"\\restrict")
            || line.starts_with(b"\\unrestrict")
        {
            continue;
        }
        hasher.update(line);
        hasher.update(b"\n");
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs `query` (one statement, or several in one implicit transaction) in `pg`'s database; returns the rows,
/// one a line, fields separated by tabs.
pub(crate) fn psql(pg: &Postgres, query: &str) -> Result<String, PgError> {
    psql_run(pg, Some(query), None)
}

/// Runs the SQL `script` read from psql's standard input (each statement on its own unless the script says
/// `BEGIN`), stopping at the first error: for statements that hold a password or are too long for a command
/// line, or that may not run in a transaction block (`CREATE SUBSCRIPTION`).
pub(crate) fn psql_script(pg: &Postgres, script: &str) -> Result<String, PgError> {
    psql_run(pg, None, Some(script))
}

fn psql_run(pg: &Postgres, query: Option<&str>, script: Option<&str>) -> Result<String, PgError> {
    let mut c = command("psql", pg)?;
    c.args([
        "--no-psqlrc",
        "--tuples-only",
        "--no-align",
        "--field-separator=\t",
        "--set=ON_ERROR_STOP=1",
    ])
    .arg("--dbname")
    .arg(&pg.database);
    if let Some(query) = query {
        c.arg("--command").arg(query);
    }
    let io = exec::Io {
        stdin: script.map_or(exec::Stdin::Closed, |s| exec::Stdin::Bytes(s.as_bytes())),
        ..exec::Io::default()
    };
    let out = run(c, pg, "query", io)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `s` as an SQL string literal.
pub(crate) fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Each table's difference between two servers' per-table row counts and checksums (`a` the source's), one
/// line each: what PostgreSQL's and MySQL's fingerprints share.
pub(crate) fn table_differences(
    a: &std::collections::BTreeMap<String, (u64, String)>,
    b: &std::collections::BTreeMap<String, (u64, String)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (table, (n, sum)) in a {
        match b.get(table) {
            None => out.push(format!("table {table}: only at the source ({n} rows)")),
            Some((m, _)) if m != n => out.push(format!(
                "table {table}: {n} rows at the source, {m} at the target"
            )),
            Some((_, other)) if other != sum => out.push(format!(
                "table {table}: {n} rows on both sides, but their contents differ"
            )),
            Some(_) => {}
        }
    }
    for (table, (m, _)) in b.iter().filter(|(t, _)| !a.contains_key(*t)) {
        out.push(format!("table {table}: only at the target ({m} rows)"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// However the tables are cut for the connections, every row is read exactly once: each table is in
        /// one unit whole, or in ranges of its pages that start at page 0, follow each other without a gap or an
        /// overlap and end open (rows past the pages counted when listed are read too); and no more units run
        /// at once than there are connections per table.
        #[test]
        fn units_read_every_row_exactly_once(
            tables in proptest::collection::vec((0u64..(1 << 32), 0u64..200_000), 0..12),
            connections in 1usize..9,
        ) {
            let tables: Vec<(String, u64, u64)> = tables
                .into_iter()
                .enumerate()
                .map(|(i, (bytes, pages))| (format!("public.t{i}"), bytes, pages))
                .collect();
            let units = units(&tables, connections);
            for (name, ..) in &tables {
                let mut parts: Vec<Option<(u64, Option<u64>)>> = units
                    .iter()
                    .flat_map(|u| u.parts.iter())
                    .filter(|(t, _)| t == name)
                    .map(|(_, r)| *r)
                    .collect();
                if parts == [None] {
                    continue;
                }
                prop_assert!(parts.iter().all(Option::is_some), "{name} both whole and cut: {parts:?}");
                prop_assert!(parts.len() <= connections, "{name} cut in {} for {connections}", parts.len());
                parts.sort();
                let mut next = 0;
                for (i, part) in parts.iter().enumerate() {
                    let (from, to) = part.unwrap();
                    prop_assert_eq!(from, next, "{} ranges {:?}", name, parts);
                    match to {
                        Some(to) => {
                            prop_assert!(to > from && i + 1 < parts.len(), "{} ranges {:?}", name, parts);
                            next = to;
                        }
                        None => prop_assert_eq!(i + 1, parts.len(), "{} ranges {:?}", name, parts),
                    }
                }
            }
            // Each unit's query names only tables of the listing, each range with its page bounds.
            for unit in &units {
                let query = unit_query(unit);
                prop_assert_eq!(query.matches("SELECT ").count(), unit.parts.len());
            }
        }
    }

    /// An `os_user` this machine does not have stops the tool before it runs, saying which connection and how
    /// to fix it (an environment problem: exit 3).
    #[test]
    fn a_missing_os_user_is_named_with_its_connection() {
        let pg = Postgres {
            host: "/run/postgresql".into(),
            port: 5432,
            user: "mastodon".into(),
            database: "mastodon".into(),
            password_file: None,
            os_user: Some("fedigen-no-such-user".into()),
            tls: Default::default(),
        };
        let Err(PgError::Exec(e @ ExecError::Missing { .. })) = command("psql", &pg) else {
            panic!("a missing user was accepted");
        };
        let text = e.to_string();
        assert!(
            text.contains("database mastodon as role mastodon at /run/postgresql port 5432")
                && text.contains(
                    "`os_user` is `fedigen-no-such-user`, and this machine has no such user"
                ),
            "{text}"
        );
    }

    #[test]
    fn extensions_present_at_the_target_are_left_out_of_the_restore_list() {
        let toc = ";\n; Archive created at 2026-11-28\n;\n2; 3079 16387 EXTENSION - pg_trgm \n3422; 0 0 COMMENT - EXTENSION pg_trgm \n4; 3079 16475 EXTENSION - uuid-ossp \n3423; 0 0 COMMENT - EXTENSION uuid-ossp \n220; 1259 16507 TABLE public pg_trgm app\n221; 1259 16508 TABLE public EXTENSION app\n";
        let out = without_extensions(toc, &["pg_trgm".into()]);
        let kept: Vec<&str> = out.lines().filter(|l| !l.starts_with(';')).collect();
        assert_eq!(
            kept,
            [
                "4; 3079 16475 EXTENSION - uuid-ossp ",
                "3423; 0 0 COMMENT - EXTENSION uuid-ossp ",
                "220; 1259 16507 TABLE public pg_trgm app",
                "221; 1259 16508 TABLE public EXTENSION app",
            ]
        );
        assert_eq!(out.lines().count(), toc.lines().count());
    }
}

#[cfg(test)]
mod version_tests {
    use super::version_problems;

    /// Same or newer at B with a client as new as A's server: nothing; an older B, or an older pg_dump, each
    /// refused with the versions and the fix; an unreadable client version checks the servers only.
    #[test]
    fn versions_allow_a_move_to_the_same_or_a_newer_server_with_a_new_enough_pg_dump() {
        assert!(version_problems("app", 15, 15, Some(15)).is_empty());
        assert!(version_problems("app", 14, 16, Some(16)).is_empty());
        let older_b = version_problems("app", 16, 15, Some(16));
        assert_eq!(older_b.len(), 1, "{older_b:?}");
        assert!(
            older_b[0].contains("is 15, older than the source's 16")
                && older_b[0].contains("services.postgresql.package")
        );
        let older_client = version_problems("app", 16, 16, Some(15));
        assert_eq!(older_client.len(), 1, "{older_client:?}");
        assert!(
            older_client[0].contains("pg_dump is PostgreSQL 15's")
                && older_client[0].contains("FEDIGEN_PG_BIN")
        );
        assert_eq!(version_problems("app", 17, 15, Some(15)).len(), 2);
        assert!(version_problems("app", 15, 15, None).is_empty());
    }
}
