//! Cross-checks that need the whole typed model: uniqueness, colliding host names and ports, resources within
//! the provider's limits, and references between operators' machines, bare-metal hosts and Garage nodes.
//!
//! Placement rule (documented in ARCHITECTURE.md): every enabled application gets its own machine,
//! `<operator>-<application>`. A Garage node runs on its own machine `garage-<node>`, or shares one
//! application machine (`machine = "<operator>-<application>"`), which is where ports can collide: the node's
//! ports (from the Garage manifest) must not be the application's, and two nodes never share a machine.

use std::collections::BTreeMap;

use super::diagnostic::Diagnostic;
use super::path::FieldPath;
use super::shape::suggest;
use super::{Catalog, OBJECT_STORAGE_APPLICATION, Resources, Runtime, Spec};
use crate::deploy::{self, Origin};
use crate::manifest::Manifest;

/// Every cross-check problem of a specification whose fields are individually valid.
pub fn check(spec: &Spec, catalog: &Catalog) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    unique_operators(spec, &mut out);
    generated_names(spec, catalog, &mut out);
    resources(spec, catalog, &mut out);
    needs(spec, catalog, &mut out);
    placement(spec, catalog, &mut out);
    object_storage(spec, catalog, &mut out);
    garage_disks(spec, catalog, &mut out);
    secret_files(spec, catalog, &mut out);
    deploy_keys(spec, &mut out);
    deploy::sops::check(spec, catalog, &mut out);
    super::network_check::check(spec, catalog, &mut out);
    out
}

/// The files a valid specification names beside itself that are missing: each bare-metal host's
/// `hardware_config` and the sops backend's `sops_file`, relative to `spec_dir` (the specification file's folder). Apart from [`check`], which
/// needs no file system (the panel checks specifications that are not files).
pub(crate) fn files(spec: &Spec, spec_dir: &std::path::Path) -> Vec<Diagnostic> {
    let mut out = sops_file(spec, spec_dir);
    let Runtime::BareMetal(bare) = &spec.provider.runtime else {
        return out;
    };
    out.extend(bare.hosts
        .iter()
        .filter(|(_, host)| !spec_dir.join(&host.hardware_config).is_file())
        .map(|(name, host)| {
            Diagnostic::new(
                FieldPath::of(&["provider", "runtime", "hosts", name, "hardware_config"]),
                format!(
                    "the hardware configuration `{}` of host `{name}` does not exist",
                    host.hardware_config
                ),
                "no such file",
            )
            .hint(format!(
                "the path is relative to the specification's folder ({}): run `nixos-generate-config \
                 --show-hardware-config` on the host, commit its output in the repository there",
                if spec_dir.as_os_str().is_empty() {
                    ".".to_owned()
                } else {
                    spec_dir.display().to_string()
                }
            ))
        }));
    out
}

/// The sops file of the sops-nix backend, when it is missing beside the specification (`spec_dir`).
fn sops_file(spec: &Spec, spec_dir: &std::path::Path) -> Vec<Diagnostic> {
    let Some(sops) = deploy::sops::sops(spec) else {
        return Vec::new();
    };
    if spec_dir.join(&sops.sops_file).is_file() {
        return Vec::new();
    }
    vec![
        Diagnostic::new(
            FieldPath::of(&["provider", "secrets", "sops_file"]),
            format!("the sops file `{}` does not exist", sops.sops_file),
            "no such file",
        )
        .hint(format!(
            "the path is relative to the specification's folder ({}): create it with `sops {}` (README, \"Placing \
             secrets\") and commit it; it holds only encrypted values",
            if spec_dir.as_os_str().is_empty() {
                ".".to_owned()
            } else {
                spec_dir.display().to_string()
            },
            sops.sops_file
        )),
    ]
}

fn operator_path(i: usize) -> FieldPath {
    FieldPath::of(&["operators"]).index(i)
}

fn app_path(i: usize, app: &str) -> FieldPath {
    operator_path(i).key("applications").key(app)
}

/// The enabled applications of each operator that have a manifest, with it.
fn enabled<'a>(
    spec: &'a Spec,
    catalog: &'a Catalog,
) -> impl Iterator<
    Item = (
        usize,
        &'a super::Operator,
        &'a str,
        &'a super::OperatorApplication,
        &'a Manifest,
    ),
> {
    spec.operators.iter().enumerate().flat_map(move |(i, op)| {
        op.applications.iter().filter_map(move |(name, app)| {
            let manifest = catalog.manifests.get(name)?;
            app.enable.then_some((i, op, name.as_str(), app, manifest))
        })
    })
}

fn unique_operators(spec: &Spec, out: &mut Vec<Diagnostic>) {
    for (field, what, why) in [
        (
            "name",
            "operator name",
            "operator names are unique: they name machines",
        ),
        ("domain", "domain", "each operator has a domain of its own"),
    ] {
        let mut first: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, op) in spec.operators.iter().enumerate() {
            let value = if field == "name" {
                &op.name
            } else {
                &op.domain
            };
            if let Some(&j) = first.get(value.as_str()) {
                out.push(
                    Diagnostic::new(
                        operator_path(i).key(field),
                        format!("the {what} `{value}` is already taken by operators[{j}]"),
                        "used again here",
                    )
                    .related(operator_path(j).key(field), "first used here")
                    .hint(why),
                );
            } else {
                first.insert(value, i);
            }
        }
    }
}

