//! A database moved by PostgreSQL logical replication while the source serves (issue #16: the freeze window is
//! the delta): the schema restored at the target, a publication at the source, a subscription at the target
//! that copies every table and then streams the changes. At the freeze the run only waits for the target to
//! apply the source's last change, sets the sequences (not replicated), copies the large objects (not
//! replicated), drops the subscription, its slot and the publication, and verifies as for a dump.
//!
//! Every function is idempotent, and the names of the publication, the subscription and the replication slot are
//! derived from the job ([`object_name`]), so a run killed at any moment finds what an earlier run made. A
//! rollback ([`remove`]) drops all of it at both sides and gives back the source's tables their replica
//! identity: the source is then as it was.
//!
//! What the source is checked for first ([`why_not`], read-only): `wal_level = logical`, a free replication slot,
//! a publisher role that may replicate, a superuser at the target (PostgreSQL 15's `CREATE SUBSCRIPTION`), and no
//! unlogged table (those cannot be published). Any of these missing makes the run dump and restore instead, and
//! say why.
//!
//! DDL is not replicated: the source's applications must not change their schema (an upgrade) between the bulk
//! phase and the freeze; the target would stop applying, and the catch-up would say so (verification names a
//! schema that differs).
//!
//! Tables without a primary key get `REPLICA IDENTITY FULL` at the source while they are published (otherwise
//! PostgreSQL refuses the source's own `UPDATE` and `DELETE` on them): their previous identity is written to
//! `NAME.identity` in the journal folder before the change, and put back at both sides at the freeze or
//! rollback.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use super::job::{DatabaseMove, Postgres, Replication};
use super::journal::write_atomic;
use super::pg::{self, PgError, psql, psql_script, quote_literal};
use crate::io_error::IoError;

/// Why a replication step failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    /// A tool or a query failed.
    #[error(transparent)]
    Pg(#[from] PgError),
    /// The journal folder's file of replica identities could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The target does not get there (no progress within the time allowed, or the subscription is gone).
    #[error("{0}")]
    Stalled(String),
}

/// How long the target may go without progress (a table more in sync, or the last change applied) before the
/// run stops saying so.
const STALL: Duration = Duration::from_secs(600);

