//! The result of `fedigen repro check`: JSON for machines (serde), a table for people, and the exit code.
//!
//! Why one type for both: the CLI must never show people something the JSON does not say. Everything in it is
//! deterministic for given inputs (sorted by attribute, no timings), so reports from two machines can be diffed.

use super::explain::DrvDiff;
use super::files::{DifferenceKind, FileDifference};
use crate::store::Hash;
use crate::store::closure::ClosureDiff;
use std::collections::BTreeMap;

/// Exit status of `fedigen repro check`, designed to fit fedigen's global 0/1/2/3 so that a script can tell
/// them apart:
///
/// - `0`: everything evaluated purely, matched the lock, built reproducibly with matching NAR hashes;
/// - `2`: invalid input (the Nix file does not evaluate, an unknown `-A` attribute, an unreadable lock);
/// - `3`: the environment lacks something (Nix, build users, a temporary directory);
/// - otherwise the check found problems: [`FINDINGS`](exit_code::FINDINGS) (1) is set, plus one bit per kind of finding below,
///   all multiples of 4, so the status is odd and at least 5 — it can never be 2 or 3. A script tests
///   `(status & 1)` for "found a problem" and, e.g., `(status & 8)` for "some output is unreproducible".
pub mod exit_code {
    /// Everything evaluated purely, matched the lock, built reproducibly with matching NAR hashes.
    pub const OK: i32 = 0;
    /// Set with every finding: the check ran and found a problem (fedigen's global 1).
    pub const FINDINGS: i32 = 1;
    /// A derivation differs from the lock, or is missing from it.
    pub const LOCK_MISMATCH: i32 = 4;
    /// A rebuild gave different output (`nix-build --check` exit 104).
    pub const UNREPRODUCIBLE: i32 = 8;
    /// The first build or the rebuild failed.
    pub const BUILD_FAILED: i32 = 16;
    /// An output's NAR hash differs from the lock.
    pub const NAR_MISMATCH: i32 = 32;
    /// A build or rebuild was killed after the timeout.
    pub const TIMED_OUT: i32 = 64;
    /// Two evaluations gave different derivations (impure evaluation).
    pub const IMPURE: i32 = 128;
}

/// How a Nix process ended, for people: `exit 100`, or `killed by a signal`.
pub(crate) fn describe_exit(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exit {c}"),
        None => "killed by a signal".to_owned(),
    }
}

/// The whole report.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// One entry per attribute, sorted by attribute.
    pub derivations: Vec<DrvReport>,
}

/// Findings for one attribute.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DrvReport {
    /// Attribute path in the Nix file.
    pub attr: String,
    /// `.drv` path from the first evaluation.
    pub drv_path: String,
    /// Whether a second evaluation agreed.
    pub evaluation: Evaluation,
    /// Comparison with the lock.
    pub lock: LockStatus,
    /// Build and rebuild classification.
    pub build: Classification,
    /// Per output: path, NAR hash, comparison with the lock, differing files.
    pub outputs: BTreeMap<String, OutputReport>,
    /// With `--closure`: the input derivations rebuilt for this attribute (each input once, under the first
    /// attribute that needs it), sorted by `.drv` path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputReport>,
}

/// An input derivation rebuilt with `--closure`: its build and rebuild, and its outputs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputReport {
    /// The derivation's name (`lib-1.0`).
    pub name: String,
    /// Its `.drv` path.
    pub drv_path: String,
    /// Build and rebuild classification.
    pub build: Classification,
    /// Per output: path, NAR hash, differing files (never compared with the lock, which pins attributes).
    pub outputs: BTreeMap<String, OutputReport>,
}

/// Evaluation purity.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Evaluation {
    /// Both evaluations gave the same derivation.
    Pure,
    /// The second evaluation gave another derivation (e.g. `builtins.currentTime`, `getEnv`).
    Impure {
        /// `.drv` path from the second evaluation.
        second_drv_path: String,
        /// What differs between the two.
        explanation: Option<DrvDiff>,
    },
}

