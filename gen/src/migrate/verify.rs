//! Verification: the target holds what the source holds. Per database, what [`pg::fingerprint`] computes at
//! each server (rows and a checksum per table, sequences, large objects, the schema); per bucket, both listings
//! (key, size) and each object's MD5 as its store keeps it, downloading only the objects one side has no MD5
//! for ([`s3::compare`]); per directory, a checksum manifest of each side (SHA-256 of every file,
//! modes, links); per identity secret, a SHA-256 of each file. Read-only on both sides.
//!
//! It is the run's step before the target is started, and `fedigen migrate verify` on its own. The report
//! says "equal" or names each difference.

use std::process::Command;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::exec::{self, ExecError};
use super::job::{Job, Location};
use super::{pg, s3, tree};
use crate::io_error::IoError;

/// Why verification could not compare (not: found a difference).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A database could not be read.
    #[error(transparent)]
    Pg(#[from] pg::PgError),
    /// A bucket could not be read.
    #[error(transparent)]
    S3(#[from] s3::S3Error),
    /// A folder or file could not be read.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A remote folder's manifest could not be made.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// A secret could not be read.
    #[error(transparent)]
    Remote(#[from] super::remote::RemoteError),
}

/// The comparison of one thing the job moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// `database`, `bucket`, `directory` or `identity`.
    pub kind: &'static str,
    /// Its name in the job.
    pub name: String,
    /// What was compared, for people (`3 tables, 1204 rows`, `57 objects`).
    pub compared: String,
    /// Each difference, one line; empty when equal.
    pub differences: Vec<String>,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// One item per database, bucket, directory and identity secret, in the job's order.
    pub items: Vec<Item>,
}

impl Report {
    /// Whether every item is equal.
    pub fn equal(&self) -> bool {
        self.items.iter().all(|i| i.differences.is_empty())
    }

    /// The report for people: one line per item (`equal` or `DIFFERS`), each difference indented below.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for item in &self.items {
            let verdict = if item.differences.is_empty() {
                "equal"
            } else {
                "DIFFERS"
            };
            out.push_str(&format!(
                "{} {}: {verdict} ({})\n",
                item.kind, item.name, item.compared
            ));
            for d in &item.differences {
                out.push_str(&format!("  {d}\n"));
            }
        }
        out
    }

    /// The report as JSON: `{"equal": bool, "items": [{"kind", "name", "compared", "differences"}]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "equal": self.equal(), "items": self.items })
    }
}

