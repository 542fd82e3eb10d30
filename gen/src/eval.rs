//! The bridge to the real Nix: parse and evaluate emitted text with `nix-instantiate`, the evaluator that will
//! eventually read it, because rnix alone is more lenient than Nix.
//!
//! Starting Nix costs ≈ 40–50 ms, so many sources go to one process: they are written to a temporary directory
//! and imported from one driver expression. When a batch fails, it is split in halves until each failing source
//! is found alone, so one bad file never hides the others. Errors name the source's own file name and position,
//! never the temporary copy. Every process runs in its own process group and is killed whole on timeout.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Why Nix could not give an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// `nix-instantiate` is not on PATH.
    #[error(
        "`nix-instantiate` was not found on PATH; install Nix (on Debian: `apt-get install nix-bin`, or run scripts/install-test-deps)"
    )]
    NixMissing,
    /// Nix reported an error for a source.
    #[error("{}{message}", location.as_ref().map(|l| format!("{l}: ")).unwrap_or_default())]
    Nix {
        /// `file:line:column` of the error inside the source, when Nix gave one.
        location: Option<String>,
        /// Nix's message, with temporary paths replaced by the source's name.
        message: String,
    },
    /// Nix ran longer than allowed and was killed with its process group.
    #[error("nix-instantiate did not finish within {} s and was stopped", .0.as_secs_f64())]
    Timeout(Duration),
    /// The process could not be started or its output read.
    #[error("running nix-instantiate: {0}")]
    Io(String),
    /// Nix's output was not the JSON it should be.
    #[error("nix-instantiate printed something that is not JSON: {0}")]
    BadOutput(String),
}

/// One Nix invocation over a batch of files in a directory: one value per file, or the batch's error.
type BatchJob<'a> = dyn Fn(&Path, &[String]) -> Result<Vec<serde_json::Value>, EvalError> + 'a;

/// A piece of Nix text with the name it is known by (e.g. `modules/mastodon.nix`), for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The file name users know this text by.
    pub name: String,
    /// The Nix text.
    pub text: String,
}

/// A handle on the real Nix evaluator (`nix-instantiate --parse` and `--eval`), for proving and evaluating
/// text fedigen emitted or read. Builds, store queries and reproducibility checks are [`crate::repro::NixTools`]'.
#[derive(Debug, Clone)]
pub struct Evaluator {
    program: PathBuf,
    timeout: Duration,
    extra_args: Vec<OsString>,
}

