//! Running the tools a migration drives (rclone, pg_dump, pg_restore, psql, mariadb-dump, mariadb, ssh, the
//! job's commands): the one runner of the migration, so every tool dies with fedigen, can run as another user
//! ([`run_as`]) and reads or writes files fedigen opened for it ([`Io`]).
//!
//! Why not `crate::process`: that one puts a child in a process group of its own so a timeout can stop it,
//! which also lets it outlive fedigen. A migration step's child must die with the fedigen that started it
//! (`PR_SET_PDEATHSIG`): otherwise a killed run would leave an rclone or pg_restore writing into the target
//! while the resumed run starts the same step again.

use std::os::fd::{AsRawFd as _, FromRawFd as _};
use std::os::unix::ffi::OsStrExt as _;
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
    command: Command,
    what: &str,
    input: Option<&[u8]>,
) -> Result<Output, ExecError> {
    let io = Io {
        stdin: input.map_or(Stdin::Closed, Stdin::Bytes),
        ..Io::default()
    };
    output_with(command, what, io)
}

/// What a tool reads and where it writes, beyond its arguments: [`output_with`].
#[derive(Default)]
pub(crate) struct Io<'a> {
    /// Its standard input.
    pub stdin: Stdin<'a>,
    /// A file for its standard output instead of capturing it (a dump written into the journal folder by a tool
    /// that runs as another user and may not open files there: fedigen opens it and hands it over).
    pub stdout: Option<std::fs::File>,
    /// Bytes the tool reads from file descriptor 3 (`/dev/fd/3`), through a pipe: a second input file (a
    /// `pg_restore --use-list`) for a tool that may not open files in the journal folder.
    pub fd3: Option<&'a [u8]>,
    /// The user (and group) the tool runs as when not fedigen's own ([`run_as`]): the pipe behind fd 3 is given
    /// to it, as the tool opens `/dev/fd/3` anew and Linux checks the pipe's owner and mode (0600) then.
    pub fd3_owner: Option<(u32, u32)>,
}

/// A tool's standard input.
#[derive(Default)]
pub(crate) enum Stdin<'a> {
    /// Closed (`/dev/null`).
    #[default]
    Closed,
    /// These bytes, then end of file.
    Bytes(&'a [u8]),
    /// This file, opened by fedigen (a dump in the journal folder, given to a tool running as another user; a
    /// regular file stays seekable, so `pg_restore` reads it as it would by name).
    File(std::fs::File),
}

