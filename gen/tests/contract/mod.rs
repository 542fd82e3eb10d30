//! The contract every generated machine keeps, read from the emitted files of `deploy::plan` (the one source of
//! truth: what is written is what NixOS evaluates), without nixpkgs: a root file system, a boot loader,
//! `nixpkgs.hostPlatform`, and no two machines with one name; a host name and domain, static addresses or DHCP
//! said explicitly (`systemd.network.networks."10-uplink"`), a fully qualified deployment target, and no two
//! machines with one address or one fully qualified name; on Proxmox, exactly one VM per machine in
//! `deployments/tofu/main.tf.json`, agreeing with the machine's `proxmox.qemuConf`, and no VM id twice.
//!
//! A machine's definitions are those of its own file and of every file of `deployments/` it imports (the
//! runtime backend's base, the provider's modules). What an upstream module it imports defines is known here
//! from nixpkgs' sources, not from fedigen: `virtualisation/proxmox-image.nix` sets `fileSystems."/"` (by label
//! `nixos`) and `boot.loader.grub.device` (`/dev/vda`). A bare-metal host's hardware configuration (from
//! `nixos-generate-config`) holds its file systems.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use fedigen::deploy::PlannedMachine;
use fedigen::nix::literal::{literal_value, string_literal};
use rnix::ast::{self, HasEntry};
use rowan::ast::AstNode;
use serde_json::Value;

/// What one machine's files define, and what they import.
#[derive(Debug, Default)]
struct Definitions {
    /// Option paths defined with a value the text fixes (others hold `Value::Null`).
    values: BTreeMap<Vec<String>, Value>,
    /// Upstream modules imported through `modulesPath`, by their path under `nixos/modules`.
    upstream: BTreeSet<String>,
    /// Path literals imported from outside `deployments/` and `modules/` (a hardware configuration).
    hardware: Vec<String>,
}

/// The attribute names of an attribute path, when the text fixes them.
fn names(path: &ast::Attrpath) -> Option<Vec<String>> {
    path.attrs()
        .map(|attr| match attr {
            ast::Attr::Ident(i) => Some(i.to_string()),
            ast::Attr::Str(s) => string_literal(&s),
            ast::Attr::Dynamic(_) => None,
        })
        .collect()
}

fn flatten(prefix: Vec<String>, value: Value, out: &mut BTreeMap<Vec<String>, Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let mut path = prefix.clone();
                path.push(k);
                flatten(path, v, out);
            }
        }
        other => {
            out.insert(prefix, other);
        }
    }
}

/// The body of a module: the attribute set itself, or a function's.
fn body(expr: ast::Expr) -> Option<ast::AttrSet> {
    match expr {
        ast::Expr::AttrSet(set) => Some(set),
        ast::Expr::Lambda(l) => body(l.body()?),
        ast::Expr::Paren(p) => body(p.expr()?),
        _ => None,
    }
}

/// Reads the module at `deployments/<file>` of `files` and, recursively, the files of `deployments/` it imports.
fn read(
    files: &BTreeMap<PathBuf, String>,
    path: &Path,
    into: &mut Definitions,
) -> Result<(), String> {
    let text = files
        .get(path)
        .ok_or_else(|| format!("{} is imported but not planned", path.display()))?;
    let root = rnix::Root::parse(text).tree();
    let set = root.expr().and_then(body).ok_or_else(|| {
        format!(
            "{}: not a module (an attribute set or a function returning one)",
            path.display()
        )
    })?;
    for entry in set.attrpath_values() {
        let (Some(attrpath), Some(value)) = (entry.attrpath(), entry.value()) else {
            continue;
        };
        let names = names(&attrpath)
            .ok_or_else(|| format!("{}: a computed attribute name", path.display()))?;
        if names == ["imports"] {
            let ast::Expr::List(list) = value else {
                return Err(format!("{}: imports is not a list", path.display()));
            };
            for item in list.items() {
                let item = match item {
                    ast::Expr::Paren(ref p) => p.expr().unwrap_or(item),
                    other => other,
                };
                let text = item.syntax().to_string();
                if let Some(upstream) = text
                    .strip_prefix("\"${modulesPath}/")
                    .and_then(|t| t.strip_suffix('"'))
                {
                    into.upstream.insert(upstream.to_owned());
                } else if let ast::Expr::PathRel(_) = item {
                    let dir = path.parent().unwrap_or(Path::new(""));
                    let target = normalize(&dir.join(&text));
                    if target == Path::new("modules") {
                        continue;
                    }
                    if target.starts_with("deployments") {
                        read(files, &target, into)?;
                    } else {
                        into.hardware.push(target.display().to_string());
                    }
                } else {
                    return Err(format!(
                        "{}: an import fedigen does not write: {text}",
                        path.display()
                    ));
                }
            }
            continue;
        }
        collect(names, &value, &mut into.values);
    }
    Ok(())
}

