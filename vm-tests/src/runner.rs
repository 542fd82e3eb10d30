//! Running one trial: `nix-build` (and for `repro` a `--check` rebuild) in its own process group,
//! with a deadline, its output streamed live and saved to the trial's log file.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::{Semaphore, mpsc};

use crate::live::{Live, TrialLive};
use crate::prereq::{Accel, Prereqs, Resolved};
use crate::process::{self, KillReport, Registry};
use crate::report::{JsonEvents, Outcome, Record};
use crate::spec::{Kind, Requirement, TrialSpec};

/// Which Nix store trials build in.
#[derive(Debug, Clone)]
pub enum Store {
    /// Nix's own default (or whatever `NIX_CONFIG`/`NIX_REMOTE` say).
    Default,
    /// `--store URL`, passed to every Nix command unchanged (e.g. `ssh-ng://builder`, a local path).
    Url(String),
    /// A fresh local store per trial under this directory, deleted afterwards.
    Throwaway(PathBuf),
}

/// Settings shared by all trials of a run.
#[derive(Debug)]
pub struct RunConfig {
    /// Where each trial's log file `<name>.log` goes.
    pub log_dir: PathBuf,
    /// Store choice, passed through to Nix.
    pub store: Store,
    /// `--builders`, passed through to Nix (its remote builders).
    pub builders: Option<String>,
    /// Replaces every trial's own time limit (before the TCG factor).
    pub timeout_override: Option<Duration>,
    /// Time between SIGTERM and SIGKILL when a trial is stopped.
    pub kill_grace: Duration,
}

/// Everything the trials of one run share.
#[derive(Debug)]
pub struct Context {
    /// Run settings.
    pub cfg: RunConfig,
    /// Lazily probed prerequisites.
    pub prereqs: Prereqs,
    /// Process trees of running trials, for Ctrl-C.
    pub registry: Arc<Registry>,
    /// Live output.
    pub live: Live,
    /// JSON events file, if written.
    pub events: Option<JsonEvents>,
    /// Results of the trials that ran (or were ignored at run time).
    pub records: Mutex<Vec<Record>>,
    /// Concurrency slots: at most `jobs` trials (weighted by their `cores`) build at once.
    pub slots: Semaphore,
    /// Number of slots.
    pub jobs: usize,
    /// Set on Ctrl-C or SIGTERM: trials killed by the harness then are not reported as failures, and the run
    /// ends with 130 once the process trees are gone.
    pub interrupted: std::sync::atomic::AtomicBool,
}

/// How many log lines a failure message shows.
const EXCERPT_LINES: usize = 40;

/// The trial's log: its file, plus the last lines kept for the failure message.
struct Log {
    file: BufWriter<File>,
    tail: VecDeque<String>,
    path: PathBuf,
}

impl Log {
    fn create(path: PathBuf) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Ok(Log {
            file: BufWriter::new(File::create(&path)?),
            tail: VecDeque::new(),
            path,
        })
    }

    fn line(&mut self, line: &str) {
        let _ = writeln!(self.file, "{line}");
        let _ = self.file.flush();
        if self.tail.len() == EXCERPT_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_owned());
    }

    fn excerpt(&self) -> String {
        let mut s = format!(
            "--- last {} lines of {} ---\n",
            self.tail.len(),
            self.path.display()
        );
        for l in &self.tail {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

/// The harness's own lines in a trial's log and live output.
fn note(log: &mut Log, live: &TrialLive, text: &str) {
    log.line(&format!("vm-tests: {text}"));
    live.note(text);
}

/// How one Nix command ended.
struct StepResult {
    status: Option<ExitStatus>,
    timed_out: bool,
    kill: Option<KillReport>,
    stdout: Vec<String>,
}

/// Which stream a line came from.
#[derive(Clone, Copy)]
enum Stream {
    Out,
    Err,
}

async fn read_lines(
    stream: impl AsyncRead + Unpin,
    which: Stream,
    tx: mpsc::UnboundedSender<(Stream, String)>,
) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                let text = text.trim_end_matches(['\n', '\r']).to_owned();
                if tx.send((which, text)).is_err() {
                    break;
                }
            }
        }
    }
}

