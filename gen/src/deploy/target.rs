//! Where the deployment connects to for a machine (NixOps4's `ssh.user`, `ssh.host`, port). A module of its own
//! because both the deployment (`nixops4`) and the host-key checks (`host_keys`, which say what to `ssh-keyscan`)
//! read it. The networking work gives `PlannedMachine` the resolved target; this is the one place that reads it,
//! for the lead to swap.

use super::PlannedMachine;
use crate::model::ssh::SshTarget;

/// Where nixops4-nixos connects to for a machine: `ssh.user`, `ssh.host` and the port (`ssh.opts`).
///
/// nixops4-nixos passes `[user@]host` to `nix copy --to ssh-ng://…` and to `ssh`, and writes `host key` as the only
/// `known_hosts` line; `ssh.opts` reaches both `nix copy` (through `NIX_SSHOPTS`) and `ssh`. So the host is bare
/// (no user, no port, no IPv6 brackets, which ssh and `known_hosts` do not take), and a port is `-o Port=N` (for a
/// port other than 22 ssh looks the key up as `[host]:N` and then as `host`, so the one line serves).
pub(crate) struct DeployTarget<'a> {
    /// The login user; `None` leaves nixops4-nixos' default, `root`.
    pub user: Option<&'a str>,
    /// The host name or address, bare.
    pub host: String,
    /// The SSH port when not 22.
    pub port: Option<u16>,
}

/// The target of `machine`: the specification's `[user@]host[:port]` when it gives one, else the machine's
/// fully qualified name (never a bare host name, which resolves only where a search domain happens to match).
pub(crate) fn deploy_target(machine: &PlannedMachine) -> DeployTarget<'_> {
    match machine.ssh.as_deref().and_then(SshTarget::parse) {
        Some(SshTarget { user, host, port }) => DeployTarget {
            user,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: port.filter(|&p| p != 22),
        },
        None => DeployTarget {
            user: None,
            host: machine.fqdn(),
            port: None,
        },
    }
}
