//! The engine: a job's steps in order, each recorded in the journal when it completed, each idempotent, so a
//! run killed at any moment is resumed by running it again.
//!
//! Order, and why:
//! 0. `check:*` (not journaled, every run) — each database still to restore can be restored at its target (same
//!    encoding and collation; its extensions there or creatable), so such a problem stops the run before the
//!    freeze, not after; and each database the job gives replication roles is checked (read-only) for whether
//!    the source allows logical replication: the answer is journaled (`mode:NAME:replicate` or
//!    `mode:NAME:dump`) and said, so a resumed run keeps it;
//! 1. `replicate:schema:*`, `replicate:start:*` — a replicated database's schema restored at the target, the
//!    publication at the source and the subscription at the target: the target copies the tables while the
//!    source serves (see [`super::replicate`]);
//! 2. `bulk:bucket:*`, `bulk:dir:*` — the long copies, while the source still serves (no downtime);
//!    `replicate:sync:*` — every replicated table has had its first copy and follows the source's changes;
//! 3. `freeze` — the source's applications stop: from here its data no longer changes;
//! 4. `delta:bucket:*`, `delta:dir:*` — the same copies again, moving only what changed since the bulk copy;
//! 5. `catchup:*` for a replicated database — the target applies the source's last change, then the
//!    subscription, slot and publication are dropped and the sequences and large objects copied; `dump:*`,
//!    `restore:*` for the others — dumped at the source (into the journal folder) and restored at the target in
//!    one transaction;
//!    `rewrite:*` — after a database's restore or catch-up, the columns the job names hold the target's media
//!    URL prefix instead of the source's (one transaction; see [`super::urls`] and `mysql.rs`); a MySQL
//!    database (`engine = "mysql"`) is dumped and restored by `mysql.rs` under the same step names;
//! 6. `identity:*` — the secrets that make the target the same server, placed with their owner and mode;
//! 7. `verify` — the target holds what the source holds (see [`super::verify`]); on any difference the run
//!    stops here;
//! 8. `start`, `health` — the target's applications started and checked;
//! 9. `dns` — the switch, last. Until it, nothing was written at the source but a publication, a replication
//!    slot and the replica identity of tables without a primary key, all of which `fedigen migrate rollback`
//!    removes before starting the source again: the operator is back where they were.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::exec::{self, ExecError};
use super::job::Engine;
use super::job::{Job, Location, SecretMove};
use super::journal::{Journal, JournalError, write_atomic};
use super::verify::{self, Report, VerifyError};
use super::{mysql, pg, replicate, s3, tree, urls};
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
    /// Something the person running the migration should know (how a database is moved, and why).
    Note(String),
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

/// The steps of `job`, in order, when every database the job gives replication roles can be replicated (what
/// `fedigen migrate plan` shows; a run that finds a source without `wal_level = logical` dumps and restores that
/// database instead).
pub fn steps(job: &Job) -> Vec<String> {
    steps_with(job, &|d| d.replication.is_some())
}

/// The steps of `job`, in order, with `replicated` saying which databases are moved by replication.
fn steps_with(job: &Job, replicated: &dyn Fn(&super::job::DatabaseMove) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    if !job.commands.target_stop.is_empty() {
        out.push(STOP_TARGET.to_owned());
    }
    let (live, dumped): (Vec<_>, Vec<_>) = job.databases.iter().partition(|d| replicated(d));
    for d in &live {
        out.push(format!("replicate:schema:{}", d.name));
        out.push(format!("replicate:start:{}", d.name));
    }
    for b in &job.buckets {
        out.push(format!("bulk:bucket:{}", b.name));
    }
    for d in &job.directories {
        out.push(format!("bulk:dir:{}", d.name));
    }
    for d in &live {
        out.push(format!("replicate:sync:{}", d.name));
    }
    out.push("freeze".into());
    for b in &job.buckets {
        out.push(format!("delta:bucket:{}", b.name));
    }
    for d in &job.directories {
        out.push(format!("delta:dir:{}", d.name));
    }
    for d in &live {
        out.push(format!("catchup:{}", d.name));
        rewrite_step(d, &mut out);
    }
    for d in &dumped {
        out.push(format!("dump:{}", d.name));
        out.push(format!("restore:{}", d.name));
        rewrite_step(d, &mut out);
    }
    for s in &job.identity {
        out.push(format!("identity:{}", s.name));
    }
    out.extend(["verify", "start", "health", "dns"].map(String::from));
    out
}

