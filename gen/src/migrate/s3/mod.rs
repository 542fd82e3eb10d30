//! Buckets: `rclone sync` from the source's S3 endpoint to the target's, and [`compare`] to prove them equal
//! (both listings and the stores' MD5s; the bytes only of objects a store keeps no MD5 for, since the ETag of a
//! multipart upload is none).
//!
//! rclone is configured through `RCLONE_CONFIG_<REMOTE>_*` variables in its own environment only; no
//! configuration file is read or written (`RCLONE_CONFIG=/dev/null`), and the keys come from the job's key
//! files when the step runs.

use std::process::Command;

use super::exec::{self, ExecError};
use super::job::S3;
use crate::io_error::IoError;

/// A bucket step failed.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// rclone failed or is missing.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// A key file could not be read.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A key file lacks a line.
    #[error(
        "{file}: no `{name}=` line; the key file holds AWS_ACCESS_KEY_ID=… and AWS_SECRET_ACCESS_KEY=…"
    )]
    Key {
        /// The key file.
        file: String,
        /// The missing variable.
        name: &'static str,
    },
    /// rclone exited with 0 but its log does not name these objects as copied, and the source still has them.
    #[error(
        "bucket {bucket}: rclone did not copy {} though it exited with 0; run the same command again, and if it stops here again, copy {} by hand (`rclone copyto`) and report it",
        .keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
        if .keys.len() == 1 { "it" } else { "them" }
    )]
    NotCopied {
        /// The source bucket.
        bucket: String,
        /// The keys not copied.
        keys: Vec<String>,
    },
    /// rclone left objects out of the copy: keys ending in `/` that hold bytes. S3 allows them; rclone takes
    /// such a key for a folder ("Entry doesn't belong in directory … - ignoring") and still exits with 0.
    #[error(
        "bucket {bucket}: rclone cannot copy {} (S3 allows a key ending in `/`, rclone takes it for a folder and leaves it out): rename {} at the source, or delete {} if {} no data, then run the same command again",
        .keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
        if .keys.len() == 1 { "it" } else { "them" },
        if .keys.len() == 1 { "it" } else { "them" },
        if .keys.len() == 1 { "it holds" } else { "they hold" }
    )]
    Uncopyable {
        /// The source bucket.
        bucket: String,
        /// The keys left out.
        keys: Vec<String>,
    },
}

/// Reads `NAME=value` from an environment file (`export`, quotes and comments allowed).
fn env_value(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = line.split_once('=')?;
        if key.trim() != name {
            return None;
        }
        let value = value.trim();
        let unquoted = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        Some(unquoted.to_owned())
    })
}

mod flat;

/// The job's keys for `s3`, read from its key file.
fn keys(s3: &S3) -> Result<flat::Keys, S3Error> {
    let file = &s3.key_file;
    let text =
        std::fs::read_to_string(file).map_err(|e| IoError::new("read the S3 key from", file, e))?;
    let get = |var: &'static str| {
        env_value(&text, var).ok_or_else(|| S3Error::Key {
            file: file.display().to_string(),
            name: var,
        })
    };
    Ok(flat::Keys {
        id: get("AWS_ACCESS_KEY_ID")?,
        secret: get("AWS_SECRET_ACCESS_KEY")?,
    })
}

fn remote(c: &mut Command, name: &str, s3: &S3) -> Result<(), S3Error> {
    let keys = keys(s3)?;
    let prefix = format!("RCLONE_CONFIG_{name}_");
    c.env(format!("{prefix}TYPE"), "s3")
        .env(format!("{prefix}PROVIDER"), "Other")
        .env(format!("{prefix}ENDPOINT"), &s3.endpoint)
        .env(format!("{prefix}REGION"), &s3.region)
        .env(format!("{prefix}FORCE_PATH_STYLE"), "true")
        .env(format!("{prefix}ACCESS_KEY_ID"), &keys.id)
        .env(format!("{prefix}SECRET_ACCESS_KEY"), &keys.secret);
    Ok(())
}

