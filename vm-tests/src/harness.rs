//! The harness's command line and main loop: libtest's flags (through libtest-mimic) plus the
//! harness's own, one libtest trial per discovered file, tokio underneath, reports at the end.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use libtest_mimic::{Arguments, Completion, Trial};

use crate::live::Live;
use crate::prereq::{Locations, Prereqs};
use crate::process::Registry;
use crate::report::{self, JsonEvents, Outcome, Record};
use crate::runner::{self, Context, RunConfig, Store};
use crate::spec::{self, TrialSpec};

/// The command line: the harness's own options, then libtest's (filters, `--exact`, `--list`,
/// `--ignored`, `--include-ignored`, `--test-threads`, `--format json`, …).
#[derive(Parser, Debug)]
#[command(
    name = "vm-tests",
    about = "Runs fedigen's NixOS VM tests and reproducibility checks through Nix, as cargo tests.",
    after_help = "Every option can also be set by the environment variable shown. The repository is \
                  the nearest folder holding vm-tests/, from the current directory upward (or \
                  --repo); its vm-tests/generated holds the trials and its target/vm-tests receives \
                  logs and reports. See vm-tests/README.md for the discovery format and what is \
                  ignored without nixpkgs or a working KVM.\n\n\
                  Exit status: 0 every selected trial passed or was ignored; 101 a trial failed; \
                  2 invalid invocation or the harness could not run; 3 --require-tests and no \
                  trial ran; 130 interrupted."
)]
pub struct Cli {
    /// The fedigen repository to run on (default: the nearest folder holding vm-tests/, from the
    /// current directory upward).
    #[arg(long, value_name = "DIR", env = "FEDIGEN_REPO")]
    pub repo: Option<PathBuf>,
    /// Directories whose `*.nix` files are the trials (default: REPO/vm-tests/generated).
    #[arg(
        long = "tests-dir",
        value_name = "DIR",
        env = "FEDIGEN_VM_TESTS_DIR",
        value_delimiter = ':'
    )]
    pub tests_dirs: Vec<PathBuf>,
    /// Where logs, reports and throwaway stores go unless given one by one (default:
    /// REPO/target/vm-tests, or $CARGO_TARGET_DIR/vm-tests when that is set).
    #[arg(long, value_name = "DIR", env = "FEDIGEN_VM_TESTS_OUT")]
    pub out_dir: Option<PathBuf>,
    /// Where each trial's log `<name>.log` is written (default: OUT/logs).
    #[arg(long, value_name = "DIR", env = "FEDIGEN_LOG_DIR")]
    pub log_dir: Option<PathBuf>,
    /// JUnit XML report (default: OUT/junit.xml).
    #[arg(long, value_name = "FILE", env = "FEDIGEN_JUNIT")]
    pub junit: Option<PathBuf>,
    /// libtest JSON events, one a line (default: OUT/events.json).
    #[arg(long, value_name = "FILE", env = "FEDIGEN_JSON_EVENTS")]
    pub json_events: Option<PathBuf>,
    /// Nix store to build in, passed to Nix as `--store` (e.g. `ssh-ng://host`); `throwaway`
    /// gives every trial a fresh local store that is deleted afterwards (under OUT/stores, or under
    /// DIR with `throwaway:DIR`).
    #[arg(long, value_name = "URL", env = "FEDIGEN_STORE")]
    pub store: Option<String>,
    /// Nix remote builders, passed to Nix as `--builders`.
    #[arg(long, value_name = "SPEC", env = "FEDIGEN_BUILDERS")]
    pub builders: Option<String>,
    /// A nixpkgs checkout; NixOS VM tests are ignored without one.
    #[arg(long, value_name = "DIR", env = "FEDIGEN_NIXPKGS")]
    pub nixpkgs: Option<PathBuf>,
    /// Build TEST's interactive NixOS test driver and start it (for debugging a failure).
    #[arg(long, value_name = "TEST")]
    pub interactive: Option<String>,
    /// Time limit for every trial, replacing the one in its header (before the TCG factor).
    #[arg(long, value_name = "SECONDS", env = "FEDIGEN_TIMEOUT")]
    pub timeout: Option<u64>,
    /// No spinners on a terminal: print every log line, prefixed with its trial's name.
    #[arg(long)]
    pub no_progress: bool,
    /// Fail (exit 3) when no trial ran — every selected one was ignored (a missing prerequisite,
    /// or `ignore` in its header) or none was selected — for CI jobs that must test something.
    #[arg(
        long,
        visible_alias = "fail-if-all-ignored",
        env = "FEDIGEN_REQUIRE_TESTS",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub require_tests: bool,
    /// libtest's flags.
    #[command(flatten)]
    pub libtest: Arguments,
}

