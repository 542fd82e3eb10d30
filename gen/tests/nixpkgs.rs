//! Tests that need nixpkgs, which these machines do not have: the generated modules evaluated by nixpkgs'
//! module system. They run when `FEDIGEN_NIXPKGS` points at a nixpkgs checkout (or at a checkout of nixpkgs'
//! `lib` alone, e.g. nix-community/nixpkgs.lib, for the `lib.evalModules` trial); otherwise each is reported
//! ignored, with the reason printed — never passed.
//!
//! A libtest-mimic harness, so that whether a trial is ignored is decided when the tests run.

use std::path::{Path, PathBuf};
use std::process::Command;

use libtest_mimic::Failed;
use serde_json::Value;

mod support;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn nixpkgs() -> Option<PathBuf> {
    std::env::var_os("FEDIGEN_NIXPKGS").map(PathBuf::from)
}

fn eval_modules(settings: &str) -> Result<Value, String> {
    eval_modules_with(settings, "{ }")
}

/// [`eval_modules`] with a further module `extra` (Nix text).
fn eval_modules_with(settings: &str, extra: &str) -> Result<Value, String> {
    let nixpkgs = nixpkgs().ok_or("FEDIGEN_NIXPKGS is not set")?;
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(repository().join("gen/tests/nix/eval-modules.nix"))
        .arg("--arg")
        .arg("nixpkgs")
        .arg(&nixpkgs)
        .arg("--arg")
        .arg("modules")
        .arg(repository().join("modules"))
        .args(["--arg", "settings", settings])
        .args(["--arg", "extra", extra])
        .output()
        .map_err(|e| format!("nix-instantiate: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// Evaluates a Nix expression strictly to JSON with the real evaluator.
fn eval_expr(expr: &str) -> Result<Value, Failed> {
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json", "--expr", expr])
        .output()?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Options are declared with their defaults and types, disabled applications configure nothing, and enabled
/// ones map onto the upstream options as the templates say.
fn modules_evaluate_with_lib_eval_modules() -> Result<(), Failed> {
    let result = eval_modules("{ }")?;
    let check = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(Failed::from(format!("{what}: {result}")))
        }
    };
    check(
        result["disabled"] == serde_json::json!({}),
        "disabled applications must configure nothing",
    )?;
    let services = &result["enabled"];
    check(
        services["mastodon"]["localDomain"] == "mastodon.uu.example",
        "Mastodon's domain",
    )?;
    check(
        services["mastodon"]["streamingProcesses"] == 1,
        "manifest default",
    )?;
    // Pixelfed's one secret file is joined on the machine from the application's and the provider's files.
    check(
        services["pixelfed"]["secretFile"] == "/run/pixelfed-secrets/env",
        "secrets are runtime paths",
    )?;
    check(
        services["peertube"]["localDomain"] == "peertube.uu.example",
        "PeerTube's domain",
    )?;
    check(
        services["matrix-synapse"]["settings"]["public_baseurl"] == "https://matrix.uu.example/",
        "Synapse URL",
    )?;
    check(
        services["garage"]["settings"]["replication_factor"] == 1,
        "Garage replication",
    )?;
    let ports = result["networking"]["firewall"]["allowedTCPPorts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    check(
        // Garage: RPC between the nodes only; S3, web and admin listen on loopback, behind nginx (443).
        ports.contains(&Value::from(443))
            && ports.contains(&Value::from(3901))
            && ![3900, 3902, 3903]
                .iter()
                .any(|p| ports.contains(&Value::from(*p))),
        "ports of every application",
    )?;

    // Every application whose upstream module the checkout has: the values the generated module gives it were
    // read through upstream's options (names and types upstream's own).
    let upstream = &result["upstream"];
    for app in upstream["loaded"].as_array().into_iter().flatten() {
        let Some(app) = app.as_str().filter(|a| *a != "proxmox-image") else {
            continue;
        };
        let checked = upstream["checked"][app]
            .as_array()
            .cloned()
            .unwrap_or_default();
        check(
            checked.contains(&Value::from(format!("services.{app}.enable"))) && checked.len() > 3,
            &format!("the values given to upstream's services.{app}"),
        )?;
        eprintln!(
            "services.{app}: {} values checked by upstream's options",
            checked.len()
        );
    }
    // A value of the wrong type for an upstream option fails where the checkout has the module.
    if upstream["loaded"]
        .as_array()
        .is_some_and(|l| l.contains(&Value::from("mastodon")))
    {
        match eval_modules_with(
            "{ }",
            "{ lib, ... }: { services.mastodon.smtp.port = lib.mkForce \"587\"; }",
        ) {
            Err(e) if e.contains("services.mastodon.smtp.port") && e.contains("is not of type") => {
            }
            other => {
                return Err(format!("a string for upstream's port must fail: {other:?}").into());
            }
        }
    }

    let changed =
        eval_modules("{ mastodon.streamingProcesses = 4; pixelfed.maxPhotoSizeKiB = 20; }")?;
    if changed["enabled"]["mastodon"]["streamingProcesses"] != 4
        || changed["enabled"]["pixelfed"]["maxUploadSize"] != "20K"
    {
        return Err(format!("settings do not reach the upstream options: {changed}").into());
    }
    match eval_modules("{ mastodon.streamingProcesses = 0; }") {
        Err(e) if e.contains("fediversity.mastodon.streamingProcesses") => Ok(()),
        other => Err(format!(
            "a value outside the manifest's range must be a type error: {other:?}"
        )
        .into()),
    }
}

/// With a full nixpkgs, every module evaluates inside a real NixOS configuration: the upstream options exist
/// with the names the templates use.
fn modules_evaluate_in_nixos() -> Result<(), Failed> {
    let nixpkgs = nixpkgs().ok_or("FEDIGEN_NIXPKGS is not set")?;
    let expr = format!(
        r#"let
  nixos = import {nixpkgs}/nixos/lib/eval-config.nix {{
    system = "x86_64-linux";
    modules = [
      {modules}/default.nix
      {{
        fediversity = {{
          domain = "uu.example";
          acme.email = "hostmaster@provider.example";
          smtp = {{ host = "smtp.provider.example"; fromAddress = "noreply@uu.example"; }};
          s3.endpoint = "https://s3.provider.example";
          mastodon.enable = true;
          pixelfed = {{ enable = true; appSecretsFile = "/run/secrets/pixelfed.env"; }};
          peertube = {{ enable = true; peertubeSecretFile = "/run/secrets/peertube"; }};
          matrix-synapse = {{ enable = true; synapseSecretsFile = "/run/secrets/synapse.yaml"; }};
          garage = {{ enable = true; environmentFile = "/run/secrets/garage.env"; }};
        }};
        boot.loader.grub.enable = false;
        fileSystems."/".device = "/dev/vda";
        system.stateVersion = "25.05";
      }}
    ];
  }};
in
[ nixos.config.services.mastodon.localDomain nixos.config.system.build.toplevel.drvPath ]"#,
        nixpkgs = nixpkgs.display(),
        modules = repository().join("modules").display()
    );
    let value = eval_expr(&expr)?;
    if value[0] != "mastodon.uu.example" || !value[1].as_str().is_some_and(|p| p.ends_with(".drv"))
    {
        return Err(format!("unexpected evaluation: {value}").into());
    }
    Ok(())
}

/// The values the generated modules set as defaults are defaults: every virtual host's and every upstream
/// `nginx` option's `enableACME` and `forceSSL`, and nginx's recommended gzip, optimisation and TLS settings. A
/// person, or a test with its own certificates, turns them off with a plain definition, no `lib.mkForce`.
/// Before they were defaults, such a definition was a conflict.
fn generated_defaults_yield_to_plain_overrides() -> Result<(), Failed> {
    let before = eval_modules("{ }")?;
    let services = &before["enabled"];
    // Each place as its path below `services`.
    let mut places: Vec<Vec<String>> = Vec::new();
    for (host, vhost) in services["nginx"]["virtualHosts"]
        .as_object()
        .into_iter()
        .flatten()
    {
        for key in ["enableACME", "forceSSL"] {
            if vhost[key] == true {
                places.push(vec![
                    "nginx".into(),
                    "virtualHosts".into(),
                    host.clone(),
                    key.into(),
                ]);
            }
        }
    }
    for (service, config) in services.as_object().into_iter().flatten() {
        for key in ["enableACME", "forceSSL"] {
            if config["nginx"][key] == true {
                places.push(vec![service.clone(), "nginx".into(), key.into()]);
            }
        }
    }
    for key in [
        "recommendedGzipSettings",
        "recommendedOptimisation",
        "recommendedTlsSettings",
    ] {
        if services["nginx"][key] == true {
            places.push(vec!["nginx".into(), key.into()]);
        }
    }
    if places.len() < 9 {
        return Err(format!("expected the TLS settings of three applications and nginx's recommended settings, found {places:?}").into());
    }
    // Host names are generated (`<subdomain>.uu.example`): quoting them needs no escapes.
    let extra: String = places
        .iter()
        .map(|path| {
            let quoted: Vec<String> = path.iter().map(|p| format!("\"{p}\"")).collect();
            format!("services.{} = false; ", quoted.join("."))
        })
        .collect();
    let after = eval_modules_with("{ }", &format!("{{ {extra}}}"))?;
    let wrong: Vec<&Vec<String>> = places
        .iter()
        .filter(|path| {
            path.iter()
                .fold(&after["enabled"], |at, part| &at[part.as_str()])
                != false
        })
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("not overridden: {wrong:?}").into())
    }
}

