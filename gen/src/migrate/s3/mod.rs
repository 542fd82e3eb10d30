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

/// Makes the target bucket's objects exactly the source's. An object moves when its size or its MD5 (the
/// stores' listings: a single-part object's ETag, the MD5 rclone records on its multipart uploads) differ, or
/// its size when one side keeps no MD5 (`--checksum`). Listed folder by folder, not with `--fast-list`: a bucket
/// may hold a key that is also another key's folder (`a/b` and `a/b/c`), and with `--fast-list` rclone (1.60.1,
/// against Garage 2.5.0) copies `a/b` and nothing under `a/b/`, and exits with 0 — what CI's random shapes hit
/// ("only at the source: i/n ha2d/s7  wl", under the object `i/n ha2d`); `migrate_real`'s
/// `a_bucket_whose_keys_are_other_keys_folders_moves_whole` fails with it. The per-folder listing sees both.
///
/// Why not size and modification time (rclone's default, until issue #16's freeze-window work): a time is
/// metadata only a HEAD request per object reads, on both sides, and the delta after the freeze paid for them
/// (BENCHMARKS.md, issue #16); and a rewrite with the same size and time
/// (a restored backup) is missed by it, not by the MD5. What the copy misses either way, the verification
/// names ([`compare_listings`] downloads what no MD5 proves).
///
/// A key ending in `/` that holds bytes is one rclone cannot copy (it is a folder to rclone): rclone says so and
/// exits with 0, and this fails naming each such key ([`S3Error::Uncopyable`]), so the bulk copy stops the run
/// before the freeze instead of the verification after it. (An empty one is a folder marker: rclone neither
/// copies nor lists it.)
pub fn sync(source: &S3, target: &S3) -> Result<(), S3Error> {
    let c = rclone("sync", &["--checksum"], source, target)?;
    let out = exec::checked(
        c,
        &format!("copy bucket {} to {}", source.bucket, target.bucket),
    )?;
    let keys = ignored_entries(&String::from_utf8_lossy(&out.stderr));
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
    let dir = tempfile::tempdir()
        .map_err(|e| IoError::new("create a temporary folder in", std::env::temp_dir(), e))?;
    let keys = dir.path().join("keys");
    std::fs::write(&keys, unhashed.join("\n") + "\n")
        .map_err(|e| IoError::new("write", &keys, e))?;
    let mut files_from = std::ffi::OsString::from("--files-from-raw=");
    files_from.push(&keys);
    let files_from = files_from.to_string_lossy().into_owned();
    let downloaded = check_download(source, target, &[files_from.as_str()])?;
    result.equal += downloaded.equal;
    result.downloaded += downloaded.equal;
    result.differences.extend(downloaded.differences);
    Ok(result)
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
