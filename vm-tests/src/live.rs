//! Live output of running trials: every log line prefixed with the trial's name on stderr, or, on a
//! terminal, one spinner per running trial showing its latest line (the full log is in its file).
//!
//! Several trials stream at once, so every line is assembled whole — prefix, text and newline — and
//! written with a single write under one lock ([`Lines`]): lines of different trials never interleave,
//! even when stderr is a pipe or a file shared with stdout.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A stream that takes whole lines only: each line is written by one `write_all` while holding the
/// stream's lock, so concurrent writers cannot split one another's lines.
#[derive(Clone)]
pub struct Lines {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl std::fmt::Debug for Lines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lines")
    }
}

impl Lines {
    /// Whole lines to the process's stderr.
    pub fn stderr() -> Self {
        Self::to(Box::new(std::io::stderr()))
    }

    /// Whole lines to `out` (the self-tests capture them this way).
    pub fn to(out: Box<dyn Write + Send>) -> Self {
        Lines {
            out: Arc::new(Mutex::new(out)),
        }
    }

    /// Writes `text`, one output line per line of it, each prefixed with `[prefix] ` when a prefix
    /// is given; the whole text goes out in one write.
    pub fn write(&self, prefix: Option<&str>, text: &str) {
        let mut buf = String::with_capacity(text.len() + prefix.map_or(0, |p| p.len() + 4));
        for line in text.split('\n') {
            if let Some(p) = prefix {
                buf.push('[');
                buf.push_str(p);
                buf.push_str("] ");
            }
            buf.push_str(line.trim_end_matches('\r'));
            buf.push('\n');
        }
        // A poisoned lock only means another writer panicked mid-line; the stream is still usable.
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(buf.as_bytes());
        let _ = out.flush();
    }
}

/// Where live lines go for the whole run.
#[derive(Debug, Clone)]
pub struct Live {
    bars: Option<MultiProgress>,
    lines: Lines,
}

impl Live {
    /// Spinners when stderr is a terminal and `progress` is allowed; prefixed lines otherwise.
    pub fn new(progress: bool) -> Self {
        let bars = (progress && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Live {
            bars,
            lines: Lines::stderr(),
        }
    }

    /// Output for one trial.
    pub fn trial(&self, name: &str) -> TrialLive {
        let bar = self.bars.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed:>4}] {prefix}: {wide_msg}")
                    .expect("valid template"),
            );
            bar.set_prefix(name.to_owned());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        TrialLive {
            name: name.to_owned(),
            bars: self.bars.clone(),
            lines: self.lines.clone(),
            bar,
        }
    }

    /// A line that must be seen even on a terminal (above the spinners).
    pub fn println(&self, line: &str) {
        match &self.bars {
            Some(m) => {
                let _ = m.println(line);
            }
            None => self.lines.write(None, line),
        }
    }
}

/// Live output of one running trial.
#[derive(Debug)]
pub struct TrialLive {
    name: String,
    bars: Option<MultiProgress>,
    lines: Lines,
    bar: Option<ProgressBar>,
}

impl TrialLive {
    /// One line of the trial's output.
    pub fn line(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(line.to_owned()),
            None => self.lines.write(Some(&self.name), line),
        }
    }

    /// A line that is shown in full even on a terminal (start, impurity, result).
    pub fn note(&self, line: &str) {
        match &self.bars {
            Some(m) => {
                let _ = m.println(format!("[{}] {line}", self.name));
            }
            None => self.lines.write(Some(&self.name), line),
        }
    }
}

impl Drop for TrialLive {
    fn drop(&mut self) {
        if let (Some(m), Some(bar)) = (&self.bars, &self.bar) {
            bar.finish_and_clear();
            m.remove(bar);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every `write` call separately, as the kernel would see the write(2) calls.
    #[derive(Clone, Default)]
    struct Calls(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Calls {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            // Accept at most 1 KiB a call, like a pipe taking a partial write: `write_all` must
            // still deliver the line, and the lock must keep others out until it has.
            let n = buf.len().min(1024);
            self.0.lock().unwrap().push(buf[..n].to_vec());
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Concurrent trials write whole lines: the old `eprintln!("[{}] {line}", name)` issued one
    /// write per formatting piece (`[`, name, `] `, line, newline), which another writer to the same
    /// pipe (libtest's stdout under `2>&1`) could split.
    #[test]
    fn concurrent_lines_stay_whole_and_prefixed() {
        let calls = Calls::default();
        let lines = Lines::to(Box::new(calls.clone()));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let lines = lines.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let text = format!("{i} {}", "x".repeat(100 + (i * 37 + t * 11) % 3000));
                        lines.write(Some(&format!("trial-{t}")), &text);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let written: Vec<u8> = calls.0.lock().unwrap().concat();
        let text = String::from_utf8(written).unwrap();
        let mut seen = [0usize; 8];
        for line in text.lines() {
            let (prefix, rest) = line.split_once("] ").unwrap_or_else(|| panic!("{line}"));
            let t: usize = prefix
                .strip_prefix("[trial-")
                .unwrap_or_else(|| panic!("{line}"))
                .parse()
                .unwrap();
            let (i, xs) = rest.split_once(' ').unwrap();
            let i: usize = i.parse().unwrap();
            assert_eq!(i, seen[t], "trial {t}'s lines out of order");
            assert_eq!(xs, "x".repeat(100 + (i * 37 + t * 11) % 3000));
            seen[t] += 1;
        }
        assert_eq!(seen, [200; 8]);
    }

    #[test]
    fn multi_line_text_is_prefixed_on_every_line() {
        let calls = Calls::default();
        let lines = Lines::to(Box::new(calls.clone()));
        lines.write(Some("t"), "one\r\ntwo");
        lines.write(None, "plain");
        let written = calls.0.lock().unwrap().clone();
        assert_eq!(
            written,
            [b"[t] one\n[t] two\n".to_vec(), b"plain\n".to_vec()]
        );
    }
}
