//! The structure tree: every field of a specification, whether it is required, what it holds and what it means.

use super::format::StrFormat;

/// One field of an object.
#[derive(Debug, Clone)]
pub struct Field {
    /// Its name.
    pub name: &'static str,
    /// What it holds.
    pub shape: Shape,
    /// Whether it must be present.
    pub required: bool,
    /// What it means (for hints and the schema's `description`).
    pub doc: &'static str,
}

/// What a value must look like.
#[derive(Debug, Clone)]
pub enum Shape {
    /// `true` or `false`.
    Bool,
    /// Exactly `true`, with why.
    True(&'static str),
    /// An integer in a range (inclusive).
    Int(i64, i64),
    /// A string of a format.
    Str(StrFormat),
    /// An object with known fields; others are refused.
    Object(Vec<Field>),
    /// An object with keys of a format, each holding the same shape.
    Map {
        /// The format every key has.
        key: StrFormat,
        /// What every entry holds.
        value: Box<Shape>,
        /// The fewest entries allowed.
        min_entries: usize,
    },
    /// A list of one shape.
    List(Box<Shape>),
    /// An object whose field `tag` chooses the other fields.
    Tagged(&'static str, Vec<(&'static str, Vec<Field>)>),
    /// A secret reference: `{ file = "…" }` or `{ secret = "…" }`.
    Secret,
    /// An operator's applications, keyed by manifest name.
    Applications,
    /// The settings of an application, from its manifest.
    Settings(String),
    /// The provided secrets of an application, from its manifest.
    AppSecrets(String),
}

fn req(name: &'static str, shape: Shape, doc: &'static str) -> Field {
    Field {
        name,
        shape,
        required: true,
        doc,
    }
}

fn opt(name: &'static str, shape: Shape, doc: &'static str) -> Field {
    Field {
        name,
        shape,
        required: false,
        doc,
    }
}

pub(super) const U32_MAX: i64 = u32::MAX as i64;

fn capacity(required: bool) -> Shape {
    let field = if required { req } else { opt };
    Shape::Object(vec![
        field("cores", Shape::Int(1, U32_MAX), "CPU cores"),
        field("memory_mib", Shape::Int(1, U32_MAX), "memory in MiB"),
        field("disk_gib", Shape::Int(1, U32_MAX), "disk in GiB"),
    ])
}

/// A machine's network: static addresses (each with prefix and gateway) and name servers, or DHCP.
fn network() -> Shape {
    use Shape::*;
    use StrFormat as F;
    let address = |example: &'static str, doc: &'static str| {
        Object(vec![
            req("address", Str(F::Text), example),
            opt("gateway", Str(F::Text), doc),
        ])
    };
    Object(vec![
        opt(
            "dhcp",
            Bool,
            "addresses come from DHCP (`true`); then the machine gets no DNS record",
        ),
        opt(
            "ipv4",
            address(
                "the IPv4 address with its prefix length, e.g. `192.0.2.11/24`",
                "the IPv4 default gateway, inside the subnet",
            ),
            "a static IPv4 address",
        ),
        opt(
            "ipv6",
            address(
                "the IPv6 address with its prefix length, e.g. `2001:db8::11/64`",
                "the IPv6 default gateway",
            ),
            "a static IPv6 address",
        ),
        opt(
            "name_servers",
            List(Box::new(Str(F::Text))),
            "the resolvers the machine asks (IP addresses); default: `provider.network.name_servers`",
        ),
        opt(
            "interface",
            Str(F::Token),
            "the network interface to configure (bare metal); default: every Ethernet interface",
        ),
    ])
}