/// Flattens a value into option paths, set by set, so that one value the text does not fix (a path literal
/// such as `description = ../storage.json;`) leaves its siblings readable.
fn collect(prefix: Vec<String>, value: &ast::Expr, out: &mut BTreeMap<Vec<String>, Value>) {
    if let ast::Expr::AttrSet(set) = value
        && set.rec_token().is_none()
    {
        for entry in set.attrpath_values() {
            let (Some(attrpath), Some(value)) = (entry.attrpath(), entry.value()) else {
                continue;
            };
            let Some(names) = names(&attrpath) else {
                continue;
            };
            let mut path = prefix.clone();
            path.extend(names);
            collect(path, &value, out);
        }
        return;
    }
    flatten(prefix, literal_value(value).unwrap_or(Value::Null), out);
}

fn normalize(path: &Path) -> PathBuf {
    let mut out: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            // Above the repository stays visible, so that it is not read as a file of it.
            std::path::Component::ParentDir => match out.last().map(String::as_str) {
                None | Some("..") => out.push("..".into()),
                Some(_) => {
                    out.pop();
                }
            },
            std::path::Component::Normal(p) => out.push(p.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    out.iter().collect()
}

fn defines(d: &Definitions, path: &[&str]) -> Option<Value> {
    let key: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
    d.values.get(&key).cloned()
}

/// Every violation of the contract by the planned machines and files, as messages naming the machine; empty
/// when every machine keeps it. `platform` is the `nixpkgs.hostPlatform` every machine must say.
pub fn violations(
    machines: &[PlannedMachine],
    files: &BTreeMap<PathBuf, String>,
    platform: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let provisioning = Provisioning::read(files);
    let mut by_address: BTreeMap<String, String> = BTreeMap::new();
    let mut by_fqdn: BTreeMap<String, String> = BTreeMap::new();
    for machine in machines {
        let name = &machine.name;
        if !seen.insert(name.clone()) {
            out.push(format!("two machines are named {name}"));
        }
        let mut d = Definitions::default();
        let file = Path::new("deployments").join(&machine.file);
        if let Err(e) = read(files, &file, &mut d) {
            out.push(format!("{name}: {e}"));
            continue;
        }
        let proxmox_image = d.upstream.contains("virtualisation/proxmox-image.nix");
        let root_fs = proxmox_image
            || !d.hardware.is_empty()
            || matches!(defines(&d, &["fileSystems", "/", "device"]), Some(Value::String(s)) if !s.is_empty());
        if !root_fs {
            out.push(format!("{name}: no root file system (fileSystems.\"/\")"));
        }
        let grub = matches!(defines(&d, &["boot", "loader", "grub", "device"]), Some(Value::String(s)) if !s.is_empty());
        let systemd_boot =
            defines(&d, &["boot", "loader", "systemd-boot", "enable"]) == Some(Value::Bool(true));
        if !(proxmox_image || grub || systemd_boot) {
            out.push(format!(
                "{name}: no boot loader (boot.loader.grub.device or systemd-boot)"
            ));
        }
        if grub && systemd_boot {
            out.push(format!("{name}: two boot loaders (GRUB and systemd-boot)"));
        }
        match defines(&d, &["nixpkgs", "hostPlatform"]) {
            Some(Value::String(p)) if p == platform => {}
            other => out.push(format!(
                "{name}: nixpkgs.hostPlatform is {}, not \"{platform}\"",
                other.map_or("unset".to_owned(), |v| v.to_string())
            )),
        }
        match defines(&d, &["networking", "hostName"]) {
            Some(Value::String(h)) if h == *name => {}
            other => out.push(format!(
                "{name}: networking.hostName is {}, not the machine's name",
                other.map_or("unset".to_owned(), |v| v.to_string())
            )),
        }
        match defines(&d, &["networking", "domain"]) {
            Some(Value::String(domain)) if domain == machine.domain => {}
            other => out.push(format!(
                "{name}: networking.domain is {}, not \"{}\"",
                other.map_or("unset".to_owned(), |v| v.to_string()),
                machine.domain
            )),
        }
        let uplink = |key: &[&str]| {
            let mut path = vec!["systemd", "network", "networks", "10-uplink"];
            path.extend(key);
            defines(&d, &path)
        };
        let addresses: Vec<String> = match uplink(&["address"]) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|a| a.as_str()?.split_once('/').map(|(ip, _)| ip.to_owned()))
                .collect(),
            _ => Vec::new(),
        };
        let dhcp = uplink(&["networkConfig", "DHCP"]) == Some(Value::String("yes".to_owned()));
        let networkd = defines(&d, &["networking", "useNetworkd"]) == Some(Value::Bool(true))
            && defines(&d, &["networking", "useDHCP"]) == Some(Value::Bool(false));
        // Static addresses or DHCP: not neither, not both.
        if addresses.is_empty() != dhcp || !networkd {
            out.push(format!(
                "{name}: neither static addresses nor DHCP said explicitly in systemd-networkd (10-uplink)"
            ));
        }
        for address in addresses {
            if let Some(first) = by_address.insert(address.clone(), name.clone()) {
                out.push(format!("{name}: the address {address} is also {first}'s"));
            }
        }
        let target = machine.deploy_target();
        if !qualified(&target.host) {
            out.push(format!(
                "{name}: the deployment target {} is a bare host name",
                target.host
            ));
        }
        if let Some(first) = by_fqdn.insert(format!("{name}.{}", machine.domain), name.clone())
            && first != *name
        {
            out.push(format!(
                "{name}: its fully qualified name is also {first}'s"
            ));
        }
        if proxmox_image {
            out.extend(provisioning.machine(name, &d));
        }
    }
    if let Some(text) = files.get(Path::new("deployments/nixops4.nix")) {
        for host in ssh_hosts(text) {
            if !qualified(&host) {
                out.push(format!(
                    "deployments/nixops4.nix: ssh.host {host} is a bare host name"
                ));
            }
        }
    }
    out.extend(provisioning.rest(machines));
    out
}