/// Comparison of the derivation with the lock.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LockStatus {
    /// No lock file was given.
    NoLock,
    /// The lock has no entry for this attribute.
    NotLocked,
    /// Same `.drv` path as locked.
    Matches,
    /// Another `.drv` path than locked.
    Differs {
        /// The locked `.drv` path.
        locked_drv_path: String,
        /// The walk down both derivations (the old side may be unavailable on this machine).
        explanation: Option<Box<DrvDiff>>,
        /// Names of the derivations where the change originates.
        root_causes: Vec<String>,
        /// Packages added, removed, changed between the locked and the current closure.
        closure: Box<ClosureDiff>,
    },
}

/// Which build step, for timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildPhase {
    /// The first build.
    First,
    /// The `--check` rebuild.
    Second,
}

/// The classification of a derivation after build and rebuild.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Classification {
    /// Building was not requested.
    NotBuilt,
    /// The rebuild was bit-identical.
    Reproducible,
    /// The rebuild differed (see the outputs' `differences`).
    Unreproducible,
    /// The first build failed.
    FirstBuildFailed {
        /// Exit code of `nix-build` (100: builder failed).
        exit_code: Option<i32>,
        /// End of the log.
        log_tail: String,
    },
    /// The first build succeeded, the rebuild failed.
    SecondBuildFailed {
        /// Exit code of `nix-build --check`.
        exit_code: Option<i32>,
        /// End of the log.
        log_tail: String,
    },
    /// Killed after the timeout.
    TimedOut {
        /// Which build.
        phase: BuildPhase,
        /// The limit, in seconds.
        timeout_secs: u64,
        /// End of the log until then.
        log_tail: String,
    },
}

/// One output.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutputReport {
    /// Output store path.
    pub path: String,
    /// NAR hash after the first build (absent when not built).
    pub nar_hash: Option<Hash>,
    /// NAR size after the first build.
    pub nar_size: Option<u64>,
    /// NAR hash compared with the lock.
    pub lock: NarStatus,
    /// Where the rebuild was kept when it differed (`<out>.check`).
    pub check_path: Option<String>,
    /// Files that differ between the build and the rebuild.
    pub differences: Vec<FileDifference>,
    /// The diffoscope command for a deeper look, when diffoscope is installed.
    pub diffoscope: Option<String>,
}

/// NAR hash against the lock.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum NarStatus {
    /// Not built, or no lock given.
    NotChecked,
    /// The lock has no NAR hash for this output (a lock written without building); not a failure by itself.
    NotLocked,
    /// Same NAR hash as locked.
    Matches,
    /// Different NAR hash than locked.
    Differs {
        /// The locked hash.
        locked: Hash,
    },
}

impl Classification {
    /// The exit-code bit of this classification (0 when it is no finding).
    fn exit_bits(&self) -> i32 {
        match self {
            Classification::Unreproducible => exit_code::UNREPRODUCIBLE,
            Classification::FirstBuildFailed { .. } | Classification::SecondBuildFailed { .. } => {
                exit_code::BUILD_FAILED
            }
            Classification::TimedOut { .. } => exit_code::TIMED_OUT,
            Classification::NotBuilt | Classification::Reproducible => 0,
        }
    }

    /// The BUILD column of the table.
    fn cell(&self) -> String {
        match self {
            Classification::NotBuilt => "-".to_owned(),
            Classification::Reproducible => "reproducible".to_owned(),
            Classification::Unreproducible => "UNREPRODUCIBLE".to_owned(),
            Classification::FirstBuildFailed { .. } => "FIRST BUILD FAILED".to_owned(),
            Classification::SecondBuildFailed { .. } => "SECOND BUILD FAILED".to_owned(),
            Classification::TimedOut {
                phase,
                timeout_secs,
                ..
            } => format!(
                "TIMED OUT ({} build, {timeout_secs}s)",
                if *phase == BuildPhase::First {
                    "first"
                } else {
                    "second"
                }
            ),
        }
    }
}

