//! The NixOps4 deployment (`deployments/nixops4.nix`), in the form nixops4 and nixops4-nixos take since their
//! unified component model (January 2026): a root module whose `members.<machine>` are `local.exec` resources
//! importing `nixops4-nixos.modules.nixops4Component.nixos`.
//!
//! The root's shape: one member per machine directly at the root, so `nixops4 apply` deploys every machine and
//! `nixops4 apply <machine>` one of them, with the names of `nixosConfigurations` (a member path is the machine
//! name). Grouping by operator (`members.<operator>.members.<app>`) would let one operator be applied at once, but
//! Garage nodes belong to no operator and machine names are already unique and prefixed by the operator.

use super::host_keys::HostKeys;
use super::*;

/// Where nixops4-nixos connects to for a machine: `ssh.user`, `ssh.host` and the port (`ssh.opts`).
///
/// nixops4-nixos passes `[user@]host` to `nix copy --to ssh-ng://…` and to `ssh`, and writes `host key` as the only
/// `known_hosts` line; `ssh.opts` reaches both `nix copy` (through `NIX_SSHOPTS`) and `ssh`. So the host is bare
/// (no user, no port, no IPv6 brackets, which ssh and `known_hosts` do not take), and a port is `-o Port=N` (for a
/// port other than 22 ssh looks the key up as `[host]:N` and then as `host`, so the one line serves).
// The networking work gives `PlannedMachine` the resolved target; this is the one place that reads it.
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

/// The NixOps4 root module: `providers.local`, and for every machine with a host key in `host_keys` a member
/// deploying its module over SSH. `inputs` (the flake's) is a module argument the flake passes through `mkRoot`'s
/// `specialArgs`. Machines without a key are left out (their names are listed by [`HostKeys::missing`]), so
/// evaluation never throws.
pub(super) fn nixops4(
    machines: &[PlannedMachine],
    host_keys: &HostKeys,
) -> Result<Expr, DeployError> {
    let r = Expr::reference;
    let mut members = Vec::new();
    for machine in machines {
        let Some(key) = host_keys.keys.get(&machine.name) else {
            continue;
        };
        let target = deploy_target(machine);
        let mut fields = vec![
            Entry::dotted("type", r("providers.local.exec")?)?,
            Entry::dotted(
                "imports",
                Expr::List(vec![r(
                    "inputs.nixops4-nixos.modules.nixops4Component.nixos",
                )?]),
            )?,
            Entry::dotted("nixpkgs", r("inputs.nixpkgs")?)?,
            Entry::dotted(
                "nixos.module",
                Expr::SourcePath(SourcePath::new(&format!("./{}", machine.file))?),
            )?,
            Entry::dotted("ssh.host", Expr::string(&target.host)?)?,
            Entry::dotted("ssh.user", Expr::string(target.user.unwrap_or("root"))?)?,
        ];
        if let Some(port) = target.port {
            fields.push(Entry::dotted(
                "ssh.opts",
                Expr::string(&format!("-o Port={port}"))?,
            )?);
        }
        fields.push(Entry::dotted("ssh.hostPublicKey", Expr::string(key)?)?);
        members.push(Entry::binding(
            AttrPath::from(AttrName::new(&machine.name)?),
            Expr::attrs(fields),
        ));
    }
    let module = Expr::attrs(vec![
        Entry::dotted(
            "providers.local",
            r("inputs.nixops4.modules.nixops4Provider.local")?,
        )?,
        Entry::dotted("members", Expr::attrs(members))?,
    ]);
    Ok(Expr::Lambda(
        Param::Formals {
            formals: vec![
                (Ident::new("inputs")?, None),
                (Ident::new("providers")?, None),
            ],
            ellipsis: true,
            bind: None,
        },
        Box::new(module),
    ))
}
