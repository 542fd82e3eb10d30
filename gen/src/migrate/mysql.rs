//! MySQL and MariaDB (Pixelfed's database in nixpkgs): dump at the source after the freeze, restore at the target
//! into an emptied database, and what verification compares ([`Fingerprint`]: per table its rows and an
//! order-independent checksum of them, and a digest of the schema, computed by each server).
//!
//! The one place for the MySQL tools. MariaDB (nixpkgs' `services.mysql.package` default for Pixelfed, and
//! Debian's `mariadb-server`) ships `mariadb-dump` and `mariadb`, with `mysqldump` and `mysql` as compatibility
//! names that MariaDB 11 warns about and Oracle's MySQL ships alone; so the MariaDB names are used when present,
//! the MySQL ones otherwise. They are found in `FEDIGEN_MYSQL_BIN` when set (a folder), else on PATH.
//!
//! Why `--no-defaults`: the client would otherwise read the machine's option files (on NixOS `/etc/my.cnf` is
//! the server's), so the same job could behave differently per machine. A password is read from the job's
//! `password_file` when a step runs and given in the child's environment (`MYSQL_PWD`), never on its command
//! line. With `os_user` the tools run as that user (NixOS's `ensureUsers` authenticate with `unix_socket`), and
//! the dump is read on their standard input and written from their standard output, opened by fedigen.
//!
//! Why the restore empties the database first (every table, view, routine and event, in one script), not a
//! transaction as PostgreSQL's: MySQL's DDL commits implicitly, so a killed restore leaves half a database. A
//! resumed restore empties it again and restores the whole dump: the same result however often it runs.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};

use super::exec::{self, ExecError};
use super::job::{DatabaseMove, Postgres as Connection, UrlRewrite};
use crate::io_error::IoError;

/// A MySQL step failed.
#[derive(Debug, thiserror::Error)]
pub enum MysqlError {
    /// A tool failed or is missing, or its user does not exist.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// A password file or dump could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// The dump tool and the client, MariaDB's name first.
const DUMP: [&str; 2] = ["mariadb-dump", "mysqldump"];
const CLIENT: [&str; 2] = ["mariadb", "mysql"];

/// The first of `names` found in `FEDIGEN_MYSQL_BIN` (or on PATH); the first name when none is (so the error
/// names what to install).
fn tool(names: &[&str]) -> PathBuf {
    let dirs: Vec<PathBuf> = match std::env::var_os("FEDIGEN_MYSQL_BIN").filter(|v| !v.is_empty()) {
        Some(dir) => vec![PathBuf::from(dir)],
        None => std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default(),
    };
    for name in names {
        if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            return found;
        }
    }
    match std::env::var_os("FEDIGEN_MYSQL_BIN").filter(|v| !v.is_empty()) {
        Some(dir) => Path::new(&dir).join(names[0]),
        None => PathBuf::from(names[0]),
    }
}

/// The socket file a connection's `host` names: the path itself, or `mysqld.sock` in it when it is a folder.
fn socket(host: &str) -> PathBuf {
    let path = Path::new(host);
    if path.is_dir() {
        path.join("mysqld.sock")
    } else {
        path.to_owned()
    }
}

/// The job's encryption of a TCP connection as the MariaDB tools' options: `require` is `--ssl` (the client then
/// refuses a server that offers no TLS), `verify-ca` and `verify-full` also check the server's certificate
/// against `tls.ca_file`, `disable` is `--skip-ssl`, `prefer` leaves the client's default.
fn tls_options(cmd: &mut Command, c: &Connection) {
    use super::job::TlsMode;
    match c.tls_mode() {
        TlsMode::Disable => {
            cmd.arg("--skip-ssl");
        }
        TlsMode::Prefer => {}
        TlsMode::Require => {
            cmd.arg("--ssl");
        }
        TlsMode::VerifyCa | TlsMode::VerifyFull => {
            cmd.arg("--ssl").arg("--ssl-verify-server-cert");
        }
    }
    if let Some(ca) = &c.tls.ca_file {
        let mut option = std::ffi::OsString::from("--ssl-ca=");
        option.push(ca);
        cmd.arg(option);
    }
}

