//! The NixOps4 deployment and the flake's outputs, evaluated by the real Nix evaluator.
//!
//! Two trials need nothing but Nix: the generated `deployments/nixops4.nix` with stand-in inputs (one member per
//! machine, the machine's module, the key of the host-key file as a literal string), and `flake.nix`'s `outputs`
//! with stand-in inputs (a `nixops4` output made by `mkRoot`, `checks.x86_64-linux.fedigen` being the package). The
//! third evaluates the deployment through the real nixops4 `mkRoot` and the real nixops4-nixos component when
//! `FEDIGEN_NIXOPS4` and `FEDIGEN_NIXOPS4_NIXOS` point at checkouts of them and `FEDIGEN_NIXPKGS` at one of
//! nixpkgs (its `lib/` is enough): only the flake wrappers around their modules (`withSystem`, `self`) and
//! nixpkgs' `nixosSystem` are stood in for. Without them it is reported ignored, with the reason printed.
//!
//! A libtest-mimic harness, so that whether a trial is ignored is decided when the tests run.

use std::path::{Path, PathBuf};

use libtest_mimic::Failed;
use serde_json::Value;

mod support;
use support::{nix_command, repository, scratch_repository};

fn var(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).map(PathBuf::from)
}

/// Evaluates a Nix expression strictly to JSON with the real evaluator (read-only: nothing is written to a store).
fn eval_expr(expr: &str) -> Result<Value, Failed> {
    let out = nix_command("nix-instantiate")
        .args(["--eval", "--strict", "--json", "--expr", expr])
        .output()?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The machine names of `deployments/default.nix`, and the keys of the example's host-key file, from Nix.
const MACHINES: &str = r#"
  machines = import (repo + "/deployments");
  keys = builtins.fromTOML (builtins.readFile (repo + "/examples/provider.host-keys.toml"));
"#;

/// The generated deployment with stand-in inputs: every machine of `deployments/default.nix` is a member at the
/// root, of type `providers.local.exec`, importing nixops4-nixos' `nixops4Component.nixos`, deploying the module
/// of `default.nix`, with the key of `examples/provider.host-keys.toml` as a literal string and a fully qualified
/// host (a dot in it: an FQDN or an IPv4 address); and nothing of the old form (`resources`, a `throw`).
fn the_deployment_evaluates_with_stub_inputs() -> Result<(), Failed> {
    let repo = repository();
    let text = std::fs::read_to_string(repo.join("deployments/nixops4.nix"))?;
    for old in ["resources", "nixops4Resource", "throw", "host-keys.nix"] {
        if text.contains(old) {
            return Err(format!("deployments/nixops4.nix still has `{old}`").into());
        }
    }
    let expr = format!(
        r#"let
  repo = {repo};
  {MACHINES}
  inputs = {{
    nixpkgs = "nixpkgs-stub";
    nixops4.modules.nixops4Provider.local = "local-provider-stub";
    nixops4-nixos.modules.nixops4Component.nixos = "nixos-component-stub";
  }};
  root = import (repo + "/deployments/nixops4.nix") {{ inherit inputs; providers.local.exec = "exec-stub"; }};
  check = name: m: {{
    type = m.type == "exec-stub";
    imports = m.imports == [ "nixos-component-stub" ];
    nixpkgs = m.nixpkgs == "nixpkgs-stub";
    module = m.nixos.module == machines.${{name}};
    key = m.ssh.hostPublicKey == keys.${{name}};
    host = builtins.match ".*[.].*" m.ssh.host != null;
    user = m.ssh.user == "root";
  }};
in {{
  provider = root.providers.local == "local-provider-stub";
  members = builtins.attrNames root.members;
  machines = builtins.attrNames machines;
  checks = builtins.mapAttrs check root.members;
}}"#,
        repo = repo.display()
    );
    let value = eval_expr(&expr)?;
    if value["provider"] != true || value["members"] != value["machines"] {
        return Err(format!("members are not the machines: {value}").into());
    }
    if value["members"].as_array().is_none_or(|m| m.is_empty()) {
        return Err("no members".into());
    }
    for (member, checks) in value["checks"].as_object().ok_or("no checks")? {
        for (what, ok) in checks.as_object().ok_or("not a set")? {
            if ok != true {
                return Err(format!("member {member}: {what} is wrong").into());
            }
        }
    }
    Ok(())
}

/// `flake.nix` follows a supported release with the NixOps4 inputs, and its outputs, evaluated with stand-in
/// inputs, include `nixops4` (made by `mkRoot` from `deployments/nixops4.nix`, with the flake's inputs as a
/// module argument) and `checks.x86_64-linux.fedigen` (the package), beside the VM tests.
fn the_flake_has_the_nixops4_output_and_the_fedigen_check() -> Result<(), Failed> {
    let repo = repository();
    let expr = format!(
        r#"let
  repo = {repo};
  flake = import (repo + "/flake.nix");
  lib = {{
    genAttrs = names: f: builtins.listToAttrs (map (name: {{ inherit name; value = f name; }}) names);
    hasSuffix = suffix: s: builtins.match ".*${{suffix}}" s != null;
    removeSuffix = suffix: s: builtins.head (builtins.match "(.*)${{suffix}}" s);
    nixosSystem = args: args;
    licenses.eupl12 = "eupl12";
    cleanSource = src: src;
    cleanSourceWith = args: args.src;
  }};
  # `callPackage` as nixpkgs' reads it for package.nix: the function's arguments from `pkgs`, then the overrides.
  pkgs = {{
    inherit lib;
    rustPlatform.buildRustPackage = args: args // {{ built = true; }};
    callPackage = file: overrides: let f = import file; in
      f (builtins.intersectAttrs (builtins.functionArgs f) pkgs // overrides);
  }};
  nixpkgs = {{ inherit lib; legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (_: pkgs); }};
  inputs = {{
    self = outputs;
    inherit nixpkgs;
    nixops4.lib.mkRoot = args: args // {{ _type = "nixops4Component"; }};
    nixops4-nixos = {{ }};
  }};
  outputs = flake.outputs inputs;
in {{
  nixpkgs = flake.inputs.nixpkgs.url;
  follows = [ flake.inputs.nixops4.inputs.nixpkgs.follows flake.inputs.nixops4-nixos.inputs.nixpkgs.follows ];
  urls = [ flake.inputs.nixops4.url flake.inputs.nixops4-nixos.url ];
  root = outputs.nixops4._type;
  rootModules = outputs.nixops4.modules == [ (repo + "/deployments/nixops4.nix") ];
  rootInputs = outputs.nixops4.specialArgs.inputs == inputs;
  fedigen = outputs.checks.x86_64-linux.fedigen.pname;
  fedigenIsThePackage = outputs.checks.x86_64-linux.fedigen == outputs.packages.x86_64-linux.default;
  checks = builtins.attrNames outputs.checks.x86_64-linux;
}}"#,
        repo = repo.display()
    );
    let value = eval_expr(&expr)?;
    let expected = serde_json::json!({
        "nixpkgs": "github:NixOS/nixpkgs/nixos-26.05",
        "follows": ["nixpkgs", "nixpkgs"],
        "urls": ["github:nixops4/nixops4", "github:nixops4/nixops4-nixos"],
        "root": "nixops4Component",
        "rootModules": true,
        "rootInputs": true,
        "fedigen": "fedigen",
        "fedigenIsThePackage": true,
    });
    for (key, want) in expected.as_object().unwrap() {
        if &value[key] != want {
            return Err(format!("flake: {key} is {}, expected {want}", value[key]).into());
        }
    }
    let checks = value["checks"].as_array().ok_or("no checks")?;
    if !checks.contains(&Value::from("mastodon")) || checks.len() < 2 {
        return Err(format!("the VM tests are no longer checks: {value}").into());
    }
    Ok(())
}

/// The deployment through the real `mkRoot` of nixops4 and the real `nixops4Component.nixos` of nixops4-nixos:
/// every machine is a resource of the root's export whose command copies to and switches `root@<host>`, with a
/// `known_hosts` of exactly `<host> <key of the host-key file>`, and builds the machine's own module (the
/// stand-in `nixosSystem` names the module files it was given as the "toplevel").
fn the_deployment_evaluates_with_real_nixops4() -> Result<(), Failed> {
    let repo = repository();
    let nixops4 = var("FEDIGEN_NIXOPS4").ok_or("FEDIGEN_NIXOPS4 is not set")?;
    let nixos = var("FEDIGEN_NIXOPS4_NIXOS").ok_or("FEDIGEN_NIXOPS4_NIXOS is not set")?;
    let nixpkgs = var("FEDIGEN_NIXPKGS").ok_or("FEDIGEN_NIXPKGS is not set")?;
    let expr = format!(
        r#"let
  repo = {repo};
  {MACHINES}
  lib = import {nixpkgs}/lib;
  stubPkgs = {{ bash = {{ outPath = "/nix/store/00000000000000000000000000000000-bash"; meta.mainProgram = "bash"; }}; }};
  # The files a deferred module imports, through nixpkgs' own wrapping (`_file` + `imports`).
  importsOf = m:
    if builtins.isPath m then [ (toString m) ]
    else if builtins.isAttrs m then lib.concatMap importsOf (m.imports or [ ])
    else [ ];
  stubNixpkgs = {{
    lib = lib // {{
      nixosSystem = args: {{
        config.system.build.toplevel = builtins.concatStringsSep "," (importsOf (builtins.head args.modules));
      }};
    }};
  }};
  nixops4Lib = import {nixops4}/nix/lib/lib.nix {{
    inherit lib;
    self = {{ }};
    selfWithSystem = system: f: f {{ pkgs = stubPkgs; }};
  }};
  inputs = {{
    nixpkgs = stubNixpkgs;
    nixops4.modules.nixops4Provider.local = import {nixops4}/nix/providers/local.nix {{
      withSystem = system: f: f {{ config.packages.nixops4-resources-local-release = "/nix/store/00000000000000000000000000000000-local"; }};
    }};
    nixops4-nixos.modules.nixops4Component.nixos = import {nixos}/modules/nixops4Resource/nixos.nix {{
      self.modules.nixos.apply = {nixos}/modules/nixos/apply/nixos-apply.nix;
      withSystem = system: f: f {{ pkgs = stubPkgs; }};
    }};
  }};
  root = nixops4Lib.mkRoot {{
    specialArgs = {{ inherit inputs; }};
    modules = [ (repo + "/deployments/nixops4.nix") ];
  }};
  exported = (root.rootFunction {{ resourceProviderSystem = "x86_64-linux"; outputValues = {{ }}; }}).members;
  check = name: member:
    let
      args = member.resource.inputs.args;
      target = builtins.elemAt args 2;
      host = lib.removePrefix "root@" target;
      knownHosts = builtins.toFile "known_hosts" "${{host}} ${{keys.${{name}}}}\n";
      # Compared as plain text (a regular expression may not hold store paths).
      plain = builtins.unsafeDiscardStringContext;
    in {{
      type = member.resource.type;
      user = lib.hasPrefix "root@" target;
      fqdn = builtins.match ".*[.].*" host != null;
      knownHosts = lib.hasInfix (plain "UserKnownHostsFile=${{knownHosts}}") (plain (builtins.elemAt args 1));
      module = builtins.elemAt args 3 == toString machines.${{name}};
    }};
in {{
  members = builtins.attrNames exported;
  machines = builtins.attrNames machines;
  checks = builtins.mapAttrs check exported;
}}"#,
        repo = repo.display(),
        nixpkgs = nixpkgs.display(),
        nixops4 = nixops4.display(),
        nixos = nixos.display(),
    );
    let value = eval_expr(&expr)?;
    if value["members"] != value["machines"] {
        return Err(format!("the root's members are not the machines: {value}").into());
    }
    let checks = value["checks"].as_object().ok_or("no checks")?;
    if checks.is_empty() {
        return Err("no members".into());
    }
    for (member, checks) in checks {
        for (what, ok) in checks.as_object().ok_or("not a set")? {
            let want = if what == "type" {
                Value::from("exec")
            } else {
                Value::Bool(true)
            };
            if ok != &want {
                return Err(format!("member {member}: {what} is {ok}").into());
            }
        }
    }
    eprintln!(
        "real nixops4 mkRoot + nixops4-nixos component: {} members checked",
        checks.len()
    );
    Ok(())
}