/// `rewrite:NAME` after a database's restore (or catch-up) when the job rewrites URLs in it: before `verify`,
/// which compares the source's rows as the rewrite leaves them.
fn rewrite_step(d: &super::job::DatabaseMove, out: &mut Vec<String>) {
    if !d.url_rewrites.is_empty() {
        out.push(format!("rewrite:{}", d.name));
    }
}

/// The first step where the job stops the target's applications ([`Commands::target_stop`]).
///
/// [`Commands::target_stop`]: super::job::Commands::target_stop
const STOP_TARGET: &str = "stop-target";

/// Whether `step` belongs to the bulk phase (run while the source serves: `--bulk-only` runs these), and
/// whether a run does it again when an earlier run did it, until the freeze (copies and waits, not the set-up).
fn bulk_phase(step: &str) -> (bool, bool) {
    let again = step.starts_with("bulk:") || step.starts_with("replicate:sync:");
    (
        again || step.starts_with("replicate:") || step == STOP_TARGET,
        again,
    )
}

/// Runs `job` with its journal in `journal_dir`, resuming after the steps an earlier run recorded.
///
/// Up to the freeze the steps run one after the other. From the freeze on (see [`after_freeze`]) the source no
/// longer changes: its half of the verification starts at once, and the copies into the target run at once
/// (each bucket's and folder's delta, each database's catch-up or dump and restore).
pub fn run(
    job: &Job,
    journal_dir: &Path,
    scope: Scope,
    events: &mut dyn FnMut(Event),
) -> Result<(), RunError> {
    let mut journal = Journal::open(journal_dir, &super::journal::job_digest(&job.to_json()))?;
    decide_modes(job, &mut journal, events)?;
    check_databases(job, &journal)?;
    let replicated = |d: &super::job::DatabaseMove| is_replicated(&journal, d);
    let steps = steps_with(job, &replicated);
    let frozen = steps
        .iter()
        .position(|s| s == "freeze")
        .expect("steps() has a freeze");
    for step in &steps[..=frozen] {
        let (bulk, again) = bulk_phase(step);
        if scope == Scope::BulkOnly && !bulk {
            return Ok(());
        }
        // A copy or replication wait an earlier run did is done again until the freeze: the source has served
        // since (days, after a `--bulk-only` pre-copy), and what is copied now is not copied in the window.
        let copy_again = again && !journal.is_done("freeze");
        if journal.is_done(step) && !copy_again {
            events(Event::Skipped(step.clone()));
            continue;
        }
        events(Event::Started(step.clone()));
        do_step(job, journal.dir(), step, None)?;
        journal.mark(step)?;
        events(Event::Done(step.clone()));
    }
    after_freeze(job, journal, &steps[frozen + 1..], events)
}

