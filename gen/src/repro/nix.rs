//! Running the real Nix: evaluation in separate processes, builds and `--check` rebuilds under a timeout that
//! fedigen enforces itself, and the runtime closures of built outputs.
//!
//! Why a wrapper: every call must carry the same settings ([`NixSettings`], `--store`), builds must be killable
//! as a whole (Nix runs the builder in its own session, so we signal Nix's process group with SIGTERM and let Nix
//! kill its builder, then SIGKILL after a grace period), and failures must keep the tail of Nix's log.
//!
//! Settings: the user's own (`nix.conf`, `NIX_CONFIG`: their build users, remote `builders`, binary caches,
//! sandbox paths) always reach Nix unchanged. fedigen adds only what a correct check needs
//! ([`FORCED_OPTIONS`]), as `--option NAME VALUE` arguments that a user can change ([`NixSettings::set`]).

use super::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What fedigen sets for every Nix call unless told otherwise (`--option NAME VALUE`), with the reason.
///
/// Only these; everything else (substituters, build users, `builders`, `system-features`, sandbox paths) is
/// the user's. Substitution is left alone on purpose: the rebuild of `nix-build --check` is never substituted,
/// so a first build fetched from the user's cache is compared with a local build, which is the check wanted.
pub const FORCED_OPTIONS: &[(&str, &str, &str)] = &[
    (
        "sandbox",
        "true",
        "a build outside the sandbox sees the machine (its /usr, /home, network), so its result says nothing about another machine",
    ),
    (
        "sandbox-fallback",
        "false",
        "where the sandbox cannot be set up, Nix would otherwise build without it and say nothing",
    ),
];

/// The Nix settings of every call fedigen makes: the user's, plus fedigen's `--option`s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NixSettings {
    /// `NIX_CONFIG` for Nix. `None` (the default) leaves the environment's as it is: the user's settings reach
    /// Nix untouched. `Some` replaces it; tests use that to pass the inherited value with their own lines
    /// appended, without changing their own process's environment.
    pub config: Option<String>,
    /// `--option NAME VALUE` pairs given to every call, in order: [`FORCED_OPTIONS`] unless changed.
    pub options: Vec<(String, String)>,
}

impl Default for NixSettings {
    fn default() -> Self {
        NixSettings {
            config: None,
            options: FORCED_OPTIONS
                .iter()
                .map(|(n, v, _)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }
}

impl NixSettings {
    /// Sets `name` to `value` for every call, replacing fedigen's own value of the same setting. Why: what
    /// fedigen forces must stay changeable (e.g. `sandbox relaxed` for derivations that need `__noChroot`).
    /// Repeated `extra-…` settings all apply (Nix appends them).
    pub fn set(&mut self, name: &str, value: &str) {
        if !name.starts_with("extra-") {
            self.options.retain(|(n, _)| n != name);
        }
        self.options.push((name.to_owned(), value.to_owned()));
    }

    /// Applies these settings to `c`.
    fn apply(&self, c: &mut Command) {
        if let Some(config) = &self.config {
            c.env("NIX_CONFIG", config);
        }
        for (n, v) in &self.options {
            c.arg("--option").arg(n).arg(v);
        }
    }
}

/// How long Nix gets to stop its builder after SIGTERM before everything in its process group is SIGKILLed.
const GRACE: Duration = Duration::from_secs(10);

/// Lines of Nix's stderr kept for a failed build.
const LOG_TAIL_LINES: usize = 25;

/// How to call Nix's build and store tools (`nix-build`, `nix-instantiate` for `.drv` files, `nix-store`,
/// `nix path-info`): which store, which settings. Evaluating text is [`crate::eval::Evaluator`]'s job.
#[derive(Clone, Debug)]
pub struct NixTools {
    /// A chroot store directory (`--store DIR`), or `None` for the system store.
    pub store: Option<PathBuf>,
    /// The settings of every call.
    pub settings: NixSettings,
    /// Limit for one evaluation (an evaluation that never ends must not hang a rollout check).
    pub eval_timeout: Duration,
}

/// Default limit for one evaluation.
pub(crate) const DEFAULT_EVAL_TIMEOUT: Duration = Duration::from_secs(600);

/// What one evaluation says about one attribute.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Evaluated {
    /// The `.drv` store path.
    #[serde(rename = "drvPath")]
    pub drv_path: String,
    /// Output name → output store path.
    pub outputs: BTreeMap<String, String>,
}

/// An attribute path the file does not have, with what it does have there.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct MissingAttr {
    /// The attribute path as asked for.
    #[serde(skip)]
    pub attr: String,
    /// The part of the path that exists (empty: the top level).
    pub at: Vec<String>,
    /// The first name that is missing there, or `None` when the whole path exists but is not a derivation.
    pub name: Option<String>,
    /// The names that exist at `at` (`None` when the value there is not an attribute set).
    pub available: Option<Vec<String>>,
}

