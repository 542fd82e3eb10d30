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
    after_help = "Every option can also be set by the environment variable shown. See \
                  vm-tests/README.md for the discovery format and what is ignored without \
                  nixpkgs or a working KVM."
)]
pub struct Cli {
    /// Directories whose `*.nix` files are the trials (default: vm-tests/generated).
    #[arg(
        long = "tests-dir",
        value_name = "DIR",
        env = "FEDIGEN_VM_TESTS_DIR",
        value_delimiter = ':'
    )]
    pub tests_dirs: Vec<PathBuf>,
    /// Where each trial's log `<name>.log` is written (default: target/vm-tests/logs).
    #[arg(long, value_name = "DIR", env = "FEDIGEN_LOG_DIR")]
    pub log_dir: Option<PathBuf>,
    /// JUnit XML report (default: target/vm-tests/junit.xml).
    #[arg(long, value_name = "FILE", env = "FEDIGEN_JUNIT")]
    pub junit: Option<PathBuf>,
    /// libtest JSON events, one a line (default: target/vm-tests/events.json).
    #[arg(long, value_name = "FILE", env = "FEDIGEN_JSON_EVENTS")]
    pub json_events: Option<PathBuf>,
    /// Nix store to build in, passed to Nix as `--store` (e.g. `ssh-ng://host`); `throwaway`
    /// gives every trial a fresh local store that is deleted afterwards (under target/vm-tests/stores,
    /// or under DIR with `throwaway:DIR`).
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
    /// libtest's flags.
    #[command(flatten)]
    pub libtest: Arguments,
}

/// Where things are when no flag or environment variable says otherwise.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// `vm-tests/generated`.
    pub tests_dir: PathBuf,
    /// `target/vm-tests`: logs, reports, throwaway stores.
    pub out_dir: PathBuf,
    /// Where `vm-tests/install-deps` unpacks Debian's kernel.
    pub kernel_dirs: Vec<PathBuf>,
}

impl Defaults {
    /// Defaults for the crate at `manifest_dir`; the target directory is the one the running binary
    /// was built into (the ancestor holding Cargo's `CACHEDIR.TAG`).
    pub fn from_crate(manifest_dir: &str) -> Self {
        let manifest = PathBuf::from(manifest_dir);
        let target = std::env::current_exe()
            .ok()
            .and_then(|exe| {
                exe.ancestors()
                    .find(|d| d.join("CACHEDIR.TAG").is_file())
                    .map(Path::to_owned)
            })
            .unwrap_or_else(|| manifest.join("../target"));
        let mut kernel_dirs = Vec::new();
        if let Some(d) = std::env::var_os("FEDIGEN_KERNEL_DIR").filter(|d| !d.is_empty()) {
            kernel_dirs.push(PathBuf::from(d));
        }
        if let Some(d) = std::env::var_os("FEDIGEN_VM_CACHE").filter(|d| !d.is_empty()) {
            kernel_dirs.push(PathBuf::from(d).join("kernel"));
        }
        kernel_dirs.push(PathBuf::from("/var/cache/fedigen/kernel"));
        kernel_dirs.push(manifest.join(".cache/kernel"));
        Defaults {
            tests_dir: manifest.join("generated"),
            out_dir: target.join("vm-tests"),
            kernel_dirs,
        }
    }
}

/// Parses the command line, runs the trials, and returns libtest's exit code (101 on failures; 2
/// when the harness itself cannot run; 130 after Ctrl-C).
pub fn main(defaults: Defaults) -> ExitCode {
    let cli = Cli::parse();
    match run(cli, defaults) {
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
pub fn run(mut cli: Cli, defaults: Defaults) -> Result<ExitCode> {
    let started = Instant::now();
    let dirs = if cli.tests_dirs.is_empty() {
        vec![defaults.tests_dir.clone()]
    } else {
        cli.tests_dirs.clone()
    };
    let discovered = spec::discover(&dirs)?;
    let prereqs = Prereqs::new(locations(&cli, &defaults));
    let store = match non_empty(cli.store.clone()).as_deref() {
        None => Store::Default,
        Some("throwaway") => Store::Throwaway(defaults.out_dir.join("stores")),
        Some(url) => match url.strip_prefix("throwaway:") {
            Some(dir) => Store::Throwaway(PathBuf::from(dir)),
            None => Store::Url(url.to_owned()),
        },
    };
    let log_dir = cli
        .log_dir
        .clone()
        .unwrap_or_else(|| defaults.out_dir.join("logs"));

    if let Some(name) = cli.interactive.clone() {
        return interactive(&name, &discovered.trials, &prereqs, &store, &cli, &defaults);
    }

    let jobs = cli
        .libtest
        .test_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, Into::into))
        .max(1);
    cli.libtest.test_threads = Some(jobs);
    let args = cli.libtest.clone();

    let events = if args.list {
        None
    } else {
        let path = cli
            .json_events
            .clone()
            .unwrap_or_else(|| defaults.out_dir.join("events.json"));
        Some(JsonEvents::create(&path)?)
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
        ctx.live
            .println(&format!("[{}] ignored: {}", r.name, skipped_reason(&r)));
        if let Some(ev) = &ctx.events {
            ev.test_finished(&r);
        }
        records.push(r);
    }
    let counts = report::count(&records);
    let total = started.elapsed();
    if let Some(ev) = &ctx.events {
        ev.suite_finished(counts, conclusion.num_filtered_out, total);
    }
    let junit = cli
        .junit
        .clone()
        .unwrap_or_else(|| defaults.out_dir.join("junit.xml"));
    report::write_junit(&junit, &records, total)?;
    eprintln!("vm-tests: JUnit report: {}", junit.display());
    let libtest_counts = report::Counts {
        passed: conclusion.num_passed,
        failed: conclusion.num_failed,
        ignored: conclusion.num_ignored,
    };
    if counts != libtest_counts {
        bail!("the reports count {counts:?} but libtest counted {libtest_counts:?}");
    }
    drop(rt);
    Ok(conclusion.exit_code())
}

fn skipped_reason(r: &Record) -> &str {
    match &r.outcome {
        Outcome::Skipped { reason } => reason,
        _ => "",
    }
}

fn static_record(spec: &TrialSpec, reason: &str) -> Record {
    Record {
        name: spec.name.clone(),
        kind: spec.kind.label().to_owned(),
        outcome: Outcome::Skipped {
            reason: format!("ignored in its header: {reason} (run with --include-ignored)"),
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
        Outcome::Skipped { reason } => Ok(Completion::ignored_with(reason)),
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
        return refuse(why);
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
        Err(why) => return refuse(why),
    };
    let link = defaults.out_dir.join(format!("{name}-driver"));
    std::fs::create_dir_all(&defaults.out_dir)?;
    let mut common = Vec::new();
    if let Some(b) = non_empty(cli.builders.clone()) {
        common.extend(["--builders".to_owned(), b]);
    }
    if spec.is_impure() {
        common.extend([
            "--option".to_owned(),
            "extra-sandbox-paths".to_owned(),
            spec.sandbox_paths.join(" "),
        ]);
    }
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
