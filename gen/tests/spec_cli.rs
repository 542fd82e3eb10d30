//! `fedigen validate` and `fedigen schema` end to end: the default example is valid, an invalid specification
//! exits with status 2 and every error on standard error, and the schema is printed deterministically.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fedigen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fedigen"))
        .args(args)
        .current_dir(repository())
        .output()
        .unwrap()
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

#[test]
fn validate_accepts_the_default_example() {
    let out = fedigen(&["validate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("examples/provider.toml: valid"), "{stderr}");
}

/// A machine on DHCP is valid, but its names get no DNS record, and a specification without a deploy key is
/// valid, but NixOps4 could not log in: `validate` says so (as warnings, and in the JSON verdict's `warnings`),
/// and still exits 0. The example, all static and with a deploy key, has no warning.
#[test]
fn validate_warns_about_machines_on_dhcp() {
    let templates = "gen/tests/fixtures/spec/templates";
    let minimal = "gen/tests/fixtures/spec/valid/minimal.toml";
    let out = fedigen(&["validate", minimal, "--templates", templates]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "warning: machine `uni-matrix-synapse` is on DHCP: the DNS zones get no address record"
        ),
        "{stderr}"
    );
    let out = fedigen(&["validate", minimal, "--templates", templates, "--json"]);
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The minimal specification has no deploy key either: NixOps4 could not log in to its machines.
    let warnings: Vec<&str> = verdict["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w.as_str())
        .collect();
    assert_eq!(warnings.len(), 2, "{verdict}");
    assert!(
        warnings[0].starts_with("provider.deploy_keys is empty"),
        "{verdict}"
    );
    let out = fedigen(&["validate", "--json"]);
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["warnings"], serde_json::json!([]), "{verdict}");
}

/// `validate` of the example specification changed by `edit` (which must change it), from a folder of its own:
/// the exit status and what it printed on stderr.
fn validate_edited_example(edit: impl Fn(&str) -> String) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(repository().join("examples/provider.toml")).unwrap();
    let edited = edit(&spec);
    assert_ne!(edited, spec, "the edit changes nothing");
    let path = dir.path().join("provider.toml");
    std::fs::write(&path, edited).unwrap();
    let templates = repository().join("templates");
    let out = fedigen(&[
        "validate",
        path.to_str().unwrap(),
        "--templates",
        templates.to_str().unwrap(),
    ]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A deploy key that is not an SSH public key (a truncated paste) is refused at its place in the list.
#[test]
fn validate_refuses_a_deploy_key_that_is_not_an_ssh_key() {
    let (code, stderr) = validate_edited_example(|spec| {
        spec.replacen(
            "AAAAC3NzaC1lZDI1NTE5AAAAIGPYcDdYNUeo",
            "AAAAC3NzaC1lZDI1NTE5AAAAIGPYcDdY",
            1,
        )
    });
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("this is not an SSH public key"), "{stderr}");
    assert!(stderr.contains("provider.deploy_keys[0]"), "{stderr}");
}

/// The zone fedigen writes for the provider's domain is the whole zone: a host the deployment names there but
/// does not run (the SMTP relay, the Proxmox API) needs its address in `provider.dns.hosts`, else the zone would
/// lack it and mail and provisioning would break (review of #13); `validate` names each, where it is written.
#[test]
fn validate_refuses_provider_hosts_the_generated_zone_would_lack() {
    let (code, stderr) = validate_edited_example(|spec| {
        spec.lines()
            .filter(|l| !l.starts_with("hosts = { smtp"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    assert_eq!(code, Some(2), "{stderr}");
    for (field, host) in [
        ("provider.smtp.host", "smtp.nordwind-hosting.example"),
        ("provider.runtime.api_url", "pve.nordwind-hosting.example"),
    ] {
        assert!(
            stderr.contains(&format!("error: {field}: "))
                && stderr.contains(&format!(
                    "`{host}` is in the zone `nordwind-hosting.example`"
                )),
            "{field}: {stderr}"
        );
    }
}

#[test]
fn validate_refuses_an_invalid_specification_with_status_2_and_every_error() {
    let out = fedigen(&[
        "validate",
        "gen/tests/fixtures/spec/invalid/38-many-errors.toml",
        "--templates",
        "gen/tests/fixtures/spec/templates",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing is written on failure");
    assert_eq!(stderr.matches("\nerror: ").count() + 1, 8, "{stderr}");
    assert!(stderr.contains("38-many-errors.toml:4:10"), "{stderr}");
}

#[test]
fn validate_reports_an_unknown_format_as_invalid_input() {
    let out = fedigen(&["validate", "README.md"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn schema_is_printed_deterministically() {
    let a = fedigen(&["schema"]);
    let b = fedigen(&["schema"]);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert_eq!(a.stdout, b.stdout);
    let schema: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    assert!(
        schema["properties"]["operators"]["items"]["properties"]["applications"]["properties"]
            ["mastodon"]
            .is_object()
    );
}

// ---- Bad input is reported once, at its place, with exit status 2 (issue #12, items 3, 7, 8 and 9) ----

const FIXTURE_TEMPLATES: &str = "gen/tests/fixtures/spec/templates";

/// Runs a command with Nix's recommended test settings (no substituters), so Nix's own warnings stay out.
fn fedigen_nix(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fedigen"))
        .args(args)
        .current_dir(repository())
        .env(
            "NIX_CONFIG",
            "sandbox = true\nsandbox-fallback = false\nsubstituters =\nbuild-users-group =",
        )
        .output()
        .unwrap()
}

/// Asserts the common promises of a refusal: status 2, nothing on standard output, no doubled `error:`, no
/// Rust debug formatting; returns standard error.
fn refused(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing is written on failure");
    assert!(
        !stderr.contains("error: error"),
        "a doubled prefix:\n{stderr}"
    );
    for debug in ["Some(", "None", "Os {", "kind: ", "\\\""] {
        assert!(
            !stderr.contains(debug),
            "debug formatting `{debug}`:\n{stderr}"
        );
    }
    stderr
}

#[test]
fn generate_prints_an_invalid_specifications_report_once_without_a_doubled_prefix() {
    let out = fedigen(&[
        "generate",
        "--check",
        "--spec",
        "gen/tests/fixtures/spec/invalid/38-many-errors.toml",
    ]);
    let stderr = refused(&out);
    assert!(stderr.starts_with("error: provider.domain: "), "{stderr}");
    assert_eq!(stderr.matches("is not a valid specification").count(), 1);
    assert!(stderr.contains("38-many-errors.toml:4:10"), "{stderr}");
}

#[test]
fn a_missing_specification_is_bad_input_for_every_command() {
    for args in [
        &["validate", "no/such/spec.toml"][..],
        &["generate", "--check", "--spec", "no/such/spec.toml"],
    ] {
        let stderr = refused(&fedigen(args));
        assert!(
            stderr.contains("no/such/spec.toml: no such specification file"),
            "{stderr}"
        );
        assert!(!stderr.contains("os error"), "{stderr}");
    }
}

#[test]
fn non_utf8_input_is_bad_input_at_the_first_invalid_byte() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("latin1.toml", &b"[provider]\nname = \"caf\xe9\"\n"[..]),
        (
            "latin1.json",
            &b"{\n  \"provider\": {\"name\": \"x\xff\xfe\"}\n}\n"[..],
        ),
        ("latin1.nix", &b"{\n  provider.name = \"\xe9\";\n}\n"[..]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let path = path.to_str().unwrap();
        let valid_up_to = std::str::from_utf8(bytes).unwrap_err().valid_up_to();
        let line = bytes[..valid_up_to].iter().filter(|b| **b == b'\n').count() + 1;
        let column = valid_up_to
            - bytes[..valid_up_to]
                .iter()
                .rposition(|b| *b == b'\n')
                .unwrap();
        for args in [
            &["validate", path, "--templates", FIXTURE_TEMPLATES][..],
            &["generate", "--check", "--spec", path],
        ] {
            let stderr = refused(&fedigen_nix(args));
            assert!(
                stderr.contains(&format!("{path}:{line}:{column}")),
                "{name}: the place {line}:{column}:\n{stderr}"
            );
            assert!(
                stderr.contains(&format!("(byte offset {valid_up_to})")),
                "{name}: the byte offset:\n{stderr}"
            );
            assert!(stderr.contains("not UTF-8"), "{stderr}");
        }
    }
}

/// A `.nix` specification in a temporary folder, from a valid one with one line replaced.
fn nix_spec(dir: &Path, name: &str, from: &str, to: &str) -> String {
    let valid =
        std::fs::read_to_string(repository().join("gen/tests/fixtures/spec/valid/nix-spec.nix"))
            .unwrap();
    assert!(valid.contains(from));
    let path = dir.join(name);
    std::fs::write(&path, valid.replace(from, to)).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn nix_evaluation_errors_name_the_field_and_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let domain = "    domain = \"nordwind.example\";";
    let cases = [
        // (file, line replaced, replacement, field, file:line:column, a part of Nix's message)
        (
            "throw.nix",
            domain,
            "    domain = throw \"TODO\";",
            "provider.domain",
            ":14:5",
            "TODO",
        ),
        (
            "abort.nix",
            domain,
            "    domain = abort \"no\";",
            "provider.domain",
            ":14:5",
            "aborted",
        ),
        (
            "import.nix",
            "    runtime.backend = \"qemu\";",
            "    runtime = import ./missing.nix;",
            "provider.runtime",
            ":15:5",
            "missing.nix",
        ),
        (
            "type.nix",
            "    contact = \"ict@${name}.example\";",
            "    contact = \"ict@\" + 1;",
            "operators[0].contact",
            ":6:24",
            "cannot coerce",
        ),
        (
            "syntax.nix",
            domain,
            "    domain = ;",
            "",
            ":14:14",
            "syntax error",
        ),
    ];
    for (name, from, to, field, place, message) in cases {
        let path = nix_spec(dir.path(), name, from, to);
        for args in [
            &["validate", &path, "--templates", FIXTURE_TEMPLATES][..],
            &["generate", "--check", "--spec", &path],
        ] {
            let stderr = refused(&fedigen_nix(args));
            let first = stderr.lines().next().unwrap();
            assert!(
                first.starts_with(&format!(
                    "error: {field}{}",
                    if field.is_empty() { "" } else { ": " }
                )),
                "{name}: the field `{field}`:\n{stderr}"
            );
            assert!(
                stderr.contains(&format!("{path}{place}")),
                "{name}: the place:\n{stderr}"
            );
            assert!(stderr.contains(message), "{name}: Nix's message:\n{stderr}");
            assert!(
                !stderr.contains("fedigen-spec-"),
                "no temporary path:\n{stderr}"
            );
        }
    }
}

#[test]
fn values_echoed_in_diagnostics_are_shortened() {
    let dir = tempfile::tempdir().unwrap();
    let secret: String = (0..2_000)
        .map(|i| format!("line {i} of a private file\n"))
        .collect();
    std::fs::write(dir.path().join("private.txt"), &secret).unwrap();
    let path = nix_spec(
        dir.path(),
        "reads-a-file.nix",
        "    name = \"nordwind\";",
        "    name = builtins.readFile ./private.txt;",
    );
    let stderr = refused(&fedigen_nix(&[
        "validate",
        &path,
        "--templates",
        FIXTURE_TEMPLATES,
    ]));
    assert!(
        stderr.contains("provider.name: `line 0 of a private file\\nline 1 of"),
        "{stderr}"
    );
    assert!(
        stderr.contains("…`"),
        "the value is cut with an ellipsis:\n{stderr}"
    );
    assert!(!stderr.contains("line 3 of a private file"), "{stderr}");
    assert!(stderr.len() < 2_000, "{} bytes:\n{stderr}", stderr.len());
}

/// One line of JSON holding `copies` copies of one operator: every copy after the first repeats its name and
/// its domain.
fn copies_of_one_operator(dir: &Path, copies: usize) -> String {
    let operator = r#"{"name": "uni", "domain": "uni.example", "contact": "ict@uni.example", "admin": {"username": "admin", "email": "admin@uni.example"}}"#;
    let text = format!(
        r#"{{"provider": {{"name": "nordwind", "domain": "nordwind.example", "runtime": {{"backend": "qemu"}}, "acme": {{"email": "hostmaster@nordwind.example", "accept_terms": true}}}}, "operators": [{}]}}"#,
        vec![operator; copies].join(", ")
    );
    let path = dir.join(format!("copies-{copies}.json"));
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn reports_of_many_errors_stay_bounded_and_linear() {
    let dir = tempfile::tempdir().unwrap();
    let mut sizes = Vec::new();
    for copies in [1_000, 4_000] {
        let path = copies_of_one_operator(dir.path(), copies);
        let start = std::time::Instant::now();
        let out = fedigen(&["validate", &path, "--templates", FIXTURE_TEMPLATES]);
        let elapsed = start.elapsed();
        let stderr = refused(&out);
        let errors = 2 * (copies - 1);
        assert!(
            stderr.ends_with(&format!("is not a valid specification: {errors} errors\n")),
            "{}",
            &stderr[stderr.len().saturating_sub(300)..]
        );
        assert!(
            stderr.contains(&format!("… and {} more like this", copies - 1 - 3)),
            "repeated errors are summarised:\n{stderr}"
        );
        // Before: 1,000 copies printed 286 MB in 9 s; 4,000 took 138 s.
        assert!(
            stderr.len() < 8_000,
            "{copies} copies: {} bytes",
            stderr.len()
        );
        assert!(elapsed.as_secs() < 60, "{copies} copies: {elapsed:?}");
        sizes.push(stderr.len());
    }
    // Four times the errors: the report does not grow (a few digits at most).
    assert!(sizes[1] <= sizes[0] + 64, "{sizes:?}");
}

#[test]
fn a_long_line_is_shown_around_the_place_not_whole() {
    let dir = tempfile::tempdir().unwrap();
    // One 2 MB line: many valid operators, then one duplicate of the first.
    let operators: Vec<String> = (0..12_000)
        .map(|i| format!(r#"{{"name": "o{i}", "domain": "o{i}.example", "contact": "ict@o{i}.example", "admin": {{"username": "admin", "email": "admin@o{i}.example"}}}}"#))
        .chain(std::iter::once(r#"{"name": "o0", "domain": "z.example", "contact": "ict@z.example", "admin": {"username": "admin", "email": "admin@z.example"}}"#.to_owned()))
        .collect();
    let text = format!(
        r#"{{"provider": {{"name": "nordwind", "domain": "nordwind.example", "runtime": {{"backend": "qemu"}}, "acme": {{"email": "hostmaster@nordwind.example", "accept_terms": true}}}}, "operators": [{}]}}"#,
        operators.join(", ")
    );
    let path = dir.path().join("long-line.json");
    std::fs::write(&path, &text).unwrap();
    let path = path.to_str().unwrap();
    let stderr = refused(&fedigen(&[
        "validate",
        path,
        "--templates",
        FIXTURE_TEMPLATES,
    ]));
    let column = text.rfind(r#""o0""#).unwrap() + 1;
    assert!(stderr.contains(&format!("{path}:1:{column}")), "{stderr}");
    assert!(stderr.contains("first used here"), "{stderr}");
    assert!(stderr.contains("used again here"), "{stderr}");
    assert!(stderr.len() < 3_000, "{} bytes:\n{stderr}", stderr.len());
}

/// A bare-metal host's hardware configuration is a file of the repository, relative to the specification: a
/// missing one is invalid input (status 2) reported at the field, and the same specification is valid once the
/// file is there.
#[test]
fn validate_refuses_a_missing_hardware_configuration_at_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let spec =
        std::fs::read_to_string(repository().join("gen/tests/fixtures/spec/valid/bare-metal.toml"))
            .unwrap();
    let path = dir.path().join("spec.toml");
    std::fs::write(&path, &spec).unwrap();
    let templates = repository().join("gen/tests/fixtures/spec/templates");
    let validate = || {
        fedigen(&[
            "validate",
            path.to_str().unwrap(),
            "--templates",
            templates.to_str().unwrap(),
        ])
    };
    let out = validate();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.matches("does not exist").count(), 3, "{stderr}");
    let line = spec
        .lines()
        .position(|l| l.starts_with("hosts.metal1"))
        .unwrap()
        + 1;
    let column = spec
        .lines()
        .nth(line - 1)
        .unwrap()
        .find("\"./hardware")
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!("spec.toml:{line}:{column}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "the hardware configuration `./hardware/metal1.nix` of host `metal1` does not exist"
        ),
        "{stderr}"
    );
    std::fs::create_dir(dir.path().join("hardware")).unwrap();
    for n in 1..=3 {
        std::fs::write(dir.path().join(format!("hardware/metal{n}.nix")), "{ }\n").unwrap();
    }
    let out = validate();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bare-metal specification outside the repository: its hardware configurations would be too, which pure
/// flake evaluation cannot read, so `generate` refuses it as invalid input (status 2) and writes nothing.
#[test]
fn generate_refuses_a_bare_metal_specification_outside_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.toml");
    std::fs::copy(
        repository().join("gen/tests/fixtures/spec/bare-metal-outside.toml"),
        &path,
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("hw")).unwrap();
    std::fs::write(dir.path().join("hw/m1.nix"), "{ }\n").unwrap();
    let out = fedigen(&["generate", "--check", "--spec", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("spec.toml lies outside the repository"),
        "{stderr}"
    );
}

/// A machine removed from the specification while its host key stays in `<spec>.host-keys.toml` does not block
/// validation (an operator removing a machine must not have to edit two files at once): `validate` passes with a
/// warning naming the line, the machine and that the line can be deleted.
#[test]
fn validate_warns_about_a_host_key_of_a_machine_that_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let spec = std::fs::read_to_string(repository().join("examples/provider.toml")).unwrap();
    let path = dir.path().join("provider.toml");
    std::fs::write(&path, spec).unwrap();
    let keys = std::fs::read_to_string(repository().join("examples/provider.host-keys.toml"))
        .unwrap()
        + "garage-gone = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIElRzxVkF77DSRH3PYX+/gBv9ibk31KCc0TByBycReeM\"\n";
    std::fs::write(dir.path().join("provider.host-keys.toml"), keys).unwrap();
    let templates = repository().join("templates");
    let out = fedigen(&[
        "validate",
        path.to_str().unwrap(),
        "--templates",
        templates.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: ")
            && stderr.contains("provider.host-keys.toml:")
            && stderr.contains(
                "the specification has no machine `garage-gone`, so its host key is not used: delete the line `garage-gone = …`"
            ),
        "{stderr}"
    );
}
