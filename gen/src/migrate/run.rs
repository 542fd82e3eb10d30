//! The engine: a job's steps in order, each recorded in the journal when it completed, each idempotent, so a
//! run killed at any moment is resumed by running it again.
//!
//! Order, and why:
//! 0. `check:*` (not journaled, every run) — each database still to restore can be restored at its target (same
//!    encoding and collation; its extensions there or creatable), so such a problem stops the run before the
//!    freeze, not after;
//! 1. `bulk:bucket:*`, `bulk:dir:*` — the long copies, while the source still serves (no downtime);
//! 2. `freeze` — the source's applications stop: from here its data no longer changes;
//! 3. `delta:bucket:*`, `delta:dir:*` — the same copies again, moving only what changed since the bulk copy;
//! 4. `dump:*`, `restore:*` — each database dumped at the source (into the journal folder) and restored at the
//!    target in one transaction;
//! 5. `identity:*` — the secrets that make the target the same server, placed with their owner and mode;
//! 6. `verify` — the target holds what the source holds (see [`super::verify`]); on any difference the run
//!    stops here;
//! 7. `start`, `health` — the target's applications started and checked;
//! 8. `dns` — the switch, last. Until it, nothing was written at the source, so `fedigen migrate rollback`
//!    (starting the source again) returns to where the operator was.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::exec::{self, ExecError};
use super::job::{Job, Location, SecretMove};
use super::journal::{Journal, JournalError, write_atomic};
use super::verify::{self, Report, VerifyError};
use super::{pg, s3, tree};
use crate::io_error::IoError;

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The journal cannot be used.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A step failed; the run can be resumed once the cause is fixed, or rolled back.
    #[error("step {step} failed: {message}")]
    Step {
        /// The step's name.
        step: String,
        /// What failed, for people.
        message: String,
        /// Whether the cause is the environment (a missing tool), not the data or a command.
        environment: bool,
    },
    /// Verification found differences: the run stops before the target is started.
    #[error("the target does not hold what the source holds:\n{}", .0.render())]
    Unequal(Report),
    /// Rollback is refused after the DNS switch.
    #[error(
        "the DNS switch is done: the target is the server now, and the source's data is older than it; moving back is a new migration"
    )]
    Switched,
}

/// What happened to one step, for the caller to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The step was done by an earlier run.
    Skipped(String),
    /// The step starts.
    Started(String),
    /// The step completed (and is recorded).
    Done(String),
}

/// How much of the job to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// Everything, through the DNS switch.
    #[default]
    All,
    /// Only the bulk copies (run again each time: a pre-copy days ahead shortens the freeze).
    BulkOnly,
}

/// The steps of `job`, in order.
pub fn steps(job: &Job) -> Vec<String> {
    let mut out = Vec::new();
    for b in &job.buckets {
        out.push(format!("bulk:bucket:{}", b.name));
    }
    for d in &job.directories {
        out.push(format!("bulk:dir:{}", d.name));
    }
    out.push("freeze".into());
    for b in &job.buckets {
        out.push(format!("delta:bucket:{}", b.name));
    }
    for d in &job.directories {
        out.push(format!("delta:dir:{}", d.name));
    }
    for d in &job.databases {
        out.push(format!("dump:{}", d.name));
        out.push(format!("restore:{}", d.name));
    }
    for s in &job.identity {
        out.push(format!("identity:{}", s.name));
    }
    out.extend(["verify", "start", "health", "dns"].map(String::from));
    out
}

/// Runs `job` with its journal in `journal_dir`, resuming after the steps an earlier run recorded.
pub fn run(
    job: &Job,
    journal_dir: &Path,
    scope: Scope,
    events: &mut dyn FnMut(Event),
) -> Result<(), RunError> {
    let mut journal = Journal::open(journal_dir, &super::journal::job_digest(&job.to_json()))?;
    check_databases(job, &journal)?;
    for step in steps(job) {
        let bulk = step.starts_with("bulk:");
        if scope == Scope::BulkOnly && !bulk {
            break;
        }
        if journal.is_done(&step) && !(scope == Scope::BulkOnly && bulk) {
            events(Event::Skipped(step));
            continue;
        }
        events(Event::Started(step.clone()));
        do_step(job, &journal, &step)?;
        journal.mark(&step)?;
        events(Event::Done(step));
    }
    Ok(())
}

/// Before any step (and so before the freeze): each database still to restore can be restored at its target,
/// that is, the same encoding and collation, and every extension the source uses is there or can be created by
/// the target's role ([`pg::restore_problems`]). Nothing is
/// written; a problem stops the run with the extension named and how to fix it (step `check:NAME`).
fn check_databases(job: &Job, journal: &Journal) -> Result<(), RunError> {
    for d in &job.databases {
        if journal.is_done(&format!("restore:{}", d.name)) {
            continue;
        }
        let step = format!("check:{}", d.name);
        let problems = pg::restore_problems(&d.source, &d.target)
            .map_err(|e| step_error(&step, StepFailure::from(e)))?;
        if !problems.is_empty() {
            return Err(RunError::Step {
                step,
                message: format!(
                    "the target cannot hold this database yet (nothing was done, the source still runs):\n  {}",
                    problems.join("\n  ")
                ),
                environment: true,
            });
        }
    }
    Ok(())
}