/// Runs `fedigen validate` on a copy of the example specification with the given host-key file (or none), from
/// the copy's folder; its exit code and standard error.
fn validate_with(host_keys: Option<&str>) -> Result<(Option<i32>, String), Failed> {
    let repo = repository();
    let dir = tempfile::tempdir()?;
    std::fs::copy(
        repo.join("examples/provider.toml"),
        dir.path().join("provider.toml"),
    )?;
    if let Some(text) = host_keys {
        std::fs::write(dir.path().join("provider.host-keys.toml"), text)?;
    }
    let out = nix_command(env!("CARGO_BIN_EXE_fedigen"))
        .args(["validate", "provider.toml", "--templates"])
        .arg(repo.join("templates"))
        .current_dir(dir.path())
        .output()?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `fedigen validate` on host keys: none yet is a note (the machines may not exist), a machine without a key once
/// the file exists and a malformed key are errors (exit 2) naming the file, line and column, and the machine, and
/// saying how to get the key.
fn validate_reports_missing_and_malformed_host_keys() -> Result<(), Failed> {
    let example = std::fs::read_to_string(repository().join("examples/provider.host-keys.toml"))?;
    let (code, stderr) = validate_with(None)?;
    if code != Some(0)
        || !stderr.contains("note: no SSH host keys yet (provider.host-keys.toml does not exist)")
    {
        return Err(format!("no file: {code:?} {stderr}").into());
    }
    let (code, stderr) = validate_with(Some(&example))?;
    if code != Some(0) || stderr.contains("host key") {
        return Err(format!("every key: {code:?} {stderr}").into());
    }
    let without: String = example
        .lines()
        .filter(|l| !l.starts_with("garage-ams2 ") && !l.starts_with("amstelland-mastodon "))
        .map(|l| format!("{l}\n"))
        .collect();
    // What to scan is where the deployment connects: the machine's target (an address or a qualified name).
    let repo = repository();
    let (spec, catalog) = fedigen::deploy::load_spec(&repo, &repo.join("examples/provider.toml"))?;
    let target = |name: &str| {
        fedigen::deploy::machines(&spec, &catalog)
            .into_iter()
            .find(|m| m.name == name)
            .map(|m| m.deploy_target().host)
            .unwrap_or_default()
    };
    let (code, stderr) = validate_with(Some(&without))?;
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    if code != Some(2)
        || errors.len() != 2
        || !errors[0].starts_with(
            "error: provider.host-keys.toml: no SSH host key for machine `amstelland-mastodon`",
        )
        || !errors[0].contains(&format!(
            "`ssh-keyscan -t ed25519 {}`",
            target("amstelland-mastodon")
        ))
        || !errors[1].contains("machine `garage-ams2`")
        || !errors[1].contains(&format!(
            "`ssh-keyscan -t ed25519 {}`",
            target("garage-ams2")
        ))
    {
        return Err(format!("missing keys: {code:?} {stderr}").into());
    }
    let cut = example.replacen(
        "garage-ams1 = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI",
        "garage-ams1 = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA",
        1,
    );
    let line = example
        .lines()
        .position(|l| l.starts_with("garage-ams1 "))
        .ok_or("no garage-ams1")?
        + 1;
    let (code, stderr) = validate_with(Some(&cut))?;
    let want = format!(
        "error: provider.host-keys.toml:{line}:15: the host key of machine `garage-ams1` is not an SSH public key"
    );
    if code != Some(2) || !stderr.starts_with(&want) {
        return Err(format!("malformed key: {code:?} {stderr}").into());
    }
    Ok(())
}

/// Before any host key is known (the machines do not exist yet), the deployment is still generated: a valid
/// module with no members, whose header names every machine left out and the file their keys go in.
fn without_host_keys_every_machine_is_left_out_by_name() -> Result<(), Failed> {
    let repo = repository();
    let (spec, catalog) = fedigen::deploy::load_spec(&repo, &repo.join("examples/provider.toml"))?;
    let files = fedigen::deploy::plan(&spec, &catalog, "examples/provider.toml")?;
    let text = &files[Path::new("deployments/nixops4.nix")];
    let machines = fedigen::deploy::machines(&spec, &catalog);
    let header = text.lines().nth(1).unwrap_or_default();
    let names: Vec<&str> = machines.iter().map(|m| m.name.as_str()).collect();
    if !header.contains("examples/provider.host-keys.toml")
        || !header.contains(&format!(
            "(`fedigen validate` lists them): {}.",
            names.join(", ")
        ))
    {
        return Err(format!("header: {header}").into());
    }
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("nixops4.nix");
    std::fs::write(&file, text)?;
    let value = eval_expr(&format!(
        r#"builtins.attrNames (import {} {{ inputs.nixops4.modules.nixops4Provider.local = null; providers = {{ }}; }}).members"#,
        file.display()
    ))?;
    if value != serde_json::json!([]) {
        return Err(format!("members without keys: {value}").into());
    }
    Ok(())
}

/// A malformed host key stops `fedigen generate` (exit 2) with the file, line, column and machine, and nothing
/// is written.
fn generate_refuses_a_malformed_host_key() -> Result<(), Failed> {
    let repo = scratch_repository();
    let keys = repo.path().join("examples/provider.host-keys.toml");
    let text = std::fs::read_to_string(&keys)?;
    let line = text
        .lines()
        .position(|l| l.starts_with("garage-ams2 "))
        .ok_or("no garage-ams2")?
        + 1;
    std::fs::write(
        &keys,
        text.replace("garage-ams2 = \"ssh-ed25519", "garage-ams2 = \"ssh-dss"),
    )?;
    let out = nix_command(env!("CARGO_BIN_EXE_fedigen"))
        .arg("generate")
        .current_dir(repo.path())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "error: examples/provider.host-keys.toml:{line}:15: the host key of machine `garage-ams2` is not an SSH \
         public key: `ssh-dss` is not a host key type"
    );
    if out.status.code() != Some(2) || !stderr.starts_with(&want) {
        return Err(format!("{:?}: {stderr}", out.status.code()).into());
    }
    if repo.path().join("deployments").exists() || repo.path().join("modules").exists() {
        return Err("generate wrote files although a host key was malformed".into());
    }
    Ok(())
}

