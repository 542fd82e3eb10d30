//! The serde structs of the model ([`super::Spec`] and below) and the structure tree ([`super::shape::tree`])
//! describe the same fields twice, on purpose: the tree checks an untyped document and reports *every* problem
//! at its place (serde stops at the first) and prints the JSON Schema; the structs are the typed model the rest
//! of fedigen reads, with defaults filled in. This test holds the two to one description, field by field: the same
//! names, the same optionality (a field the tree calls optional can be left out for serde, a required one cannot)
//! and the same class of value (boolean, integer, string, object, list), over a specification that sets every
//! field, once per runtime backend.

use serde_json::{Value, json};

use super::Spec;
use super::shape::{Field, Shape, spec_shape};

/// A specification with every optional field set, for the given runtime.
fn maximal(runtime: Value) -> Value {
    let secret = json!({"file": "/run/secrets/x"});
    let resources = json!({"cores": 2, "memory_mib": 2048, "disk_gib": 20});
    let network = json!({
        "dhcp": true, "ipv4": {"address": "192.0.2.5/24", "gateway": "192.0.2.1"},
        "ipv6": {"address": "2001:db8::5/64", "gateway": "fe80::1"}, "name_servers": ["192.0.2.53"],
        "interface": "enp3s0"
    });
    json!({
        "provider": {
            "name": "p", "domain": "p.example", "runtime": runtime,
            "acme": {"email": "a@p.example", "server": "https://acme.example/dir", "accept_terms": true},
            "smtp": {"host": "smtp.p.example", "port": 587, "user": "u", "password": secret, "from": "n@p.example"},
            "object_storage": {
                "replication_factor": 1, "region": "garage",
                "nodes": {"n1": {"zone": "z", "capacity_gib": 10, "machine": "m", "ssh": "root@10.0.0.9", "host": "h", "network": network, "rpc_address": "10.0.0.9", "node_id": "ab", "secrets": {"node_key": secret}}},
                "secrets": {"rpc": secret}
            },
            "limits": {"per_machine": resources, "per_operator": resources},
            "network": {"name_servers": ["192.0.2.53"]},
            "dns": {"name_servers": ["ns1.p.example"], "hostmaster": "h@p.example", "ca": "letsencrypt.org",
                    "hosts": {"smtp": ["192.0.2.25"]}},
            "deploy_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGPYcDdYNUeo+gCtrilY6ZJYNEo+iuRvUHrf1n4ON9sJ"],
            "secrets": {"backend": "sops", "sops_file": "secrets/provider.yaml", "age_key_file": "/var/lib/sops-nix/key.txt"}
        },
        "operators": [{
            "name": "o", "domain": "o.example", "contact": "c@o.example",
            "admin": {"username": "admin", "email": "admin@o.example"},
            "applications": {"mastodon": {
                "enable": true, "subdomain": "social", "resources": resources,
                "settings": {"x": 1}, "secrets": {"s": secret}, "buckets": {"media": "b"}
            }},
            "machines": {"mastodon": {"ssh": "root@10.0.0.5", "host": "h", "network": network}}
        }]
    })
}

/// The class of a value as the tree and JSON both know it.
fn class_of_shape(shape: &Shape) -> &'static str {
    match shape {
        Shape::Bool | Shape::True(_) => "boolean",
        Shape::Int(..) => "integer",
        Shape::Str(_) => "string",
        Shape::List(_) => "list",
        Shape::Object(_)
        | Shape::Map { .. }
        | Shape::Tagged(..)
        | Shape::Secret
        | Shape::Applications
        | Shape::Settings(_)
        | Shape::AppSecrets(_) => "object",
    }
}

fn class_of_value(value: &Value) -> &'static str {
    match value {
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
        _ => "other",
    }
}

