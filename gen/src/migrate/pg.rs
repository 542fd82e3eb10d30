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
