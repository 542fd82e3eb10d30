//! The result of `fedigen repro check`: JSON for machines (serde), a table for people, and the exit code.
//!
//! Why one type for both: the CLI must never show people something the JSON does not say. Everything in it is
//! deterministic for given inputs (sorted by attribute, no timings), so reports from two machines can be diffed.

use super::explain::DrvDiff;
use super::files::{DifferenceKind, FileDifference};
use crate::store::Hash;
use crate::store::closure::ClosureDiff;
use std::collections::BTreeMap;

/// Exit codes of `fedigen repro check`: `0` when everything is fine, `1` when the check itself could not run
/// (bad arguments, Nix missing, evaluation error), otherwise the bitwise OR of the findings below, so that a
/// script can test each one (`(code & 8) != 0` → some output is unreproducible).
pub mod exit_code {
    /// Everything evaluated purely, matched the lock, built reproducibly with matching NAR hashes.
    pub const OK: i32 = 0;
    /// The check could not run (an `Err` from [`super::super::run_check`]).
    pub const ERROR: i32 = 1;
    /// Two evaluations gave different derivations (impure evaluation).
    pub const IMPURE: i32 = 2;
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

impl DrvReport {
    /// This derivation's contribution to the exit code (see [`exit_code`]).
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
        c |= match self.build {
            Classification::Unreproducible => exit_code::UNREPRODUCIBLE,
            Classification::FirstBuildFailed { .. } | Classification::SecondBuildFailed { .. } => {
                exit_code::BUILD_FAILED
            }
            Classification::TimedOut { .. } => exit_code::TIMED_OUT,
            _ => 0,
        };
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
    /// The process exit code for this report (see [`exit_code`]).
    pub fn exit_code(&self) -> i32 {
        self.derivations
            .iter()
            .fold(exit_code::OK, |c, d| c | d.exit_code())
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
        let rows: Vec<[String; 5]> = self
            .derivations
            .iter()
            .map(|d| {
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
                let build = match &d.build {
                    Classification::NotBuilt => "-".to_owned(),
                    Classification::Reproducible => "reproducible".to_owned(),
                    Classification::Unreproducible => "UNREPRODUCIBLE".to_owned(),
                    Classification::FirstBuildFailed { .. } => "FIRST BUILD FAILED".to_owned(),
                    Classification::SecondBuildFailed { .. } => "SECOND BUILD FAILED".to_owned(),
                    Classification::TimedOut {
                        phase,
                        timeout_secs,
                        ..
                    } => {
                        format!(
                            "TIMED OUT ({} build, {timeout_secs}s)",
                            if *phase == BuildPhase::First {
                                "first"
                            } else {
                                "second"
                            }
                        )
                    }
                };
                let nar = nar_summary(d);
                [d.attr.clone(), eval.to_owned(), lock.to_owned(), build, nar]
            })
            .collect();
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
    match &d.build {
        Classification::FirstBuildFailed {
            exit_code,
            log_tail,
        }
        | Classification::SecondBuildFailed {
            exit_code,
            log_tail,
        } => {
            section(
                format!(
                    "build failed (exit {})",
                    exit_code
                        .map(|c| c.to_string())
                        .unwrap_or("by signal".into())
                ),
                log_tail.clone(),
            );
        }
        Classification::TimedOut { log_tail, .. } => {
            section("build timed out".into(), log_tail.clone())
        }
        _ => {}
    }
    for (name, o) in &d.outputs {
        if !o.differences.is_empty() {
            let mut body = format!("{} vs {}\n", o.path, o.check_path.as_deref().unwrap_or("?"));
            for f in &o.differences {
                body.push_str(&format!("{}: {}\n", f.path, describe(&f.kind)));
            }
            if let Some(c) = &o.diffoscope {
                body.push_str(&format!("for details: {c}\n"));
            }
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
        DifferenceKind::SymlinkTarget { old, new } => format!("symlink target {old:?} vs {new:?}"),
        DifferenceKind::Type { old, new } => format!("{old} vs {new}"),
        DifferenceKind::OnlyInFirst => "only in the first build".into(),
        DifferenceKind::OnlyInSecond => "only in the second build".into(),
    }
}