impl DrvReport {
    /// This derivation's finding bits, its inputs' included (see [`exit_code`]; without [`exit_code::FINDINGS`]).
    pub fn exit_code(&self) -> i32 {
        let mut c = 0;
        if matches!(self.evaluation, Evaluation::Impure { .. }) {
            c |= exit_code::IMPURE;
        }
        if matches!(
            self.lock,
            LockStatus::NotLocked | LockStatus::Differs { .. }
        ) {
            c |= exit_code::LOCK_MISMATCH;
        }
        c |= self.build.exit_bits();
        for i in &self.inputs {
            c |= i.build.exit_bits();
        }
        if self
            .outputs
            .values()
            .any(|o| matches!(o.lock, NarStatus::Differs { .. }))
        {
            c |= exit_code::NAR_MISMATCH;
        }
        c
    }
}

impl Report {
    /// The process exit code for this report (see [`exit_code`]): 0, or [`exit_code::FINDINGS`] with a bit per
    /// kind of finding.
    pub fn exit_code(&self) -> i32 {
        let bits = self
            .derivations
            .iter()
            .fold(exit_code::OK, |c, d| c | d.exit_code());
        if bits == 0 {
            exit_code::OK
        } else {
            bits | exit_code::FINDINGS
        }
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("report serialises");
        s.push('\n');
        s
    }

    /// A table (one row per attribute) followed by details for every problem.
    pub fn render(&self) -> String {
        let header = ["ATTRIBUTE", "EVALUATION", "LOCK", "BUILD", "NAR HASH"];
        let mut rows: Vec<[String; 5]> = Vec::new();
        for d in &self.derivations {
            let eval = match d.evaluation {
                Evaluation::Pure => "pure",
                Evaluation::Impure { .. } => "IMPURE",
            };
            let lock = match d.lock {
                LockStatus::NoLock => "-",
                LockStatus::NotLocked => "NOT LOCKED",
                LockStatus::Matches => "matches",
                LockStatus::Differs { .. } => "DIFFERS",
            };
            rows.push([
                d.attr.clone(),
                eval.to_owned(),
                lock.to_owned(),
                d.build.cell(),
                nar_summary(d),
            ]);
            for i in &d.inputs {
                rows.push([
                    format!("{} ← {}", d.attr, i.name),
                    "-".into(),
                    "-".into(),
                    i.build.cell(),
                    "-".into(),
                ]);
            }
        }
        let mut widths = header.map(|h| h.chars().count());
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &[String]| -> String {
            let mut s = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ");
            s.truncate(s.trim_end().len());
            s.push('\n');
            s
        };
        let mut s = line(&header.map(String::from));
        for r in &rows {
            s.push_str(&line(r));
        }
        for d in &self.derivations {
            s.push_str(&details(d));
        }
        let code = self.exit_code();
        s.push_str(&format!(
            "\n{} derivation(s); exit code {code}\n",
            self.derivations.len()
        ));
        s
    }
}

fn nar_summary(d: &DrvReport) -> String {
    let count = |f: fn(&NarStatus) -> bool| d.outputs.values().filter(|o| f(&o.lock)).count();
    let differ = count(|s| matches!(s, NarStatus::Differs { .. }));
    let matches = count(|s| *s == NarStatus::Matches);
    let unlocked = count(|s| *s == NarStatus::NotLocked);
    if differ > 0 {
        format!("{differ} DIFFER")
    } else if matches > 0 {
        "matches".into()
    } else if unlocked > 0 {
        "not locked".into()
    } else {
        "-".into()
    }
}

