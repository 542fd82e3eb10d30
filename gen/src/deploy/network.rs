//! A machine's network in its module (systemd-networkd, matched by type or by the interface the specification
//! names) and the deployment's SSH target, derived from the same addresses.
//!
//! Why networkd matched by type: a virtual machine's one NIC is `ens18` on Proxmox and `ens3` under plain QEMU,
//! so a name would be wrong on one backend; `matchConfig.Type = "ether"` matches it on both. A bare-metal server
//! may have several NICs: its specification names the interface (`matchConfig.Name`). The file is `10-uplink`,
//! before the `40-<interface>` files NixOS writes from `networking.interfaces` (a hardware configuration's
//! `mkDefault` DHCP), and networkd applies the first file that matches an interface.

use std::net::IpAddr;

use super::*;
use crate::model::Network;

/// The name of the generated `systemd.network.networks` entry.
pub(crate) const UPLINK: &str = "10-uplink";

/// Where and as whom the deployment logs in: NixOps4's `ssh.user`, `ssh.host` and the port (`ssh.opts`). The host
/// is what the known_hosts line nixops4-nixos writes is keyed by, so it is always an IP address or a fully
/// qualified name, never a bare host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployTarget {
    /// The user to log in as, when the specification says (NixOps4's default is root).
    pub user: Option<String>,
    /// An IP address (IPv6 without brackets, as ssh and known_hosts take it) or a fully qualified name.
    pub host: String,
    /// The SSH port, when not 22 (the default; `-o Port=N` otherwise: nixops4-nixos passes `ssh.opts` to both
    /// `nix copy` through `NIX_SSHOPTS` and `ssh`, and for a port other than 22 ssh looks the host key up as
    /// `[host]:N` and then as `host`, so the one `known_hosts` line serves).
    pub port: Option<u16>,
}

/// Whether an SSH host as written (`10.0.0.5`, `[2001:db8::1]`, `host.example`) is an IP address or a name with a
/// dot: a host the deployment can use as it is. A bare host name is not (validation refuses it).
pub(crate) fn is_qualified_host(host: &str) -> bool {
    let unbracketed = host.trim_start_matches('[').trim_end_matches(']');
    unbracketed.parse::<IpAddr>().is_ok() || host.contains('.')
}

impl PlannedMachine {
    /// The deployment's SSH target: the specification's `ssh` host when it is an IP address or a name with a dot
    /// (its user and port kept, port 22 left out), else the machine's static address (IPv4 first), else its fully qualified
    /// name `<name>.<domain>`. The one derivation the NixOps4 deployment and the tests read.
    pub fn deploy_target(&self) -> DeployTarget {
        let written = self
            .ssh
            .as_deref()
            .and_then(crate::model::ssh::SshTarget::parse);
        let user = written.and_then(|t| t.user).map(str::to_owned);
        let port = written.and_then(|t| t.port).filter(|&p| p != 22);
        let host = written
            .map(|t| t.host)
            .filter(|h| is_qualified_host(h))
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
            .or_else(|| {
                let network = self.network.as_ref()?;
                network.addresses().first().map(|a| a.address.to_string())
            })
            .unwrap_or_else(|| self.fqdn());
        DeployTarget { user, host, port }
    }

    /// The machine's static addresses (none on DHCP).
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.network
            .as_ref()
            .map(|n| n.addresses().iter().map(|a| a.address).collect())
            .unwrap_or_default()
    }
}

