//! Cross-checks of machines' networks (part of [`super::check::check`]): every machine has a network (static
//! addresses or `dhcp = true`), its addresses are valid (prefix in range, an IPv4 gateway inside the subnet), no
//! two machines share an address, and every SSH target is an IP address or a fully qualified name — the deployment
//! keys the host's known_hosts line by it, and a bare host name depends on the deployer's resolver search list.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::diagnostic::Diagnostic;
use super::network::AddressProblem;
use super::path::FieldPath;
use super::{Catalog, Network, Runtime, Spec};
use crate::deploy::{self, MachineRole};

/// Where a planned machine's `network` is written in the specification, and the machine's entry (its parent).
fn network_path(machine: &deploy::PlannedMachine) -> (FieldPath, FieldPath) {
    let entry = match &machine.role {
        MachineRole::Application {
            operator,
            application,
        } => FieldPath::of(&["operators"])
            .index(*operator)
            .key("machines")
            .key(application),
        MachineRole::GarageNode(node) => {
            FieldPath::of(&["provider", "object_storage", "nodes", node])
        }
    };
    (entry.key("network"), entry)
}

/// Every network problem of a specification.
pub(crate) fn check(spec: &Spec, catalog: &Catalog, out: &mut Vec<Diagnostic>) {
    let machines = deploy::machines(spec, catalog);
    let mut first_use: BTreeMap<IpAddr, (FieldPath, String)> = BTreeMap::new();
    for machine in &machines {
        let (path, entry) = network_path(machine);
        let Some(network) = &machine.network else {
            let (where_, at) = match &machine.role {
                MachineRole::Application {
                    operator,
                    application,
                } => (
                    format!("operators[{operator}].machines.{application}.network"),
                    FieldPath::of(&["operators"])
                        .index(*operator)
                        .key("applications")
                        .key(application),
                ),
                MachineRole::GarageNode(node) => (
                    format!("provider.object_storage.nodes.{node}.network"),
                    entry.clone(),
                ),
            };
            out.push(
                Diagnostic::new(
                    at,
                    format!("machine `{}` has no network", machine.name),
                    "no network",
                )
                .at_key()
                .hint(format!(
                    "give `{where_}` static addresses, `ipv4 = {{ address = \"192.0.2.11/24\", gateway = \"192.0.2.1\" }}` \
                     and/or `ipv6 = {{ address = \"2001:db8::11/64\" }}`, or `dhcp = true`"
                )),
            );
            continue;
        };
        addresses(network, &path, &machine.name, &mut first_use, out);
    }
    ssh_hosts(spec, out);
    if let Some(storage) = &spec.provider.object_storage {
        for (n, _) in storage
            .nodes
            .iter()
            .filter(|(_, node)| node.machine.is_some() && node.network.is_some())
        {
            out.push(
                Diagnostic::new(
                    FieldPath::of(&["provider", "object_storage", "nodes", n, "network"]),
                    "a node sharing a machine has no `network` of its own",
                    "not used",
                )
                .at_key()
                .hint("the node has the network of the machine it shares; remove it"),
            );
        }
    }
    if let Some(dns) = &spec.provider.dns {
        if dns.name_servers.is_empty() {
            out.push(
                Diagnostic::new(
                    FieldPath::of(&["provider", "dns", "name_servers"]),
                    "the zones have no name server",
                    "empty",
                )
                .hint("list the authoritative name servers, e.g. `[\"ns1.<provider domain>\", \"ns2.…\"]`; the first is the SOA's primary"),
            );
        }
        let zones: Vec<&str> = spec
            .operators
            .iter()
            .map(|o| o.domain.as_str())
            .chain([spec.provider.domain.as_str()])
            .collect();
        for (k, ns) in dns.name_servers.iter().enumerate() {
            // An in-zone name server needs its address in the zone (glue): `provider.dns.hosts` gives it in the
            // provider's zone.
            let glued = ns
                .strip_suffix(&format!(".{}", spec.provider.domain))
                .is_some_and(|label| dns.hosts.contains_key(label));
            if let Some(zone) = zones
                .iter()
                .find(|z| ns == *z || ns.ends_with(&format!(".{z}")))
                .filter(|_| !glued)
            {
                out.push(
                    Diagnostic::new(
                        FieldPath::of(&["provider", "dns", "name_servers"]).index(k),
                        format!(
                            "the name server `{ns}` is inside the zone `{zone}` fedigen writes, which would need \
                             its address (glue) and has none"
                        ),
                        "inside a generated zone",
                    )
                    .hint("name servers outside the generated zones (e.g. the DNS host's own); BIND refuses a zone whose in-zone name server has no address record"),
                );
            }
        }
        provider_hosts(spec, catalog, dns, out);
        if deploy::ca_domain(spec, dns).is_none() {
            out.push(
                Diagnostic::new(
                    FieldPath::of(&["provider", "dns"]),
                    format!(
                        "the CA of `{}` is not known, so the zones' CAA records cannot name it",
                        spec.provider.acme.server
                    ),
                    "no `ca`",
                )
                .at_key()
                .hint("add `ca = \"<the CA's issuer domain>\"` (its CAA identifier, RFC 8659), e.g. `letsencrypt.org`"),
            );
        }
    }
    for (path, servers) in name_server_lists(spec) {
        for (k, server) in servers.iter().enumerate() {
            if server.parse::<IpAddr>().is_err() {
                out.push(
                    Diagnostic::new(
                        path.clone().index(k),
                        format!("the name server `{server}` is not an IP address"),
                        "not an IP address",
                    )
                    .hint("a resolver is reached before any name resolves: give its IPv4 or IPv6 address"),
                );
            }
        }
    }
}