/// `rclone SUBCOMMAND [OPTIONS] FEDIGENSRC:bucket FEDIGENDST:bucket`, both remotes in its environment.
fn rclone(
    subcommand: &str,
    options: &[&str],
    source: &S3,
    target: &S3,
) -> Result<Command, S3Error> {
    let mut c = Command::new("rclone");
    c.env("RCLONE_CONFIG", "/dev/null")
        // An AWS CA bundle in the caller's environment would make rclone refuse a plain-HTTP endpoint.
        .env_remove("AWS_CA_BUNDLE")
        .arg(subcommand)
        .args([
            "--s3-no-check-bucket",
            "--retries",
            "3",
            "--low-level-retries",
            "3",
        ])
        .args(options)
        .arg(format!("FEDIGENSRC:{}", source.bucket))
        .arg(format!("FEDIGENDST:{}", target.bucket));
    remote(&mut c, "FEDIGENSRC", source)?;
    remote(&mut c, "FEDIGENDST", target)?;
    Ok(c)
}

/// What one copy of a bucket did at the target: objects written (and their bytes) and objects removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    /// Objects written at the target (new or changed at the source).
    pub written: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Objects removed at the target (not at the source).
    pub removed: usize,
}

/// Makes the target bucket's objects exactly the source's, moving only what differs: both buckets' flat
/// listings ([`list`], at once), then the objects that are new or changed at the source are copied by name
/// (`rclone copy --files-from-raw --no-traverse --no-check-dest`: no listing by rclone on either side), and
/// the objects only at the target are deleted ([`changes`] says which).
///
/// Why not `rclone sync` (as until issue #16's delta work): rclone lists both buckets folder by folder — one
/// request per folder per side, about 360 for the benchmark's 2,163 objects — and compares object by object;
/// in the freeze window that was most of the bucket's delta. The flat listings are one request per 1,000 keys,
/// and what is written and deleted is exactly the difference. `--fast-list` was no way out: with it rclone
/// 1.60.1 copies nothing under a key that is also another key's folder (`a/b` and `a/b/c`) and exits with 0;
/// the flat listing and a copy by name see both.
///
/// An object is unchanged when its size is equal and both stores keep the same MD5 (a single-part object's
/// ETag, the MD5 rclone records on its multipart uploads), or, where one keeps none, when `proofs` (the journal's
/// [`prove_unhashed`] file) proved the pair equal with both ETags as they are now; any other is written. So a
/// same-size rewrite of an object without an MD5 is copied too, which `rclone sync --checksum` (sizes only then)
/// missed.
///
/// A key ending in `/` that holds bytes is one rclone cannot copy (it is a folder to rclone): this fails naming
/// each ([`S3Error::Uncopyable`]) before copying, so the bulk copy stops the run before the freeze instead of
/// the verification after it. (An empty one is a folder marker, which the listing leaves out as rclone does.) A
/// key holding a line break cannot be named in rclone's list of files: then the whole bucket goes through
/// `rclone sync --checksum` as before.
pub fn sync(source: &S3, target: &S3, proofs: Option<&std::path::Path>) -> Result<Copied, S3Error> {
    let (a, b) = exec::both(|| list(source), || list(target));
    let (a, b) = (a?, b?);
    let proven = proofs.map(load_proofs).unwrap_or_default();
    let Changes { write, remove } = changes(&a, &b, &proven);
    let uncopyable: Vec<String> = write
        .iter()
        .filter(|k| k.ends_with('/'))
        .map(|k| (*k).to_owned())
        .collect();
    if !uncopyable.is_empty() {
        return Err(S3Error::Uncopyable {
            bucket: source.bucket.clone(),
            keys: uncopyable,
        });
    }
    let copied = Copied {
        written: write.len(),
        bytes: write.iter().map(|k| a[*k].size.max(0) as u64).sum(),
        removed: remove.len(),
    };
    if write.iter().any(|k| k.contains(['\n', '\r'])) {
        whole_sync(source, target)?;
        return Ok(copied);
    }
    if !write.is_empty() {
        copy_keys(source, target, &write)?;
    }
    if !remove.is_empty() {
        let keys = keys(target)?;
        for key in &remove {
            flat::delete(target, &keys, key)?;
        }
    }
    Ok(copied)
}

