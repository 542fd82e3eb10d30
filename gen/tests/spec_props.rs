//! Property tests: arbitrary valid specifications (every backend, every option type of the fixture manifests,
//! strings with every escaping hazard, integer extremes) are written as TOML, JSON and Nix, loaded back, and
//! must be equal to the original. Every generated specification must also pass validation, so the generator
//! doubles as a test that the validator accepts what it should.
//!
//! Nix goes through the emitter (`nix::value::from_json` + `emit_file`) and the real `nix-instantiate`, 150
//! specifications in one process. Floats are multiples of 1/8 below 1000 in magnitude: Nix 2.8 prints six
//! significant digits, so these are the floats that survive its JSON output exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use fedigen::emit::{Verification, emit_file};
use fedigen::eval::{Evaluator, Source};
use fedigen::manifest::{OptionType, SecretSource};
use fedigen::model::shape::is_secret_like;
use fedigen::model::{
    self, Acme, Admin, BareMetal, BootLoader, Catalog, GarageNode, Host, Limits, Machine, Network,
    ObjectStorage, Operator, OperatorApplication, Provider, Proxmox, Qemu, ResourceRequest,
    Resources, Runtime, SecretRef, Smtp, Spec, SpecDocument, StaticAddress,
};
use fedigen::nix::value::{DataPolicy, SPECIAL_ATTRIBUTES, from_json};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Number, Value};

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spec/templates"))
            .expect("fixture manifests load")
    })
}

/// Text with the hazards of every format: quotes, backslashes, `${`, newlines, CR, tabs, non-ASCII.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => proptest::sample::select(vec![
            "${", "''", "'", "\\", "\"", "\r", "\n", "\t", "\r\n", "#", "\"\"\"", "'''", "é", "🦀",
            "\u{7f}", "\u{1b}", "\u{2028}", " ",
        ])
        .prop_map(str::to_owned),
        2 => any::<String>(),
        2 => "[a-zA-Z ]{0,8}",
    ];
    prop::collection::vec(piece, 0..5).prop_map(|p| p.concat().replace('\0', ""))
}

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,6}"
}

/// A secret reference; `role` names what it is for, so that two different secrets never draw the same file (a
/// valid specification gives each secret of a machine its own file, and validation refuses a shared one).
fn secret(role: &str) -> impl Strategy<Value = SecretRef> + use<> {
    let role = role.to_owned();
    prop_oneof![
        "[a-z0-9-]{1,12}"
            .prop_map(move |leaf| SecretRef::File(format!("/run/secrets/{role}/{leaf}"))),
        "[a-z][a-z0-9._-]{0,12}".prop_map(SecretRef::Secret),
    ]
}

/// How secrets reach the machines: absent (files), files said explicitly, or sops-nix with a YAML or JSON file
/// relative to the specification and, or not, an age key file.
fn secrets_backend() -> impl Strategy<Value = Option<model::SecretsBackend>> {
    proptest::option::of(prop_oneof![
        Just(model::SecretsBackend::Files),
        (
            "(\\./)?([a-z0-9_-]{1,8}/){0,2}[a-z0-9_-]{1,8}\\.(yaml|yml|json)",
            proptest::option::of("/(var/lib|etc)/[a-z0-9-]{1,8}/key\\.txt"),
        )
            .prop_map(|(sops_file, age_key_file)| {
                model::SecretsBackend::Sops(model::Sops {
                    sops_file,
                    age_key_file,
                })
            }),
    ])
}

fn ssh() -> impl Strategy<Value = String> {
    prop_oneof![
        "(root@)?10\\.[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}",
        "deploy@[a-z]{1,8}\\.example:[1-9][0-9]{0,3}",
        Just("[2001:db8::1]:22".to_owned()),
    ]
}

fn float() -> impl Strategy<Value = Value> {
    (-7999i32..8000).prop_map(|k| Value::Number(Number::from_f64(f64::from(k) / 8.0).unwrap()))
}

/// A key for an attribute set in settings: arbitrary, but not secret-like and not special to Nix.
fn settings_key() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z_][A-Za-z0-9_]{0,10}", text()].prop_filter("a plain data key", |k| {
        !is_secret_like(k) && !SPECIAL_ATTRIBUTES.contains(&k.as_str()) && k != "type"
    })
}