/// The name of the publication, the subscription and the replication slot of database move `d` of `operator`:
/// `fedigen_` and 16 hex digits of a SHA-256 of the operator, the move's name and both ends. Lower case, 24
/// characters (PostgreSQL allows 63), the same for every run of the job, distinct for another job.
pub(crate) fn object_name(operator: &str, d: &DatabaseMove) -> String {
    let mut h = Sha256::new();
    for part in [
        operator,
        &d.name,
        &d.source.host,
        &d.source.port.to_string(),
        &d.source.database,
        &d.target.host,
        &d.target.port.to_string(),
        &d.target.database,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let hex: String = h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("fedigen_{hex}")
}

/// Why `d` cannot be replicated (then it is dumped and restored after the freeze), or `None` when it can.
/// Read-only at both sides.
pub(crate) fn why_not(operator: &str, d: &DatabaseMove) -> Result<Option<String>, PgError> {
    let Some(r) = &d.replication else {
        return Ok(Some("the job names no replication roles".into()));
    };
    let level = psql(&d.source, "SHOW wal_level")?.trim().to_owned();
    if level != "logical" {
        return Ok(Some(format!(
            "the source's wal_level is `{level}`; logical replication needs `logical` (on NixOS services.postgresql.settings.wal_level = \"logical\" at the source, then a restart of its PostgreSQL, days ahead of the migration)"
        )));
    }
    let unlogged = psql(
        &d.source,
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND c.relpersistence = 'u' ORDER BY 1",
    )?;
    let unlogged: Vec<&str> = unlogged.lines().filter(|l| !l.is_empty()).collect();
    if !unlogged.is_empty() {
        return Ok(Some(format!(
            "unlogged tables cannot be replicated: {}",
            unlogged.join(", ")
        )));
    }
    // Free slots, this job's own (left by an earlier attempt) counted as free.
    let publisher = psql(
        &r.publisher,
        &format!(
            "SELECT (SELECT rolreplication OR rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user),
                    current_setting('max_replication_slots')::int
                      - (SELECT count(*) FROM pg_catalog.pg_replication_slots WHERE slot_name <> {})",
            quote_literal(&object_name(operator, d))
        ),
    )?;
    let f: Vec<&str> = publisher.trim_end().split('\t').collect();
    if f.first() != Some(&"t") {
        return Ok(Some(format!(
            "the publisher role `{}` at the source may not replicate (ALTER ROLE \"{}\" REPLICATION)",
            r.publisher.user, r.publisher.user
        )));
    }
    if f.get(1).and_then(|n| n.parse::<i64>().ok()).unwrap_or(0) < 1 {
        return Ok(Some(
            "the source has no free replication slot (raise max_replication_slots, a restart)"
                .into(),
        ));
    }
    let superuser = psql(
        &r.subscriber,
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
    )?;
    if superuser.trim() != "t" {
        return Ok(Some(format!(
            "the subscriber role `{}` at the target is not a superuser (PostgreSQL 15 lets only superusers create subscriptions)",
            r.subscriber.user
        )));
    }
    Ok(None)
}

fn replication(d: &DatabaseMove) -> &Replication {
    d.replication
        .as_ref()
        .expect("only databases with replication roles are replicated")
}

fn identity_file(dir: &Path, d: &DatabaseMove) -> PathBuf {
    dir.join(format!("{}.identity", d.name))
}

/// The tables whose replica identity fedigen changed: `schema.table` (quoted) → its previous identity (`d`
/// default or `n` nothing).
fn read_identities(file: &Path) -> Result<BTreeMap<String, String>, IoError> {
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(t, i)| (t.to_owned(), i.to_owned()))
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(IoError::new("read", file, e)),
    }
}

/// The schema at the target, from a schema-only dump of the source, after any earlier attempt's subscription
/// and slot are dropped (a restore replaces the tables a subscription would write into); tables without a
/// primary key get `REPLICA IDENTITY FULL` at the source first, their previous identity kept in the journal
/// folder.
pub(crate) fn schema(operator: &str, d: &DatabaseMove, dir: &Path) -> Result<(), ReplicateError> {
    let name = object_name(operator, d);
    drop_subscription(d, &name)?;
    let file = identity_file(dir, d);
    let mut kept = read_identities(&file)?;
    let without_key = psql(
        &d.source,
        "SELECT format('%I.%I', n.nspname, c.relname), c.relreplident FROM pg_catalog.pg_class c
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind = 'r' AND c.relpersistence = 'p' AND c.relreplident IN ('d', 'n')
            AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
          ORDER BY 1",
    )?;
    let mut alter = String::new();
    for line in without_key.lines() {
        if let Some((table, identity)) = line.split_once('\t') {
            kept.entry(table.to_owned())
                .or_insert_with(|| identity.to_owned());
            alter.push_str(&format!("ALTER TABLE {table} REPLICA IDENTITY FULL;\n"));
        }
    }
    if !alter.is_empty() {
        let text: String = kept.iter().map(|(t, i)| format!("{t}\t{i}\n")).collect();
        write_atomic(&file, text.as_bytes(), 0o600)?;
        psql_script(&d.source, &format!("BEGIN;\n{alter}COMMIT;\n"))?;
    }
    let dump = dir.join(format!("{}.schema.dump", d.name));
    pg::dump_with(&d.source, &dump, &["--schema-only"])?;
    pg::restore(&d.target, &dump)?;
    Ok(())
}