/// Where in the specification a generated name comes from, and how to call that in a message.
fn origin(spec: &Spec, origin: &Origin) -> (FieldPath, String) {
    let operator = |i: usize| spec.operators.get(i).map_or("", |o| o.name.as_str());
    match origin {
        Origin::Application {
            operator: i,
            application,
        } => (
            app_path(*i, application),
            format!("`{application}` of operator `{}`", operator(*i)),
        ),
        Origin::GarageNode(node) => (
            FieldPath::of(&["provider", "object_storage", "nodes", node]),
            format!("Garage node `{node}`"),
        ),
        Origin::OperatorDomain(i) => (
            operator_path(*i).key("domain"),
            format!("the domain of operator `{}`", operator(*i)),
        ),
        Origin::S3Endpoint => (
            FieldPath::of(&["provider", "domain"]),
            "the provider's S3 endpoint".to_owned(),
        ),
        Origin::S3WebEndpoint => (
            FieldPath::of(&["provider", "domain"]),
            "the provider's public media host".to_owned(),
        ),
    }
}

/// Two parts of the specification that would get one generated name: machines (their names are attribute names
/// in `deployments/default.nix`, `nixops4.nix` and `tofu/main.tf.json`, and their module files), host names (operator
/// domains, application hosts, the provider's S3 and S3 web endpoints and the names Garage serves below them,
/// machines' own names) and the names a machine module binds. The names are the ones [`crate::deploy`] writes:
/// both read [`deploy::machines`], [`deploy::host_names`], [`deploy::fediversity_names`] and
/// [`deploy::application_names`].
fn generated_names(spec: &Spec, catalog: &Catalog, out: &mut Vec<Diagnostic>) {
    let machines = deploy::machines(spec, catalog);
    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_file: BTreeMap<&str, usize> = BTreeMap::new();
    for (j, machine) in machines.iter().enumerate() {
        let first = by_name
            .get(machine.name.as_str())
            .or_else(|| by_file.get(machine.file.as_str()))
            .copied();
        if let Some(i) = first {
            let earlier = &machines[i];
            let mut shared = Vec::new();
            if earlier.name == machine.name {
                shared.push(format!("the machine name `{}`", machine.name));
            }
            if earlier.file == machine.file {
                shared.push(format!(
                    "the file `{}/{}`",
                    deploy::DEPLOYMENTS,
                    machine.file
                ));
            }
            let (first_path, first_owner) = origin(spec, &earlier.role.origin());
            let (path, owner) = origin(spec, &machine.role.origin());
            out.push(
                Diagnostic::new(
                    path,
                    format!(
                        "{owner} and {first_owner} would share {}",
                        shared.join(" and ")
                    ),
                    format!("also `{}`", machine.name),
                )
                .at_key()
                .related(first_path, format!("`{}`", earlier.name))
                .hint(format!(
                    "machines are named `<operator>-<application>` and `{}-<node>`: rename an operator or a node so that the names differ",
                    OBJECT_STORAGE_APPLICATION
                )),
            );
            continue;
        }
        by_name.insert(&machine.name, j);
        by_file.insert(&machine.file, j);
    }
    host_names(spec, catalog, &machines, out);
    module_names(spec, &machines, out);
}

fn host_names(
    spec: &Spec,
    catalog: &Catalog,
    machines: &[deploy::PlannedMachine],
    out: &mut Vec<Diagnostic>,
) {
    // Every host name a request can reach, then every machine's own name: the name, where it comes from, how a
    // message names it as the subject and as the one it collides with.
    struct Host {
        name: String,
        from: Origin,
        path: FieldPath,
        subject: String,
        first: String,
    }
    let mut all: Vec<Host> = deploy::host_names(spec, catalog)
        .into_iter()
        .map(|(name, from)| {
            let (path, owner) = origin(spec, &from);
            let (path, subject, first) = match &from {
                Origin::Application {
                    operator,
                    application,
                } => {
                    let subdomain = spec.operators[*operator].applications[application]
                        .subdomain
                        .is_some();
                    (
                        if subdomain {
                            path.key("subdomain")
                        } else {
                            path
                        },
                        owner.clone(),
                        format!("the host of {owner}"),
                    )
                }
                Origin::OperatorDomain(i) => (
                    path,
                    format!("operator `{}` (its domain)", spec.operators[*i].name),
                    owner,
                ),
                _ => (path, owner.clone(), owner),
            };
            Host {
                name,
                from,
                path,
                subject,
                first,
            }
        })
        .collect();
    all.extend(machines.iter().map(|m| Host {
        name: m.fqdn(),
        from: m.role.origin(),
        path: origin(spec, &m.role.origin()).0,
        subject: format!("machine `{}` (its own name)", m.name),
        first: format!("the name of machine `{}`", m.name),
    }));
    let s3 = deploy::s3_host(spec, catalog);
    let mut hosts: BTreeMap<&str, &Host> = BTreeMap::new();
    for host in &all {
        let name = host.name.as_str();
        if matches!(host.from, Origin::Application { .. })
            && (name.len() > 253 || name.split('.').any(|l| l.len() > 63))
        {
            out.push(
                Diagnostic::new(
                    host.path.clone(),
                    format!("the host name of {} is too long", host.subject),
                    "too long",
                )
                .at_key()
                .hint("host names have at most 253 characters, and labels at most 63 (RFC 1123)"),
            );
        }
        if let Some(first) = hosts.get(name) {
            // Two operators with one domain are reported as such, by `unique_operators`.
            let both_domains = matches!(
                (&first.from, &host.from),
                (Origin::OperatorDomain(_), Origin::OperatorDomain(_))
            );
            if !both_domains {
                out.push(
                    Diagnostic::new(
                        host.path.clone(),
                        format!(
                            "the host name `{name}` of {} is also {}",
                            host.subject, first.first
                        ),
                        format!("`{name}`"),
                    )
                    .at_key()
                    .related(first.path.clone(), format!("also `{name}`"))
                    .hint(
                        if [&host.from, &first.from]
                            .iter()
                            .any(|o| matches!(o, Origin::Application { .. }))
                        {
                            "give one of them another `subdomain`"
                        } else {
                            "give the operator another domain"
                        },
                    ),
                );
            }
            continue;
        }
        let endpoint = matches!(host.from, Origin::S3Endpoint | Origin::S3WebEndpoint);
        if let Some(s3) = s3.as_deref().filter(|_| !endpoint)
            && name.ends_with(&format!(".{s3}"))
        {
            out.push(
                Diagnostic::new(
                    host.path.clone(),
                    format!("the host name `{name}` of {} is inside the provider's S3 endpoint `{s3}`", host.subject),
                    format!("`{name}`"),
                )
                .at_key()
                .related(FieldPath::of(&["provider", "domain"]), format!("S3 at `{s3}`"))
                .hint(format!("Garage answers for every name below `{s3}` (buckets as `<bucket>.{s3}`): give it a `subdomain` outside it")),
            );
        }
        hosts.insert(name, host);
    }
    for (i, op, name, _, _) in enabled(spec, catalog) {
        let machine = op.machine_name(name);
        if machine.len() > 63 {
            out.push(
                Diagnostic::new(
                    operator_path(i).key("name"),
                    format!("the machine name `{machine}` is longer than 63 characters"),
                    "too long for a host name",
                )
                .hint("shorten the operator's name"),
            );
        }
    }
}

