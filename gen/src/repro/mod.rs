//! Reproducibility checks before rollout: same inputs → same derivations → bit-identical outputs, compared with
//! what the project team's CI recorded in a lock file.
//!
//! The pipeline of [`run_check`], one step per function, data passed forward:
//! 1. evaluate the attributes twice, in separate `nix-instantiate` processes ([`nix::NixTools::evaluate`]); the second
//!    starts in a later wall-clock second than the first ended, so `builtins.currentTime` cannot hide;
//! 2. compare the `.drv` paths with the lock ([`lock::Lock`]); on a difference, walk both derivations down to
//!    the root cause ([`explain::explain`]) and diff the closures by package ([`crate::store::closure`]);
//! 3. build, then rebuild with `nix-build --check --keep-failed`, each under a timeout fedigen enforces; classify
//!    ([`report::Classification`]);
//! 4. for differing outputs, list the differing files (`files::diff_trees`);
//! 5. compare output NAR hashes (computed by [`crate::store::nar`], in parallel) with the lock.
//!
//! Scope: the named derivations are rebuilt; their inputs are built (or substituted) once but not rebuilt, as
//! with `nix-build --check` — unless [`CheckOptions::closure`], which rebuilds every input derivation too
//! (each reported under the attribute that needs it).
//!
//! The CLI (`fedigen repro check|lock`, `fedigen closure diff`) is a thin layer over [`run_check`], [`run_lock`]
//! and [`closure_diff`]; exit codes are in [`report::exit_code`].

pub mod explain;
pub mod files;
pub(crate) mod lock;
pub(crate) mod nix;
pub mod report;

pub use lock::Lock;
pub use nix::{FORCED_OPTIONS, NixSettings, NixTools};
pub use report::{Classification, Report, exit_code};

use crate::store::closure::{self, ClosureDiff};
use crate::store::{StorePath, nar};
use explain::explain;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nix::{BuildOutcome, Evaluated};
use report::{BuildPhase, DrvReport, Evaluation, InputReport, LockStatus, NarStatus, OutputReport};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Errors that stop a check from running at all (findings are in the [`Report`], not here).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program could not be started (Nix not on `PATH`?).
    #[error(
        "cannot run {command}: {} (is Nix installed and on PATH? On Debian: apt-get install nix-bin)",
        crate::io_error::describe(source)
    )]
    Spawn {
        /// The program.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Nix is configured to build as the users of a group this machine does not have (a fresh Debian
    /// `nix-bin` without its recommended packages creates none), so every build fails.
    #[error(
        "Nix cannot build: its setting build-users-group names the group '{group}', which does not exist on this machine.\n\
         Either create the build users (on Debian: apt-get install nix-setup-systemd), or, running as root, build \
         without them: pass --option build-users-group '' to fedigen, or add the line `build-users-group =` to \
         NIX_CONFIG or nix.conf"
    )]
    BuildUsersGroup {
        /// The group Nix looked for.
        group: String,
    },
    /// Evaluation failed.
    #[error("evaluating {}: {message}", file.display())]
    Eval {
        /// The Nix file.
        file: PathBuf,
        /// Nix's error.
        message: String,
    },
    /// Attribute paths that the file does not have, or that are not derivations.
    #[error("{}", describe_missing(file, missing))]
    UnknownAttrs {
        /// The Nix file.
        file: PathBuf,
        /// Each such attribute, with what exists where it stops.
        missing: Vec<nix::MissingAttr>,
    },
    /// Outputs a runtime comparison needs are not in the store.
    #[error(
        "{} not in the store, so {} runtime closure is unknown:\n{}\nbuild {} first ({}), pass --build, or compare build-time closures with --build-time",
        if paths.len() == 1 { "this output is" } else { "these outputs are" },
        if paths.len() == 1 { "its" } else { "their" },
        paths.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"),
        if paths.len() == 1 { "it" } else { "them" },
        how
    )]
    NotBuilt {
        /// The missing outputs.
        paths: Vec<String>,
        /// The command that builds them.
        how: String,
    },
    /// The lock file is unreadable or invalid, or lacks what was asked of it.
    #[error("lock file {}: {reason}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A build that `closure diff --build` needed failed.
    #[error("building {drv} failed ({reason})")]
    BuildFailed {
        /// The derivation.
        drv: String,
        /// Nix's exit and log.
        reason: String,
    },
    /// `repro lock` refuses to record what cannot be reproduced.
    #[error("refusing to lock {attr}: {reason}")]
    Unlockable {
        /// The attribute.
        attr: String,
        /// Why.
        reason: String,
    },
    /// A store format error (unparsable `.drv`, unreadable output).
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// Other I/O.
    #[error("{context}: {}", crate::io_error::describe(source))]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The exit status of `fedigen` for this error, in the global scheme: 1 a check found a problem (a lock
    /// refused), 2 invalid input (the Nix file, an attribute, the lock), 3 the environment lacks something (Nix,
    /// build users, outputs not built, an unreadable store).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Unlockable { .. } | Error::BuildFailed { .. } => 1,
            Error::Eval { .. } | Error::UnknownAttrs { .. } | Error::Lock { .. } => 2,
            Error::Store(crate::store::Error::Io { .. }) => 3,
            Error::Store(_) => 2,
            Error::Spawn { .. }
            | Error::BuildUsersGroup { .. }
            | Error::NotBuilt { .. }
            | Error::Io { .. } => 3,
        }
    }
}

