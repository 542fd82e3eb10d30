//! Secrets through sops-nix (`[provider.secrets] backend = "sops"`), on the example `examples/sops/provider.toml`.
//!
//! Without nixpkgs: the machine contract, the secrets contract and the sops contract (`contract::sops_violations`:
//! `sops.secrets` equal to `fediversity.secrets`, keys as README documents them) hold on the files
//! `deploy::plan_keeping` writes, and each contract finds a planted fault; no secret value, no decrypted path and
//! no string naming the sops file is written; and, with the real Nix evaluator and stand-in inputs, the flake's
//! `nixosConfigurations` and the NixOps4 members import `inputs.sops-nix.nixosModules.sops` (from the generated
//! `deployments/inputs.nix`) while the files-backed example imports nothing more.
//!
//! With `FEDIGEN_SOPS_NIX` (a checkout of Mic92/sops-nix) and `FEDIGEN_NIXPKGS` (nixpkgs, its `lib/` enough): every
//! machine of the example evaluates with `lib.evalModules` against sops-nix's real `modules/sops` (and the stand-ins
//! of `gen/tests/nix/nixos-options.nix`), and the evaluated `sops.secrets` carry the files, owners, modes, keys and
//! the sops file the specification says, with none of sops-nix's assertions failing. Without them that trial is
//! reported ignored, with the reason.
//!
//! A libtest-mimic harness, so that whether a trial is ignored is decided when the tests run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fedigen::deploy::{Kept, PlannedMachine, host_keys::HostKeys};
use fedigen::model::{Catalog, Spec};
use libtest_mimic::Failed;
use serde_json::Value;

mod contract;
mod support;
use support::{copy_dir, nix_command, repository};

const EXAMPLE: &str = "examples/sops/provider.toml";

fn var(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).map(PathBuf::from)
}

/// A specification of the repository, its machines and the files `deploy::plan_keeping` writes for it, with its
/// host keys (so the NixOps4 deployment has its members).
fn plan(
    spec_name: &str,
) -> (
    Spec,
    Catalog,
    Vec<PlannedMachine>,
    BTreeMap<PathBuf, String>,
) {
    let repo = repository();
    let (spec, catalog) = fedigen::deploy::load_spec(&repo, &repo.join(spec_name)).unwrap();
    let machines = fedigen::deploy::machines(&spec, &catalog);
    let kept = Kept {
        host_keys: HostKeys::load(&repo.join(spec_name), &machines).unwrap(),
        ..Default::default()
    };
    let files = fedigen::deploy::plan_keeping(&spec, &catalog, spec_name, &kept).unwrap();
    (spec, catalog, machines, files)
}

fn failures(found: Vec<String>) -> Result<(), Failed> {
    if found.is_empty() {
        Ok(())
    } else {
        Err(found.join("\n").into())
    }
}

/// Every machine of the sops example keeps the machine contract, the secrets contract (each file a service is
/// given is declared with its reader as owner) and the sops contract; and the example has what the contracts are
/// about: machines of both kinds, named and file secrets, a key shared by two machines.
fn the_sops_example_keeps_the_contracts() -> Result<(), Failed> {
    let (spec, catalog, machines, files) = plan(EXAMPLE);
    let mut found = contract::violations(&machines, &files, spec.provider.runtime.host_platform());
    found.extend(contract::secret_violations(&machines, &files, &catalog));
    found.extend(contract::storage_violations(&machines, &files));
    found.extend(contract::sops_violations(
        &spec, &machines, &files, &catalog,
    ));
    failures(found)?;
    let text = |file: &str| files[Path::new(file)].clone();
    // One SMTP password, one key, read by the one machine that sends mail with it; the Garage cluster's file
    // reference keyed where it is declared, and linked to its path by sops-nix.
    let mastodon = text("deployments/dijkstad/mastodon.nix");
    assert!(
        mastodon.contains(
            "    mastodon-smtp-password = {\n      key = \"smtp-password\";\n      path = \"/run/secrets/mastodon-smtp-password\";\n      owner = \"mastodon\";\n      group = \"mastodon\";\n      mode = \"0400\";\n      restartUnits = [\n        \"mastodon-init-dirs.service\"\n      ];\n    };\n"
        ),
        "{mastodon}"
    );
    // The application's S3 key, keyed as the README documents it (the provider makes it per operator and app).
    assert!(
        mastodon.contains("key = \"provider/garage/s3-keys/dijkstad/mastodon\";"),
        "{mastodon}"
    );
    let cluster = text("deployments/garage-cluster.nix");
    assert!(
        cluster.contains("key = \"provider/garage/environment\";")
            && cluster.contains("path = \"/var/lib/secrets/garage-environment\";"),
        "{cluster}"
    );
    let sops = text("deployments/sops.nix");
    assert!(
        sops.contains("  sops.defaultSopsFile = ../examples/sops/secrets.yaml;\n")
            && sops.contains("  sops.defaultSopsFormat = \"yaml\";\n"),
        "{sops}"
    );
    Ok(())
}

