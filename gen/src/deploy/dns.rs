//! DNS zone files (RFC 1035 master files), `deployments/dns/<zone>.zone`: one per operator domain and one for
//! the provider's domain, with every name the deployment serves pointing at the machine that serves it.
//!
//! Why generated: ACME's HTTP-01 validation (nginx's `enableACME`) asks for every certificate name over port 80,
//! so every application host must resolve to its machine before the first deployment can get certificates; and the
//! names and addresses are already in the specification. What each zone holds:
//! - `$ORIGIN`, `$TTL`, the SOA (primary = the first of `provider.dns.name_servers`, contact =
//!   `provider.dns.hostmaster`) and one NS record per name server;
//! - `CAA 0 issue "<CA>"` at the apex (RFC 8659), the CA from `provider.dns.ca` or Let's Encrypt's
//!   `letsencrypt.org` when `provider.acme.server` is Let's Encrypt;
//! - A/AAAA for every application host ([`super::host_names`]) and every machine's own name
//!   ([`PlannedMachine::fqdn`]), pointing at the static addresses of the machine serving it;
//! - the object storage endpoints (`s3.<provider domain>`, with a wildcard for virtual-host-style buckets, and
//!   the public media host `media.<provider domain>`) pointing at every Garage node.
//!
//! A machine on DHCP has no address the provider chose: its names get a comment saying so, not a record.

use super::*;
use crate::model::Dns;

/// The folder of the zone files, under `deployments/`.
pub(crate) const DNS_DIR: &str = "dns";

/// The TTL of every record (`$TTL`): an hour.
pub(crate) const TTL: u32 = 3600;

/// The CA domain for CAA records when the ACME directory is Let's Encrypt's (production or staging).
pub(crate) fn ca_domain(spec: &Spec, dns: &Dns) -> Option<String> {
    if let Some(ca) = &dns.ca {
        return Some(ca.clone());
    }
    let host = spec
        .provider
        .acme
        .server
        .strip_prefix("https://")?
        .split(['/', ':'])
        .next()?;
    (host == "letsencrypt.org" || host.ends_with(".letsencrypt.org"))
        .then(|| "letsencrypt.org".to_owned())
}

/// One record's owner name and data before it is placed in a zone.
struct Record {
    /// The fully qualified owner name, without the final dot.
    name: String,
    /// What it is, for the comment above it.
    why: String,
    /// The machines whose addresses it gets.
    machines: Vec<usize>,
    /// Addresses the specification gives it directly (`provider.dns.hosts`).
    addresses: Vec<std::net::IpAddr>,
}