/// The Proxmox provisioning, `deployments/tofu/main.tf.json`, as planned (none for other backends).
struct Provisioning {
    /// Resource label → the VM's settings.
    vms: BTreeMap<String, Value>,
    /// Why the file is unusable, when it is.
    error: Option<String>,
}

impl Provisioning {
    const FILE: &str = "deployments/tofu/main.tf.json";

    fn read(files: &BTreeMap<PathBuf, String>) -> Self {
        let Some(text) = files.get(Path::new(Self::FILE)) else {
            return Self {
                vms: BTreeMap::new(),
                error: Some(format!("{} is not planned", Self::FILE)),
            };
        };
        match serde_json::from_str::<Value>(text) {
            Ok(config) => Self {
                vms: config["resource"]["proxmox_virtual_environment_vm"]
                    .as_object()
                    .map(|m| m.clone().into_iter().collect())
                    .unwrap_or_default(),
                error: None,
            },
            Err(e) => Self {
                vms: BTreeMap::new(),
                error: Some(format!("{} is not JSON: {e}", Self::FILE)),
            },
        }
    }

    /// A Proxmox machine's VM: there, named as the machine, its cores and memory those of the machine's
    /// `proxmox.qemuConf`, its first disk `virtio0` (`/dev/vda`, where proxmox-image.nix puts GRUB).
    fn machine(&self, name: &str, d: &Definitions) -> Vec<String> {
        if let Some(e) = &self.error {
            return vec![format!("{name}: no VM: {e}")];
        }
        let Some(vm) = self.vms.get(name) else {
            return vec![format!("{name}: no VM in {}", Self::FILE)];
        };
        let mut out = Vec::new();
        for (field, got, option) in [
            ("name", &vm["name"], "name"),
            ("cpu.cores", &vm["cpu"]["cores"], "cores"),
            ("memory.dedicated", &vm["memory"]["dedicated"], "memory"),
        ] {
            let want = defines(d, &["proxmox", "qemuConf", option]);
            if want.as_ref() != Some(got) {
                out.push(format!(
                    "{name}: the VM's {field} is {got}, proxmox.qemuConf.{option} is {}",
                    want.map_or("unset".to_owned(), |v| v.to_string())
                ));
            }
        }
        if vm["disk"][0]["interface"] != "virtio0" {
            out.push(format!(
                "{name}: the VM's first disk is {}, not virtio0 (/dev/vda, where GRUB is)",
                vm["disk"][0]["interface"]
            ));
        }
        out
    }

