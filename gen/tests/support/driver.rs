//! The NixOS test driver's API as the generated VM tests use it, and the tests' scripts as the driver gets them:
//! shared by `vm_scripts.rs` (the scripts' calls, checked and run against stand-ins) and `driver_check.rs` (the
//! lint and type check nixpkgs runs when it builds a test's driver).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::nix_command;

/// `Driver.test_symbols()`'s general symbols (nixpkgs `nixos/lib/test-driver/src/test_driver/driver.py`, read at
/// commit 003d58163f46); the machines come in by their pythonized names, and a lone machine also as `machine`.
pub const DRIVER_GLOBALS: &[&str] = &[
    "start_all",
    "test_script",
    "machines_qemu",
    "machines_nspawn",
    "vlans",
    "driver",
    "log",
    "os",
    "create_machine",
    "subtest",
    "run_tests",
    "join_all",
    "retry",
    "serial_stdout_off",
    "serial_stdout_on",
    "polling_condition",
    "BaseMachine",
    "t",
    "debug",
];

/// Public methods of `BaseMachine` and `QemuMachine` (nixpkgs
/// `nixos/lib/test-driver/src/test_driver/machine/__init__.py`, read at commit 019697db058b), all of them.
pub const MACHINE_METHODS: &[&str] = &[
    "log",
    "nested",
    "systemctl",
    "wait_for_unit",
    "get_unit_info",
    "get_unit_property",
    "require_unit_state",
    "succeed",
    "fail",
    "wait_until_succeeds",
    "wait_until_fails",
    "sleep",
    "wait_for_file",
    "wait_for_open_port",
    "wait_for_open_unix_socket",
    "wait_for_closed_port",
    "start_job",
    "stop_job",
    "execute",
    "copy_from_machine",
    "copy_from_host",
    "copy_from_host_via_shell",
    "send_monitor_command",
    "get_tty_text",
    "wait_until_tty_matches",
    "dump_tty_contents",
    "shell_interact",
    "console_interact",
    "wait_for_shutdown",
    "wait_for_qmp_event",
    "start",
    "shutdown",
    "crash",
    "reboot",
    "block",
    "unblock",
    "release",
    "is_up",
    "screenshot",
    "send_key",
    "send_chars",
    "send_console",
    "wait_for_text",
    "wait_for_console_text",
    "get_screen_text",
    "wait_for_x",
    "wait_for_window",
    "get_window_names",
    "get_console_log",
    "get_screen_text_variants",
    "forward_port",
    "switch_root",
    "connect",
];

/// A generated test's script and machine names, as the driver would see them.
#[derive(Debug, Clone)]
pub struct Script {
    /// The script's text, as the driver runs it.
    pub text: String,
    /// The machines' Python names.
    pub machines: Vec<String>,
}

/// The driver's `pythonize_name`: a node name as the script's variable (fedigen's, which the data uses).
pub fn pythonize(name: &str) -> String {
    fedigen::deploy::python_name(name)
}

/// Evaluates the `testScript` of every given test file with the real Nix, `pkgs` a stand-in (no nixpkgs here):
/// `runNixOSTest` returns its argument, each node's address is a documentation address. One Nix process.
pub fn evaluate_scripts(files: &[PathBuf]) -> BTreeMap<String, Script> {
    let entries: String = files
        .iter()
        .map(|file| {
            format!(
                "{:?} = script (import {});\n",
                file.file_name().unwrap().to_string_lossy(),
                file.display()
            )
        })
        .collect();
    let expression = format!(
        r#"
let
  pkgs = {{ lib = {{ }}; testers.runNixOSTest = test: test; }};
  script = imported:
    let
      test = imported {{ inherit pkgs; }};
      nodes = builtins.mapAttrs (name: _: {{
        networking.primaryIPAddress = "192.0.2.1";
        system.build.toplevel = "/nix/store/00000000000000000000000000000000-stand-in";
      }}) test.nodes;
    in {{
      text = if builtins.isFunction test.testScript then test.testScript {{ inherit nodes; }} else test.testScript;
      machines = builtins.attrNames test.nodes;
    }};
in {{
{entries}}}
"#
    );
    let out = nix_command("nix-instantiate")
        .args(["--eval", "--strict", "--json", "--expr", &expression])
        .output()
        .expect("nix-instantiate runs (install nix-bin)");
    assert!(
        out.status.success(),
        "evaluating the test scripts: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    value
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, v)| {
            (
                name.clone(),
                Script {
                    text: v["text"].as_str().unwrap().to_owned(),
                    machines: v["machines"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|m| pythonize(m.as_str().unwrap()))
                        .collect(),
                },
            )
        })
        .collect()
}

/// The generated VM tests (files with a `#:` header) of the repository.
pub fn generated_tests(repo: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo.join("vm-tests/generated"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "nix")
                && std::fs::read_to_string(p)
                    .unwrap()
                    .lines()
                    .nth(1)
                    .is_some_and(|l| l.starts_with("#:"))
        })
        .collect();
    files.sort();
    files
}
