//! Provisioning on Proxmox VE: `deployments/tofu/main.tf.json`, an OpenTofu configuration (JSON syntax) for the
//! `bpg/proxmox` provider with one virtual machine per planned machine — Garage nodes included — and
//! `deployments/tofu/vm-ids.json`, the allocation that keeps every machine's VM id across regenerations.
//!
//! Why OpenTofu and bpg/proxmox: it is what the Fediversity project itself provisions Proxmox with. Why JSON:
//! OpenTofu reads `.tf.json` as it reads HCL, and fedigen writes JSON with serde (keys sorted, so the output is
//! deterministic) without a second emitter. JSON has no comments: the generated-file marker is the first member,
//! `"//"`, which OpenTofu's JSON syntax ignores as a comment ([`crate::write::JSON_MARKER`]).
//!
//! The machines come from [`super::machines`] (the one list every generated file is made from), their
//! resources from the same functions their modules use, so a VM's cores and memory are those of the machine's
//! `proxmox.qemuConf`. No credential is written: the provider reads the API token from `PROXMOX_VE_API_TOKEN`.
//!
//! The image: the provider cannot restore a VMA backup (`system.build.VMA`), so each machine's raw disk image of
//! the same NixOS configuration (`system.build.cloudImage` of nixpkgs' `proxmox-image.nix`, a raw
//! `vzdump-qemu-<machine>.img`) is uploaded as an `import` file and becomes the VM's first disk (`virtio0`,
//! `/dev/vda`, where the image's GRUB is installed). The image only starts the machine; later changes are
//! deployed with NixOps4.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::machine::garage_capacity;
use super::vm_ids::pretty;
pub use super::vm_ids::{
    DEFAULT_FIRST_VM_ID, MAX_VM_ID, TOFU_DIR, VM_IDS_FILE, VmIds, VmIdsError, vm_ids_path,
};
use super::{DEPLOYMENTS, DeployError, MachineRole, PlannedMachine};
use crate::model::{self, Catalog, Proxmox, Spec};
use crate::write::marker_text;

/// The OpenTofu configuration, in [`TOFU_DIR`].
pub const MAIN_FILE: &str = "main.tf.json";

/// The provider's registry address.
pub const PROVIDER_SOURCE: &str = "bpg/proxmox";

/// The provider versions the configuration is written for: 0.111.1 and its patch releases (the version whose
/// documentation the attribute names were checked against; a 0.x minor release may rename attributes).
pub const PROVIDER_VERSION: &str = "~> 0.111.1";

/// The resource type of a virtual machine.
pub const VM_RESOURCE: &str = "proxmox_virtual_environment_vm";

/// The resource type of an uploaded file (the machines' disk images).
pub const FILE_RESOURCE: &str = "proxmox_virtual_environment_file";

/// The disk interface of every VM's first disk: `virtio0` is `/dev/vda` in the guest, where nixpkgs'
/// `proxmox-image.nix` installs GRUB (`boot.loader.grub.device`) and which its `qemuConf.virtio0` names.
pub const DISK_INTERFACE: &str = "virtio0";

/// `deployments/tofu/main.tf.json`, relative to the repository.
pub fn main_path() -> PathBuf {
    Path::new(DEPLOYMENTS).join(TOFU_DIR).join(MAIN_FILE)
}

/// The resources (cores, memory in MiB, disk in GiB) of a planned machine: the same as its module's.
pub(crate) fn machine_resources(
    spec: &Spec,
    catalog: &Catalog,
    machine: &PlannedMachine,
) -> Option<model::Resources> {
    match &machine.role {
        MachineRole::Application {
            operator,
            application,
        } => {
            let application_spec = spec
                .operators
                .get(*operator)?
                .applications
                .get(application)?;
            let manifest = catalog.manifests.get(application)?;
            Some(application_spec.resources.resolve(manifest.resources))
        }
        MachineRole::GarageNode(node) => {
            let node = spec.provider.object_storage.as_ref()?.nodes.get(node)?;
            Some(garage_capacity(node, catalog))
        }
    }
}