/// The sops contract finds what would break the machines: an owner that is not the reader's (the service could
/// not read the file sops-nix wrote), a missing `restartUnits`, a key other than the documented one, a secret
/// sops-nix would not write, and a machine not importing `deployments/sops.nix`.
fn the_sops_contract_finds_planted_faults() -> Result<(), Failed> {
    let (spec, catalog, machines, files) = plan(EXAMPLE);
    let synapse = PathBuf::from("deployments/dijkstad/matrix-synapse.nix");
    let planted = |from: &str, to: &str, file: &Path| {
        let mut changed = files.clone();
        let text = changed.get_mut(file).unwrap();
        // The sops block is the last of the file: plant there, so `fediversity.secrets` stays as it was.
        let at = text.rfind(from).expect("the text to plant in");
        text.replace_range(at..at + from.len(), to);
        contract::sops_violations(&spec, &machines, &changed, &catalog)
    };
    let cases = [
        (
            planted("owner = \"matrix-synapse\";", "owner = \"root\";", &synapse),
            "sops.secrets.\"dijkstad-synapse\".owner is root, fediversity.secrets.matrix-synapse-synapseSecrets.owner matrix-synapse",
        ),
        (
            planted("\"matrix-synapse.service\"", "", &synapse),
            "restartUnits is [], not the reading unit",
        ),
        (
            planted(
                "key = \"dijkstad-synapse\";",
                "key = \"synapse\";",
                &synapse,
            ),
            "dijkstad-matrix-synapse: the sops keys are [provider/garage/s3-keys/dijkstad/matrix-synapse, smtp-password, synapse], the README's for its secrets [dijkstad-synapse, provider/garage/s3-keys/dijkstad/matrix-synapse, smtp-password]",
        ),
        (
            planted("sops.secrets = {", "sops.unused = {", &synapse),
            "dijkstad-matrix-synapse: the secret matrix-synapse-synapseSecrets (/run/secrets/dijkstad-synapse) has no sops.secrets entry",
        ),
        (
            planted("../sops.nix", "../provider.nix", &synapse),
            "dijkstad-matrix-synapse: does not import deployments/sops.nix",
        ),
    ];
    let mut missed = Vec::new();
    for (found, expected) in cases {
        if !found.iter().any(|f| f.contains(expected)) {
            missed.push(format!(
                "expected `{expected}`, found:\n{}",
                found.join("\n")
            ));
        }
    }
    failures(missed)
}