/// Runs `cmd` in a new process group until it exits or `deadline` passes (then kills its tree).
async fn run_step(
    ctx: &Context,
    live: &TrialLive,
    log: &mut Log,
    mut cmd: Command,
    deadline: tokio::time::Instant,
    echo: bool,
) -> std::io::Result<StepResult> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    let mut child = cmd.spawn()?;
    let pid = child.id().expect("a just-spawned child has a pid") as i32;
    let root = process::proc_id(pid);
    let _registration = root.map(|root| ctx.registry.register(root, pid));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let readers = [
        tokio::spawn(read_lines(
            child.stdout.take().expect("piped"),
            Stream::Out,
            tx.clone(),
        )),
        tokio::spawn(read_lines(
            child.stderr.take().expect("piped"),
            Stream::Err,
            tx,
        )),
    ];
    let mut stdout = Vec::new();
    let mut on_line = |log: &mut Log, (which, line): (Stream, String)| {
        log.line(&line);
        if echo {
            live.line(&line);
        }
        if let Stream::Out = which {
            stdout.push(line);
        }
    };
    let mut timed_out = false;
    let mut kill = None;
    let status = loop {
        tokio::select! {
            Some(item) = rx.recv() => on_line(log, item),
            status = child.wait() => break status.ok(),
            _ = tokio::time::sleep_until(deadline), if !timed_out => {
                timed_out = true;
                if let Some(root) = root {
                    let grace = ctx.cfg.kill_grace;
                    let report = tokio::task::spawn_blocking(move || {
                        process::kill_tree(root, pid, grace)
                    })
                    .await
                    .unwrap_or_default();
                    kill = Some(report);
                }
            }
        }
    };
    // Members of the group that outlived the root (none, normally) go too.
    // SAFETY: killpg(2) on the group created for this command.
    unsafe {
        libc::killpg(pid, libc::SIGKILL);
    }
    // Drain what is left; a leftover holder of the pipes must not hang the trial.
    let drain_deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        tokio::select! {
            item = rx.recv() => match item {
                Some(item) => on_line(log, item),
                None => break,
            },
            _ = tokio::time::sleep_until(drain_deadline) => {
                for r in &readers { r.abort(); }
                break;
            }
        }
    }
    Ok(StepResult {
        status,
        timed_out,
        kill,
        stdout,
    })
}

/// A throwaway store, deleted (even though Nix makes its contents read-only) when dropped.
struct ThrowawayStore(tempfile::TempDir);

