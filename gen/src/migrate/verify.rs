//! Verification: the target holds what the source holds. Per database, what its engine's fingerprint computes
//! at each server ([`pg::data_fingerprint`]: rows and a checksum per table, sequences, large objects, the
//! schema; [`mysql::fingerprint`]: rows and a checksum per table, the schema); per bucket, both listings
//! (key, size) and each object's MD5 as its store keeps it, downloading only the objects one side has no MD5
//! for ([`s3::compare_listings`]); per directory, a checksum manifest of each side (SHA-256 of every file,
//! modes, links); per identity secret, a SHA-256 of each file. Read-only on both sides.
//!
//! It is the run's step before the target is started, and `fedigen migrate verify` on its own. The report
//! says "equal" or names each difference.

use std::process::Command;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::exec::{self, ExecError};
use super::job::{Engine, Job, Location};
use super::{mysql, pg, s3, tree};
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

/// Compares the target with the source for everything `job` moves (`fedigen migrate verify`).
///
/// Both sides are read at once, and on each side every database, bucket and folder at once (a database's
/// tables, and ranges of a large table, on up to as many connections as there are cores: [`pg::data_fingerprint`]).
pub fn verify(job: &Job) -> Result<Report, VerifyError> {
    let (a, b) = super::exec::both(
        || side(job, Which::Source, true, Vec::new()),
        || side(job, Which::Target, true, Vec::new()),
    );
    report(job, a, b, None)
}

/// The run's verification, in two halves: [`source_side`] starts at the freeze (from then on the source no longer
/// changes, so it is read while the delta copies, catch-ups and restores write the target), and this half reads
/// the target once those are done, with the PostgreSQL sources' schemas (read now: the catch-up drops the
/// publication and gives tables their replica identity back at the source, which a schema dump shows; a MySQL
/// source is read whole at the freeze, nothing writes there after it).
///
/// Why: the source's half was half of the freeze window's verification (issue #16's benchmark: 8.8–10 s of a
/// 14–15 s window), and nothing written after the freeze changes it. It is still a comparison of what each side
/// holds, not of what the copies said they did: a change the copies missed is named.
///
/// `early` holds the target's half of the databases and buckets whose copies ended before the others' (read by
/// the run at once, [`target_item`]); the rest is read here. `journal` holds the objects without an MD5 proven
/// equal before the freeze ([`s3::prove_unhashed`]): those not written since are not downloaded again.
pub(crate) fn verify_after_freeze(
    job: &Job,
    mut source: Side,
    early: Vec<Early>,
    journal: &std::path::Path,
) -> Result<Report, VerifyError> {
    let (schemas, target) = super::exec::both(
        || {
            job.databases
                .iter()
                .map(|d| {
                    d.engine
                        .is_postgresql()
                        .then(|| pg::schema_digest(&d.source))
                })
                .collect::<Vec<_>>()
        },
        || side(job, Which::Target, true, early),
    );
    for (database, schema) in source.databases.iter_mut().zip(schemas) {
        // Only PostgreSQL's source schema waits for this half (a MySQL source is read whole at the freeze: nothing
        // after it writes there).
        if let (Database::Postgresql(Ok(f)), Some(schema)) = (&mut *database, schema) {
            match schema {
                Ok(s) => f.schema = s,
                Err(e) => *database = Database::Postgresql(Err(e.into())),
            }
        }
    }
    report(job, source, target, Some(journal))
}

/// What verification reads at the source, without the PostgreSQL databases' schemas: started at the freeze by
/// the run (see [`verify_after_freeze`]).
pub(crate) fn source_side(job: &Job) -> Side {
    side(job, Which::Source, false, Vec::new())
}

/// One database as one side holds it, by the job's engine for it: each engine's own fingerprint, compared only
/// with the same engine's.
pub(crate) enum Database {
    /// A PostgreSQL database's fingerprint (its schema read separately at the source in the run: see
    /// [`verify_after_freeze`]).
    Postgresql(Result<pg::Fingerprint, VerifyError>),
    /// A MySQL database's fingerprint; at the source with the job's URL rewrites applied
    /// ([`mysql::fingerprint`]), so the rewrite is no difference and anything else is.
    Mysql(Result<mysql::Fingerprint, VerifyError>),
}

/// The target's half of one database or bucket, read as soon as its copy is done.
pub(crate) enum Early {
    /// The database at this index of the job.
    Database(usize, Database),
    /// The bucket at this index of the job.
    Bucket(usize, Result<s3::Listing, VerifyError>),
}