/// What Nix knows of one valid store path (`nix path-info --json`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct PathInfo {
    /// The store path.
    pub path: String,
    /// Size of its NAR serialisation in bytes (what it takes in the store, as nvd counts).
    #[serde(rename = "narSize", default)]
    pub nar_size: u64,
    /// The store paths it refers to at run time.
    #[serde(default)]
    pub references: Vec<String>,
    /// `false` when the path is not in the store (`nix path-info` then says nothing else).
    #[serde(default = "valid_by_default")]
    pub valid: bool,
}

fn valid_by_default() -> bool {
    true
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

/// The evaluation: for each wanted attribute path, its derivation, or where the path stops existing (then
/// nothing is evaluated further, so that an unknown `-A` is answered with the names that exist, never with a
/// Nix error about fedigen's own expression).
const EVAL_EXPR: &str = r#"{ file, attrsJson }:
let
  v = import file;
  top = if builtins.isFunction v then v { } else v;
  wanted = builtins.fromJSON attrsJson;
  isDrv = x: builtins.isAttrs x && (x.type or null) == "derivation";
  names = if wanted == [ ] then builtins.filter (n: isDrv top.${n}) (builtins.attrNames top) else wanted;
  names' = a: if builtins.isAttrs a then builtins.attrNames a else null;
  walk = s: done: rest:
    if rest == [ ] then
      (if isDrv s then { found = s; } else { missing = { at = done; name = null; available = names' s; }; })
    else
      let n = builtins.head rest; in
      if builtins.isAttrs s && builtins.hasAttr n s then walk s.${n} (done ++ [ n ]) (builtins.tail rest)
      else { missing = { at = done; name = n; available = names' s; }; };
  split = a: builtins.filter builtins.isString (builtins.split "\\." a);
  results = map (a: { name = a; value = walk top [ ] (split a); }) names;
  missing = builtins.filter (r: r.value ? missing) results;
  describe = d: {
    drvPath = d.drvPath;
    outputs = builtins.listToAttrs (map (o: { name = o; value = d.${o}.outPath; }) (d.outputs or [ "out" ]));
  };
in
if missing != [ ] then { missing = builtins.listToAttrs (map (r: { inherit (r) name; value = r.value.missing; }) missing); }
else { found = builtins.listToAttrs (map (r: { inherit (r) name; value = describe r.value.found; }) results); }
"#;

#[derive(serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum EvalAnswer {
    Found(BTreeMap<String, Evaluated>),
    Missing(BTreeMap<String, MissingAttr>),
}

impl NixTools {
    /// Nix with the user's settings plus [`FORCED_OPTIONS`], and `DEFAULT_EVAL_TIMEOUT`, on the given store.
    pub fn new(store: Option<PathBuf>) -> Self {
        NixTools {
            store,
            settings: NixSettings::default(),
            eval_timeout: DEFAULT_EVAL_TIMEOUT,
        }
    }

    /// The directory under which store paths live on disk: the chroot store, or `/`.
    pub fn root(&self) -> PathBuf {
        self.store.clone().unwrap_or_else(|| PathBuf::from("/"))
    }

    /// Where absolute store path `p` is on disk.
    pub(crate) fn real_path(&self, p: &str) -> PathBuf {
        crate::store::drv::real_path(&self.root(), p)
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.stdin(Stdio::null());
        self.settings.apply(&mut c);
        if let Some(s) = &self.store {
            c.arg("--store").arg(s);
        }
        c
    }

    /// Evaluates `attrs` of `file` (all top-level derivations when empty) in one fresh `nix-instantiate`
    /// process, writing the `.drv` files to the store; killed after [`NixTools::eval_timeout`]. An attribute path
    /// that does not exist, or is not a derivation, is [`Error::UnknownAttrs`] with the names that do exist.
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
                    message: without_our_expression(&log_tail),
                });
            }
            BuildOutcome::TimedOut { .. } => {
                return Err(Error::Eval {
                    file,
                    message: format!("timed out after {} s", self.eval_timeout.as_secs()),
                });
            }
        }
        let answer: EvalAnswer = serde_json::from_slice(&stdout).map_err(|e| Error::Eval {
            file: file.clone(),
            message: format!("unexpected output of nix-instantiate: {e}"),
        })?;
        match answer {
            EvalAnswer::Found(found) => Ok(found),
            EvalAnswer::Missing(missing) => Err(Error::UnknownAttrs {
                file,
                missing: missing
                    .into_iter()
                    .map(|(attr, m)| MissingAttr { attr, ..m })
                    .collect(),
            }),
        }
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

    /// What the store knows of `paths` (`nix path-info --json`), and with `recursive` of everything they refer
    /// to at run time: their runtime closure, with NAR sizes. Paths not in the store come back with `valid:
    /// false` (only without `recursive`: ask for validity first).
    pub(crate) fn path_info(&self, paths: &[String], recursive: bool) -> Result<Vec<PathInfo>> {
        if paths.is_empty() {
            return Ok(vec![]);
        }
        let mut c = self.command("nix");
        c.args([
            "--extra-experimental-features",
            "nix-command",
            "path-info",
            "--json",
        ]);
        if recursive {
            c.arg("--recursive");
        }
        c.args(paths);
        let (outcome, stdout) = run_captured(
            c,
            "nix path-info",
            self.eval_timeout,
            Duration::from_secs(1),
            true,
        )?;
        let failure = match outcome {
            BuildOutcome::Success => None,
            BuildOutcome::Failed { log_tail, .. } => Some(log_tail),
            BuildOutcome::TimedOut { .. } => {
                Some(format!("timed out after {} s", self.eval_timeout.as_secs()))
            }
        };
        if let Some(message) = failure {
            return Err(Error::Io {
                context: "reading the store with `nix path-info`".into(),
                source: std::io::Error::other(message),
            });
        }
        serde_json::from_slice(&stdout).map_err(|e| Error::Io {
            context: "reading the output of `nix path-info --json`".into(),
            source: std::io::Error::other(e.to_string()),
        })
    }
}

/// Nix's error without the lines that quote or point into fedigen's own evaluation expression: people see
/// what is wrong in *their* file.
fn without_our_expression(log: &str) -> String {
    let mut out = Vec::new();
    let mut skipping = false;
    for line in log.lines() {
        let t = line.trim_start();
        if t.starts_with("at «string»") {
            skipping = true;
            continue;
        }
        if skipping {
            // The quoted source lines after a position: `  12|   code`, the caret line, blank lines.
            let quoted = t.is_empty()
                || t.split_once('|')
                    .is_some_and(|(n, _)| n.trim().chars().all(|c| c.is_ascii_digit()))
                || t.chars().all(|c| c == '^' || c == '|' || c == ' ');
            if quoted {
                continue;
            }
            skipping = false;
        }
        if t.starts_with("(use '--show-trace'") {
            out.push("(pass --option show-trace true to see where it comes from)");
            continue;
        }
        out.push(line);
    }
    // Our caller says "error:" once; Nix's own prefix would double it.
    let text = out.join("\n");
    match text.find("error: ") {
        Some(i) if text[..i].trim().is_empty() || text[..i].ends_with('\n') => {
            format!("{}{}", &text[..i], &text[i + "error: ".len()..])
        }
        _ => text,
    }
}

/// Runs `c` in its own process group with stderr captured; on timeout, SIGTERM to the group, then SIGKILL.
pub(crate) fn run_with_timeout(c: Command, name: &str, timeout: Duration) -> Result<BuildOutcome> {
    Ok(run_captured(c, name, timeout, GRACE, false)?.0)
}

/// What Nix says when `build-users-group` names a group this machine does not have.
const NO_BUILD_USERS: &str = "specified in 'build-users-group' does not exist";

/// [`run_with_timeout`] with the SIGTERM→SIGKILL `grace` period given, also returning stdout when
/// `capture_stdout`. A failure because the configured build-users group is missing is
/// [`Error::BuildUsersGroup`]: the machine's setup, not the derivation, is at fault.
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
        if let Some(group) = missing_build_users_group(&log) {
            return Err(Error::BuildUsersGroup { group });
        }
        BuildOutcome::Failed {
            code: done.status.code(),
            log_tail,
        }
    };
    Ok((outcome, done.stdout))
}