fn main() {
    let has = |name: &str, file: &str| var(name).is_some_and(|p| p.join(file).is_file());
    let real = has("FEDIGEN_NIXOPS4", "nix/lib/lib.nix")
        && has("FEDIGEN_NIXOPS4_NIXOS", "modules/nixops4Resource/nixos.nix")
        && has("FEDIGEN_NIXPKGS", "lib/default.nix");
    let trials: Vec<support::GatedTrial> = vec![
        (
            "the_deployment_evaluates_with_stub_inputs",
            true,
            the_deployment_evaluates_with_stub_inputs as fn() -> Result<(), Failed>,
            "",
        ),
        (
            "the_flake_has_the_nixops4_output_and_the_fedigen_check",
            true,
            the_flake_has_the_nixops4_output_and_the_fedigen_check,
            "",
        ),
        (
            "without_host_keys_every_machine_is_left_out_by_name",
            true,
            without_host_keys_every_machine_is_left_out_by_name,
            "",
        ),
        (
            "generate_refuses_a_malformed_host_key",
            true,
            generate_refuses_a_malformed_host_key,
            "",
        ),
        (
            "validate_reports_missing_and_malformed_host_keys",
            true,
            validate_reports_missing_and_malformed_host_keys,
            "",
        ),
        (
            "the_deployment_evaluates_with_real_nixops4",
            real,
            the_deployment_evaluates_with_real_nixops4,
            "needs checkouts: FEDIGEN_NIXOPS4 (nixops4), FEDIGEN_NIXOPS4_NIXOS (nixops4-nixos) and \
             FEDIGEN_NIXPKGS (nixpkgs, or nixpkgs.lib)",
        ),
    ];
    support::run_gated(trials);
}
