//! Running the real Nix: evaluation in separate processes, builds and `--check` rebuilds under a timeout that
//! fedigen enforces itself.
//!
//! Why a wrapper: every call must carry the same settings (`NIX_CONFIG`, `--store`), builds must be killable as a
//! whole (Nix runs the builder in its own session, so we signal Nix's process group with SIGTERM and let Nix
//! kill its builder, then SIGKILL after a grace period), and failures must keep the tail of Nix's log.

use super::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The settings ENVIRONMENT.md recommends: sandboxed builds, no substituters (no 4.5 s lost per build trying the
/// public cache), no `kvm` feature advertised on machines where KVM does not work.
pub const DEFAULT_NIX_CONFIG: &str = "sandbox = true\nsandbox-fallback = false\nsubstituters =\nexperimental-features = nix-command\nsystem-features = benchmark big-parallel";

/// How long Nix gets to stop its builder after SIGTERM before everything in its process group is SIGKILLed.
const GRACE: Duration = Duration::from_secs(10);

/// Lines of Nix's stderr kept for a failed build.
const LOG_TAIL_LINES: usize = 25;

/// How to call Nix: which store, which settings.
#[derive(Clone, Debug)]
pub struct Nix {
    /// A chroot store directory (`--store DIR`), or `None` for the system store.
    pub store: Option<PathBuf>,
    /// The value of `NIX_CONFIG` for every call.
    pub config: String,
    /// Limit for one evaluation (an evaluation that never ends must not hang a rollout check).
    pub eval_timeout: Duration,
}

/// Default limit for one evaluation.
pub const DEFAULT_EVAL_TIMEOUT: Duration = Duration::from_secs(600);

/// What one evaluation says about one attribute.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Evaluated {
    /// The `.drv` store path.
    #[serde(rename = "drvPath")]
    pub drv_path: String,
    /// Output name → output store path.
    pub outputs: BTreeMap<String, String>,
}

/// The outcome of one `nix-build` run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildOutcome {
    /// Exit 0.
    Success,
    /// Any other exit status, with the end of Nix's log.
    Failed {
        /// Exit code (`None` when killed by a signal). 100 = build failed, 104 = `--check` found a difference.
        code: Option<i32>,
        /// Last lines of stderr.
        log_tail: String,
    },
    /// Killed by fedigen after the timeout.
    TimedOut {
        /// The end of Nix's log until then.
        log_tail: String,
    },
}

const EVAL_EXPR: &str = r#"{ file, attrsJson }:
let
  v = import file;
  top = if builtins.isFunction v then v { } else v;
  wanted = builtins.fromJSON attrsJson;
  names = if wanted == [ ] then builtins.filter (n: (top.${n}.type or null) == "derivation") (builtins.attrNames top) else wanted;
  get = a: builtins.foldl' (s: n: s.${n}) top (builtins.filter builtins.isString (builtins.split "\\." a));
  describe = d: {
    drvPath = d.drvPath;
    outputs = builtins.listToAttrs (map (o: { name = o; value = d.${o}.outPath; }) (d.outputs or [ "out" ]));
  };
in builtins.listToAttrs (map (a: { name = a; value = describe (get a); }) names)
"#;

impl Nix {
    /// Nix with [`DEFAULT_NIX_CONFIG`] and [`DEFAULT_EVAL_TIMEOUT`] on the given store.
    pub fn new(store: Option<PathBuf>) -> Self {
        Nix {
            store,
            config: DEFAULT_NIX_CONFIG.to_owned(),
            eval_timeout: DEFAULT_EVAL_TIMEOUT,
        }
    }

    /// The directory under which store paths live on disk: the chroot store, or `/`.
    pub fn root(&self) -> PathBuf {
        self.store.clone().unwrap_or_else(|| PathBuf::from("/"))
    }