/// The group named in Nix's "the group 'G' specified in 'build-users-group' does not exist".
fn missing_build_users_group(log: &str) -> Option<String> {
    log.lines().find_map(|l| {
        let before = &l[..l.find(NO_BUILD_USERS)?];
        let start = before.find("the group '")? + "the group '".len();
        Some(before[start..].trim_end().trim_end_matches('\'').to_owned())
    })
}

/// The last `n` lines of `s`.
fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// People see their own file's error once, without fedigen's expression or a doubled `error:`.
    #[test]
    fn nix_errors_lose_our_expression_and_their_error_prefix() {
        let log = "error: attribute 'x' missing\n\n       at «string»:5:3:\n\n            4|   v = import file;\n            5|   top = v;\n             |   ^\n\n       at /p/f.nix:1:2:\n\n            1| { }\n(use '--show-trace' to show detailed location information)";
        let shown = without_our_expression(log);
        assert!(
            !shown.contains("«string»") && !shown.contains("import file"),
            "{shown}"
        );
        assert!(shown.starts_with("attribute 'x' missing"), "{shown}");
        assert!(
            shown.contains("at /p/f.nix:1:2:") && shown.contains("--option show-trace true"),
            "{shown}"
        );
    }

    #[test]
    fn the_missing_group_is_read_from_nix_s_message() {
        let log = "warning: x\nerror: the group 'nixbld' specified in 'build-users-group' does not exist\n";
        assert_eq!(missing_build_users_group(log).as_deref(), Some("nixbld"));
        assert_eq!(missing_build_users_group("error: builder failed"), None);
    }

    #[test]
    fn user_options_replace_forced_ones_and_extra_settings_accumulate() {
        let mut s = NixSettings::default();
        s.set("sandbox", "relaxed");
        s.set("extra-sandbox-paths", "/a");
        s.set("extra-sandbox-paths", "/b");
        let pairs: Vec<(&str, &str)> = s
            .options
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("sandbox-fallback", "false"),
                ("sandbox", "relaxed"),
                ("extra-sandbox-paths", "/a"),
                ("extra-sandbox-paths", "/b")
            ]
        );
    }
}
