//! PostgreSQL: dump at the source (`pg_dump -Fc`), restore at the target (`pg_restore` in one transaction, so a
//! killed restore leaves the target as it was), and what verification compares ([`Fingerprint`]: per table
//! its rows and a checksum of them, sequences, large objects and the schema, computed by each server).
//!
//! The tools are found in `FEDIGEN_PG_BIN` when set (a folder such as `/usr/lib/postgresql/15/bin`), else on
//! PATH. A password is read from the job's `password_file` when a step runs and given to the tool in its
//! environment (`PGPASSWORD`), never on the command line.

use std::collections::BTreeMap;
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
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE");
    if let Some(file) = &pg.password_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| IoError::new("read the database password from", file, e))?;
        c.env("PGPASSWORD", text.trim_end_matches(['\n', '\r']));
    }
    Ok(c)
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
    let mut c = command("pg_dump", pg)?;
    c.args(options)
        .arg("--format=custom")
        .arg("--compress=0")
        .arg("--file")
        .arg(&tmp)
        .arg(&pg.database);
    exec::checked(c, &format!("dump database {}", pg.database))?;
    std::fs::rename(&tmp, file).map_err(|e| IoError::new("replace", file, e))?;
    Ok(())
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
    let present = extensions(pg)?;
    let mut list = command("pg_restore", pg)?;
    list.arg("--list").arg(file);
    let toc = exec::checked(list, &format!("read the dump of database {}", pg.database))?;
    let list_file = file.with_extension("list");
    std::fs::write(
        &list_file,
        without_extensions(&String::from_utf8_lossy(&toc.stdout), &present),
    )
    .map_err(|e| IoError::new("write", &list_file, e))?;
    let mut c = command("pg_restore", pg)?;
    c.args([
        "--single-transaction",
        "--exit-on-error",
        "--clean",
        "--if-exists",
        "--no-owner",
        "--no-privileges",
    ])
    .arg("--use-list")
    .arg(&list_file)
    .arg("--dbname")
    .arg(&pg.database)
    .arg(file);
    exec::checked(c, &format!("restore database {}", pg.database))?;
    Ok(())
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
    out.extend(missing_extensions(source, target)?);
    Ok(out)
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

/// The [`Fingerprint`] of `pg`'s database. Read-only.
pub fn fingerprint(pg: &Postgres) -> Result<Fingerprint, PgError> {
    // The schema's dump runs while the server hashes the tables.
    let (rest, schema) = super::exec::both(|| data_fingerprint(pg), || schema_digest(pg));
    let mut out = rest?;
    out.schema = schema?;
    Ok(out)
}

/// SHA-256 of `pg_dump --schema-only --no-owner --no-privileges` of `pg`'s database, without comments.
fn schema_digest(pg: &Postgres) -> Result<String, PgError> {
    let mut c = command("pg_dump", pg)?;
    c.args(["--schema-only", "--no-owner", "--no-privileges"])
        .arg(&pg.database);
    let dump = exec::checked(c, &format!("dump the schema of database {}", pg.database))?;
    Ok(digest_without_comments(&dump.stdout))
}

/// The [`Fingerprint`] without its schema: tables, sequences, large objects.
fn data_fingerprint(pg: &Postgres) -> Result<Fingerprint, PgError> {
    let mut out = Fingerprint::default();
    let tables = psql(
        pg,
        "SELECT format('%I.%I', schemaname, relname) FROM pg_catalog.pg_stat_user_tables ORDER BY 1",
    )?;
    let names: Vec<&str> = tables.lines().filter(|l| !l.is_empty()).collect();
    if !names.is_empty() {
        let query = names
            .iter()
            .map(|t| format!("SELECT {}, {ROW_CHECKSUM} FROM {t} AS r", quote_literal(t)))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        for line in psql(pg, &query)?.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if let [table, n, sum] = f[..] {
                out.tables.insert(
                    table.to_owned(),
                    (n.trim().parse().unwrap_or(u64::MAX), sum.to_owned()),
                );
            }
        }
    }
    for line in psql(
        pg,
        "SELECT format('%I.%I', schemaname, sequencename), coalesce(last_value::text, 'unset') FROM pg_catalog.pg_sequences ORDER BY 1",
    )?
    .lines()
    {
        if let Some((name, value)) = line.split_once('\t') {
            out.sequences.insert(name.to_owned(), value.to_owned());
        }
    }
    let lo = psql(
        pg,
        &format!(
            "SELECT {CHECKSUM} FROM (SELECT md5(oid::text || ':' || md5(lo_get(oid))) AS h FROM pg_catalog.pg_largeobject_metadata) AS s"
        ),
    )?;
    if let Some((n, sum)) = lo.trim_end().split_once('\t') {
        out.large_objects = (n.parse().unwrap_or(u64::MAX), sum.to_owned());
    }
    Ok(out)
}

/// Every difference between the source's fingerprint `a` and the target's `b`, one line each.
pub fn differences(a: &Fingerprint, b: &Fingerprint) -> Vec<String> {
    let mut out = Vec::new();
    for (table, (n, sum)) in &a.tables {
        match b.tables.get(table) {
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
    for (table, (m, _)) in b.tables.iter().filter(|(t, _)| !a.tables.contains_key(*t)) {
        out.push(format!("table {table}: only at the target ({m} rows)"));
    }
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
    let out = exec::checked_with_input(
        c,
        &format!("query database {}", pg.database),
        script.map(str::as_bytes),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `s` as an SQL string literal.
pub(crate) fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
