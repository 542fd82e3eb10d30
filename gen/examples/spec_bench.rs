//! Writes the specifications BENCHMARKS.md validates: 10,000 operators built from the repository's example
//! (`examples/provider.toml`: its provider and operators, then copies of its first operator under new names
//! and domains), as the panel would send them (pretty-printed JSON), once valid and once with 1,000 errors
//! (500 operators reusing the first operator's name, the same problem at many places; 500 contacts that are
//! not e-mail addresses, each message different).
//!
//! ```sh
//! cargo run --release -p fedigen --example spec_bench -- /tmp/spec-bench     # [operators] [errors]
//! /usr/bin/time -v target/release/fedigen validate /tmp/spec-bench/valid.json
//! /usr/bin/time -v target/release/fedigen validate /tmp/spec-bench/invalid.json 2> /tmp/spec-bench/report.txt
//! ```

use std::path::{Path, PathBuf};

use fedigen::model::SpecDocument;
use serde_json::Value;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "/tmp/spec-bench".into()));
    let operators: usize = args.next().map_or(10_000, |n| n.parse().expect("a number"));
    let errors: usize = args.next().map_or(1_000, |n| n.parse().expect("a number"));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let example = repo.join("examples/provider.toml");
    let text = std::fs::read_to_string(&example).expect("examples/provider.toml");
    let document = SpecDocument::toml("examples/provider.toml", &text);
    assert!(document.diagnostics.is_empty(), "the example parses");
    let mut valid = document.value.clone();
    let list = valid["operators"].as_array_mut().expect("operators");
    let written = list.len();
    let first = list[0].clone();
    let first_name = first["name"].as_str().unwrap().to_owned();
    for i in list.len()..operators {
        let mut op = first.clone();
        op["name"] = Value::from(format!("op{i}"));
        op["domain"] = Value::from(format!("op{i}.example"));
        op["contact"] = Value::from(format!("fediverse@op{i}.example"));
        list.push(op);
    }
    let mut invalid = valid.clone();
    let list = invalid["operators"].as_array_mut().unwrap();
    // Spread the errors over the copies (the example's own operators stay as written), half of one kind, half
    // each different.
    let step = ((list.len() - written) / errors.max(1)).max(1);
    for (n, i) in (written..list.len()).step_by(step).take(errors).enumerate() {
        if n % 2 == 0 {
            list[i]["name"] = Value::from(first_name.clone());
        } else {
            list[i]["contact"] = Value::from(format!("not an address {i}"));
        }
    }
    std::fs::create_dir_all(&dir).expect("the output folder");
    for (name, value) in [("valid.json", &valid), ("invalid.json", &invalid)] {
        let path = dir.join(name);
        std::fs::write(&path, serde_json::to_string_pretty(value).unwrap() + "\n").unwrap();
        let bytes = std::fs::metadata(&path).unwrap().len();
        println!("{}: {operators} operators, {bytes} bytes", path.display());
    }
}