/// `names`' tool connected to `c`'s database server, as `c.os_user` when given ([`exec::run_as`]: that user's
/// groups and environment). Every MySQL tool the migration runs is made here and run by `exec.rs`, so none can
/// miss the connection's OS user or outlive fedigen, and a password reaches it only in its environment.
fn command(names: &[&str], c: &Connection) -> Result<Command, MysqlError> {
    let program = tool(names);
    let mut cmd = Command::new(&program);
    cmd.arg("--no-defaults")
        .arg(format!("--user={}", c.user))
        .arg("--default-character-set=utf8mb4")
        .env_remove("MYSQL_PWD")
        .env_remove("MYSQL_HOST")
        .env_remove("MYSQL_TCP_PORT")
        .env_remove("MYSQL_UNIX_PORT")
        .current_dir("/");
    if c.host.starts_with('/') {
        cmd.arg("--protocol=SOCKET")
            .arg(format!("--socket={}", socket(&c.host).display()));
    } else {
        cmd.arg("--protocol=TCP")
            .arg(format!("--host={}", c.host))
            .arg(format!("--port={}", c.port));
        // Only the client takes a connect timeout on its command line: mariadb-dump refuses the option
        // ("unknown variable 'connect-timeout=15'", MariaDB 10.11), so a dump over TCP never started.
        if names.iter().any(|n| *n == "mariadb" || *n == "mysql") {
            cmd.arg("--connect-timeout=15");
        }
        tls_options(&mut cmd, c);
    }
    if let Some(file) = &c.password_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| IoError::new("read the database password from", file, e))?;
        cmd.env("MYSQL_PWD", text.trim_end_matches(['\n', '\r']));
    }
    if let Some(user) = &c.os_user {
        let missing = |reason: String| ExecError::Missing {
            program: program.display().to_string(),
            what: format!("connect to database {} as the user {user}", c.database),
            reason,
        };
        let os = exec::os_user(user).ok_or_else(|| {
            missing(format!(
                "there is no user `{user}` on this machine (the target's module creates it: deploy the target first)"
            ))
        })?;
        exec::run_as(&mut cmd, &os).map_err(missing)?;
    }
    Ok(cmd)
}

/// Dumps `c`'s database as SQL to `file` (written beside it and renamed: whole or absent), in one consistent
/// snapshot (`--single-transaction`: InnoDB's), with its routines and triggers and binary columns as hex (so the
/// dump is text whatever the data). No `CREATE DATABASE`: it is restored into the target's database, whatever
/// its name. `--no-tablespaces`: MySQL 8 refuses to dump tablespaces without the `PROCESS` privilege, which the
/// application's user does not have, and a database's tables need none.
pub(crate) fn dump(c: &Connection, file: &Path) -> Result<(), MysqlError> {
    let tmp = file.with_extension("sql.partial");
    let _ = std::fs::remove_file(&tmp);
    let out = File::create(&tmp).map_err(|e| IoError::new("create", &tmp, e))?;
    let mut cmd = command(&DUMP, c)?;
    cmd.args([
        "--single-transaction",
        "--routines",
        "--triggers",
        "--hex-blob",
        "--no-tablespaces",
        "--skip-comments",
    ])
    .arg("--")
    .arg(&c.database);
    // The output file is opened here and handed over: the tool may run as another user (`os_user`), which may
    // not open the journal folder.
    let io = exec::Io {
        stdout: Some(out),
        ..exec::Io::default()
    };
    exec::checked_with(cmd, &format!("dump database {}", c.database), io)?;
    std::fs::rename(&tmp, file).map_err(|e| IoError::new("replace", file, e))?;
    Ok(())
}

/// Restores the dump `file` into `c`'s database after emptying it ([`empty`]): what the target held before is
/// replaced whole, and a restore killed half-way is repeated from the start.
pub(crate) fn restore(c: &Connection, file: &Path) -> Result<(), MysqlError> {
    empty(c)?;
    let input = File::open(file).map_err(|e| IoError::new("read", file, e))?;
    let mut cmd = command(&CLIENT, c)?;
    cmd.arg("--batch").arg(format!("--database={}", c.database));
    let io = exec::Io {
        stdin: exec::Stdin::File(input),
        ..exec::Io::default()
    };
    exec::checked_with(cmd, &format!("restore database {}", c.database), io)?;
    Ok(())
}

