//! PostgreSQL: dump at the source (`pg_dump -Fc`), restore at the target (`pg_restore` in one transaction, so a
//! killed restore leaves the target as it was), and what verification compares (row counts per table, and a
//! plain dump of each side without owners, privileges and the per-dump `\restrict` key).
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

fn command(name: &str, pg: &Postgres) -> Result<Command, PgError> {
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
pub fn dump(pg: &Postgres, file: &Path) -> Result<(), PgError> {
    let tmp = file.with_extension("dump.partial");
    let _ = std::fs::remove_file(&tmp);
    let mut c = command("pg_dump", pg)?;
    c.arg("--format=custom")
        .arg("--file")
        .arg(&tmp)
        .arg(&pg.database);
    exec::checked(c, &format!("dump database {}", pg.database))?;
    std::fs::rename(&tmp, file).map_err(|e| IoError::new("replace", file, e))?;
    Ok(())
}

/// Restores the dump `file` into `pg`, replacing what is there, in one transaction: objects become the
/// connecting role's (the application's), privileges are left to the target's module.
pub fn restore(pg: &Postgres, file: &Path) -> Result<(), PgError> {
    let mut c = command("pg_restore", pg)?;
    c.args([
        "--single-transaction",
        "--exit-on-error",
        "--clean",
        "--if-exists",
        "--no-owner",
        "--no-privileges",
    ])
    .arg("--dbname")
    .arg(&pg.database)
    .arg(file);
    exec::checked(c, &format!("restore database {}", pg.database))?;
    Ok(())
}

/// Row counts of every user table (`schema.table` → rows).
pub fn row_counts(pg: &Postgres) -> Result<BTreeMap<String, u64>, PgError> {
    let tables = psql(
        pg,
        "SELECT format('%I.%I', schemaname, relname) FROM pg_catalog.pg_stat_user_tables ORDER BY 1",
    )?;
    let mut counts = BTreeMap::new();
    let names: Vec<&str> = tables.lines().filter(|l| !l.is_empty()).collect();
    if names.is_empty() {
        return Ok(counts);
    }
    let query = names
        .iter()
        .map(|t| format!("SELECT {}, count(*) FROM {t}", quote_literal(t)))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    for line in psql(pg, &query)?.lines() {
        if let Some((table, n)) = line.split_once('\t') {
            counts.insert(table.to_owned(), n.trim().parse().unwrap_or(u64::MAX));
        }
    }
    Ok(counts)
}

/// The SHA-256 of a plain dump of `pg` without owners, privileges, comments and the random `\restrict` key
/// lines PostgreSQL 15.14 and later write: equal for two databases holding the same schema and data.
pub fn dump_digest(pg: &Postgres) -> Result<String, PgError> {
    let mut c = command("pg_dump", pg)?;
    c.args(["--format=plain", "--no-owner", "--no-privileges"])
        .arg(&pg.database);
    let out = exec::checked(c, &format!("dump database {} for comparison", pg.database))?;
    let mut hasher = Sha256::new();
    for line in out.stdout.split(|b| *b == b'\n') {
        if line.starts_with(b"--")
            || line.starts_with(b"\\restrict")
            || line.starts_with(b"\\unrestrict")
        {
            continue;
        }
        hasher.update(line);
        hasher.update(b"\n");
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn psql(pg: &Postgres, query: &str) -> Result<String, PgError> {
    let mut c = command("psql", pg)?;
    c.args([
        "--no-psqlrc",
        "--tuples-only",
        "--no-align",
        "--field-separator=\t",
        "--set=ON_ERROR_STOP=1",
    ])
    .arg("--dbname")
    .arg(&pg.database)
    .arg("--command")
    .arg(query);
    let out = exec::checked(c, &format!("query database {}", pg.database))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