/// The target's half of what the copy `step` wrote, when it is a database's (`catchup:`, `restore:`, or
/// `rewrite:` when the job rewrites its URLs; either engine) or a bucket's (`delta:bucket:`): nothing but that step writes it after the freeze, so the run reads it as soon as
/// the step is done, while the other copies go on. A folder's is read by the verification itself (an identity
/// secret may be placed in it after the copies).
pub(crate) fn target_item(job: &Job, step: &str) -> Option<Early> {
    let connections = (pg::connections() / job.databases.len().max(1)).max(1);
    let copied = step
        .strip_prefix("catchup:")
        .or_else(|| step.strip_prefix("restore:"));
    let rewritten = step.strip_prefix("rewrite:");
    if let Some(name) = copied.or(rewritten) {
        let i = job.databases.iter().position(|d| d.name == name)?;
        let d = &job.databases[i];
        // The last step that writes it: a database whose URLs are rewritten changes once more after its copy.
        let last = rewritten.is_some() || d.url_rewrites.is_empty();
        if !last {
            return None;
        }
        return Some(Early::Database(
            i,
            database(d, Which::Target, connections, true),
        ));
    }
    let name = step.strip_prefix("delta:bucket:")?;
    let i = job.buckets.iter().position(|b| b.name == name)?;
    Some(Early::Bucket(
        i,
        s3::list(&job.buckets[i].target).map_err(Into::into),
    ))
}

/// One side of the database `d`, by its engine: PostgreSQL's fingerprint on up to `connections` connections,
/// with its schema when `schema`; MySQL's whole (at the source with the job's URL rewrites applied).
fn database(
    d: &super::job::DatabaseMove,
    which: Which,
    connections: usize,
    schema: bool,
) -> Database {
    let c = match which {
        Which::Source => &d.source,
        Which::Target => &d.target,
    };
    match d.engine {
        Engine::Mysql => {
            let rewrites = match which {
                Which::Source => d.url_rewrites.as_slice(),
                Which::Target => &[],
            };
            Database::Mysql(mysql::fingerprint(c, rewrites).map_err(Into::into))
        }
        Engine::Postgresql => Database::Postgresql((|| {
            if !schema {
                return Ok(pg::data_fingerprint(c, connections)?);
            }
            let (data, digest) = super::exec::both(
                || pg::data_fingerprint(c, connections),
                || pg::schema_digest(c),
            );
            let mut f = data?;
            f.schema = digest?;
            Ok(f)
        })()),
    }
}

/// Which side of the job a [`Side`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Source,
    Target,
}

/// A secret as one side holds it: the SHA-256 of its content and its mode (`None`: the file does not exist;
/// the source's mode is not compared).
type Secret = Option<(String, Option<u32>)>;

/// Everything verification reads at one side, each item's own result (one unreadable item does not hide the
/// others' differences; the first error is returned by the report).
pub(crate) struct Side {
    databases: Vec<Database>,
    buckets: Vec<Result<s3::Listing, VerifyError>>,
    directories: Vec<Result<tree::Manifest, VerifyError>>,
    identity: Vec<Result<Secret, VerifyError>>,
}

/// Reads one side: every database, bucket and folder at once, each on its own thread (a database on up to
/// its share of the cores' connections), the secrets meanwhile.
fn side(job: &Job, which: Which, schema: bool, early: Vec<Early>) -> Side {
    let connections = (pg::connections() / job.databases.len().max(1)).max(1);
    let source = which == Which::Source;
    let mut known_databases: Vec<Option<Database>> = job.databases.iter().map(|_| None).collect();
    let mut known_buckets: Vec<Option<Result<s3::Listing, VerifyError>>> =
        job.buckets.iter().map(|_| None).collect();
    for e in early {
        match e {
            Early::Database(i, r) => known_databases[i] = Some(r),
            Early::Bucket(i, r) => known_buckets[i] = Some(r),
        }
    }
    std::thread::scope(|scope| {
        let databases: Vec<_> = job
            .databases
            .iter()
            .zip(known_databases)
            .map(|(d, known)| match known {
                Some(r) => Ok(r),
                None => Err(scope.spawn(move || database(d, which, connections, schema))),
            })
            .collect();
        let buckets: Vec<_> = job
            .buckets
            .iter()
            .zip(known_buckets)
            .map(|(b, known)| {
                let s3 = if source { &b.source } else { &b.target };
                match known {
                    Some(r) => Ok(r),
                    None => Err(scope.spawn(move || Ok(s3::list(s3)?))),
                }
            })
            .collect();
        let directories: Vec<_> = job
            .directories
            .iter()
            .map(|d| {
                let location = if source { &d.source } else { &d.target };
                scope.spawn(move || remote_manifest(location))
            })
            .collect();
        let identity = job.identity.iter().map(|s| secret(s, which)).collect();
        let fail = "a comparison thread panicked";
        Side {
            databases: databases
                .into_iter()
                .map(|h| h.unwrap_or_else(|h| h.join().expect(fail)))
                .collect(),
            buckets: buckets
                .into_iter()
                .map(|h| h.unwrap_or_else(|h| h.join().expect(fail)))
                .collect(),
            directories: directories
                .into_iter()
                .map(|h| h.join().expect(fail))
                .collect(),
            identity,
        }
    })
}

fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A secret at one side: the source's read where it is (here or over ssh), the target's here with its mode.
fn secret(s: &super::job::SecretMove, which: Which) -> Result<Secret, VerifyError> {
    if which == Which::Source {
        return Ok(Some((digest(&super::remote::read(&s.source)?), None)));
    }
    match std::fs::read(&s.target) {
        Ok(bytes) => {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&s.target)
                .ok()
                .map(|m| m.permissions().mode() & 0o7777);
            Ok(Some((digest(&bytes), mode)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(IoError::new("read", &s.target, e).into()),
    }
}

/// The comparison of the two sides, item by item in the job's order.
fn report(
    job: &Job,
    a: Side,
    b: Side,
    journal: Option<&std::path::Path>,
) -> Result<Report, VerifyError> {
    let mut items = Vec::new();
    for ((d, x), y) in job.databases.iter().zip(a.databases).zip(b.databases) {
        let (compared, differences) = match (x, y) {
            (Database::Postgresql(a), Database::Postgresql(b)) => {
                let (mut a, b) = (a?, b?);
                // The source's rows as the rewrite leaves them: the rewrite is no difference, anything else is.
                super::urls::map_source(d, &mut a)?;
                (
                    format!(
                        "{} tables, {} rows and their checksums, {} sequences, {} large objects, the schema",
                        a.tables.len(),
                        a.tables.values().map(|t| t.0).sum::<u64>(),
                        a.sequences.len(),
                        a.large_objects.0
                    ),
                    pg::differences(&a, &b),
                )
            }
            (Database::Mysql(a), Database::Mysql(b)) => {
                let (a, b) = (a?, b?);
                (
                    format!(
                        "{} tables, {} rows and their checksums, the schema",
                        a.tables.len(),
                        a.tables.values().map(|t| t.0).sum::<u64>(),
                    ),
                    mysql::differences(&a, &b),
                )
            }
            _ => unreachable!("both sides of a database are read by the job's one engine for it"),
        };
        items.push(Item {
            kind: "database",
            name: d.name.clone(),
            compared,
            differences,
        });
    }
    for ((bucket, x), y) in job.buckets.iter().zip(a.buckets).zip(b.buckets) {
        let proven = journal
            .map(|j| s3::load_proofs(&s3::proof_file(j, &bucket.name)))
            .unwrap_or_default();
        let c = s3::compare_listings(&bucket.source, &bucket.target, &x?, &y?, &proven)?;
        items.push(Item {
            kind: "bucket",
            name: bucket.name.clone(),
            compared: format!(
                "{} objects: {} by their stores' MD5, {} proven byte for byte before the freeze and not written since, {} byte for byte",
                c.equal + c.differences.len() as u64,
                c.by_hash,
                c.by_proof,
                c.downloaded
            ),
            differences: c.differences,
        });
    }
    for ((d, x), y) in job.directories.iter().zip(a.directories).zip(b.directories) {
        let (a, b) = (x?, y?);
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
    for ((s, x), y) in job.identity.iter().zip(a.identity).zip(b.identity) {
        let (source, target) = (x?, y?);
        let mut differences = Vec::new();
        match (&source, &target) {
            (_, None) => differences.push(format!("{} does not exist", s.target.display())),
            (Some((want, _)), Some((have, _))) if want != have => {
                differences.push("the target file's content differs".into())
            }
            _ => {}
        }
        if let Some((_, Some(have))) = target {
            let want = crate::state::mode_bits(&s.mode).unwrap_or(0o600);
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

impl From<super::mysql::MysqlError> for VerifyError {
    fn from(e: super::mysql::MysqlError) -> Self {
        match e {
            super::mysql::MysqlError::Exec(e) => VerifyError::Exec(e),
            super::mysql::MysqlError::Io(e) => VerifyError::Io(e),
        }
    }
}
