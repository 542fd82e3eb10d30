//! Live output of running trials: every log line prefixed with the trial's name on stderr, or, on a
//! terminal, one spinner per running trial showing its latest line (the full log is in its file).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where live lines go for the whole run.
#[derive(Debug, Clone)]
pub struct Live {
    bars: Option<MultiProgress>,
}

impl Live {
    /// Spinners when stderr is a terminal and `progress` is allowed; prefixed lines otherwise.
    pub fn new(progress: bool) -> Self {
        let bars = (progress && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Live { bars }
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
            bar,
        }
    }

    /// A line that must be seen even on a terminal (above the spinners).
    pub fn println(&self, line: &str) {
        match &self.bars {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }
}

/// Live output of one running trial.
#[derive(Debug)]
pub struct TrialLive {
    name: String,
    bars: Option<MultiProgress>,
    bar: Option<ProgressBar>,
}

impl TrialLive {
    /// One line of the trial's output.
    pub fn line(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(line.to_owned()),
            None => eprintln!("[{}] {line}", self.name),
        }
    }

    /// A line that is shown in full even on a terminal (start, impurity, result).
    pub fn note(&self, line: &str) {
        let text = format!("[{}] {line}", self.name);
        match &self.bars {
            Some(m) => {
                let _ = m.println(text);
            }
            None => eprintln!("{text}"),
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