/// The steps after the freeze. The source's half of the verification ([`verify::source_side`]) is read from
/// the start, while the copies write the target; the copies run at once, one thread per bucket and folder
/// delta and per database (its catch-up, or its dump then its restore); the identity secrets are placed after
/// them (a secret may live in a copied folder, whose delta would remove it); then `verify` reads the target
/// and compares, and the rest follows in order.
///
/// Why: the freeze window is the service's downtime, and these steps are independent of each other: the window
/// was their sum plus both halves of the verification (issue #16's benchmark).
fn after_freeze(
    job: &Job,
    journal: Journal,
    steps: &[String],
    events: &mut dyn FnMut(Event),
) -> Result<(), RunError> {
    let dir = journal.dir().to_path_buf();
    let verify_at = steps
        .iter()
        .position(|s| s == "verify")
        .expect("steps() has a verify");
    let (copies, identity): (Vec<&String>, Vec<&String>) = steps[..verify_at]
        .iter()
        .partition(|s| !s.starts_with("identity:"));
    let journal = std::sync::Mutex::new(journal);
    let lock = || journal.lock().expect("journal lock");
    let run_step = |step: &str, send: &dyn Fn(Event)| -> Result<(), RunError> {
        if lock().is_done(step) {
            send(Event::Skipped(step.to_owned()));
            return Ok(());
        }
        send(Event::Started(step.to_owned()));
        do_step(job, &dir, step, None)?;
        lock().mark(step)?;
        send(Event::Done(step.to_owned()));
        Ok(())
    };
    let early = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        let source = (!lock().is_done("verify")).then(|| scope.spawn(|| verify::source_side(job)));
        let (send, receive) = std::sync::mpsc::channel::<Event>();
        let mut threads = Vec::new();
        let reading = source.is_some();
        for chain in chains(&copies) {
            let send = send.clone();
            let (run_step, early) = (&run_step, &early);
            threads.push(scope.spawn(move || {
                let send = |e: Event| drop(send.send(e));
                chain.iter().try_for_each(|step| run_step(step, &send))?;
                // Nothing else writes what this chain copied: the target's half of its verification now.
                if let Some(last) = chain.last().filter(|_| reading)
                    && let Some(item) = verify::target_item(job, last)
                {
                    early.lock().expect("not poisoned").push(item);
                }
                Ok::<(), RunError>(())
            }));
        }
        drop(send);
        for event in receive {
            events(event);
        }
        let mut first = Ok(());
        for t in threads {
            let result = t.join().expect("a copy thread panicked");
            if first.is_ok() {
                first = result;
            }
        }
        first?;
        let mut source = source;
        for step in identity.into_iter().chain(&steps[verify_at..]) {
            if lock().is_done(step) {
                events(Event::Skipped(step.clone()));
                continue;
            }
            events(Event::Started(step.clone()));
            let side = if step == "verify" {
                source.take().map(|h| {
                    let early = std::mem::take(&mut *early.lock().expect("not poisoned"));
                    (h.join().expect("the verification thread panicked"), early)
                })
            } else {
                None
            };
            do_step(job, &dir, step, side)?;
            lock().mark(step)?;
            events(Event::Done(step.clone()));
        }
        Ok(())
    })
}

/// The copies after the freeze as independent chains, in the steps' order within each: a database's dump,
/// restore or catch-up, and URL rewrite are one chain (the rewrite changes what the restore wrote); every other
/// step is its own.
fn chains<'a>(steps: &[&'a String]) -> Vec<Vec<&'a String>> {
    let mut out: Vec<(String, Vec<&'a String>)> = Vec::new();
    for step in steps {
        let key = match step.split_once(':') {
            Some(("dump" | "restore" | "catchup" | "rewrite", name)) => format!("database:{name}"),
            _ => (*step).clone(),
        };
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, chain)) => chain.push(step),
            None => out.push((key, vec![step])),
        }
    }
    out.into_iter().map(|(_, chain)| chain).collect()
}

fn is_replicated(journal: &Journal, d: &super::job::DatabaseMove) -> bool {
    journal.is_done(&format!("mode:{}:replicate", d.name))
}