/// The structure of a whole specification.
pub fn spec_shape() -> Shape {
    use Shape::*;
    use StrFormat as F;
    let host = Object(vec![
        req(
            "ssh",
            Str(F::SshTarget),
            "how to reach the host: `[user@]host[:port]`",
        ),
        req(
            "hardware_config",
            Str(F::SourceFile),
            "its hardware-configuration.nix, committed in the repository, relative to the specification file",
        ),
        req(
            "boot_loader",
            Tagged(
                "kind",
                vec![
                    ("systemd-boot", vec![]),
                    (
                        "grub",
                        vec![req(
                            "device",
                            Str(F::AbsolutePath),
                            "the disk GRUB is installed on, e.g. `/dev/disk/by-id/…`",
                        )],
                    ),
                ],
            ),
            "the boot loader: `kind` is systemd-boot (EFI) or grub (with `device`)",
        ),
    ]);
    let platform = || {
        opt(
            "host_platform",
            Str(F::Token),
            "the Nix system of the machines (`nixpkgs.hostPlatform`), `x86_64-linux` when absent",
        )
    };
    let runtime = Tagged(
        "backend",
        vec![
            ("qemu", vec![platform()]),
            (
                "proxmox",
                vec![
                    req(
                        "api_url",
                        Str(F::HttpsUrl),
                        "the API endpoint, `https://…/api2/json`",
                    ),
                    req(
                        "node",
                        Str(F::Token),
                        "the cluster node machines are created on",
                    ),
                    req(
                        "storage",
                        Str(F::Token),
                        "the storage for machine disks, e.g. `local-zfs`",
                    ),
                    req("bridge", Str(F::Token), "the network bridge, e.g. `vmbr0`"),
                    req("api_token", Secret, "the API token, as a secret reference"),
                    opt(
                        "first_vm_id",
                        Int(100, 999_999_999),
                        "the first Proxmox VM id fedigen gives a new machine (default 100); ids already \
                         given are kept (deployments/tofu/vm-ids.json)",
                    ),
                    platform(),
                ],
            ),
            (
                "bare-metal",
                vec![
                    req(
                        "hosts",
                        Map {
                            key: F::Name(63),
                            value: Box::new(host),
                            min_entries: 1,
                        },
                        "the physical hosts by name",
                    ),
                    platform(),
                ],
            ),
        ],
    );
    let acme = Object(vec![
        req("email", Str(F::Email), "the ACME account's contact address"),
        opt(
            "server",
            Str(F::HttpsUrl),
            "the ACME directory URL (default: Let's Encrypt)",
        ),
        req(
            "accept_terms",
            True(
                "NixOS requests certificates only when the CA's terms are accepted (`security.acme.acceptTerms`)",
            ),
            "the CA's terms of service are accepted; must be `true`",
        ),
    ]);
    let smtp = Object(vec![
        req("host", Str(F::Domain), "the relay's host name"),
        opt("port", Int(1, 65535), "the submission port (default 587)"),
        req("user", Str(F::Text), "the login"),
        req("password", Secret, "the password, as a secret reference"),
        req("from", Str(F::Email), "the sender address of outgoing mail"),
    ]);
    let node = Object(vec![
        req(
            "zone",
            Str(F::Token),
            "the failure domain (Garage layout zone)",
        ),
        req(
            "capacity_gib",
            Int(1, U32_MAX),
            "the storage the node offers, in GiB",
        ),
        opt(
            "machine",
            Str(F::Name(63)),
            "share this application machine (`<operator>-<application>`)",
        ),
        opt(
            "ssh",
            Str(F::SshTarget),
            "how to reach the node's own machine",
        ),
        opt(
            "host",
            Str(F::Name(63)),
            "the bare-metal host of the node's own machine",
        ),
        opt(
            "network",
            network(),
            "the network of the node's own machine: `ipv4`/`ipv6` addresses, or `dhcp = true`",
        ),
        opt(
            "rpc_address",
            Str(F::Text),
            "the host name or IP the other nodes reach this node's RPC port (3901) at (default: its machine's static IPv4 address, else IPv6, else its FQDN)",
        ),
        opt(
            "node_id",
            Str(F::Text),
            "the node's public key, 64 lowercase hex digits, as `fedigen storage node-key` prints it",
        ),
        opt(
            "secrets",
            Object(vec![req(
                crate::model::NODE_KEY_SECRET,
                Secret,
                "the node's 64-byte key file that `fedigen storage node-key` wrote",
            )]),
            "the node's secrets: `node_key`",
        ),
    ]);
    let object_storage = Object(vec![
        req(
            "replication_factor",
            Int(1, 7),
            "copies Garage keeps of each object",
        ),
        req("region", Str(F::Token), "the S3 region name"),
        req(
            "nodes",
            Map {
                key: F::Name(32),
                value: Box::new(node),
                min_entries: 1,
            },
            "the Garage nodes by name",
        ),
        opt(
            "secrets",
            AppSecrets(crate::model::OBJECT_STORAGE_APPLICATION.to_owned()),
            "the secrets the Garage manifest says are provided",
        ),
    ]);
    let limits = Object(vec![
        req(
            "per_machine",
            capacity(true),
            "the most one machine may have",
        ),
        req(
            "per_operator",
            capacity(true),
            "the most one operator's machines may have together",
        ),
    ]);
    let provider = Object(vec![
        req(
            "name",
            Str(F::Name(32)),
            "a short identifier of the provider",
        ),
        req("domain", Str(F::Domain), "the provider's base domain"),
        req(
            "runtime",
            runtime,
            "where machines run: `backend` is qemu, proxmox or bare-metal",
        ),
        req("acme", acme, "the ACME account for TLS certificates"),
        opt("smtp", smtp, "the SMTP relay for outgoing mail"),
        opt(
            "object_storage",
            object_storage,
            "the provider's Garage cluster",
        ),
        opt(
            "limits",
            limits,
            "resource limits per machine and per operator",
        ),
        opt(
            "network",
            Object(vec![opt(
                "name_servers",
                List(Box::new(Str(F::Text))),
                "the resolvers of every machine that names none (IP addresses)",
            )]),
            "network defaults of every machine",
        ),
        opt(
            "dns",
            Object(vec![
                req(
                    "name_servers",
                    List(Box::new(Str(F::Domain))),
                    "the authoritative name servers of every zone (NS); the first is the SOA's primary",
                ),
                req(
                    "hostmaster",
                    Str(F::Email),
                    "the zones' contact address (the SOA's RNAME)",
                ),
                opt(
                    "ca",
                    Str(F::Domain),
                    "the CA allowed to issue certificates (CAA), e.g. `letsencrypt.org`; derived for Let's Encrypt",
                ),
                opt(
                    "hosts",
                    Map {
                        key: F::Name(63),
                        value: Box::new(List(Box::new(Str(F::Text)))),
                        min_entries: 0,
                    },
                    "the provider's own hosts the deployment names but does not run (`smtp = [\"192.0.2.25\"]` for the SMTP relay `smtp.<domain>`): their addresses, as records of the provider's zone",
                ),
            ]),
            "the DNS zone files' name servers, contact and CA",
        ),
        opt(
            "deploy_keys",
            List(Box::new(Str(F::Text))),
            "the public SSH keys the deployment logs in with as root, authorized on every machine (`ssh-ed25519 AAAA…`)",
        ),
        opt(
            "secrets",
            Tagged(
                "backend",
                vec![
                    ("files", vec![]),
                    (
                        "sops",
                        vec![
                            req(
                                "sops_file",
                                Str(F::SourceFile),
                                "the file encrypted with `sops` (`.yaml`, `.yml` or `.json`), committed in the repository, relative to the specification file",
                            ),
                            opt(
                                "age_key_file",
                                Str(F::AbsolutePath),
                                "the age key file on every machine (`sops.age.keyFile`); default: the key sops-nix derives from the SSH ed25519 host key",
                            ),
                        ],
                    ),
                ],
            ),
            "how secrets reach the machines: `backend` is files (the provider places each file, the default) or sops (sops-nix decrypts `sops_file`)",
        ),
    ]);
    let machine = Object(vec![
        opt(
            "ssh",
            Str(F::SshTarget),
            "how to reach the machine: `[user@]host[:port]`",
        ),
        opt("host", Str(F::Name(63)), "the bare-metal host it runs on"),
        opt(
            "network",
            network(),
            "its network: `ipv4`/`ipv6` addresses, or `dhcp = true`",
        ),
    ]);
    let operator = Object(vec![
        req(
            "name",
            Str(F::Name(32)),
            "a short identifier, used in machine names",
        ),
        req(
            "domain",
            Str(F::Domain),
            "the operator's domain; applications live under it",
        ),
        req("contact", Str(F::Email), "the operator's contact address"),
        req(
            "admin",
            Object(vec![
                req(
                    "username",
                    Str(F::Username),
                    "the first administrator's account name",
                ),
                req(
                    "email",
                    Str(F::Email),
                    "the first administrator's e-mail address",
                ),
            ]),
            "the first administrator account",
        ),
        opt(
            "applications",
            Applications,
            "the applications, by manifest name",
        ),
        opt(
            "machines",
            Map {
                key: F::Text,
                value: Box::new(machine),
                min_entries: 0,
            },
            "where each application's machine is deployed, by application name",
        ),
    ]);
    Object(vec![
        req("provider", provider, "the hosting provider"),
        opt(
            "operators",
            List(Box::new(operator)),
            "the operators the provider hosts",
        ),
    ])
}

pub(crate) fn application_fields(app: &str) -> Vec<Field> {
    vec![
        opt(
            "enable",
            Shape::Bool,
            "whether it is deployed (default true)",
        ),
        opt(
            "subdomain",
            Shape::Str(StrFormat::Subdomain),
            "the host name's first labels (default: the manifest's)",
        ),
        opt(
            "resources",
            capacity(false),
            "resources requested beyond the manifest's defaults",
        ),
        opt(
            "settings",
            Shape::Settings(app.to_owned()),
            "typed settings from the application's manifest",
        ),
        opt(
            "secrets",
            Shape::AppSecrets(app.to_owned()),
            "the secrets the manifest says are provided",
        ),
        opt(
            "buckets",
            Shape::Map {
                key: StrFormat::Token,
                value: Box::new(Shape::Str(StrFormat::Text)),
                min_entries: 0,
            },
            "bucket names by the manifest's bucket kind, replacing `<operator>-<application>[-<kind>]`",
        ),
    ]
}
