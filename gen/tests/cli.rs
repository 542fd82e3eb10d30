//! The `fedigen` binary end to end: the README's main job, refusals with their exit status and JSON paths, and
//! the repository's own Nix files proven by `fedigen nix check`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

mod support;

fn fedigen(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = support::nix_command(env!("CARGO_BIN_EXE_fedigen"))
        .args(args)
        .current_dir(repository())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

#[test]
fn the_main_job_round_trips_the_example_through_nix() {
    let out = fedigen(
        &[
            "nix",
            "from-json",
            "examples/panel-settings.json",
            "--verify",
            "canonical",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("settings.nix");
    std::fs::write(&file, &out.stdout).unwrap();
    let back = fedigen(&["nix", "to-json", file.to_str().unwrap()], None);
    assert!(
        back.status.success(),
        "{}",
        String::from_utf8_lossy(&back.stderr)
    );
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repository().join("examples/panel-settings.json")).unwrap(),
    )
    .unwrap();
    let actual: serde_json::Value = serde_json::from_slice(&back.stdout).unwrap();
    assert_eq!(actual, expected);
}

#[test]
fn unrepresentable_input_is_refused_with_its_path_and_nothing_printed() {
    let out = fedigen(
        &["nix", "from-json", "-"],
        Some(r#"{"a": [1, 18446744073709551615], "b": {"_type": "override"}, "c": "nul\u0000"}"#),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing may be printed on error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "$.a[1]: the integer 18446744073709551615",
        "$.b._type: the key `_type`",
        "$.c: a NUL",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    let bad_json = fedigen(&["nix", "from-json", "-"], Some("{\n  \"a\": tru\n}"));
    assert_eq!(bad_json.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad_json.stderr);
    assert!(
        stderr.contains("<stdin>:") && stderr.contains("invalid JSON"),
        "{stderr}"
    );
}

#[test]
fn special_attributes_pass_when_explicitly_allowed() {
    let out = fedigen(
        &["nix", "from-json", "--allow-special-attributes"],
        Some(r#"{"_type": "x"}"#),
    );
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\n  _type = \"x\";\n}\n"
    );
}

#[test]
fn nix_errors_name_the_file_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.nix");
    std::fs::write(&file, "{\n  a = undefinedThing;\n}\n").unwrap();
    let out = fedigen(&["nix", "to-json", file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("undefined variable 'undefinedThing'"),
        "{stderr}"
    );
    assert!(stderr.contains("broken.nix:2:7"), "{stderr}");
}

#[test]
fn check_reports_every_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let unparsable = dir.path().join("unparsable.nix");
    let unformatted = dir.path().join("unformatted.nix");
    std::fs::write(&unparsable, "{ a = ; }\n").unwrap();
    std::fs::write(&unformatted, "{a=1;}\n").unwrap();
    let out = fedigen(
        &[
            "nix",
            "check",
            unparsable.to_str().unwrap(),
            unformatted.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unparsable.nix:1:"), "{stderr}");
    assert!(
        stderr.contains("unformatted.nix:1: not nixfmt-canonical"),
        "{stderr}"
    );
}

/// The repository's own Nix files (the flake, generated modules, templates' static parts) parse with rnix and
/// with Nix, and are nixfmt-canonical.
#[test]
fn repository_nix_files_are_proven() {
    let mut files = vec!["flake.nix".to_owned()];
    for dir in ["modules", "templates"] {
        let Ok(entries) = std::fs::read_dir(repository().join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "nix") {
                files.push(
                    path.strip_prefix(repository())
                        .unwrap()
                        .display()
                        .to_string(),
                );
            }
        }
    }
    let mut args = vec!["nix", "check"];
    args.extend(files.iter().map(String::as_str));
    let out = fedigen(&args, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `fedigen repro lock` then `repro check` on a deterministic busybox derivation, in a throwaway store: the
/// check is clean (exit 0) and says so in JSON; a derivation reading /dev/urandom is reported unreproducible
/// (exit status with the 8 bit).
#[test]
fn repro_lock_and_check_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let file = dir.path().join("drvs.nix");
    std::fs::write(
        &file,
        r#"let
  bbDir = builtins.path { name = "busybox-static"; path = /usr/bin; filter = p: t: baseNameOf p == "busybox"; };
  mk = name: script: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "${bbDir}/busybox";
    args = [ "sh" "-c" script ];
    PATH = "${bbDir}";
  };
in {
  steady = mk "steady" "${bbDir}/busybox mkdir -p $out && echo same > $out/file";
  noisy = mk "noisy" "${bbDir}/busybox mkdir -p $out && ${bbDir}/busybox head -c 16 /dev/urandom > $out/file";
}
"#,
    )
    .unwrap();
    let (file, store) = (file.to_str().unwrap(), store.to_str().unwrap());
    let lock = dir.path().join("lock.json");
    let locked = fedigen(
        &[
            "repro",
            "lock",
            file,
            "-A",
            "steady",
            "--store",
            store,
            "-o",
            lock.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        locked.status.success(),
        "{}",
        String::from_utf8_lossy(&locked.stderr)
    );
    let check = fedigen(
        &[
            "repro",
            "check",
            file,
            "-A",
            "steady",
            "--store",
            store,
            "--lock",
            lock.to_str().unwrap(),
            "--json",
        ],
        None,
    );
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert!(report.to_string().contains("reproducible"), "{report}");
    let noisy = fedigen(
        &["repro", "check", file, "-A", "noisy", "--store", store],
        None,
    );
    let code = noisy.status.code().unwrap();
    assert_eq!(
        code & 8,
        8,
        "unreproducible bit: {code}\n{}",
        String::from_utf8_lossy(&noisy.stdout)
    );
}

const MACHINE: &str = "# Someone's machine; every byte but the edited one stays.\n{ config, lib, ... }:\n{\n  services.nginx = {\n    enable = true; # on\n  };\n  imports = [ ./hardware.nix ];\n}\n";

#[test]
fn edit_changes_one_path_in_place_keeping_the_file_and_its_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("machine.nix");
    std::fs::write(&file, MACHINE).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let path = file.to_str().unwrap();

    let out = fedigen(
        &[
            "edit",
            path,
            "set",
            r#"services.nginx.virtualHosts."example.org".root"#,
            r#""/srv/www""#,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let edited = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        edited,
        MACHINE.replace(
            "# on\n",
            "# on\n    virtualHosts.\"example.org\".root = \"/srv/www\";\n"
        )
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "a temporary file was left behind"
    );

    let out = fedigen(&["edit", path, "get", "services.nginx.enable"], None);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "true\n");
    let out = fedigen(&["edit", path, "get", "services.nginx", "--json"], None);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"enable\":true,\"virtualHosts\":{\"example.org\":{\"root\":\"/srv/www\"}}}\n"
    );
    let out = fedigen(&["edit", path, "get", "imports", "--json"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("machine.nix:8:15: not plain data: "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = fedigen(
        &["edit", path, "unset", "services.nginx.enable", "--diff"],
        None,
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("-    enable = true; # on\n"));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        edited,
        "--diff wrote the file"
    );

    let out = fedigen(
        &[
            "edit",
            "-",
            "set",
            "services.nginx.package",
            "--nix",
            "pkgs.nginxMainline",
        ],
        Some(MACHINE),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(
        "  services.nginx = {\n    enable = true; # on\n    package = pkgs.nginxMainline;\n"
    ));
}

#[test]
fn edit_refusals_say_where_and_why_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("machine.nix");
    std::fs::write(&file, MACHINE).unwrap();
    let path = file.to_str().unwrap();
    let cases: [(&[&str], i32, &str); 5] = [
        (
            &["set", "imports.x", "1"],
            2,
            "machine.nix:7:13: cannot edit `imports.x`: `imports` is a list",
        ),
        (&["set", "a", "{\"_type\": \"if\"}"], 2, "$._type"),
        (&["set", "a", "not json"], 2, "pass --nix"),
        (&["set", "a.${b}", "1"], 2, "is not an attribute path"),
        (
            &["get", "services.nginx.enabled"],
            1,
            "`services.nginx.enabled` is not defined (the nearest definition is `services.nginx` at 4:3)",
        ),
    ];
    let generated = dir.path().join("generated.nix");
    std::fs::write(
        &generated,
        format!(
            "{}\n{{ a = 1; }}\n",
            fedigen::write::marker_line("a template")
        ),
    )
    .unwrap();
    let out = fedigen(
        &["edit", generated.to_str().unwrap(), "set", "a", "2"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is generated by fedigen"));
    let out = fedigen(
        &[
            "edit",
            generated.to_str().unwrap(),
            "set",
            "a",
            "2",
            "--force",
        ],
        None,
    );
    assert!(out.status.success());
    assert!(
        std::fs::read_to_string(&generated)
            .unwrap()
            .ends_with("{ a = 2; }\n")
    );

    for (args, code, message) in cases {
        let mut all = vec!["edit", path];
        all.extend_from_slice(args);
        let out = fedigen(&all, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), MACHINE);
    }
}
