//! Shell fragments of the VM tests: quoting, and a manifest's HTTP health checks as shell commands.

use crate::manifest::HttpCheck;

/// Quotes a string for a POSIX shell: single quotes, with `'` written as `'\''`.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The end of the shell command of a remote HTTP check: the quoted path, then the status test and the content
/// test. Completed in Nix by `test "$(curl … https://<host>` before it.
pub(crate) fn remote_suffix(check: &HttpCheck) -> String {
    format!("{}{}", shell_quote(&check.path), expectation(check))
}

/// The whole shell command of a local HTTP check (an admin port on the machine itself), or `None` for a check
/// of the public host.
pub(crate) fn local_command(check: &HttpCheck) -> Option<String> {
    check.port.map(|port| {
        format!(
            "test \"$(curl --silent --output /tmp/body --write-out '%{{http_code}}' http://127.0.0.1:{port}{}{}",
            shell_quote(&check.path),
            expectation(check)
        )
    })
}

/// `)" = <status>`, and `&& grep -F -- '<text>' /tmp/body` when the body must contain a text.
fn expectation(check: &HttpCheck) -> String {
    format!(
        ")\" = {}{}",
        check.status,
        check
            .contains
            .as_ref()
            .map(|c| format!(" && grep -F -- {} /tmp/body", shell_quote(c)))
            .unwrap_or_default()
    )
}