/// The machine module's networking: networkd on, global DHCP off (a hardware configuration's `mkDefault` is
/// overridden), and one `systemd.network.networks."10-uplink"` with the static addresses, gateways and name
/// servers, or `DHCP = "yes"`. Nothing when the machine has no network block (validation refuses that).
pub(super) fn network_entries(
    network: Option<&Network>,
    provider: Option<&model::ProviderNetwork>,
) -> Result<Vec<Entry>, DeployError> {
    let Some(network) = network else {
        return Ok(Vec::new());
    };
    let mut uplink = Vec::new();
    uplink.push(match &network.interface {
        Some(name) => Entry::dotted("matchConfig.Name", Expr::string(name)?)?,
        None => Entry::dotted("matchConfig.Type", Expr::string("ether")?)?,
    });
    let parsed = network.addresses();
    if !parsed.is_empty() {
        uplink.push(Entry::dotted(
            "address",
            Expr::List(
                parsed
                    .iter()
                    .map(|a| Expr::string(&format!("{}/{}", a.address, a.prefix)))
                    .collect::<Result<_, _>>()?,
            ),
        )?);
        let gateways: Vec<Expr> = parsed
            .iter()
            .filter_map(|a| a.gateway)
            .map(|g| Expr::string(&g.to_string()))
            .collect::<Result<_, _>>()?;
        if !gateways.is_empty() {
            uplink.push(Entry::dotted("gateway", Expr::List(gateways))?);
        }
    }
    let name_servers = network.name_servers(provider);
    if !name_servers.is_empty() {
        uplink.push(Entry::dotted(
            "dns",
            Expr::List(
                name_servers
                    .iter()
                    .map(|s| Expr::string(s))
                    .collect::<Result<_, _>>()?,
            ),
        )?);
    }
    if network.dhcp {
        uplink.push(Entry::dotted("networkConfig.DHCP", Expr::string("yes")?)?);
    }
    Ok(vec![
        Entry::dotted("networking.useNetworkd", Expr::Bool(true))?,
        Entry::dotted("networking.useDHCP", Expr::Bool(false))?,
        Entry::binding(
            AttrPath::new(vec![
                AttrName::new("systemd")?,
                AttrName::new("network")?,
                AttrName::new("networks")?,
                AttrName::new(UPLINK)?,
            ])?,
            Expr::attrs(uplink),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StaticAddress;

    fn machine(ssh: Option<&str>, network: Option<Network>) -> PlannedMachine {
        PlannedMachine {
            name: "op-mastodon".to_owned(),
            file: "op/mastodon.nix".to_owned(),
            domain: "op.example".to_owned(),
            role: MachineRole::GarageNode("n".to_owned()),
            ssh: ssh.map(str::to_owned),
            network,
        }
    }

    fn static_v4(address: &str) -> Network {
        Network {
            ipv4: Some(StaticAddress {
                address: address.to_owned(),
                gateway: None,
            }),
            ..Network::default()
        }
    }

    /// A bare host name never reaches the deployment (the old code wrote `ssh.host = "mastodon"`, and the
    /// machine's name when no `ssh` was given); an IP or FQDN is kept with its user and port.
    #[test]
    fn the_deploy_target_is_an_address_or_a_fully_qualified_name() {
        let target = |ssh, network| {
            let t = machine(ssh, network).deploy_target();
            (t.user, t.host, t.port)
        };
        assert_eq!(
            target(Some("root@10.20.1.11"), None),
            (Some("root".to_owned()), "10.20.1.11".to_owned(), None)
        );
        assert_eq!(
            target(
                Some("deploy@m.op.example:2222"),
                Some(static_v4("192.0.2.5/24"))
            ),
            (
                Some("deploy".to_owned()),
                "m.op.example".to_owned(),
                Some(2222)
            )
        );
        assert_eq!(
            target(Some("[2001:db8::5]:22"), None),
            (None, "2001:db8::5".to_owned(), None)
        );
        assert_eq!(
            target(Some("root@mastodon"), Some(static_v4("192.0.2.5/24"))),
            (Some("root".to_owned()), "192.0.2.5".to_owned(), None)
        );
        assert_eq!(
            target(None, Some(static_v4("192.0.2.5/24"))),
            (None, "192.0.2.5".to_owned(), None)
        );
        let dhcp = Network {
            dhcp: true,
            ..Network::default()
        };
        assert_eq!(
            target(None, Some(dhcp)),
            (None, "op-mastodon.op.example".to_owned(), None)
        );
        assert_eq!(target(None, None).1, "op-mastodon.op.example");
    }
}
