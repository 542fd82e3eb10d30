//! Running the tools a migration drives (rclone, pg_dump, pg_restore, psql, ssh, the job's commands).
//!
//! Why not `crate::process`: that one puts a child in a process group of its own so a timeout can stop it,
//! which also lets it outlive fedigen. A migration step's child must die with the fedigen that started it
//! (`PR_SET_PDEATHSIG`): otherwise a killed run would leave an rclone or pg_restore writing into the target
//! while the resumed run starts the same step again.

use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};

/// A tool failed: what was run (the program and what it was for) and the end of what it said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The program is not installed or cannot be started.
    #[error("cannot run {program} ({what}): {reason}")]
    Missing {
        /// The program.
        program: String,
        /// What it was run for.
        what: String,
        /// Why it could not start, with how to install it.
        reason: String,
    },
    /// It ran and failed.
    #[error("{program} failed ({what}), {status}:\n{output}")]
    Failed {
        /// The program.
        program: String,
        /// What it was run for.
        what: String,
        /// Its exit status, said for people.
        status: String,
        /// The last lines of its standard error (and output).
        output: String,
    },
}

/// What a finished tool wrote.
#[derive(Debug)]
pub struct Output {
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Whether it exited with 0.
    pub success: bool,
    /// Its standard error.
    pub stderr: Vec<u8>,
    /// Its exit status, said for people.
    pub status: String,
}

/// Runs `command` (for `what`) to the end, standard input closed, both outputs captured; the child is killed
/// when this process dies.
pub fn output(command: Command, what: &str) -> Result<Output, ExecError> {
    output_with_input(command, what, None)
}

/// [`output`], with `input` written to the child's standard input (then closed): how SQL holding a password
/// reaches psql without appearing in its command line, which every user of the machine can read.
pub(crate) fn output_with_input(
    mut command: Command,
    what: &str,
    input: Option<&[u8]>,
) -> Result<Output, ExecError> {
    let program = command.get_program().to_string_lossy().into_owned();
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl: then nobody waits for this run.
            if libc::getppid() == 1 {
                return Err(std::io::Error::other("the parent process is gone"));
            }
            Ok(())
        });
    }
    let spawned = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
                // Written on a thread while the outputs are drained, so a large input cannot deadlock.
                let bytes = bytes.to_vec();
                std::thread::spawn(move || {
                    use std::io::Write as _;
                    let _ = stdin.write_all(&bytes);
                });
            }
            child.wait_with_output()
        });
    let out = spawned.map_err(|e| ExecError::Missing {
        program: program.clone(),
        what: what.to_owned(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "`{program}` is not installed or not on PATH{}",
                install_hint(&program)
            )
        } else {
            e.to_string()
        },
    })?;
    let status = match (
        out.status.code(),
        std::os::unix::process::ExitStatusExt::signal(&out.status),
    ) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => "an unknown status".into(),
    };
    Ok(Output {
        success: out.status.success(),
        stdout: out.stdout,
        stderr: out.stderr,
        status,
    })
}

/// Runs `command` and requires success; the error carries the last lines it wrote.
pub fn checked(command: Command, what: &str) -> Result<Output, ExecError> {
    checked_with_input(command, what, None)
}

/// [`checked`], with `input` on the child's standard input.
pub(crate) fn checked_with_input(
    command: Command,
    what: &str,
    input: Option<&[u8]>,
) -> Result<Output, ExecError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let out = output_with_input(command, what, input)?;
    if out.success {
        Ok(out)
    } else {
        Err(ExecError::Failed {
            program,
            what: what.to_owned(),
            status: out.status.clone(),
            output: tail(&out.stderr, &out.stdout),
        })
    }
}

/// The last 20 lines of standard error (or of standard output when there is none), indented.
pub(crate) fn tail(stderr: &[u8], stdout: &[u8]) -> String {
    let text = if stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        String::from_utf8_lossy(stderr)
    } else {
        String::from_utf8_lossy(stdout)
    };
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn install_hint(program: &str) -> &'static str {
    let name = program.rsplit('/').next().unwrap_or(program);
    match name {
        "rclone" => " (Debian: apt-get install rclone; NixOS: pkgs.rclone)",
        "pg_dump" | "pg_restore" | "psql" => {
            " (Debian: apt-get install postgresql-client-15; NixOS: the server's postgresql package; or set FEDIGEN_PG_BIN to the folder holding them)"
        }
        "rsync" | "ssh" => " (Debian: apt-get install rsync openssh-client)",
        _ => "",
    }
}

/// Runs `a` and `b` at once (on two threads) and returns both results: the source's and the target's side of a
/// comparison (verify.rs, s3.rs) computed together.
pub(crate) fn both<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    std::thread::scope(|scope| {
        let b = scope.spawn(b);
        let a = a();
        (a, b.join().expect("a comparison thread panicked"))
    })
}
