//! Buckets: `rclone sync` from the source's S3 endpoint to the target's, and `rclone check --download` to
//! prove them equal (an ETag is no checksum for a multipart upload, so verification compares the bytes).
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

fn remote(c: &mut Command, name: &str, s3: &S3) -> Result<(), S3Error> {
    let file = &s3.key_file;
    let text =
        std::fs::read_to_string(file).map_err(|e| IoError::new("read the S3 key from", file, e))?;
    let get = |var: &'static str| {
        env_value(&text, var).ok_or_else(|| S3Error::Key {
            file: file.display().to_string(),
            name: var,
        })
    };
    let prefix = format!("RCLONE_CONFIG_{name}_");
    c.env(format!("{prefix}TYPE"), "s3")
        .env(format!("{prefix}PROVIDER"), "Other")
        .env(format!("{prefix}ENDPOINT"), &s3.endpoint)
        .env(format!("{prefix}REGION"), &s3.region)
        .env(format!("{prefix}FORCE_PATH_STYLE"), "true")
        .env(format!("{prefix}ACCESS_KEY_ID"), get("AWS_ACCESS_KEY_ID")?)
        .env(
            format!("{prefix}SECRET_ACCESS_KEY"),
            get("AWS_SECRET_ACCESS_KEY")?,
        );
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

/// Makes the target bucket's objects exactly the source's (size and modification time decide what moves).
pub fn sync(source: &S3, target: &S3) -> Result<(), S3Error> {
    let c = rclone("sync", &[], source, target)?;
    exec::checked(
        c,
        &format!("copy bucket {} to {}", source.bucket, target.bucket),
    )?;
    Ok(())
}

/// How two buckets compare: objects equal, and each difference named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Objects equal on both sides.
    pub equal: u64,
    /// One line per difference (`only at the source: key`, `differs: key`).
    pub differences: Vec<String>,
}

/// Compares every object's bytes (`rclone check --download --combined -`).
pub fn compare(source: &S3, target: &S3) -> Result<Comparison, S3Error> {
    let c = rclone("check", &["--download", "--combined", "-"], source, target)?;
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