/// Runs `command` (for `what`) to the end with `io`, standard error (and output unless `io` redirects it)
/// captured; the child is killed when this process dies.
pub(crate) fn output_with(
    mut command: Command,
    what: &str,
    io: Io<'_>,
) -> Result<Output, ExecError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let missing = |e: std::io::Error| ExecError::Missing {
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
    };
    // The pipe behind fd 3: both ends close on exec; the child's copy at 3 does not.
    let fd3 = match io.fd3 {
        Some(bytes) => {
            let mut fds = [0; 2];
            // SAFETY: fds is a valid array of two ints.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                return Err(missing(std::io::Error::last_os_error()));
            }
            // SAFETY: pipe2 returned two open descriptors that nothing else owns.
            let (read, write) = unsafe {
                (
                    std::os::fd::OwnedFd::from_raw_fd(fds[0]),
                    std::os::fd::OwnedFd::from_raw_fd(fds[1]),
                )
            };
            if let Some((uid, gid)) = io.fd3_owner
                // SAFETY: fds[0] is an open descriptor.
                && unsafe { libc::fchown(read.as_raw_fd(), uid, gid) } != 0
            {
                return Err(missing(std::io::Error::last_os_error()));
            }
            Some((read, write, bytes.to_vec()))
        }
        None => None,
    };
    let child_fd3 = fd3.as_ref().map(|(read, _, _)| read.as_raw_fd());
    // SAFETY: prctl, dup2, fcntl and getppid are async-signal-safe; nothing else runs between fork and exec.
    // Registered after any closure of the caller (pg.rs changes the user first: a change of user clears
    // PR_SET_PDEATHSIG, so it is set after).
    unsafe {
        command.pre_exec(move || {
            if let Some(fd) = child_fd3 {
                if fd == 3 {
                    if libc::fcntl(3, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, 3) != 3 {
                    return Err(std::io::Error::last_os_error());
                }
            }
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
    let bytes = match io.stdin {
        Stdin::Closed => {
            command.stdin(Stdio::null());
            None
        }
        Stdin::Bytes(b) => {
            command.stdin(Stdio::piped());
            Some(b.to_vec())
        }
        Stdin::File(f) => {
            command.stdin(Stdio::from(f));
            None
        }
    };
    command.stdout(io.stdout.map_or_else(Stdio::piped, Stdio::from));
    let spawned = command
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            // Written on threads while the outputs are drained, so a large input cannot deadlock.
            if let (Some(bytes), Some(mut stdin)) = (bytes, child.stdin.take()) {
                std::thread::spawn(move || {
                    use std::io::Write as _;
                    let _ = stdin.write_all(&bytes);
                });
            }
            if let Some((read, write, bytes)) = fd3 {
                drop(read);
                std::thread::spawn(move || {
                    use std::io::Write as _;
                    let _ = std::fs::File::from(write).write_all(&bytes);
                });
            }
            child.wait_with_output()
        });
    let out = spawned.map_err(missing)?;
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
    let io = Io {
        stdin: input.map_or(Stdin::Closed, Stdin::Bytes),
        ..Io::default()
    };
    checked_with(command, what, io)
}

/// [`checked`] with `io` ([`output_with`]).
pub(crate) fn checked_with(command: Command, what: &str, io: Io<'_>) -> Result<Output, ExecError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let out = output_with(command, what, io)?;
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
        "mariadb-dump" | "mysqldump" | "mariadb" | "mysql" => {
            " (Debian: apt-get install mariadb-client; NixOS: the server's services.mysql.package; or set FEDIGEN_MYSQL_BIN to the folder holding it)"
        }
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

/// A user of this machine, as a tool is run as it: the numbers `setuid`/`setgid`/`setgroups` take, and the home
/// folder its environment names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OsUser {
    /// The name (for messages).
    pub name: String,
    /// Its user id.
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
    /// Every group it is in, the primary one included (what a login, or systemd's `User=`, gives it).
    pub groups: Vec<u32>,
    /// Its home folder.
    pub home: std::path::PathBuf,
}

/// The user `name` of this machine, or `None` when there is none. The one place the migration resolves names
/// of users (the PostgreSQL tools' `os_user`, the owners of placed secrets): reentrant (`getpwnam_r`), as the
/// two sides of a comparison resolve at once on two threads.
pub(crate) fn os_user(name: &str) -> Option<OsUser> {
    let c = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value to be overwritten.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    loop {
        // SAFETY: every pointer is valid for the call; the strings land in buf, which outlives their reads.
        let rc = unsafe {
            libc::getpwnam_r(
                c.as_ptr(),
                &mut pw,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || found.is_null() {
            return None;
        }
        break;
    }
    // SAFETY: pw_dir points into buf (or is null), NUL-terminated.
    let home = if pw.pw_dir.is_null() {
        std::path::PathBuf::from("/")
    } else {
        let bytes = unsafe { std::ffi::CStr::from_ptr(pw.pw_dir) }.to_bytes();
        std::path::PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
    };
    let mut groups = vec![0 as libc::gid_t; 64];
    loop {
        let mut n = groups.len() as libc::c_int;
        // SAFETY: groups holds n entries; getgrouplist writes at most n and says how many it needs.
        let rc = unsafe { libc::getgrouplist(c.as_ptr(), pw.pw_gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n.max(0) as usize);
            break;
        }
        if n as usize <= groups.len() || groups.len() >= 1 << 16 {
            groups = vec![pw.pw_gid];
            break;
        }
        groups.resize(n as usize, 0);
    }
    Some(OsUser {
        name: name.to_owned(),
        uid: pw.pw_uid,
        gid: pw.pw_gid,
        groups,
        home,
    })
}

/// The group `name` of this machine (its id), or `None` when there is none; reentrant (`getgrnam_r`).
pub(crate) fn group_id(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: an all-zero group is a valid value to be overwritten.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    loop {
        // SAFETY: as in os_user.
        let rc = unsafe {
            libc::getgrnam_r(
                c.as_ptr(),
                &mut gr,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 22 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        return (rc == 0 && !found.is_null()).then_some(gr.gr_gid);
    }
}

/// The name of the user this process runs as (its effective user), for messages; its number when it has none.
pub(crate) fn current_user() -> String {
    // SAFETY: no preconditions.
    let uid = unsafe { libc::geteuid() };
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: as in os_user.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in os_user.
    let rc =
        unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut found) };
    if rc == 0 && !found.is_null() && !pw.pw_name.is_null() {
        // SAFETY: pw_name points into buf, NUL-terminated.
        unsafe { std::ffi::CStr::from_ptr(pw.pw_name) }
            .to_string_lossy()
            .into_owned()
    } else {
        format!("uid {uid}")
    }
}

/// Makes `command` run as `user`: its groups, primary group and user id set in the child before `exec` (in
/// that order: after `setuid` it could no longer change them), `HOME`, `USER` and `LOGNAME` its own, and the
/// working folder `/` (fedigen's may be closed to it). Refused unless this process may do it (as root), or is
/// that user already (then nothing changes).
pub(crate) fn run_as(command: &mut Command, user: &OsUser) -> Result<(), String> {
    // SAFETY: no preconditions.
    let euid = unsafe { libc::geteuid() };
    command
        .env("HOME", &user.home)
        .env("USER", &user.name)
        .env("LOGNAME", &user.name)
        .current_dir("/");
    if euid == user.uid {
        return Ok(());
    }
    if euid != 0 {
        return Err(format!(
            "fedigen runs as `{}`, and only root may run a tool as the OS user `{}`: run the migration as root (or as `{}`)",
            current_user(),
            user.name,
            user.name
        ));
    }
    let (uid, gid, groups) = (user.uid, user.gid, user.groups.clone());
    // SAFETY: setgroups, setgid and setuid are async-signal-safe; `groups` was allocated before the fork.
    unsafe {
        command.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tool run as another user (`nobody`, when the test runs as root) gets that user's ids and environment,
    /// reads a file fedigen opened in a folder closed to it (standard input) and bytes on fd 3, and writes its
    /// output into a file fedigen opened there: what `pg_dump`/`pg_restore` as the role's OS user need.
    #[test]
    fn a_tool_runs_as_another_user_with_files_opened_for_it() {
        let name = if unsafe { libc::geteuid() } == 0 {
            "nobody".to_owned()
        } else {
            current_user()
        };
        let user = os_user(&name).expect("the user exists");
        assert!(user.groups.contains(&user.gid));
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let input = dir.path().join("in");
        std::fs::write(&input, "from stdin\n").unwrap();
        let output = dir.path().join("out");
        let mut c = Command::new("sh");
        c.args(["-c", "id -u; echo \"$HOME $USER\"; pwd; cat; cat /dev/fd/3"]);
        run_as(&mut c, &user).unwrap();
        let io = Io {
            stdin: Stdin::File(std::fs::File::open(&input).unwrap()),
            stdout: Some(std::fs::File::create(&output).unwrap()),
            fd3: Some(b"from fd 3\n"),
            fd3_owner: Some((user.uid, user.gid)),
        };
        checked_with(c, "a test", io).unwrap();
        assert_eq!(
            std::fs::read_to_string(&output).unwrap(),
            format!(
                "{}\n{} {name}\n/\nfrom stdin\nfrom fd 3\n",
                user.uid,
                user.home.display()
            )
        );
    }

    #[test]
    fn unknown_users_and_groups_are_none() {
        assert_eq!(os_user("fedigen-no-such-user"), None);
        assert_eq!(group_id("fedigen-no-such-group"), None);
        assert_eq!(os_user("root").map(|u| u.uid), Some(0));
        assert_eq!(group_id("root"), Some(0));
    }
}
