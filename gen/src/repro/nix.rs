//! Running the real Nix: evaluation in separate processes, builds and `--check` rebuilds under a timeout that
//! fedigen enforces itself.
//!
//! Why a wrapper: every call must carry the same settings (`NIX_CONFIG`, `--store`), builds must be killable as a
//! whole (Nix runs the builder in its own session, so we signal Nix's process group with SIGTERM and let Nix
//! kill its builder, then SIGKILL after a grace period), and failures must keep the tail of Nix's log.

use super::{Error, Result};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use wait_timeout::ChildExt;

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
}

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
    /// process, writing the `.drv` files to the store.
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
        let out = c.output().map_err(|e| Error::Spawn {
            command: "nix-instantiate".into(),
            source: e,
        })?;
        if !out.status.success() {
            return Err(Error::Eval {
                file: file.clone(),
                message: tail(&String::from_utf8_lossy(&out.stderr), LOG_TAIL_LINES),
            });
        }
        serde_json::from_slice(&out.stdout).map_err(|e| Error::Eval {
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
pub fn run_with_timeout(mut c: Command, name: &str, timeout: Duration) -> Result<BuildOutcome> {
    use std::os::unix::process::CommandExt;
    c.process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| Error::Spawn {
        command: name.to_owned(),
        source: e,
    })?;
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let pgid = child.id() as libc::pid_t;
    let waited = child.wait_timeout(timeout).map_err(|e| Error::Spawn {
        command: name.to_owned(),
        source: e,
    })?;
    let (status, timed_out) = match waited {
        Some(s) => (s, false),
        None => {
            // SAFETY: kill(2) with a negative pid signals the process group we created for this child.
            unsafe { libc::kill(-pgid, libc::SIGTERM) };
            let s = match child.wait_timeout(GRACE).map_err(|e| Error::Spawn {
                command: name.to_owned(),
                source: e,
            })? {
                Some(s) => s,
                None => {
                    // SAFETY: as above.
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                    child.wait().map_err(|e| Error::Spawn {
                        command: name.to_owned(),
                        source: e,
                    })?
                }
            };
            (s, true)
        }
    };
    let log = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    let log_tail = tail(&log, LOG_TAIL_LINES);
    Ok(if timed_out {
        BuildOutcome::TimedOut { log_tail }
    } else if status.success() {
        BuildOutcome::Success
    } else {
        BuildOutcome::Failed {
            code: status.code(),
            log_tail,
        }
    })
}

/// The last `n` lines of `s`.
fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
