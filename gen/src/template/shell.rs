//! Shell fragments of the VM tests: quoting, and a manifest's HTTP health checks as shell commands.

use serde_json::{Value, json};

use crate::manifest::Manifest;

/// Quotes a string for a POSIX shell: single quotes, with `'` written as `'\''`.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// A manifest's health checks for a VM test: units, ports, and HTTP checks as shell commands. A remote check is
/// completed in Nix by `curl … https://<host>` before `remote_suffix`; a local one (an admin port) is complete.
pub fn health_context(manifest: &Manifest) -> Value {
    let http: Vec<Value> = manifest
        .health
        .http
        .iter()
        .map(|check| {
            let expectation = format!(
                ")\" = {}{}",
                check.status,
                check
                    .contains
                    .as_ref()
                    .map(|c| format!(" && grep -F -- {} /tmp/body", shell_quote(c)))
                    .unwrap_or_default()
            );
            json!({
                "port": check.port,
                "remote_suffix": format!("{}{expectation}", shell_quote(&check.path)),
                "local_command": check.port.map(|port| format!(
                    "test \"$(curl --silent --output /tmp/body --write-out '%{{http_code}}' http://127.0.0.1:{port}{}{expectation}",
                    shell_quote(&check.path)
                )),
            })
        })
        .collect();
    json!({
        "units": manifest.health.units,
        "tcp_ports": manifest.health.tcp_ports,
        "http": http,
    })
}
