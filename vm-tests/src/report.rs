//! What a run leaves behind for CI: a JUnit XML report and libtest-style JSON events.
//!
//! libtest-mimic prints JSON events on stdout with `--format json`; the events file is written on
//! every run as well, so CI gets machine-readable results without giving up the readable output.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use quick_xml::Writer;
use quick_xml::events::{BytesCData, BytesDecl, BytesEnd, BytesStart, Event};
use serde_json::json;

/// How a trial ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The trial ran and passed.
    Passed,
    /// The trial ran and failed; `kind` is `failed`, `timeout` or `invalid`.
    Failed {
        /// Category shown as the JUnit failure `type`.
        kind: &'static str,
        /// One-line summary.
        summary: String,
        /// The message libtest prints: summary, log excerpt and log path.
        message: String,
    },
    /// The trial did not run; the reason is always given.
    Skipped {
        /// Why it did not run (missing prerequisite, or an `ignore` in its header), in full: each
        /// trial's record in the JUnit report and the events file carries it.
        reason: String,
        /// The part libtest prints on the trial's own line (`needs nixpkgs`); the full reason is
        /// printed once at the end of the run, however many trials share it.
        short: String,
    },
}

/// One trial's result, as recorded for the reports.
#[derive(Debug, Clone)]
pub struct Record {
    /// Name as libtest prints it (`[kind] name` in JSON events, plain in JUnit).
    pub name: String,
    /// `vm`, `repro` or `invalid`.
    pub kind: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Wall-clock time it took.
    pub duration: Duration,
    /// Its log file, when it ran.
    pub log: Option<PathBuf>,
    /// The test's `.nix` file.
    pub file: Option<PathBuf>,
}

/// Counts as libtest reports them (passed, failed, ignored).
///
/// Displayed as libtest words them: `1 passed; 2 failed; 3 ignored`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Trials that passed.
    pub passed: u64,
    /// Trials that failed (timeouts included).
    pub failed: u64,
    /// Trials that were ignored, with a reason.
    pub ignored: u64,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} passed; {} failed; {} ignored",
            self.passed, self.failed, self.ignored
        )
    }
}

/// Counts the outcomes of `records`.
pub fn count(records: &[Record]) -> Counts {
    let mut c = Counts::default();
    for r in records {
        match r.outcome {
            Outcome::Passed => c.passed += 1,
            Outcome::Failed { .. } => c.failed += 1,
            Outcome::Skipped { .. } => c.ignored += 1,
        }
    }
    c
}

/// Characters that XML 1.0 cannot hold at all, even escaped; replaced so the report stays valid.
fn xml_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// Writes a JUnit XML report (one `<testsuite>`, one `<testcase>` per trial) to `path`.
pub fn write_junit(path: &Path, records: &[Record], total: Duration) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut sorted: Vec<&Record> = records.iter().collect();
    sorted.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    let c = count(records);
    let tests = (c.passed + c.failed + c.ignored).to_string();
    let failures = c.failed.to_string();
    let skipped = c.ignored.to_string();
    let time = format!("{:.3}", total.as_secs_f64());
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = Writer::new_with_indent(BufWriter::new(file), b' ', 2);
    let io = |e: std::io::Error| anyhow::Error::from(e).context("writing JUnit report");
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
        .map_err(io)?;
    let attrs = [
        ("name", "vm-tests"),
        ("tests", tests.as_str()),
        ("failures", failures.as_str()),
        ("errors", "0"),
        ("skipped", skipped.as_str()),
        ("time", time.as_str()),
    ];
    w.write_event(Event::Start(
        BytesStart::new("testsuites").with_attributes(attrs),
    ))
    .map_err(io)?;
    w.write_event(Event::Start(
        BytesStart::new("testsuite").with_attributes(attrs),
    ))
    .map_err(io)?;
    for r in sorted {
        let classname = format!("vm-tests.{}", r.kind);
        let time = format!("{:.3}", r.duration.as_secs_f64());
        let mut case = BytesStart::new("testcase").with_attributes([
            ("name", xml_safe(&r.name).as_str()),
            ("classname", classname.as_str()),
            ("time", time.as_str()),
        ]);
        if let Some(file) = &r.file {
            case.push_attribute(("file", xml_safe(&file.display().to_string()).as_str()));
        }
        match &r.outcome {
            Outcome::Passed => {
                w.write_event(Event::Empty(case)).map_err(io)?;
            }
            Outcome::Failed {
                kind,
                summary,
                message,
            } => {
                w.write_event(Event::Start(case)).map_err(io)?;
                let failure = BytesStart::new("failure")
                    .with_attributes([("message", xml_safe(summary).as_str()), ("type", kind)]);
                w.write_event(Event::Start(failure)).map_err(io)?;
                write_cdata(&mut w, &xml_safe(message)).map_err(io)?;
                w.write_event(Event::End(BytesEnd::new("failure")))
                    .map_err(io)?;
                if let Some(log) = &r.log {
                    w.write_event(Event::Start(BytesStart::new("system-out")))
                        .map_err(io)?;
                    write_cdata(&mut w, &format!("[[ATTACHMENT|{}]]", log.display()))
                        .map_err(io)?;
                    w.write_event(Event::End(BytesEnd::new("system-out")))
                        .map_err(io)?;
                }
                w.write_event(Event::End(BytesEnd::new("testcase")))
                    .map_err(io)?;
            }
            Outcome::Skipped { reason, .. } => {
                w.write_event(Event::Start(case)).map_err(io)?;
                let skip = BytesStart::new("skipped")
                    .with_attributes([("message", xml_safe(reason).as_str())]);
                w.write_event(Event::Empty(skip)).map_err(io)?;
                w.write_event(Event::End(BytesEnd::new("testcase")))
                    .map_err(io)?;
            }
        }
    }
    w.write_event(Event::End(BytesEnd::new("testsuite")))
        .map_err(io)?;
    w.write_event(Event::End(BytesEnd::new("testsuites")))
        .map_err(io)?;
    w.into_inner().flush().map_err(io)?;
    Ok(())
}

