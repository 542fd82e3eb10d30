//! The checks nixpkgs runs on a VM test's script when it builds the test's driver, run here on every generated
//! script: nixpkgs' `nixos/lib/testing/driver.nix` lints the script with pyflakes (unless `skipLint`; the
//! machines' Python names and the driver's symbols as `PYFLAKES_BUILTINS`) and type-checks it with mypy (unless
//! `skipTypeCheck`; `mypy --no-implicit-optional --pretty --no-color-output` over the script after type hints for
//! the driver's globals and a line declaring each machine). A script either refuses is a test whose driver does not
//! build, found only where nixpkgs builds it: review-34 found every migration test refused by mypy
//! (`held_at_a = {}`, which mypy cannot type).
//!
//! The type hints are fedigen's own, written from the driver's API (`support/driver.rs`: the globals and machine
//! methods; the signatures of the methods the generated scripts call, from nixpkgs'
//! `nixos/lib/test-driver/src/test_driver/machine/__init__.py`), and mypy checks for the driver's Python (3.13 in
//! nixos-26.05). What this does not reproduce (review-36): the types of machine methods no generated script calls
//! (any arguments pass), the `vlan<N>: VLan` line (no generated test names a VLAN), pyflakes under the driver's
//! Python rather than this machine's. mypy 1.19.1 and pyflakes 3.4.0 from PyPI:
//! `scripts/install-test-deps` installs them into `~/.cache/fedigen/driver-check-mypy-1.19.1-pyflakes-3.4.0` (or
//! set FEDIGEN_DRIVER_CHECK to a folder holding `mypy` and `pyflakes`). Ignored, with the reason, where they are
//! absent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use libtest_mimic::Failed;

mod support;

#[path = "support/driver.rs"]
mod driver;

use driver::{DRIVER_GLOBALS, MACHINE_METHODS, Script, evaluate_scripts, generated_tests};
use support::repository;

/// The folder holding `mypy` and `pyflakes`: FEDIGEN_DRIVER_CHECK, else the one `scripts/install-test-deps` fills.
fn tools() -> PathBuf {
    if let Some(path) = std::env::var_os("FEDIGEN_DRIVER_CHECK") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/root/.cache"));
    cache.join("fedigen/driver-check-mypy-1.19.1-pyflakes-3.4.0/bin")
}

/// The signatures of the machine methods the generated scripts call, as the driver declares them.
const TYPED_METHODS: &[(&str, &str)] = &[
    (
        "succeed",
        "(self, *commands: str, timeout: int | None = None) -> str",
    ),
    (
        "fail",
        "(self, *commands: str, timeout: int | None = None) -> str",
    ),
    (
        "wait_until_succeeds",
        "(self, command: str, timeout: int = 900) -> str",
    ),
    (
        "wait_until_fails",
        "(self, command: str, timeout: int = 900) -> str",
    ),
    (
        "wait_for_unit",
        "(self, unit: str, user: str | None = None, timeout: int = 900) -> None",
    ),
    (
        "wait_for_open_port",
        "(self, port: int, addr: str = \"localhost\", timeout: int = 900) -> None",
    ),
    (
        "execute",
        "(self, command: str, check_return: bool = True, check_output: bool = True, \
         timeout: int | None = 900) -> tuple[int, str]",
    ),
];