/// The folder name that marks a fedigen repository for the harness: its `vm-tests/`.
const MARKER: &str = "vm-tests";

/// The fedigen repository the harness runs on, found at run time — never a path compiled into
/// the binary, so a binary built in one clone runs on the clone it is started in:
///
/// 1. `explicit` (`--repo` / `FEDIGEN_REPO`), or the nearest folder above it holding `vm-tests/`;
/// 2. else the nearest folder holding `vm-tests/`, from `cwd` upward (`cargo test` starts the test
///    binary in `vm-tests/`, so this finds the tree it was built from);
/// 3. else the same search from `cargo_manifest_dir`, the `CARGO_MANIFEST_DIR` that Cargo sets
///    when it runs the binary itself (`cargo run --manifest-path …` from outside the tree).
///
/// `Err` says why none was found, for the person running it.
pub fn locate_repository(
    explicit: Option<&Path>,
    cwd: &Path,
    cargo_manifest_dir: Option<&Path>,
) -> Result<PathBuf, String> {
    let find = |start: &Path| -> Option<PathBuf> {
        start
            .ancestors()
            .find(|d| d.join(MARKER).is_dir())
            .map(Path::to_owned)
    };
    if let Some(dir) = explicit {
        // Resolved first: `ancestors` of `a/../b` would pass through `a`.
        let dir = std::fs::canonicalize(cwd.join(dir)).map_err(|e| {
            format!(
                "the repository given (--repo or FEDIGEN_REPO), {}, cannot be opened: {e}",
                dir.display()
            )
        })?;
        return find(&dir).ok_or_else(|| {
            format!(
                "the repository given (--repo or FEDIGEN_REPO), {}, is not a fedigen repository: \
                 it has no {MARKER}/ folder, nor has any folder above it",
                dir.display()
            )
        });
    }
    find(cwd)
        .or_else(|| cargo_manifest_dir.and_then(find))
        .ok_or_else(|| {
            format!(
                "{} is not inside a fedigen repository (no {MARKER}/ folder there or above)",
                cwd.display()
            )
        })
}

/// Where a run reads and writes when no flag or environment variable says otherwise, all derived
/// from the repository it runs on.
#[derive(Debug, Clone)]
struct Defaults {
    /// The repository, or why there is none (an error only once a default is needed).
    repo: Result<PathBuf, String>,
    /// `--out-dir`, else `$CARGO_TARGET_DIR/vm-tests`, else `REPO/target/vm-tests`.
    out_dir: Result<PathBuf, String>,
    /// Where `vm-tests/install-deps` unpacks Debian's kernel.
    kernel_dirs: Vec<PathBuf>,
}

impl Defaults {
    fn locate(cli: &Cli) -> Result<Self> {
        let cwd = std::env::current_dir().context("reading the current directory")?;
        let manifest_dir = non_empty(std::env::var_os("CARGO_MANIFEST_DIR")).map(PathBuf::from);
        let explicit = non_empty(cli.repo.clone());
        let repo = locate_repository(explicit.as_deref(), &cwd, manifest_dir.as_deref());
        if explicit.is_some() {
            // A repository named explicitly but wrongly is an error even when nothing needs it.
            if let Err(why) = &repo {
                bail!("{why}");
            }
        }
        let out_dir = match (
            non_empty(cli.out_dir.clone()),
            non_empty(std::env::var_os("CARGO_TARGET_DIR")),
            &repo,
        ) {
            (Some(dir), _, _) => Ok(dir),
            (None, Some(target), _) => Ok(cwd.join(target).join("vm-tests")),
            (None, None, Ok(repo)) => Ok(repo.join("target").join("vm-tests")),
            (None, None, Err(why)) => Err(why.clone()),
        };
        let mut kernel_dirs = Vec::new();
        if let Some(d) = non_empty(std::env::var_os("FEDIGEN_KERNEL_DIR")) {
            kernel_dirs.push(PathBuf::from(d));
        }
        if let Some(d) = non_empty(std::env::var_os("FEDIGEN_VM_CACHE")) {
            kernel_dirs.push(PathBuf::from(d).join("kernel"));
        }
        kernel_dirs.push(PathBuf::from("/var/cache/fedigen/kernel"));
        if let Ok(repo) = &repo {
            kernel_dirs.push(repo.join(MARKER).join(".cache/kernel"));
        }
        Ok(Defaults {
            repo,
            out_dir,
            kernel_dirs,
        })
    }