/// No generated file holds a secret value or a decrypted path: none of the manifests' test values, nothing of the
/// sops file's content, no `/run/secrets.d` (where sops-nix decrypts to), no `readFile`; the sops file is named
/// once, as a path literal (the encrypted file copied into the store), never in a string. And the files-backed
/// example writes nothing of sops.
fn no_secret_value_or_decrypted_path_is_generated() -> Result<(), Failed> {
    let (_, catalog, _, files) = plan(EXAMPLE);
    let sops_file = std::fs::read_to_string(repository().join("examples/sops/secrets.yaml"))?;
    let mut forbidden: Vec<String> = catalog
        .manifests
        .values()
        .flat_map(|m| m.secrets.values())
        .filter_map(|s| s.test_value.clone())
        .flat_map(|v| v.lines().map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| l.len() > 8)
        .collect();
    forbidden.extend(["ENC[", "PLACEHOLDER", "/run/secrets.d", "readFile"].map(str::to_owned));
    forbidden.extend(
        sops_file
            .lines()
            .filter(|l| l.contains("ENC[") || l.contains("recipient"))
            .map(|l| l.trim().to_owned()),
    );
    assert!(
        forbidden.len() > 6,
        "the test values and the sops file's lines are looked for"
    );
    let mut found = Vec::new();
    let mut path_literals = 0;
    for (path, text) in &files {
        for bad in &forbidden {
            if text.contains(bad.as_str()) {
                found.push(format!("{}: holds `{bad}`", path.display()));
            }
        }
        if text.contains("secrets.yaml\"") {
            found.push(format!(
                "{}: names the sops file in a string",
                path.display()
            ));
        }
        path_literals += text.matches("../examples/sops/secrets.yaml;").count();
    }
    if path_literals != 1 {
        found.push(format!(
            "the sops file is named by {path_literals} path literals, not once (deployments/sops.nix)"
        ));
    }
    let (_, _, _, files_backed) = plan("examples/provider.toml");
    for (path, text) in &files_backed {
        // The headers may explain sops; what the files define may not.
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect();
        if code.contains("sops") {
            found.push(format!(
                "{}: the files-backed example writes sops",
                path.display()
            ));
        }
    }
    if files_backed[Path::new("deployments/inputs.nix")]
        .trim_end()
        .lines()
        .last()
        != Some("inputs: [ ]")
    {
        found.push("the files-backed example's deployments/inputs.nix is not `inputs: [ ]`".into());
    }
    failures(found)
}

/// Writes the planned files of the sops example into a scratch repository with the flake, the example and the
/// modules folder, for Nix to evaluate.
fn scratch_with_plan() -> Result<tempfile::TempDir, Failed> {
    let dir = tempfile::tempdir()?;
    let repo = repository();
    let (_, _, _, files) = plan(EXAMPLE);
    for (path, text) in &files {
        let target = dir.path().join(path);
        std::fs::create_dir_all(target.parent().unwrap())?;
        std::fs::write(target, text)?;
    }
    copy_dir(
        &repo.join("examples/sops"),
        &dir.path().join("examples/sops"),
    );
    copy_dir(&repo.join("modules"), &dir.path().join("modules"));
    std::fs::copy(repo.join("flake.nix"), dir.path().join("flake.nix"))?;
    Ok(dir)
}