/// For each database with replication roles whose way of moving is not yet journaled: asks the source
/// (read-only) whether it can be replicated, journals the answer and says it. A database already dumped or
/// restored by an earlier run of this journal keeps that way.
fn decide_modes(
    job: &Job,
    journal: &mut Journal,
    events: &mut dyn FnMut(Event),
) -> Result<(), RunError> {
    for d in job.databases.iter().filter(|d| d.replication.is_some()) {
        let (live, dumped) = (
            format!("mode:{}:replicate", d.name),
            format!("mode:{}:dump", d.name),
        );
        if journal.is_done(&live) || journal.is_done(&dumped) {
            continue;
        }
        let step = format!("check:{}", d.name);
        let why = replicate::why_not(&job.operator, d)
            .map_err(|e| step_error(&step, StepFailure::from(e)))?;
        match why {
            None => {
                journal.mark(&live)?;
                events(Event::Note(format!(
                    "database {}: replicated while the source serves (logical replication); the freeze waits only for its last changes",
                    d.name
                )));
            }
            Some(why) => {
                journal.mark(&dumped)?;
                events(Event::Note(format!(
                    "database {}: dumped and restored after the freeze, not replicated: {why}",
                    d.name
                )));
            }
        }
    }
    Ok(())
}

/// Before any step (and so before the freeze): each database still to restore can be restored at its target,
/// that is, the same encoding and collation, and every extension the source uses is there or can be created by
/// the target's role ([`pg::restore_problems`]). Nothing is
/// written; a problem stops the run with the extension named and how to fix it (step `check:NAME`).
fn check_databases(job: &Job, journal: &Journal) -> Result<(), RunError> {
    for d in &job.databases {
        if journal.is_done(&format!("restore:{}", d.name))
            || journal.is_done(&format!("replicate:schema:{}", d.name))
        {
            continue;
        }
        let step = format!("check:{}", d.name);
        let problems = match d.engine {
            Engine::Postgresql => {
                pg::restore_problems(&d.source, &d.target).map_err(StepFailure::from)
            }
            Engine::Mysql => {
                mysql::restore_problems(&d.source, &d.target).map_err(StepFailure::from)
            }
        }
        .map_err(|e| step_error(&step, e))?;
        if !problems.is_empty() {
            return Err(RunError::Step {
                step,
                message: format!(
                    "the move of this database cannot start yet (nothing was done, the source still runs):\n  {}",
                    problems.join("\n  ")
                ),
                environment: true,
            });
        }
    }
    Ok(())
}