/// Drops every table, view, routine and event of `c`'s database (triggers go with their tables), foreign keys
/// unchecked, so the restore starts from an empty database.
pub(crate) fn empty(c: &Connection) -> Result<(), MysqlError> {
    let objects = query(
        c,
        "SELECT 'VIEW', TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE() \
         UNION ALL SELECT 'TABLE', TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE <> 'VIEW' \
         UNION ALL SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE() \
         UNION ALL SELECT 'EVENT', EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE()",
    )?;
    let mut script = String::from("SET FOREIGN_KEY_CHECKS = 0;\n");
    for line in objects.lines() {
        if let Some((kind, name)) = line.split_once('\t') {
            script.push_str(&format!(
                "DROP {kind} IF EXISTS {};\n",
                quote_identifier(name)
            ));
        }
    }
    script.push_str("SET FOREIGN_KEY_CHECKS = 1;\n");
    self::script(c, &script)?;
    Ok(())
}

/// Runs `sql` (one statement, or several separated by `;`) in `c`'s database; returns the rows, one a line,
/// fields separated by tabs, unescaped (`--raw`).
pub(crate) fn query(c: &Connection, sql: &str) -> Result<String, MysqlError> {
    let mut cmd = command(&CLIENT, c)?;
    cmd.args(["--batch", "--raw", "--skip-column-names"])
        .arg(format!("--database={}", c.database))
        .arg(format!("--execute={sql}"));
    let out = exec::checked(cmd, &format!("query database {}", c.database))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs the SQL `script` from the client's standard input, stopping at the first error.
pub(crate) fn script(c: &Connection, script: &str) -> Result<String, MysqlError> {
    let mut cmd = command(&CLIENT, c)?;
    cmd.args(["--batch", "--raw", "--skip-column-names"])
        .arg(format!("--database={}", c.database));
    let out = exec::checked_with_input(
        cmd,
        &format!("query database {}", c.database),
        Some(script.as_bytes()),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every reason the dump of `source` cannot be restored at `target` as it is (empty when it can): the
/// databases' default character sets or collations differ (tables created without their own would change).
/// Read-only at both sides; it also proves, before the freeze, that both servers accept the job's connections.
pub(crate) fn restore_problems(
    source: &Connection,
    target: &Connection,
) -> Result<Vec<String>, MysqlError> {
    let sql = "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = DATABASE()";
    let (a, b) = exec::both(|| query(source, sql), || query(target, sql));
    let (a, b) = (a?, b?);
    let mut problems = Vec::new();
    for c in [source, target] {
        problems.extend(tls_problem(c)?);
    }
    let (va, vb) = exec::both(
        || query(source, "SELECT VERSION()"),
        || query(target, "SELECT VERSION()"),
    );
    if let (Some(a), Some(b)) = (server_version(&va?), server_version(&vb?)) {
        problems.extend(version_problem(&source.database, a, b));
    }
    let (a, b) = (a.trim_end(), b.trim_end());
    if a == b {
        return Ok(problems);
    }
    let (charset, collation) = a.split_once('\t').unwrap_or((a, ""));
    problems.push(format!(
        "database {} has the character set and collation `{}` at the source and `{}` at the target: make the target's the source's (ALTER DATABASE {} CHARACTER SET {charset} COLLATE {collation}), then run the same command again",
        source.database,
        a.replace('\t', " / "),
        b.replace('\t', " / "),
        quote_identifier(&target.database),
    ));
    Ok(problems)
}

/// A server's release series from `SELECT VERSION()` (`10.11.19-MariaDB-0+deb12u1` → (10, 11); MySQL's
/// `8.0.36` → (8, 0)).
fn server_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Why the servers' versions forbid the move of `database` (none when they allow it): a dump is restored into
/// the same or a newer release series only (an older server may not know what the dump creates: a collation,
/// a column type, `CREATE … IF NOT EXISTS` forms). Checked before the freeze, as PostgreSQL's
/// (`pg::version_problems`).
fn version_problem(database: &str, source: (u32, u32), target: (u32, u32)) -> Option<String> {
    (target < source).then(|| {
        format!(
            "database {database}: the target's MySQL/MariaDB server is {}.{}, older than the source's {}.{}: a dump restores into the same or a newer release only; deploy B with {}.{} or newer (services.mysql.package), then run the same command again",
            target.0, target.1, source.0, source.1, source.0, source.1
        )
    })
}

/// Whether TCP connection `c`, whose job requires TLS, got it: MariaDB's tools before 11.4 take `--ssl` as a
/// wish, not a requirement, and go on in clear with a server that offers no TLS (seen with 10.11's against a
/// server without a certificate); the session's `Ssl_cipher` says what was negotiated. (`verify-ca` and
/// `verify-full` pass `--ssl-verify-server-cert`, which the tools do enforce.)
fn tls_problem(c: &Connection) -> Result<Option<String>, MysqlError> {
    use super::job::TlsMode;
    if c.host.starts_with('/') || !matches!(c.tls_mode(), TlsMode::Require) {
        return Ok(None);
    }
    let cipher = query(c, "SHOW SESSION STATUS LIKE 'Ssl_cipher'")?;
    let cipher = cipher.trim_end().split_once('\t').map_or("", |(_, v)| v);
    Ok(cipher.is_empty().then(|| {
        format!(
            "the MySQL server at {} port {} offers no TLS and the job requires it for this connection (the default for a host on the network: the database holds the accounts' data): give it a certificate (MariaDB's `ssl_cert` and `ssl_key`; NixOS: `services.mysql.settings.mysqld`) and the account `REQUIRE SSL`, then run the same command again; only on a private network the provider vouches for, set `\"tls\": {{ \"mode\": \"disable\" }}` on this connection in the job instead",
            c.host, c.port
        )
    }))
}

/// What verification compares of a MySQL database, computed by the server: per table its rows and the sum of
/// a 64-bit hash of each row (so the order rows are stored in does not matter, and a changed, missing or extra
/// row changes it), and a digest of the schema (`SHOW CREATE` of every table and view, the routines and
/// triggers).
///
/// Why not `CHECKSUM TABLE`: its value depends on the row format and the server's version (MariaDB documents
/// that tables of different formats give different checksums for the same rows), and a move is also an upgrade
/// more often than not. A row's hash is the MD5 of `QUOTE()` of each column joined by commas: `QUOTE` keeps
/// `NULL` apart from the text `'NULL'`, and binary values byte for byte.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint {
    /// Table → (rows, checksum of the rows).
    pub tables: BTreeMap<String, (u64, String)>,
    /// SHA-256 of the schema's text.
    pub schema: String,
}

/// The [`Fingerprint`] of `c`'s database; each column in `mapped` (table → column → its rewrite) is hashed as
/// the rewrite would leave it ([`rewritten`]), so a source is compared with a target whose URLs were rewritten.
/// Read-only.
pub(crate) fn fingerprint(
    c: &Connection,
    mapped: &[UrlRewrite],
) -> Result<Fingerprint, MysqlError> {
    let columns = query(
        c,
        "SELECT c.TABLE_NAME, c.COLUMN_NAME FROM information_schema.COLUMNS c JOIN information_schema.TABLES t \
         ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
         WHERE c.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE' ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION",
    )?;
    let mut tables: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for line in columns.lines() {
        if let Some((table, column)) = line.split_once('\t') {
            let expr = match mapped
                .iter()
                .find(|r| r.table == table && r.column == column)
            {
                Some(r) => rewritten(column, &r.from, &r.to),
                None => quote_identifier(column),
            };
            tables
                .entry(table)
                .or_default()
                .push(format!("QUOTE({expr})"));
        }
    }
    let mut out = Fingerprint::default();
    if !tables.is_empty() {
        let sql = tables
            .iter()
            .map(|(table, exprs)| {
                format!(
                    "SELECT {}, COUNT(*), COALESCE(SUM(CAST(CONV(LEFT(MD5(CONCAT_WS(',', {})), 16), 16, 10) AS UNSIGNED)), 0) FROM {}",
                    hex_literal(table),
                    exprs.join(", "),
                    quote_identifier(table)
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        for line in query(c, &sql)?.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if let [table, n, sum] = f[..] {
                out.tables.insert(
                    table.to_owned(),
                    (n.trim().parse().unwrap_or(u64::MAX), sum.to_owned()),
                );
            }
        }
    }
    out.schema = schema_digest(c)?;
    Ok(out)
}

/// SHA-256 of the schema: `SHOW CREATE` of every table and view, then every routine's and trigger's definition.
fn schema_digest(c: &Connection) -> Result<String, MysqlError> {
    let objects = query(
        c,
        "SELECT TABLE_TYPE, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME",
    )?;
    let mut sql = Vec::new();
    for line in objects.lines() {
        if let Some((kind, name)) = line.split_once('\t') {
            let what = if kind == "VIEW" { "VIEW" } else { "TABLE" };
            sql.push(format!("SHOW CREATE {what} {}", quote_identifier(name)));
        }
    }
    sql.push(
        "SELECT ROUTINE_TYPE, ROUTINE_NAME, ROUTINE_DEFINITION FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE() ORDER BY 1, 2".into(),
    );
    sql.push(
        "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() ORDER BY 1".into(),
    );
    let text = query(c, &sql.join("; "))?;
    Ok(Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Every difference between the source's fingerprint `a` and the target's `b`, one line each.
pub(crate) fn differences(a: &Fingerprint, b: &Fingerprint) -> Vec<String> {
    let mut out = super::pg::table_differences(&a.tables, &b.tables);
    if a.schema != b.schema {
        out.push(
            "the schemas differ: compare `SHOW CREATE TABLE` of each table on both sides".into(),
        );
    }
    out
}

/// Rewrites, in one transaction, each of `d`'s URL columns at the target: a value beginning with `from` begins
/// with `to` instead. Idempotent: the job refuses prefixes one of which begins the other, so a rewritten value
/// never begins with `from` again.
pub(crate) fn rewrite_urls(d: &DatabaseMove) -> Result<(), MysqlError> {
    if d.url_rewrites.is_empty() {
        return Ok(());
    }
    let mut sql = String::from("START TRANSACTION;\n");
    for r in &d.url_rewrites {
        sql.push_str(&rewrite_statement(r));
        sql.push_str(";\n");
    }
    sql.push_str("COMMIT;\n");
    script(&d.target, &sql)?;
    Ok(())
}

/// The `UPDATE` of one URL column: `column` set to [`rewritten`] where it begins with `from` (compared byte for
/// byte, not by the column's case-insensitive collation).
pub(crate) fn rewrite_statement(r: &UrlRewrite) -> String {
    let column = quote_identifier(&r.column);
    format!(
        "UPDATE {} SET {column} = {} WHERE {}",
        quote_identifier(&r.table),
        rewritten(&r.column, &r.from, &r.to),
        begins_with(&column, &r.from)
    )
}

/// `column`'s value as the rewrite leaves it: `to` followed by what follows `from`, where it begins with `from`.
fn rewritten(column: &str, from: &str, to: &str) -> String {
    let column = quote_identifier(column);
    format!(
        "IF({}, CONCAT({}, SUBSTRING({column}, {})), {column})",
        begins_with(&column, from),
        text_literal(to),
        from.chars().count() + 1
    )
}

/// Whether the SQL expression `value` begins with `prefix`, byte for byte (`NULL` does not).
fn begins_with(value: &str, prefix: &str) -> String {
    format!(
        "CAST(LEFT({value}, {}) AS BINARY) = {}",
        prefix.chars().count(),
        hex_literal(prefix)
    )
}

/// `s` as a UTF-8 (utf8mb4) string literal written in hexadecimal: no character of `s` reaches the SQL text,
/// so no quote, backslash or `sql_mode` (`NO_BACKSLASH_ESCAPES`) can change its meaning.
pub(crate) fn text_literal(s: &str) -> String {
    format!("_utf8mb4 {}", hex_literal(s))
}

/// `s`'s bytes as a hexadecimal (binary) literal: `X'…'`, or `''` when empty (`X''` is the empty string too).
pub(crate) fn hex_literal(s: &str) -> String {
    let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
    format!("X'{hex}'")
}

/// `name` as a MySQL identifier: in backquotes, a backquote doubled.
pub(crate) fn quote_identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Versions as MariaDB and MySQL print them; a move to an older release series is refused, to the same or
    /// a newer one allowed.
    #[test]
    fn an_older_target_server_is_refused() {
        assert_eq!(server_version("10.11.19-MariaDB-0+deb12u1"), Some((10, 11)));
        assert_eq!(server_version("11.4.5-MariaDB"), Some((11, 4)));
        assert_eq!(server_version("8.0.36"), Some((8, 0)));
        assert_eq!(server_version("garbage"), None);
        let refused = version_problem("pixelfed", (11, 4), (10, 11)).unwrap();
        assert!(
            refused.contains("10.11, older than the source's 11.4"),
            "{refused}"
        );
        assert_eq!(version_problem("pixelfed", (10, 11), (11, 4)), None);
        assert_eq!(version_problem("pixelfed", (10, 11), (10, 11)), None);
        assert!(version_problem("pixelfed", (10, 11), (10, 6)).is_some());
    }
    use proptest::prelude::*;

    /// Decodes what [`hex_literal`] writes.
    fn unhex(literal: &str) -> Vec<u8> {
        let hex = literal
            .strip_prefix("X'")
            .and_then(|s| s.strip_suffix('\''))
            .unwrap();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    proptest! {
        /// Any prefix, however hostile (quotes, backslashes, `%`, `_`, NUL, any Unicode), reaches the statement
        /// only as hex digits, which decode to its exact bytes; the identifiers stay one quoted identifier.
        #[test]
        fn prefixes_and_identifiers_are_quoted(from in "\\PC*", to in "\\PC*", table in "\\PC{1,8}", column in "[a-z_`]{1,8}") {
            let r = UrlRewrite { table: table.clone(), column: column.clone(), from: from.clone(), to: to.clone() };
            let sql = rewrite_statement(&r);
            let quoted_table = quote_identifier(&table);
            let head = format!("UPDATE {quoted_table} SET ");
            prop_assert!(sql.starts_with(&head));
            // Outside the quoted identifiers, the statement holds no character of the prefixes.
            // The longer quoted identifier first: the shorter may be part of it.
            let quoted_column = quote_identifier(&column);
            let (long, short) = if quoted_table.len() >= quoted_column.len() { (&quoted_table, &quoted_column) } else { (&quoted_column, &quoted_table) };
            let rest = sql.replace(long.as_str(), "").replace(short.as_str(), "");
            prop_assert!(rest.chars().all(|c| c.is_ascii_alphanumeric() || " ,()'=_".contains(c)), "{}", rest);
            let literals: Vec<&str> = rest.match_indices("X'").map(|(i, _)| {
                let end = rest[i + 2..].find('\'').unwrap() + i + 3;
                &rest[i..end]
            }).collect();
            // `from` in the IF's test, `to` in its value, `from` again in the WHERE.
            prop_assert_eq!(literals.len(), 3);
            prop_assert_eq!(unhex(literals[0]), from.as_bytes());
            prop_assert_eq!(unhex(literals[1]), to.as_bytes());
            prop_assert_eq!(unhex(literals[2]), from.as_bytes());
            prop_assert!(quoted_table[1..quoted_table.len() - 1].replace("``", "").find('`').is_none());
        }
    }

    #[test]
    fn a_statement_reads_as_intended() {
        let r = UrlRewrite {
            table: "media".into(),
            column: "cdn_url".into(),
            from: "https://a/b/".into(),
            to: "https://c/".into(),
        };
        assert_eq!(
            rewrite_statement(&r),
            "UPDATE `media` SET `cdn_url` = IF(CAST(LEFT(`cdn_url`, 12) AS BINARY) = X'68747470733a2f2f612f622f', CONCAT(_utf8mb4 X'68747470733a2f2f632f', SUBSTRING(`cdn_url`, 13)), `cdn_url`) WHERE CAST(LEFT(`cdn_url`, 12) AS BINARY) = X'68747470733a2f2f612f622f'"
        );
    }
}
