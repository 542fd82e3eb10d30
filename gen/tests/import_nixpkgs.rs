//! `fedigen template import` against nixpkgs' own module system: each fixture of `fixtures/import/` is evaluated
//! with `lib.evalModules` (through `fixtures/import/evaluator/options.nix`), and what the evaluator says about
//! every option — its name, default, description, example and `type.description` — must match the import, or
//! the import must have reported the difference for that option. Every option the evaluator knows must be one
//! the import read, and the other way round.
//!
//! Needs nixpkgs' `lib` (`FEDIGEN_NIXPKGS` pointing at a nixpkgs or nix-community/nixpkgs.lib checkout);
//! without it every trial is reported ignored, with the reason — never passed. A libtest-mimic harness
//! (`harness = false`), so that is decided when the tests run.

// Until gen/Cargo.toml declares this target with `harness = false`, cargo builds it with libtest, which never
// calls `main`: say so as an ignored test instead of failing the build on unused code.
#![cfg_attr(test, allow(dead_code, unused_imports))]

use std::path::{Path, PathBuf};
use std::process::Command;

use fedigen::import::{Import, Severity, import_module, show_path};
use fedigen::nix::print::print_expr;
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import")
}

fn nixpkgs() -> Option<PathBuf> {
    std::env::var_os("FEDIGEN_NIXPKGS").map(PathBuf::from)
}

/// Numbers compared loosely (Nix 2.8 prints six significant digits), everything else exactly.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x == y || (x - y).abs() <= 1e-5 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// A type description with the one difference that is not a loss spelled alike: `ints.u8` and the
/// manifest's `ints.between 0 255` accept the same integers, but nixpkgs describes the first as
/// "8 bit unsigned integer; between 0 and 255 (both inclusive)" and the second as "integer between 0 and 255
/// (both inclusive)".
fn same_range(description: &str) -> String {
    let sized = description
        .split_once(" bit unsigned integer; between ")
        .or_else(|| description.split_once(" bit signed integer; between "));
    match sized {
        Some((bits, range)) if bits.chars().all(|c| c.is_ascii_digit()) => {
            format!("integer between {range}")
        }
        _ => description.to_owned(),
    }
}

/// Whether the import warned about this option (the reported difference that excuses a mismatch).
fn warned(import: &Import, path: &[String]) -> bool {
    let prefix = format!("`{}`", show_path(path));
    import
        .findings
        .iter()
        .any(|f| f.severity == Severity::Warning && f.message.starts_with(&prefix))
}