fn eval_expr(expr: &str) -> Result<Value, Failed> {
    let out = nix_command("nix-instantiate")
        .args(["--eval", "--strict", "--json", "--expr", expr])
        .output()?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// With stand-in inputs, the real Nix evaluates the flake's inputs (sops-nix, following nixpkgs), its
/// `nixosConfigurations` (each machine's module and `inputs.sops-nix.nixosModules.sops`), the NixOps4 members (a
/// deferred module importing the machine's file and sops-nix's) and `deployments/sops.nix` (the sops file as a
/// path of the repository).
fn the_entry_points_import_sops_nix() -> Result<(), Failed> {
    let dir = scratch_with_plan()?;
    let expr = format!(
        r#"let
  repo = {repo};
  flake = import (repo + "/flake.nix");
  machines = import (repo + "/deployments");
  lib = {{
    genAttrs = names: f: builtins.listToAttrs (map (name: {{ inherit name; value = f name; }}) names);
    hasSuffix = suffix: s: builtins.match ".*${{suffix}}" s != null;
    removeSuffix = suffix: s: builtins.head (builtins.match "(.*)${{suffix}}" s);
    nixosSystem = args: args;
    licenses.eupl12 = "eupl12";
  }};
  pkgs = {{ inherit lib; rustPlatform.buildRustPackage = args: args; }};
  nixpkgs = {{ inherit lib; legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (_: pkgs); }};
  inputs = {{
    self = outputs;
    inherit nixpkgs;
    nixops4.lib.mkRoot = args: args;
    nixops4.modules.nixops4Provider.local = "local-provider-stub";
    nixops4-nixos.modules.nixops4Component.nixos = "nixos-component-stub";
    sops-nix.nixosModules.sops = "sops-nix-stub";
  }};
  outputs = flake.outputs inputs;
  root = import (repo + "/deployments/nixops4.nix") {{ inherit inputs; providers.local.exec = "exec-stub"; }};
  sops = import (repo + "/deployments/sops.nix");
in {{
  input = flake.inputs.sops-nix.url;
  follows = flake.inputs.sops-nix.inputs.nixpkgs.follows;
  configurations = builtins.mapAttrs (name: c: c.modules == [ machines.${{name}} "sops-nix-stub" ]) outputs.nixosConfigurations;
  members = builtins.mapAttrs (name: m: m.nixos.module == {{ imports = [ machines.${{name}} "sops-nix-stub" ]; }}) root.members;
  sopsFile = builtins.isPath sops.sops.defaultSopsFile && sops.sops.defaultSopsFile == repo + "/examples/sops/secrets.yaml";
  sopsFileExists = builtins.pathExists sops.sops.defaultSopsFile;
}}"#,
        repo = dir.path().display()
    );
    let value = eval_expr(&expr)?;
    let machines = ["dijkstad-mastodon", "dijkstad-matrix-synapse", "garage-p1"];
    let all = |what: &str| {
        let set = value[what].as_object().cloned().unwrap_or_default();
        set.len() == machines.len()
            && machines
                .iter()
                .all(|m| set.get(*m) == Some(&Value::Bool(true)))
    };
    if value["input"] != "github:Mic92/sops-nix"
        || value["follows"] != "nixpkgs"
        || !all("configurations")
        || !all("members")
        || value["sopsFile"] != true
        || value["sopsFileExists"] != true
    {
        return Err(format!("the entry points do not import sops-nix as expected: {value}").into());
    }
    Ok(())
}

/// Every machine of the sops example, evaluated with `lib.evalModules` against sops-nix's real `modules/sops`
/// (and `gen/tests/nix/nixos-options.nix` for the rest): its evaluated `sops.secrets` are exactly its
/// `fediversity.secrets` (path, owner, group, mode), each with the key README documents, its reading unit in
/// `restartUnits`, and the repository's sops file as `sopsFile`; sops-nix's assertions (a key source, owner or
/// uid) and the generated modules' all hold.
fn machines_evaluate_with_the_real_sops_nix() -> Result<(), Failed> {
    let value = eval_sops("{ }")?;
    let machines = value.as_object().ok_or("not a set of machines")?;
    let mut found = Vec::new();
    let keys: BTreeMap<&str, &str> = [
        ("/run/secrets/mastodon-smtp-password", "smtp-password"),
        // Synapse reads the SMTP password from a file of its own (the `email` section it writes at start).
        ("/run/secrets/matrix-synapse-smtp-password", "smtp-password"),
        ("/run/secrets/dijkstad-synapse", "dijkstad-synapse"),
        (
            "/var/lib/secrets/garage-environment",
            "provider/garage/environment",
        ),
        // Each application's S3 key (README's key table: one key per operator's application).
        (
            "/run/secrets/mastodon-s3-key",
            "provider/garage/s3-keys/dijkstad/mastodon",
        ),
        (
            "/run/secrets/matrix-synapse-s3-key",
            "provider/garage/s3-keys/dijkstad/matrix-synapse",
        ),
    ]
    .into();
    for (name, m) in machines {
        if m["failedAssertions"] != Value::Array(vec![]) {
            found.push(format!(
                "{name}: failed assertions {}",
                m["failedAssertions"]
            ));
        }
        let declared = m["declared"].as_object().cloned().unwrap_or_default();
        let sops = m["sops"].as_object().cloned().unwrap_or_default();
        if declared.is_empty() || declared.len() != sops.len() {
            found.push(format!(
                "{name}: {} secrets, {} sops secrets",
                declared.len(),
                sops.len()
            ));
        }
        for (secret, d) in &declared {
            let path = d["path"].as_str().unwrap_or_default();
            let Some(s) = sops.values().find(|s| s["path"] == d["path"]) else {
                found.push(format!("{name}: {secret} has no sops secret at {path}"));
                continue;
            };
            for field in ["owner", "group", "mode"] {
                if s[field] != d[field] {
                    found.push(format!(
                        "{name}: {secret}: sops {field} {} is not {}",
                        s[field], d[field]
                    ));
                }
            }
            if s["restartUnits"] != Value::Array(vec![d["unit"].clone()]) {
                found.push(format!(
                    "{name}: {secret}: restartUnits {}",
                    s["restartUnits"]
                ));
            }
            if keys.get(path).is_none_or(|k| s["key"] != *k) {
                found.push(format!("{name}: {secret}: key {}", s["key"]));
            }
            if s["format"] != "yaml" || s["sopsFileIsTheRepositorys"] != true {
                found.push(format!(
                    "{name}: {secret}: the sops file or format is not the specification's: {s}"
                ));
            }
        }
    }
    if machines.len() != 3 {
        found.push(format!("{} machines evaluated, not 3", machines.len()));
    }
    failures(found)
}

/// Evaluates the sops example's machines with `gen/tests/nix/eval-sops.nix` (sops-nix's real module) and a
/// further module `extra` (Nix text) in each.
fn eval_sops(extra: &str) -> Result<Value, Failed> {
    let sops_nix = var("FEDIGEN_SOPS_NIX").ok_or("FEDIGEN_SOPS_NIX is not set")?;
    let nixpkgs = var("FEDIGEN_NIXPKGS").ok_or("FEDIGEN_NIXPKGS is not set")?;
    let dir = scratch_with_plan()?;
    let out = nix_command("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(repository().join("gen/tests/nix/eval-sops.nix"))
        .args(["--arg", "nixpkgs"])
        .arg(&nixpkgs)
        .args(["--arg", "sopsNix"])
        .arg(&sops_nix)
        .args(["--arg", "repository"])
        .arg(dir.path())
        .args(["--arg", "extra", extra])
        .output()?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The evaluation with sops-nix's real module can fail: without any key source its assertion fails on every
/// machine, and a misspelt option of a secret (`onwer`) is refused by its submodule.
fn the_real_sops_nix_finds_planted_faults() -> Result<(), Failed> {
    let value = eval_sops(
        "{ lib, ... }: { sops.age.sshKeyPaths = lib.mkForce [ ]; sops.gnupg.sshKeyPaths = lib.mkForce [ ]; }",
    )?;
    let machines = value.as_object().ok_or("not a set of machines")?;
    let no_key = |m: &Value| {
        m["failedAssertions"].as_array().is_some_and(|a| {
            a.iter().any(|x| {
                x.as_str()
                    .is_some_and(|x| x.starts_with("No key source configured for sops"))
            })
        })
    };
    if machines.len() != 3 || !machines.values().all(no_key) {
        return Err(format!("no key source, yet sops-nix's assertion holds: {value}").into());
    }
    match eval_sops("{ sops.secrets.dijkstad-synapse.onwer = \"root\"; }") {
        Err(e) if e.message().is_some_and(|m| m.contains("onwer")) => Ok(()),
        Err(e) => Err(format!(
            "the misspelt option failed otherwise: {}",
            e.message().unwrap_or_default()
        )
        .into()),
        Ok(v) => Err(format!("a misspelt sops option evaluated: {v}").into()),
    }
}

fn main() {
    let has_sops_nix =
        var("FEDIGEN_SOPS_NIX").is_some_and(|p| p.join("modules/sops/default.nix").is_file());
    let has_lib = var("FEDIGEN_NIXPKGS").is_some_and(|p| p.join("lib/default.nix").is_file());
    let trials: Vec<support::GatedTrial> = vec![
        (
            "the_sops_example_keeps_the_contracts",
            true,
            the_sops_example_keeps_the_contracts as fn() -> Result<(), Failed>,
            "",
        ),
        (
            "the_sops_contract_finds_planted_faults",
            true,
            the_sops_contract_finds_planted_faults,
            "",
        ),
        (
            "no_secret_value_or_decrypted_path_is_generated",
            true,
            no_secret_value_or_decrypted_path_is_generated,
            "",
        ),
        (
            "the_entry_points_import_sops_nix",
            true,
            the_entry_points_import_sops_nix,
            "",
        ),
        (
            "machines_evaluate_with_the_real_sops_nix",
            has_sops_nix && has_lib,
            machines_evaluate_with_the_real_sops_nix,
            "needs sops-nix and nixpkgs' lib: set FEDIGEN_SOPS_NIX to a checkout of github:Mic92/sops-nix and \
             FEDIGEN_NIXPKGS to a nixpkgs (or nixpkgs.lib) checkout",
        ),
        (
            "the_real_sops_nix_finds_planted_faults",
            has_sops_nix && has_lib,
            the_real_sops_nix_finds_planted_faults,
            "needs sops-nix and nixpkgs' lib: set FEDIGEN_SOPS_NIX to a checkout of github:Mic92/sops-nix and \
             FEDIGEN_NIXPKGS to a nixpkgs (or nixpkgs.lib) checkout",
        ),
    ];
    support::run_gated(trials)
}