    /// Where absolute store path `p` is on disk.
    pub fn real_path(&self, p: &str) -> PathBuf {
        crate::store::drv::real_path(&self.root(), p)
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("NIX_CONFIG", &self.config).stdin(Stdio::null());
        if let Some(s) = &self.store {
            c.arg("--store").arg(s);
        }
        c
    }

    /// Evaluates `attrs` of `file` (all top-level derivations when empty) in one fresh `nix-instantiate`
    /// process, writing the `.drv` files to the store; killed after [`Nix::eval_timeout`].
    pub fn evaluate(&self, file: &Path, attrs: &[String]) -> Result<BTreeMap<String, Evaluated>> {
        let file = std::path::absolute(file).map_err(|e| Error::Io {
            context: format!("resolving {}", file.display()),
            source: e,
        })?;
        let mut c = self.command("nix-instantiate");
        c.args([
            "--eval",
            "--strict",
            "--json",
            "--read-write-mode",
            "--argstr",
            "file",
        ])
        .arg(&file)
        .args(["--argstr", "attrsJson"])
        .arg(serde_json::to_string(attrs).expect("strings serialise"))
        .args(["-E", EVAL_EXPR]);
        // The evaluator has no builder to clean up after, and does not always poll for SIGTERM: 1 s grace.
        let (outcome, stdout) = run_captured(
            c,
            "nix-instantiate",
            self.eval_timeout,
            Duration::from_secs(1),
            true,
        )?;
        match outcome {
            BuildOutcome::Success => {}
            BuildOutcome::Failed { log_tail, .. } => {
                return Err(Error::Eval {
                    file,
                    message: log_tail,
                });
            }
            BuildOutcome::TimedOut { .. } => {
                return Err(Error::Eval {
                    file,
                    message: format!("timed out after {} s", self.eval_timeout.as_secs()),
                });
            }
        }
        serde_json::from_slice(&stdout).map_err(|e| Error::Eval {
            file,
            message: format!("unexpected output of nix-instantiate: {e}"),
        })
    }

    /// Builds `drv` (all outputs), or with `check` rebuilds it and compares (`--check --keep-failed`), killing
    /// the build after `timeout`. `tmpdir` receives Nix's build directories (kept ones included).
    pub fn build(
        &self,
        drv: &str,
        check: bool,
        timeout: Duration,
        tmpdir: &Path,
    ) -> Result<BuildOutcome> {
        let mut c = self.command("nix-build");
        c.arg(drv).arg("--no-out-link").env("TMPDIR", tmpdir);
        if check {
            c.args(["--check", "--keep-failed"]);
        }
        run_with_timeout(c, "nix-build", timeout)
    }
}

/// Runs `c` in its own process group with stderr captured; on timeout, SIGTERM to the group, then SIGKILL.
pub fn run_with_timeout(c: Command, name: &str, timeout: Duration) -> Result<BuildOutcome> {
    Ok(run_captured(c, name, timeout, GRACE, false)?.0)
}

/// [`run_with_timeout`] with the SIGTERM→SIGKILL `grace` period given, also returning stdout when
/// `capture_stdout`.
fn run_captured(
    c: Command,
    name: &str,
    timeout: Duration,
    grace: Duration,
    capture_stdout: bool,
) -> Result<(BuildOutcome, Vec<u8>)> {
    let done =
        crate::process::run(c, timeout, grace, capture_stdout).map_err(|e| Error::Spawn {
            command: name.to_owned(),
            source: e,
        })?;
    let log = String::from_utf8_lossy(&done.stderr).into_owned();
    let log_tail = tail(&log, LOG_TAIL_LINES);
    let outcome = if done.timed_out {
        BuildOutcome::TimedOut { log_tail }
    } else if done.status.success() {
        BuildOutcome::Success
    } else {
        BuildOutcome::Failed {
            code: done.status.code(),
            log_tail,
        }
    };
    Ok((outcome, done.stdout))
}

/// The last `n` lines of `s`.
fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