    /// `why` there is no default for `what`, and how to give one.
    fn missing(why: &str, what: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "{why}: run it inside a clone of the repository, set FEDIGEN_REPO=/path/to/repository \
             (or pass --repo), or give {what}"
        )
    }

    /// `REPO/vm-tests/generated`.
    fn tests_dir(&self) -> Result<PathBuf> {
        match &self.repo {
            Ok(repo) => Ok(repo.join(MARKER).join("generated")),
            Err(why) => Err(Self::missing(why, "--tests-dir DIR (FEDIGEN_VM_TESTS_DIR)")),
        }
    }

    /// `what` under the output folder: `OUT/what` (`OUT` itself for an empty `what`).
    fn out(&self, what: &str, flag: &str) -> Result<PathBuf> {
        match &self.out_dir {
            Ok(dir) if what.is_empty() => Ok(dir.clone()),
            Ok(dir) => Ok(dir.join(what)),
            Err(why) => Err(Self::missing(why, flag)),
        }
    }
}

/// Parses the command line, runs the trials, and returns libtest's exit code (101 on failures; 2
/// when the harness itself cannot run; 3 when `--require-tests` found that no trial ran; 130 after
/// Ctrl-C).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vm-tests: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn non_empty<T: AsRef<std::ffi::OsStr>>(v: Option<T>) -> Option<T> {
    v.filter(|s| !s.as_ref().is_empty())
}

fn locations(cli: &Cli, defaults: &Defaults) -> Locations {
    Locations {
        nixpkgs: non_empty(cli.nixpkgs.clone()),
        kernel_dirs: defaults.kernel_dirs.clone(),
        qemu: non_empty(std::env::var_os("FEDIGEN_QEMU")).map(PathBuf::from),
        kvm_override: match std::env::var("FEDIGEN_KVM").as_deref() {
            Ok("0") => Some(false),
            Ok("1") => Some(true),
            _ => None,
        },
    }
}

