//! `fedigen migrate plan --measure`: the sizes of what moves, asked of the source (read-only): each database's
//! `pg_database_size`, each bucket's `rclone size`, each folder's `du`. A size that cannot be read stays
//! unknown and the reason is returned, so a plan is still made.
//!
//! The connections are the jobs' own (the same password and key files the run reads), so what is measured is
//! what will move.

use std::process::Command;

use super::super::exec;
use super::super::job::{Job, Location, Postgres, S3};
use super::{Kind, Plan};

/// Fills in the sizes of the plan's moves from the source, job by job; returns what could not be measured.
pub fn measure(plan: &mut Plan, jobs: &[(String, Job)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (machine, job) in jobs {
        let app = machine
            .strip_prefix(&format!("{}-", job.operator))
            .unwrap_or(machine);
        let mut set = |kind: Kind, name: &str, result: Result<u64, String>| match result {
            Ok(bytes) => {
                if let Some(m) = plan
                    .moves
                    .iter_mut()
                    .find(|m| m.application == app && m.kind == kind && m.name == name)
                {
                    m.bytes = Some(bytes);
                }
            }
            Err(e) => problems.push(format!("{app} {kind} {name}: {e}")),
        };
        for db in &job.databases {
            set(Kind::Database, &db.name, database_size(&db.source));
        }
        for bucket in &job.buckets {
            set(Kind::Bucket, &bucket.name, bucket_size(&bucket.source));
        }
        for dir in &job.directories {
            set(Kind::Directory, &dir.name, directory_size(&dir.source));
        }
    }
    plan.estimate();
    problems
}

fn number(output: &[u8], what: &str) -> Result<u64, String> {
    let text = String::from_utf8_lossy(output);
    text.split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("{what} printed no size"))
}

fn run(command: Command, what: &str) -> Result<Vec<u8>, String> {
    exec::checked(command, what)
        .map(|o| o.stdout)
        .map_err(|e| e.to_string())
}

/// `pg_database_size` of the database, through psql (`FEDIGEN_PG_BIN` as for the run).
fn database_size(pg: &Postgres) -> Result<u64, String> {
    let psql = match std::env::var_os("FEDIGEN_PG_BIN").filter(|v| !v.is_empty()) {
        Some(dir) => std::path::Path::new(&dir).join("psql"),
        None => "psql".into(),
    };
    let mut c = Command::new(psql);
    c.args([
        "--no-psqlrc",
        "--no-password",
        "--tuples-only",
        "--no-align",
    ])
    .arg("--host")
    .arg(&pg.host)
    .arg("--port")
    .arg(pg.port.to_string())
    .arg("--username")
    .arg(&pg.user)
    .arg("--dbname")
    .arg(&pg.database)
    .args(["--command", "SELECT pg_database_size(current_database())"])
    .env("PGCONNECT_TIMEOUT", "15")
    .env_remove("PGPASSWORD");
    if let Some(file) = &pg.password_file {
        let text = std::fs::read_to_string(file).map_err(|e| {
            format!(
                "cannot read {}: {}",
                file.display(),
                crate::io_error::describe(&e)
            )
        })?;
        c.env("PGPASSWORD", text.trim_end_matches(['\n', '\r']));
    }
    number(&run(c, "measure the database with psql")?, "psql")
}

/// The bytes of every object of the bucket, through `rclone size --json` (configured in its environment).
fn bucket_size(s3: &S3) -> Result<u64, String> {
    let text = std::fs::read_to_string(&s3.key_file).map_err(|e| {
        format!(
            "cannot read {}: {}",
            s3.key_file.display(),
            crate::io_error::describe(&e)
        )
    })?;
    let get = |name: &str| {
        text.lines()
            .filter_map(|l| l.trim().trim_start_matches("export ").split_once('='))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().trim_matches(['"', '\'']).to_owned())
            .ok_or_else(|| format!("{}: no `{name}=` line", s3.key_file.display()))
    };
    let mut c = Command::new("rclone");
    c.env("RCLONE_CONFIG", "/dev/null")
        .env_remove("AWS_CA_BUNDLE")
        .env("RCLONE_CONFIG_FEDIGENSRC_TYPE", "s3")
        .env("RCLONE_CONFIG_FEDIGENSRC_PROVIDER", "Other")
        .env("RCLONE_CONFIG_FEDIGENSRC_ENDPOINT", &s3.endpoint)
        .env("RCLONE_CONFIG_FEDIGENSRC_REGION", &s3.region)
        .env("RCLONE_CONFIG_FEDIGENSRC_FORCE_PATH_STYLE", "true")
        .env(
            "RCLONE_CONFIG_FEDIGENSRC_ACCESS_KEY_ID",
            get("AWS_ACCESS_KEY_ID")?,
        )
        .env(
            "RCLONE_CONFIG_FEDIGENSRC_SECRET_ACCESS_KEY",
            get("AWS_SECRET_ACCESS_KEY")?,
        )
        .args(["size", "--json", "--s3-no-check-bucket"])
        .arg(format!("FEDIGENSRC:{}", s3.bucket));
    let out = run(c, "measure the bucket with rclone size")?;
    serde_json::from_slice::<serde_json::Value>(&out)
        .ok()
        .and_then(|v| v["bytes"].as_u64())
        .ok_or_else(|| "rclone size printed no `bytes`".to_owned())
}

/// The bytes of a folder (`du -sb`), here or over ssh.
fn directory_size(location: &str) -> Result<u64, String> {
    let c = match Location::parse(location)? {
        Location::Local(path) => {
            let mut c = Command::new("du");
            c.arg("-sb").arg(path);
            c
        }
        Location::Ssh { host, path } => {
            let mut c = Command::new("ssh");
            c.args(["-o", "BatchMode=yes", "--", &host, "du", "-sb", &path]);
            c
        }
    };
    number(&run(c, "measure the folder with du")?, "du")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_folder_is_measured_with_du() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![0u8; 5000]).unwrap();
        let bytes = directory_size(&dir.path().display().to_string()).unwrap();
        assert!(bytes >= 5000, "{bytes}");
        assert!(directory_size("relative/path").is_err());
    }
}
