//! Shell commands of the VM tests: quoting, a manifest's HTTP health checks, the [test] steps with the host
//! names they address, and the mailbox check. Every command is whole here, so a test script quotes it once, as
//! a JSON string.

use crate::manifest::HttpCheck;

/// Quotes a string for a POSIX shell: single quotes, with `'` written as `'\''`.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// An HTTP health check as one shell command, and whether it runs on the application's machine (a local admin
/// port, over plain HTTP) rather than on a client reaching `https://<host>` by name (the test CA trusted).
pub(crate) fn http_command(check: &HttpCheck, host: &str) -> (bool, String) {
    let url = match check.port {
        Some(port) => format!("http://127.0.0.1:{port}{}", check.path),
        None => format!("https://{host}{}", check.path),
    };
    let command = format!(
        "test \"$(curl --silent --output /tmp/body --write-out '%{{http_code}}' {})\" = {}{}",
        shell_quote(&url),
        check.status,
        check
            .contains
            .as_ref()
            .map(|c| format!(" && grep -F -- {} /tmp/body", shell_quote(c)))
            .unwrap_or_default()
    );
    (check.port.is_some(), command)
}

/// A step's command with its variables exported first (`FEDIGEN_HOST`, `FEDIGEN_PEER`), each value quoted.
pub(crate) fn step_command(variables: &[(&str, &str)], run: &str) -> String {
    let mut command = String::new();
    for (name, value) in variables {
        command.push_str(&format!("export {name}={}\n", shell_quote(value)));
    }
    command.push_str(run);
    command
}

/// A step's command as the test runs it: a step that waits (`wait`) and expects a text (`expect`) succeeds only
/// once its output holds the text. The test driver's `wait_until_succeeds` retries on the exit status alone, so a
/// step that reads too early (a federated message not yet delivered: the read succeeds, printing nothing) would
/// end the wait and fail the assertion after it. The output is kept in a file and printed whole, as before.
pub fn until_expected(command: String, wait: bool, expect: Option<&str>) -> String {
    match expect {
        Some(text) if wait => format!(
            "{{\n{command}\n}} > /tmp/fedigen-step-output\ncat /tmp/fedigen-step-output\ngrep -qF -- {} /tmp/fedigen-step-output",
            shell_quote(text)
        ),
        _ => command,
    }
}

/// The mail node's check that a mail to `to` arrived: Mailpit's message list (its API on port 8025), searched
/// for the recipient with jq (exit status 1 while none has).
pub(crate) fn mailbox_check(to: &str) -> String {
    format!(
        "curl --silent --fail http://127.0.0.1:8025/api/v1/messages | jq -e --arg to {} 'any(.messages[].To[]?; .Address == $to)'",
        shell_quote(to)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command runs in bash as the test driver runs it; quoting survives any host or text.
    #[test]
    fn commands_run_in_bash_as_written() {
        let command = step_command(
            &[
                ("FEDIGEN_HOST", "it's.example"),
                ("FEDIGEN_PEER", "$(x) \"y\""),
            ],
            "printf '%s|%s' \"$FEDIGEN_HOST\" \"$FEDIGEN_PEER\"",
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &format!("set -euo pipefail; {command}")])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "it's.example|$(x) \"y\""
        );
    }

    /// A waiting step fails until its output holds the expected text (so the driver retries it), prints its whole
    /// output once it does, and still fails where its own commands fail.
    #[test]
    fn a_waiting_step_succeeds_only_once_it_prints_the_expected_text() {
        let bash = |run: &str| {
            let command = until_expected(step_command(&[], run), true, Some("it's here"));
            let out = std::process::Command::new("bash")
                .args(["-c", &format!("set -euo pipefail; {command}")])
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        };
        assert_eq!(bash("echo not yet"), (false, "not yet\n".to_owned()));
        assert_eq!(
            bash("true"),
            (false, String::new()),
            "an empty read is not done"
        );
        assert_eq!(
            bash("echo first\necho \"it's here\""),
            (true, "first\nit's here\n".to_owned())
        );
        assert!(
            !bash("false\necho \"it's here\"").0,
            "a failing command fails the step"
        );
        // Without `wait`, or without a text, the command is as written.
        assert_eq!(until_expected("x".into(), false, Some("y")), "x");
        assert_eq!(until_expected("x".into(), true, None), "x");
    }

    #[test]
    fn http_checks_address_the_host_or_the_local_port() {
        let check = HttpCheck {
            path: "/api/v1/instance".into(),
            status: 200,
            contains: Some("\"uri\"".into()),
            port: None,
        };
        let (local, command) = http_command(&check, "social.example");
        assert!(!local);
        assert_eq!(
            command,
            "test \"$(curl --silent --output /tmp/body --write-out '%{http_code}' 'https://social.example/api/v1/instance')\" = 200 && grep -F -- '\"uri\"' /tmp/body"
        );
        let (local, command) = http_command(
            &HttpCheck {
                port: Some(3903),
                ..check
            },
            "ignored.example",
        );
        assert!(local);
        assert!(
            command.contains("'http://127.0.0.1:3903/api/v1/instance'"),
            "{command}"
        );
    }
}