/// Runs the harness with parsed arguments.
pub fn run(mut cli: Cli) -> Result<ExitCode> {
    let started = Instant::now();
    let defaults = Defaults::locate(&cli)?;
    let dirs = if cli.tests_dirs.is_empty() {
        vec![defaults.tests_dir()?]
    } else {
        cli.tests_dirs.clone()
    };
    let discovered = spec::discover(&dirs)?;
    let prereqs = Prereqs::new(locations(&cli, &defaults));
    let store = match non_empty(cli.store.clone()).as_deref() {
        None => Store::Default,
        Some("throwaway") => Store::Throwaway(defaults.out("stores", "--store throwaway:DIR")?),
        Some(url) => match url.strip_prefix("throwaway:") {
            Some(dir) => Store::Throwaway(PathBuf::from(dir)),
            None => Store::Url(url.to_owned()),
        },
    };
    if let Some(name) = cli.interactive.clone() {
        return interactive(&name, &discovered.trials, &prereqs, &store, &cli, &defaults);
    }

    let jobs = cli
        .libtest
        .test_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, Into::into))
        .max(1);
    // libtest-mimic runs trials one by one on its main thread when given one thread, printing
    // `test NAME ... ` before the trial and its outcome after: the trial's streamed lines would then
    // land in the middle of that line. With two threads or more it prints each line whole once the
    // trial is done; how many trials build at once stays bounded by `jobs` (the slots).
    cli.libtest.test_threads = Some(jobs.max(2));
    let args = cli.libtest.clone();

    let log_dir = match cli.log_dir.clone() {
        Some(dir) => dir,
        None if args.list => PathBuf::new(),
        None => defaults.out("logs", "--log-dir DIR (FEDIGEN_LOG_DIR)")?,
    };
    let events = if args.list {
        None
    } else {
        let path = match cli.json_events.clone() {
            Some(path) => path,
            None => defaults.out("events.json", "--json-events FILE (FEDIGEN_JSON_EVENTS)")?,
        };
        Some(JsonEvents::create(&path)?)
    };
    let junit = match cli.junit.clone() {
        Some(path) => path,
        None if args.list => PathBuf::new(),
        None => defaults.out("junit.xml", "--junit FILE (FEDIGEN_JUNIT)")?,
    };
    let ctx = Arc::new(Context {
        cfg: RunConfig {
            log_dir: log_dir.clone(),
            store,
            builders: non_empty(cli.builders.clone()),
            timeout_override: cli.timeout.map(Duration::from_secs),
            kill_grace: Duration::from_secs(3),
        },
        prereqs,
        registry: Arc::new(Registry::default()),
        live: Live::new(!cli.no_progress),
        events,
        records: Mutex::new(Vec::new()),
        slots: tokio::sync::Semaphore::new(jobs),
        jobs,
        interrupted: std::sync::atomic::AtomicBool::new(false),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let _signals = rt.spawn(stop_on_signal(ctx.clone()));

    // One libtest trial per discovered file; broken files are failing trials, never dropped.
    let mut trials = Vec::new();
    let mut static_reasons = Vec::new();
    for spec in &discovered.trials {
        let ctx2 = ctx.clone();
        let handle = rt.handle().clone();
        let spec2 = spec.clone();
        let trial = Trial::ignorable_test(spec.name.clone(), move || {
            let record = handle.block_on(runner::run_trial(&ctx2, &spec2));
            finish(&ctx2, record)
        })
        .with_kind(spec.kind.label())
        .with_ignored_flag(spec.ignore.is_some());
        static_reasons.push(spec.ignore.clone().map(|r| (spec.clone(), r)));
        trials.push(trial);
    }
    for broken in &discovered.broken {
        let ctx2 = ctx.clone();
        let b = broken.clone();
        trials.push(
            Trial::ignorable_test(broken.name.clone(), move || {
                let record = Record {
                    name: b.name.clone(),
                    kind: "invalid".to_owned(),
                    outcome: Outcome::Failed {
                        kind: "invalid",
                        summary: b.error.clone(),
                        message: b.error.clone(),
                    },
                    duration: Duration::ZERO,
                    log: None,
                    file: Some(b.path.clone()),
                };
                finish(&ctx2, record)
            })
            .with_kind("invalid"),
        );
        static_reasons.push(None);
    }

    // Which trials libtest-mimic will skip without calling them (ignored in their header).
    let filtering = args.filter.is_some() || !args.skip.is_empty() || args.ignored;
    let mut not_run = Vec::new();
    let mut selected = 0usize;
    for (trial, reason) in trials.iter().zip(&static_reasons) {
        if filtering && args.is_filtered_out(trial) {
            continue;
        }
        selected += 1;
        if args.is_ignored(trial)
            && let Some((spec, reason)) = reason
        {
            not_run.push(static_record(spec, reason));
        }
    }
    if !args.list {
        eprintln!(
            "vm-tests: {} trials in {} ({} selected), {} at a time; logs in {}",
            trials.len(),
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(":"),
            selected,
            jobs,
            log_dir.display()
        );
        if let Some(ev) = &ctx.events {
            ev.suite_started(selected);
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    wait_if_interrupted(&ctx);
    if args.list {
        return Ok(conclusion.exit_code());
    }

    let mut records = std::mem::take(&mut *ctx.records.lock().expect("records lock"));
    for r in not_run {
        if let Some(ev) = &ctx.events {
            ev.test_finished(&r);
        }
        records.push(r);
    }
    if let Some(summary) = ignored_summary(&records) {
        ctx.live.println(&summary);
    }
    let counts = report::count(&records);
    let total = started.elapsed();
    let nothing_ran = conclusion.num_passed + conclusion.num_failed == 0;
    if let Some(ev) = &ctx.events {
        ev.suite_finished(
            counts,
            conclusion.num_filtered_out,
            total,
            nothing_ran && cli.require_tests,
        );
    }
    report::write_junit(&junit, &records, total)?;
    eprintln!("vm-tests: JUnit report: {}", junit.display());
    let libtest_counts = report::Counts {
        passed: conclusion.num_passed,
        failed: conclusion.num_failed,
        ignored: conclusion.num_ignored,
    };
    if counts != libtest_counts {
        bail!("the reports count {counts} but libtest counted {libtest_counts}");
    }
    drop(rt);
    if nothing_ran && cli.require_tests {
        eprintln!(
            "vm-tests: error: no trial ran ({} ignored, {} filtered out), and --require-tests \
             (FEDIGEN_REQUIRE_TESTS) asks for at least one; provide what the ignored trials need \
             (listed above) or select others",
            conclusion.num_ignored, conclusion.num_filtered_out
        );
        return Ok(ExitCode::from(3));
    }
    Ok(conclusion.exit_code())
}

/// How many trial names a reason lists before it says "and N more".
const NAMES_SHOWN: usize = 5;

/// The reasons trials were ignored, each said once with the trials it affects (libtest's lines
/// show only the short `needs …`); `None` when nothing was ignored.
pub(crate) fn ignored_summary(records: &[Record]) -> Option<String> {
    let mut by_reason: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for r in records {
        if let Outcome::Skipped { reason, .. } = &r.outcome {
            by_reason.entry(reason).or_default().push(&r.name);
        }
    }
    let total: usize = by_reason.values().map(Vec::len).sum();
    if total == 0 {
        return None;
    }
    let mut groups: Vec<(&str, Vec<&str>)> = by_reason.into_iter().collect();
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
    let mut out = format!(
        "vm-tests: {total} {} ignored:",
        if total == 1 {
            "trial was"
        } else {
            "trials were"
        }
    );
    for (reason, mut names) in groups {
        names.sort_unstable();
        let n = names.len();
        let mut shown = names
            .iter()
            .take(NAMES_SHOWN)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        if n > NAMES_SHOWN {
            shown.push_str(&format!(" and {} more", n - NAMES_SHOWN));
        }
        let trials = if n == 1 { "trial" } else { "trials" };
        out.push_str(&format!("\n  {reason}\n    ({n} {trials}: {shown})"));
    }
    Some(out)
}

fn static_record(spec: &TrialSpec, reason: &str) -> Record {
    Record {
        name: spec.name.clone(),
        kind: spec.kind.label().to_owned(),
        outcome: Outcome::Skipped {
            reason: format!("ignored in its header: {reason} (run with --include-ignored)"),
            short: "ignored in its header".to_owned(),
        },
        duration: Duration::ZERO,
        log: None,
        file: Some(spec.path.clone()),
    }
}

/// Records a finished trial and turns it into libtest-mimic's result.
fn finish(ctx: &Context, record: Record) -> Result<Completion, libtest_mimic::Failed> {
    wait_if_interrupted(ctx);
    let result = match &record.outcome {
        Outcome::Passed => Ok(Completion::Completed),
        Outcome::Skipped { short, .. } => Ok(Completion::ignored_with(short)),
        Outcome::Failed { message, .. } => Err(message.clone().into()),
    };
    if let Some(ev) = &ctx.events {
        ev.test_finished(&record);
    }
    ctx.records.lock().expect("records lock").push(record);
    result
}

/// After Ctrl-C, a trial whose build the harness itself killed must not be reported (as a failure) and the run
/// must not end with libtest's status: wait here until the signal task has killed everything and exits 130.
fn wait_if_interrupted(ctx: &Context) {
    while ctx.interrupted.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// On Ctrl-C or SIGTERM: kill every running trial's process tree, then exit with 130.
async fn stop_on_signal(ctx: Arc<Context>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return;
    };
    let Ok(mut int) = signal(SignalKind::interrupt()) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    ctx.interrupted
        .store(true, std::sync::atomic::Ordering::SeqCst);
    ctx.live
        .println("vm-tests: interrupted; killing the process trees of running trials");
    let registry = ctx.registry.clone();
    let grace = ctx.cfg.kill_grace;
    let (seen, survivors) = tokio::task::spawn_blocking(move || registry.kill_all(grace))
        .await
        .unwrap_or((0, 0));
    ctx.live.println(&format!(
        "vm-tests: killed {seen} processes; {survivors} still running"
    ));
    std::process::exit(130);
}

/// `--interactive TEST`: builds the test's interactive driver (nixpkgs needed) and starts it.
fn interactive(
    name: &str,
    trials: &[TrialSpec],
    prereqs: &Prereqs,
    store: &Store,
    cli: &Cli,
    defaults: &Defaults,
) -> Result<ExitCode> {
    let out_dir = defaults.out("", "--out-dir DIR (FEDIGEN_VM_TESTS_OUT)")?;
    let Some(spec) = trials.iter().find(|t| t.name == name) else {
        let names: Vec<&str> = trials.iter().map(|t| t.name.as_str()).collect();
        eprintln!(
            "vm-tests: no test named `{name}`; tests: {}",
            if names.is_empty() {
                "(none)".to_owned()
            } else {
                names.join(", ")
            }
        );
        return Ok(ExitCode::from(2));
    };
    let refuse = |why: String| {
        eprintln!("vm-tests: cannot start the interactive driver of `{name}`: {why}");
        Ok(ExitCode::from(2))
    };
    if let Err(why) = prereqs.nixpkgs() {
        return refuse(why.to_string());
    }
    if !matches!(store, Store::Default) {
        return refuse(
            "the driver runs on this machine, so it must be built in the local store; \
                       drop --store"
                .to_owned(),
        );
    }
    let resolved = match prereqs.resolve(spec) {
        Ok(r) => r,
        Err(why) => return refuse(why.to_string()),
    };
    let link = out_dir.join(format!("{name}-driver"));
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let builders = non_empty(cli.builders.clone());
    let sandbox = runner::sandbox_paths(spec, &resolved);
    let common = runner::nix_common_args(builders.as_deref(), &sandbox, None);
    let mut args = runner::nix_build_args(spec, &resolved, Some(&spec.interactive_attr), &common);
    args.extend(["-o".to_owned(), link.display().to_string()]);
    eprintln!("vm-tests: building {name}.{}", spec.interactive_attr);
    let status = std::process::Command::new("nix-build")
        .args(&args)
        .status()
        .context("running nix-build")?;
    if !status.success() {
        return refuse(format!(
            "nix-build of {} failed ({status})",
            spec.interactive_attr
        ));
    }
    let bin = link.join("bin");
    let driver = if bin.join("nixos-test-driver").exists() {
        bin.join("nixos-test-driver")
    } else {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&bin)
            .with_context(|| format!("{} has no bin/", link.display()))?
            .flatten()
            .map(|e| e.path())
            .collect();
        found.sort();
        match found.as_slice() {
            [one] => one.clone(),
            _ => return refuse(format!("no bin/nixos-test-driver in {}", link.display())),
        }
    };
    eprintln!("vm-tests: starting {}", driver.display());
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(&driver).exec();
    Err(err).with_context(|| format!("starting {}", driver.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_is_the_nearest_folder_holding_vm_tests() {
        let tmp = tempfile::tempdir().unwrap();
        let outer = tmp.path().join("outer");
        let inner = outer.join("nested/inner");
        for d in [outer.join("vm-tests"), inner.join("vm-tests/generated")] {
            std::fs::create_dir_all(d).unwrap();
        }
        let deep = inner.join("vm-tests/generated");
        let nowhere = tmp.path().join("nowhere");
        std::fs::create_dir_all(&nowhere).unwrap();
        assert_eq!(locate_repository(None, &deep, None).unwrap(), inner);
        assert_eq!(
            locate_repository(None, &outer.join("nested"), None).unwrap(),
            outer
        );
        // The current directory wins over Cargo's manifest directory; the latter is the fallback.
        assert_eq!(locate_repository(None, &deep, Some(&outer)).unwrap(), inner);
        assert_eq!(
            locate_repository(None, &nowhere, Some(&deep)).unwrap(),
            inner
        );
        let err = locate_repository(None, &nowhere, None).unwrap_err();
        assert!(err.contains("is not inside a fedigen repository"), "{err}");
        // An explicit one, relative to the current directory, and searched upward too.
        assert_eq!(
            locate_repository(Some(Path::new("../outer/nested")), &nowhere, None).unwrap(),
            outer.canonicalize().unwrap()
        );
        let err = locate_repository(Some(Path::new("absent")), &nowhere, None).unwrap_err();
        assert!(err.contains("absent, cannot be opened"), "{err}");
        let err = locate_repository(Some(Path::new(".")), &nowhere, Some(&deep)).unwrap_err();
        assert!(err.contains("is not a fedigen repository"), "{err}");
    }

    fn skipped(name: &str, reason: &str) -> Record {
        Record {
            name: name.to_owned(),
            kind: "vm".to_owned(),
            outcome: Outcome::Skipped {
                reason: reason.to_owned(),
                short: "needs it".to_owned(),
            },
            duration: Duration::ZERO,
            log: None,
            file: None,
        }
    }

    #[test]
    fn ignored_reasons_are_summarised_once_each() {
        assert_eq!(ignored_summary(&[]), None);
        let mut records: Vec<Record> = (0..1000)
            .map(|i| skipped(&format!("deployment-{i:04}"), "needs nixpkgs: set it"))
            .collect();
        records.push(skipped("boot", "needs QEMU: install it"));
        let text = ignored_summary(&records).unwrap();
        assert_eq!(
            text,
            "vm-tests: 1001 trials were ignored:\n  needs nixpkgs: set it\n    (1000 trials: \
             deployment-0000, deployment-0001, deployment-0002, deployment-0003, deployment-0004 \
             and 995 more)\n  needs QEMU: install it\n    (1 trial: boot)"
        );
    }
}