/// What makes a target's listing the source's: the keys to write (new at the source, or changed) and the keys
/// to remove (only at the target), each in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Changes<'a> {
    /// Keys the source has and the target lacks or holds otherwise.
    pub(crate) write: Vec<&'a str>,
    /// Keys only the target has.
    pub(crate) remove: Vec<&'a str>,
}

/// The difference between the source's listing `a` and the target's `b`, with the objects `proven` equal
/// ([`sync`] says when an object counts as changed).
pub(crate) fn changes<'a>(a: &'a Listing, b: &'a Listing, proven: &Proven) -> Changes<'a> {
    let write = a
        .iter()
        .filter(|(key, x)| match b.get(*key) {
            None => true,
            Some(y) => match (&x.md5, &y.md5) {
                _ if y.size != x.size => true,
                (Some(m), Some(n)) => m != n,
                _ => proven.get(*key) != Some(&(x.size, x.etag.clone(), y.etag.clone())),
            },
        })
        .map(|(key, _)| key.as_str())
        .collect();
    let remove = b
        .keys()
        .filter(|key| !a.contains_key(*key))
        .map(String::as_str)
        .collect();
    Changes { write, remove }
}

/// Copies the objects `keys` (none holding a line break) from `source` to `target` by name: rclone lists
/// neither bucket and writes each ([`rounds`] of them), and its log must name each as copied; a key it does not
/// name fails the step ([`S3Error::NotCopied`]) unless the source no longer has it (deleted while the source
/// still served, before the freeze: the next copy removes it at the target too).
fn copy_keys(source: &S3, target: &S3, keys: &[&str]) -> Result<(), S3Error> {
    let dir = tempfile::tempdir()
        .map_err(|e| IoError::new("create a temporary folder in", std::env::temp_dir(), e))?;
    let mut missing = Vec::new();
    for round in rounds(keys) {
        let files_from = files_from(dir.path(), &round)?;
        let c = rclone(
            "copy",
            &[
                files_from.as_str(),
                "--no-traverse",
                "--no-check-dest",
                "--use-json-log",
                "--verbose",
                "--checkers",
                "16",
                "--transfers",
                "8",
            ],
            source,
            target,
        )?;
        let out = exec::checked(
            c,
            &format!("copy bucket {} to {}", source.bucket, target.bucket),
        )?;
        let copied = copied_objects(&String::from_utf8_lossy(&out.stderr));
        missing.extend(round.into_iter().filter(|k| !copied.contains(*k)));
    }
    if missing.is_empty() {
        return Ok(());
    }
    let keys = self::keys(source)?;
    let mut still_there = Vec::new();
    for key in missing {
        if flat::exists(source, &keys, key)? {
            still_there.push(key.to_owned());
        }
    }
    if still_there.is_empty() {
        Ok(())
    } else {
        Err(S3Error::NotCopied {
            bucket: source.bucket.clone(),
            keys: still_there,
        })
    }
}

/// `keys` in rounds, none of which holds both a key and a key under it as a folder (`a/b` and `a/b/c`): given
/// both in one list of files, rclone 1.60.1 copies the object `a/b` and nothing under `a/b/`, and exits with 0
/// (seen against Garage 2.5.0). A key's round is the number of its folders that are keys of the list too, so
/// `a/b/c` follows `a/b`; a bucket without such keys is one round.
fn rounds<'a>(keys: &[&'a str]) -> Vec<Vec<&'a str>> {
    let set: std::collections::HashSet<&str> = keys.iter().copied().collect();
    let mut rounds: Vec<Vec<&'a str>> = Vec::new();
    for key in keys {
        let depth = key
            .match_indices('/')
            .filter(|(i, _)| set.contains(&key[..*i]))
            .count();
        if rounds.len() <= depth {
            rounds.resize_with(depth + 1, Vec::new);
        }
        rounds[depth].push(key);
    }
    rounds
}

/// The objects rclone's JSON log (`--use-json-log --verbose`) says it copied (`"msg": "Copied (new)"`,
/// `"Copied (replaced existing)"`, …).
fn copied_objects(log: &str) -> std::collections::HashSet<String> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| {
            entry["msg"]
                .as_str()
                .is_some_and(|m| m.starts_with("Copied"))
        })
        .filter_map(|entry| entry["object"].as_str().map(str::to_owned))
        .collect()
}