    /// No VM without a machine, and no VM id twice.
    fn rest(&self, machines: &[PlannedMachine]) -> Vec<String> {
        let mut out = Vec::new();
        for label in self.vms.keys() {
            if !machines.iter().any(|m| &m.name == label) {
                out.push(format!("{}: a VM for no machine: {label}", Self::FILE));
            }
        }
        let mut ids: BTreeMap<String, &str> = BTreeMap::new();
        for (label, vm) in &self.vms {
            if let Some(other) = ids.insert(vm["vm_id"].to_string(), label) {
                out.push(format!(
                    "{}: {other} and {label} have one VM id, {}",
                    Self::FILE,
                    vm["vm_id"]
                ));
            }
        }
        out
    }
}

/// Every violation of the secrets contract: each secret file a machine's modules pass to a service (an
/// application's `<secret>File`, the SMTP `passwordFile`, the Garage cluster's `<secret>File`) is declared in
/// the machine's `fediversity.secrets` at that path, owned by the user and group the application's manifest says
/// reads it (root for a credential), mode 0400; nothing else is declared; no two declarations share a path.
pub fn secret_violations(
    machines: &[PlannedMachine],
    files: &BTreeMap<PathBuf, String>,
    catalog: &fedigen::model::Catalog,
) -> Vec<String> {
    use fedigen::deploy::MachineRole;
    let mut out = Vec::new();
    for machine in machines {
        let name = &machine.name;
        let mut d = Definitions::default();
        if let Err(e) = read(files, &Path::new("deployments").join(&machine.file), &mut d) {
            out.push(format!("{name}: {e}"));
            continue;
        }
        // name → field → value of `fediversity.secrets`.
        let mut declared: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        for (path, value) in &d.values {
            if let [f, s, secret, field] = path.as_slice()
                && f == "fediversity"
                && s == "secrets"
            {
                declared
                    .entry(secret.clone())
                    .or_default()
                    .insert(field.clone(), value.clone());
            }
        }
        // (what, path, owner, group) of every file passed to a service.
        let mut expected: Vec<(String, String, String, String)> = Vec::new();
        let file_options =
            |expected: &mut Vec<(String, String, String, String)>, app: &str, what: &str| {
                let Some(manifest) = catalog.manifests.get(app) else {
                    return;
                };
                for (secret, spec) in &manifest.secrets {
                    if let Some(Value::String(path)) =
                        defines(&d, &["fediversity", app, &format!("{secret}File")])
                    {
                        let access = spec.access();
                        expected.push((
                            format!("{what} secret {secret}"),
                            path,
                            access.owner().to_owned(),
                            access.group().to_owned(),
                        ));
                    }
                }
            };
        if let MachineRole::Application { application, .. } = &machine.role {
            file_options(&mut expected, application, application);
            if let Some(Value::String(path)) = defines(&d, &["fediversity", "smtp", "passwordFile"])
            {
                match catalog
                    .manifests
                    .get(application)
                    .and_then(|m| m.needs.smtp_password.as_ref())
                {
                    Some(reads) => expected.push((
                        format!("{application}'s SMTP password"),
                        path,
                        reads.access().owner().to_owned(),
                        reads.access().group().to_owned(),
                    )),
                    None => out.push(format!(
                        "{name}: the SMTP password file {path} is set, but {application}'s manifest names no reader"
                    )),
                }
            }
        }
        file_options(&mut expected, "garage", "the Garage cluster's");
        // Object storage: the application's key file (read as its manifest's `needs.s3_key` says), the node's
        // key (read as root before garage.service), and on the provisioning node every key file the storage
        // description names (read as root by fedigen-storage-apply).
        if let MachineRole::Application { application, .. } = &machine.role
            && let Some(manifest) = catalog.manifests.get(application)
            && !manifest.needs.s3_buckets.is_empty()
            && (files.contains_key(Path::new("deployments/storage.json"))
                || defines(
                    &d,
                    &["fediversity", application, "objectStorage", "keyFile"],
                )
                .is_some())
        {
            match (
                defines(&d, &["fediversity", application, "objectStorage", "keyFile"]),
                manifest.needs.s3_key.as_ref(),
            ) {
                (Some(Value::String(path)), Some(reads)) => expected.push((
                    format!("{application}'s S3 key"),
                    path,
                    reads.access().owner().to_owned(),
                    reads.access().group().to_owned(),
                )),
                _ => out.push(format!(
                    "{name}: {application} keeps media in S3, but its objectStorage.keyFile or its manifest's needs.s3_key is missing"
                )),
            }
        }
        if let Some(Value::String(path)) = defines(&d, &["fediversity", "garage", "nodeKeyFile"]) {
            expected.push((
                "the Garage node key".into(),
                path,
                "root".into(),
                "root".into(),
            ));
        }
        if defines(&d, &["fediversity", "garage", "provision", "enable"]) == Some(Value::Bool(true))
        {
            let description: Value = files
                .get(Path::new("deployments/storage.json"))
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_default();
            for bucket in description["buckets"].as_array().into_iter().flatten() {
                for key in bucket["keys"].as_array().into_iter().flatten() {
                    if let Some(path) = key["secret_file"].as_str()
                        && !expected.iter().any(|(_, p, _, _)| p == path)
                    {
                        expected.push((
                            format!("the S3 key of {}", key["name"]),
                            path.to_owned(),
                            "root".into(),
                            "root".into(),
                        ));
                    }
                }
            }
        }
        let text = |v: Option<&Value>| match v {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let mut paths = BTreeMap::new();
        for (secret, fields) in &declared {
            let path = text(fields.get("path"));
            if let Some(first) = paths.insert(path.clone(), secret.clone()) {
                out.push(format!(
                    "{name}: the secrets {first} and {secret} share the file {path}"
                ));
            }
            if text(fields.get("mode")) != "0400" {
                out.push(format!("{name}: the secret {secret} is not mode 0400"));
            }
            if !expected.iter().any(|(_, p, _, _)| *p == path) {
                out.push(format!(
                    "{name}: the secret {secret} ({path}) is declared but no service is given it"
                ));
            }
        }
        for (what, path, owner, group) in &expected {
            let Some((secret, fields)) = declared
                .iter()
                .find(|(_, fields)| text(fields.get("path")) == *path)
            else {
                out.push(format!(
                    "{name}: {what} ({path}) is not declared in fediversity.secrets"
                ));
                continue;
            };
            let (o, g) = (text(fields.get("owner")), text(fields.get("group")));
            if (&o, &g) != (owner, group) {
                out.push(format!(
                    "{name}: the secret {secret} ({what}) is owned by {o}:{g}, but its reader is {owner}:{group}"
                ));
            }
        }
    }
    out
}

/// Whether a deployment host is an IP address or a name with a dot.
fn qualified(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok() || host.contains('.')
}

/// Every `ssh.host` the NixOps4 deployment writes (as `ssh.host = …` or `ssh = { host = …; }`), whatever its
/// members are called.
fn ssh_hosts(text: &str) -> Vec<String> {
    let root = rnix::Root::parse(text).tree();
    let mut hosts = Vec::new();
    for node in root.syntax().descendants() {
        let Some(entry) = ast::AttrpathValue::cast(node) else {
            continue;
        };
        let (Some(path), Some(ast::Expr::Str(value))) = (entry.attrpath(), entry.value()) else {
            continue;
        };
        let Some(written) = names(&path) else {
            continue;
        };
        let nested = || {
            entry
                .syntax()
                .ancestors()
                .skip(1)
                .find_map(ast::AttrpathValue::cast)
                .and_then(|parent| names(&parent.attrpath()?))
                .is_some_and(|p| p.last().is_some_and(|n| n == "ssh"))
        };
        if (written.len() >= 2 && written[written.len() - 2..] == ["ssh", "host"])
            || (written == ["host"] && nested())
        {
            hosts.extend(string_literal(&value));
        }
    }
    hosts
}

/// The key a secret reference has in the sops file, as README ("Placing secrets") documents it: a named secret's
/// name, or for a file the place the specification declares it (`declared`, e.g. `operators/<op>/<app>/<secret>`).
fn documented_key(reference: &fedigen::model::SecretRef, declared: String) -> String {
    match reference {
        fedigen::model::SecretRef::Secret(name) => name.clone(),
        fedigen::model::SecretRef::File(_) => declared,
    }
}

/// Every violation of the sops-nix contract of a specification with `backend = "sops"`: each machine imports
/// `deployments/sops.nix`; its `sops.secrets` are exactly its `fediversity.secrets`, one for one by path, with
/// the same owner, group and mode and its reading unit in `restartUnits`; a path below `/run/secrets/` is the
/// secret's sops-nix name (sops-nix writes the file there, no symlink); and the keys of the machine are those the
/// README documents for the secrets of the specification the machine reads (a named secret by its name, shared by
/// every machine; a file by where it is declared).
pub fn sops_violations(
    spec: &fedigen::model::Spec,
    machines: &[PlannedMachine],
    files: &BTreeMap<PathBuf, String>,
    catalog: &fedigen::model::Catalog,
) -> Vec<String> {
    use fedigen::deploy::MachineRole;
    let mut out = Vec::new();
    let garage_keys: BTreeSet<String> = spec
        .provider
        .object_storage
        .iter()
        .flat_map(|s| &s.secrets)
        .map(|(name, r)| documented_key(r, format!("provider/garage/{name}")))
        .collect();
    for machine in machines {
        let name = &machine.name;
        let mut d = Definitions::default();
        if let Err(e) = read(files, &Path::new("deployments").join(&machine.file), &mut d) {
            out.push(format!("{name}: {e}"));
            continue;
        }
        if defines(&d, &["sops", "defaultSopsFormat"]).is_none() {
            out.push(format!("{name}: does not import deployments/sops.nix"));
        }
        let mut declared: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        let mut sops: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        for (path, value) in &d.values {
            if let [a, b, secret, field] = path.as_slice() {
                let into = match (a.as_str(), b.as_str()) {
                    ("fediversity", "secrets") => &mut declared,
                    ("sops", "secrets") => &mut sops,
                    _ => continue,
                };
                into.entry(secret.clone())
                    .or_default()
                    .insert(field.clone(), value.clone());
            }
        }
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut expected_keys: BTreeSet<String> = BTreeSet::new();
        let shares_node = spec.provider.object_storage.as_ref().is_some_and(|s| {
            s.nodes
                .values()
                .any(|n| n.machine.as_deref() == Some(name.as_str()))
        });
        if let MachineRole::Application {
            operator,
            application,
        } = &machine.role
        {
            let op = &spec.operators[*operator];
            for (secret, reference) in &op.applications[application].secrets {
                expected_keys.insert(documented_key(
                    reference,
                    format!("operators/{}/{application}/{secret}", op.name),
                ));
            }
            if let Some(smtp) = &spec.provider.smtp
                && catalog.manifests[application].needs.smtp_password.is_some()
            {
                expected_keys.insert(documented_key(
                    &smtp.password,
                    "provider/smtp-password".to_owned(),
                ));
            }
        }
        if shares_node || matches!(machine.role, MachineRole::GarageNode(_)) {
            expected_keys.extend(garage_keys.iter().cloned());
        }
        // Object storage: an application's S3 key, each node's key on its machine, and on the machine of the
        // first node (the one provisioning) every application's S3 key.
        if let Some(storage) = &spec.provider.object_storage {
            let s3_key =
                |operator: &str, app: &str| format!("provider/garage/s3-keys/{operator}/{app}");
            if let MachineRole::Application {
                operator,
                application,
            } = &machine.role
                && !catalog.manifests[application].needs.s3_buckets.is_empty()
            {
                expected_keys.insert(s3_key(&spec.operators[*operator].name, application));
            }
            for (node, n) in &storage.nodes {
                let here = n.machine.as_deref() == Some(name.as_str())
                    || matches!(&machine.role, MachineRole::GarageNode(own) if own == node);
                if !here {
                    continue;
                }
                if let Some(key) = n.node_key() {
                    expected_keys.insert(documented_key(
                        key,
                        format!("provider/garage/nodes/{node}/node_key"),
                    ));
                }
                // The copies are there when the storage description is (every node has its id).
                if storage.nodes.keys().next() == Some(node)
                    && fedigen::deploy::storage::description(spec, catalog).is_some()
                {
                    for op in &spec.operators {
                        for (app, _) in op.applications.iter().filter(|(_, a)| a.enable) {
                            if !catalog.manifests[app].needs.s3_buckets.is_empty() {
                                expected_keys.insert(s3_key(&op.name, app));
                            }
                        }
                    }
                }
            }
        }
        let keys: BTreeSet<String> = sops.values().map(|f| text(f.get("key"))).collect();
        if keys != expected_keys {
            let list = |k: &BTreeSet<String>| k.iter().cloned().collect::<Vec<_>>().join(", ");
            out.push(format!(
                "{name}: the sops keys are [{}], the README's for its secrets [{}]",
                list(&keys),
                list(&expected_keys)
            ));
        }
        if sops.len() != declared.len() {
            out.push(format!(
                "{name}: {} sops.secrets for {} fediversity.secrets",
                sops.len(),
                declared.len()
            ));
        }
        for (secret, fields) in &declared {
            let path = text(fields.get("path"));
            let Some((sops_name, s)) = sops.iter().find(|(_, s)| text(s.get("path")) == path)
            else {
                out.push(format!(
                    "{name}: the secret {secret} ({path}) has no sops.secrets entry"
                ));
                continue;
            };
            for field in ["owner", "group", "mode"] {
                if s.get(field) != fields.get(field) {
                    out.push(format!(
                        "{name}: sops.secrets.\"{sops_name}\".{field} is {}, fediversity.secrets.{secret}.{field} {}",
                        text(s.get(field)),
                        text(fields.get(field))
                    ));
                }
            }
            let units = s.get("restartUnits").cloned().unwrap_or(Value::Null);
            if units != Value::Array(vec![fields.get("unit").cloned().unwrap_or(Value::Null)]) {
                out.push(format!(
                    "{name}: sops.secrets.\"{sops_name}\".restartUnits is {units}, not the reading unit"
                ));
            }
            if let Some(rest) = path.strip_prefix("/run/secrets/")
                && rest != sops_name
            {
                out.push(format!(
                    "{name}: sops.secrets.\"{sops_name}\" at {path}: sops-nix would link it inside /run/secrets"
                ));
            }
        }
    }
    out
}

/// Every violation of the object storage contract: with a storage description generated, exactly one machine
/// runs the provisioning unit (Garage wants one layout writer), it is a machine running a Garage node, and it
/// reads that description; every Garage node's machine sets its `rpc_public_addr`.
pub fn storage_violations(
    machines: &[PlannedMachine],
    files: &BTreeMap<PathBuf, String>,
) -> Vec<String> {
    let mut out = Vec::new();
    let Some(_) = files.get(Path::new("deployments/storage.json")) else {
        return out;
    };
    let mut provisioning = Vec::new();
    for machine in machines {
        let mut d = Definitions::default();
        if let Err(e) = read(files, &Path::new("deployments").join(&machine.file), &mut d) {
            out.push(format!("{}: {e}", machine.name));
            continue;
        }
        // A node of the provider's cluster imports garage-cluster.nix, which gives the cluster's settings (an
        // operator may also run Garage as an application of its own, outside the cluster).
        let node = defines(
            &d,
            &["fediversity", "garage", "settings", "replication_factor"],
        )
        .is_some();
        if node
            && defines(
                &d,
                &["fediversity", "garage", "settings", "rpc_public_addr"],
            )
            .is_none()
        {
            out.push(format!(
                "{}: a Garage node without rpc_public_addr",
                machine.name
            ));
        }
        if defines(&d, &["fediversity", "garage", "provision", "enable"]) == Some(Value::Bool(true))
        {
            if !node {
                out.push(format!(
                    "{}: provisions storage but runs no Garage node",
                    machine.name
                ));
            }
            provisioning.push(machine.name.clone());
        }
    }
    if provisioning.len() != 1 {
        out.push(format!(
            "exactly one machine must run fedigen-storage-apply, found {provisioning:?}"
        ));
    }
    out
}