/// At most this many existing names are listed for an unknown attribute.
const LISTED_NAMES: usize = 40;

fn describe_missing(file: &Path, missing: &[nix::MissingAttr]) -> String {
    let mut s = String::new();
    for (i, m) in missing.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        let at = if m.at.is_empty() {
            "the top level".to_owned()
        } else {
            format!("`{}`", m.at.join("."))
        };
        match &m.name {
            Some(name) => s.push_str(&format!(
                "{} has no attribute `{}`: `{name}` does not exist at {at}",
                file.display(),
                m.attr
            )),
            None => s.push_str(&format!(
                "{}: attribute `{}` is not a derivation",
                file.display(),
                m.attr
            )),
        }
        match &m.available {
            Some(names) if names.is_empty() => s.push_str(&format!("; {at} has no attributes")),
            Some(names) => {
                let shown = names
                    .iter()
                    .take(LISTED_NAMES)
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>();
                s.push_str(&format!("; {at} has: {}", shown.join(", ")));
                if names.len() > LISTED_NAMES {
                    s.push_str(&format!(" (and {} more)", names.len() - LISTED_NAMES));
                }
            }
            None if m.name.is_some() => s.push_str(&format!("; {at} is not an attribute set")),
            None => {}
        }
    }
    s
}

/// Result type of the repro module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to check and how.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// The Nix file: an attribute set of derivations, or a function with defaults for all arguments.
    pub file: PathBuf,
    /// Attribute paths (`a.b`) to check; empty means every top-level attribute that is a derivation.
    pub attrs: Vec<String>,
    /// Lock file to compare with (ignored by [`run_lock`]).
    pub lock: Option<PathBuf>,
    /// Chroot store directory (`--store DIR`); `None` for the system store.
    pub store: Option<PathBuf>,
    /// Limit for each build and each rebuild.
    pub timeout: Duration,
    /// Limit for each of the two evaluations.
    pub eval_timeout: Duration,
    /// Build and rebuild (`false`: evaluation and lock comparison only).
    pub build: bool,
    /// Also rebuild every derivation of the closures (`nix-build --check` of each input), not only the named
    /// ones. Fixed-output derivations are skipped: Nix checks their hash on every build.
    pub closure: bool,
    /// Show a progress bar on stderr (the CLI sets this when stderr is a terminal).
    pub progress: bool,
    /// The Nix settings of every call: the user's, plus [`FORCED_OPTIONS`] unless changed.
    pub settings: NixSettings,
}

impl CheckOptions {
    /// Options with defaults: all derivations, system store, 1 hour per build, 10 minutes per evaluation,
    /// build, no progress bar.
    pub fn new(file: impl Into<PathBuf>) -> Self {
        CheckOptions {
            file: file.into(),
            attrs: vec![],
            lock: None,
            store: None,
            timeout: Duration::from_secs(3600),
            eval_timeout: nix::DEFAULT_EVAL_TIMEOUT,
            build: true,
            closure: false,
            progress: false,
            settings: NixSettings::default(),
        }
    }

    fn nix(&self) -> NixTools {
        NixTools {
            store: self.store.clone(),
            settings: self.settings.clone(),
            eval_timeout: self.eval_timeout,
        }
    }
}