/// Names bound twice in a machine's module: an application named like the provider-wide settings or sharing its
/// machine with a Garage node under the same name, a setting named like `enable` or `<secret>File`; and two
/// machines of one operator's VM test with one Python name.
fn module_names(spec: &Spec, machines: &[deploy::PlannedMachine], out: &mut Vec<Diagnostic>) {
    let mut python: BTreeMap<(usize, String), &str> = BTreeMap::new();
    for machine in machines {
        let deploy::MachineRole::Application {
            operator: i,
            application: app,
        } = &machine.role
        else {
            continue;
        };
        let path = app_path(*i, app);
        let op = &spec.operators[*i];
        if let Some(first) = python.insert(
            (*i, deploy::python_name(&machine.name)),
            machine.name.as_str(),
        ) {
            out.push(
                Diagnostic::new(
                    path.clone(),
                    format!(
                        "the machines `{first}` and `{}` of operator `{}` would have one name in the NixOS test script",
                        machine.name, op.name
                    ),
                    "one test node name",
                )
                .at_key()
                .hint("the test driver replaces characters other than letters, digits and `_` with `_`: rename an application"),
            );
        }
        let mut bound: BTreeMap<String, deploy::FediversityName> = BTreeMap::new();
        for (name, what) in deploy::fediversity_names(spec, &machine.name, app) {
            let Some(first) = bound.get(&name) else {
                bound.insert(name, what);
                continue;
            };
            let (at, with) = match (&what, first) {
                (deploy::FediversityName::GarageNode(node), _) => (
                    FieldPath::of(&["provider", "object_storage", "nodes", node, "machine"]),
                    format!("Garage node `{node}`, which shares the machine"),
                ),
                _ => (
                    path.clone(),
                    "the provider-wide settings every application reads".to_owned(),
                ),
            };
            out.push(
                Diagnostic::new(
                    at,
                    format!(
                        "the application `{app}` of operator `{}` and {with} would both be `fediversity.{name}` on `{}`",
                        op.name, machine.name
                    ),
                    format!("`fediversity.{name}` twice"),
                )
                .at_key()
                .hint("an application cannot be named like a shared setting, and a Garage node cannot share the machine of an application named `garage`"),
            );
        }
        let application = &op.applications[app];
        let mut keys: BTreeMap<String, FieldPath> = BTreeMap::new();
        for (key, held) in deploy::application_names(application) {
            let at = match held {
                deploy::ApplicationName::Enable => path.key("enable"),
                deploy::ApplicationName::Subdomain(_) => path.key("subdomain"),
                deploy::ApplicationName::Setting(name, _) => path.key("settings").key(name),
                deploy::ApplicationName::Secret(name, _) => path.key("secrets").key(name),
            };
            if let Some(first) = keys.get(&key) {
                out.push(
                    Diagnostic::new(
                        at,
                        format!("`fediversity.{app}.{key}` would be set twice on `{}`", machine.name),
                        format!("also `{key}`"),
                    )
                    .at_key()
                    .related(first.clone(), format!("`{key}`"))
                    .hint(format!("a provided secret `x` is written as `xFile`, next to the settings and `enable`: the manifest of `{app}` must name them apart")),
                );
            } else {
                keys.insert(key, at);
            }
        }
    }
}

const RESOURCE_FIELDS: [(&str, &str); 3] = [
    ("cores", "cores"),
    ("memory_mib", "MiB of memory"),
    ("disk_gib", "GiB of disk"),
];