fn value_of(ty: &OptionType) -> BoxedStrategy<Value> {
    match ty {
        OptionType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        OptionType::Int { min, max } => (min.unwrap_or(i64::MIN)..=max.unwrap_or(i64::MAX))
            .prop_map(Value::from)
            .boxed(),
        OptionType::Float => float().boxed(),
        OptionType::Str {
            pattern: Some(p),
            max_length,
        } => {
            let max = max_length.unwrap_or(usize::MAX);
            proptest::string::string_regex(p)
                .unwrap()
                .prop_filter("fits", move |s| s.chars().count() <= max)
                .prop_map(Value::String)
                .boxed()
        }
        OptionType::Str {
            pattern: None,
            max_length,
        } => {
            let max = max_length.unwrap_or(usize::MAX);
            text()
                .prop_map(move |s| Value::String(s.chars().take(max).collect()))
                .boxed()
        }
        OptionType::Enum(values) => proptest::sample::select(values.clone())
            .prop_map(Value::String)
            .boxed(),
        OptionType::Port => (1u16..=65535).prop_map(Value::from).boxed(),
        OptionType::Email => "[a-z]{1,8}@[a-z]{1,8}\\.example"
            .prop_map(Value::String)
            .boxed(),
        OptionType::List(inner) => prop::collection::vec(value_of(inner), 0..4)
            .prop_map(Value::Array)
            .boxed(),
        OptionType::Attrs(inner) => {
            prop::collection::btree_map(settings_key(), value_of(inner), 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
                .boxed()
        }
    }
}

fn application(app: &str) -> BoxedStrategy<OperatorApplication> {
    let manifest = &catalog().manifests[app];
    let settings: Vec<BoxedStrategy<Option<(String, Value)>>> = manifest
        .options
        .iter()
        .map(|(name, option)| {
            let name = name.clone();
            let required = option.default.is_none();
            (any::<bool>(), value_of(&option.ty))
                .prop_map(move |(give, v)| (give || required).then(|| (name.clone(), v)))
                .boxed()
        })
        .collect();
    let secrets: Vec<BoxedStrategy<(String, SecretRef)>> = manifest
        .secrets
        .iter()
        .filter(|(_, s)| s.source == SecretSource::Provided)
        .map(|(name, _)| {
            let name = name.clone();
            secret(&format!("app-{name}"))
                .prop_map(move |s| (name.clone(), s))
                .boxed()
        })
        .collect();
    let minimum = manifest.resources;
    let request = (
        proptest::option::of(minimum.cores..minimum.cores + 4),
        proptest::option::of(minimum.memory_mib..minimum.memory_mib + 4096),
        proptest::option::of(minimum.disk_gib..minimum.disk_gib + 100),
    )
        .prop_map(|(cores, memory_mib, disk_gib)| ResourceRequest {
            cores,
            memory_mib,
            disk_gib,
        });
    let app_name = app.to_owned();
    (
        any::<bool>(),
        proptest::option::of("[a-z]{1,5}"),
        request,
        settings,
        secrets,
    )
        .prop_map(
            move |(enable, sub, resources, settings, secrets)| OperatorApplication {
                enable,
                // `x-` keeps overrides apart from every default subdomain.
                subdomain: sub.map(|s| format!("x-{s}.{app_name}")),
                resources,
                settings: settings.into_iter().flatten().collect(),
                secrets: secrets.into_iter().collect(),
                buckets: BTreeMap::new(),
            },
        )
        .boxed()
}

fn operator(index: usize) -> impl Strategy<Value = Operator> {
    let apps: Vec<String> = catalog().manifests.keys().cloned().collect();
    let chosen = proptest::sample::subsequence(apps, 0..=3);
    (name(), "[a-z]{1,6}", chosen, "[a-z][a-z0-9_]{0,10}")
        .prop_flat_map(move |(name, tld, chosen, username)| {
            let name = format!("{name}{index}");
            let applications: Vec<_> = chosen
                .iter()
                .map(|app| {
                    let app = app.clone();
                    (application(&app), proptest::option::of(ssh()))
                        .prop_map(move |(a, ssh)| (app.clone(), a, ssh))
                })
                .collect();
            let domain = format!("{name}.{tld}");
            (Just(name), Just(domain), Just(username), applications)
        })
        .prop_map(|(name, domain, username, applications)| Operator {
            contact: format!("contact@{domain}"),
            admin: Admin {
                username,
                email: format!("admin@{domain}"),
            },
            machines: applications
                .iter()
                .filter_map(|(app, _, ssh)| {
                    Some((
                        app.clone(),
                        Machine {
                            ssh: Some(ssh.clone()?),
                            host: None,
                            network: None,
                        },
                    ))
                })
                .collect(),
            applications: applications
                .into_iter()
                .map(|(app, a, _)| (app, a))
                .collect(),
            name,
            domain,
        })
}

/// A Nix system name for `host_platform`.
fn platform() -> impl Strategy<Value = String> {
    proptest::sample::select(vec!["x86_64-linux", "aarch64-linux", "riscv64-linux"])
        .prop_map(str::to_owned)
}

fn runtime() -> impl Strategy<Value = Runtime> {
    prop_oneof![
        platform().prop_map(|host_platform| Runtime::Qemu(Qemu { host_platform })),
        (
            "[a-z]{1,8}",
            "[a-z0-9-]{1,8}",
            "[a-z]{1,8}",
            "vmbr[0-9]",
            secret("proxmox-api-token"),
            platform(),
            proptest::option::of(100u32..100_000),
        )
            .prop_map(
                |(host, node, storage, bridge, api_token, host_platform, first_vm_id)| {
                    Runtime::Proxmox(Proxmox {
                        api_url: format!("https://{host}.example:8006/api2/json"),
                        node: format!("n{node}"),
                        storage,
                        bridge,
                        api_token,
                        first_vm_id,
                        host_platform,
                    })
                },
            ),
        platform().prop_map(|host_platform| Runtime::BareMetal(BareMetal {
            hosts: BTreeMap::new(),
            host_platform,
        })),
    ]
}

/// Bare metal: one host per machine, placed by name; machines reach their hosts, not `ssh`.
fn place_on_hosts(mut spec: Spec) -> Spec {
    let Runtime::BareMetal(metal) = &mut spec.provider.runtime else {
        return spec;
    };
    let mut n = 0;
    let mut host = |hosts: &mut BTreeMap<String, Host>| {
        n += 1;
        let name = format!("metal{n}");
        hosts.insert(
            name.clone(),
            Host {
                ssh: format!("root@192.0.2.{n}"),
                hardware_config: format!("./hardware/metal{n}.nix"),
                // Both boot loaders, alternating.
                boot_loader: if n % 2 == 0 {
                    BootLoader::SystemdBoot
                } else {
                    BootLoader::Grub {
                        device: format!("/dev/disk/by-id/ata-disk{n}"),
                    }
                },
            },
        );
        name
    };
    for op in &mut spec.operators {
        op.machines.clear();
        for (app, a) in &op.applications {
            if a.enable {
                let name = host(&mut metal.hosts);
                op.machines.insert(
                    app.clone(),
                    Machine {
                        ssh: None,
                        host: Some(name),
                        network: None,
                    },
                );
            }
        }
    }
    if let Some(storage) = &mut spec.provider.object_storage {
        for node in storage.nodes.values_mut() {
            node.ssh = None;
            node.host = Some(host(&mut metal.hosts));
        }
    }
    // A bare-metal provider has at least one host.
    if metal.hosts.is_empty() {
        host(&mut metal.hosts);
    }
    spec
}

/// How one machine's network is drawn: DHCP, or static IPv4 and/or IPv6 with a prefix, maybe gateways, maybe its
/// own name servers, maybe an interface name.
#[derive(Debug, Clone, Copy)]
struct NetworkKind {
    dhcp: bool,
    v4: bool,
    v6: bool,
    prefix4: u8,
    prefix6: u8,
    gateway4: bool,
    gateway6: bool,
    name_servers: bool,
    interface: bool,
}

fn network_kind() -> impl Strategy<Value = NetworkKind> {
    (any::<[bool; 7]>(), 8u8..=30, 16u8..=127).prop_map(|(b, prefix4, prefix6)| NetworkKind {
        dhcp: b[0] && b[1],
        v4: b[2] || !b[3],
        v6: b[3],
        prefix4,
        prefix6,
        gateway4: b[4],
        gateway6: b[5],
        name_servers: b[6],
        interface: b[4] && b[6],
    })
}

/// The network of the `n`th machine drawn as `kind`: addresses unique per machine (`10.<n>.0.10`,
/// `2001:db8:<n>::10`), an IPv4 gateway inside the subnet (its first address, or the second when the first is the
/// machine's), an IPv6 gateway of the link (`fe80::1`).
fn network_of(n: usize, kind: NetworkKind) -> Network {
    if kind.dhcp {
        return Network {
            dhcp: true,
            interface: kind.interface.then(|| "eno1".to_owned()),
            ..Network::default()
        };
    }
    let address = std::net::Ipv4Addr::new(10, n as u8, 0, 10);
    let mask = u32::MAX << (32 - u32::from(kind.prefix4));
    let subnet = u32::from(address) & mask;
    let gateway = if subnet + 1 == u32::from(address) {
        subnet + 2
    } else {
        subnet + 1
    };
    Network {
        dhcp: false,
        ipv4: kind.v4.then(|| StaticAddress {
            address: format!("{address}/{}", kind.prefix4),
            gateway: kind
                .gateway4
                .then(|| std::net::Ipv4Addr::from(gateway).to_string()),
        }),
        ipv6: kind.v6.then(|| StaticAddress {
            address: format!("2001:db8:{n:x}::10/{}", kind.prefix6),
            gateway: kind.gateway6.then(|| "fe80::1".to_owned()),
        }),
        name_servers: if kind.name_servers {
            vec!["10.255.0.53".to_owned(), "2001:db8:ffff::53".to_owned()]
        } else {
            Vec::new()
        },
        interface: kind.interface.then(|| "enp3s0".to_owned()),
    }
}

/// Gives every machine of `spec` a network (each operator's enabled applications, each Garage node on a machine of
/// its own), drawn from `kinds` in turn.
fn give_networks(mut spec: Spec, kinds: &[NetworkKind]) -> Spec {
    let mut n = 0;
    let mut next = || {
        n += 1;
        network_of(n, kinds[n % kinds.len()])
    };
    for op in &mut spec.operators {
        let enabled: Vec<String> = op
            .applications
            .iter()
            .filter(|(_, a)| a.enable)
            .map(|(name, _)| name.clone())
            .collect();
        for app in enabled {
            op.machines.entry(app).or_default().network = Some(next());
        }
    }
    if let Some(storage) = &mut spec.provider.object_storage {
        for node in storage.nodes.values_mut().filter(|n| n.machine.is_none()) {
            node.network = Some(next());
        }
    }
    spec
}

fn spec() -> impl Strategy<Value = Spec> {
    let operators = (0usize..4).prop_flat_map(|n| (0..n).map(operator).collect::<Vec<_>>());
    let nodes = prop::collection::btree_map(
        name(),
        ("[a-z]{1,4}", 1u32..10_000, proptest::option::of(ssh())),
        1..4,
    );
    let storage =
        (nodes, "[a-z0-9-]{1,8}", secret("storage-rpc")).prop_flat_map(|(nodes, region, rpc)| {
            let count = nodes.len() as u8;
            (1..=count).prop_map(move |replication_factor| ObjectStorage {
                replication_factor,
                region: format!("r{region}"),
                nodes: nodes
                    .iter()
                    .map(|(n, (zone, capacity_gib, ssh))| {
                        (
                            n.clone(),
                            GarageNode {
                                zone: zone.clone(),
                                capacity_gib: *capacity_gib,
                                machine: None,
                                ssh: ssh.clone(),
                                host: None,
                                network: None,
                                rpc_address: None,
                                // A distinct id per node (its name in hex, padded), with its key file.
                                node_id: Some(format!(
                                    "{:0<64}",
                                    n.bytes().map(|b| format!("{b:02x}")).collect::<String>()
                                )),
                                secrets: Some(fedigen::model::GarageNodeSecrets {
                                    node_key: SecretRef::File(format!("/run/secrets/node-key-{n}")),
                                }),
                            },
                        )
                    })
                    .collect(),
                secrets: [("rpcSecret".to_owned(), rpc.clone())].into(),
            })
        });
    let limits = proptest::option::of(Just(Limits {
        per_machine: Resources {
            cores: 64,
            memory_mib: 1 << 20,
            disk_gib: 100_000,
        },
        per_operator: Resources {
            cores: 1024,
            memory_mib: 1 << 24,
            disk_gib: 1_000_000,
        },
    }));
    (
        name(),
        runtime(),
        proptest::option::of(Just(
            "https://acme-staging-v02.api.letsencrypt.org/directory".to_owned(),
        )),
        (secret("provider-smtp"), proptest::option::of(1u16..=65535), "[a-z]{1,8}"),
        storage,
        limits,
        operators,
        (
            prop::collection::vec(network_kind(), 1..6),
            any::<bool>(),
            any::<bool>(),
            secrets_backend(),
        ),
    )
        .prop_map(
            |(
                name,
                runtime,
                server,
                (password, port, user),
                storage,
                limits,
                operators,
                (kinds, resolvers, dns, secrets),
            )| {
                let domain = format!("{name}.example");
                let spec = place_on_hosts(Spec {
                    provider: Provider {
                        acme: Acme {
                            email: format!("hostmaster@{domain}"),
                            server: server.unwrap_or_else(|| model::LETS_ENCRYPT.to_owned()),
                            accept_terms: true,
                        },
                        smtp: Some(Smtp {
                            host: format!("smtp.{domain}"),
                            port: port.unwrap_or(model::SMTP_SUBMISSION_PORT),
                            user,
                            password,
                            from: format!("noreply@{domain}"),
                        }),
                        object_storage: Some(storage),
                        limits,
                        // With and without a deploy key (a real key; its private half was thrown away).
                        deploy_keys: if dns {
                            vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGPYcDdYNUeo+gCtrilY6ZJYNEo+iuRvUHrf1n4ON9sJ deployer@x".to_owned()]
                        } else {
                            Vec::new()
                        },
                        network: resolvers.then(|| model::ProviderNetwork {
                            name_servers: vec!["192.0.2.53".to_owned()],
                        }),
                        dns: dns.then(|| model::Dns {
                            name_servers: vec![
                                "ns1.dns.example".to_owned(),
                                "ns2.dns.example".to_owned(),
                            ],
                            hostmaster: format!("hostmaster@{domain}"),
                            ca: None,
                            // The SMTP relay is `smtp.<domain>`, in the provider's zone.
                            hosts: [("smtp".to_owned(), vec!["192.0.2.25".to_owned()])].into(),
                        }),
                        secrets,
                        name,
                        domain,
                        runtime,
                    },
                    operators,
                });
                give_networks(spec, &kinds)
            },
        )
}

fn load(document: &SpecDocument) -> Result<Spec, String> {
    model::from_document(document, catalog()).map_err(|r| r.render(false))
}

proptest! {
    #![proptest_config(Config { cases: 200, ..Config::default() })]

    #[test]
    fn json_round_trips(spec in spec()) {
        let text = serde_json::to_string_pretty(&model::to_json(&spec)).unwrap();
        let loaded = load(&SpecDocument::json("spec.json", &text)).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(loaded, spec);
    }

    #[test]
    fn toml_round_trips(spec in spec()) {
        let text = model::to_toml(&spec).map_err(TestCaseError::fail)?;
        let loaded = load(&SpecDocument::toml("spec.toml", &text)).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(loaded, spec);
    }
}

#[test]
fn nix_round_trips_through_the_real_evaluator() {
    let nix = Evaluator::locate().expect("these tests need Nix: run scripts/install-test-deps");
    let mut runner = TestRunner::new(Config::default());
    let strategy = spec();
    let specs: Vec<Spec> = (0..150)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    let sources: Vec<Source> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let expr = from_json(&model::to_json(spec), DataPolicy::default())
                .unwrap_or_else(|e| panic!("spec {i} cannot be Nix: {e:?}"));
            let name = format!("spec-{i}.nix");
            let text = emit_file(&name, &[], &expr, Verification::Syntax).unwrap();
            Source { name, text }
        })
        .collect();
    let values = nix.eval_json(&sources);
    let mut failures = Vec::new();
    for ((spec, source), value) in specs.iter().zip(&sources).zip(values) {
        let value = match value {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{}: {e}", source.name));
                continue;
            }
        };
        match load(&SpecDocument::from_nix_json(&source.name, &value)) {
            Ok(loaded) if &loaded == spec => {}
            Ok(loaded) => failures.push(format!(
                "{}: differs after Nix\n{loaded:#?}\n{spec:#?}\n{}",
                source.name, source.text
            )),
            Err(e) => failures.push(format!("{}: refused after Nix\n{e}", source.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {}:\n{}",
        failures.len(),
        specs.len(),
        failures.join("\n")
    );
}

#[test]
fn full_precision_floats_round_trip_through_toml_and_json() {
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spec/valid/bare-metal.toml"),
    )
    .unwrap();
    let mut spec = load(&SpecDocument::toml("bare-metal.toml", &base)).unwrap();
    for f in [0.1, 1e-300, 123_456_789.123_456_79, f64::MAX, -0.0, 5e-324] {
        let sink = spec.operators[0]
            .applications
            .get_mut("kitchen-sink")
            .unwrap();
        sink.settings
            .insert("ratio".into(), Value::Number(Number::from_f64(f).unwrap()));
        let toml = model::to_toml(&spec).unwrap();
        assert_eq!(
            load(&SpecDocument::toml("t.toml", &toml)).unwrap(),
            spec,
            "{f}"
        );
        let json = model::to_json(&spec).to_string();
        assert_eq!(
            load(&SpecDocument::json("t.json", &json)).unwrap(),
            spec,
            "{f}"
        );
    }
}

