//! Provisioning on Proxmox (`deployments/tofu/`) and `fedigen provision`: every planned machine — Garage nodes
//! included — has exactly one VM with the machine's resources, VM ids survive regenerations that add and remove
//! machines, `generate --check` writes no allocation, and `fedigen provision` reports each kind of change with
//! its documented exit status.

mod support;
use support::{repository, scratch_repository};

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const MAIN: &str = "deployments/tofu/main.tf.json";
const VM_IDS: &str = "deployments/tofu/vm-ids.json";
const VM: &str = "proxmox_virtual_environment_vm";

fn fedigen(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fedigen"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The VM ids of a generated configuration, by machine.
fn vm_ids(config: &Value) -> BTreeMap<String, u64> {
    config["resource"][VM]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, vm)| (name.clone(), vm["vm_id"].as_u64().unwrap()))
        .collect()
}

/// Regression: `deployments/proxmox.nix` listed only the application machines, so the Garage nodes with
/// machines of their own were never provisioned. Now every planned machine has exactly one VM, and its cores,
/// memory and disk are the machine's resources, computed here from the specification and the manifests.
#[test]
fn every_planned_machine_has_one_vm_with_its_resources_garage_nodes_included() {
    let repo = repository();
    let plan = fedigen::generate::plan(&repo).unwrap();
    let config: Value = serde_json::from_str(&plan.files[Path::new(MAIN)]).unwrap();
    let (spec, catalog) =
        fedigen::deploy::load_spec(&repo, &repo.join("examples/provider.toml")).unwrap();
    let machines = fedigen::deploy::machines(&spec, &catalog);
    let vms = config["resource"][VM].as_object().expect("VMs");
    let mut names: Vec<&str> = machines.iter().map(|m| m.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(vms.keys().map(String::as_str).collect::<Vec<_>>(), names);
    for node in ["garage-ams1", "garage-ams2"] {
        assert!(vms.contains_key(node), "{node} has no VM");
    }
    let storage = spec.provider.object_storage.as_ref().unwrap();
    let garage = catalog.manifests["garage"].resources;
    for machine in &machines {
        let (cores, memory, disk) = match &machine.role {
            fedigen::deploy::MachineRole::Application {
                operator,
                application,
            } => {
                let requested = &spec.operators[*operator].applications[application].resources;
                let default = catalog.manifests[application].resources;
                (
                    requested.cores.unwrap_or(default.cores),
                    requested.memory_mib.unwrap_or(default.memory_mib),
                    requested.disk_gib.unwrap_or(default.disk_gib),
                )
            }
            fedigen::deploy::MachineRole::GarageNode(node) => (
                garage.cores,
                garage.memory_mib,
                // The layout capacity on top of what Garage's machine needs itself (system, metadata).
                garage.disk_gib + storage.nodes[node].capacity_gib,
            ),
        };
        let vm = &vms[&machine.name];
        let name = &machine.name;
        assert_eq!(vm["cpu"]["cores"], cores, "{name}");
        assert_eq!(vm["memory"]["dedicated"], memory, "{name}");
        assert_eq!(vm["disk"][0]["size"], disk, "{name}");
        assert_eq!(vm["disk"][0]["interface"], "virtio0", "{name}");
        assert_eq!(vm["name"], name.as_str());
        assert_eq!(vm["node_name"], "pve-ams-1");
        assert_eq!(vm["disk"][0]["datastore_id"], "local-zfs");
        assert_eq!(vm["network_device"][0]["bridge"], "vmbr0");
        // The image of this machine's own configuration, uploaded once per machine.
        assert_eq!(
            vm["disk"][0]["import_from"],
            format!("${{proxmox_virtual_environment_file.{name}.id}}")
        );
        assert!(
            config["resource"]["proxmox_virtual_environment_file"][name]["source_file"]["path"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/{name}/vzdump-qemu-{name}.img"))
        );
    }
    // No credential in the file, and the provider's base URL without `/api2/json`.
    let main = &plan.files[Path::new(MAIN)];
    assert!(!main.contains("api_token\":"), "a token field is written");
    assert_eq!(
        config["provider"]["proxmox"]["endpoint"],
        "https://pve.nordwind-hosting.example:8006/"
    );
    assert_eq!(
        config["terraform"]["required_providers"]["proxmox"]["source"],
        "bpg/proxmox"
    );
    // The old file is gone.
    assert!(
        !plan
            .files
            .contains_key(Path::new("deployments/proxmox.nix"))
    );
}

/// The structure OpenTofu's JSON syntax wants, checked against the bpg/proxmox documentation (v0.111.1) since
/// neither `tofu` nor `terraform` runs here: top-level blocks are objects of labelled objects, nested blocks
/// are objects (single) or arrays of objects (repeated), every reference is a `${…}` template, and every
/// resource label is an identifier.
#[test]
fn the_configuration_has_opentofu_json_structure() {
    let plan = fedigen::generate::plan(&repository()).unwrap();
    let config: Value = serde_json::from_str(&plan.files[Path::new(MAIN)]).unwrap();
    let top: Vec<&str> = config
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(top, ["//", "provider", "resource", "terraform", "variable"]);
    for (name, variable) in config["variable"].as_object().unwrap() {
        assert_eq!(variable["type"], "string", "{name}");
        assert!(variable["description"].is_string(), "{name}");
    }
    let label = |l: &str| {
        l.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    for (kind, resources) in config["resource"].as_object().unwrap() {
        for (name, body) in resources.as_object().unwrap() {
            assert!(label(name), "{kind}.{name}");
            assert!(body.is_object(), "{kind}.{name}");
        }
    }
    for vm in config["resource"][VM].as_object().unwrap().values() {
        for single in ["cpu", "memory", "agent", "operating_system"] {
            assert!(vm[single].is_object(), "{single} is one block");
        }
        for repeated in ["disk", "network_device", "serial_device"] {
            assert!(vm[repeated].is_array(), "{repeated} is a list of blocks");
        }
        assert!(vm["vm_id"].as_u64().is_some_and(|id| id >= 100));
        assert_eq!(vm["operating_system"]["type"], "l26");
        assert_eq!(vm["agent"]["enabled"], true);
    }
    // Every `${…}` template refers to a declared variable or to an attribute of a resource in the file.
    let mut references = 0;
    let mut pending = vec![&config];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(map) => pending.extend(map.values()),
            Value::Array(items) => pending.extend(items),
            Value::String(s) => {
                for template in s.split("${").skip(1) {
                    let expression = template.split('}').next().unwrap();
                    assert!(template.contains('}'), "unclosed template in {s}");
                    let parts: Vec<&str> = expression.split('.').collect();
                    let declared = match parts.as_slice() {
                        ["var", name] => config["variable"].get(*name).is_some(),
                        [kind, label, _attribute] => {
                            config["resource"][*kind].get(*label).is_some()
                        }
                        _ => false,
                    };
                    assert!(declared, "`${{{expression}}}` refers to nothing declared");
                    references += 1;
                }
            }
            _ => {}
        }
    }
    assert!(references > 10, "{references} references");
    for file in config["resource"]["proxmox_virtual_environment_file"]
        .as_object()
        .unwrap()
        .values()
    {
        assert_eq!(file["content_type"], "import");
        // The `import` content type takes .raw, .qcow2 or .vmdk.
        assert!(
            file["source_file"]["file_name"]
                .as_str()
                .unwrap()
                .ends_with(".raw")
        );
        assert!(file["datastore_id"].as_str().unwrap().starts_with("${var."));
    }
}

/// Machines added and removed between two generations: the others keep their ids, the new one takes an id
/// never given before (not the removed machine's), the removed one's id is remembered; `generate --check`
/// reports the allocation stale but writes nothing; `fedigen provision` shows the change before it is
/// generated, and nothing after.
#[test]
fn vm_ids_survive_a_regeneration_with_an_added_and_a_removed_machine() {
    let scratch = scratch_repository();
    let dir = scratch.path();
    let out = fedigen(dir, &["generate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let before = vm_ids(&read_json(&dir.join(MAIN)));
    let allocation = std::fs::read_to_string(dir.join(VM_IDS)).unwrap();
    assert_eq!(
        read_json(&dir.join(VM_IDS))["machines"],
        serde_json::json!(before)
    );

    // Garage node ams2 goes, ams3 comes; the PeerTube machine's disk grows.
    let spec_path = dir.join("examples/provider.toml");
    let spec = std::fs::read_to_string(&spec_path).unwrap();
    let changed = spec
        .replace(
            "[provider.object_storage.nodes.ams2]",
            "[provider.object_storage.nodes.ams3]",
        )
        .replace(
            "resources = { disk_gib = 800 }",
            "resources = { disk_gib = 900 }",
        );
    assert_ne!(changed, spec);
    std::fs::write(&spec_path, changed).unwrap();
    // The provider's host keys follow the machines (a key for a machine the spec lacks is only a warning).
    let keys_path = dir.join("examples/provider.host-keys.toml");
    let keys = std::fs::read_to_string(&keys_path).unwrap();
    std::fs::write(&keys_path, keys.replace("garage-ams2 ", "garage-ams3 ")).unwrap();

    let check = fedigen(dir, &["generate", "--check"]);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check.stderr));
    assert!(
        text(&check.stdout).contains(VM_IDS),
        "{}",
        text(&check.stdout)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join(VM_IDS)).unwrap(),
        allocation,
        "--check wrote the allocation"
    );

    let provision = fedigen(dir, &["provision"]);
    assert_eq!(
        provision.status.code(),
        Some(1),
        "{}",
        text(&provision.stderr)
    );
    let report = text(&provision.stdout);
    let new_id = before.values().max().unwrap() + 1;
    for line in [
        format!("create  {VM}.garage-ams3: "),
        format!("destroy {VM}.garage-ams2"),
        format!("change  {VM}.zeeinstituut-peertube: disk[0].size 800 → 900"),
    ] {
        assert!(
            report.lines().any(|l| l.starts_with(&line)),
            "{line}\n{report}"
        );
    }
    assert!(
        report.contains(&format!("vm_id {new_id}")),
        "the new machine takes {new_id}:\n{report}"
    );
    assert!(
        text(&provision.stderr).contains("not `tofu plan`"),
        "{}",
        text(&provision.stderr)
    );

    let out = fedigen(dir, &["generate"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let after = vm_ids(&read_json(&dir.join(MAIN)));
    for (name, id) in &before {
        if name != "garage-ams2" {
            assert_eq!(after[name], *id, "{name} was renumbered");
        }
    }
    assert_eq!(after["garage-ams3"], new_id);
    assert!(!after.contains_key("garage-ams2"));
    let allocation = read_json(&dir.join(VM_IDS));
    assert_eq!(allocation["retired"]["garage-ams2"], before["garage-ams2"]);

    // Generated: nothing left to provision against the new committed file, and the output is current.
    let provision = fedigen(dir, &["provision"]);
    assert_eq!(
        provision.status.code(),
        Some(0),
        "{}",
        text(&provision.stdout)
    );
    assert_eq!(text(&provision.stdout), "");
    assert_eq!(
        fedigen(dir, &["generate", "--check"]).status.code(),
        Some(0)
    );

    // ams2 comes back: its own id again, not a new one.
    std::fs::write(&spec_path, &spec).unwrap();
    std::fs::write(&keys_path, &keys).unwrap();
    assert!(fedigen(dir, &["generate"]).status.success());
    let again = vm_ids(&read_json(&dir.join(MAIN)));
    assert_eq!(again["garage-ams2"], before["garage-ams2"]);
    assert!(!again.contains_key("garage-ams3"));
}

/// A broken allocation is refused with its path and how to repair it, and nothing is written: replacing it
/// would renumber every VM.
#[test]
fn a_broken_allocation_is_refused_and_nothing_is_written() {
    let scratch = scratch_repository();
    let dir = scratch.path();
    assert!(fedigen(dir, &["generate"]).status.success());
    let broken =
        "{\n  \"//\": \"Generated by fedigen\",\n  \"machines\": {\"a\": 100, \"b\": 100}\n}\n";
    std::fs::write(dir.join(VM_IDS), broken).unwrap();
    let out = fedigen(dir, &["generate"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(VM_IDS)
            && stderr.contains("given to both")
            && stderr.contains("git checkout"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(dir.join(VM_IDS)).unwrap(), broken);
}

/// `fedigen provision --previous FILE` with one change of each kind: the lines, the summary, exit status 1;
/// the same as JSON; the same file compared with itself: exit 0.
#[test]
fn provision_reports_each_kind_of_change_against_a_previous_file() {
    let repo = repository();
    let current = read_json(&repo.join(MAIN));
    let mut previous = current.clone();
    let vms = previous["resource"][VM].as_object_mut().unwrap();
    vms.remove("garage-ams1");
    vms["amstelland-pixelfed"]["cpu"]["cores"] = 1.into();
    vms.insert("retired-machine".into(), vms["amstelland-mastodon"].clone());
    previous["provider"]["proxmox"]["endpoint"] = "https://old-pve.example:8006/".into();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("previous.tf.json");
    std::fs::write(&file, serde_json::to_string(&previous).unwrap()).unwrap();
    let file = file.to_str().unwrap();

    let out = fedigen(&repo, &["provision", "--previous", file]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert_eq!(
        lines[0],
        format!("change  {VM}.amstelland-pixelfed: cpu.cores 1 → 2")
    );
    assert!(
        lines[1].starts_with(&format!("create  {VM}.garage-ams1: ")),
        "{stdout}"
    );
    assert!(lines[1].contains("cpu.cores 2, "), "{stdout}");
    assert_eq!(lines[2], format!("destroy {VM}.retired-machine"));
    assert_eq!(
        lines[3],
        "setting provider.proxmox.endpoint: https://old-pve.example:8006/ → https://pve.nordwind-hosting.example:8006/"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("not `tofu plan`"), "{stderr}");
    assert!(
        stderr.contains("1 to create, 1 to change, 1 to destroy, 1 other settings changed"),
        "{stderr}"
    );
    // --quiet leaves the changes only.
    let quiet = fedigen(&repo, &["--quiet", "provision", "--previous", file]);
    assert_eq!(quiet.status.code(), Some(1));
    assert_eq!(text(&quiet.stderr), "");
    assert_eq!(text(&quiet.stdout), stdout);

    let out = fedigen(&repo, &["provision", "--previous", file, "--json"]);
    assert_eq!(out.status.code(), Some(1), "same exit status with --json");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["changed"], true);
    assert_eq!(v["previous"], file);
    assert_eq!(v["create"][0]["resource"], format!("{VM}.garage-ams1"));
    assert_eq!(v["create"][0]["fields"]["cpu.cores"], 2);
    assert_eq!(
        v["change"][0],
        serde_json::json!({"resource": format!("{VM}.amstelland-pixelfed"),
            "fields": [{"field": "cpu.cores", "from": 1, "to": 2}]})
    );
    assert_eq!(
        v["destroy"],
        serde_json::json!([format!("{VM}.retired-machine")])
    );
    assert_eq!(v["settings"][0]["path"], "provider.proxmox.endpoint");

    let same = tmp.path().join("same.tf.json");
    std::fs::copy(repo.join(MAIN), &same).unwrap();
    let out = fedigen(
        &repo,
        &["provision", "--previous", same.to_str().unwrap(), "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["changed"], false);
}

/// The exit statuses `--help` documents for what cannot be compared: a missing previous file is the
/// environment's (3), one that is not JSON and a specification that is not on Proxmox are invalid input (2).
#[test]
fn provision_refuses_what_it_cannot_compare() {
    let repo = repository();
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("none.tf.json");
    let out = fedigen(
        &repo,
        &["provision", "--previous", missing.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("error: cannot read"),
        "{}",
        text(&out.stderr)
    );

    let bad = tmp.path().join("bad.tf.json");
    std::fs::write(&bad, "{\n  \"resource\": [\n").unwrap();
    let out = fedigen(&repo, &["provision", "--previous", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("bad.tf.json:3:"), "{stderr}");
    assert!(!stderr.contains(" at line "), "the place twice: {stderr}");

    let qemu = tmp.path().join("qemu.toml");
    let spec = std::fs::read_to_string(repo.join("examples/provider.toml")).unwrap();
    let start = spec.find("[provider.runtime]").unwrap();
    let end = start + spec[start..].find("\n\n").unwrap();
    std::fs::write(
        &qemu,
        format!(
            "{}[provider.runtime]\nbackend = \"qemu\"{}",
            &spec[..start],
            &spec[end..]
        ),
    )
    .unwrap();
    let out = fedigen(&repo, &["provision", "--spec", qemu.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not \"proxmox\""),
        "{}",
        text(&out.stderr)
    );
}

/// Where OpenTofu or Terraform is installed (it is not always: the registry is out of reach here, so `validate`,
/// which needs the provider's schema, cannot run), its own parser reads the configuration: the top-level blocks,
/// the `"//"` comment, the variables and the provider requirement. A top-level key it does not know is refused,
/// so the check can fail.
#[test]
fn opentofu_reads_the_configuration_where_it_is_installed() {
    let Some(tool) = ["tofu", "terraform"].into_iter().find(|tool| {
        Command::new(tool)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!(
            "neither tofu nor terraform is installed: only the structure test checks the configuration"
        );
        return;
    };
    let run = |config: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.tf.json"), config).unwrap();
        Command::new(tool)
            .args(["providers", "-no-color"])
            .current_dir(dir.path())
            .env("TF_CLI_CONFIG_FILE", "/dev/null")
            .env("TF_IN_AUTOMATION", "1")
            .output()
            .unwrap()
    };
    let config = std::fs::read_to_string(repository().join(MAIN)).unwrap();
    let out = run(&config);
    assert!(out.status.success(), "{tool}: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("bpg/proxmox] ~> 0.111.1"),
        "{}",
        text(&out.stdout)
    );
    let broken = config.replacen("\"provider\":", "\"providers\":", 1);
    let out = run(&broken);
    assert!(
        !out.status.success(),
        "{tool} took an unknown top-level block"
    );
}