/// The machines serving each name: the application hosts (the application's machine), the S3 endpoints (every
/// Garage node's machine, with wildcards for buckets), every machine's own name.
fn records(spec: &Spec, catalog: &Catalog, machines: &[PlannedMachine]) -> Vec<Record> {
    let index = |name: &str| machines.iter().position(|m| m.name == name);
    let garage: Vec<usize> = spec
        .provider
        .object_storage
        .iter()
        .flat_map(|s| &s.nodes)
        .filter_map(|(node, n)| match &n.machine {
            Some(shared) => index(shared),
            None => index(&garage_node_machine(node).0),
        })
        .collect();
    let mut records = Vec::new();
    for (host, origin) in host_names(spec, catalog) {
        match origin {
            Origin::Application {
                operator,
                application,
            } => {
                let machine = spec.operators[operator].machine_name(&application);
                records.push(Record {
                    name: host,
                    why: format!(
                        "{application} of operator {}",
                        spec.operators[operator].name
                    ),
                    machines: index(&machine).into_iter().collect(),
                    addresses: Vec::new(),
                });
            }
            Origin::S3Endpoint => {
                records.push(Record {
                    name: format!("*.{host}"),
                    why: format!(
                        "the S3 endpoint's buckets as <bucket>.{host} (virtual-host style, which PeerTube needs); \
                         the nodes' certificate names each such bucket (HTTP-01), no wildcard certificate"
                    ),
                    machines: garage.clone(),
                    addresses: Vec::new(),
                });
                records.push(Record {
                    name: host,
                    why: "the S3 endpoint: every Garage node".to_owned(),
                    machines: garage.clone(),
                    addresses: Vec::new(),
                });
            }
            Origin::S3WebEndpoint => records.push(Record {
                name: host,
                why: "public media, every public bucket at /<bucket>/ (Garage's web endpoint): every Garage node"
                    .to_owned(),
                machines: garage.clone(),
                addresses: Vec::new(),
            }),
            // The apex is the operator's own (its website, mail): no machine of the deployment serves it.
            Origin::OperatorDomain(_) | Origin::GarageNode(_) => {}
        }
    }
    for (i, machine) in machines.iter().enumerate() {
        records.push(Record {
            name: machine.fqdn(),
            why: format!("machine {}", machine.name),
            machines: vec![i],
            addresses: Vec::new(),
        });
    }
    for (name, addresses) in spec.provider.dns.iter().flat_map(|d| &d.hosts) {
        records.push(Record {
            name: format!("{name}.{}", spec.provider.domain),
            why: format!("the provider's host {name} (provider.dns.hosts)"),
            machines: Vec::new(),
            // Validation refuses what does not parse.
            addresses: addresses.iter().filter_map(|a| a.parse().ok()).collect(),
        });
    }
    records
}

/// Every address record the zone `zone` of `spec` holds, as (owner name, address), sorted: what `fedigen migrate
/// plan` compares between two providers to name the DNS changes of a move. The same records and the same
/// "longest zone" placement as [`zones`], without the zone's text.
pub(crate) fn address_records(
    spec: &Spec,
    catalog: &Catalog,
    zone: &str,
) -> Vec<(String, std::net::IpAddr)> {
    let machines = machines(spec, catalog);
    let mut zones: Vec<&str> = spec.operators.iter().map(|o| o.domain.as_str()).collect();
    zones.push(&spec.provider.domain);
    let mut out = Vec::new();
    for record in records(spec, catalog, &machines) {
        let home = zones
            .iter()
            .filter(|z| relative(&record.name, z).is_some())
            .max_by_key(|z| z.len());
        if home != Some(&zone) {
            continue;
        }
        for &m in &record.machines {
            out.extend(
                machines[m]
                    .addresses()
                    .into_iter()
                    .map(|a| (record.name.clone(), a)),
            );
        }
        out.extend(record.addresses.iter().map(|a| (record.name.clone(), *a)));
    }
    out.sort();
    out.dedup();
    out
}

/// A name relative to the zone's origin (`@` for the apex), or `None` when it is outside the zone.
fn relative(name: &str, zone: &str) -> Option<String> {
    if name == zone {
        Some("@".to_owned())
    } else {
        name.strip_suffix(zone)?
            .strip_suffix('.')
            .map(str::to_owned)
    }
}

/// An e-mail address as a domain name (the SOA's RNAME, RFC 1035 §8): the local part's dots escaped, `@` a dot.
fn mailbox(email: &str) -> String {
    let (local, domain) = email.split_once('@').unwrap_or((email, ""));
    format!("{}.{domain}.", local.replace('.', "\\."))
}

