//! The network of a machine as a specification writes it: static IPv4 and/or IPv6 addresses (with prefix and
//! gateway) and name servers, or DHCP said explicitly; and the provider's DNS (the name servers of its zones, the
//! zones' contact, the CA allowed to issue certificates).
//!
//! Why a model of its own: the machine's module (`systemd.network`), the deployment's SSH target and the DNS zone
//! files all read the same addresses, so they are parsed once here ([`Network::addresses`]) and checked once in
//! `check` (valid, prefix in range, gateway inside the subnet, no address used twice).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// How a machine is reached: static addresses, or `dhcp = true`. A machine has one or the other, never neither
/// (validation names the machine and shows both forms): an address the provider did not choose cannot be put into
/// DNS or used as a deployment target.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Addresses come from DHCP (no DNS record is written for the machine; its deployment target is its FQDN).
    #[serde(default, skip_serializing_if = "is_false")]
    pub dhcp: bool,
    /// A static IPv4 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<StaticAddress>,
    /// A static IPv6 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<StaticAddress>,
    /// The resolvers the machine asks (IP addresses); the provider's `network.name_servers` when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub name_servers: Vec<String>,
    /// The network interface to configure (bare metal: a server may have several); every Ethernet interface
    /// when absent (virtual machines have one, whose name differs between QEMU and Proxmox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One static address: `address/prefix` and the gateway of the subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticAddress {
    /// The address with its prefix length, `192.0.2.11/24` or `2001:db8::11/64`.
    pub address: String,
    /// The default gateway; none when the machine only talks to its own subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

/// The provider's network defaults for every machine.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderNetwork {
    /// The resolvers of every machine that names none (IP addresses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub name_servers: Vec<String>,
}

/// The provider's DNS: what the generated zone files (`deployments/dns/<zone>.zone`) say about themselves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// The authoritative name servers of every zone (NS records), host names; the first is the SOA's primary.
    pub name_servers: Vec<String>,
    /// The zones' contact (the SOA's RNAME), an e-mail address.
    pub hostmaster: String,
    /// The CA allowed to issue certificates (CAA `issue`), e.g. `letsencrypt.org`; derived from
    /// `provider.acme.server` for Let's Encrypt, and required for any other CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// The provider's own hosts the deployment names but does not run (the SMTP relay, the Proxmox API, …): a name
    /// in the provider's domain (`smtp` for `smtp.<domain>`) → its IP addresses, written as A/AAAA records of the
    /// provider's zone, which the zone would otherwise lack.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, Vec<String>>,
}

/// A parsed static address: the address, its prefix length and the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    /// The address.
    pub address: IpAddr,
    /// The prefix length (0–32 for IPv4, 0–128 for IPv6).
    pub prefix: u8,
    /// The gateway, when given and valid.
    pub gateway: Option<IpAddr>,
}

/// Why a static address is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AddressProblem {
    /// Not `address/prefix`, or the address is not of the family.
    Address(String),
    /// The prefix is out of range.
    Prefix(String),
    /// The gateway is not an address of the family, or (IPv4) not inside the subnet.
    Gateway(String),
}

