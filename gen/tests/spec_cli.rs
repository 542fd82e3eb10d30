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