/// FNV-1a, 32 bits: the serial from the zone's content (stable across Rust versions, unlike `DefaultHasher`).
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// Every zone file: `deployments/dns/<zone>.zone` → its text, one per operator domain and the provider's domain.
/// None without `provider.dns` (its name servers and contact are what a zone says about itself). Each name goes
/// into the longest zone it is in.
pub(super) fn zones(
    spec: &Spec,
    catalog: &Catalog,
    machines: &[PlannedMachine],
    header: &str,
) -> Vec<(PathBuf, String)> {
    let Some(dns) = &spec.provider.dns else {
        return Vec::new();
    };
    let mut zones: Vec<&str> = spec.operators.iter().map(|o| o.domain.as_str()).collect();
    zones.push(&spec.provider.domain);
    zones.sort_unstable();
    zones.dedup();
    let records = records(spec, catalog, machines);
    let ca = ca_domain(spec, dns);
    zones
        .iter()
        .map(|zone| {
            let mut body = String::new();
            for ns in &dns.name_servers {
                body.push_str(&format!("@\tIN\tNS\t{ns}.\n"));
            }
            if let Some(ca) = &ca {
                body.push_str(&format!("@\tIN\tCAA\t0 issue \"{ca}\"\n"));
            }
            for record in &records {
                // The longest zone holding the name is where it goes.
                let home = zones
                    .iter()
                    .filter(|z| relative(&record.name, z).is_some())
                    .max_by_key(|z| z.len());
                if home != Some(zone) {
                    continue;
                }
                let Some(owner) = relative(&record.name, zone) else {
                    continue;
                };
                body.push_str(&format!("\n; {}\n", record.why));
                for &m in &record.machines {
                    let machine = &machines[m];
                    let addresses = machine.addresses();
                    if addresses.is_empty() {
                        body.push_str(&format!(
                            "; {owner}: machine {} has no static address (DHCP), so no record; add one by hand \
                             or give the machine a static address\n",
                            machine.name
                        ));
                    }
                    for address in addresses {
                        let kind = if address.is_ipv4() { "A" } else { "AAAA" };
                        body.push_str(&format!("{owner}\tIN\t{kind}\t{address}\n"));
                    }
                }
                for address in &record.addresses {
                    let kind = if address.is_ipv4() { "A" } else { "AAAA" };
                    body.push_str(&format!("{owner}\tIN\t{kind}\t{address}\n"));
                }
            }
            // The serial is derived from everything else the zone says, so a changed zone gets a new serial and an
            // unchanged one keeps it, with no date or state in the generated file.
            let serial = fnv1a(&format!("{zone}\n{}\n{body}", mailbox(&dns.hostmaster))) % 4_000_000_000 + 1;
            let primary = dns.name_servers.first().map_or("", String::as_str);
            let text = format!(
                "; {header}\n\
                 ; The zone {zone}: every name of the deployment in it, pointing at the machine that serves it.\n\
                 ; The SOA serial is a hash of the rest of the zone (FNV-1a), not a date: it changes exactly when the\n\
                 ; zone does, but it is not increasing; secondaries that compare serials (RFC 1982) need the primary\n\
                 ; to re-serialise (e.g. BIND's serial-update-method, Knot's serial-policy), or a NOTIFY and AXFR.\n\
                 $ORIGIN {zone}.\n\
                 $TTL {TTL}\n\
                 @\tIN\tSOA\t{primary}. {} (\n\
                 \t\t{serial}\t; serial\n\
                 \t\t3600\t; refresh\n\
                 \t\t900\t; retry\n\
                 \t\t1209600\t; expire\n\
                 \t\t300\t; negative caching TTL\n\
                 )\n{body}",
                mailbox(&dns.hostmaster)
            );
            (
                PathBuf::from(DEPLOYMENTS).join(DNS_DIR).join(format!("{zone}.zone")),
                text,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_relative_to_their_zone() {
        assert_eq!(
            relative("social.a.example", "a.example").as_deref(),
            Some("social")
        );
        assert_eq!(relative("a.example", "a.example").as_deref(), Some("@"));
        assert_eq!(
            relative("*.s3.p.example", "p.example").as_deref(),
            Some("*.s3")
        );
        assert_eq!(relative("social.ba.example", "a.example"), None);
        assert_eq!(relative("b.example", "a.example"), None);
    }

    #[test]
    fn mailboxes_escape_dots_of_the_local_part() {
        assert_eq!(mailbox("hostmaster@p.example"), "hostmaster.p.example.");
        assert_eq!(mailbox("host.master@p.example"), "host\\.master.p.example.");
    }
}