/// The provider's `endpoint`: the base URL of the Proxmox VE API, as the provider wants it (`https://host:8006/`,
/// "do not include `/api2/json`"): the specification's `api_url` without a trailing `/api2/json`, ending in `/`.
pub fn endpoint(api_url: &str) -> String {
    let mut base = api_url.trim_end_matches('/');
    if let Some(stripped) = base.strip_suffix("/api2/json") {
        base = stripped.trim_end_matches('/');
    }
    format!("{base}/")
}

/// Whether `name` can label a resource: letters, digits, `_` and `-`, not starting with a digit or `-`.
fn is_label(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The file name of a machine's raw disk image in the output of its `system.build.cloudImage`: nixpkgs'
/// `proxmox-image.nix` names it `vzdump-qemu-<proxmox.filenameSuffix>.img`, the suffix defaulting to
/// `proxmox.qemuConf.name`, which fedigen sets to the machine's name.
pub fn image_file(machine: &str) -> String {
    format!("vzdump-qemu-{machine}.img")
}

/// Plans `deployments/tofu/main.tf.json` and `deployments/tofu/vm-ids.json` for `machines` on the Proxmox
/// cluster `proxmox`, keeping the ids of `previous`.
pub(super) fn plan(
    spec: &Spec,
    proxmox: &Proxmox,
    catalog: &Catalog,
    machines: &[PlannedMachine],
    previous: &VmIds,
    spec_name: &str,
) -> Result<BTreeMap<PathBuf, String>, DeployError> {
    let ids = previous.allocate(
        machines.iter().map(|m| m.name.as_str()),
        proxmox.first_vm_id.unwrap_or(DEFAULT_FIRST_VM_ID),
    );
    if let Some((name, id)) = ids.machines.iter().find(|(_, id)| **id > MAX_VM_ID) {
        return Err(DeployError::Data(format!(
            "no VM id is left for `{name}`: {id} is beyond Proxmox VE's largest, {MAX_VM_ID}"
        )));
    }
    let mut vms = serde_json::Map::new();
    let mut images = serde_json::Map::new();
    for machine in machines {
        let name = &machine.name;
        if !is_label(name) {
            return Err(DeployError::Data(format!(
                "the machine name `{name}` cannot label an OpenTofu resource (letters, digits, `_` and `-`, \
                 starting with a letter)"
            )));
        }
        let resources = machine_resources(spec, catalog, machine).ok_or_else(|| {
            DeployError::Data(format!(
                "the machine `{name}` has no resources (a bug in fedigen)"
            ))
        })?;
        images.insert(
            name.clone(),
            json!({
                "content_type": "import",
                "datastore_id": "${var.image_datastore}",
                "node_name": proxmox.node,
                "source_file": {
                    "path": format!("${{var.image_dir}}/{name}/{}", image_file(name)),
                    // The `import` content type accepts `.raw`, `.qcow2` and `.vmdk`; the image is raw.
                    "file_name": format!("{name}.raw"),
                },
            }),
        );
        vms.insert(
            name.clone(),
            json!({
                "vm_id": ids.machines[name],
                "name": name,
                "description": format!("{} (generated by fedigen from {spec_name})", machine.fqdn()),
                "node_name": proxmox.node,
                "on_boot": true,
                "cpu": { "cores": resources.cores },
                "memory": { "dedicated": resources.memory_mib },
                "disk": [{
                    "datastore_id": proxmox.storage,
                    "interface": DISK_INTERFACE,
                    "size": resources.disk_gib,
                    "file_format": "raw",
                    "import_from": format!("${{{FILE_RESOURCE}.{name}.id}}"),
                }],
                "network_device": [{ "bridge": proxmox.bridge, "model": "virtio" }],
                "agent": { "enabled": true },
                "operating_system": { "type": "l26" },
                // proxmox-image.nix logs to ttyS0 (`console=ttyS0`).
                "serial_device": [{ "device": "socket" }],
            }),
        );
    }
    let mut resource = serde_json::Map::new();
    if !vms.is_empty() {
        resource.insert(FILE_RESOURCE.to_owned(), Value::Object(images));
        resource.insert(VM_RESOURCE.to_owned(), Value::Object(vms));
    }
    let token = match &proxmox.api_token {
        model::SecretRef::Secret(name) => format!("the secret `{name}`"),
        model::SecretRef::File(path) => format!("the file {path}"),
    };
    let main = json!({
        "//": format!(
            "{} One VM per machine for the bpg/proxmox provider; the API token is not here: export it as \
             PROXMOX_VE_API_TOKEN (the specification keeps it in {token}). Build the images first (README, \
             \"Provisioning on Proxmox\").",
            marker_text(&format!("{spec_name} (Proxmox provisioning)"))
        ),
        "terraform": {
            "required_providers": {
                "proxmox": { "source": PROVIDER_SOURCE, "version": PROVIDER_VERSION },
            },
        },
        "provider": { "proxmox": { "endpoint": endpoint(&proxmox.api_url) } },
        "variable": {
            "image_dir": {
                "type": "string",
                "default": "images",
                "description": "The folder holding each machine's disk image, as `nix build \
                    .#nixosConfigurations.<machine>.config.system.build.cloudImage -o <image_dir>/<machine>` \
                    leaves it (relative to the folder tofu runs in).",
            },
            "image_datastore": {
                "type": "string",
                "default": "local",
                "description": "The Proxmox storage the images are uploaded to; it must allow the `Import` \
                    content type (Datacenter > Storage).",
            },
        },
        "resource": resource,
    });
    let dir = Path::new(DEPLOYMENTS).join(TOFU_DIR);
    let mut files = BTreeMap::new();
    files.insert(dir.join(MAIN_FILE), pretty(&main));
    files.insert(dir.join(VM_IDS_FILE), ids.to_text(spec_name));
    Ok(files)
}

/// A difference between two generations of the OpenTofu configuration, as `fedigen provision` reports it. A
/// field or setting absent on one side is `None` there.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A resource only the new generation has.
    Create {
        /// `<type>.<label>`.
        resource: String,
        /// Its settings by path (`cpu.cores`, `disk[0].size`).
        fields: Vec<(String, Value)>,
    },
    /// A resource both generations have, with different settings.
    Change {
        /// `<type>.<label>`.
        resource: String,
        /// `(field, before, after)`.
        fields: Vec<(String, Option<Value>, Option<Value>)>,
    },
    /// A resource only the previous generation has.
    Destroy {
        /// `<type>.<label>`.
        resource: String,
    },
    /// A setting outside the resources (the provider's endpoint or version, a variable).
    Setting {
        /// Its path, e.g. `provider.proxmox.endpoint`.
        path: String,
        /// Before.
        from: Option<Value>,
        /// After.
        to: Option<Value>,
    },
}