/// Walks the serialised maximal specification along the tree; `at` is the JSON pointer of `value` in `root`.
fn agree(root: &Value, value: &Value, shape: &Shape, at: &str, problems: &mut Vec<String>) {
    if class_of_shape(shape) != class_of_value(value) {
        problems.push(format!(
            "{at}: the tree says {}, the structs serialise {}",
            class_of_shape(shape),
            class_of_value(value)
        ));
        return;
    }
    match (shape, value) {
        (Shape::Object(fields), Value::Object(map)) => {
            fields_agree(root, map, fields, &[], at, problems)
        }
        (Shape::Tagged(tag, variants), Value::Object(map)) => {
            let chosen = map.get(*tag).and_then(Value::as_str).unwrap_or_default();
            match variants.iter().find(|(name, _)| *name == chosen) {
                Some((_, fields)) => fields_agree(root, map, fields, &[tag], at, problems),
                None => problems.push(format!(
                    "{at}: `{tag}` is `{chosen}`, which the tree does not know"
                )),
            }
        }
        (Shape::Map { value: inner, .. }, Value::Object(map)) => {
            for (key, entry) in map {
                agree(root, entry, inner, &format!("{at}/{key}"), problems);
            }
        }
        (Shape::List(inner), Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                agree(root, item, inner, &format!("{at}/{i}"), problems);
            }
        }
        (Shape::Applications, Value::Object(map)) => {
            for (app, entry) in map {
                let fields = super::shape::tree_application_fields(app);
                agree(
                    root,
                    entry,
                    &Shape::Object(fields),
                    &format!("{at}/{app}"),
                    problems,
                );
            }
        }
        _ => {}
    }
}

fn fields_agree(
    root: &Value,
    map: &serde_json::Map<String, Value>,
    fields: &[Field],
    tags: &[&str],
    at: &str,
    problems: &mut Vec<String>,
) {
    for key in map.keys().filter(|k| !tags.contains(&k.as_str())) {
        if !fields.iter().any(|f| f.name == key) {
            problems.push(format!("{at}/{key}: a struct field the tree does not have"));
        }
    }
    for field in fields {
        let pointer = format!("{at}/{}", field.name);
        let Some(value) = map.get(field.name) else {
            problems.push(format!(
                "{pointer}: a tree field the structs do not serialise"
            ));
            continue;
        };
        agree(root, value, &field.shape, &pointer, problems);
        // Optionality: serde takes the specification without the field exactly when the tree does.
        let mut without = root.clone();
        let parent = without.pointer_mut(at).and_then(Value::as_object_mut);
        parent.map(|p| p.remove(field.name));
        let accepted = serde_json::from_value::<Spec>(without).is_ok();
        if accepted == field.required {
            problems.push(format!(
                "{pointer}: the tree says {}, serde {} it left out",
                if field.required {
                    "required"
                } else {
                    "optional"
                },
                if accepted { "takes" } else { "refuses" }
            ));
        }
    }
}

#[test]
fn the_structs_and_the_tree_describe_the_same_fields() {
    let runtimes = [
        json!({"backend": "qemu"}),
        json!({"backend": "proxmox", "api_url": "https://pve.example/api2/json", "node": "n", "storage": "s",
               "bridge": "b", "api_token": {"secret": "pve"}, "first_vm_id": 1000}),
        json!({"backend": "bare-metal", "host_platform": "aarch64-linux", "hosts": {
            "h": {"ssh": "root@10.0.0.1", "hardware_config": "./hw.nix", "boot_loader": {"kind": "grub", "device": "/dev/sda"}},
            "i": {"ssh": "root@10.0.0.2", "hardware_config": "hw/i.nix", "boot_loader": {"kind": "systemd-boot"}}}}),
    ];
    for runtime in runtimes {
        let spec: Spec = serde_json::from_value(maximal(runtime))
            .expect("the maximal specification fits the structs");
        let root = super::to_json(&spec);
        let mut problems = Vec::new();
        agree(&root, &root, &spec_shape(), "", &mut problems);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}

#[test]
fn a_disagreement_is_found() {
    let root =
        super::to_json(&serde_json::from_value(maximal(json!({"backend": "qemu"}))).unwrap());
    let Shape::Object(mut fields) = spec_shape() else {
        unreachable!()
    };
    // The tree calling `operators` required, and knowing a field the structs lack, are both reported.
    fields[1].required = true;
    fields.push(Field {
        name: "extra",
        shape: Shape::Bool,
        required: false,
        doc: "",
    });
    let mut problems = Vec::new();
    agree(&root, &root, &Shape::Object(fields), "", &mut problems);
    assert_eq!(
        problems,
        [
            "/operators: the tree says required, serde takes it left out",
            "/extra: a tree field the structs do not serialise"
        ]
    );
}