/// `rclone sync --checksum` of the whole bucket, rclone listing both folder by folder: what [`sync`] falls
/// back to when a key cannot be named in rclone's list of files.
fn whole_sync(source: &S3, target: &S3) -> Result<(), S3Error> {
    let c = rclone("sync", &["--checksum"], source, target)?;
    let out = exec::checked(
        c,
        &format!("copy bucket {} to {}", source.bucket, target.bucket),
    )?;
    uncopied(source, &out.stderr)
}

/// Fails naming the keys rclone's log (`stderr`) says it left out as folders, though it exits with 0.
fn uncopied(source: &S3, stderr: &[u8]) -> Result<(), S3Error> {
    let keys = ignored_entries(&String::from_utf8_lossy(stderr));
    if keys.is_empty() {
        Ok(())
    } else {
        Err(S3Error::Uncopyable {
            bucket: source.bucket.clone(),
            keys,
        })
    }
}

/// The keys rclone's log says it left out as folders (`… ERROR : KEY: Entry doesn't belong in directory "…"
/// (same as directory) - ignoring`).
fn ignored_entries(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| {
            let (head, _) = line.rsplit_once(": Entry doesn't belong in directory ")?;
            let (_, key) = head.split_once(" ERROR : ")?;
            Some(key.to_owned())
        })
        .collect()
}

/// How two buckets compare: objects equal, and each difference named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Objects equal on both sides.
    pub equal: u64,
    /// Of them, those proven equal by the MD5 each store keeps (no bytes read).
    pub by_hash: u64,
    /// Of them, objects without an MD5 proven equal byte for byte before the freeze and not written since at
    /// either side (both ETags as when proven: [`prove_unhashed`]).
    pub by_proof: u64,
    /// Of them, those downloaded from both sides and compared byte for byte.
    pub downloaded: u64,
    /// One line per difference (`only at the source: key`, `differs: key`).
    pub differences: Vec<String>,
}

/// A bucket's objects: key → size and the store's MD5 ([`list`]).
pub type Listing = std::collections::BTreeMap<String, Listed>;

/// One object of a listing: its size and its MD5 when the store has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Bytes.
    pub size: i64,
    /// The store's MD5 (lower-case hex), when it keeps one.
    pub md5: Option<String>,
    /// The store's ETag (without quotes): for an object without an MD5, what changes when it is written again
    /// ([`prove_unhashed`]).
    pub etag: String,
}

/// Every object of `s3`: key → size and MD5, through S3's flat listing ([`list_paged`], 1,000 keys a request).
pub(crate) fn list(s3: &S3) -> Result<Listing, S3Error> {
    list_paged(s3, 1000)
}

/// Every object of `s3`, `page` keys a ListObjectsV2 request (a parameter so tests exercise the pagination).
///
/// The MD5 is the store's: the ETag of an object uploaded in one part (computed by the server from the bytes
/// it received), or the `md5chksum` rclone records on its multipart uploads (one HEAD each, as `rclone lsjson
/// --hash-type MD5` did here before). An object uploaded in parts by another client has none. Flat, not folder
/// by folder as `rclone lsjson --recursive` lists: one request per 1,000 keys (issue #16), and a key that is
/// another key's folder (`a/b`, `a/b/c`) is listed as both. Empty keys ending in `/` (folder markers) are left
/// out, as rclone leaves them out.
pub fn list_paged(s3: &S3, page: u32) -> Result<Listing, S3Error> {
    flat::list(s3, &keys(s3)?, page)
}