/// The publication at the source (every table of the database) and the subscription at the target, which
/// starts copying at once; kept when an earlier run made them.
pub(crate) fn start(operator: &str, d: &DatabaseMove) -> Result<(), ReplicateError> {
    let r = replication(d);
    let name = object_name(operator, d);
    let tables = psql(
        &d.source,
        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p' AND NOT c.relispartition
            AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e WHERE e.classid = 'pg_catalog.pg_class'::regclass
                              AND e.objid = c.oid AND e.deptype = 'e')
          ORDER BY 1",
    )?;
    let tables: Vec<&str> = tables.lines().filter(|l| !l.is_empty()).collect();
    let exists = psql(
        &d.source,
        &format!(
            "SELECT count(*) FROM pg_catalog.pg_publication WHERE pubname = {}",
            quote_literal(&name)
        ),
    )?;
    let list = tables.join(", ");
    let statement = match (exists.trim() == "1", tables.is_empty()) {
        (false, true) => {
            format!("CREATE PUBLICATION {name} WITH (publish_via_partition_root = true)")
        }
        (false, false) => format!(
            "CREATE PUBLICATION {name} FOR TABLE {list} WITH (publish_via_partition_root = true)"
        ),
        (true, true) => String::new(),
        (true, false) => format!("ALTER PUBLICATION {name} SET TABLE {list}"),
    };
    if !statement.is_empty() {
        psql(&d.source, &statement)?;
    }
    if subscription_exists(d, &name)? {
        return Ok(());
    }
    // A slot left by an attempt killed while the target created its subscription.
    drop_slot(d, &name)?;
    let conninfo = publisher_conninfo(&r.publisher)?;
    // On standard input: the connection string holds the publisher's password.
    psql_script(
        &r.subscriber,
        &format!(
            "\\set ON_ERROR_STOP 1\nCREATE SUBSCRIPTION {name} CONNECTION {} PUBLICATION {name} WITH (slot_name = {name}, copy_data = true);\n",
            quote_literal(&conninfo)
        ),
    )?;
    Ok(())
}

/// The connection string B's server subscribes with: the publisher's host, port, role, database, its
/// encryption as the job's tools have it (`sslmode`, `sslrootcert`: the rows cross the network in it, so a
/// network host requires TLS here too) and its password (read from its file now).
fn publisher_conninfo(p: &super::job::Postgres) -> Result<String, ReplicateError> {
    let mut conninfo = format!(
        "host={} port={} user={} dbname={} sslmode={}",
        conninfo_value(&p.host),
        p.port,
        conninfo_value(&p.user),
        conninfo_value(&p.database),
        p.tls_mode().libpq()
    );
    if let Some(ca) = &p.tls.ca_file {
        conninfo.push_str(&format!(
            " sslrootcert={}",
            conninfo_value(&ca.to_string_lossy())
        ));
    }
    if let Some(file) = &p.password_file {
        let password = std::fs::read_to_string(file)
            .map_err(|e| IoError::new("read the database password from", file, e))?;
        conninfo.push_str(&format!(
            " password={}",
            conninfo_value(password.trim_end_matches(['\n', '\r']))
        ));
    }
    Ok(conninfo)
}

/// A libpq connection-string value: quoted, with `\` and `'` escaped.
fn conninfo_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn subscription_exists(d: &DatabaseMove, name: &str) -> Result<bool, PgError> {
    Ok(psql(
        &replication(d).subscriber,
        &format!(
            "SELECT count(*) FROM pg_catalog.pg_subscription WHERE subname = {}",
            quote_literal(name)
        ),
    )?
    .trim()
        == "1")
}

/// Waits, while the source still serves, until every table of the subscription has had its first copy and the
/// target has applied the source's changes up to now: the changes made since (a bulk run days ago, or during
/// the first copy) are applied before the freeze, which then waits only for what changes after this.
pub(crate) fn synced(operator: &str, d: &DatabaseMove) -> Result<(), ReplicateError> {
    tables_synced(operator, d)?;
    caught_up(d, &object_name(operator, d), Duration::from_secs(1))
}

