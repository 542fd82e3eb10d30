//! The JSON Schema and the validator agree, checked by an independent implementation (Debian's Python
//! `jsonschema`, `Draft202012Validator`):
//!
//! - the schema is itself a valid draft 2020-12 schema, and printing it twice gives the same text;
//! - the example specification (`examples/provider.toml`, against the real `templates/`) and every valid
//!   fixture satisfy it;
//! - every invalid case listed in `fixtures/spec/invalid/schema-rejects.txt` fails it, and every other invalid
//!   case that parses *passes* it: those need the validator's cross-checks (uniqueness, collisions, limits,
//!   references), so the list is exactly what the schema can express.

use std::path::{Path, PathBuf};
use std::process::Command;

use fedigen::eval::Evaluator;
use fedigen::model::{self, Catalog, Format, SpecDocument};
use serde_json::{Value, json};

/// Debian's interpreter, which has `python3-jsonschema` (a `python3` earlier on PATH may be another one).
const PYTHON: &str = "/usr/bin/python3";

const VALIDATE: &str = r#"
import json, sys
from jsonschema import Draft202012Validator
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
validator = Draft202012Validator(schema)
documents = json.load(open(sys.argv[2]))
print(json.dumps([sorted(e.message for e in validator.iter_errors(d)) for d in documents]))
"#;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spec")
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The schema errors of each document, by Python's jsonschema.
fn schema_errors(schema: &Value, documents: &[Value]) -> Vec<Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let schema_file = dir.path().join("schema.json");
    let documents_file = dir.path().join("documents.json");
    std::fs::write(&schema_file, schema.to_string()).unwrap();
    std::fs::write(&documents_file, Value::from(documents.to_vec()).to_string()).unwrap();
    let output = Command::new(PYTHON)
        .arg("-c")
        .arg(VALIDATE)
        .arg(&schema_file)
        .arg(&documents_file)
        .output()
        .unwrap_or_else(|e| panic!("{PYTHON}: {e}; run scripts/install-test-deps"));
    assert!(
        output.status.success(),
        "{PYTHON} with jsonschema failed (run scripts/install-test-deps for python3-jsonschema):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the script prints JSON")
}

/// The document as written (no defaults filled in), as the schema sees it.
fn raw(path: &Path) -> SpecDocument {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).unwrap();
    match Format::of_path(path).unwrap() {
        Format::Toml => SpecDocument::toml(&name, &text),
        Format::Json => SpecDocument::json(&name, &text),
        Format::Nix => {
            SpecDocument::nix(&Evaluator::locate().expect("Nix"), path, &name, text).unwrap()
        }
    }
}

fn specification_files(folder: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| Format::of_path(p).is_some())
        .collect();
    files.sort();
    files
}

#[test]
fn the_example_and_the_valid_fixtures_satisfy_the_schema() {
    let real = Catalog::load(&repository().join("templates")).expect("templates/ load");
    let example = raw(&repository().join("examples/provider.toml"));
    assert!(example.diagnostics.is_empty());
    let errors = schema_errors(&model::json_schema(&real), &[example.value]);
    assert_eq!(
        errors,
        vec![Vec::<String>::new()],
        "examples/provider.toml against the schema"
    );

    let fixtures_catalog = Catalog::load(&fixtures().join("templates")).unwrap();
    let files = specification_files(&fixtures().join("valid"));
    let documents: Vec<Value> = files.iter().map(|f| raw(f).value).collect();
    let errors = schema_errors(&model::json_schema(&fixtures_catalog), &documents);
    for (file, errors) in files.iter().zip(errors) {
        assert!(errors.is_empty(), "{}: {errors:?}", file.display());
    }
}

#[test]
fn the_schema_rejects_exactly_the_invalid_cases_it_can_express() {
    let catalog = Catalog::load(&fixtures().join("templates")).unwrap();
    let list = std::fs::read_to_string(fixtures().join("invalid/schema-rejects.txt")).unwrap();
    let rejects: Vec<&str> = list
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .collect();
    let files = specification_files(&fixtures().join("invalid"));
    for name in &rejects {
        assert!(
            files.iter().any(|f| f.file_name().unwrap() == *name),
            "schema-rejects.txt names `{name}`, which is not a case"
        );
    }
    // Cases that do not parse (syntax errors, duplicate keys) have no document to give the schema.
    let parsed: Vec<(PathBuf, Value)> = files
        .into_iter()
        .map(|f| (f.clone(), raw(&f)))
        .filter(|(_, d)| d.diagnostics.is_empty())
        .map(|(f, d)| (f, d.value))
        .collect();
    let documents: Vec<Value> = parsed.iter().map(|(_, v)| v.clone()).collect();
    let errors = schema_errors(&model::json_schema(&catalog), &documents);
    let mut failures = Vec::new();
    let mut rejected = 0;
    for ((file, _), errors) in parsed.iter().zip(&errors) {
        let name = file.file_name().unwrap().to_str().unwrap();
        match (rejects.contains(&name), errors.is_empty()) {
            (true, true) => failures.push(format!("{name}: listed, but the schema accepts it")),
            (false, false) => failures.push(format!(
                "{name}: the schema rejects it, so list it in schema-rejects.txt: {errors:?}"
            )),
            (true, false) => rejected += 1,
            (false, true) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        rejected >= 20,
        "only {rejected} cases are schema-expressible"
    );
}

#[test]
fn the_schema_is_deterministic_and_covers_every_application() {
    let catalog = Catalog::load(&fixtures().join("templates")).unwrap();
    let a = serde_json::to_string_pretty(&model::json_schema(&catalog)).unwrap();
    let b = serde_json::to_string_pretty(&model::json_schema(&catalog)).unwrap();
    assert_eq!(a, b);
    let schema = model::json_schema(&catalog);
    assert_eq!(
        schema["$schema"],
        json!("https://json-schema.org/draft/2020-12/schema")
    );
    let applications =
        &schema["properties"]["operators"]["items"]["properties"]["applications"]["properties"];
    for name in catalog.manifests.keys() {
        assert!(applications.get(name).is_some(), "{name} is in the schema");
    }
    let sink = &applications["kitchen-sink"];
    assert_eq!(
        sink["properties"]["settings"]["additionalProperties"],
        json!(false)
    );
    assert_eq!(sink["properties"]["settings"]["required"], json!(["motto"]));
    assert!(
        sink["required"]
            .as_array()
            .unwrap()
            .contains(&json!("settings")),
        "settings with a required option are required"
    );
}