/// Text as CDATA, split where it contains `]]>` (which CDATA cannot hold).
fn write_cdata<W: Write>(w: &mut Writer<W>, text: &str) -> std::io::Result<()> {
    for (i, part) in text.split("]]>").enumerate() {
        if i > 0 {
            w.write_event(Event::CData(BytesCData::new("]]")))?;
            w.write_event(Event::CData(BytesCData::new(">")))?;
        }
        w.write_event(Event::CData(BytesCData::new(part)))?;
    }
    Ok(())
}

/// libtest-style JSON events (one object a line), written as trials start and end.
#[derive(Debug)]
pub struct JsonEvents {
    out: Mutex<BufWriter<File>>,
}

impl JsonEvents {
    /// Creates (truncates) the events file.
    pub fn create(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(JsonEvents {
            out: Mutex::new(BufWriter::new(file)),
        })
    }

    fn emit(&self, value: serde_json::Value) {
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{value}");
            let _ = out.flush();
        }
    }

    /// `{"type":"suite","event":"started","test_count":N}`.
    pub fn suite_started(&self, test_count: usize) {
        self.emit(json!({"type": "suite", "event": "started", "test_count": test_count}));
    }

    /// `{"type":"test","event":"started","name":…}` (plus the trial's `kind`).
    pub fn test_started(&self, name: &str, kind: &str) {
        self.emit(json!({"type": "test", "event": "started", "name": name, "kind": kind}));
    }

    /// The end of one trial: `ok`, `failed` (with `stdout`) or `ignored` (with `message`).
    pub fn test_finished(&self, r: &Record) {
        let (name, kind) = (&r.name, &r.kind);
        let exec_time = r.duration.as_secs_f64();
        self.emit(match &r.outcome {
            Outcome::Passed => json!({"type": "test", "event": "ok", "name": name, "kind": kind,
                "exec_time": exec_time}),
            Outcome::Failed { message, .. } => json!({"type": "test", "event": "failed",
                "name": name, "kind": kind, "exec_time": exec_time, "stdout": message}),
            Outcome::Skipped { reason, .. } => json!({"type": "test", "event": "ignored",
                "name": name, "kind": kind, "message": reason}),
        });
    }

    /// `{"type":"suite","event":"ok"|"failed",…}` with the run's counts; `failed` also when
    /// `--require-tests` found that no trial ran (`nothing_ran`).
    pub fn suite_finished(&self, c: Counts, filtered_out: u64, total: Duration, nothing_ran: bool) {
        let failed = c.failed > 0 || nothing_ran;
        self.emit(
            json!({"type": "suite", "event": if failed { "failed" } else { "ok" },
            "passed": c.passed, "failed": c.failed, "ignored": c.ignored, "measured": 0,
            "filtered_out": filtered_out, "exec_time": total.as_secs_f64()}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_is_well_formed_even_with_hostile_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        let records = vec![
            Record {
                name: "a<b>&\"c\"".into(),
                kind: "vm".into(),
                outcome: Outcome::Failed {
                    kind: "failed",
                    summary: "bad \u{1b}[31m colour".into(),
                    message: "log with ]]> inside and \u{0} nul".into(),
                },
                duration: Duration::from_millis(1500),
                log: Some("/tmp/x.log".into()),
                file: None,
            },
            Record {
                name: "s".into(),
                kind: "repro".into(),
                outcome: Outcome::Skipped {
                    reason: "needs nixpkgs: set FEDIGEN_NIXPKGS".into(),
                    short: "needs nixpkgs".into(),
                },
                duration: Duration::ZERO,
                log: None,
                file: None,
            },
        ];
        write_junit(&path, &records, Duration::from_secs(2)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let doc = roxmltree::Document::parse(&text).unwrap();
        let suite = doc
            .descendants()
            .find(|n| n.has_tag_name("testsuite"))
            .unwrap();
        assert_eq!(suite.attribute("tests"), Some("2"));
        assert_eq!(suite.attribute("failures"), Some("1"));
        assert_eq!(suite.attribute("skipped"), Some("1"));
        let failure = doc
            .descendants()
            .find(|n| n.has_tag_name("failure"))
            .unwrap();
        let text: String = failure
            .children()
            .filter_map(|c| c.text())
            .collect::<String>();
        assert!(text.contains("log with ]]> inside"), "{text}");
        let case = failure.parent().unwrap();
        assert_eq!(case.attribute("name"), Some("a<b>&\"c\""));
    }
}