/// The type hints (a stub module, `fedigen_test_driver.pyi`): a machine class with every method of the driver's
/// machines (typed where the scripts call them), and the driver's globals, each with a type of its own kind, so
/// that a script rebinding one (`debug = True`, `machines_qemu = []`, `start_all = 1`) is refused as the real
/// build's hints refuse it (review-36).
fn stub() -> String {
    let mut text = String::from(
        "import os as os\nfrom typing import Any, Callable, ContextManager\nfrom unittest import TestCase\n\n\n\
         class Machine:\n    name: str\n",
    );
    for method in MACHINE_METHODS {
        match TYPED_METHODS.iter().find(|(name, _)| name == method) {
            Some((name, signature)) => text.push_str(&format!("    def {name}{signature}: ...\n")),
            None => text.push_str(&format!("    {method}: Callable[..., Any]\n")),
        }
    }
    text.push_str(
        "\n\nclass Driver: ...\nclass Logger: ...\nclass Debug: ...\nclass VLan: ...\n\
         class AssertionTester(TestCase): ...\n\n",
    );
    for global in DRIVER_GLOBALS {
        text.push_str(&match *global {
            "start_all" | "test_script" | "run_tests" | "join_all" | "serial_stdout_off"
            | "serial_stdout_on" => format!("def {global}() -> None: ...\n"),
            "subtest" => "def subtest(name: str) -> ContextManager[None]: ...\n".to_owned(),
            "machines_qemu" | "machines_nspawn" | "machines" => {
                format!("{global}: list[Machine]\n")
            }
            "vlans" => "vlans: list[VLan]\n".to_owned(),
            "driver" => "driver: Driver\n".to_owned(),
            "log" => "log: Logger\n".to_owned(),
            "debug" => "debug: Debug\n".to_owned(),
            "t" => "t: AssertionTester\n".to_owned(),
            "os" => String::new(),
            "BaseMachine" | "Machine" => format!("{global} = Machine\n"),
            other => format!("{other}: Callable[..., Any]\n"),
        });
    }
    text
}

/// What mypy says of each script (empty when it passes), each checked as driver.nix checks it: the hints, one line
/// declaring the machines, the script. (driver.nix adds `--pretty`, which wraps the messages; the errors are the
/// same without it, one a line.)
fn mypy(scripts: &BTreeMap<String, Script>) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fedigen_test_driver.pyi"), stub()).unwrap();
    let mut files = Vec::new();
    for (i, script) in scripts.values().enumerate() {
        let machines: String = script
            .machines
            .iter()
            .map(|m| format!("{m}: Machine; "))
            .collect();
        let text = format!(
            "from fedigen_test_driver import *  # noqa\n{}\n\n\n{}",
            machines.trim_end(),
            script.text
        );
        let name = format!("script_{i}.py");
        std::fs::write(dir.path().join(&name), text).unwrap();
        files.push(name);
    }
    let out = Command::new(tools().join("mypy"))
        .args([
            "--no-implicit-optional",
            "--no-color-output",
            // The driver's Python (nixos-26.05: 3.13), whatever runs mypy here.
            "--python-version",
            "3.13",
            "--cache-dir",
            dir.path().join(".cache").to_str().unwrap(),
        ])
        .args(&files)
        .current_dir(dir.path())
        .env("MYPYPATH", dir.path())
        .output()
        .expect("mypy runs");
    let report = String::from_utf8_lossy(&out.stdout);
    scripts
        .keys()
        .zip(&files)
        .map(|(name, file)| {
            let lines: Vec<&str> = report
                .lines()
                .filter(|l| l.starts_with(&format!("{file}:")))
                .collect();
            (name.clone(), lines.join("\n"))
        })
        .collect()
}