/// What a value reads as for people: strings without quotes, everything else as JSON, `(none)` when absent.
pub fn show(value: Option<&Value>) -> String {
    match value {
        None => "(none)".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// `value`'s leaves by path: `cpu.cores`, `disk[0].size`.
fn leaves(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, v) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                leaves(&path, v, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                leaves(&format!("{prefix}[{i}]"), v, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

/// The changes from `previous` to `next` (two OpenTofu JSON configurations), resources first (by type and
/// label: created, changed field by field, destroyed), then other settings. The `"//"` comments are ignored.
pub fn diff(previous: &Value, next: &Value) -> Vec<Change> {
    let resources = |config: &Value| -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        if let Some(types) = config.get("resource").and_then(Value::as_object) {
            for (kind, labels) in types {
                for (label, body) in labels.as_object().into_iter().flatten() {
                    out.insert(format!("{kind}.{label}"), body.clone());
                }
            }
        }
        out
    };
    let (before, after) = (resources(previous), resources(next));
    let mut changes = Vec::new();
    for (resource, body) in &after {
        let mut new = BTreeMap::new();
        leaves("", body, &mut new);
        match before.get(resource) {
            None => changes.push(Change::Create {
                resource: resource.clone(),
                fields: new.into_iter().collect(),
            }),
            Some(old_body) => {
                let mut old = BTreeMap::new();
                leaves("", old_body, &mut old);
                let fields: Vec<(String, Option<Value>, Option<Value>)> = old
                    .keys()
                    .chain(new.keys())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .filter(|k| old.get(*k) != new.get(*k))
                    .map(|k| (k.clone(), old.get(k).cloned(), new.get(k).cloned()))
                    .collect();
                if !fields.is_empty() {
                    changes.push(Change::Change {
                        resource: resource.clone(),
                        fields,
                    });
                }
            }
        }
    }
    for resource in before.keys().filter(|r| !after.contains_key(*r)) {
        changes.push(Change::Destroy {
            resource: resource.clone(),
        });
    }
    let settings = |config: &Value| {
        let mut out = BTreeMap::new();
        if let Some(map) = config.as_object() {
            for (key, value) in map.iter().filter(|(k, _)| *k != "//" && *k != "resource") {
                leaves(key, value, &mut out);
            }
        }
        out.retain(|path, _| !path.ends_with(".//"));
        out
    };
    let (old, new) = (settings(previous), settings(next));
    for path in old.keys().chain(new.keys()).collect::<BTreeSet<_>>() {
        if old.get(path) != new.get(path) {
            changes.push(Change::Setting {
                path: path.clone(),
                from: old.get(path).cloned(),
                to: new.get(path).cloned(),
            });
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_the_base_url_the_provider_wants() {
        for (api_url, expected) in [
            ("https://pve:8006/api2/json", "https://pve:8006/"),
            ("https://pve:8006/api2/json/", "https://pve:8006/"),
            ("https://pve:8006", "https://pve:8006/"),
            ("https://pve:8006/", "https://pve:8006/"),
            (
                "https://pve.example/proxmox/api2/json",
                "https://pve.example/proxmox/",
            ),
        ] {
            assert_eq!(endpoint(api_url), expected, "{api_url}");
        }
    }

    fn config(vms: Value) -> Value {
        json!({
            "//": "marker",
            "provider": {"proxmox": {"endpoint": "https://a/"}},
            "resource": {VM_RESOURCE: vms},
        })
    }

    #[test]
    fn a_diff_names_each_created_changed_and_destroyed_resource_and_field() {
        let before = config(json!({
            "a": {"vm_id": 100, "cpu": {"cores": 2}, "disk": [{"size": 40}]},
            "b": {"vm_id": 101, "cpu": {"cores": 2}},
        }));
        let mut after = config(json!({
            "a": {"vm_id": 100, "cpu": {"cores": 4}, "disk": [{"size": 80}]},
            "c": {"vm_id": 102, "cpu": {"cores": 1}},
        }));
        after["provider"]["proxmox"]["endpoint"] = json!("https://b/");
        after["//"] = json!("another marker");
        let changes = diff(&before, &after);
        assert_eq!(
            changes,
            vec![
                Change::Change {
                    resource: format!("{VM_RESOURCE}.a"),
                    fields: vec![
                        ("cpu.cores".into(), Some(json!(2)), Some(json!(4))),
                        ("disk[0].size".into(), Some(json!(40)), Some(json!(80))),
                    ],
                },
                Change::Create {
                    resource: format!("{VM_RESOURCE}.c"),
                    fields: vec![("cpu.cores".into(), json!(1)), ("vm_id".into(), json!(102))],
                },
                Change::Destroy {
                    resource: format!("{VM_RESOURCE}.b")
                },
                Change::Setting {
                    path: "provider.proxmox.endpoint".into(),
                    from: Some(json!("https://a/")),
                    to: Some(json!("https://b/")),
                },
            ]
        );
        assert!(diff(&after, &after).is_empty());
    }
}
