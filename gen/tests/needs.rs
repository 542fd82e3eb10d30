//! The assertions `modules/fediversity.nix` makes from each manifest's `needs`: evaluated by the real Nix
//! (`gen/tests/nix/eval-assertions.nix`), they fail exactly when an enabled application lacks a shared option
//! its needs require, with a message naming the application and the option to set, and never otherwise.
//!
//! What each need requires is written here independently of the generator: SMTP needs the relay's host and
//! sender address, S3 buckets need the endpoint. Two trials: with stand-ins for `lib`, `config` and `options`
//! (always), and with nixpkgs' `lib.evalModules` over every generated module (when `FEDIGEN_NIXPKGS` points at
//! a nixpkgs or nixpkgs.lib checkout; otherwise ignored, with the reason printed).

use std::path::{Path, PathBuf};
use std::process::Command;

use fedigen::manifest::{Manifest, SecretSource};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::{Value, json};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The shared options an application's needs require, stated from the needs alone.
fn required(manifest: &Manifest) -> Vec<&'static str> {
    let mut options = Vec::new();
    if manifest.needs.smtp {
        options.extend(["smtp.host", "smtp.fromAddress"]);
    }
    if !manifest.needs.s3_buckets.is_empty() {
        options.push("s3.endpoint");
    }
    options
}

/// Sets `path` (dotted) in a JSON object.
fn set(config: &mut Value, path: &str, value: Value) {
    let mut at = config;
    let names: Vec<&str> = path.split('.').collect();
    for name in &names[..names.len() - 1] {
        at = at
            .as_object_mut()
            .unwrap()
            .entry(*name)
            .or_insert_with(|| json!({}));
    }
    at[names[names.len() - 1]] = value;
}

/// A configuration case: the `fediversity` set, and the messages expected to fail (each as the parts it must
/// contain; none when it must pass).
struct Case {
    what: String,
    fediversity: Value,
    failing: Vec<Vec<String>>,
}

fn cases() -> Vec<Case> {
    let manifests = Manifest::load_published(&repository().join("templates")).unwrap();
    let values = [
        ("smtp.host", json!("smtp.provider.example")),
        ("smtp.fromAddress", json!("noreply@provider.example")),
        ("s3.endpoint", json!("https://s3.provider.example")),
    ];
    let base =
        || json!({ "domain": "uu.example", "acme": { "email": "hostmaster@provider.example" } });
    let mut cases = vec![Case {
        what: "nothing enabled, no provider settings".into(),
        fediversity: base(),
        failing: Vec::new(),
    }];
    let mut with_needs = 0;
    for manifest in &manifests {
        let app = &manifest.application.name;
        let required = required(manifest);
        with_needs += usize::from(!required.is_empty());
        // Everything it needs: passes.
        let mut met = base();
        set(&mut met, &format!("{app}.enable"), json!(true));
        // Its required secret files, as every deployment sets them (an enabled module may read them).
        for (name, secret) in &manifest.secrets {
            if secret.source == SecretSource::Provided && !secret.optional {
                set(
                    &mut met,
                    &format!("{app}.{name}File"),
                    json!(format!("/run/secrets/{app}-{name}")),
                );
            }
        }
        for (option, value) in &values {
            if required.contains(option) {
                set(&mut met, option, value.clone());
            }
        }
        cases.push(Case {
            what: format!("{app} with its needs met"),
            fediversity: met.clone(),
            failing: Vec::new(),
        });
        // Disabled, nothing of the provider's set: passes.
        let mut disabled = base();
        set(&mut disabled, &format!("{app}.enable"), json!(false));
        cases.push(Case {
            what: format!("{app} disabled"),
            fediversity: disabled,
            failing: Vec::new(),
        });
        // Each required option missing in turn: exactly its assertion fails.
        for option in &required {
            let mut missing = met.clone();
            let (parent, leaf) = option.split_once('.').unwrap();
            missing[parent].as_object_mut().unwrap().remove(leaf);
            cases.push(Case {
                what: format!("{app} without {option}"),
                fediversity: missing,
                failing: vec![vec![
                    format!("fediversity.{app} needs "),
                    format!("set fediversity.{option} ("),
                ]],
            });
        }
    }
    assert!(
        with_needs >= 4,
        "the shipped applications need SMTP or object storage"
    );
    // Two applications enabled, neither's needs met: every assertion of both fails.
    let mut both = base();
    set(&mut both, "mastodon.enable", json!(true));
    set(&mut both, "matrix-synapse.enable", json!(true));
    let mut failing = Vec::new();
    for app in ["mastodon", "matrix-synapse"] {
        let manifest = manifests
            .iter()
            .find(|m| m.application.name == app)
            .unwrap();
        for option in required(manifest) {
            failing.push(vec![
                format!("fediversity.{app} needs "),
                format!("set fediversity.{option} ("),
            ]);
        }
    }
    cases.push(Case {
        what: "mastodon and matrix-synapse without provider settings".into(),
        fediversity: both,
        failing,
    });
    cases
}

