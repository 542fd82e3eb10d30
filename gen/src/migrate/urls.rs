//! Stored absolute URLs follow the move, for PostgreSQL databases (MySQL's side is in `mysql.rs`): the job's
//! `url_rewrites` (from the manifests' `[[state.url_columns]]`) are applied at the target after the restore
//! (step `rewrite:NAME`), and verification hashes the source's rows as the rewrite leaves them.
//!
//! Why: an application that stores the absolute URL of its media (Pixelfed's `media.cdn_url`, built from
//! `AWS_URL` when the photo was stored) would otherwise keep naming the old provider's media host, which stops
//! serving when the old provider is retired.
//!
//! Prefixes reach the SQL only as hexadecimal (`convert_from(decode('…', 'hex'), 'UTF8')`), so no quote,
//! backslash or `standard_conforming_strings` setting can change a statement's meaning; a value is rewritten when
//! its first characters equal `from` (a deterministic collation compares them byte for byte).

use super::job::{DatabaseMove, Postgres, UrlRewrite};
use super::pg::{self, Fingerprint, PgError};

/// Rewrites, in one transaction, each of `d`'s URL columns at the target. Idempotent: the job refuses prefixes
/// one of which begins the other, so a rewritten value never begins with `from` again.
pub(crate) fn rewrite(d: &DatabaseMove) -> Result<(), PgError> {
    if d.url_rewrites.is_empty() {
        return Ok(());
    }
    let mut sql = String::from("BEGIN;\n");
    for r in &d.url_rewrites {
        sql.push_str(&rewrite_statement(r));
        sql.push_str(";\n");
    }
    sql.push_str("COMMIT;\n");
    pg::psql_script(&d.target, &sql)?;
    Ok(())
}

/// The `UPDATE` of one URL column.
pub(crate) fn rewrite_statement(r: &UrlRewrite) -> String {
    let column = quote_identifier(&r.column);
    format!(
        "UPDATE {} SET {column} = {} || substr({column}, {}) WHERE {}",
        quote_identifier(&r.table),
        text_literal(&r.to),
        r.from.chars().count() + 1,
        begins_with(&column, &r.from)
    )
}

/// Replaces, in the source's fingerprint `a`, the checksum of each table with URL columns by the checksum of
/// its rows as the rewrite leaves them (computed by the source's server, read-only): so verification does not
/// report the rewrite as a difference, and reports any other (and a rewrite that did not run).
pub(crate) fn map_source(d: &DatabaseMove, a: &mut Fingerprint) -> Result<(), PgError> {
    let mut tables: Vec<&str> = d.url_rewrites.iter().map(|r| r.table.as_str()).collect();
    tables.sort_unstable();
    tables.dedup();
    for table in tables {
        if let Some((key, query)) = mapped_query(&d.source, table, &d.url_rewrites)? {
            let line = pg::psql(&d.source, &query)?;
            if let Some((n, sum)) = line.trim_end().split_once('\t') {
                a.tables
                    .insert(key, (n.trim().parse().unwrap_or(u64::MAX), sum.to_owned()));
            }
        }
    }
    Ok(())
}

/// The fingerprint's key of `table` (`schema.table`) and the query of its rows' count and checksum with the URL
/// columns rewritten; `None` when the source has no such table.
fn mapped_query(
    pg: &Postgres,
    table: &str,
    rewrites: &[UrlRewrite],
) -> Result<Option<(String, String)>, PgError> {
    let columns = pg::psql(
        pg,
        &format!(
            "SELECT format('%I.%I', n.nspname, c.relname), a.attname FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             WHERE c.oid = pg_catalog.to_regclass({}) ORDER BY a.attnum",
            text_literal(&quote_identifier(table))
        ),
    )?;
    let mut key = None;
    let mut exprs = Vec::new();
    for line in columns.lines() {
        let Some((qualified, column)) = line.split_once('\t') else {
            continue;
        };
        key = Some(qualified.to_owned());
        let quoted = quote_identifier(column);
        // A column may hold URLs of several buckets (PeerTube's `videoFile.fileUrl`), each its own rewrite; no
        // prefix begins another (the job refuses it), so at most one applies to a value.
        let whens: Vec<String> = rewrites
            .iter()
            .filter(|r| r.table == table && r.column == column)
            .map(|r| {
                format!(
                    "WHEN {} THEN {} || substr({quoted}, {})",
                    begins_with(&quoted, &r.from),
                    text_literal(&r.to),
                    r.from.chars().count() + 1
                )
            })
            .collect();
        exprs.push(if whens.is_empty() {
            quoted
        } else {
            format!("CASE {} ELSE {quoted} END", whens.join(" "))
        });
    }
    Ok(key.map(|key| {
        let query = format!(
            "SELECT {} FROM (SELECT {} FROM {key}) AS r",
            pg::ROW_CHECKSUM,
            exprs.join(", ")
        );
        (key, query)
    }))
}

/// Whether the SQL expression `value` begins with `prefix`.
fn begins_with(value: &str, prefix: &str) -> String {
    format!(
        "left({value}, {}) = {}",
        prefix.chars().count(),
        text_literal(prefix)
    )
}

/// `s` as a text value written in hexadecimal.
pub(crate) fn text_literal(s: &str) -> String {
    let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
    format!("convert_from(decode('{hex}', 'hex'), 'UTF8')")
}

/// `name` as a PostgreSQL identifier: in double quotes, a double quote doubled.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any prefix reaches the statement only as hex digits that decode to its bytes; the table stays one
        /// quoted identifier.
        #[test]
        fn prefixes_and_identifiers_are_quoted(from in "\\PC*", to in "\\PC*", table in "\\PC{1,8}", column in "[a-z_\"]{1,8}") {
            let r = UrlRewrite { table: table.clone(), column: column.clone(), from: from.clone(), to: to.clone() };
            let sql = rewrite_statement(&r);
            let (qt, qc) = (quote_identifier(&table), quote_identifier(&column));
            let head = format!("UPDATE {qt} SET {qc} = ");
            prop_assert!(sql.starts_with(&head));
            prop_assert!(qt[1..qt.len() - 1].replace("\"\"", "").find('"').is_none());
            // The longer quoted identifier first: the shorter may be part of it.
            let (long, short) = if qt.len() >= qc.len() { (&qt, &qc) } else { (&qc, &qt) };
            let rest = sql.replace(long.as_str(), "").replace(short.as_str(), "");
            prop_assert!(rest.chars().all(|c| c.is_ascii_alphanumeric() || " ,()'=_|".contains(c)), "{}", rest);
            let hexes: Vec<Vec<u8>> = rest.match_indices("decode('").map(|(i, _)| {
                let start = i + "decode('".len();
                let hex = &rest[start..start + rest[start..].find('\'').unwrap()];
                (0..hex.len()).step_by(2).map(|k| u8::from_str_radix(&hex[k..k + 2], 16).unwrap()).collect()
            }).collect();
            prop_assert_eq!(hexes, vec![to.as_bytes().to_vec(), from.as_bytes().to_vec()]);
        }
    }
}
