//! Running Nix's tools as child processes: in a process group of their own, with both pipes drained on
//! threads (a large output never blocks the child), and a timeout after which the whole group is stopped —
//! `nix-build` leaves builders and QEMU behind if only the leader is killed. The evaluator bridge
//! (`crate::eval`) and the reproducibility checks (`crate::repro`) both run Nix through here.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use wait_timeout::ChildExt;

/// How a child process ended, with everything it wrote.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status (after the signal, when it timed out).
    pub status: ExitStatus,
    /// What it wrote to standard output (empty unless captured).
    pub stdout: Vec<u8>,
    /// What it wrote to standard error.
    pub stderr: Vec<u8>,
    /// Whether the timeout stopped it.
    pub timed_out: bool,
}

/// Runs `command` to the end or until `timeout`; then its process group gets SIGTERM and, after `grace`,
/// SIGKILL (with no grace, SIGKILL at once). Standard input is closed; standard output is captured when
/// `capture_stdout`, otherwise discarded; standard error is always captured.
pub fn run(
    mut command: Command,
    timeout: Duration,
    grace: Duration,
    capture_stdout: bool,
) -> std::io::Result<Finished> {
    command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(if capture_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let group = child.id() as libc::pid_t;
    let (status, timed_out) = match child.wait_timeout(timeout)? {
        Some(status) => (status, false),
        None => {
            let status = if grace.is_zero() {
                None
            } else {
                signal_group(group, libc::SIGTERM);
                child.wait_timeout(grace)?
            };
            let status = match status {
                Some(status) => status,
                None => {
                    signal_group(group, libc::SIGKILL);
                    child.wait()?
                }
            };
            (status, true)
        }
    };
    Ok(Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        timed_out,
    })
}

/// Reads a pipe to the end on its own thread.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

/// Signals a whole process group (the child was started as its leader).
fn signal_group(group: libc::pid_t, signal: libc::c_int) {
    // SAFETY: killpg only sends a signal to the group created for this child; a stale id fails with ESRCH.
    unsafe {
        libc::killpg(group, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn output_is_captured_and_a_hanging_group_is_stopped() {
        let mut echo = Command::new("sh");
        echo.args(["-c", "echo out; echo err >&2; exit 3"]);
        let done = run(echo, Duration::from_secs(10), Duration::ZERO, true).unwrap();
        assert_eq!(
            (done.stdout.as_slice(), done.stderr.as_slice()),
            (&b"out\n"[..], &b"err\n"[..])
        );
        assert_eq!(done.status.code(), Some(3));
        assert!(!done.timed_out);

        // The grandchild holds the pipe: only killing the group ends the run.
        let mut hang = Command::new("sh");
        hang.args(["-c", "sleep 30 & sleep 30"]);
        let start = Instant::now();
        let done = run(
            hang,
            Duration::from_millis(200),
            Duration::from_millis(100),
            false,
        )
        .unwrap();
        assert!(done.timed_out && start.elapsed() < Duration::from_secs(10));
    }
}