/// What pyflakes says of a script (empty when it passes), run as driver.nix runs it.
fn pyflakes(script: &Script, dir: &Path) -> String {
    let file = dir.join("test-script");
    std::fs::write(&file, &script.text).unwrap();
    let builtins: Vec<&str> = script
        .machines
        .iter()
        .map(String::as_str)
        .chain(DRIVER_GLOBALS.iter().copied())
        .collect();
    let out = Command::new(tools().join("pyflakes"))
        .arg(&file)
        .env("PYFLAKES_BUILTINS", builtins.join(","))
        .output()
        .expect("pyflakes runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every generated test's script, as the driver gets it.
fn generated() -> BTreeMap<String, Script> {
    let scripts = evaluate_scripts(&generated_tests(&repository()));
    assert!(scripts.len() >= 9, "{:?}", scripts.keys());
    scripts
}

/// Passes when no script has a finding; else fails naming each script with its findings.
fn no_findings(reports: impl IntoIterator<Item = (String, String)>) -> Result<(), Failed> {
    let problems: Vec<String> = reports
        .into_iter()
        .filter(|(_, report)| !report.trim().is_empty())
        .map(|(name, report)| format!("{name}:\n{report}"))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n").into())
    }
}

/// pyflakes, as the driver's build lints each generated script.
fn every_generated_script_passes_pyflakes_as_the_driver_lints_it() -> Result<(), Failed> {
    let dir = tempfile::tempdir().unwrap();
    no_findings(
        generated()
            .iter()
            .map(|(name, script)| (name.clone(), pyflakes(script, dir.path()))),
    )
}

/// mypy, as the driver's build type-checks each generated script.
fn every_generated_script_passes_mypy_as_the_driver_type_checks_it() -> Result<(), Failed> {
    no_findings(mypy(&generated()))
}

/// The two checks refuse what the driver's build refuses, so their silence above means something: an empty
/// dict filled with an empty list (review-34's finding), a port given as a string, a misspelt machine, an
/// f-string without placeholders, a driver global rebound, a module the driver's Python 3.13 no longer has
/// (review-36); and pass a script that does it right.
fn the_driver_checks_refuse_planted_faults() -> Result<(), Failed> {
    let script = |text: &str| Script {
        text: text.to_owned(),
        machines: vec!["server".to_owned(), "client".to_owned()],
    };
    let scripts: BTreeMap<String, Script> = [
        ("untyped", "held = {}\nheld[\"a\"] = []\n"),
        ("port", "start_all()\nserver.wait_for_open_port(\"443\")\n"),
        ("name", "start_all()\nservr.succeed(\"true\")\n"),
        ("fstring", "start_all()\nserver.succeed(f\"true\")\n"),
        ("rebound", "debug = True\nmachines_qemu = [1]\nstart_all()\n"),
        ("removed", "import pipes\nstart_all()\nserver.succeed(pipes.quote(\"x\"))\n"),
        (
            "fine",
            "start_all()\nheld: dict[str, list[str]] = {}\nwith subtest(\"up\"):\n    \
             server.wait_for_open_port(443)\n    held[\"a\"] = [client.succeed(\"true\").strip()]\n",
        ),
    ]
    .into_iter()
    .map(|(name, text)| (name.to_owned(), script(text)))
    .collect();
    let typed = mypy(&scripts);
    let dir = tempfile::tempdir().unwrap();
    let linted: BTreeMap<&String, String> = scripts
        .iter()
        .map(|(name, s)| (name, pyflakes(s, dir.path())))
        .collect();
    let expect = [
        (typed["untyped"].contains("var-annotated"), "mypy: held"),
        (typed["port"].contains("arg-type"), "mypy: the port"),
        (
            typed["rebound"].contains("\"Debug\"") && typed["rebound"].contains("list-item"),
            "mypy: a driver global rebound",
        ),
        (
            typed["removed"].contains("pipes"),
            "mypy: a module Python 3.13 removed",
        ),
        (
            linted[&"name".to_owned()].contains("undefined name 'servr'"),
            "pyflakes: servr",
        ),
        (
            linted[&"fstring".to_owned()].contains("f-string is missing placeholders"),
            "pyflakes: the f-string",
        ),
        (
            typed["fine"].is_empty() && linted[&"fine".to_owned()].trim().is_empty(),
            "the fine script passes",
        ),
    ];
    let missed: Vec<&str> = expect
        .iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, w)| *w)
        .collect();
    if missed.is_empty() {
        Ok(())
    } else {
        Err(format!("missed: {missed:?}\nmypy: {typed:#?}\npyflakes: {linted:#?}").into())
    }
}

fn main() {
    let available = tools().join("mypy").is_file() && tools().join("pyflakes").is_file();
    let reason = "needs mypy 1.19.1 and pyflakes 3.4.0 (the checks nixpkgs runs on a test's script): \
                  scripts/install-test-deps installs them into \
                  ~/.cache/fedigen/driver-check-mypy-1.19.1-pyflakes-3.4.0, or set FEDIGEN_DRIVER_CHECK";
    support::run_gated(vec![
        (
            "every_generated_script_passes_pyflakes_as_the_driver_lints_it",
            available,
            every_generated_script_passes_pyflakes_as_the_driver_lints_it,
            reason,
        ),
        (
            "every_generated_script_passes_mypy_as_the_driver_type_checks_it",
            available,
            every_generated_script_passes_mypy_as_the_driver_type_checks_it,
            reason,
        ),
        (
            "the_driver_checks_refuse_planted_faults",
            available,
            the_driver_checks_refuse_planted_faults,
            reason,
        ),
    ]);
}