/// Evaluates every generated machine with `gen/tests/nix/eval-deployments.nix` (the real upstream modules the
/// checkout has, stand-ins for the rest) and a further module `extra` (Nix text) in each.
fn eval_deployments(extra: &str) -> Result<Value, String> {
    let nixpkgs = nixpkgs().ok_or("FEDIGEN_NIXPKGS is not set")?;
    let repo = repository();
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(repo.join("gen/tests/nix/eval-deployments.nix"))
        .arg("--arg")
        .arg("nixpkgs")
        .arg(&nixpkgs)
        .arg("--arg")
        .arg("repository")
        .arg(&repo)
        .args(["--arg", "extra", extra])
        .output()
        .map_err(|e| format!("nix-instantiate: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// Every generated machine of the example specification evaluates under `lib.evalModules`, enables the
/// upstream service of each application it runs (and Garage where a node shares it), and fails none of the
/// assertions the modules make of it (an application's needs, met by `deployments/provider.nix`) or that the
/// upstream modules the checkout has make. The machine contract holds on the evaluated configuration: host
/// and domain names, `nixpkgs.hostPlatform`, and — where the checkout has nixpkgs' `proxmox-image.nix`, so the
/// values are upstream's and not fedigen's idea of them — a root file system and a boot loader.
fn evaluated_contract_violations(extra: &str) -> Result<(Vec<String>, bool), Failed> {
    let repo = repository();
    let evaluated = eval_deployments(extra)?;
    let mut out = Vec::new();
    let machines = &evaluated["machines"];
    let upstream = evaluated["upstream"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    eprintln!(
        "upstream modules loaded from the checkout: {}",
        upstream
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let real_base = upstream.contains(&Value::from("proxmox-image"));
    let every_application_upstream = [
        "garage",
        "mastodon",
        "matrix-synapse",
        "peertube",
        "pixelfed",
    ]
    .iter()
    .all(|app| upstream.contains(&Value::from(*app)));
    let (spec, catalog) = fedigen::deploy::load_spec(&repo, &repo.join("examples/provider.toml"))?;
    let platform = match &spec.provider.runtime {
        fedigen::model::Runtime::Proxmox(p) => p.host_platform.clone(),
        fedigen::model::Runtime::Qemu(q) => q.host_platform.clone(),
        fedigen::model::Runtime::BareMetal(b) => b.host_platform.clone(),
    };
    let planned = fedigen::deploy::machines(&spec, &catalog);
    let mut provisioning = Vec::new();
    for machine in &planned {
        let evaluated = &machines[&machine.name];
        let mut wrong = Vec::new();
        if evaluated["hostName"] != machine.name.as_str() {
            wrong.push("networking.hostName");
        }
        if evaluated["domain"] != machine.domain.as_str() {
            wrong.push("networking.domain");
        }
        if evaluated["hostPlatform"] != platform.as_str() {
            wrong.push("nixpkgs.hostPlatform");
        }
        if evaluated["failedAssertions"] != serde_json::json!([]) {
            wrong.push("assertions");
        }
        if real_base
            && (evaluated["rootFileSystem"] != "/dev/disk/by-label/nixos"
                || evaluated["bootLoader"] != "grub /dev/vda")
        {
            wrong.push("root file system and boot loader (proxmox-image.nix)");
        }
        // The static addresses the spec gives are the uplink's, and the deployment reaches the machine at one of
        // them or at a qualified name.
        let mut addresses: Vec<String> = evaluated["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| Some(a.as_str()?.split('/').next()?.to_owned()))
            .collect();
        addresses.sort();
        let mut planned: Vec<String> = machine
            .addresses()
            .iter()
            .map(ToString::to_string)
            .collect();
        planned.sort();
        if addresses != planned {
            wrong.push("the uplink's static addresses");
        }
        let target = machine.deploy_target().host;
        if !addresses.contains(&target) && !target.contains('.') {
            wrong.push("the deployment target");
        }
        // Every declared secret is checked before the unit that reads it, and (where the checkout has every
        // application's upstream module, which declare the service users) its owner and group exist.
        let check = &evaluated["secretsCheck"];
        for (name, secret) in evaluated["secrets"].as_object().into_iter().flatten() {
            let unit = &secret["unit"];
            let listed = |field: &str| {
                check[field]
                    .as_array()
                    .is_some_and(|units| units.contains(unit))
            };
            if !listed("before") || !listed("requiredBy") {
                eprintln!(
                    "{}: secret {name} is not checked before {unit}",
                    machine.name
                );
                wrong.push("the secrets check's order");
            }
            if every_application_upstream
                && (secret["ownerExists"] != true || secret["groupExists"] != true)
            {
                eprintln!("{}: secret {name}: {secret}", machine.name);
                wrong.push("a secret's owner or group (no such user or group on the machine)");
            }
        }
        // Object storage: an application with buckets is given its key file, declared with its manifest's
        // reader; the machines running the provisioning unit are counted below.
        if let fedigen::deploy::MachineRole::Application { application, .. } = &machine.role
            && let Some(reads) = catalog.manifests[application].needs.s3_key_access()
        {
            let key_files = evaluated["s3KeyFiles"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let declared = evaluated["secrets"]
                .as_object()
                .into_iter()
                .flatten()
                .find(|(_, s)| {
                    s["owner"] == reads.owner()
                        && s["group"] == reads.group()
                        && s["unit"] == reads.unit()
                });
            if key_files.len() != 1 || declared.is_none() {
                eprintln!("{}: S3 key files {key_files:?}", machine.name);
                wrong.push("the application's S3 key file and its declaration");
            }
        }
        if evaluated["storageApply"] == true {
            provisioning.push(machine.name.clone());
        }
        let services = evaluated["services"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let runs = |service: &str| services.contains(&Value::from(service));
        match &machine.role {
            fedigen::deploy::MachineRole::Application { application, .. } => {
                let upstream = catalog.manifests[application]
                    .application
                    .upstream
                    .trim_start_matches("services.");
                if !runs(upstream) {
                    wrong.push("the application's upstream service");
                }
            }
            fedigen::deploy::MachineRole::GarageNode(_) => {
                if !runs("garage") {
                    wrong.push("services.garage");
                }
            }
        }
        if !wrong.is_empty() {
            out.push(format!("{}: {} wrong", machine.name, wrong.join(", ")));
        }
    }
    // Exactly one machine provisions the storage (Garage wants one layout writer).
    if provisioning.len() != 1 {
        out.push(format!(
            "exactly one machine must run fedigen-storage-apply, evaluated on {provisioning:?}"
        ));
    }
    // A node sharing an application's machine runs Garage there too.
    if let Some(storage) = &spec.provider.object_storage {
        for (node, config) in &storage.nodes {
            let name = config.machine.clone().unwrap_or(format!("garage-{node}"));
            if !machines[&name]["services"]
                .as_array()
                .is_some_and(|s| s.contains(&Value::from("garage")))
            {
                out.push(format!("Garage node {node} is not on {name}"));
            }
        }
    }
    let count = machines.as_object().map_or(0, |m| m.len());
    if count != planned.len() {
        out.push(format!("{count} machines, expected {}", planned.len()));
    }
    Ok((out, every_application_upstream))
}

/// Every generated machine of the example evaluates under `lib.evalModules` and keeps the contract on its
/// evaluated configuration (see [`evaluated_contract_violations`]).
fn deployments_evaluate_with_lib_eval_modules() -> Result<(), Failed> {
    let (violations, _) = evaluated_contract_violations("{ }")?;
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations.join("\n").into())
    }
}

/// The evaluated contract can fail: a machine whose uplink has another address, whose platform is another, and
/// (where the checkout has every application's module) a secret owned by a user no module declares.
fn the_evaluated_contract_finds_planted_faults() -> Result<(), Failed> {
    let planted = r#"{ lib, ... }: {
  systemd.network.networks."10-uplink".address = lib.mkForce [ "203.0.113.9/24" ];
  nixpkgs.hostPlatform = lib.mkForce "aarch64-linux";
  fediversity.secrets.planted = {
    path = "/run/secrets/planted";
    owner = "nosuchuser";
    group = "root";
    unit = "planted.service";
  };
}"#;
    let (violations, every_application_upstream) = evaluated_contract_violations(planted)?;
    let machines = 7;
    let found = |what: &str| violations.iter().filter(|v| v.contains(what)).count();
    if found("the uplink's static addresses") != machines
        || found("nixpkgs.hostPlatform") != machines
    {
        return Err(format!("not every planted fault found: {violations:#?}").into());
    }
    if every_application_upstream && found("a secret's owner or group") != machines {
        return Err(format!("the secret owned by no user not found: {violations:#?}").into());
    }
    Ok(())
}

/// A misspelt option fails the machines' evaluation as it fails in NixOS: the option trees around the
/// generated modules are declared by name, never one free-form `services` that accepts anything. Inside an
/// application whose upstream module the checkout has, a misspelt option of that module fails too.
fn a_misspelt_option_fails_evaluation() -> Result<(), Failed> {
    let evaluated = eval_deployments("{ }")?;
    // The definition, and the option NixOS says does not exist.
    let mut planted = vec![(
        "services.ngnix.enable = true;".to_owned(),
        "`services.ngnix'".to_owned(),
    )];
    for app in evaluated["upstream"].as_array().into_iter().flatten() {
        if let Some(app) = app.as_str().filter(|a| *a != "proxmox-image") {
            planted.push((
                format!("services.{app}.enabel = true;"),
                format!("`services.{app}.enabel'"),
            ));
        }
    }
    for (typo, option) in planted {
        match eval_deployments(&format!("{{ {typo} }}")) {
            Err(e) if e.contains(&option) && e.contains("does not exist") => {}
            Err(e) => return Err(format!("{typo}: failed, but not for the typo: {e}").into()),
            Ok(_) => return Err(format!("{typo} was accepted").into()),
        }
    }
    Ok(())
}

/// Every generated VM test evaluates (with stand-in packages), has the nodes it should, and its test script is
/// valid Python (parsed by Python's own `ast`).
fn vm_test_scripts_evaluate() -> Result<(), Failed> {
    let nixpkgs = nixpkgs().ok_or("FEDIGEN_NIXPKGS is not set")?;
    let dir = repository().join("vm-tests/generated");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "nix"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err("no generated VM tests".into());
    }
    for file in files {
        let out = Command::new("nix-instantiate")
            .args(["--eval", "--strict", "--json"])
            .arg(repository().join("gen/tests/nix/eval-vm-test.nix"))
            .arg("--arg")
            .arg("nixpkgs")
            .arg(&nixpkgs)
            .arg("--arg")
            .arg("file")
            .arg(&file)
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "{}: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let test: Value = serde_json::from_slice(&out.stdout)?;
        let script = test["script"].as_str().ok_or("no script")?;
        let nodes = test["nodes"].as_array().ok_or("no nodes")?;
        if !script.lines().any(|l| l == "start_all()")
            // A federation test's two servers are each other's clients.
            || !(nodes.contains(&Value::from("client"))
                || file
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("federation-")))
            || nodes.len() < 2
        {
            return Err(format!("{}: {test}", file.display()).into());
        }
        let mut python = Command::new("python3")
            .args(["-c", "import ast, sys; ast.parse(sys.stdin.read())"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        std::io::Write::write_all(&mut python.stdin.take().ok_or("stdin")?, script.as_bytes())?;
        let parsed = python.wait_with_output()?;
        if !parsed.status.success() {
            return Err(format!(
                "{}: the test script is not valid Python: {}\n{script}",
                file.display(),
                String::from_utf8_lossy(&parsed.stderr)
            )
            .into());
        }
    }
    Ok(())
}

/// The flake's outputs, evaluated with nixpkgs' `lib` and stand-in packages: one NixOS module per generated
/// application plus `default`, one check per generated VM test, and the `fedigen` package as a check.
fn flake_outputs_evaluate() -> Result<(), Failed> {
    let nixpkgs = nixpkgs().ok_or("FEDIGEN_NIXPKGS is not set")?;
    let expr = format!(
        r#"let
  flake = import {repo}/flake.nix;
  lib = import {nixpkgs}/lib;
  nixpkgs = {{ inherit lib; legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (_: {{ }}); }};
  outputs = flake.outputs {{ self = outputs; inherit nixpkgs; }};
in
{{
  modules = builtins.attrNames outputs.nixosModules;
  configurations = builtins.attrNames outputs.nixosConfigurations;
  checks = builtins.attrNames outputs.checks.x86_64-linux;
  systems = builtins.attrNames outputs.packages;
}}"#,
        repo = repository().display(),
        nixpkgs = nixpkgs.display()
    );
    let value = eval_expr(&expr)?;
    // A check per generated VM test (every `*.nix` of vm-tests/generated), and the package's own.
    let mut checks: Vec<String> = std::fs::read_dir(repository().join("vm-tests/generated"))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".nix").map(str::to_owned)
        })
        .chain(["fedigen".to_owned()])
        .collect();
    checks.sort();
    let expected = serde_json::json!({
        "modules": ["default", "garage", "mastodon", "matrix-synapse", "peertube", "pixelfed"],
        "checks": checks,
        "configurations": [
            "amstelland-mastodon", "amstelland-pixelfed", "digitalevrijheid-mastodon",
            "digitalevrijheid-matrix-synapse", "garage-ams1", "garage-ams2", "zeeinstituut-peertube"
        ],
        "systems": ["aarch64-linux", "x86_64-linux"],
    });
    if value != expected {
        return Err(format!("flake outputs: {value}, expected {expected}").into());
    }
    Ok(())
}

/// With a full nixpkgs: every generated machine's toplevel and every generated VM test instantiate to a
/// derivation (nothing is built). Machines are evaluated without `system`, as `nixosSystem` in the flake and in
/// NixOps4 does: each sets `nixpkgs.hostPlatform` itself.
fn everything_instantiates_with_nixpkgs() -> Result<(), Failed> {
    let nixpkgs = nixpkgs().ok_or("FEDIGEN_NIXPKGS is not set")?;
    let repo = repository();
    let expr = format!(
        r#"let
  nixpkgs = {nixpkgs};
  machines = builtins.mapAttrs (name: module:
    (import (nixpkgs + "/nixos/lib/eval-config.nix") {{ system = null; modules = [ module ]; }})
      .config.system.build.toplevel.drvPath) (import {repo}/deployments);
  tests = builtins.listToAttrs (map (file: {{
    name = file;
    value = (import ({repo}/vm-tests/generated + "/${{file}}") {{ inherit nixpkgs; }}).drvPath;
  }}) (builtins.filter (f: builtins.match ".*\.nix" f != null)
    (builtins.attrNames (builtins.readDir {repo}/vm-tests/generated))));
in machines // tests"#,
        nixpkgs = nixpkgs.display(),
        repo = repo.display()
    );
    let value = eval_expr(&expr)?;
    let paths = value.as_object().ok_or("not a set")?;
    if paths.is_empty()
        || !paths
            .values()
            .all(|p| p.as_str().is_some_and(|p| p.ends_with(".drv")))
    {
        return Err(format!("not every toplevel and test instantiated: {value}").into());
    }
    Ok(())
}

/// The package's source, filtered by the real `lib`, is what building the crate reads: the crates, the lock file
/// and the embedded scaffold, never `target/` (gigabytes in a checkout) nor the generated outputs (which change
/// with every regeneration and would rebuild fedigen on every node that provisions storage).
fn the_package_source_is_what_cargo_reads() -> Result<(), Failed> {
    let nixpkgs = nixpkgs().ok_or("FEDIGEN_NIXPKGS is not set")?;
    let repo = repository();
    let cases: [(&str, &str, bool); 10] = [
        ("Cargo.toml", "regular", true),
        ("Cargo.lock", "regular", true),
        ("gen", "directory", true),
        ("gen/src/main.rs", "regular", true),
        ("templates", "directory", true),
        ("templates/_scaffold/module.nix.hbs.in", "regular", true),
        ("target", "directory", false),
        ("deployments", "directory", false),
        ("templates/mastodon", "directory", false),
        ("vm-tests/generated", "directory", false),
    ];
    let checks: Vec<String> = cases
        .iter()
        .map(|(path, kind, _)| format!("(f \"${{toString repo}}/{path}\" \"{kind}\")"))
        .collect();
    let expr = format!(
        "let lib = import {}/lib; repo = {}; p = import (repo + \"/package.nix\") {{ inherit lib; rustPlatform.buildRustPackage = a: a; }}; f = p.src.filter; in [ {} ]",
        nixpkgs.display(),
        repo.display(),
        checks.join(" ")
    );
    let got = eval_expr(&expr)?;
    let wrong: Vec<String> = cases
        .iter()
        .zip(got.as_array().ok_or("not a list")?)
        .filter(|((_, _, want), got)| got.as_bool() != Some(*want))
        .map(|((path, _, want), _)| format!("{path}: kept should be {want}"))
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("\n").into())
    }
}

