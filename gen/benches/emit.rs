//! Benchmark: emitting a large value (≥ 50 MB of Nix) with verification, against the real parsers on the same
//! text. Run with `cargo bench -p fedigen --bench emit`; it prints a Markdown table for BENCHMARKS.md.
//! Needs `nix-instantiate` on PATH for the Nix row.

use std::hint::black_box;
use std::time::{Duration, Instant};

use fedigen::emit::{Verification, emit_file};
use fedigen::nix::print::print_file;
use fedigen::nix::value::{DataPolicy, from_json};
use serde_json::{Value, json};

/// A deterministic, operator-shaped value: nested sets, lists, strings that need escaping, numbers.
fn large_value(operators: usize) -> Value {
    let mut map = serde_json::Map::new();
    for i in 0..operators {
        map.insert(
            format!("operator-{i:06}"),
            json!({
                "domain": format!("op{i}.example.org"),
                "contact": format!("admin@op{i}.example.org"),
                "applications": {
                    "mastodon": {"enable": i % 2 == 0, "cores": i % 8 + 1, "memory": 2048.5, "extra": "a \"quoted\" ${not} interpolation\n"},
                    "pixelfed": {"enable": i % 3 == 0, "maxUpload": -15, "tags": ["x", "y", "z.w"]},
                    "peertube": {"enable": true, "note": "multi\nline\n  text\n"},
                },
                "resources": [1, 2, 3, {"disk": 10737418240i64}],
            }),
        );
    }
    Value::Object(map)
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn main() {
    // `cargo test --all-targets` runs benchmarks once without `--bench`: a 70 MB run is not a test.
    if !std::env::args().any(|a| a == "--bench") {
        println!("emit benchmark: skipped (run `cargo bench -p fedigen --bench emit`)");
        return;
    }
    let operators: usize = std::env::var("FEDIGEN_BENCH_OPERATORS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(110_000);
    let value = large_value(operators);
    let (expr, convert) = time(|| from_json(&value, DataPolicy::default()).unwrap());
    let (printed, print) = time(|| print_file(&[], &expr));
    let mb = printed.len() as f64 / 1e6;
    let (emitted, emit) =
        time(|| emit_file("bench.nix", &[], &expr, Verification::Syntax).unwrap());
    assert_eq!(
        emitted, printed,
        "the fast path must not have needed nixfmt"
    );
    let (errors, rnix) = time(|| rnix::Root::parse(black_box(&printed)).errors().len());
    assert_eq!(errors, 0);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bench.nix");
    std::fs::write(&file, &printed).unwrap();
    let (status, nix_parse) = time(|| {
        std::process::Command::new("nix-instantiate")
            .arg("--parse")
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .status()
    });
    let nix_parse = match status {
        Ok(s) if s.success() => Some(nix_parse),
        _ => None,
    };
    let (formatted, nixfmt) = time(|| nixfmt_rs::format(&printed).unwrap());
    assert_eq!(formatted, printed, "output must be nixfmt-canonical");

    let secs = |d: Duration| d.as_secs_f64();
    let row = |name: &str, d: Duration| {
        println!(
            "| {name} | {:.2} | {:.1} | {:.2}× |",
            secs(d),
            mb / secs(d),
            secs(d) / secs(rnix)
        );
    };
    println!(
        "Nix text: {mb:.1} MB ({operators} operators); JSON → model conversion {:.2} s (not counted)\n",
        secs(convert)
    );
    println!("| step | seconds | MB/s | time ÷ rnix parse |");
    println!("|---|---|---|---|");
    row("print (fedigen, canonical layout)", print);
    row("emit + verify (print + rnix parse)", emit);
    row("rnix parse alone", rnix);
    match nix_parse {
        Some(d) => row("`nix-instantiate --parse` (process)", d),
        None => println!("| `nix-instantiate --parse` | not run (Nix missing) | | |"),
    }
    row("nixfmt_rs format (canonical check)", nixfmt);
}