fn evaluate(nixpkgs: &Path, fixture: &Path, import: &Import) -> Result<Value, Failed> {
    let dir = tempfile::tempdir()?;
    let mut ours = String::from("lib: {\n");
    for (name, option) in &import.options {
        let ty = option.ty.nix_type().map_err(|e| e.to_string())?;
        ours.push_str(&format!(
            "  {} = {};\n",
            Value::from(name.as_str()),
            print_expr(&ty)
        ));
    }
    ours.push_str("}\n");
    std::fs::write(dir.path().join("ours.nix"), ours)?;
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(fixtures().join("evaluator/options.nix"))
        .arg("--arg")
        .arg("nixpkgs")
        .arg(nixpkgs)
        .arg("--arg")
        .arg("module")
        .arg(fixture)
        .arg("--arg")
        .arg("ours")
        .arg(dir.path().join("ours.nix"))
        .arg("-I")
        .arg(format!("nixpkgs={}", nixpkgs.display()))
        .output()?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn check_fixture(nixpkgs: &Path, fixture: &Path) -> Result<(), Failed> {
    let name = fixture.file_name().unwrap().to_string_lossy().into_owned();
    let import = import_module(&name, &std::fs::read_to_string(fixture)?, None)
        .map_err(|e| e.to_string())?;
    let result = evaluate(nixpkgs, fixture, &import)?;
    let mut problems = Vec::new();
    let evaluated: Vec<&Value> = result["options"]
        .as_array()
        .ok_or("no options")?
        .iter()
        .collect();
    let loc = |option: &Value| -> Vec<String> {
        option["loc"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let known: Vec<Vec<String>> = evaluated.iter().map(|o| loc(o)).collect();
    for path in &import.declared {
        if !known.contains(path) {
            problems.push(format!(
                "`{}`: read by the import, unknown to the evaluator",
                show_path(path)
            ));
        }
    }
    for option in &evaluated {
        let path = loc(option);
        let shown = show_path(&path);
        let from_imports = import
            .findings
            .iter()
            .any(|f| f.message.starts_with("`imports` are not followed"));
        if !import.declared.contains(&path) && option["visible"] == false && from_imports {
            continue; // declared by an imported module (a renamed option), which the import said it skips
        }
        if !import.declared.contains(&path) {
            problems.push(format!(
                "`{shown}`: declared, but the import did not read it"
            ));
            continue;
        }
        if path.last().map(String::as_str) == Some("enable")
            && path.len() == import.upstream.split('.').count() + 1
        {
            let title = &import.manifest.application.title;
            if option["description"] != format!("Whether to enable {title}.") {
                problems.push(format!(
                    "`{shown}`: the title `{title}` is not its mkEnableOption text"
                ));
            }
            continue;
        }
        let Some((manifest_name, imported)) = import.options.iter().find(|(_, o)| o.path == path)
        else {
            continue; // skipped (and reported, which the fixture's .expected shows), a secret or a submodule
        };
        if option["description"] != imported.description.as_str() && !warned(&import, &path) {
            problems.push(format!(
                "`{shown}`: description {} upstream, {:?} imported",
                option["description"], imported.description
            ));
        }
        let upstream_default = option["default"].as_array().and_then(|d| d.first());
        match (&imported.default, upstream_default) {
            (Some(ours), Some(theirs)) if same(ours, theirs) => {}
            (None, None) => {}
            (None, Some(_)) if warned(&import, &path) => {}
            (ours, theirs) => problems.push(format!(
                "`{shown}`: default {theirs:?} upstream, {ours:?} imported (unreported)"
            )),
        }
        let upstream_example = option["example"].as_array().and_then(|d| d.first());
        match (&imported.example, upstream_example) {
            (Some(ours), Some(theirs)) if same(ours, theirs) => {}
            (None, None) => {}
            (None, Some(_)) if warned(&import, &path) => {}
            (ours, theirs) => problems.push(format!(
                "`{shown}`: example {theirs:?} upstream, {ours:?} imported (unreported)"
            )),
        }
        let ours = &result["ours"][manifest_name.as_str()];
        if ours.as_str().map(same_range) != option["type"].as_str().map(same_range)
            && !warned(&import, &path)
        {
            problems.push(format!(
                "`{shown}`: the type is {} upstream and {ours} as imported, and the import did not say so",
                option["type"]
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n").into())
    }
}

fn main() {
    let args = Arguments::from_args();
    let nixpkgs = nixpkgs().filter(|p| p.join("lib/default.nix").is_file());
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "nix"))
        // The refused cases (they do not parse, or declare nothing) have nothing to compare.
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            import_module("case", &text, None).is_ok()
        })
        .collect();
    fixtures.sort();
    if nixpkgs.is_none() {
        eprintln!(
            "ignored: every trial needs nixpkgs' lib: set FEDIGEN_NIXPKGS to a nixpkgs (or nixpkgs.lib) checkout"
        );
    }
    let trials = fixtures
        .into_iter()
        .map(|fixture| {
            let name = format!(
                "evaluator_agrees_with_import::{}",
                fixture.file_stem().unwrap().to_string_lossy()
            );
            let nixpkgs = nixpkgs.clone();
            let ignored = nixpkgs.is_none();
            Trial::test(name, move || match &nixpkgs {
                Some(nixpkgs) => check_fixture(nixpkgs, &fixture),
                None => Err("FEDIGEN_NIXPKGS is not set".into()),
            })
            .with_ignored_flag(ignored)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// Shown when cargo builds this file with libtest instead of as its own harness.
#[cfg(test)]
#[test]
#[ignore = "needs `[[test]] name = \"import_nixpkgs\" harness = false` in gen/Cargo.toml (and FEDIGEN_NIXPKGS)"]
fn import_nixpkgs_needs_its_own_harness() {}