impl Drop for ThrowawayStore {
    fn drop(&mut self) {
        let path = self.0.path().to_owned();
        if std::fs::remove_dir_all(&path).is_err() {
            make_writable(&path);
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_symlink() {
            return;
        }
        let mut perms = meta.permissions();
        perms.set_mode(perms.mode() | 0o700);
        let _ = std::fs::set_permissions(path, perms);
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(path)
        {
            for e in entries.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

/// The host paths a trial's build sees: those its header lists, plus `/dev/kvm` when it runs the
/// host's QEMU with KVM — the probe ran outside the sandbox, and Nix shows the device inside only to
/// derivations that ask for its `kvm` system feature, so `-accel kvm` would fail in the build.
pub fn sandbox_paths(spec: &TrialSpec, resolved: &Resolved) -> Vec<String> {
    let mut paths = spec.sandbox_paths.clone();
    if spec.needs(Requirement::Qemu)
        && resolved.accel == Some(Accel::Kvm)
        && !paths.iter().any(|p| p == "/dev/kvm")
    {
        paths.push("/dev/kvm".to_owned());
    }
    paths
}

/// The arguments every Nix command of a trial gets: store, builders, sandbox paths.
pub fn nix_common_args(
    builders: Option<&str>,
    sandbox: &[String],
    store: Option<&str>,
) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(store) = store {
        args.extend(["--store".to_owned(), store.to_owned()]);
    }
    if let Some(b) = builders {
        args.extend(["--builders".to_owned(), b.to_owned()]);
    }
    if !sandbox.is_empty() {
        args.extend([
            "--option".to_owned(),
            "extra-sandbox-paths".to_owned(),
            sandbox.join(" "),
        ]);
    }
    args
}

/// `nix-build` of the trial's file with its prerequisites passed as arguments.
pub fn nix_build_args(
    spec: &TrialSpec,
    resolved: &Resolved,
    attr: Option<&str>,
    common: &[String],
) -> Vec<String> {
    let mut args = vec![spec.path.display().to_string()];
    if let Some(attr) = attr {
        args.extend(["-A".to_owned(), attr.to_owned()]);
    }
    let mut argstr = |name: &str, value: String| {
        args.extend(["--argstr".to_owned(), name.to_owned(), value]);
    };
    if let Some(p) = &resolved.nixpkgs {
        argstr("nixpkgs", p.display().to_string());
    }
    if let Some(q) = &resolved.qemu {
        argstr("qemu", q.display().to_string());
    }
    if let Some(a) = &resolved.accel {
        argstr("accel", a.name().to_owned());
    }
    if let Some(k) = &resolved.kernel_dir {
        argstr("kernelDir", k.display().to_string());
    }
    for (k, v) in &spec.args {
        argstr(k, v.clone());
    }
    if let Some(p) = &resolved.nixpkgs {
        args.extend(["-I".to_owned(), format!("nixpkgs={}", p.display())]);
    }
    args.extend(common.iter().cloned());
    args
}

fn failed(kind: &'static str, summary: String, log: &Log) -> Outcome {
    Outcome::Failed {
        message: format!("{summary}\n{}", log.excerpt()),
        kind,
        summary,
    }
}

fn describe_kill(k: &KillReport) -> String {
    let pids: Vec<String> = k.seen.iter().map(|p| p.pid.to_string()).collect();
    if k.survivors.is_empty() {
        format!(
            "killed its process tree ({} processes: {}); none left running",
            k.seen.len(),
            pids.join(" ")
        )
    } else {
        let survivors: Vec<String> = k.survivors.iter().map(|p| p.pid.to_string()).collect();
        format!(
            "killed its process tree ({} processes), but {} survived: pids {}",
            k.seen.len(),
            k.survivors.len(),
            survivors.join(" ")
        )
    }
}

/// Runs one trial to its record: ignored when a prerequisite is missing, else built through Nix.
pub async fn run_trial(ctx: &Context, spec: &TrialSpec) -> Record {
    if let Some(ev) = &ctx.events {
        ev.test_started(&spec.name, spec.kind.label());
    }
    let live = ctx.live.trial(&spec.name);
    let mut record = Record {
        name: spec.name.clone(),
        kind: spec.kind.label().to_owned(),
        outcome: Outcome::Passed,
        duration: Duration::ZERO,
        log: None,
        file: Some(spec.path.clone()),
    };
    let resolved = match ctx.prereqs.resolve(spec) {
        Ok(r) => r,
        Err(missing) => {
            // Said once for the whole run, at its end (see `harness::print_ignored`), not per trial.
            record.outcome = Outcome::Skipped {
                reason: missing.to_string(),
                short: missing.needs,
            };
            return record;
        }
    };
    let permits = spec.cores.min(ctx.jobs) as u32;
    let _slots = ctx
        .slots
        .acquire_many(permits)
        .await
        .expect("semaphore is never closed");
    // Time spent waiting for a slot is not the trial's.
    let start = Instant::now();
    record.outcome = run_resolved(ctx, spec, &resolved, &live, &mut record.log).await;
    record.duration = start.elapsed();
    let summary = match &record.outcome {
        Outcome::Passed => "ok".to_owned(),
        Outcome::Failed { summary, .. } => format!("FAILED: {summary}"),
        Outcome::Skipped { reason, .. } => format!("ignored: {reason}"),
    };
    live.note(&format!(
        "{summary} ({:.1}s)",
        record.duration.as_secs_f64()
    ));
    record
}

async fn run_resolved(
    ctx: &Context,
    spec: &TrialSpec,
    resolved: &Resolved,
    live: &TrialLive,
    log_path: &mut Option<PathBuf>,
) -> Outcome {
    let path = ctx.cfg.log_dir.join(format!("{}.log", spec.name));
    let mut log = match Log::create(path.clone()) {
        Ok(l) => l,
        Err(e) => {
            return Outcome::Failed {
                kind: "failed",
                summary: format!("cannot create log file {}: {e}", path.display()),
                message: format!("cannot create log file {}: {e}", path.display()),
            };
        }
    };
    *log_path = Some(path);

    let mut timeout = ctx.cfg.timeout_override.unwrap_or(spec.timeout);
    if let Some(Accel::Tcg { kvm_unusable }) = &resolved.accel {
        timeout *= spec.tcg_timeout_factor;
        note(
            &mut log,
            live,
            &format!(
                "QEMU uses software emulation (TCG) because {kvm_unusable}; time limit ×{} = {}s",
                spec.tcg_timeout_factor,
                timeout.as_secs()
            ),
        );
    }
    let sandbox = sandbox_paths(spec, resolved);
    if !sandbox.is_empty() {
        note(
            &mut log,
            live,
            &format!(
                "impure: the build sees host paths {} (extra-sandbox-paths); its result depends \
                 on this machine",
                sandbox.join(" ")
            ),
        );
    }
    let throwaway = match &ctx.cfg.store {
        Store::Throwaway(base) => {
            let made = std::fs::create_dir_all(base).and_then(|()| {
                tempfile::Builder::new()
                    .prefix(&format!("{}-", spec.name))
                    .tempdir_in(base)
            });
            match made {
                Ok(dir) => Some(ThrowawayStore(dir)),
                Err(e) => {
                    return failed(
                        "failed",
                        format!("cannot create a throwaway store in {}: {e}", base.display()),
                        &log,
                    );
                }
            }
        }
        _ => None,
    };
    let store = match (&ctx.cfg.store, &throwaway) {
        (_, Some(t)) => Some(t.0.path().display().to_string()),
        (Store::Url(u), None) => Some(u.clone()),
        _ => None,
    };
    let common = nix_common_args(ctx.cfg.builders.as_deref(), &sandbox, store.as_deref());
    let deadline = tokio::time::Instant::now() + timeout;

    let build = nix_build_args(spec, resolved, spec.attr.as_deref(), &common);
    let evaluated = if spec.evaluate_twice {
        match evaluate_twice(ctx, live, &mut log, &build, &common, deadline, timeout).await {
            Ok(drvs) => Some(drvs),
            Err(o) => return o,
        }
    } else {
        None
    };
    let mut requisites: Option<Vec<String>> = None;
    for attr in &spec.rebuild {
        let part = nix_build_args(spec, resolved, Some(attr), &common);
        let drv = match instantiate(ctx, live, &mut log, &part, attr, deadline, timeout).await {
            Ok(drv) => drv,
            Err(o) => return o,
        };
        if let Some(trial_drvs) = &evaluated {
            if requisites.is_none() {
                let mut query = vec!["--query".to_owned(), "--requisites".to_owned()];
                query.extend(trial_drvs.iter().cloned());
                query.extend(common.iter().cloned());
                let step = match run_nix(ctx, live, &mut log, "nix-store", &query, deadline).await {
                    Ok(s) => s,
                    Err(o) => return o,
                };
                if let Some(o) =
                    step_failure(&step, "listing the trial's derivations", timeout, &log)
                {
                    return o;
                }
                requisites = Some(step.stdout);
            }
            if !requisites.iter().flatten().any(|r| *r == drv) {
                return failed(
                    "failed",
                    format!(
                        "`rebuild` names {attr}, whose derivation {drv} is not one the trial builds: name an \
                         attribute of what the trial's own derivation depends on"
                    ),
                    &log,
                );
            }
        }
        if let Err(o) =
            realise_then_check(ctx, live, &mut log, &drv, &common, attr, deadline, timeout).await
        {
            return o;
        }
    }
    if spec.kind == Kind::Vm {
        let mut first = build;
        first.push("--no-out-link".to_owned());
        let step = match run_nix(ctx, live, &mut log, "nix-build", &first, deadline).await {
            Ok(s) => s,
            Err(o) => return o,
        };
        return step_failure(&step, "build", timeout, &log).unwrap_or(Outcome::Passed);
    }

    // repro: build, rebuild and compare, then compare the NAR hash with the recorded one.
    let out = match build_then_rebuild(ctx, live, &mut log, &build, "the output", deadline, timeout)
        .await
    {
        Ok(out) => out,
        Err(o) => return o,
    };
    if let Some(expected) = &spec.nar_hash {
        let Some(out) = out else {
            return failed(
                "failed",
                "nix-build printed no output path".to_owned(),
                &log,
            );
        };
        let mut query = vec!["--query".to_owned(), "--hash".to_owned(), out];
        if let Some(s) = &store {
            query.extend(["--store".to_owned(), s.clone()]);
        }
        let step = match run_nix(ctx, live, &mut log, "nix-store", &query, deadline).await {
            Ok(s) => s,
            Err(o) => return o,
        };
        if let Some(o) = step_failure(&step, "nix-store --query --hash", timeout, &log) {
            return o;
        }
        let actual = step.stdout.last().cloned().unwrap_or_default();
        if &actual != expected {
            return failed(
                "failed",
                format!("NAR hash {actual} differs from the recorded {expected}"),
                &log,
            );
        }
        note(&mut log, live, &format!("NAR hash {actual} as recorded"));
    }
    Outcome::Passed
}

/// What the second evaluation keeps of the harness's environment: what Nix needs to reach its store, its builders
/// and the network and to read its settings. Everything else (and `HOME`, replaced by an empty directory) differs
/// from the first evaluation's.
const KEPT_FOR_THE_SECOND_EVALUATION: &[&str] = &[
    "PATH",
    "NIX_CONFIG",
    "NIX_REMOTE",
    "NIX_PATH",
    "NIX_CONF_DIR",
    "NIX_USER_CONF_FILES",
    "NIX_STORE_DIR",
    "NIX_STATE_DIR",
    "NIX_LOG_DIR",
    "NIX_DAEMON_SOCKET_PATH",
    "NIX_SSL_CERT_FILE",
    "SSL_CERT_FILE",
    "TMPDIR",
    "XDG_CONFIG_DIRS",
    "USER",
    "LOGNAME",
    // A remote store or builder over SSH (`--store ssh-ng://…`) and fetches behind a proxy.
    "SSH_AUTH_SOCK",
    "NIX_SSHOPTS",
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
];

/// Evaluates the trial twice (`nix-instantiate` with the build's arguments) and fails unless both give the same
/// derivations, which it returns. The second evaluation starts in a later wall-clock second than the first ended,
/// with an empty `HOME` (so no `~/.config/nixpkgs` and a cold fetch cache, `tarball-ttl` 0), and with only
/// [`KEPT_FOR_THE_SECOND_EVALUATION`] of the environment (Nix's user settings still read, from the first's
/// `XDG_CONFIG_HOME`): an evaluation that reads the clock, the environment, the home directory or a fetch whose
/// content changed gives another derivation.
async fn evaluate_twice(
    ctx: &Context,
    live: &TrialLive,
    log: &mut Log,
    build: &[String],
    common: &[String],
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<Vec<String>, Outcome> {
    let step = run_nix(ctx, live, log, "nix-instantiate", build, deadline).await?;
    if let Some(o) = step_failure(&step, "the first evaluation", timeout, log) {
        return Err(o);
    }
    let first = derivation_lines(&step.stdout);
    // `builtins.currentTime` counts seconds: the second evaluation must not share the first's.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(now.as_secs() + 1) - now + Duration::from_millis(5))
        .await;
    let home = tempfile::Builder::new()
        .prefix("vm-tests-home-")
        .tempdir()
        .map_err(|e| failed("failed", format!("cannot create an empty HOME: {e}"), log))?;
    let mut cmd = Command::new("nix-instantiate");
    cmd.args(build)
        .args(["--option", "tarball-ttl", "0"])
        .env_clear();
    for name in KEPT_FOR_THE_SECOND_EVALUATION {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    let config_home = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(dir) = config_home {
        cmd.env("XDG_CONFIG_HOME", dir);
    }
    cmd.env("HOME", home.path());
    note(
        log,
        live,
        &format!(
            "running nix-instantiate again, in a later second, HOME={} (empty), tarball-ttl 0, with only {} of the \
             environment",
            home.path().display(),
            KEPT_FOR_THE_SECOND_EVALUATION.join(" ")
        ),
    );
    let step = run_step(ctx, live, log, cmd, deadline, true)
        .await
        .map_err(|e| failed("failed", format!("cannot run nix-instantiate: {e}"), log))?;
    if let Some(o) = step_failure(
        &step,
        "the second evaluation (empty HOME, reduced environment)",
        timeout,
        log,
    ) {
        return Err(o);
    }
    let second = derivation_lines(&step.stdout);
    if first != second {
        let inputs = differing_inputs(ctx, live, log, &first, &second, common, deadline).await;
        return Err(failed(
            "failed",
            format!(
                "not repeatable: two evaluations gave different derivations, {} and {}; the second ran a second \
                 later, with an empty HOME, no fetch cache and only Nix's part of the environment, so the \
                 evaluation reads the clock, an environment variable, the home directory (~/.config/nixpkgs) or \
                 a fetch without a hash{inputs}",
                first.join(" "),
                second.join(" ")
            ),
            log,
        ));
    }
    note(
        log,
        live,
        &format!(
            "two evaluations, in separate processes, seconds and environments, gave one derivation: {}",
            first.join(" ")
        ),
    );
    Ok(first)
}

/// The store paths among a Nix command's output lines.
fn derivation_lines(stdout: &[String]) -> Vec<String> {
    stdout
        .iter()
        .filter(|l| l.starts_with('/'))
        .cloned()
        .collect()
}

/// The direct inputs of two sets of derivations that only one of them has (`nix-store --query --references`),
/// as a sentence to append to a message; empty when they cannot be listed.
async fn differing_inputs(
    ctx: &Context,
    live: &TrialLive,
    log: &mut Log,
    first: &[String],
    second: &[String],
    common: &[String],
    deadline: tokio::time::Instant,
) -> String {
    let mut sets = Vec::with_capacity(2);
    for drvs in [first, second] {
        let mut query = vec!["--query".to_owned(), "--references".to_owned()];
        query.extend(drvs.iter().cloned());
        query.extend(common.iter().cloned());
        match run_nix(ctx, live, log, "nix-store", &query, deadline).await {
            Ok(step) if step.status.is_some_and(|s| s.success()) => {
                sets.push(
                    derivation_lines(&step.stdout)
                        .into_iter()
                        .collect::<std::collections::BTreeSet<_>>(),
                );
            }
            _ => return String::new(),
        }
    }
    let only = |a: &std::collections::BTreeSet<String>, b: &std::collections::BTreeSet<String>| {
        a.difference(b).cloned().collect::<Vec<_>>().join(" ")
    };
    format!(
        ". Inputs only the first has: {}; only the second: {} (compare them with `nix-store --query --tree` or \
         `fedigen closure diff A B --build-time` while the store holds them)",
        only(&sets[0], &sets[1]),
        only(&sets[1], &sets[0])
    )
}

/// The one derivation an attribute of the trial's file evaluates to (`nix-instantiate -A`).
#[allow(clippy::too_many_arguments)]
async fn instantiate(
    ctx: &Context,
    live: &TrialLive,
    log: &mut Log,
    args: &[String],
    attr: &str,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<String, Outcome> {
    let step = run_nix(ctx, live, log, "nix-instantiate", args, deadline).await?;
    if let Some(o) = step_failure(&step, &format!("the evaluation of {attr}"), timeout, log) {
        return Err(o);
    }
    match derivation_lines(&step.stdout).as_slice() {
        [drv] => Ok(drv.clone()),
        other => Err(failed(
            "failed",
            format!(
                "`rebuild` names {attr}, which evaluates to {} derivations, not one",
                other.len()
            ),
            log,
        )),
    }
}

/// Builds a derivation (`nix-store --realise`), then rebuilds it and every derivation of its closure that was built
/// here ([`built_here`]) with `--check` (Nix builds each again and compares the outputs byte for byte;
/// `--keep-failed` keeps a differing output beside the first as `<output>.check`). `what` names it in the messages.
#[allow(clippy::too_many_arguments)]
async fn realise_then_check(
    ctx: &Context,
    live: &TrialLive,
    log: &mut Log,
    drv: &str,
    common: &[String],
    what: &str,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<(), Outcome> {
    let mut realise = vec!["--realise".to_owned(), drv.to_owned()];
    realise.extend(common.iter().cloned());
    let step = run_nix(ctx, live, log, "nix-store", &realise, deadline).await?;
    if let Some(o) = step_failure(&step, &format!("the build of {what}"), timeout, log) {
        return Err(o);
    }
    let mut local = built_here(ctx, live, log, drv, common, deadline, timeout).await?;
    if !local.iter().any(|d| d == drv) {
        local.push(drv.to_owned());
    }
    let count = local.len();
    // `--check` refuses a derivation one of whose outputs is gone (a multi-output package whose unused output the
    // garbage collector took): realised first, each has all its outputs again (a no-op when it has).
    let mut whole = vec!["--realise".to_owned()];
    whole.extend(local.iter().cloned());
    whole.extend(common.iter().cloned());
    let step = run_query(ctx, live, log, "nix-store", &whole, deadline).await?;
    if let Some(o) = step_failure(
        &step,
        &format!("restoring the outputs of {what}'s closure"),
        timeout,
        log,
    ) {
        return Err(o);
    }
    let mut check = vec![
        "--realise".to_owned(),
        "--check".to_owned(),
        "--keep-failed".to_owned(),
    ];
    check.extend(local);
    check.extend(common.iter().cloned());
    let step = run_nix(ctx, live, log, "nix-store", &check, deadline).await?;
    check_failure(&step, &format!("{what} ({drv})"), timeout, log)?;
    note(
        log,
        live,
        &format!(
            "{what} rebuilt, with the {} other derivation(s) of its closure built here: the same bytes",
            count - 1
        ),
    );
    Ok(())
}

/// The derivations of `drv`'s closure whose outputs were built on this machine: valid, marked `ultimate` by the
/// store (built here, so trusted without a signature; substituted paths are not: a binary cache signs what it
/// serves), and without a content address (a fixed-output derivation, a download, is checked against its hash on
/// every build). These are what the trial's own files make (its configuration, units, certificates, scripts);
/// rebuilding the rest would rebuild nixpkgs.
#[allow(clippy::too_many_arguments)]
async fn built_here(
    ctx: &Context,
    live: &TrialLive,
    log: &mut Log,
    drv: &str,
    common: &[String],
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<Vec<String>, Outcome> {
    let query = |args: &[&str], paths: &[String]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        all.extend(paths.iter().cloned());
        all.extend(common.iter().cloned());
        all
    };
    let step = run_query(
        ctx,
        live,
        log,
        "nix-store",
        &query(&["--query", "--requisites"], &[drv.to_owned()]),
        deadline,
    )
    .await?;
    if let Some(o) = step_failure(&step, "listing the closure's derivations", timeout, log) {
        return Err(o);
    }
    let derivations: Vec<String> = step
        .stdout
        .into_iter()
        .filter(|p| p.ends_with(".drv"))
        .collect();
    let store_dir = Path::new(drv)
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let step = run_query(
        ctx,
        live,
        log,
        "nix-store",
        &query(&["--query", "--outputs"], &derivations),
        deadline,
    )
    .await?;
    if let Some(o) = step_failure(&step, "listing the closure's outputs", timeout, log) {
        return Err(o);
    }
    let outputs = derivation_lines(&step.stdout);
    let step = run_query(
        ctx,
        live,
        log,
        "nix-store",
        &query(&["--check-validity", "--print-invalid"], &outputs),
        deadline,
    )
    .await?;
    if let Some(o) = step_failure(&step, "finding which outputs exist", timeout, log) {
        return Err(o);
    }
    let invalid: std::collections::BTreeSet<String> =
        derivation_lines(&step.stdout).into_iter().collect();
    let valid: Vec<String> = outputs
        .into_iter()
        .filter(|o| !invalid.contains(o))
        .collect();
    let args = query(
        &[
            "path-info",
            "--json",
            "--extra-experimental-features",
            "nix-command",
        ],
        &valid,
    );
    let step = run_query(ctx, live, log, "nix", &args, deadline).await?;
    if let Some(o) = step_failure(&step, "reading the outputs' signatures", timeout, log) {
        return Err(o);
    }
    let info: serde_json::Value = serde_json::from_str(&step.stdout.join("\n")).map_err(|e| {
        failed(
            "failed",
            format!("cannot read `nix path-info --json`: {e}"),
            log,
        )
    })?;
    // Nix before 2.19 prints a list of objects with a `path`; later ones an object keyed by path.
    let entries: Vec<&serde_json::Value> = match &info {
        serde_json::Value::Array(items) => items.iter().collect(),
        serde_json::Value::Object(map) => map.values().collect(),
        _ => Vec::new(),
    };
    let mut here: Vec<String> = entries
        .into_iter()
        .filter(|e| {
            // `ultimate`: built on this machine (Nix trusts it without a signature); a store that does not say
            // falls back to "no signature".
            let here = match e.get("ultimate").and_then(serde_json::Value::as_bool) {
                Some(ultimate) => ultimate,
                None => e
                    .get("signatures")
                    .and_then(|s| s.as_array())
                    .is_none_or(|s| s.is_empty()),
            };
            here && e.get("ca").is_none_or(|c| c.is_null())
        })
        .filter_map(|e| e.get("deriver").and_then(|d| d.as_str()))
        // Nix 2.33's JSON format 2 names paths without the store directory.
        .map(|d| {
            if d.starts_with('/') {
                d.to_owned()
            } else {
                format!("{store_dir}/{d}")
            }
        })
        .collect();
    here.sort();
    here.dedup();
    Ok(here)
}

/// Builds, then rebuilds with `nix-build --check` (Nix compares the two outputs byte for byte); returns the
/// output path the build printed. `what` names the output in the messages.
#[allow(clippy::too_many_arguments)]
async fn build_then_rebuild(
    ctx: &Context,
    live: &TrialLive,
    log: &mut Log,
    build: &[String],
    what: &str,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<Option<String>, Outcome> {
    let mut first = build.to_vec();
    first.push("--no-out-link".to_owned());
    let step = run_query(ctx, live, log, "nix-build", &first, deadline).await?;
    if let Some(o) = step_failure(&step, &format!("the build of {what}"), timeout, log) {
        return Err(o);
    }
    let out = step
        .stdout
        .iter()
        .rev()
        .find(|l| l.starts_with('/'))
        .cloned();
    let mut check = build.to_vec();
    check.extend(["--check".to_owned(), "--no-out-link".to_owned()]);
    let step = run_query(ctx, live, log, "nix-build", &check, deadline).await?;
    check_failure(&step, what, timeout, log)?;
    note(log, live, &format!("{what} rebuilt: the same bytes"));
    Ok(out)
}

/// How a `--check` rebuild of `what` failed, if it did: exit 104 is Nix's "may not be deterministic" (an output
/// rebuilt differs from the first build; `--keep-failed` keeps it beside the first as `<output>.check`), named
/// from the log; anything else is the rebuild failing.
fn check_failure(
    step: &StepResult,
    what: &str,
    timeout: Duration,
    log: &Log,
) -> Result<(), Outcome> {
    if step.status.and_then(|s| s.code()) == Some(104) {
        let which = log
            .tail
            .iter()
            .rev()
            .find(|l| l.contains("may not be deterministic"))
            .map(|l| format!(": {}", l.trim_start_matches("error: ")))
            .unwrap_or_default();
        return Err(failed(
            "failed",
            format!(
                "not reproducible: {what} rebuilt differs from its first build{which} (with --keep-failed the \
                 rebuilt output is kept beside it as <output>.check: compare them, e.g. with diffoscope)"
            ),
            log,
        ));
    }
    match step_failure(
        step,
        &format!("the rebuild (--check) of {what}"),
        timeout,
        log,
    ) {
        Some(o) => Err(o),
        None => Ok(()),
    }
}

async fn run_nix(
    ctx: &Context,
    live: &TrialLive,
    log: &mut Log,
    program: &str,
    args: &[String],
    deadline: tokio::time::Instant,
) -> Result<StepResult, Outcome> {
    run_nix_echoing(ctx, live, log, program, args, deadline, true).await
}

/// [`run_nix`] for a query whose output is data (store paths by the thousand): its lines go to the log file and
/// to the caller, not to the live output.
async fn run_query(
    ctx: &Context,
    live: &TrialLive,
    log: &mut Log,
    program: &str,
    args: &[String],
    deadline: tokio::time::Instant,
) -> Result<StepResult, Outcome> {
    run_nix_echoing(ctx, live, log, program, args, deadline, false).await
}

async fn run_nix_echoing(
    ctx: &Context,
    live: &TrialLive,
    log: &mut Log,
    program: &str,
    args: &[String],
    deadline: tokio::time::Instant,
    echo: bool,
) -> Result<StepResult, Outcome> {
    // A query over a closure passes thousands of store paths: the log shows the first ones and how many more.
    const SHOWN_STORE_PATHS: usize = 4;
    let paths = args.iter().filter(|a| a.starts_with("/nix/store/")).count();
    let mut seen = 0;
    let shown = std::iter::once(program.to_owned())
        .chain(args.iter().filter_map(|a| {
            if a.starts_with("/nix/store/") && paths > SHOWN_STORE_PATHS {
                seen += 1;
                return match seen.cmp(&SHOWN_STORE_PATHS) {
                    std::cmp::Ordering::Less => Some(quote_for_display(a)),
                    std::cmp::Ordering::Equal => {
                        Some(format!("… ({} more store paths)", paths - seen + 1))
                    }
                    std::cmp::Ordering::Greater => None,
                };
            }
            Some(quote_for_display(a))
        }))
        .collect::<Vec<_>>()
        .join(" ");
    note(log, live, &format!("running {shown}"));
    let mut cmd = Command::new(program);
    cmd.args(args);
    let step = run_step(ctx, live, log, cmd, deadline, echo)
        .await
        .map_err(|e| failed("failed", format!("cannot run {program}: {e}"), log))?;
    if let Some(k) = &step.kill {
        let text = describe_kill(k);
        log.line(&format!("vm-tests: {text}"));
        live.note(&text);
    }
    Ok(step)
}

fn step_failure(step: &StepResult, what: &str, timeout: Duration, log: &Log) -> Option<Outcome> {
    if step.timed_out {
        let killed = step.kill.as_ref().map(describe_kill).unwrap_or_default();
        return Some(failed(
            "timeout",
            format!(
                "timed out after {}s during {what}; {killed}",
                timeout.as_secs()
            ),
            log,
        ));
    }
    match step.status {
        Some(s) if s.success() => None,
        Some(s) => Some(failed("failed", format!("{what} failed ({s})"), log)),
        None => Some(failed("failed", format!("{what}: lost its process"), log)),
    }
}

/// Quotes an argument for display only where a shell needs it, so that a logged command reads plainly and can be
/// pasted into a shell. (Not fedigen's `template::shell_quote`, which always quotes generated script text; the
/// harness takes nothing from the `fedigen` crate.)
fn quote_for_display(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(header: &str) -> TrialSpec {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.nix");
        std::fs::write(&path, format!("{header}\n1\n")).unwrap();
        crate::spec::read_trial(&path).unwrap().unwrap()
    }

    /// A trial that runs the host's QEMU with KVM must see `/dev/kvm` in its build: the probe said
    /// KVM works outside the sandbox, and without the device `-accel kvm` fails inside it.
    #[test]
    fn kvm_device_is_visible_to_builds_that_run_qemu_with_kvm() {
        let spec =
            trial("#: kind = \"vm\"\n#: requires = [\"qemu\"]\n#: sandbox_paths = [\"/usr\"]");
        let kvm = Resolved {
            accel: Some(Accel::Kvm),
            ..Resolved::default()
        };
        let tcg = Resolved {
            accel: Some(Accel::Tcg {
                kvm_unusable: "FEDIGEN_KVM=0 says KVM is not to be used".to_owned(),
            }),
            ..Resolved::default()
        };
        assert_eq!(sandbox_paths(&spec, &kvm), ["/usr", "/dev/kvm"]);
        assert_eq!(sandbox_paths(&spec, &tcg), ["/usr"]);
        let args = nix_common_args(None, &sandbox_paths(&spec, &kvm), None);
        assert_eq!(args, ["--option", "extra-sandbox-paths", "/usr /dev/kvm"]);
        // A NixOS test asks Nix for the `kvm` feature itself; the harness adds nothing to it.
        let nixos = trial("#: kind = \"vm\"\n#: requires = [\"nixpkgs\", \"kvm\"]");
        assert!(sandbox_paths(&nixos, &kvm).is_empty());
        assert!(nix_common_args(None, &[], None).is_empty());
    }
}