fn amounts(c: Resources) -> [u64; 3] {
    [c.cores.into(), c.memory_mib.into(), c.disk_gib.into()]
}

fn resources(spec: &Spec, catalog: &Catalog, out: &mut Vec<Diagnostic>) {
    let limits = spec.provider.limits;
    let garage = catalog.manifests.get(OBJECT_STORAGE_APPLICATION);
    // Garage nodes sharing an application machine, by machine name.
    let colocated: BTreeMap<&str, &str> = spec
        .provider
        .object_storage
        .iter()
        .flat_map(|s| s.nodes.iter())
        .filter_map(|(n, node)| Some((node.machine.as_deref()?, n.as_str())))
        .collect();
    let mut totals: BTreeMap<usize, [u64; 3]> = BTreeMap::new();
    for (i, op, name, app, manifest) in enabled(spec, catalog) {
        let path = app_path(i, name);
        let requested = [
            app.resources.cores,
            app.resources.memory_mib,
            app.resources.disk_gib,
        ];
        let default = amounts(manifest.resources);
        let effective = amounts(app.resources.resolve(manifest.resources));
        for (k, (field, unit)) in RESOURCE_FIELDS.iter().enumerate() {
            if let Some(r) = requested[k]
                && u64::from(r) < default[k]
            {
                out.push(
                    Diagnostic::new(
                        path.key("resources").key(field),
                        format!("`{name}` needs at least {} {unit}, but {r} are requested", default[k]),
                        "below the application's minimum",
                    )
                    .hint(format!("the manifest's resources are the minimum; request {} or more, or remove `{field}`", default[k])),
                );
            }
        }
        let total = totals.entry(i).or_insert([0; 3]);
        for k in 0..3 {
            total[k] += effective[k];
        }
        let Some(limits) = limits else { continue };
        let per_machine = amounts(limits.per_machine);
        let machine = op.machine_name(name);
        let node_needs = colocated
            .get(machine.as_str())
            .and(garage)
            .map_or([0; 3], |g| amounts(g.resources));
        for (k, (field, unit)) in RESOURCE_FIELDS.iter().enumerate() {
            let needed = effective[k] + node_needs[k];
            if needed > per_machine[k] {
                let (at, what) = match requested[k] {
                    Some(_) => (path.key("resources").key(field), "requested"),
                    None => (path.clone(), "the manifest's default"),
                };
                let with_node = if node_needs[k] > 0 {
                    format!(" (with the Garage node sharing `{machine}`)")
                } else {
                    String::new()
                };
                let mut d = Diagnostic::new(
                    at,
                    format!(
                        "`{machine}` needs {needed} {unit}{with_node}, more than the provider's per-machine limit of {}",
                        per_machine[k]
                    ),
                    format!("{what}: {} {unit}", effective[k]),
                )
                .hint(format!("stay within `provider.limits.per_machine.{field}`, or ask the provider to raise it"));
                if requested[k].is_none() {
                    d = d.at_key();
                }
                out.push(d.related(
                    FieldPath::of(&["provider", "limits", "per_machine", field]),
                    "the limit",
                ));
            }
        }
    }
    if let Some(limits) = limits {
        let per_operator = amounts(limits.per_operator);
        for (i, total) in totals {
            for (k, (field, unit)) in RESOURCE_FIELDS.iter().enumerate() {
                if total[k] > per_operator[k] {
                    out.push(
                        Diagnostic::new(
                            operator_path(i).key("applications"),
                            format!(
                                "operator `{}` needs {} {unit} in total, more than the provider's per-operator limit of {}",
                                spec.operators[i].name, total[k], per_operator[k]
                            ),
                            format!("{} {unit} in total", total[k]),
                        )
                        .at_key()
                        .related(FieldPath::of(&["provider", "limits", "per_operator", field]), "the limit")
                        .hint("request less, disable an application, or ask the provider to raise the limit"),
                    );
                }
            }
        }
        if let (Some(storage), Some(_)) = (&spec.provider.object_storage, garage) {
            let per_machine = amounts(limits.per_machine);
            for (n, node) in storage
                .nodes
                .iter()
                .filter(|(_, node)| node.machine.is_none())
            {
                // The machine as provisioned: its disk holds the node's capacity besides the manifest's.
                let needs = amounts(deploy::garage_capacity(node, catalog));
                if let Some(k) = (0..3).find(|&k| needs[k] > per_machine[k]) {
                    out.push(
                        Diagnostic::new(
                            FieldPath::of(&["provider", "object_storage", "nodes", n]),
                            format!(
                                "Garage node `{n}` needs {} {}, more than the per-machine limit of {}",
                                needs[k], RESOURCE_FIELDS[k].1, per_machine[k]
                            ),
                            "too large for one machine",
                        )
                        .at_key()
                        .hint(format!(
                            "the node's machine is its capacity ({} GiB) plus Garage's own {} GiB of disk: lower `capacity_gib`, or raise `provider.limits.per_machine`",
                            node.capacity_gib, needs[2].saturating_sub(u64::from(node.capacity_gib))
                        )),
                    );
                }
            }
        }
    }
}