/// Evaluates every case in one `nix-instantiate` (with `nixpkgs`, under `lib.evalModules`).
fn evaluate(cases: &[Case], nixpkgs: Option<&Path>) -> Result<Vec<Value>, Failed> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("cases.json");
    std::fs::write(
        &file,
        serde_json::to_string(&cases.iter().map(|c| &c.fediversity).collect::<Vec<_>>())?,
    )?;
    let nixpkgs = nixpkgs.map_or("null".to_owned(), |p| format!("{}", p.display()));
    let expr = format!(
        "map (fediversity: import {} {{ nixpkgs = {nixpkgs}; modules = {}; inherit fediversity; }}) (builtins.fromJSON (builtins.readFile {}))",
        repository()
            .join("gen/tests/nix/eval-assertions.nix")
            .display(),
        repository().join("modules").display(),
        file.display()
    );
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json", "--expr", &expr])
        .output()?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn check(nixpkgs: Option<&Path>) -> Result<(), Failed> {
    let cases = cases();
    let results = evaluate(&cases, nixpkgs)?;
    let mut problems = Vec::new();
    for (case, result) in cases.iter().zip(&results) {
        let failed: Vec<&str> = result["failed"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let matches = failed.len() == case.failing.len()
            && case.failing.iter().all(|parts| {
                failed
                    .iter()
                    .any(|m| parts.iter().all(|p| m.contains(p.as_str())))
            });
        if !matches {
            problems.push(format!(
                "{}: failed {failed:?}, expected {} failing, containing {:?}",
                case.what,
                case.failing.len(),
                case.failing
            ));
        }
    }
    // Not vacuous: every option an assertion tests has no default, so it is defined only when someone sets it.
    let without_default = &results[0]["withoutDefault"];
    for option in ["smtp.host", "smtp.fromAddress", "s3.endpoint"] {
        if !without_default
            .as_array()
            .unwrap()
            .contains(&Value::from(option))
        {
            problems.push(format!(
                "fediversity.{option} has a default: its assertion could never fail"
            ));
        }
    }
    // The wording, once in full.
    let mastodon = cases
        .iter()
        .position(|c| c.what == "mastodon without smtp.host")
        .ok_or("no mastodon case")?;
    let expected = "fediversity.mastodon needs the provider's SMTP relay: set fediversity.smtp.host (the relay's host name).";
    if results[mastodon]["failed"] != json!([expected]) {
        problems.push(format!(
            "mastodon without smtp.host: {}, expected [{expected:?}]",
            results[mastodon]["failed"]
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n").into())
    }
}

fn main() {
    let args = Arguments::from_args();
    let nixpkgs = std::env::var_os("FEDIGEN_NIXPKGS").map(PathBuf::from);
    let has_lib = nixpkgs
        .as_ref()
        .is_some_and(|p| p.join("lib/default.nix").is_file());
    if !has_lib {
        eprintln!(
            "ignored needs_assert_under_lib_eval_modules: needs nixpkgs' lib: set FEDIGEN_NIXPKGS to a nixpkgs (or nixpkgs.lib) checkout"
        );
    }
    let trials = vec![
        Trial::test("needs_assert_with_stand_ins", || check(None)),
        Trial::test("needs_assert_under_lib_eval_modules", move || {
            check(nixpkgs.as_deref())
        })
        .with_ignored_flag(!has_lib),
    ];
    libtest_mimic::run(&args, trials).exit();
}