fn main() {
    let nixpkgs = nixpkgs();
    let has_lib = nixpkgs
        .as_ref()
        .is_some_and(|p| p.join("lib/default.nix").is_file());
    let has_nixos = nixpkgs
        .as_ref()
        .is_some_and(|p| p.join("nixos/lib/eval-config.nix").is_file());
    let trials: Vec<support::GatedTrial> = vec![
        (
            "modules_evaluate_with_lib_eval_modules",
            has_lib,
            modules_evaluate_with_lib_eval_modules as fn() -> Result<(), Failed>,
            "needs nixpkgs' lib: set FEDIGEN_NIXPKGS to a nixpkgs (or nixpkgs.lib) checkout",
        ),
        (
            "generated_defaults_yield_to_plain_overrides",
            has_lib,
            generated_defaults_yield_to_plain_overrides,
            "needs nixpkgs' lib: set FEDIGEN_NIXPKGS to a nixpkgs (or nixpkgs.lib) checkout",
        ),
        (
            "deployments_evaluate_with_lib_eval_modules",
            has_lib,
            deployments_evaluate_with_lib_eval_modules,
            "needs nixpkgs' lib: set FEDIGEN_NIXPKGS to a nixpkgs (or nixpkgs.lib) checkout",
        ),
        (
            "the_evaluated_contract_finds_planted_faults",
            has_lib,
            the_evaluated_contract_finds_planted_faults,
            "needs nixpkgs' lib: set FEDIGEN_NIXPKGS to a nixpkgs (or nixpkgs.lib) checkout",
        ),
        (
            "a_misspelt_option_fails_evaluation",
            has_lib,
            a_misspelt_option_fails_evaluation,
            "needs nixpkgs' lib: set FEDIGEN_NIXPKGS to a nixpkgs (or nixpkgs.lib) checkout",
        ),
        (
            "vm_test_scripts_evaluate",
            has_lib,
            vm_test_scripts_evaluate,
            "needs nixpkgs' lib: set FEDIGEN_NIXPKGS to a nixpkgs (or nixpkgs.lib) checkout",
        ),
        (
            "flake_outputs_evaluate",
            has_lib,
            flake_outputs_evaluate,
            "needs nixpkgs' lib: set FEDIGEN_NIXPKGS to a nixpkgs (or nixpkgs.lib) checkout",
        ),
        (
            "the_package_source_is_what_cargo_reads",
            has_lib,
            the_package_source_is_what_cargo_reads,
            "needs nixpkgs' lib: set FEDIGEN_NIXPKGS to a nixpkgs (or nixpkgs.lib) checkout",
        ),
        (
            "everything_instantiates_with_nixpkgs",
            has_nixos,
            everything_instantiates_with_nixpkgs,
            "needs a full nixpkgs (nixos/): set FEDIGEN_NIXPKGS to a nixpkgs checkout",
        ),
        (
            "modules_evaluate_in_nixos",
            has_nixos,
            modules_evaluate_in_nixos,
            "needs a full nixpkgs (nixos/): set FEDIGEN_NIXPKGS to a nixpkgs checkout",
        ),
    ];
    support::run_gated(trials);
}