/// One machine's addresses: each valid, the block not empty, not DHCP and static at once, none used before.
fn addresses(
    network: &Network,
    path: &FieldPath,
    machine: &str,
    first_use: &mut BTreeMap<IpAddr, (FieldPath, String)>,
    out: &mut Vec<Diagnostic>,
) {
    let has_static = network.ipv4.is_some() || network.ipv6.is_some();
    if !has_static && !network.dhcp {
        out.push(
            Diagnostic::new(
                path.clone(),
                format!("the network of machine `{machine}` has neither addresses nor DHCP"),
                "no addresses",
            )
            .at_key()
            .hint(
                "add `ipv4 = { address = \"192.0.2.11/24\", gateway = \"192.0.2.1\" }` (and/or `ipv6`), \
                 or `dhcp = true`",
            ),
        );
    }
    if has_static && network.dhcp {
        out.push(
            Diagnostic::new(
                path.key("dhcp"),
                format!("machine `{machine}` has static addresses and DHCP"),
                "both",
            )
            .at_key()
            .hint("remove `dhcp`, or the static addresses: DNS and the deployment use the static address"),
        );
    }
    for (family, address, v6) in [
        ("ipv4", &network.ipv4, false),
        ("ipv6", &network.ipv6, true),
    ] {
        let Some(address) = address else { continue };
        let here = path.key(family);
        match address.parse(v6) {
            Err(AddressProblem::Address(m)) | Err(AddressProblem::Prefix(m)) => {
                out.push(Diagnostic::new(
                    here.key("address"),
                    m,
                    "not an address with prefix",
                ));
            }
            Err(AddressProblem::Gateway(m)) => {
                out.push(Diagnostic::new(here.key("gateway"), m, "wrong gateway"));
            }
            Ok(_) => {}
        }
        // Uniqueness is checked on the address alone, also when its prefix or gateway is wrong.
        let Some(ip) = address
            .address
            .split_once('/')
            .and_then(|(ip, _)| ip.parse::<IpAddr>().ok())
        else {
            continue;
        };
        if let Some((first, owner)) = first_use.get(&ip) {
            out.push(
                Diagnostic::new(
                    here.key("address"),
                    format!("machine `{machine}` has the address `{ip}` of machine `{owner}`"),
                    "used again",
                )
                .related(first.clone(), "first used here")
                .hint("every machine has addresses of its own: give one of them another address"),
            );
        } else {
            first_use.insert(ip, (here.key("address"), machine.to_owned()));
        }
    }
}

/// Every SSH target of the specification with where it is written: machines', Garage nodes', bare-metal hosts'.
/// A bare host name is refused (the deployment's target is an IP address or a fully qualified name).
fn ssh_hosts(spec: &Spec, out: &mut Vec<Diagnostic>) {
    let mut targets: Vec<(FieldPath, &str)> = Vec::new();
    for (i, op) in spec.operators.iter().enumerate() {
        for (app, machine) in &op.machines {
            if let Some(ssh) = &machine.ssh {
                targets.push((
                    FieldPath::of(&["operators"])
                        .index(i)
                        .key("machines")
                        .key(app)
                        .key("ssh"),
                    ssh,
                ));
            }
        }
    }
    if let Some(storage) = &spec.provider.object_storage {
        for (n, node) in &storage.nodes {
            if let Some(ssh) = &node.ssh {
                targets.push((
                    FieldPath::of(&["provider", "object_storage", "nodes", n, "ssh"]),
                    ssh,
                ));
            }
        }
    }
    if let Runtime::BareMetal(bare) = &spec.provider.runtime {
        for (h, host) in &bare.hosts {
            targets.push((
                FieldPath::of(&["provider", "runtime", "hosts", h, "ssh"]),
                &host.ssh,
            ));
        }
    }
    for (path, ssh) in targets {
        let Some(target) = super::ssh::SshTarget::parse(ssh) else {
            continue; // The format check reports it.
        };
        if !deploy::is_qualified_host(target.host) {
            out.push(
                Diagnostic::new(
                    path,
                    format!("the SSH host `{}` is a bare host name", target.host),
                    "not fully qualified",
                )
                .hint(format!(
                    "write its IP address or its fully qualified name (`{}.<domain>`): the deployment checks the \
                     host key under exactly this name, and a bare name depends on the deployer's resolver; or \
                     leave `ssh` out to deploy to the machine's static address",
                    target.host
                )),
            );
        }
    }
}