impl Evaluator {
    /// Finds `nix-instantiate` on PATH; the error says what to install.
    pub fn locate() -> Result<Self, EvalError> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| dir.join("nix-instantiate"))
            .find(|candidate| candidate.is_file())
            .map(|program| Self {
                program,
                timeout: Duration::from_secs(300),
                extra_args: Vec::new(),
            })
            .ok_or(EvalError::NixMissing)
    }

    /// Limits each Nix process to `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Parses every source with Nix's own parser (`nix-instantiate --parse`), in as few processes as possible;
    /// one result per source, in order.
    pub fn parse(&self, sources: &[Source]) -> Vec<Result<(), EvalError>> {
        self.batched(sources, &|dir, files| {
            let mut args: Vec<OsString> = vec!["--parse".into()];
            args.extend(files.iter().map(|f| dir.join(f).into_os_string()));
            self.run(dir, &args)
                .map(|_| vec![serde_json::Value::Null; files.len()])
        })
        .into_iter()
        .map(|r| r.map(|_| ()))
        .collect()
    }

    /// Evaluates every source strictly to JSON (`nix-instantiate --eval --strict --json`), in as few processes
    /// as possible; one result per source, in order. Nix 2.8 prints floats with six significant digits: compare
    /// floats inside Nix (`==`) when exactness matters.
    pub fn eval_json(&self, sources: &[Source]) -> Vec<Result<serde_json::Value, EvalError>> {
        self.batched(sources, &|dir, files| {
            let driver: String = files.iter().map(|f| format!("(import ./{f})\n")).collect();
            std::fs::write(dir.join("driver.nix"), format!("[\n{driver}]\n"))
                .map_err(|e| EvalError::Io(e.to_string()))?;
            let args: Vec<OsString> = ["--eval", "--strict", "--json"]
                .iter()
                .map(Into::into)
                .chain([dir.join("driver.nix").into_os_string()])
                .collect();
            let stdout = self.run(dir, &args)?;
            match serde_json::from_slice(&stdout) {
                Ok(serde_json::Value::Array(values)) if values.len() == files.len() => Ok(values),
                _ => Err(EvalError::BadOutput(
                    String::from_utf8_lossy(&stdout).chars().take(200).collect(),
                )),
            }
        })
    }

    /// Evaluates a file on disk strictly to JSON.
    pub fn eval_file_json(&self, file: &Path) -> Result<serde_json::Value, EvalError> {
        let dir = file.parent().unwrap_or(Path::new("."));
        let args: Vec<OsString> = vec![
            "--eval".into(),
            "--strict".into(),
            "--json".into(),
            file.as_os_str().to_owned(),
        ];
        let stdout = self.run(dir, &args)?;
        serde_json::from_slice(&stdout).map_err(|e| EvalError::BadOutput(e.to_string()))
    }

    /// Writes the sources to a temporary directory, runs `job` on all of them, and on failure bisects so that
    /// every failing source gets its own error.
    fn batched(
        &self,
        sources: &[Source],
        job: &BatchJob<'_>,
    ) -> Vec<Result<serde_json::Value, EvalError>> {
        let dir = match tempfile::Builder::new().prefix("fedigen-eval-").tempdir() {
            Ok(dir) => dir,
            Err(e) => {
                return sources
                    .iter()
                    .map(|_| Err(EvalError::Io(e.to_string())))
                    .collect();
            }
        };
        let mut files = Vec::with_capacity(sources.len());
        for (i, source) in sources.iter().enumerate() {
            let file = format!("source-{i}.nix");
            if let Err(e) = std::fs::write(dir.path().join(&file), &source.text) {
                return sources
                    .iter()
                    .map(|_| Err(EvalError::Io(e.to_string())))
                    .collect();
            }
            files.push(file);
        }
        let mut results = Vec::with_capacity(sources.len());
        self.bisect(dir.path(), sources, &files, job, &mut results);
        results
    }

    fn bisect(
        &self,
        dir: &Path,
        sources: &[Source],
        files: &[String],
        job: &BatchJob<'_>,
        results: &mut Vec<Result<serde_json::Value, EvalError>>,
    ) {
        if files.is_empty() {
            return;
        }
        match job(dir, files) {
            Ok(values) => results.extend(values.into_iter().map(Ok)),
            Err(e @ (EvalError::NixMissing | EvalError::Io(_))) => {
                results.extend(files.iter().map(|_| Err(e.clone())));
            }
            Err(e) if files.len() == 1 => {
                results.push(Err(rename(e, dir, &files[0], &sources[0].name)))
            }
            Err(_) => {
                let mid = files.len() / 2;
                self.bisect(dir, &sources[..mid], &files[..mid], job, results);
                self.bisect(dir, &sources[mid..], &files[mid..], job, results);
            }
        }
    }

    /// Runs nix-instantiate in its own process group with a timeout; stdout on success, the error otherwise.
    fn run(&self, dir: &Path, args: &[OsString]) -> Result<Vec<u8>, EvalError> {
        let mut command = Command::new(&self.program);
        command.args(&self.extra_args).args(args).current_dir(dir);
        let done = crate::process::run(command, self.timeout, Duration::ZERO, true)
            .map_err(|e| EvalError::Io(format!("{}: {e}", self.program.display())))?;
        if done.timed_out {
            Err(EvalError::Timeout(self.timeout))
        } else if done.status.success() {
            Ok(done.stdout)
        } else {
            Err(nix_error(&String::from_utf8_lossy(&done.stderr)))
        }
    }
}

/// Turns Nix's stderr into an error, keeping the location it names.
fn nix_error(stderr: &str) -> EvalError {
    let message = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let location = stderr.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("at ")?;
        let rest = rest.strip_suffix(':').unwrap_or(rest);
        // `at /path/file.nix:LINE:COL`
        let mut parts = rest.rsplitn(3, ':');
        let column = parts.next()?.parse::<usize>().ok()?;
        let line = parts.next()?.parse::<usize>().ok()?;
        Some(format!("{}:{line}:{column}", parts.next()?))
    });
    EvalError::Nix { location, message }
}

/// Replaces the temporary file's path with the source's own name in an error.
fn rename(error: EvalError, dir: &Path, file: &str, name: &str) -> EvalError {
    let temp = dir.join(file).display().to_string();
    match error {
        EvalError::Nix { location, message } => EvalError::Nix {
            location: location.map(|l| l.replace(&temp, name)),
            message: message.replace(&temp, name),
        },
        other => other,
    }
}