/// Removes what replication made (the subscription at the target; the publication, the slot and the changed
/// replica identities at the source), stops the target's applications (`target_stop`: they may have started with
/// the moved data), starts the source again (the job's `source_start` commands) and forgets
/// the steps done, so the next run starts over; refused once the DNS switch is done.
///
/// The source is started even when the removal failed (the target unreachable, say): the source serves as
/// before either way, and the error, returned after, says what is left; the journal is then kept, so a second
/// rollback finishes the removal.
pub fn rollback(job: &Job, journal_dir: &Path) -> Result<(), RunError> {
    let mut journal = Journal::open(journal_dir, &super::journal::job_digest(&job.to_json()))?;
    if journal.is_done("dns") {
        return Err(RunError::Switched);
    }
    let mut removal = Ok(());
    for d in job.databases.iter().filter(|d| is_replicated(&journal, d)) {
        if let Err(e) = replicate::remove(&job.operator, d, journal.dir()) {
            removal = Err(step_error(&format!("rollback:{}", d.name), e));
            break;
        }
    }
    // The target may have started with the moved data and secrets (after `start`): stopped first, so the two
    // never serve, federate or run their queues as one server at once.
    // A failure here, as one of the removal, does not keep the source from starting; it is returned after.
    for argv in &job.commands.target_stop {
        if let Err(e) = command(argv, "stop the target's applications") {
            if removal.is_ok() {
                removal = Err(step_error("rollback", e));
            }
            break;
        }
    }
    for argv in &job.commands.source_start {
        command(argv, "start the source again").map_err(|e| step_error("rollback", e))?;
    }
    removal?;
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
impl From<mysql::MysqlError> for StepFailure {
    fn from(e: mysql::MysqlError) -> Self {
        match e {
            mysql::MysqlError::Exec(e) => e.into(),
            mysql::MysqlError::Io(e) => e.into(),
        }
    }
}
impl From<s3::S3Error> for StepFailure {
    fn from(e: s3::S3Error) -> Self {
        match e {
            s3::S3Error::Exec(e) => e.into(),
            // The bucket's data (a key rclone cannot copy), not the machine.
            e @ s3::S3Error::Uncopyable { .. } => StepFailure(e.to_string(), false),
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

impl From<replicate::ReplicateError> for StepFailure {
    fn from(e: replicate::ReplicateError) -> Self {
        match e {
            replicate::ReplicateError::Pg(e) => e.into(),
            replicate::ReplicateError::Io(e) => e.into(),
            replicate::ReplicateError::Stalled(m) => StepFailure(m, false),
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

/// Runs one step; `source` is the source's half of the verification when the run read it at the freeze.
fn do_step(
    job: &Job,
    dir: &Path,
    step: &str,
    source: Option<(verify::Side, Vec<verify::Early>)>,
) -> Result<(), RunError> {
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
                let proofs = s3::proof_file(dir, name);
                s3::sync(&b.source, &b.target, Some(&proofs)).map_err(|e| fail(e.into()))?;
                // While the source serves: the objects no MD5 proves equal are compared now, not in the window.
                if kind == "bulk" {
                    s3::prove_unhashed(&b.source, &b.target, &proofs)
                        .map_err(|e| fail(e.into()))?;
                }
                Ok(())
            } else {
                let d = job
                    .directories
                    .iter()
                    .find(|d| d.name == name)
                    .expect("a step of the job");
                copy_directory(&d.source, &d.target).map_err(fail)
            }
        }
        STOP_TARGET => commands(&job.commands.target_stop, "stop the target's applications")
            .map_err(|e| fail(e.into())),
        "freeze" => commands(&job.commands.freeze, "freeze the source").map_err(|e| fail(e.into())),
        "replicate" | "catchup" => {
            let (what, name) = if kind == "catchup" {
                ("catchup", name)
            } else {
                name.split_once(':').unwrap_or((name, ""))
            };
            let d = database(job, name);
            let op = &job.operator;
            match what {
                "schema" => replicate::schema(op, d, dir),
                "start" => replicate::start(op, d),
                "sync" => replicate::synced(op, d),
                _ => replicate::finish(op, d, dir),
            }
            .map_err(|e| fail(e.into()))
        }
        "dump" => {
            let d = database(job, name);
            match d.engine {
                Engine::Postgresql => {
                    pg::dump(&d.source, &dump_file(dir, name)).map_err(Into::into)
                }
                Engine::Mysql => mysql::dump(&d.source, &dump_file(dir, name)).map_err(Into::into),
            }
            .map_err(fail)
        }
        "restore" => {
            let d = database(job, name);
            match d.engine {
                Engine::Postgresql => {
                    pg::restore(&d.target, &dump_file(dir, name)).map_err(Into::into)
                }
                Engine::Mysql => {
                    mysql::restore(&d.target, &dump_file(dir, name)).map_err(Into::into)
                }
            }
            .map_err(fail)
        }
        "rewrite" => {
            let d = database(job, name);
            match d.engine {
                Engine::Postgresql => urls::rewrite(d).map_err(Into::into),
                Engine::Mysql => mysql::rewrite_urls(d).map_err(Into::into),
            }
            .map_err(fail)
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
            let report = match source {
                Some((side, early)) => verify::verify_after_freeze(job, side, early, dir),
                None => verify::verify(job),
            }
            .map_err(|e| fail(e.into()))?;
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

/// The job's database a step names (`dump:NAME`, …): the steps are made from the job, so it is there.
fn database<'a>(job: &'a Job, name: &str) -> &'a super::job::DatabaseMove {
    job.databases
        .iter()
        .find(|d| d.name == name)
        .expect("a step of the job")
}

fn dump_file(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join(format!("{name}.dump"))
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
            // links as links, deletions), except owners, which rsync maps by name (its default as root without
            // `--numeric-ids`): NixOS gives a system user without a fixed uid (mastodon, peertube, redis-…,
            // acme) the next free id when it is first created, so the same name has different numbers on A and
            // B as soon as their users were made in another order or another set; by number B's files would
            // belong to another user, or none.
            // rsync makes the target folder but not its parents (tree::sync makes both).
            if let Location::Local(target) = &to
                && let Some(parent) = target.parent()
            {
                std::fs::create_dir_all(parent).map_err(|e| IoError::new("create", parent, e))?;
            }
            let side = |l: &Location| match l {
                Location::Local(p) => format!("{}/", p.display()),
                Location::Ssh { host, path } => format!("{host}:{path}/"),
            };
            let mut c = Command::new("rsync");
            c.args(["--archive", "--delete", "--hard-links", "--rsh=ssh", "--"])
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
    let mode = crate::state::mode_bits(&s.mode).map_err(|m| StepFailure(m, false))?;
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
    exec::os_user(name).map(|u| u.uid)
}

fn group_id(name: &str) -> Option<u32> {
    exec::group_id(name)
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

    /// A database with replication roles: set up and first copied in the bulk phase (before the buckets, so the
    /// servers copy while rclone does), in sync before the freeze, caught up after it; the others dumped.
    /// A database's copy after the freeze and its URL rewrite run in one chain, in order (the rewrite of
    /// rows not yet restored found no table: caught by migrate_mysql after the copies were made concurrent).
    #[test]
    fn a_databases_rewrite_runs_after_its_restore_in_one_chain() {
        let steps: Vec<String> = [
            "delta:bucket:m",
            "dump:app",
            "restore:app",
            "rewrite:app",
            "catchup:other",
            "rewrite:other",
        ]
        .map(String::from)
        .to_vec();
        let refs: Vec<&String> = steps.iter().collect();
        let chains: Vec<Vec<&str>> = super::chains(&refs)
            .into_iter()
            .map(|c| c.into_iter().map(String::as_str).collect())
            .collect();
        assert_eq!(
            chains,
            vec![
                vec!["delta:bucket:m"],
                vec!["dump:app", "restore:app", "rewrite:app"],
                vec!["catchup:other", "rewrite:other"],
            ]
        );
    }

    #[test]
    fn replicated_databases_move_in_the_bulk_phase() {
        let pg = |h: &str| serde_json::json!({"host": h, "user": "u", "database": "d"});
        let job: Job = serde_json::from_value(serde_json::json!({
            "operator": "op",
            "databases": [
                {"name": "live", "source": pg("/s"), "target": pg("/t"),
                 "replication": {"publisher": pg("a"), "subscriber": pg("/t")}},
                {"name": "old", "source": pg("/s"), "target": pg("/t")}],
            "buckets": [{"name": "m",
                "source": {"endpoint": "http://a", "region": "r", "bucket": "b", "key_file": "/k"},
                "target": {"endpoint": "http://b", "region": "r", "bucket": "b", "key_file": "/k"}}]
        }))
        .unwrap();
        assert!(job.problems().is_empty(), "{:?}", job.problems());
        let all = steps(&job);
        assert_eq!(
            all,
            [
                "replicate:schema:live",
                "replicate:start:live",
                "bulk:bucket:m",
                "replicate:sync:live",
                "freeze",
                "delta:bucket:m",
                "catchup:live",
                "dump:old",
                "restore:old",
                "verify",
                "start",
                "health",
                "dns"
            ]
        );
        // A fall-back (the source without wal_level = logical) dumps it like the others.
        let dumped = steps_with(&job, &|_| false);
        assert!(dumped.contains(&"dump:live".to_owned()));
        assert!(
            !dumped
                .iter()
                .any(|s| s.starts_with("replicate:") || s.starts_with("catchup:"))
        );
        // --bulk-only runs the set-up once, the copies and the wait each time, and nothing after the freeze.
        assert_eq!(bulk_phase("replicate:schema:live"), (true, false));
        assert_eq!(bulk_phase("replicate:start:live"), (true, false));
        assert_eq!(bulk_phase("replicate:sync:live"), (true, true));
        assert_eq!(bulk_phase("bulk:bucket:m"), (true, true));
        assert_eq!(bulk_phase("catchup:live"), (false, false));
        assert_eq!(bulk_phase("freeze"), (false, false));
    }

    /// B's applications are stopped before anything moves (its first step, in the bulk phase too), and again by
    /// a rollback before A starts: the two never run as one server at once (operator review, B1 and S5). Real
    /// processes: each command appends its name to a log, and a health check that never passes makes the run
    /// fail before the switch.
    #[test]
    fn the_target_is_stopped_first_and_again_by_a_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let say = |word: &str| {
            vec![
                "sh".to_owned(),
                "-c".into(),
                format!("echo {word} >> {}", log.display()),
            ]
        };
        let mut job: Job = serde_json::from_value(serde_json::json!({ "operator": "op" })).unwrap();
        job.commands.target_stop = vec![say("target-stop")];
        job.commands.freeze = vec![say("freeze")];
        job.commands.start = vec![say("start")];
        job.commands.health = vec![vec!["false".to_owned()]];
        job.commands.health_timeout_seconds = 1;
        job.commands.source_start = vec![say("source-start")];
        assert_eq!(steps(&job)[0], STOP_TARGET);
        assert_eq!(bulk_phase(STOP_TARGET), (true, false));
        let journal = dir.path().join("journal");
        let read = || std::fs::read_to_string(&log).unwrap_or_default();
        run(&job, &journal, Scope::BulkOnly, &mut |_| {}).unwrap();
        assert_eq!(
            read(),
            "target-stop\n",
            "--bulk-only stops B and copies, nothing more"
        );
        assert!(
            run(&job, &journal, Scope::All, &mut |_| {}).is_err(),
            "health never passes"
        );
        assert_eq!(
            read(),
            "target-stop\nfreeze\nstart\n",
            "stopped once, then the move"
        );
        rollback(&job, &journal).unwrap();
        assert_eq!(
            read(),
            "target-stop\nfreeze\nstart\ntarget-stop\nsource-start\n",
            "a rollback stops B before A starts"
        );
    }

    /// A run after a `--bulk-only` pre-copy copies again before it freezes: what changed at A since the pre-copy
    /// (days, in practice) moves while A still serves, not in the freeze window. Once frozen, a resumed run does
    /// not copy the bulk again. Real folders: the file added after the pre-copy is at B when the freeze command
    /// runs (the freeze command records whether it is).
    #[test]
    fn a_run_after_a_pre_copy_copies_again_before_the_freeze() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::write(a.join("old"), "before the pre-copy").unwrap();
        let seen = dir.path().join("seen-at-freeze");
        let mut job: Job = serde_json::from_value(serde_json::json!({ "operator": "op" })).unwrap();
        job.directories = vec![super::super::job::DirectoryMove {
            name: "data".into(),
            source: a.display().to_string(),
            target: b.display().to_string(),
        }];
        job.commands.freeze = vec![vec![
            "sh".to_owned(),
            "-c".into(),
            format!("ls {} > {}", b.display(), seen.display()),
        ]];
        job.commands.health = vec![vec!["false".to_owned()]];
        job.commands.health_timeout_seconds = 1;
        let journal = dir.path().join("journal");
        run(&job, &journal, Scope::BulkOnly, &mut |_| {}).unwrap();
        std::fs::write(a.join("new"), "after the pre-copy").unwrap();
        let mut events = Vec::new();
        assert!(run(&job, &journal, Scope::All, &mut |e| events.push(e)).is_err());
        assert_eq!(
            std::fs::read_to_string(&seen).unwrap(),
            "new\nold\n",
            "the change since the pre-copy was not at B when A froze"
        );
        assert!(events.contains(&Event::Done("bulk:dir:data".into())));
        let mut events = Vec::new();
        assert!(run(&job, &journal, Scope::All, &mut |e| events.push(e)).is_err());
        assert!(
            events.contains(&Event::Skipped("bulk:dir:data".into())),
            "a run resumed after the freeze copied the bulk again: {events:?}"
        );
    }
}