/// The provider's own hosts in its zone: every address of `provider.dns.hosts` is an IP address, and every host
/// the deployment names in the provider's zone without running it (the SMTP relay, the Proxmox API) has a record
/// — the zone fedigen writes is the whole zone, so a name missing from it would not resolve.
fn provider_hosts(
    spec: &Spec,
    catalog: &Catalog,
    dns: &crate::model::Dns,
    out: &mut Vec<Diagnostic>,
) {
    for (name, addresses) in &dns.hosts {
        let at = FieldPath::of(&["provider", "dns", "hosts"]).key(name);
        if addresses.is_empty() {
            out.push(
                Diagnostic::new(
                    at.clone(),
                    format!("the host `{name}` has no address"),
                    "empty",
                )
                .hint("list its IPv4 and/or IPv6 addresses, e.g. `[\"192.0.2.25\"]`"),
            );
        }
        for (k, address) in addresses.iter().enumerate() {
            if address.parse::<std::net::IpAddr>().is_err() {
                out.push(
                    Diagnostic::new(
                        at.clone().index(k),
                        format!("`{address}` is not an IP address"),
                        "not an IP address",
                    )
                    .hint("an IPv4 or IPv6 address, e.g. `192.0.2.25` or `2001:db8::25`"),
                );
            }
        }
    }
    let domain = &spec.provider.domain;
    let mut served: Vec<String> = deploy::machines(spec, catalog)
        .iter()
        .map(deploy::PlannedMachine::fqdn)
        .chain(
            deploy::host_names(spec, catalog)
                .into_iter()
                .map(|(h, _)| h),
        )
        .collect();
    served.extend(dns.hosts.keys().map(|label| format!("{label}.{domain}")));
    let mut named: Vec<(String, FieldPath, &str)> = Vec::new();
    if let Some(smtp) = &spec.provider.smtp {
        named.push((
            smtp.host.clone(),
            FieldPath::of(&["provider", "smtp", "host"]),
            "the SMTP relay",
        ));
    }
    if let crate::model::Runtime::Proxmox(proxmox) = &spec.provider.runtime
        && let Some(host) = proxmox
            .api_url
            .split_once("://")
            .and_then(|(_, rest)| rest.split(['/', ':']).next())
    {
        named.push((
            host.to_owned(),
            FieldPath::of(&["provider", "runtime", "api_url"]),
            "the Proxmox API",
        ));
    }
    for (host, at, what) in named {
        let Some(label) = host.strip_suffix(&format!(".{domain}")) else {
            continue;
        };
        if served.contains(&host) {
            continue;
        }
        out.push(
            Diagnostic::new(
                at,
                format!(
                    "{what} `{host}` is in the zone `{domain}` fedigen writes, but the zone would have no record for it"
                ),
                "no address in the generated zone",
            )
            .hint(format!(
                "give its addresses in `provider.dns.hosts`, e.g. `{label} = [\"192.0.2.25\"]` under `[provider.dns.hosts]`"
            )),
        );
    }
}

/// The lists of name servers (resolvers) the specification writes, with their places.
fn name_server_lists(spec: &Spec) -> Vec<(FieldPath, &[String])> {
    let mut lists: Vec<(FieldPath, &[String])> = Vec::new();
    if let Some(network) = &spec.provider.network {
        lists.push((
            FieldPath::of(&["provider", "network", "name_servers"]),
            &network.name_servers,
        ));
    }
    for (i, op) in spec.operators.iter().enumerate() {
        for (app, machine) in &op.machines {
            if let Some(network) = &machine.network {
                lists.push((
                    FieldPath::of(&["operators"])
                        .index(i)
                        .key("machines")
                        .key(app)
                        .key("network")
                        .key("name_servers"),
                    &network.name_servers,
                ));
            }
        }
    }
    if let Some(storage) = &spec.provider.object_storage {
        for (n, node) in &storage.nodes {
            if let Some(network) = &node.network {
                lists.push((
                    FieldPath::of(&[
                        "provider",
                        "object_storage",
                        "nodes",
                        n,
                        "network",
                        "name_servers",
                    ]),
                    &network.name_servers,
                ));
            }
        }
    }
    lists
}

/// What a valid specification leaves undone for the deployment, for `validate` to say without refusing it: no
/// deploy key (nothing lets NixOps4 log in to a machine its image started), and each machine on DHCP, whose names
/// get no DNS record (its address is not the provider's to write).
pub(crate) fn warnings(spec: &Spec, catalog: &Catalog) -> Vec<String> {
    let mut warnings = Vec::new();
    if spec.provider.deploy_keys.is_empty() {
        warnings.push(
            "provider.deploy_keys is empty: no machine authorizes an SSH key for root, so NixOps4 cannot log in to \
             a machine started from its image; add the deployer's public key \
             (`deploy_keys = [\"ssh-ed25519 AAAA…\"]`)"
                .to_owned(),
        );
    }
    for machine in deploy::machines(spec, catalog) {
        if machine.network.as_ref().is_some_and(|n| n.dhcp) {
            warnings.push(format!(
                "machine `{}` is on DHCP: the DNS zones get no address record for it or the hosts it serves; \
                 add them by hand, or give it a static address",
                machine.name
            ));
        }
    }
    warnings
}