impl StaticAddress {
    /// Reads the address of family `v6` (false: IPv4): `address/prefix`, prefix in range, the gateway of the
    /// same family and, for IPv4, inside the subnet and not the address itself. (An IPv6 gateway is often the
    /// router's link-local address, outside the subnet; that is allowed.)
    pub(crate) fn parse(&self, v6: bool) -> Result<Parsed, AddressProblem> {
        let family = if v6 { "IPv6" } else { "IPv4" };
        let example = if v6 {
            "`2001:db8::11/64`"
        } else {
            "`192.0.2.11/24`"
        };
        let Some((address, prefix)) = self.address.split_once('/') else {
            return Err(AddressProblem::Address(format!(
                "`{}` has no prefix length: write the {family} address with it, e.g. {example}",
                self.address
            )));
        };
        let address: IpAddr = address.parse().ok().filter(|a: &IpAddr| a.is_ipv6() == v6).ok_or_else(|| {
            AddressProblem::Address(format!(
                "`{address}` is not an {family} address: write it with its prefix length, e.g. {example}"
            ))
        })?;
        let max = if v6 { 128 } else { 32 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max && !prefix.starts_with('+') && prefix.len() <= 3)
            .ok_or_else(|| {
                AddressProblem::Prefix(format!(
                    "the prefix length `{prefix}` is not a number from 0 to {max}"
                ))
            })?;
        let gateway = match &self.gateway {
            None => None,
            Some(text) => {
                let gateway: IpAddr = text
                    .parse()
                    .ok()
                    .filter(|g: &IpAddr| g.is_ipv6() == v6)
                    .ok_or_else(|| {
                        AddressProblem::Gateway(format!(
                            "the gateway `{text}` is not an {family} address"
                        ))
                    })?;
                if let (IpAddr::V4(a), IpAddr::V4(g)) = (address, gateway) {
                    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                    if u32::from(a) & mask != u32::from(g) & mask {
                        return Err(AddressProblem::Gateway(format!(
                            "the gateway `{g}` is outside the subnet of `{}`: a gateway is reached directly, \
                             so it lies in the machine's own subnet",
                            self.address
                        )));
                    }
                    if a == g {
                        return Err(AddressProblem::Gateway(format!(
                            "the gateway `{g}` is the machine's own address"
                        )));
                    }
                }
                Some(gateway)
            }
        };
        Ok(Parsed {
            address,
            prefix,
            gateway,
        })
    }
}

impl Network {
    /// The machine's static addresses that parse, IPv4 first.
    pub fn addresses(&self) -> Vec<Parsed> {
        [(&self.ipv4, false), (&self.ipv6, true)]
            .into_iter()
            .filter_map(|(a, v6)| a.as_ref()?.parse(v6).ok())
            .collect()
    }

    /// The resolvers: the machine's own, else the provider's defaults.
    pub fn name_servers<'a>(&'a self, provider: Option<&'a ProviderNetwork>) -> &'a [String] {
        if self.name_servers.is_empty() {
            provider.map_or(&[], |p| p.name_servers.as_slice())
        } else {
            &self.name_servers
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(address: &str, gateway: Option<&str>, v6: bool) -> Result<Parsed, AddressProblem> {
        StaticAddress {
            address: address.to_owned(),
            gateway: gateway.map(str::to_owned),
        }
        .parse(v6)
    }

    #[test]
    fn addresses_prefixes_and_gateways_are_checked() {
        let ok = parse("192.0.2.11/24", Some("192.0.2.1"), false).unwrap();
        assert_eq!(
            (ok.address.to_string(), ok.prefix),
            ("192.0.2.11".to_owned(), 24)
        );
        assert!(parse("2001:db8::11/64", Some("fe80::1"), true).is_ok());
        assert!(parse("10.0.0.1/0", Some("192.0.2.1"), false).is_ok());
        for (address, gateway, v6, kind) in [
            ("192.0.2.11", None, false, "address"),
            ("192.0.2.300/24", None, false, "address"),
            ("2001:db8::1/64", None, false, "address"),
            ("192.0.2.11/64", None, false, "prefix"),
            ("192.0.2.11/+8", None, false, "prefix"),
            ("2001:db8::1/129", None, true, "prefix"),
            ("192.0.2.11/24", Some("198.51.100.1"), false, "gateway"),
            ("192.0.2.11/24", Some("192.0.2.11"), false, "gateway"),
            ("192.0.2.11/24", Some("2001:db8::1"), false, "gateway"),
            ("2001:db8::11/64", Some("192.0.2.1"), true, "gateway"),
        ] {
            let kind_of = match parse(address, gateway, v6) {
                Err(AddressProblem::Address(_)) => "address",
                Err(AddressProblem::Prefix(_)) => "prefix",
                Err(AddressProblem::Gateway(_)) => "gateway",
                Ok(_) => "ok",
            };
            assert_eq!(kind_of, kind, "{address} {gateway:?}");
        }
    }
}