/// Compares two buckets: both listings (keys and sizes), each object's MD5 where both stores keep one, and the
/// bytes of the others only (`rclone check --download` of just those keys).
///
/// Why not download everything (as before issue #16's benchmark): inside the freeze window that read every
/// object from both stores again (49–70 s for 1 GiB). A store's MD5 is computed from the bytes it stored, so
/// two equal MD5s with equal sizes are the same object; a changed object, even of the same size, has another.
///
/// The listings are made by [`list`] beforehand: the source's may be taken at the freeze (it no longer changes)
/// while the target is still being written, so only the target's is in the freeze window's tail.
pub(crate) fn compare_listings(
    source: &S3,
    target: &S3,
    a: &Listing,
    b: &Listing,
    proven: &Proven,
) -> Result<Comparison, S3Error> {
    let mut result = Comparison::default();
    let mut unhashed = Vec::new();
    for (key, x) in a {
        match b.get(key) {
            None => result
                .differences
                .push(format!("only at the source: {key}")),
            Some(y) if y.size != x.size => result.differences.push(format!(
                "differs: {key} ({} bytes at the source, {} at the target)",
                x.size, y.size
            )),
            Some(Listed { md5: Some(m), .. }) if x.md5.is_some() => {
                if x.md5.as_ref() == Some(m) {
                    result.equal += 1;
                    result.by_hash += 1;
                } else {
                    result.differences.push(format!("differs: {key}"));
                }
            }
            Some(y) if proven.get(key) == Some(&(x.size, x.etag.clone(), y.etag.clone())) => {
                result.equal += 1;
                result.by_proof += 1;
            }
            Some(_) => unhashed.push(key.as_str()),
        }
    }
    for key in b.keys().filter(|k| !a.contains_key(*k)) {
        result
            .differences
            .push(format!("only at the target: {key}"));
    }
    if unhashed.is_empty() {
        return Ok(result);
    }
    if unhashed.iter().any(|k| k.contains(['\n', '\r'])) {
        // rclone's list of files is one key a line: a key holding a line break cannot be named in it.
        let all = check_download(source, target, &[])?;
        return Ok(Comparison {
            downloaded: all.equal,
            ..all
        });
    }
    let downloaded = download_compare(source, target, &unhashed)?;
    result.equal += downloaded.equal;
    result.downloaded += downloaded.equal;
    result.differences.extend(downloaded.differences);
    Ok(result)
}

/// `rclone check --download` of just `keys` (none holding a line break): each object's bytes at both sides.
fn download_compare(source: &S3, target: &S3, keys: &[&str]) -> Result<Comparison, S3Error> {
    let dir = tempfile::tempdir()
        .map_err(|e| IoError::new("create a temporary folder in", std::env::temp_dir(), e))?;
    let files_from = files_from(dir.path(), keys)?;
    check_download(source, target, &[files_from.as_str()])
}

/// rclone's `--files-from-raw=FILE` option naming `keys` (none holding a line break), one a line, written to
/// `keys` in `dir`: how the copy and the comparison hand rclone just those objects.
fn files_from(dir: &std::path::Path, keys: &[&str]) -> Result<String, S3Error> {
    let list = dir.join("keys");
    std::fs::write(&list, keys.join("\n") + "\n").map_err(|e| IoError::new("write", &list, e))?;
    let mut option = std::ffi::OsString::from("--files-from-raw=");
    option.push(&list);
    Ok(option.to_string_lossy().into_owned())
}

/// Objects without an MD5 proven equal at both sides: key → size, the source's ETag and the target's when
/// proven ([`prove_unhashed`]).
pub type Proven = std::collections::BTreeMap<String, (i64, String, String)>;

/// Where a job's journal keeps bucket `name`'s [`Proven`] objects.
pub(crate) fn proof_file(journal: &std::path::Path, name: &str) -> std::path::PathBuf {
    journal.join(format!("proven-{name}.json"))
}