fn details(d: &DrvReport) -> String {
    let mut s = String::new();
    let mut section = |title: String, body: String| {
        s.push_str(&format!("\n{}: {title}\n", d.attr));
        for l in body.lines() {
            s.push_str(&format!("    {l}\n"));
        }
    };
    if let Evaluation::Impure {
        second_drv_path,
        explanation,
    } = &d.evaluation
    {
        let body = explanation
            .as_ref()
            .map(DrvDiff::render)
            .unwrap_or_default();
        section(
            format!("impure evaluation: {} then {second_drv_path}", d.drv_path),
            body,
        );
    }
    if let LockStatus::Differs {
        locked_drv_path,
        explanation,
        root_causes,
        closure,
    } = &d.lock
    {
        let mut body = format!("locked {locked_drv_path}\nnow    {}\n", d.drv_path);
        if !root_causes.is_empty() {
            body.push_str(&format!("root cause(s): {}\n", root_causes.join(", ")));
        }
        if let Some(e) = explanation {
            body.push_str(&e.render());
        }
        if !closure.is_empty() {
            body.push_str("closure:\n");
            body.push_str(&closure.render());
        }
        section("derivation differs from the lock".into(), body);
    }
    if let Some((title, log)) = build_problem(&d.build) {
        section(title, log);
    }
    for i in &d.inputs {
        if let Some((title, log)) = build_problem(&i.build) {
            section(format!("input {} ({}): {title}", i.name, i.drv_path), log);
        }
        for (name, o) in &i.outputs {
            if !o.differences.is_empty() {
                section(
                    format!("input {}: output {name} differs between builds", i.name),
                    differences(o),
                );
            }
        }
    }
    for (name, o) in &d.outputs {
        if !o.differences.is_empty() {
            let body = differences(o);
            section(format!("output {name} differs between builds"), body);
        }
        if let NarStatus::Differs { locked } = &o.lock {
            let now = o
                .nar_hash
                .as_ref()
                .map(|h| h.to_string())
                .unwrap_or_default();
            section(
                format!("output {name}: NAR hash differs from the lock"),
                format!("locked {locked}\nbuilt  {now}"),
            );
        }
    }
    s
}

/// The title and log of a failed or timed-out build.
fn build_problem(c: &Classification) -> Option<(String, String)> {
    match c {
        Classification::FirstBuildFailed {
            exit_code,
            log_tail,
        } => Some((
            format!("build failed ({})", describe_exit(*exit_code)),
            log_tail.clone(),
        )),
        Classification::SecondBuildFailed {
            exit_code,
            log_tail,
        } => Some((
            format!("rebuild failed ({})", describe_exit(*exit_code)),
            log_tail.clone(),
        )),
        Classification::TimedOut { log_tail, .. } => {
            Some(("build timed out".into(), log_tail.clone()))
        }
        _ => None,
    }
}

/// The files that differ between an output's build and rebuild.
fn differences(o: &OutputReport) -> String {
    let mut body = format!("{} vs {}\n", o.path, o.check_path.as_deref().unwrap_or("?"));
    for f in &o.differences {
        body.push_str(&format!("{}: {}\n", f.path, describe(&f.kind)));
    }
    if let Some(c) = &o.diffoscope {
        body.push_str(&format!("for details: {c}\n"));
    }
    body
}

fn describe(k: &DifferenceKind) -> String {
    match k {
        DifferenceKind::Contents {
            old_size,
            new_size,
            first_difference,
        } => {
            format!(
                "contents differ ({old_size} vs {new_size} bytes, first difference at byte {first_difference})"
            )
        }
        DifferenceKind::Executable { old, new } => format!("executable bit {old} vs {new}"),
        DifferenceKind::SymlinkTarget { old, new } => format!("symlink target '{old}' vs '{new}'"),
        DifferenceKind::Type { old, new } => format!("{old} vs {new}"),
        DifferenceKind::OnlyInFirst => "only in the first build".into(),
        DifferenceKind::OnlyInSecond => "only in the second build".into(),
    }
}
