//! Every file that comes from a template is nixfmt's layout as written: the proof behind `Settle::FirstPass` (the
//! modules and the per-application tests skip nixfmt's second pass) and behind the per-operator VM tests
//! (deployment and migration) standing without nixfmt at all (`template::Layout::AsRendered`, issue #18: nixfmt
//! was a fifth of generating 1,000 operators). Their templates are written in nixfmt's layout and the helpers
//! print each value at the indentation of its line; this test is what fails when a template or a value's printing
//! leaves nixfmt's layout.
//!
//! Specifications are property-generated (operator names, domains, and settings strings with the hazards of
//! Nix text: quotes, backslashes, `${`, `''`, newlines, tabs, non-ASCII), planned as `fedigen generate` plans
//! them, and every file that came from a template (modules, application, deployment and migration VM tests) is
//! run through nixfmt: it must come back unchanged. The example's files are held to the same by
//! `tests/generate.rs` (`every_generated_file_is_proven_by_rnix_nixfmt_and_nix`).

mod support;

use fedigen::nix::verify::nixfmt;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

/// Text with the hazards of Nix strings, in either string form.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-zA-Z0-9 ]{1,12}",
        1 => proptest::sample::select(vec!["\"", "\\", "${x}", "''", "'", "$", "\n", "\t", "é", "🦀", "#", "/*"])
            .prop_map(str::to_owned),
    ];
    proptest::collection::vec(piece, 1..8).prop_map(|p| p.concat())
}

/// One operator running every application, with generated settings.
fn operator(i: usize) -> impl Strategy<Value = Value> {
    ("[a-z][a-z0-9]{0,5}", text(), text(), 1u32..6).prop_map(move |(name, app_name, fetch, streams)| {
        let name = format!("{name}{i}");
        json!({
            "name": name,
            "domain": format!("{name}.example"),
            "contact": format!("admin@{name}.example"),
            "admin": { "username": "admin", "email": format!("admin@{name}.example") },
            "applications": {
                "mastodon": { "settings": { "streamingProcesses": streams, "extraConfig": { "AUTHORIZED_FETCH": fetch } } },
                "pixelfed": { "settings": { "appName": app_name }, "secrets": { "appSecrets": { "secret": format!("{name}-pixelfed") } } },
                "peertube": { "secrets": { "peertubeSecret": { "secret": format!("{name}-peertube") } } },
                "matrix-synapse": { "secrets": { "synapseSecrets": { "secret": format!("{name}-synapse") } } },
            },
            "machines": {
                "mastodon": { "network": { "dhcp": true } },
                "pixelfed": { "network": { "dhcp": true } },
                "peertube": { "network": { "dhcp": true } },
                "matrix-synapse": { "network": { "dhcp": true } },
            },
        })
    })
}

fn specification() -> impl Strategy<Value = Value> {
    (1usize..4)
        .prop_flat_map(|n| (0..n).map(operator).collect::<Vec<_>>())
        .prop_map(|operators| {
            json!({
                "provider": {
                    "name": "props",
                    "domain": "props-provider.example",
                    "runtime": { "backend": "qemu" },
                    "acme": { "email": "hostmaster@props-provider.example", "accept_terms": true },
                    "smtp": {
                        "host": "smtp.props-provider.example", "port": 587, "user": "fediversity",
                        "password": { "secret": "smtp-password" }, "from": "noreply@props-provider.example",
                    },
                    "object_storage": {
                        "replication_factor": 3, "region": "props",
                        "secrets": { "environment": { "secret": "garage-environment" } },
                        "nodes": {
                            "a": { "zone": "a", "capacity_gib": 1000, "network": { "dhcp": true } },
                            "b": { "zone": "b", "capacity_gib": 1000, "network": { "dhcp": true } },
                            "c": { "zone": "c", "capacity_gib": 1000, "network": { "dhcp": true } },
                        },
                    },
                },
                "operators": operators,
            })
        })
}

#[test]
fn every_rendered_template_is_a_nixfmt_fixpoint_after_one_pass() {
    let repo = support::repository();
    let dir = tempfile::tempdir().unwrap();
    let mut runner = TestRunner::new(Config::default());
    let strategy = specification();
    let (mut planned, mut checked) = (0, 0);
    let mut failures = Vec::new();
    for case in 0..12 {
        let spec = strategy.new_tree(&mut runner).unwrap().current();
        let path = dir.path().join(format!("spec-{case}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&spec).unwrap()).unwrap();
        let plan = match fedigen::generate::plan_with_spec(&repo, Some(&path)) {
            Ok(plan) => plan,
            Err(e) => panic!("case {case}: a valid specification failed to plan: {e}\n{spec:#}"),
        };
        planned += 1;
        for (file, text) in &plan.files {
            // Files from templates: the modules and every VM test (machines are printed, not laid out).
            let from_template = file.starts_with("modules") || file.starts_with("vm-tests");
            if !from_template || file.extension().is_none_or(|e| e != "nix") {
                continue;
            }
            let name = file.display().to_string();
            let again = nixfmt(&name, text).unwrap();
            checked += 1;
            if &again != text {
                failures.push(format!(
                    "case {case}: nixfmt changes {name}: its template (or a value's printing) left nixfmt's layout"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        planned == 12 && checked >= 12 * 8,
        "{planned} specifications planned, {checked} files checked: the generator no longer covers the templates"
    );
}