/// A Garage node's layout capacity must fit on the disk of the machine it shares: Garage never compares
/// `capacity_gib` with the real disk, and with replication every partition may land on the node, so a capacity
/// above the free disk fills the machine (and its application) before Garage considers the node full. The rule:
/// the capacity is at most the machine's disk (the application's effective `resources.disk_gib`, what is
/// provisioned) minus the disk the application itself needs (its manifest's `disk_gib`). A node on its own
/// machine needs no check: that machine's disk is the capacity plus the Garage manifest's disk
/// ([`deploy::garage_capacity`]).
fn garage_disks(spec: &Spec, catalog: &Catalog, out: &mut Vec<Diagnostic>) {
    let Some(storage) = &spec.provider.object_storage else {
        return;
    };
    for (n, node) in &storage.nodes {
        let Some(machine) = node.machine.as_deref() else {
            continue;
        };
        // An unknown machine is `placement`'s finding.
        let Some((i, _, app, application, manifest)) =
            enabled(spec, catalog).find(|(_, op, name, _, _)| op.machine_name(name) == machine)
        else {
            continue;
        };
        let disk = application.resources.resolve(manifest.resources).disk_gib;
        let own = manifest.resources.disk_gib;
        let free = disk.saturating_sub(own);
        if node.capacity_gib > free {
            let needed = u64::from(node.capacity_gib) + u64::from(own);
            out.push(
                Diagnostic::new(
                    FieldPath::of(&["provider", "object_storage", "nodes", n, "capacity_gib"]),
                    format!(
                        "Garage node `{n}` has a capacity of {} GiB, but `{machine}` has {disk} GiB of disk, of which `{app}` needs {own} GiB itself: at most {free} GiB are left for the node",
                        node.capacity_gib
                    ),
                    format!("more than the {free} GiB left on `{machine}`"),
                )
                .related(app_path(i, app).key("resources").key("disk_gib"), "the machine's disk")
                .hint(if free == 0 {
                    format!("give `{app}` `resources.disk_gib = {needed}` or more, or run the node on its own machine (remove `machine`)")
                } else {
                    format!("lower `capacity_gib` to {free} or less, or give `{app}` `resources.disk_gib = {needed}` or more")
                }),
            );
        }
    }
}

fn needs(spec: &Spec, catalog: &Catalog, out: &mut Vec<Diagnostic>) {
    for (i, op, name, _, manifest) in enabled(spec, catalog) {
        if manifest.needs.smtp && spec.provider.smtp.is_none() {
            out.push(
                Diagnostic::new(
                    app_path(i, name),
                    format!(
                        "`{name}` of operator `{}` sends mail, but the provider has no SMTP relay",
                        op.name
                    ),
                    "needs SMTP",
                )
                .at_key()
                .hint("add `provider.smtp` (host, port, user, password, from)"),
            );
        }
        if !manifest.needs.s3_buckets.is_empty() && spec.provider.object_storage.is_none() {
            out.push(
                Diagnostic::new(
                    app_path(i, name),
                    format!("`{name}` of operator `{}` stores media in S3, but the provider has no object storage", op.name),
                    "needs S3 buckets",
                )
                .at_key()
                .hint("add `provider.object_storage` (a Garage cluster)"),
            );
        }
    }
}