/// Starts the source again (the job's `source_start` commands) and forgets the steps done, so the next run
/// starts over; refused once the DNS switch is done.
pub fn rollback(job: &Job, journal_dir: &Path) -> Result<(), RunError> {
    let mut journal = Journal::open(journal_dir, &super::journal::job_digest(&job.to_json()))?;
    if journal.is_done("dns") {
        return Err(RunError::Switched);
    }
    for argv in &job.commands.source_start {
        command(argv, "start the source again").map_err(|e| step_error("rollback", e))?;
    }
    journal.reset()?;
    Ok(())
}

fn step_error(step: &str, e: impl Into<StepFailure>) -> RunError {
    let StepFailure(message, environment) = e.into();
    RunError::Step {
        step: step.to_owned(),
        message,
        environment,
    }
}

/// A failure's text and whether the environment is the cause.
pub(crate) struct StepFailure(String, bool);

impl From<ExecError> for StepFailure {
    fn from(e: ExecError) -> Self {
        let env = matches!(e, ExecError::Missing { .. });
        StepFailure(e.to_string(), env)
    }
}
impl From<IoError> for StepFailure {
    fn from(e: IoError) -> Self {
        StepFailure(e.to_string(), false)
    }
}
impl From<pg::PgError> for StepFailure {
    fn from(e: pg::PgError) -> Self {
        match e {
            pg::PgError::Exec(e) => e.into(),
            pg::PgError::Io(e) => e.into(),
        }
    }
}
impl From<s3::S3Error> for StepFailure {
    fn from(e: s3::S3Error) -> Self {
        match e {
            s3::S3Error::Exec(e) => e.into(),
            other => StepFailure(other.to_string(), true),
        }
    }
}
impl From<super::remote::RemoteError> for StepFailure {
    fn from(e: super::remote::RemoteError) -> Self {
        match e {
            super::remote::RemoteError::Exec(e) => e.into(),
            super::remote::RemoteError::Io(e) => e.into(),
            super::remote::RemoteError::Location(m) => StepFailure(m, false),
        }
    }
}

impl From<VerifyError> for StepFailure {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Pg(e) => e.into(),
            VerifyError::S3(e) => e.into(),
            VerifyError::Io(e) => e.into(),
            VerifyError::Exec(e) => e.into(),
            VerifyError::Remote(e) => e.into(),
        }
    }
}

fn do_step(job: &Job, journal: &Journal, step: &str) -> Result<(), RunError> {
    let fail = |e: StepFailure| step_error(step, e);
    let (kind, name) = step.split_once(':').unwrap_or((step, ""));
    match kind {
        "bulk" | "delta" => {
            let (what, name) = name.split_once(':').unwrap_or((name, ""));
            if what == "bucket" {
                let b = job
                    .buckets
                    .iter()
                    .find(|b| b.name == name)
                    .expect("a step of the job");
                s3::sync(&b.source, &b.target).map_err(|e| fail(e.into()))
            } else {
                let d = job
                    .directories
                    .iter()
                    .find(|d| d.name == name)
                    .expect("a step of the job");
                copy_directory(&d.source, &d.target).map_err(fail)
            }
        }
        "freeze" => commands(&job.commands.freeze, "freeze the source").map_err(|e| fail(e.into())),
        "dump" => {
            let d = job
                .databases
                .iter()
                .find(|d| d.name == name)
                .expect("a step of the job");
            pg::dump(&d.source, &dump_file(journal, name)).map_err(|e| fail(e.into()))
        }
        "restore" => {
            let d = job
                .databases
                .iter()
                .find(|d| d.name == name)
                .expect("a step of the job");
            pg::restore(&d.target, &dump_file(journal, name)).map_err(|e| fail(e.into()))
        }
        "identity" => {
            let s = job
                .identity
                .iter()
                .find(|s| s.name == name)
                .expect("a step of the job");
            place_secret(s).map_err(fail)
        }
        "verify" => {
            let report = verify::verify(job).map_err(|e| fail(e.into()))?;
            if report.equal() {
                Ok(())
            } else {
                Err(RunError::Unequal(report))
            }
        }
        "start" => commands(&job.commands.start, "start the target").map_err(|e| fail(e.into())),
        "health" => health(job).map_err(fail),
        "dns" => commands(&job.commands.dns_switch, "switch DNS").map_err(|e| fail(e.into())),
        _ => unreachable!("steps() names only these"),
    }
}

fn dump_file(journal: &Journal, name: &str) -> std::path::PathBuf {
    journal.dir().join(format!("{name}.dump"))
}