fn progress_bar(show: bool, len: u64) -> ProgressBar {
    let target = if show {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let pb = ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
    {
        pb.set_style(style);
    }
    pb
}

/// Evaluates twice; the second evaluation starts in a later wall-clock second than the first one ended.
fn evaluate_twice(
    nix: &NixTools,
    opts: &CheckOptions,
    pb: &ProgressBar,
) -> Result<(BTreeMap<String, Evaluated>, BTreeMap<String, Evaluated>)> {
    pb.set_message("evaluating (1/2)");
    let first = nix.evaluate(&opts.file, &opts.attrs)?;
    pb.inc(1);
    let ended = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let next = Duration::from_secs(ended.as_secs() + 1);
    if let Ok(wait) = (UNIX_EPOCH + next).duration_since(SystemTime::now()) {
        std::thread::sleep(wait + Duration::from_millis(5));
    }
    pb.set_message("evaluating (2/2)");
    let second = nix.evaluate(&opts.file, &opts.attrs)?;
    pb.inc(1);
    Ok((first, second))
}

/// Runs the whole check (see the module documentation) and returns the findings.
///
/// `Err` only when the check cannot run; every finding, including failed builds, is in the [`Report`], whose
/// [`Report::exit_code`] the CLI returns.
pub fn run_check(opts: &CheckOptions) -> Result<Report> {
    let nix = opts.nix();
    let root = nix.root();
    let lock = opts.lock.as_deref().map(Lock::read).transpose()?;
    let pb = progress_bar(opts.progress, 2);
    let (first, second) = evaluate_twice(&nix, opts, &pb)?;
    pb.inc_length(first.len() as u64 * if opts.build { 2 } else { 0 });
    let tmp = tempfile::Builder::new()
        .prefix("fedigen-repro-")
        .tempdir()
        .map_err(|e| Error::Io {
            context: "creating a temporary directory".into(),
            source: e,
        })?;
    let mut report = Report::default();
    // Inputs already rebuilt for an earlier attribute (with `closure`).
    let mut checked: BTreeSet<String> = BTreeSet::new();
    for (attr, ev) in &first {
        let evaluation = match second.get(attr) {
            Some(s) if s == ev => Evaluation::Pure,
            other => {
                let second_drv_path = other.map(|s| s.drv_path.clone()).unwrap_or_default();
                let explanation = other
                    .map(|s| explain(&root, &ev.drv_path, &s.drv_path))
                    .transpose()?;
                Evaluation::Impure {
                    second_drv_path,
                    explanation,
                }
            }
        };
        let lock_status = compare_with_lock(&root, lock.as_ref(), attr, ev)?;
        let mut outputs = output_reports(&ev.outputs);
        let build = if opts.build {
            build_and_check(
                &nix,
                attr,
                &ev.drv_path,
                opts.timeout,
                tmp.path(),
                &pb,
                &mut outputs,
            )?
        } else {
            Classification::NotBuilt
        };
        if let Some(lock) = &lock {
            let locked = lock.derivations.get(attr);
            for (name, o) in outputs.iter_mut() {
                let Some(hash) = &o.nar_hash else { continue };
                o.lock = match locked
                    .and_then(|l| l.outputs.get(name))
                    .and_then(|l| l.nar_hash.as_ref())
                {
                    None => NarStatus::NotLocked,
                    Some(h) if h == hash => NarStatus::Matches,
                    Some(h) => NarStatus::Differs { locked: h.clone() },
                };
            }
        }
        let mut inputs = Vec::new();
        if opts.build && opts.closure {
            let closure = closure::read_closure(&root, std::slice::from_ref(&ev.drv_path))?;
            let todo: Vec<_> = closure
                .iter()
                .filter(|(p, d)| {
                    **p != ev.drv_path
                        && !d.outputs.values().any(|o| !o.hash.is_empty())
                        && !checked.contains(*p)
                })
                .collect();
            pb.inc_length(todo.len() as u64 * 2);
            for (drv_path, d) in todo {
                checked.insert(drv_path.clone());
                let name = StorePath::from_base_name(
                    drv_path.strip_prefix("/nix/store/").unwrap_or(drv_path),
                )
                .map(|p| closure::parse_name_version(p.name()))
                .map(|(n, v)| if v.is_empty() { n } else { format!("{n}-{v}") })
                .unwrap_or_else(|_| drv_path.clone());
                let paths = d
                    .outputs
                    .iter()
                    .map(|(k, o)| (k.clone(), o.path.clone()))
                    .collect();
                let mut outputs = output_reports(&paths);
                let build = build_and_check(
                    &nix,
                    &name,
                    drv_path,
                    opts.timeout,
                    tmp.path(),
                    &pb,
                    &mut outputs,
                )?;
                inputs.push(InputReport {
                    name,
                    drv_path: drv_path.clone(),
                    build,
                    outputs,
                });
            }
        }
        report.derivations.push(DrvReport {
            attr: attr.clone(),
            drv_path: ev.drv_path.clone(),
            evaluation,
            lock: lock_status,
            build,
            outputs,
            inputs,
        });
    }
    pb.finish_and_clear();
    Ok(report)
}

/// Empty reports for outputs (name → store path), filled by [`build_and_check`].
fn output_reports(paths: &BTreeMap<String, String>) -> BTreeMap<String, OutputReport> {
    paths
        .iter()
        .map(|(k, p)| {
            let r = OutputReport {
                path: p.clone(),
                nar_hash: None,
                nar_size: None,
                lock: NarStatus::NotChecked,
                check_path: None,
                differences: vec![],
                diffoscope: None,
            };
            (k.clone(), r)
        })
        .collect()
}

fn compare_with_lock(
    root: &Path,
    lock: Option<&Lock>,
    attr: &str,
    ev: &Evaluated,
) -> Result<LockStatus> {
    let Some(lock) = lock else {
        return Ok(LockStatus::NoLock);
    };
    let Some(locked) = lock.derivations.get(attr) else {
        return Ok(LockStatus::NotLocked);
    };
    if locked.drv_path == ev.drv_path {
        return Ok(LockStatus::Matches);
    }
    let explanation = explain(root, &locked.drv_path, &ev.drv_path)?;
    let root_causes = explanation
        .root_causes()
        .iter()
        .map(|d| d.name.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let old = to_store_paths(&locked.closure)?;
    let new = closure::closure_paths(root, std::slice::from_ref(&ev.drv_path))?;
    Ok(LockStatus::Differs {
        locked_drv_path: locked.drv_path.clone(),
        explanation: Some(Box::new(explanation)),
        root_causes,
        closure: Box::new(closure::diff_closures(&old, &new)),
    })
}

fn to_store_paths(paths: &[String]) -> Result<BTreeSet<StorePath>> {
    Ok(paths
        .iter()
        .map(|p| StorePath::try_from(p.clone()))
        .collect::<Result<_, _>>()?)
}

/// Builds, rebuilds with `--check`, classifies, and fills in NAR hashes and differing files of `outputs`.
fn build_and_check(
    nix: &NixTools,
    attr: &str,
    drv: &str,
    timeout: Duration,
    tmp: &Path,
    pb: &ProgressBar,
    outputs: &mut BTreeMap<String, OutputReport>,
) -> Result<Classification> {
    let timeout_secs = timeout.as_secs();
    pb.set_message(format!("{attr}: building"));
    let first = nix.build(drv, false, timeout, tmp)?;
    pb.inc(1);
    match first {
        BuildOutcome::Success => {}
        BuildOutcome::Failed { code, log_tail } => {
            pb.inc(1);
            return Ok(Classification::FirstBuildFailed {
                exit_code: code,
                log_tail,
            });
        }
        BuildOutcome::TimedOut { log_tail } => {
            pb.inc(1);
            return Ok(Classification::TimedOut {
                phase: BuildPhase::First,
                timeout_secs,
                log_tail,
            });
        }
    }
    // NAR hashes of the first build, all outputs in parallel.
    let reals: Vec<PathBuf> = outputs.values().map(|o| nix.real_path(&o.path)).collect();
    for (o, h) in outputs.values_mut().zip(nar::nar_hash_paths(&reals)) {
        let (hash, size) = h?;
        o.nar_hash = Some(hash);
        o.nar_size = Some(size);
    }
    pb.set_message(format!("{attr}: rebuilding (--check)"));
    let second = nix.build(drv, true, timeout, tmp)?;
    pb.inc(1);
    Ok(match second {
        BuildOutcome::Success => Classification::Reproducible,
        // Nix's exit status is 0x60 | flags; 0x08 = "--check found a difference" (104 alone).
        BuildOutcome::Failed { code: Some(c), .. } if c & 0x60 == 0x60 && c & 0x08 != 0 => {
            for (o, real) in outputs.values_mut().zip(&reals) {
                let chk = files::check_path(real);
                if chk.exists() {
                    o.differences = files::diff_trees(real, &chk)?;
                    o.check_path = Some(format!("{}.check", o.path));
                    o.diffoscope = files::diffoscope_command(real, &chk);
                }
            }
            Classification::Unreproducible
        }
        BuildOutcome::Failed { code, log_tail } => Classification::SecondBuildFailed {
            exit_code: code,
            log_tail,
        },
        BuildOutcome::TimedOut { log_tail } => Classification::TimedOut {
            phase: BuildPhase::Second,
            timeout_secs,
            log_tail,
        },
    })
}

/// Evaluates (twice, refusing impure results), builds when `opts.build`, and returns the lock to write with
/// [`Lock::write`]. Why refuse: a lock of an impure evaluation or a failed build cannot be reproduced by anyone.
pub fn run_lock(opts: &CheckOptions) -> Result<Lock> {
    let nix = opts.nix();
    let root = nix.root();
    let pb = progress_bar(opts.progress, 2);
    let (first, second) = evaluate_twice(&nix, opts, &pb)?;
    pb.inc_length(first.len() as u64);
    let tmp = tempfile::Builder::new()
        .prefix("fedigen-lock-")
        .tempdir()
        .map_err(|e| Error::Io {
            context: "creating a temporary directory".into(),
            source: e,
        })?;
    let mut lock = Lock {
        version: lock::LOCK_VERSION,
        derivations: BTreeMap::new(),
    };
    for (attr, ev) in &first {
        if second.get(attr) != Some(ev) {
            let other = second
                .get(attr)
                .map(|s| s.drv_path.as_str())
                .unwrap_or("nothing");
            return Err(Error::Unlockable {
                attr: attr.clone(),
                reason: format!("impure evaluation ({} then {other})", ev.drv_path),
            });
        }
        let mut outputs: BTreeMap<String, lock::LockedOutput> = ev
            .outputs
            .iter()
            .map(|(k, p)| {
                (
                    k.clone(),
                    lock::LockedOutput {
                        path: p.clone(),
                        nar_hash: None,
                        nar_size: None,
                    },
                )
            })
            .collect();
        if opts.build {
            pb.set_message(format!("{attr}: building"));
            match nix.build(&ev.drv_path, false, opts.timeout, tmp.path())? {
                BuildOutcome::Success => {}
                BuildOutcome::Failed { code, log_tail } => {
                    return Err(Error::Unlockable {
                        attr: attr.clone(),
                        reason: format!(
                            "build failed ({}):\n{log_tail}",
                            report::describe_exit(code)
                        ),
                    });
                }
                BuildOutcome::TimedOut { .. } => {
                    return Err(Error::Unlockable {
                        attr: attr.clone(),
                        reason: format!("build timed out after {}s", opts.timeout.as_secs()),
                    });
                }
            }
            let reals: Vec<PathBuf> = outputs.values().map(|o| nix.real_path(&o.path)).collect();
            for (o, h) in outputs.values_mut().zip(nar::nar_hash_paths(&reals)) {
                let (hash, size) = h?;
                o.nar_hash = Some(hash);
                o.nar_size = Some(size);
            }
        }
        pb.inc(1);
        let runtime_closure = if opts.build {
            let outs: Vec<String> = outputs.values().map(|o| o.path.clone()).collect();
            Some(
                nix.path_info(&outs, true)?
                    .into_iter()
                    .map(|i| (i.path, i.nar_size))
                    .collect(),
            )
        } else {
            None
        };
        let closure = closure::read_closure(&root, std::slice::from_ref(&ev.drv_path))?
            .into_keys()
            .collect();
        lock.derivations.insert(
            attr.clone(),
            lock::LockedDerivation {
                drv_path: ev.drv_path.clone(),
                outputs,
                closure,
                runtime_closure,
            },
        );
    }
    pb.finish_and_clear();
    Ok(lock)
}

/// One side of `fedigen closure diff`.
#[derive(Clone, Debug)]
pub enum ClosureSource {
    /// A `.drv` store path (absolute), read from the store; its outputs for a runtime comparison.
    Drv(String),
    /// A built output store path (absolute), such as a system closure (runtime comparisons only).
    Output(String),
    /// A lock file: the union of the closures of `attrs` (all when empty).
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Which attributes.
        attrs: Vec<String>,
    },
    /// A Nix file evaluated now (the deployment): attributes as in [`CheckOptions::attrs`].
    Eval {
        /// The Nix file.
        file: PathBuf,
        /// Which attributes (all derivations when empty).
        attrs: Vec<String>,
    },
}

/// How `closure diff` compares.
#[derive(Clone, Debug)]
pub struct ClosureDiffOptions {
    /// Compare derivation closures (everything built, build-only inputs included) instead of runtime closures
    /// (what is deployed: the outputs and every store path they refer to, with sizes).
    pub build_time: bool,
    /// Build outputs that are not in the store yet (runtime comparisons of derivations and Nix files).
    pub build: bool,
    /// Limit for each such build.
    pub timeout: Duration,
}

impl Default for ClosureDiffOptions {
    /// Runtime closures, nothing built, 1 hour per build.
    fn default() -> Self {
        ClosureDiffOptions {
            build_time: false,
            build: false,
            timeout: Duration::from_secs(3600),
        }
    }
}

impl ClosureSource {
    /// Guesses the kind of a command-line argument: `*.drv` → derivation, another store path → built output,
    /// `*.json`/`*.lock` → lock, else a Nix file. Why: `fedigen closure diff OLD NEW` takes any two of them.
    pub fn from_arg(arg: &str) -> Self {
        if arg.ends_with(".drv") {
            ClosureSource::Drv(arg.to_owned())
        } else if arg.starts_with("/nix/store/") {
            ClosureSource::Output(arg.to_owned())
        } else if arg.ends_with(".json") || arg.ends_with(".lock") {
            ClosureSource::Lock {
                path: arg.into(),
                attrs: vec![],
            }
        } else {
            ClosureSource::Eval {
                file: arg.into(),
                attrs: vec![],
            }
        }
    }

    /// The derivation closure.
    fn build_time_paths(&self, nix: &NixTools) -> Result<BTreeSet<StorePath>> {
        match self {
            ClosureSource::Drv(p) => Ok(closure::closure_paths(
                &nix.root(),
                std::slice::from_ref(p),
            )?),
            ClosureSource::Output(p) => Err(Error::Io {
                context: format!("build-time closure of {p}"),
                source: std::io::Error::other(
                    "a built output has no derivation closure here: give its .drv, a lock or a Nix file",
                ),
            }),
            ClosureSource::Lock { path, attrs } => {
                let lock = Lock::read(path)?;
                let mut all = BTreeSet::new();
                for (_, l) in selected(&lock, path, attrs)? {
                    all.extend(to_store_paths(&l.closure)?);
                }
                Ok(all)
            }
            ClosureSource::Eval { file, attrs } => {
                let ev = nix.evaluate(file, attrs)?;
                let roots: Vec<String> = ev.values().map(|e| e.drv_path.clone()).collect();
                Ok(closure::closure_paths(&nix.root(), &roots)?)
            }
        }
    }

    /// The runtime closure with NAR sizes: outputs must be in the store (built first with `opts.build`).
    fn runtime_paths(
        &self,
        nix: &NixTools,
        opts: &ClosureDiffOptions,
    ) -> Result<BTreeMap<StorePath, u64>> {
        let store_flag = nix
            .store
            .as_ref()
            .map(|s| format!(" --store {}", s.display()))
            .unwrap_or_default();
        // (derivation to build, its outputs) per root; how to build them, for the message.
        let (roots, how): (Vec<Root>, String) = match self {
            ClosureSource::Lock { path, attrs } => {
                let lock = Lock::read(path)?;
                let mut all = BTreeMap::new();
                for (a, l) in selected(&lock, path, attrs)? {
                    let Some(rt) = &l.runtime_closure else {
                        return Err(Error::Lock {
                            path: path.clone(),
                            reason: format!(
                                "it records no runtime closure for `{a}` (the lock was written without building, \
                                 or by an older fedigen): lock again with a build (`fedigen repro lock`), or \
                                 compare build-time closures with --build-time"
                            ),
                        });
                    };
                    for (p, size) in rt {
                        all.insert(StorePath::try_from(p.clone())?, *size);
                    }
                }
                return Ok(all);
            }
            ClosureSource::Output(p) => (
                vec![(None, vec![p.clone()])],
                format!("nix-store{store_flag} --realise {p}"),
            ),
            ClosureSource::Drv(p) => {
                let d = crate::store::Derivation::read(&nix.real_path(p))?;
                let outs = d.outputs.values().map(|o| o.path.clone()).collect();
                (
                    vec![(Some(p.clone()), outs)],
                    format!("nix-build{store_flag} {p}"),
                )
            }
            ClosureSource::Eval { file, attrs } => {
                let ev = nix.evaluate(file, attrs)?;
                let roots = ev
                    .values()
                    .map(|e| {
                        (
                            Some(e.drv_path.clone()),
                            e.outputs.values().cloned().collect(),
                        )
                    })
                    .collect();
                let mut how = format!("nix-build{store_flag} {}", file.display());
                for a in attrs {
                    how.push_str(&format!(" -A {a}"));
                }
                (roots, how)
            }
        };
        let all_outputs: Vec<String> = roots.iter().flat_map(|(_, o)| o.clone()).collect();
        let missing = |nix: &NixTools| -> Result<BTreeSet<String>> {
            Ok(nix
                .path_info(&all_outputs, false)?
                .into_iter()
                .filter(|i| !i.valid)
                .map(|i| i.path)
                .collect())
        };
        let mut absent = missing(nix)?;
        if !absent.is_empty() && opts.build {
            let tmp = tempfile::Builder::new()
                .prefix("fedigen-closure-")
                .tempdir()
                .map_err(|e| Error::Io {
                    context: "creating a temporary directory".into(),
                    source: e,
                })?;
            for (drv, outs) in &roots {
                let Some(drv) = drv else { continue };
                if !outs.iter().any(|o| absent.contains(o)) {
                    continue;
                }
                match nix.build(drv, false, opts.timeout, tmp.path())? {
                    BuildOutcome::Success => {}
                    BuildOutcome::Failed { code, log_tail } => {
                        return Err(Error::BuildFailed {
                            drv: drv.clone(),
                            reason: format!("{}:\n{log_tail}", report::describe_exit(code)),
                        });
                    }
                    BuildOutcome::TimedOut { .. } => {
                        return Err(Error::BuildFailed {
                            drv: drv.clone(),
                            reason: format!("timed out after {} s", opts.timeout.as_secs()),
                        });
                    }
                }
            }
            absent = missing(nix)?;
        }
        if !absent.is_empty() {
            return Err(Error::NotBuilt {
                paths: absent.into_iter().collect(),
                how,
            });
        }
        nix.path_info(&all_outputs, true)?
            .into_iter()
            .map(|i| Ok((StorePath::try_from(i.path)?, i.nar_size)))
            .collect()
    }
}

/// A root of a runtime closure: the derivation that builds it (when known) and its output paths.
type Root = (Option<String>, Vec<String>);

/// The locked attributes a lock source stands for: `attrs`, or all; an attribute the lock lacks is an error.
fn selected<'a>(
    lock: &'a Lock,
    path: &Path,
    attrs: &[String],
) -> Result<Vec<(&'a String, &'a lock::LockedDerivation)>> {
    if let Some(a) = attrs.iter().find(|a| !lock.derivations.contains_key(*a)) {
        return Err(Error::Lock {
            path: path.to_owned(),
            reason: format!(
                "it has no attribute `{a}`; it has: {}",
                lock.derivations
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(lock
        .derivations
        .iter()
        .filter(|(a, _)| attrs.is_empty() || attrs.contains(a))
        .collect())
}

/// Packages added, removed, changed and rebuilt between two closures (derivations, outputs, locks or a
/// deployment): by default the runtime closures with sizes, with `opts.build_time` the derivation closures.
pub fn closure_diff(
    old: &ClosureSource,
    new: &ClosureSource,
    nix: &NixTools,
    opts: &ClosureDiffOptions,
) -> Result<ClosureDiff> {
    if opts.build_time {
        let (a, b) = (old.build_time_paths(nix)?, new.build_time_paths(nix)?);
        Ok(closure::diff_closures(&a, &b))
    } else {
        let (a, b) = (old.runtime_paths(nix, opts)?, new.runtime_paths(nix, opts)?);
        Ok(closure::diff_runtime_closures(&a, &b))
    }
}