fn placement(spec: &Spec, catalog: &Catalog, out: &mut Vec<Diagnostic>) {
    let hosts = match &spec.provider.runtime {
        Runtime::BareMetal(b) => Some(&b.hosts),
        _ => None,
    };
    let host_names: Vec<&str> = hosts
        .into_iter()
        .flat_map(|h| h.keys())
        .map(String::as_str)
        .collect();
    let mut used_hosts: BTreeMap<String, FieldPath> = BTreeMap::new();
    let mut use_host = |host: &str, path: FieldPath, out: &mut Vec<Diagnostic>| {
        if !host_names.contains(&host) {
            let d = Diagnostic::new(
                path.clone(),
                format!("unknown bare-metal host `{host}`"),
                "unknown host",
            );
            out.push(match suggest(host, host_names.iter().copied()) {
                Some(s) => d.hint(format!("did you mean `{s}`?")),
                None => d.hint(format!(
                    "the hosts are `provider.runtime.hosts`: {}",
                    host_names
                        .iter()
                        .map(|h| format!("`{h}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            });
        } else if let Some(first) = used_hosts.get(host) {
            out.push(
                Diagnostic::new(
                    path,
                    format!("the bare-metal host `{host}` already runs another machine"),
                    "used again",
                )
                .related(first.clone(), "first used here")
                .hint("on bare metal every machine has a host of its own"),
            );
        } else {
            used_hosts.insert(host.to_owned(), path);
        }
    };
    for (i, op) in spec.operators.iter().enumerate() {
        let names: Vec<&str> = op.applications.keys().map(String::as_str).collect();
        for (name, machine) in &op.machines {
            let path = operator_path(i).key("machines").key(name);
            if !op.applications.contains_key(name) {
                let d = Diagnostic::new(
                    path.clone(),
                    format!("`{name}` is not an application of operator `{}`", op.name),
                    "no such application",
                )
                .at_key();
                out.push(match suggest(name, names.iter().copied()) {
                    Some(s) => d.hint(format!("did you mean `{s}`?")),
                    None => d.hint("machines are named by the operator's applications"),
                });
                continue;
            }
            if hosts.is_none() && machine.host.is_some() {
                out.push(
                    Diagnostic::new(
                        path.key("host"),
                        "`host` applies only to the bare-metal backend",
                        "not bare metal",
                    )
                    .at_key()
                    .hint("remove it, or use `ssh` to say how to reach the machine"),
                );
            }
            if hosts.is_some() && machine.ssh.is_some() {
                out.push(
                    Diagnostic::new(
                        path.key("ssh"),
                        "on bare metal a machine is reached through its host's `ssh`",
                        "not used on bare metal",
                    )
                    .at_key()
                    .hint("remove it; set `ssh` in `provider.runtime.hosts`"),
                );
            }
        }
        if hosts.is_some() {
            for (name, app) in &op.applications {
                if !app.enable || !catalog.manifests.contains_key(name) {
                    continue;
                }
                match op.machines.get(name).and_then(|m| m.host.as_deref()) {
                    Some(host) => use_host(host, operator_path(i).key("machines").key(name).key("host"), out),
                    None => out.push(
                        Diagnostic::new(app_path(i, name), format!("`{}` has no bare-metal host", op.machine_name(name)), "no host")
                            .at_key()
                            .hint(format!("add `machines.{name}.host`, one of the hosts in `provider.runtime.hosts`")),
                    ),
                }
            }
        }
    }
    if let Some(storage) = &spec.provider.object_storage {
        for (n, node) in &storage.nodes {
            let path = FieldPath::of(&["provider", "object_storage", "nodes", n]);
            if node.machine.is_some() {
                for field in [("ssh", node.ssh.is_some()), ("host", node.host.is_some())]
                    .iter()
                    .filter(|f| f.1)
                    .map(|f| f.0)
                {
                    out.push(
                        Diagnostic::new(
                            path.key(field),
                            format!("a node sharing a machine has no `{field}` of its own"),
                            "not used",
                        )
                        .at_key()
                        .hint("the node is deployed with the machine it shares; remove it"),
                    );
                }
                continue;
            }
            match (hosts.is_some(), &node.host) {
                (true, Some(host)) => use_host(host, path.key("host"), out),
                (true, None) => out.push(
                    Diagnostic::new(
                        path.clone(),
                        format!("Garage node `{n}` has no bare-metal host"),
                        "no host",
                    )
                    .at_key()
                    .hint("add `host`, or share an application's machine with `machine`"),
                ),
                (false, Some(_)) => out.push(
                    Diagnostic::new(
                        path.key("host"),
                        "`host` applies only to the bare-metal backend",
                        "not bare metal",
                    )
                    .at_key()
                    .hint("remove it, or use `ssh`"),
                ),
                (false, None) => {}
            }
        }
    }
}

fn object_storage(spec: &Spec, catalog: &Catalog, out: &mut Vec<Diagnostic>) {
    let Some(storage) = &spec.provider.object_storage else {
        return;
    };
    // Node ids and keys, RPC addresses, bucket names (derived or overridden): deploy::storage derives them.
    for p in deploy::storage::problems(spec, catalog) {
        out.push(Diagnostic::new(p.path, p.message, p.label).hint(p.hint));
    }
    let base = FieldPath::of(&["provider", "object_storage"]);
    let Some(garage) = catalog.manifests.get(OBJECT_STORAGE_APPLICATION) else {
        out.push(
            Diagnostic::new(
                base,
                "object storage is a Garage cluster, but there is no `garage` template",
                "needs the garage template",
            )
            .at_key()
            .hint("add templates/garage/manifest.toml, or remove `object_storage`"),
        );
        return;
    };
    if usize::from(storage.replication_factor) > storage.nodes.len() {
        out.push(
            Diagnostic::new(
                base.key("replication_factor"),
                format!(
                    "a replication factor of {} needs at least {} nodes, but there {} {}",
                    storage.replication_factor,
                    storage.replication_factor,
                    if storage.nodes.len() == 1 {
                        "is"
                    } else {
                        "are"
                    },
                    storage.nodes.len()
                ),
                "more copies than nodes",
            )
            .hint("add nodes or lower the replication factor"),
        );
    }
    // Application machines by name, with their owner and manifest.
    let machines: BTreeMap<String, (String, &Manifest)> = enabled(spec, catalog)
        .map(|(_, op, name, _, m)| {
            (
                op.machine_name(name),
                (format!("`{name}` of operator `{}`", op.name), m),
            )
        })
        .collect();
    let machine_names: Vec<&str> = machines.keys().map(String::as_str).collect();
    let mut sharing: BTreeMap<&str, &str> = BTreeMap::new();
    for (n, node) in &storage.nodes {
        let Some(machine) = node.machine.as_deref() else {
            continue;
        };
        let path = base.key("nodes").key(n).key("machine");
        let Some((owner, manifest)) = machines.get(machine) else {
            let d = Diagnostic::new(
                path,
                format!("there is no enabled application machine `{machine}`"),
                "unknown machine",
            );
            out.push(match suggest(machine, machine_names.iter().copied()) {
                Some(s) => d.hint(format!("did you mean `{s}`?")),
                None => d.hint("application machines are named `<operator>-<application>`"),
            });
            continue;
        };
        if let Some(first) = sharing.get(machine) {
            out.push(
                Diagnostic::new(
                    path,
                    format!(
                        "`{machine}` already runs Garage node `{first}`; their ports would collide"
                    ),
                    "second node on one machine",
                )
                .related(
                    base.key("nodes").key(first).key("machine"),
                    "first node here",
                )
                .hint("give each node a machine of its own"),
            );
            continue;
        }
        sharing.insert(machine, n);
        for port in &garage.ports {
            if let Some(theirs) = manifest.ports.iter().find(|p| p.port == port.port) {
                out.push(
                    Diagnostic::new(
                        path.clone(),
                        format!(
                            "port {} is used twice on `{machine}`: by Garage's `{}` port and by the `{}` port of {owner}",
                            port.port, port.name, theirs.name
                        ),
                        format!("port {} already used", port.port),
                    )
                    .hint("put the node on another machine, or on its own (remove `machine`)"),
                );
            }
        }
    }
}

/// Two secrets of one machine at one path: each file has one owner and mode, so the machine's secrets check could
/// never pass for both (e.g. an application secret given the path of the provider's SMTP password copy).
fn secret_files(spec: &Spec, catalog: &Catalog, out: &mut Vec<Diagnostic>) {
    use deploy::secrets::{MachineSecret, application_secrets, declared_at as at, garage_secrets};
    for machine in deploy::machines(spec, catalog) {
        let (operator, secrets) = match &machine.role {
            deploy::MachineRole::Application {
                operator,
                application,
            } => {
                let shares_garage = spec.provider.object_storage.as_ref().is_some_and(|s| {
                    s.nodes
                        .values()
                        .any(|n| n.machine.as_deref() == Some(machine.name.as_str()))
                });
                let app = &spec.operators[*operator].applications[application];
                let manifest = &catalog.manifests[application];
                let mut secrets =
                    application_secrets(spec, catalog, application, app, manifest, shares_garage);
                secrets.extend(deploy::storage::shared_node_secrets(
                    spec,
                    catalog,
                    &machine.name,
                ));
                (Some(*operator), secrets)
            }
            deploy::MachineRole::GarageNode(node) => {
                let mut secrets = garage_secrets(spec, catalog);
                secrets.extend(deploy::storage::node_secrets(spec, catalog, node));
                (None, secrets)
            }
        };
        let mut seen: BTreeMap<&str, &MachineSecret> = BTreeMap::new();
        for secret in &secrets {
            let Some(first) = seen.insert(&secret.path, secret) else {
                continue;
            };
            out.push(
                Diagnostic::new(
                    at(operator, secret),
                    format!(
                        "the secrets `{}` and `{}` of `{}` would be one file, `{}`",
                        first.name, secret.name, machine.name, secret.path
                    ),
                    "a file another secret of the machine uses",
                )
                .related(at(operator, first), format!("`{}`", first.name))
                .hint(format!(
                    "each secret file has one owner and mode ({} reads one as {}, {} the other as {}): give each its own path",
                    first.unit, first.owner, secret.unit, secret.owner
                )),
            );
        }
    }
}

/// Every deploy key is an SSH public key (checked as host keys are: the type, the base64, the key inside),
/// so a truncated paste is refused here and not found when NixOps4 cannot log in.
fn deploy_keys(spec: &Spec, out: &mut Vec<Diagnostic>) {
    for (i, key) in spec.provider.deploy_keys.iter().enumerate() {
        if let Err(why) = deploy::host_keys::parse_key(key) {
            out.push(
                Diagnostic::new(
                    FieldPath::of(&["provider", "deploy_keys"]).index(i),
                    format!("this is not an SSH public key: {why}"),
                    "not an SSH public key",
                )
                .hint(
                    "paste the whole line of the deployer's `.pub` file, e.g. `ssh-ed25519 AAAA… deployer@host`",
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture manifests, with applications renamed.
    fn catalog(rename: &[(&str, &str)]) -> Catalog {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spec/templates");
        let catalog = Catalog::load(&dir).expect("fixture manifests load");
        Catalog::from_manifests(catalog.manifests.into_values().map(|mut m| {
            if let Some((_, to)) = rename.iter().find(|(from, _)| *from == m.application.name) {
                m.application.name = (*to).to_owned();
            }
            m
        }))
    }

    fn messages(toml: &str, catalog: &Catalog) -> Vec<String> {
        let spec: Spec =
            toml::from_str(toml).expect("the test specification has the model's shape");
        check(&spec, catalog)
            .into_iter()
            .map(|d| d.message)
            .collect()
    }

    const PROVIDER: &str = r#"
[provider]
name = "nordwind"
domain = "nordwind.example"
runtime = { backend = "qemu" }
acme = { email = "hostmaster@nordwind.example", accept_terms = true }

[provider.object_storage]
replication_factor = 1
region = "garage"
secrets.rpcSecret = { file = "/run/secrets/garage-rpc" }
nodes.ams1 = { zone = "ams", capacity_gib = 100 }
"#;

    #[test]
    fn names_bound_twice_in_a_machine_module_are_found() {
        // An application named like a shared setting is bound twice in `fediversity`.
        let catalog = catalog(&[("kitchen-sink", "domain")]);
        let spec = format!(
            "{PROVIDER}\n[[operators]]\nname = \"uni\"\ndomain = \"uni.example\"\ncontact = \"a@uni.example\"\nadmin = {{ username = \"admin\", email = \"a@uni.example\" }}\napplications.domain.settings.motto = \"x\"\n"
        );
        let found = messages(&spec, &catalog);
        assert!(
            found.iter().any(|m| m.contains("`fediversity.domain`")),
            "{found:#?}"
        );
        // A Garage node sharing the machine of an application named `garage`.
        let catalog = super::tests::catalog(&[]);
        let spec = format!(
            "{}\nmachine = \"uni-garage\"\n[[operators]]\nname = \"uni\"\ndomain = \"uni.example\"\ncontact = \"a@uni.example\"\nadmin = {{ username = \"admin\", email = \"a@uni.example\" }}\napplications.garage = {{}}\n",
            PROVIDER.replace(
                "nodes.ams1 = { zone = \"ams\", capacity_gib = 100 }",
                "[provider.object_storage.nodes.ams1]\nzone = \"ams\"\ncapacity_gib = 100"
            )
        );
        let found = messages(&spec, &catalog);
        assert!(
            found.iter().any(|m| m.contains("`fediversity.garage`")),
            "{found:#?}"
        );
    }

    #[test]
    fn a_shared_node_fits_in_what_the_application_leaves_of_the_disk() {
        let catalog = catalog(&[]);
        let node = "nodes.ams1 = { zone = \"ams\", capacity_gib = 100 }";
        // (the application's requested disk, the node's capacity, the GiB left when refused); kitchen-sink's
        // manifest needs 1 GiB itself.
        for (disk, capacity, refused) in [
            (None, 100, Some(0)),
            (Some(100), 100, Some(99)),
            (Some(101), 100, None),
            (Some(500), 100, None),
            (Some(800), 1000, Some(799)),
        ] {
            let resources = disk.map_or(String::new(), |d| {
                format!("applications.kitchen-sink.resources = {{ disk_gib = {d} }}\n")
            });
            let spec = format!(
                "{}\n[[operators]]\nname = \"uni\"\ndomain = \"uni.example\"\ncontact = \"a@uni.example\"\nadmin = {{ username = \"admin\", email = \"a@uni.example\" }}\napplications.kitchen-sink.settings.motto = \"x\"\n{resources}",
                PROVIDER.replace(
                    node,
                    &format!("[provider.object_storage.nodes.ams1]\nzone = \"ams\"\ncapacity_gib = {capacity}\nmachine = \"uni-kitchen-sink\"")
                )
            );
            let spec: Spec = toml::from_str(&spec).expect("the model's shape");
            let found: Vec<Diagnostic> = check(&spec, &catalog)
                .into_iter()
                .filter(|d| d.message.contains("of disk"))
                .collect();
            match refused {
                None => assert!(found.is_empty(), "{disk:?} {capacity}: {found:#?}"),
                Some(free) => {
                    let [d] = found.as_slice() else {
                        panic!("{disk:?} {capacity}: {found:#?}")
                    };
                    assert!(
                        d.message.contains(&format!("capacity of {capacity} GiB"))
                            && d.message.contains(&format!("at most {free} GiB are left")),
                        "{}",
                        d.message
                    );
                    assert_eq!(
                        d.path,
                        FieldPath::of(&[
                            "provider",
                            "object_storage",
                            "nodes",
                            "ams1",
                            "capacity_gib"
                        ])
                    );
                }
            }
        }
    }

    #[test]
    fn a_node_machine_holds_its_capacity_besides_the_manifest_disk_within_the_limit() {
        let catalog = catalog(&[]);
        let garage = catalog.manifests[OBJECT_STORAGE_APPLICATION].resources;
        // The limit exactly fits capacity + the manifest's disk; one GiB more capacity does not.
        for (capacity, refused) in [(100, false), (101, true)] {
            let spec = format!(
                "{}\n[provider.limits]\nper_machine = {{ cores = 64, memory_mib = 262144, disk_gib = {} }}\nper_operator = {{ cores = 64, memory_mib = 262144, disk_gib = 100000 }}\n",
                PROVIDER.replace("capacity_gib = 100", &format!("capacity_gib = {capacity}")),
                100 + garage.disk_gib
            );
            let found = messages(&spec, &catalog);
            let hit = found.iter().any(|m| m.contains("Garage node `ams1` needs"));
            assert_eq!(hit, refused, "{capacity}: {found:#?}");
        }
    }

    #[test]
    fn test_script_names_of_one_operator_are_distinct() {
        let catalog = catalog(&[("kitchen-sink", "a-b"), ("pixelfed", "a_b")]);
        let spec = format!(
            "{PROVIDER}\n[[operators]]\nname = \"uni\"\ndomain = \"uni.example\"\ncontact = \"a@uni.example\"\nadmin = {{ username = \"admin\", email = \"a@uni.example\" }}\napplications.a-b.settings.motto = \"x\"\napplications.a_b.subdomain = \"photos\"\n"
        );
        let found = messages(&spec, &catalog);
        assert!(
            found
                .iter()
                .any(|m| m.contains("one name in the NixOS test script")),
            "{found:#?}"
        );
    }

    #[test]
    fn two_secrets_of_one_machine_cannot_share_a_file() {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let text = std::fs::read_to_string(repo.join("examples/provider.toml"))
            .unwrap()
            .replace(
                "secrets.peertubeSecret = { secret = \"zeeinstituut-peertube\" }",
                "secrets.peertubeSecret = { secret = \"peertube-smtp-password\" }",
            );
        let catalog = Catalog::load(&repo.join("templates")).unwrap();
        let spec: Spec = toml::from_str(&text).unwrap();
        let found: Vec<String> = check(&spec, &catalog)
            .iter()
            .map(|d| d.message.clone())
            .filter(|m| m.contains("would be one file"))
            .collect();
        assert_eq!(
            found,
            [
                "the secrets `peertube-peertubeSecret` and `peertube-smtp-password` of `zeeinstituut-peertube` would be one file, `/run/secrets/peertube-smtp-password`"
            ]
        );
    }
}