/// Waits until every table of the subscription has had its first copy and follows the stream (state `r`).
/// Progress is a table changing state or growing: a large table copying for hours is not stalled.
fn tables_synced(operator: &str, d: &DatabaseMove) -> Result<(), ReplicateError> {
    let name = object_name(operator, d);
    let sub = &replication(d).subscriber;
    let query = format!(
        "SELECT format('%I.%I', n.nspname, c.relname), r.srsubstate, pg_catalog.pg_relation_size(c.oid)
           FROM pg_catalog.pg_subscription_rel r
           JOIN pg_catalog.pg_subscription s ON s.oid = r.srsubid
           JOIN pg_catalog.pg_class c ON c.oid = r.srrelid
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE s.subname = {} AND r.srsubstate <> 'r' ORDER BY 1",
        quote_literal(&name)
    );
    let mut last = String::new();
    let mut since = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        if !subscription_exists(d, &name)? {
            return Err(ReplicateError::Stalled(format!(
                "the subscription {name} at the target is gone: roll back (`fedigen migrate rollback`) and run again"
            )));
        }
        let waiting = psql(sub, &query)?;
        if waiting.trim().is_empty() {
            return Ok(());
        }
        if waiting != last {
            last = waiting;
            since = Instant::now();
        } else if since.elapsed() > STALL {
            let tables: Vec<&str> = last.lines().filter_map(|l| l.split('\t').next()).collect();
            return Err(ReplicateError::Stalled(format!(
                "the target has not finished the first copy of {} in {} s (the target's PostgreSQL log says why; rows already in a table are a common cause)",
                tables.join(", "),
                STALL.as_secs()
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Waits until the target has applied the source's changes up to the source's position now
/// (`pg_current_wal_lsn()` at A), looking again after at most `pause_max`; stalled when the position the target
/// applied does not move for [`STALL`].
fn caught_up(d: &DatabaseMove, name: &str, pause_max: Duration) -> Result<(), ReplicateError> {
    let r = replication(d);
    let lsn = psql(&r.publisher, "SELECT pg_catalog.pg_current_wal_lsn()")?
        .trim()
        .to_owned();
    let query = format!(
        "SELECT coalesce((SELECT bool_or(replay_lsn >= '{lsn}'::pg_lsn) FROM pg_catalog.pg_stat_replication WHERE application_name = {n}), false)
             OR coalesce((SELECT confirmed_flush_lsn >= '{lsn}'::pg_lsn FROM pg_catalog.pg_replication_slots WHERE slot_name = {n}), false),
                (SELECT max(replay_lsn)::text FROM pg_catalog.pg_stat_replication WHERE application_name = {n})",
        n = quote_literal(name)
    );
    // Progress is the position the target has applied moving on.
    let (mut since, mut position) = (Instant::now(), String::new());
    let mut pause = Duration::from_millis(20);
    loop {
        let out = psql(&r.publisher, &query)?;
        let (done, at) = out.trim_end().split_once('\t').unwrap_or((out.trim(), ""));
        if done == "t" {
            return Ok(());
        }
        if at != position {
            (since, position) = (Instant::now(), at.to_owned());
        } else if since.elapsed() > STALL {
            return Err(ReplicateError::Stalled(format!(
                "the target has applied nothing more of the source's changes in {} s and is not at {lsn} yet (the target's PostgreSQL log says why)",
                STALL.as_secs()
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(pause_max);
    }
}

/// At the freeze (the source no longer changes): the target applies the source's last change, the
/// subscription, its slot and the publication are dropped, the sequences take the source's values, the large
/// objects are copied, and the replica identities are put back at both sides.
pub(crate) fn finish(operator: &str, d: &DatabaseMove, dir: &Path) -> Result<(), ReplicateError> {
    let name = object_name(operator, d);
    if subscription_exists(d, &name)? {
        tables_synced(operator, d)?;
        // Inside the freeze window: a late look costs downtime, a query costs little.
        caught_up(d, &name, Duration::from_millis(100))?;
    }
    drop_subscription(d, &name)?;
    drop_publication(operator, d)?;
    copy_sequences(d)?;
    copy_large_objects(d)?;
    restore_identities(d, dir, true)?;
    Ok(())
}

/// Undoes everything replication made (rollback): the subscription at the target, the slot and the
/// publication at the source, and the replica identities fedigen changed at the source.
pub(crate) fn remove(operator: &str, d: &DatabaseMove, dir: &Path) -> Result<(), ReplicateError> {
    let name = object_name(operator, d);
    // The target may be unreachable: the source's side is undone anyway.
    let target = drop_subscription(d, &name);
    drop_publication(operator, d)?;
    restore_identities(d, dir, false)?;
    let _ = std::fs::remove_file(identity_file(dir, d));
    target?;
    Ok(())
}

/// Drops the subscription at the target (and, through it, its slot at the source).
fn drop_subscription(d: &DatabaseMove, name: &str) -> Result<(), PgError> {
    if subscription_exists(d, name)? {
        psql(
            &replication(d).subscriber,
            &format!("DROP SUBSCRIPTION IF EXISTS {name}"),
        )?;
    }
    Ok(())
}

/// Drops the replication slot `name` at the source if it is there, stopping the sender that holds it (a
/// subscription being dropped lets go of it within moments).
fn drop_slot(d: &DatabaseMove, name: &str) -> Result<(), ReplicateError> {
    let p = &replication(d).publisher;
    let n = quote_literal(name);
    let started = Instant::now();
    loop {
        let out = psql(
            p,
            &format!(
                "SELECT count(*), count(active_pid) FROM pg_catalog.pg_replication_slots WHERE slot_name = {n}"
            ),
        )?;
        match out.trim() {
            "0\t0" => return Ok(()),
            "1\t0" => {
                // Gone since the count, or dropped now: either way, look again.
                let _ = psql(
                    p,
                    &format!(
                        "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots WHERE slot_name = {n} AND active_pid IS NULL"
                    ),
                );
            }
            _ => {
                let _ = psql(
                    p,
                    &format!(
                        "SELECT pg_catalog.pg_terminate_backend(active_pid) FROM pg_catalog.pg_replication_slots WHERE slot_name = {n} AND active_pid IS NOT NULL"
                    ),
                );
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(ReplicateError::Stalled(format!(
                "the replication slot {name} at the source stays in use: drop the subscription {name} at the target, then SELECT pg_drop_replication_slot('{name}') at the source"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn drop_publication(operator: &str, d: &DatabaseMove) -> Result<(), ReplicateError> {
    let name = object_name(operator, d);
    drop_slot(d, &name)?;
    psql(&d.source, &format!("DROP PUBLICATION IF EXISTS {name}"))?;
    Ok(())
}

/// Each sequence at the target takes the source's value (sequences are not replicated): `setval(…, last,
/// true)`, or its start value not yet used when the source never used it.
fn copy_sequences(d: &DatabaseMove) -> Result<(), PgError> {
    let rows = psql(
        &d.source,
        "SELECT format('%I.%I', schemaname, sequencename), last_value, start_value FROM pg_catalog.pg_sequences ORDER BY 1",
    )?;
    let mut script = String::from("\\set ON_ERROR_STOP 1\nBEGIN;\n");
    let mut any = false;
    for line in rows.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [seq, last, start] = f[..] else { continue };
        let (value, called) = if last.is_empty() {
            (start, "false")
        } else {
            (last, "true")
        };
        script.push_str(&format!(
            "SELECT pg_catalog.setval({}, {value}, {called});\n",
            quote_literal(seq)
        ));
        any = true;
    }
    if any {
        script.push_str("COMMIT;\n");
        psql_script(&d.target, &script)?;
    }
    Ok(())
}

/// The large objects (not replicated): the target's replaced by the source's, same numbers and contents, in
/// one transaction. They pass through fedigen's memory; none of the applications uses them.
fn copy_large_objects(d: &DatabaseMove) -> Result<(), PgError> {
    let has = |pg: &Postgres| -> Result<bool, PgError> {
        Ok(psql(
            pg,
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata)",
        )?
        .trim()
            == "t")
    };
    if !has(&d.source)? && !has(&d.target)? {
        return Ok(());
    }
    let objects = psql(
        &d.source,
        "SELECT oid, encode(lo_get(oid), 'hex') FROM pg_catalog.pg_largeobject_metadata ORDER BY 1",
    )?;
    let mut script = String::from(
        "\\set ON_ERROR_STOP 1\nBEGIN;\nSELECT count(pg_catalog.lo_unlink(oid)) FROM pg_catalog.pg_largeobject_metadata;\n",
    );
    for line in objects.lines() {
        if let Some((oid, data)) = line.split_once('\t') {
            script.push_str(&format!(
                "SELECT pg_catalog.lo_from_bytea({oid}, decode('{}', 'hex'));\n",
                data.trim()
            ));
        }
    }
    script.push_str("COMMIT;\n");
    psql_script(&d.target, &script)?;
    Ok(())
}

/// Gives back each table whose replica identity fedigen changed its previous one, at the source and, when
/// `target`, at the target (whose schema came from the source while it was changed).
fn restore_identities(d: &DatabaseMove, dir: &Path, target: bool) -> Result<(), ReplicateError> {
    let kept = read_identities(&identity_file(dir, d))?;
    if kept.is_empty() {
        return Ok(());
    }
    let mut script = String::from("\\set ON_ERROR_STOP 1\nBEGIN;\n");
    for (table, identity) in &kept {
        let to = if identity == "n" {
            "NOTHING"
        } else {
            "DEFAULT"
        };
        // A table dropped since is no longer anyone's concern.
        script.push_str(&format!(
            "DO $$ BEGIN IF to_regclass({t}) IS NOT NULL THEN EXECUTE 'ALTER TABLE ' || {t} || ' REPLICA IDENTITY {to}'; END IF; END $$;\n",
            t = quote_literal(table)
        ));
    }
    script.push_str("COMMIT;\n");
    psql_script(&d.source, &script)?;
    if target {
        psql_script(&d.target, &script)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(host: &str) -> Postgres {
        Postgres {
            host: host.into(),
            port: 5432,
            user: "u".into(),
            database: "d".into(),
            password_file: None,
            os_user: None,
            tls: Default::default(),
        }
    }

    #[test]
    fn object_names_are_stable_identifiers_distinct_per_job() {
        let d = DatabaseMove {
            name: "db".into(),
            engine: Default::default(),
            source: pg("a"),
            target: pg("b"),
            replication: None,
            url_rewrites: Vec::new(),
        };
        let n = object_name("op", &d);
        assert_eq!(n, object_name("op", &d.clone()));
        assert_eq!(n.len(), 24);
        assert!(
            n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        );
        assert_ne!(n, object_name("other", &d));
        let mut e = d.clone();
        e.target.host = "c".into();
        assert_ne!(n, object_name("op", &e));
    }

    #[test]
    fn connection_values_are_quoted_for_libpq() {
        assert_eq!(conninfo_value("a b"), "'a b'");
    }

    /// The subscription's connection string carries the publisher's encryption: `require` for a host on the
    /// network by default, the job's mode and CA when given, `prefer` on the loopback.
    #[test]
    fn the_subscription_connects_with_the_publishers_encryption() {
        use crate::migrate::job::{Tls, TlsMode};
        let mut p = pg("mastodon-a");
        let info = publisher_conninfo(&p).unwrap();
        assert!(info.contains(" sslmode=require"), "{info}");
        p.tls = Tls {
            mode: Some(TlsMode::VerifyFull),
            ca_file: Some("/etc/ca dir/ca.pem".into()),
        };
        let info = publisher_conninfo(&p).unwrap();
        assert!(info.contains("sslmode=verify-full"), "{info}");
        assert!(info.contains("sslrootcert='/etc/ca dir/ca.pem'"), "{info}");
        let info = publisher_conninfo(&pg("127.0.0.1")).unwrap();
        assert!(info.contains("sslmode=prefer"), "{info}");
        assert_eq!(conninfo_value("it's\\x"), "'it\\'s\\\\x'");
    }
}