/// Names an application may have: plain ones, and ones that are also names fedigen generates or binds (the
/// shared `fediversity.*` settings, a Garage node's prefix, Nix keywords, files of deployments/).
fn application_names() -> impl Strategy<Value = Vec<String>> {
    let name = prop_oneof![
        2 => proptest::sample::select(vec![
            "domain", "acme", "smtp", "s3", "enable", "default", "nixops4", "proxmox", "host-keys", "provider",
            "garage-cluster", "let",
            "rec", "a", "a-b", "b", "sink", "kitchen",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z][a-z0-9-]{0,6}[a-z0-9]",
    ];
    prop::collection::btree_set(
        name.prop_filter("the Garage manifest keeps its name", |n| {
            n != model::OBJECT_STORAGE_APPLICATION
        }),
        5,
    )
    .prop_map(|names| names.into_iter().collect())
}

/// A specification whose applications are renamed (with a catalog of the fixture manifests under those names),
/// and where, now and then, an operator is named `garage` and a Garage node after one of its applications.
fn renamed_spec() -> impl Strategy<Value = (Spec, Catalog)> {
    (spec(), application_names(), any::<bool>()).prop_map(|(mut spec, names, collide)| {
        let old: Vec<String> = catalog()
            .manifests
            .keys()
            .filter(|n| *n != model::OBJECT_STORAGE_APPLICATION)
            .cloned()
            .collect();
        let rename: BTreeMap<String, String> = old.into_iter().zip(names).collect();
        let new_name = |n: &String| rename.get(n).cloned().unwrap_or_else(|| n.clone());
        let renamed = Catalog::from_manifests(catalog().manifests.values().map(|m| {
            let mut m = m.clone();
            m.application.name = new_name(&m.application.name);
            m
        }));
        for operator in &mut spec.operators {
            operator.applications = std::mem::take(&mut operator.applications)
                .into_iter()
                .map(|(n, a)| (new_name(&n), a))
                .collect();
            operator.machines = std::mem::take(&mut operator.machines)
                .into_iter()
                .map(|(n, m)| (new_name(&n), m))
                .collect();
        }
        if collide && let Some(operator) = spec.operators.first_mut() {
            operator.name = model::OBJECT_STORAGE_APPLICATION.to_owned();
            if let (Some(app), Some(storage)) = (
                operator.applications.keys().next().cloned(),
                spec.provider.object_storage.as_mut(),
            ) && let Some(node) = storage.nodes.values().next().cloned()
            {
                storage.nodes.insert(app, node);
                storage.replication_factor = 1;
            }
        }
        (spec, renamed)
    })
}

/// For random specifications and application names: what validation accepts, `deploy::plan` writes, and every file
/// it writes is accepted by Nix's own parser (`nix-instantiate --parse`), which refuses attributes defined twice.
/// Validation must refuse what would collide; it must not refuse everything either.
#[test]
fn every_deployment_of_a_valid_specification_parses_with_nix() {
    let nix = Evaluator::locate().expect("these tests need Nix: run scripts/install-test-deps");
    let mut runner = TestRunner::new(Config::default());
    let strategy = renamed_spec();
    let mut sources = Vec::new();
    let mut failures = Vec::new();
    let (mut valid, mut refused) = (0, 0);
    for i in 0..120 {
        let (spec, catalog) = strategy.new_tree(&mut runner).unwrap().current();
        let text = serde_json::to_string_pretty(&model::to_json(&spec)).unwrap();
        let document = SpecDocument::json(&format!("spec-{i}.json"), &text);
        if model::from_document(&document, &catalog).is_err() {
            refused += 1;
            continue;
        }
        valid += 1;
        match fedigen::deploy::plan(&spec, &catalog, &format!("spec-{i}")) {
            // The Nix files; OpenTofu's JSON (deployments/tofu/) is checked by the contract and tests/provision.rs,
            // zone files (DNS master files) by `dns_zones_parse_with_named_checkzone`.
            Ok(files) => sources.extend(
                files
                    .into_iter()
                    .filter(|(path, _)| path.extension().is_some_and(|e| e == "nix"))
                    .map(|(path, text)| Source {
                        name: format!("spec-{i}/{}", path.display()),
                        text,
                    }),
            ),
            Err(e) => failures.push(format!("spec-{i}: valid, but not deployable: {e}\n{text}")),
        }
    }
    for (source, verdict) in sources.iter().zip(nix.parse(&sources)) {
        if let Err(e) = verdict {
            failures.push(format!(
                "{}: Nix refuses it: {e}\n{}",
                source.name, source.text
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        valid >= 30 && refused >= 10,
        "{valid} valid and {refused} refused of 120: the generator no longer covers both"
    );
}

mod contract;

/// The repository (the workspace root).
fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The example specification, its machines and the files `deploy::plan` writes for it.
fn example_plan() -> (
    Spec,
    Vec<fedigen::deploy::PlannedMachine>,
    BTreeMap<PathBuf, String>,
) {
    let repo = repository();
    let (spec, catalog) =
        fedigen::deploy::load_spec(repo, &repo.join("examples/provider.toml")).unwrap();
    let machines = fedigen::deploy::machines(&spec, &catalog);
    // With the example's host keys, as `generate` plans it: the NixOps4 deployment has its members.
    let kept = fedigen::deploy::Kept {
        host_keys: fedigen::deploy::host_keys::HostKeys::load(
            &repo.join("examples/provider.toml"),
            &machines,
        )
        .unwrap(),
        ..Default::default()
    };
    let files =
        fedigen::deploy::plan_keeping(&spec, &catalog, "examples/provider.toml", &kept).unwrap();
    (spec, machines, files)
}

/// Every machine of the example specification keeps the machine contract (root file system, boot loader,
/// `nixpkgs.hostPlatform`, unique names), read from the files `deploy::plan` writes.
#[test]
fn every_machine_of_the_example_keeps_the_contract() {
    let (spec, machines, files) = example_plan();
    assert!(machines.len() >= 5, "the example has its machines");
    let violations = contract::violations(&machines, &files, spec.provider.runtime.host_platform());
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    let repo = repository();
    let (_, catalog) =
        fedigen::deploy::load_spec(repo, &repo.join("examples/provider.toml")).unwrap();
    let violations = contract::secret_violations(&machines, &files, &catalog);
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    let violations = contract::storage_violations(&machines, &files);
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// The object storage contract can fail: a second node also provisioning, an application's key file declared
/// with another owner than its manifest's reader, and the provisioning node's copy of a key not declared are
/// each reported.
#[test]
fn the_storage_contract_finds_a_second_writer_and_misdeclared_keys() {
    let (_, machines, files) = example_plan();
    let repo = repository();
    let (_, catalog) =
        fedigen::deploy::load_spec(repo, &repo.join("examples/provider.toml")).unwrap();
    let ams2 = PathBuf::from("deployments/garage/ams2.nix");
    let mut two = files.clone();
    let text = two[&ams2].replace(
        "    domain = \"nordwind-hosting.example\";\n",
        "    domain = \"nordwind-hosting.example\";\n    garage.provision.enable = true;\n",
    );
    two.insert(ams2, text);
    assert_eq!(
        contract::storage_violations(&machines, &two),
        [
            "exactly one machine must run fedigen-storage-apply, found [\"garage-ams1\", \"garage-ams2\"]"
        ]
    );
    let mastodon = PathBuf::from("deployments/amstelland/mastodon.nix");
    let mut owned = files.clone();
    let text = owned[&mastodon].replace(
        "mastodon-s3-key = {\n        path = \"/run/secrets/mastodon-s3-key\";\n        owner = \"root\";",
        "mastodon-s3-key = {\n        path = \"/run/secrets/mastodon-s3-key\";\n        owner = \"mastodon\";",
    );
    assert_ne!(text, owned[&mastodon], "the test edits the key's owner");
    owned.insert(mastodon, text);
    assert_eq!(
        contract::secret_violations(&machines, &owned, &catalog),
        [
            "amstelland-mastodon: the secret mastodon-s3-key (mastodon's S3 key) is owned by mastodon:root, but its reader is root:root"
        ]
    );
    let ams1 = PathBuf::from("deployments/garage/ams1.nix");
    let mut undeclared = files.clone();
    let text = undeclared[&ams1].replace(
        "/run/secrets/garage-s3-key-amstelland-pixelfed",
        "/run/secrets/elsewhere",
    );
    undeclared.insert(ams1, text);
    let found = contract::secret_violations(&machines, &undeclared, &catalog);
    assert!(
        found.iter().any(|f| f.contains("the S3 key of \"amstelland/pixelfed\" (/run/secrets/garage-s3-key-amstelland-pixelfed) is not declared")),
        "{found:?}"
    );
}

/// The secrets contract can fail: Synapse's secrets file root-owned (as a provider's tooling placed every file
/// before readers were declared: unreadable under the unit's PrivateUsers), a file passed to a service but not
/// declared (the old machines declared none), and two secrets sharing one file are each reported.
#[test]
fn the_secrets_contract_finds_wrong_owners_and_undeclared_files() {
    let (_, machines, files) = example_plan();
    let repo = repository();
    let (_, catalog) =
        fedigen::deploy::load_spec(repo, &repo.join("examples/provider.toml")).unwrap();
    let synapse = PathBuf::from("deployments/digitalevrijheid/matrix-synapse.nix");
    let mut root_owned = files.clone();
    let text = root_owned[&synapse]
        .replace("owner = \"matrix-synapse\";", "owner = \"root\";")
        .replace("group = \"matrix-synapse\";", "group = \"root\";");
    root_owned.insert(synapse.clone(), text);
    assert_eq!(
        contract::secret_violations(&machines, &root_owned, &catalog),
        [
            "digitalevrijheid-matrix-synapse: the secret matrix-synapse-synapseSecrets (matrix-synapse secret synapseSecrets) is owned by root:root, but its reader is matrix-synapse:matrix-synapse",
            "digitalevrijheid-matrix-synapse: the secret matrix-synapse-smtp-password (matrix-synapse's SMTP password) is owned by root:root, but its reader is matrix-synapse:matrix-synapse"
        ]
    );
    let mastodon = PathBuf::from("deployments/amstelland/mastodon.nix");
    let mut undeclared = files.clone();
    let text = undeclared[&mastodon].replace("mastodon-smtp-password = {", "other = {");
    let text = text.replace(
        "path = \"/run/secrets/mastodon-smtp-password\";",
        "path = \"/run/secrets/other\";",
    );
    undeclared.insert(mastodon.clone(), text);
    let found = contract::secret_violations(&machines, &undeclared, &catalog);
    assert_eq!(
        found,
        [
            "amstelland-mastodon: the secret other (/run/secrets/other) is declared but no service is given it",
            "amstelland-mastodon: mastodon's SMTP password (/run/secrets/mastodon-smtp-password) is not declared in fediversity.secrets",
        ]
    );
    let peertube = PathBuf::from("deployments/zeeinstituut/peertube.nix");
    let mut shared = files.clone();
    let text = shared[&peertube].replace(
        "/run/secrets/peertube-smtp-password",
        "/run/secrets/zeeinstituut-peertube",
    );
    shared.insert(peertube, text);
    let found = contract::secret_violations(&machines, &shared, &catalog);
    assert!(
        found.contains(&"zeeinstituut-peertube: the secrets peertube-peertubeSecret and peertube-smtp-password share the file /run/secrets/zeeinstituut-peertube".to_owned()),
        "{found:?}"
    );
}

/// The contract check can fail: a base without `nixpkgs.hostPlatform`, a machine file without its base, and two
/// machines with one name are each reported.
#[test]
fn the_machine_contract_finds_what_is_missing() {
    let (spec, mut machines, files) = example_plan();
    let platform = spec.provider.runtime.host_platform();
    let base = PathBuf::from("deployments/base.nix");
    let mut no_platform = files.clone();
    let text = no_platform[&base].replace("nixpkgs.hostPlatform = \"x86_64-linux\";", "");
    no_platform.insert(base.clone(), text);
    let found = contract::violations(&machines, &no_platform, platform);
    assert_eq!(found.len(), machines.len(), "{found:?}");
    assert!(
        found
            .iter()
            .all(|v| v.contains("nixpkgs.hostPlatform is unset"))
    );
    let mut no_base = files.clone();
    let first = PathBuf::from("deployments").join(&machines[0].file);
    let text = no_base[&first].replace("../base.nix", "");
    no_base.insert(first, text);
    let found = contract::violations(&machines, &no_base, platform);
    let name = machines[0].name.clone();
    assert_eq!(
        found,
        [
            format!("{name}: no root file system (fileSystems.\"/\")"),
            format!("{name}: no boot loader (boot.loader.grub.device or systemd-boot)"),
            format!("{name}: nixpkgs.hostPlatform is unset, not \"{platform}\""),
        ]
    );
    // Networking: a machine file without its network block, a second machine with the first one's address, a
    // deployment target that is a bare host name (what the old code wrote when a specification gave none).
    let mut no_network = files.clone();
    let first = PathBuf::from("deployments").join(&machines[0].file);
    let text = no_network[&first].replace("systemd.network.networks", "systemd.network.other");
    no_network.insert(first, text);
    assert_eq!(
        contract::violations(&machines, &no_network, platform),
        [format!(
            "{name}: neither static addresses nor DHCP said explicitly in systemd-networkd (10-uplink)"
        )]
    );
    let mut same_address = files.clone();
    let second = PathBuf::from("deployments").join(&machines[1].file);
    let address = machines[0].deploy_target().host;
    let own = machines[1].deploy_target().host;
    let text = same_address[&second].replace(&format!("\"{own}/"), &format!("\"{address}/"));
    same_address.insert(second, text);
    assert_eq!(
        contract::violations(&machines, &same_address, platform),
        [format!(
            "{}: the address {address} is also {name}'s",
            machines[1].name
        )]
    );
    let mut bare = files.clone();
    let nixops4 = PathBuf::from("deployments/nixops4.nix");
    let text = bare[&nixops4].replace(
        &format!("ssh.host = \"{address}\""),
        "ssh.host = \"mastodon\"",
    );
    bare.insert(nixops4, text);
    assert_eq!(
        contract::violations(&machines, &bare, platform),
        ["deployments/nixops4.nix: ssh.host mastodon is a bare host name"]
    );
    machines.push(machines[0].clone());
    let found = contract::violations(&machines, &files, platform);
    assert_eq!(
        found[0],
        format!("two machines are named {name}"),
        "{found:?}"
    );
    assert!(
        found[1..]
            .iter()
            .all(|v| v.starts_with(&format!("{name}: the address "))),
        "{found:?}"
    );
}

/// The provisioning part of the contract can fail: a machine without a VM (the Garage nodes, as
/// `deployments/proxmox.nix` once left them out), a VM whose cores differ from the machine's `proxmox.qemuConf`,
/// a VM for no machine and two VMs with one id are each reported.
#[test]
fn the_machine_contract_finds_a_missing_or_disagreeing_vm() {
    let (spec, machines, files) = example_plan();
    let platform = spec.provider.runtime.host_platform();
    let main = PathBuf::from("deployments/tofu/main.tf.json");
    let mut config: serde_json::Value = serde_json::from_str(&files[&main]).unwrap();
    let vms = config["resource"]["proxmox_virtual_environment_vm"]
        .as_object_mut()
        .unwrap();
    vms.remove("garage-ams1");
    vms["amstelland-mastodon"]["cpu"]["cores"] = 3.into();
    let mut stray = vms["amstelland-pixelfed"].clone();
    stray["name"] = "stray".into();
    vms.insert("stray".into(), stray);
    let mut changed = files.clone();
    changed.insert(main.clone(), config.to_string());
    let found = contract::violations(&machines, &changed, platform);
    assert_eq!(
        found,
        [
            "amstelland-mastodon: the VM's cpu.cores is 3, proxmox.qemuConf.cores is 4",
            "garage-ams1: no VM in deployments/tofu/main.tf.json",
            "deployments/tofu/main.tf.json: a VM for no machine: stray",
            "deployments/tofu/main.tf.json: amstelland-pixelfed and stray have one VM id, 101",
        ]
    );
    let mut gone = files.clone();
    gone.remove(&main);
    let found = contract::violations(&machines, &gone, platform);
    assert_eq!(found.len(), machines.len(), "{found:?}");
}

/// For random valid specifications of every backend: every planned machine keeps the contract.
#[test]
fn every_machine_of_a_valid_specification_keeps_the_contract() {
    let mut runner = TestRunner::new(Config::default());
    let strategy = renamed_spec();
    let (mut valid, mut failures) = (0, Vec::new());
    let mut backends = BTreeSet::new();
    let mut sops_specs = 0;
    for i in 0..120 {
        let (spec, catalog) = strategy.new_tree(&mut runner).unwrap().current();
        let text = serde_json::to_string_pretty(&model::to_json(&spec)).unwrap();
        let document = SpecDocument::json(&format!("spec-{i}.json"), &text);
        if model::from_document(&document, &catalog).is_err() {
            continue;
        }
        valid += 1;
        let machines = fedigen::deploy::machines(&spec, &catalog);
        if !machines.is_empty() {
            backends.insert(match &spec.provider.runtime {
                Runtime::Qemu(_) => "qemu",
                Runtime::Proxmox(_) => "proxmox",
                Runtime::BareMetal(_) => "bare-metal",
            });
        }
        match fedigen::deploy::plan(&spec, &catalog, &format!("specs/spec-{i}.json")) {
            Ok(files) => {
                let mut found =
                    contract::violations(&machines, &files, spec.provider.runtime.host_platform());
                found.extend(contract::secret_violations(&machines, &files, &catalog));
                if matches!(spec.provider.secrets, Some(model::SecretsBackend::Sops(_))) {
                    sops_specs += 1;
                    found.extend(contract::sops_violations(
                        &spec, &machines, &files, &catalog,
                    ));
                }
                found.extend(contract::storage_violations(&machines, &files));
                if !found.is_empty() {
                    failures.push(format!("spec-{i}:\n{}\n{text}", found.join("\n")));
                }
            }
            Err(e) => failures.push(format!("spec-{i}: valid, but not deployable: {e}\n{text}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(valid >= 30, "{valid} valid of 120");
    assert!(
        sops_specs >= 5,
        "{sops_specs} of {valid} valid specifications with sops: too few to say"
    );
    assert_eq!(
        backends.len(),
        3,
        "every backend has machines in some specification"
    );
}

/// The network block the specification gives a planned machine, read from the specification itself.
fn written_network<'a>(
    spec: &'a Spec,
    machine: &fedigen::deploy::PlannedMachine,
) -> Option<&'a Network> {
    match &machine.role {
        fedigen::deploy::MachineRole::Application {
            operator,
            application,
        } => spec.operators[*operator]
            .machines
            .get(application)?
            .network
            .as_ref(),
        fedigen::deploy::MachineRole::GarageNode(node) => spec
            .provider
            .object_storage
            .as_ref()?
            .nodes
            .get(node)?
            .network
            .as_ref(),
    }
}

/// `address/prefix` as a canonical address and prefix, for comparing what was written with what Nix evaluates.
fn canonical(text: &str) -> (std::net::IpAddr, u8) {
    let (ip, prefix) = text.split_once('/').expect("address/prefix");
    (ip.parse().unwrap(), prefix.parse().unwrap())
}

/// For random valid specifications: each machine's network, as the real Nix evaluates the emitted module, is the
/// network the specification wrote: the same addresses and prefixes, gateways and name servers (the machine's, or
/// the provider's), DHCP exactly when said, networkd on and global DHCP off, the interface matched by name when
/// given and by type otherwise.
#[test]
fn networks_reach_nixos_as_written() {
    let nix = Evaluator::locate().expect("these tests need Nix: run scripts/install-test-deps");
    let mut runner = TestRunner::new(Config::default());
    let strategy = renamed_spec();
    let mut sources = Vec::new();
    let mut expected = Vec::new();
    for i in 0..80 {
        let (spec, catalog) = strategy.new_tree(&mut runner).unwrap().current();
        let text = serde_json::to_string_pretty(&model::to_json(&spec)).unwrap();
        if model::from_document(&SpecDocument::json("spec.json", &text), &catalog).is_err() {
            continue;
        }
        let files = fedigen::deploy::plan(&spec, &catalog, "spec.json").unwrap();
        for machine in fedigen::deploy::machines(&spec, &catalog) {
            let network = written_network(&spec, &machine).expect("a valid machine has a network");
            let module = &files[&PathBuf::from("deployments").join(&machine.file)];
            sources.push(Source {
                name: format!("spec-{i}/{}", machine.file),
                text: format!(
                    "let m = (\n{module}\n); in {{ uplink = m.systemd.network.networks.\"10-uplink\"; \
                     networkd = m.networking.useNetworkd; dhcp = m.networking.useDHCP; }}"
                ),
            });
            let addresses: BTreeSet<(std::net::IpAddr, u8)> = [&network.ipv4, &network.ipv6]
                .into_iter()
                .flatten()
                .map(|a| canonical(&a.address))
                .collect();
            let gateways: Vec<std::net::IpAddr> = [&network.ipv4, &network.ipv6]
                .into_iter()
                .flatten()
                .filter_map(|a| a.gateway.as_ref()?.parse().ok())
                .collect();
            let name_servers = if network.name_servers.is_empty() {
                spec.provider
                    .network
                    .as_ref()
                    .map(|n| n.name_servers.clone())
                    .unwrap_or_default()
            } else {
                network.name_servers.clone()
            };
            expected.push((
                machine.name.clone(),
                network.clone(),
                addresses,
                gateways,
                name_servers,
            ));
        }
    }
    assert!(expected.len() >= 50, "only {} machines", expected.len());
    let mut failures = Vec::new();
    for ((source, result), (name, network, addresses, gateways, name_servers)) in
        sources.iter().zip(nix.eval_json(&sources)).zip(&expected)
    {
        let value = match result {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{}: {e}", source.name));
                continue;
            }
        };
        let uplink = &value["uplink"];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let got: BTreeSet<_> = strings(&uplink["address"])
            .iter()
            .map(|a| canonical(a))
            .collect();
        let got_gateways: Vec<std::net::IpAddr> = strings(&uplink["gateway"])
            .iter()
            .map(|g| g.parse().unwrap())
            .collect();
        let matched = match &network.interface {
            Some(interface) => uplink["matchConfig"]["Name"] == Value::String(interface.clone()),
            None => uplink["matchConfig"]["Type"] == "ether",
        };
        let dhcp = uplink["networkConfig"]["DHCP"] == "yes";
        if got != *addresses
            || got_gateways != *gateways
            || strings(&uplink["dns"]) != *name_servers
            || dhcp != network.dhcp
            || !matched
            || value["networkd"] != true
            || value["dhcp"] != false
        {
            failures.push(format!(
                "{name} ({}): wrote {network:?}, Nix evaluates {value}",
                source.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The address records of a zone file: (fully qualified owner, address), read line by line (the generated files
/// write one record a line, owners relative to `$ORIGIN`).
fn address_records(text: &str) -> Vec<(String, std::net::IpAddr)> {
    let origin = text
        .lines()
        .find_map(|l| l.strip_prefix("$ORIGIN "))
        .expect("$ORIGIN")
        .trim_end_matches('.')
        .to_owned();
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [owner, "IN", "A" | "AAAA", address] => {
                    let name = if *owner == "@" {
                        origin.clone()
                    } else {
                        format!("{owner}.{origin}")
                    };
                    Some((name, address.parse().expect("an address")))
                }
                _ => None,
            }
        })
        .collect()
}

/// Checks the zone files of one plan: BIND's `named-checkzone` loads each (`-k fail -i full`: bad names and
/// integrity problems are errors); every address record points at a planned machine's static address; every
/// application host and every machine's own name whose machine has a static address gets exactly that
/// machine's addresses.
fn zone_problems(spec: &Spec, catalog: &Catalog, files: &BTreeMap<PathBuf, String>) -> Vec<String> {
    let mut problems = Vec::new();
    let zones: Vec<(&PathBuf, &String)> = files
        .iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "zone"))
        .collect();
    if spec.provider.dns.is_none() {
        if !zones.is_empty() {
            problems.push("zone files without provider.dns".to_owned());
        }
        return problems;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut records: BTreeMap<String, BTreeSet<std::net::IpAddr>> = BTreeMap::new();
    for (path, text) in &zones {
        let zone = path.file_stem().unwrap().to_str().unwrap();
        let file = dir.path().join(path.file_name().unwrap());
        std::fs::write(&file, text).unwrap();
        let out = std::process::Command::new("named-checkzone")
            .args(["-q", "-k", "fail", "-i", "full", zone])
            .arg(&file)
            .output()
            .expect("named-checkzone (bind9-utils): run scripts/install-test-deps");
        if !out.status.success() {
            let again = std::process::Command::new("named-checkzone")
                .args(["-k", "fail", "-i", "full", zone])
                .arg(&file)
                .output()
                .unwrap();
            problems.push(format!(
                "{}: named-checkzone refuses it: {}\n{text}",
                path.display(),
                String::from_utf8_lossy(&again.stdout)
            ));
        }
        for (name, address) in address_records(text) {
            records.entry(name).or_default().insert(address);
        }
    }
    let machines = fedigen::deploy::machines(spec, catalog);
    let addresses_of = |name: &str| -> BTreeSet<std::net::IpAddr> {
        machines
            .iter()
            .filter(|m| m.name == name)
            .flat_map(|m| written_network(spec, m).into_iter())
            .flat_map(|n| [&n.ipv4, &n.ipv6])
            .flatten()
            .map(|a| canonical(&a.address).0)
            .collect()
    };
    let all: BTreeSet<std::net::IpAddr> = machines
        .iter()
        .flat_map(|m| addresses_of(&m.name))
        .collect();
    // The provider's own hosts (`provider.dns.hosts`: the SMTP relay, the Proxmox API) have exactly the
    // addresses the specification gives them; every other record is a machine's.
    let provider_hosts: BTreeMap<String, BTreeSet<std::net::IpAddr>> = spec
        .provider
        .dns
        .iter()
        .flat_map(|d| &d.hosts)
        .map(|(label, addresses)| {
            (
                format!("{label}.{}", spec.provider.domain),
                addresses.iter().map(|a| a.parse().unwrap()).collect(),
            )
        })
        .collect();
    for (name, addresses) in &records {
        if let Some(given) = provider_hosts.get(name) {
            if given != addresses {
                problems.push(format!(
                    "{name} has records {addresses:?}, the specification gives {given:?}"
                ));
            }
            continue;
        }
        for address in addresses.difference(&all) {
            problems.push(format!("{name} points at {address}, which no machine has"));
        }
    }
    for host in provider_hosts.keys() {
        if !records.contains_key(host) {
            problems.push(format!("{host} (provider.dns.hosts) has no record"));
        }
    }
    let mut hosts: Vec<(String, String)> = machines
        .iter()
        .map(|m| (format!("{}.{}", m.name, m.domain), m.name.clone()))
        .collect();
    for op in &spec.operators {
        for (app, application) in &op.applications {
            if let (true, Some(manifest)) = (application.enable, catalog.manifests.get(app)) {
                hosts.push((op.host_name(app, manifest), op.machine_name(app)));
            }
        }
    }
    for (host, machine) in hosts {
        let want = addresses_of(&machine);
        let got = records.get(&host).cloned().unwrap_or_default();
        if got != want {
            problems.push(format!(
                "{host} has records {got:?}, its machine {machine} has {want:?}"
            ));
        }
    }
    problems
}

/// The example's zone files load in BIND and hold every host: one per operator domain and the provider's.
#[test]
fn the_example_zones_load_and_hold_every_host() {
    let (spec, machines, files) = example_plan();
    let catalog = Catalog::load(&repository().join("templates")).unwrap();
    let zones = files
        .keys()
        .filter(|p| p.starts_with("deployments/dns"))
        .count();
    assert_eq!(zones, spec.operators.len() + 1);
    assert!(machines.iter().all(|m| written_network(&spec, m).is_some()));
    let problems = zone_problems(&spec, &catalog, &files);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// For random valid specifications with DNS: every zone file loads in BIND, and its records are the machines'
/// addresses, for every application host and machine name.
#[test]
fn generated_zones_load_and_point_at_their_machines() {
    let mut runner = TestRunner::new(Config::default());
    let strategy = renamed_spec();
    let (mut checked, mut problems) = (0, Vec::new());
    for i in 0..80 {
        let (spec, catalog) = strategy.new_tree(&mut runner).unwrap().current();
        let text = serde_json::to_string_pretty(&model::to_json(&spec)).unwrap();
        if spec.provider.dns.is_none()
            || model::from_document(&SpecDocument::json("spec.json", &text), &catalog).is_err()
        {
            continue;
        }
        checked += 1;
        let files = fedigen::deploy::plan(&spec, &catalog, "spec.json").unwrap();
        problems.extend(
            zone_problems(&spec, &catalog, &files)
                .into_iter()
                .map(|p| format!("spec-{i}: {p}")),
        );
    }
    assert!(checked >= 15, "only {checked} specifications with DNS");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
