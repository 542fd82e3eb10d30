//! The specification corpus, as data: every file in `fixtures/spec/invalid/` must be refused with exactly the
//! report in its sibling `.expected` file (rendered without colour), and every file in `fixtures/spec/valid/`
//! must load. One test per folder reports every mismatch at once, each with a diff.
//!
//! `FEDIGEN_BLESS=1 cargo test -p fedigen --test spec_corpus` rewrites the `.expected` files; review the diff:
//! those files are the snapshots reviewers read.

use std::path::{Path, PathBuf};

use fedigen::eval::Evaluator;
use fedigen::model::{self, Catalog, Format, SpecDocument};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spec")
}

fn catalog() -> Catalog {
    Catalog::load(&fixtures().join("templates")).expect("fixture manifests load")
}

/// The specification files of a folder, sorted.
fn cases(folder: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join(folder))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| Format::of_path(p).is_some())
        .collect();
    files.sort();
    files
}

/// Parses a case, naming it by its path under `fixtures/spec/` so reports do not depend on the machine.
fn document(path: &Path) -> SpecDocument {
    let name = path.strip_prefix(fixtures()).unwrap().display().to_string();
    let text = std::fs::read_to_string(path).unwrap();
    match Format::of_path(path).unwrap() {
        Format::Toml => SpecDocument::toml(&name, &text),
        Format::Json => SpecDocument::json(&name, &text),
        Format::Nix => {
            let nix = Evaluator::locate()
                .expect("Nix specifications need Nix: run scripts/install-test-deps");
            SpecDocument::nix(&nix, path, &name, text).expect("the case evaluates")
        }
    }
}

fn diff(expected: &str, actual: &str) -> String {
    similar::TextDiff::from_lines(expected, actual)
        .unified_diff()
        .header("expected", "actual")
        .to_string()
}

#[test]
fn every_invalid_specification_gives_exactly_its_expected_report() {
    let catalog = catalog();
    let bless = std::env::var_os("FEDIGEN_BLESS").is_some();
    let files = cases("invalid");
    assert!(files.len() >= 30, "the corpus has {} cases", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let expected_path = path.with_extension("expected");
        let actual = match model::from_document(&document(path), &catalog) {
            Ok(_) => {
                failures.push(format!("{}: accepted, but must be refused", path.display()));
                continue;
            }
            Err(report) => report.render(false),
        };
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            if bless {
                std::fs::write(&expected_path, &actual).unwrap();
            } else {
                failures.push(format!(
                    "{}: the report differs from {}\n{}",
                    path.display(),
                    expected_path.display(),
                    diff(&expected, &actual)
                ));
            }
        }
    }
    let orphans: Vec<String> = std::fs::read_dir(fixtures().join("invalid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "expected"))
        .filter(|p| !files.iter().any(|f| f.with_extension("expected") == *p))
        .map(|p| format!("{}: no specification for this report", p.display()))
        .collect();
    failures.extend(orphans);
    assert!(
        failures.is_empty(),
        "{} of {} cases failed (FEDIGEN_BLESS=1 rewrites the reports):\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn every_valid_specification_loads() {
    let catalog = catalog();
    let mut failures = Vec::new();
    for path in cases("valid") {
        if let Err(report) = model::from_document(&document(&path), &catalog) {
            failures.push(report.render(false));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_example_specification_is_valid_against_the_real_templates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let catalog = Catalog::load(&root.join("templates")).expect("templates/ load");
    let spec = model::load(&root.join("examples/provider.toml"), &catalog)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(spec.operators.len() >= 3);
    let apps: Vec<&str> = spec
        .operators
        .iter()
        .flat_map(|o| o.applications.keys().map(String::as_str))
        .collect();
    for app in ["mastodon", "pixelfed", "peertube", "matrix-synapse"] {
        assert!(apps.contains(&app), "the example uses {app}");
    }
}

#[test]
fn loaded_specifications_keep_what_was_written_and_fill_defaults() {
    let catalog = catalog();
    let spec =
        model::from_document(&document(&fixtures().join("valid/minimal.toml")), &catalog).unwrap();
    assert_eq!(spec.provider.acme.server, model::LETS_ENCRYPT);
    assert_eq!(
        spec.provider.smtp.as_ref().unwrap().port,
        model::SMTP_SUBMISSION_PORT
    );
    let op = &spec.operators[0];
    let app = &op.applications["matrix-synapse"];
    assert!(app.enable);
    let manifest = &catalog.manifests["matrix-synapse"];
    assert_eq!(
        op.host_name("matrix-synapse", manifest),
        "matrix.uni.example"
    );
    assert_eq!(op.machine_name("matrix-synapse"), "uni-matrix-synapse");
    assert_eq!(app.resources.resolve(manifest.resources).cores, 2);
    assert_eq!(
        app.settings_with_defaults(manifest)["maxUploadSize"],
        serde_json::json!("50M")
    );
}