/// Compares the target with the source for everything `job` moves.
///
/// The databases and the buckets are compared at once (a thread each, and each of those asks both sides at
/// once): inside the freeze window, verification takes as long as the slowest comparison, not their sum.
pub fn verify(job: &Job) -> Result<Report, VerifyError> {
    let (databases, buckets, mysql) = std::thread::scope(|scope| {
        let databases: Vec<_> = job
            .databases
            .iter()
            .filter(|d| d.engine.is_postgresql())
            .map(|d| {
                scope.spawn(move || {
                    let (a, b) = super::exec::both(
                        || pg::fingerprint(&d.source),
                        || pg::fingerprint(&d.target),
                    );
                    let mut a = a?;
                    super::urls::map_source(d, &mut a)?;
                    Ok::<_, VerifyError>((a, b?))
                })
            })
            .collect();
        let mysql: Vec<_> = mysql_databases(job)
            .map(|d| scope.spawn(move || super::mysql::compare(d)))
            .collect();
        let buckets: Vec<_> = job
            .buckets
            .iter()
            .map(|b| scope.spawn(move || s3::compare(&b.source, &b.target)))
            .collect();
        let fail = "a comparison thread panicked";
        (
            databases
                .into_iter()
                .map(|h| h.join().expect(fail))
                .collect::<Vec<_>>(),
            buckets
                .into_iter()
                .map(|h| h.join().expect(fail))
                .collect::<Vec<_>>(),
            mysql
                .into_iter()
                .map(|h| h.join().expect(fail))
                .collect::<Vec<_>>(),
        )
    });
    let mut items = Vec::new();
    let postgresql = job.databases.iter().filter(|d| d.engine.is_postgresql());
    for (d, result) in postgresql.zip(databases) {
        let (a, b) = result?;
        items.push(Item {
            kind: "database",
            name: d.name.clone(),
            compared: format!(
                "{} tables, {} rows and their checksums, {} sequences, {} large objects, the schema",
                a.tables.len(),
                a.tables.values().map(|t| t.0).sum::<u64>(),
                a.sequences.len(),
                a.large_objects.0
            ),
            differences: pg::differences(&a, &b),
        });
    }
    for result in mysql {
        items.push(result?);
    }
    for (b, result) in job.buckets.iter().zip(buckets) {
        let c = result?;
        items.push(Item {
            kind: "bucket",
            name: b.name.clone(),
            compared: format!(
                "{} objects: {} by their stores' MD5, {} byte for byte",
                c.equal + c.differences.len() as u64,
                c.by_hash,
                c.downloaded
            ),
            differences: c.differences,
        });
    }
    for d in &job.directories {
        let (a, b) = (remote_manifest(&d.source)?, remote_manifest(&d.target)?);
        let files = a
            .values()
            .filter(|e| matches!(e, tree::Entry::File { .. }))
            .count();
        items.push(Item {
            kind: "directory",
            name: d.name.clone(),
            compared: format!("{} entries, {files} files by SHA-256", a.len()),
            differences: tree::differences(&a, &b),
        });
    }
    for s in &job.identity {
        let digest = |bytes: &[u8]| -> String {
            Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        let source = super::remote::read(&s.source)?;
        let mut differences = Vec::new();
        match std::fs::read(&s.target) {
            Ok(target) if digest(&target) == digest(&source) => {}
            Ok(_) => differences.push("the target file's content differs".into()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                differences.push(format!("{} does not exist", s.target.display()))
            }
            Err(e) => return Err(IoError::new("read", &s.target, e).into()),
        }
        if let Ok(meta) = std::fs::metadata(&s.target) {
            use std::os::unix::fs::PermissionsExt as _;
            let want = super::job::mode_bits(&s.mode).unwrap_or(0o600);
            let have = meta.permissions().mode() & 0o7777;
            if have != want {
                differences.push(format!("mode {have:04o}, the job says {want:04o}"));
            }
        }
        items.push(Item {
            kind: "identity",
            name: s.name.clone(),
            compared: "content (SHA-256) and mode".into(),
            differences,
        });
    }
    Ok(Report { items })
}

/// The job's MySQL databases (compared by `mysql::compare`; the others by [`pg::fingerprint`]).
fn mysql_databases(job: &Job) -> impl Iterator<Item = &super::job::DatabaseMove> {
    job.databases
        .iter()
        .filter(|d| d.engine == super::job::Engine::Mysql)
}

/// A folder's checksum manifest, here or on another machine (`ssh host fedigen migrate manifest PATH`).
fn remote_manifest(location: &str) -> Result<tree::Manifest, VerifyError> {
    match Location::parse(location)
        .map_err(|m| IoError::new("read", location, std::io::Error::other(m)))?
    {
        Location::Local(p) => Ok(tree::manifest(&p)?),
        Location::Ssh { host, path } => {
            let mut c = Command::new("ssh");
            c.args([
                host.as_str(),
                "--",
                "fedigen",
                "migrate",
                "manifest",
                "--",
                path.as_str(),
            ]);
            let out = exec::checked(c, &format!("list {location}"))?;
            serde_json::from_slice(&out.stdout).map_err(|e| {
                VerifyError::Io(IoError::new(
                    "read the manifest of",
                    location,
                    std::io::Error::other(e.to_string()),
                ))
            })
        }
    }
}