/// The proofs in `file` (none when it is missing or unreadable: the objects are then compared in the window).
pub fn load_proofs(file: &std::path::Path) -> Proven {
    std::fs::read(file)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Before the freeze, while the source still serves: downloads and compares, at both sides, the objects that
/// no MD5 proves equal (equal sizes, an MD5 missing at one side at least: multipart uploads by the
/// applications, PeerTube's videos above its part size first), and records in `file` each found equal with both
/// ETags. Returns how many objects are proven.
///
/// Why (issue #16's operator review, S8): the verification after the freeze had to download every such object
/// from both stores inside the window — for PeerTube the video library twice. An object written again at either
/// side gets another ETag, so a proof holds exactly while both ETags are as recorded; the verification then
/// downloads only the objects written since. The source's listing is read again after the download: an object
/// changed during it (another ETag) is not recorded. Proofs still valid are kept, so a repeated pre-copy
/// downloads only what changed.
pub fn prove_unhashed(source: &S3, target: &S3, file: &std::path::Path) -> Result<usize, S3Error> {
    let (a, b) = exec::both(|| list(source), || list(target));
    let (a, b) = (a?, b?);
    let old = load_proofs(file);
    let mut proven = Proven::new();
    let mut todo = Vec::new();
    for (key, x) in &a {
        let Some(y) = b.get(key) else { continue };
        if x.size != y.size || (x.md5.is_some() && y.md5.is_some()) {
            continue;
        }
        let pair = (x.size, x.etag.clone(), y.etag.clone());
        if old.get(key) == Some(&pair) {
            proven.insert(key.clone(), pair);
        } else if !key.contains(['\n', '\r']) {
            todo.push(key.as_str());
        }
    }
    if !todo.is_empty() {
        let compared = download_compare(source, target, &todo)?;
        let again = list(source)?;
        for key in todo {
            let named = compared
                .differences
                .iter()
                .any(|d| d.split_once(": ").is_some_and(|(_, k)| k == key));
            let unchanged = again.get(key).map(|l| &l.etag) == Some(&a[key].etag);
            if !named && unchanged {
                proven.insert(
                    key.to_owned(),
                    (a[key].size, a[key].etag.clone(), b[key].etag.clone()),
                );
            }
        }
    }
    let text = serde_json::to_vec(&proven).expect("proofs serialise");
    let tmp = file.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(|e| IoError::new("write", &tmp, e))?;
    std::fs::rename(&tmp, file).map_err(|e| IoError::new("rename into place", file, e))?;
    Ok(proven.len())
}

/// Compares two buckets as the run's verification does, with the proofs in `proofs` (a job's journal file, or
/// none): what `fedigen migrate verify` reports per bucket.
pub fn compare(
    source: &S3,
    target: &S3,
    proofs: Option<&std::path::Path>,
) -> Result<Comparison, S3Error> {
    let (a, b) = exec::both(|| list(source), || list(target));
    let proven = proofs.map(load_proofs).unwrap_or_default();
    compare_listings(source, target, &a?, &b?, &proven)
}

/// `rclone check --download --combined -` with `options`: each object's bytes compared.
fn check_download(source: &S3, target: &S3, options: &[&str]) -> Result<Comparison, S3Error> {
    let mut args = vec!["--download", "--combined", "-"];
    args.extend_from_slice(options);
    let c = rclone("check", &args, source, target)?;
    let out = exec::output(
        c,
        &format!("compare bucket {} with {}", source.bucket, target.bucket),
    )?;
    let mut result = Comparison::default();
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        let Some((mark, key)) = line.split_once(' ') else {
            continue;
        };
        match mark {
            "=" => result.equal += 1,
            // rclone's marks: `+` only in the first (source) remote, `-` only in the second (target).
            "+" => result
                .differences
                .push(format!("only at the source: {key}")),
            "-" => result
                .differences
                .push(format!("only at the target: {key}")),
            "*" => result.differences.push(format!("differs: {key}")),
            "!" => result
                .differences
                .push(format!("could not be compared: {key}")),
            _ => {}
        }
    }
    // rclone exits non-zero on differences; other failures (no access, no bucket) say nothing per object.
    if !out.success && result.differences.is_empty() {
        return Err(ExecError::Failed {
            program: "rclone".into(),
            what: format!("compare bucket {} with {}", source.bucket, target.bucket),
            status: out.status,
            output: exec::tail(&out.stderr, b""),
        }
        .into());
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line rclone 1.60 writes for a key ending in `/` (seen against Garage 2.5.0), and one for an
    /// unrelated error, which is not a key left out.
    #[test]
    fn keys_rclone_leaves_out_are_read_from_its_log() {
        let log = "2026/11/28 15:16:12 ERROR : t/z q/: Entry doesn't belong in directory \"t/z q\" (same as directory) - ignoring\n\
                   2026/11/28 15:16:12 ERROR : a: b/: Entry doesn't belong in directory \"a: b\" (same as directory) - ignoring\n\
                   2026/11/28 15:16:12 ERROR : x: Failed to copy: 404\n";
        assert_eq!(ignored_entries(log), ["t/z q/", "a: b/"]);
        assert!(ignored_entries("").is_empty());
    }

    fn listing() -> impl proptest::strategy::Strategy<Value = Listing> {
        use proptest::prelude::*;
        let md5 = prop::option::of(prop::sample::select(vec!["aa", "bb"]).prop_map(String::from));
        prop::collection::btree_map(
            prop::sample::select(vec!["a", "a/b", "a/b/c", "x y", "z"]).prop_map(String::from),
            (0i64..3, md5).prop_map(|(size, md5)| Listed {
                size,
                md5,
                etag: String::new(),
            }),
            0..5,
        )
    }

    proptest::proptest! {
        /// Whatever the two listings: the target with the changes applied (each written key taking the source's
        /// object, each removed key gone) has exactly the source's keys, with the source's size and, wherever
        /// both stores keep an MD5, its MD5; and nothing is written that both MD5s prove equal (the copy is the
        /// difference only; without proofs an object with no MD5 on a side is written again).
        #[test]
        fn the_changes_make_the_target_the_source_and_no_more(a in listing(), b in listing()) {
            let Changes { write, remove } = changes(&a, &b, &Proven::new());
            let mut after = b.clone();
            for key in &remove {
                proptest::prop_assert!(!a.contains_key(*key), "{key} removed though at the source");
                after.remove(*key);
            }
            for key in &write {
                after.insert((*key).to_owned(), a[*key].clone());
            }
            proptest::prop_assert_eq!(after.keys().collect::<Vec<_>>(), a.keys().collect::<Vec<_>>());
            for (key, x) in &a {
                let y = &after[key];
                proptest::prop_assert_eq!(x.size, y.size, "{}", key);
                if let (Some(m), Some(n)) = (&x.md5, &y.md5) {
                    proptest::prop_assert_eq!(m, n, "{}", key);
                }
                // Without proofs an object no MD5 vouches for is written again.
                let unchanged = b.get(key).is_some_and(|y| {
                    y.size == x.size && x.md5.is_some() && x.md5 == y.md5
                });
                proptest::prop_assert_eq!(write.contains(&key.as_str()), !unchanged, "{}", key);
            }
        }
    }

    /// rclone's JSON log of a copy (1.60.1's lines): the objects named as copied, not the stats or errors.
    #[test]
    fn copied_objects_are_read_from_rclones_json_log() {
        let log = r#"{"level":"info","msg":"Copied (new)","object":"a/b","source":"operations/operations.go:566"}
{"level":"info","msg":"Copied (replaced existing)","object":"x: y","source":"operations/operations.go:566"}
{"level":"error","msg":"Failed to copy: 404","object":"gone","source":"operations/copy.go:1"}
{"level":"info","msg":"\nTransferred: 2 / 2, 100%\n","stats":{"transfers":2}}
not json"#;
        let mut got: Vec<_> = copied_objects(log).into_iter().collect();
        got.sort();
        assert_eq!(got, ["a/b", "x: y"]);
    }

    proptest::proptest! {
        /// Every key is in exactly one round, and no round holds a key together with a key under it as a folder.
        #[test]
        fn no_round_holds_a_key_and_a_key_under_it(
            keys in proptest::collection::btree_set("[ab/]{1,6}", 0..12)
        ) {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let rounds = rounds(&keys);
            let mut all: Vec<&str> = rounds.iter().flatten().copied().collect();
            all.sort_unstable();
            proptest::prop_assert_eq!(&all, &keys);
            for round in &rounds {
                for x in round {
                    for y in round {
                        proptest::prop_assert!(!y.starts_with(&format!("{x}/")), "{} and {} in one round", x, y);
                    }
                }
            }
        }
    }

    #[test]
    fn key_files_are_read_as_environment_files() {
        let text =
            "# keys\nexport AWS_ACCESS_KEY_ID=\"GK1\"\nAWS_SECRET_ACCESS_KEY='s=ecret'\nOTHER=x\n";
        assert_eq!(env_value(text, "AWS_ACCESS_KEY_ID").as_deref(), Some("GK1"));
        assert_eq!(
            env_value(text, "AWS_SECRET_ACCESS_KEY").as_deref(),
            Some("s=ecret")
        );
        assert_eq!(env_value(text, "AWS_SESSION_TOKEN"), None);
    }
}