fn command(argv: &[String], what: &str) -> Result<(), ExecError> {
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    exec::checked(c, what).map(drop)
}

fn commands(list: &[Vec<String>], what: &str) -> Result<(), ExecError> {
    list.iter().try_for_each(|argv| command(argv, what))
}

fn health(job: &Job) -> Result<(), StepFailure> {
    let deadline = Instant::now() + Duration::from_secs(job.commands.health_timeout_seconds);
    for argv in &job.commands.health {
        loop {
            match command(argv, "check the target's health") {
                Ok(()) => break,
                Err(e @ ExecError::Missing { .. }) => return Err(e.into()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(StepFailure(
                        format!(
                            "{e}\n  (still failing after {} seconds: the target is not healthy; the source can be started again with `fedigen migrate rollback`)",
                            job.commands.health_timeout_seconds
                        ),
                        false,
                    ));
                }
                Err(_) => std::thread::sleep(Duration::from_secs(2)),
            }
        }
    }
    Ok(())
}

fn copy_directory(source: &str, target: &str) -> Result<(), StepFailure> {
    let (from, to) = (
        Location::parse(source).map_err(|m| StepFailure(m, false))?,
        Location::parse(target).map_err(|m| StepFailure(m, false))?,
    );
    match (&from, &to) {
        (Location::Local(a), Location::Local(b)) => tree::sync(a, b).map(drop).map_err(Into::into),
        _ => {
            // Another machine: rsync over ssh does what tree::sync does here (same rules: exact copy, modes,
            // owners by number, links as links, deletions).
            let side = |l: &Location| match l {
                Location::Local(p) => format!("{}/", p.display()),
                Location::Ssh { host, path } => format!("{host}:{path}/"),
            };
            let mut c = Command::new("rsync");
            c.args([
                "--archive",
                "--delete",
                "--numeric-ids",
                "--hard-links",
                "--rsh=ssh",
                "--",
            ])
            .arg(side(&from))
            .arg(side(&to));
            exec::checked(c, &format!("copy {source} to {target}"))
                .map(drop)
                .map_err(Into::into)
        }
    }
}

fn place_secret(s: &SecretMove) -> Result<(), StepFailure> {
    let bytes = super::remote::read(&s.source)?;
    let mode = super::job::mode_bits(&s.mode).map_err(|m| StepFailure(m, false))?;
    if let Some(dir) = s.target.parent() {
        std::fs::create_dir_all(dir).map_err(|e| IoError::new("create", dir, e))?;
    }
    write_atomic(&s.target, &bytes, mode)?;
    set_owner(&s.target, &s.owner, &s.group)
}

/// Gives `path` to `owner:group` (as root), or checks that it is already theirs (as another user).
fn set_owner(path: &Path, owner: &str, group: &str) -> Result<(), StepFailure> {
    use std::os::unix::fs::MetadataExt as _;
    let uid = user_id(owner).ok_or_else(|| StepFailure(format!("no user `{owner}` on this machine (the target's module creates it: deploy the target first)"), false))?;
    let gid = group_id(group)
        .ok_or_else(|| StepFailure(format!("no group `{group}` on this machine"), false))?;
    let meta = std::fs::metadata(path).map_err(|e| IoError::new("read", path, e))?;
    if (meta.uid(), meta.gid()) == (uid, gid) {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| {
        StepFailure(
            format!(
                "cannot give {} to {owner}:{group} ({}); run the migration as root",
                path.display(),
                crate::io_error::IoError::new("change the owner of", path, e)
            ),
            false,
        )
    })
}

fn user_id(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam returns a pointer into static storage or null; read at once.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    (!pw.is_null()).then(|| unsafe { (*pw).pw_uid })
}

fn group_id(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: as in user_id.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    (!gr.is_null()).then(|| unsafe { (*gr).gr_gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_in_the_order_that_keeps_the_source_safe() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "operator": "op",
            "databases": [{"name": "db",
                "source": {"host": "/s", "user": "u", "database": "d"},
                "target": {"host": "/t", "user": "u", "database": "d"}}],
            "buckets": [{"name": "m",
                "source": {"endpoint": "http://a", "region": "r", "bucket": "b", "key_file": "/k"},
                "target": {"endpoint": "http://b", "region": "r", "bucket": "b", "key_file": "/k"}}],
            "directories": [{"name": "data", "source": "/a", "target": "/b"}],
            "identity": [{"name": "key", "source": "/a/k", "target": "/b/k", "owner": "u", "group": "u", "mode": "0600"}]
        }))
        .unwrap();
        assert_eq!(
            steps(&job),
            [
                "bulk:bucket:m",
                "bulk:dir:data",
                "freeze",
                "delta:bucket:m",
                "delta:dir:data",
                "dump:db",
                "restore:db",
                "identity:key",
                "verify",
                "start",
                "health",
                "dns"
            ]
        );
    }
}
