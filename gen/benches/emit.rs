//! Benchmark: emitting a large value (≥ 50 MB of Nix) with verification, against the real parsers on the same
//! text. Run with `cargo bench -p fedigen --bench emit`; it prints a Markdown table for BENCHMARKS.md.
//! Needs `nix-instantiate` on PATH for the Nix row.
//!
//! Every row runs in a fresh process, interleaved with the others, medians of wall and CPU time (see
//! `measure`): fedigen's rows are this binary again (`--child …`), which builds the value first and measures
//! only the step; `nix-instantiate --parse` is measured whole. A fresh process pays the first-touch page faults
//! of everything it builds, as a real `fedigen generate` does, and no row inherits another's warm heap.
//! `--before BIN` adds the emit row of the same benchmark built from another checkout.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;

#[path = "measure/mod.rs"]
mod measure;

/// As in the `fedigen` binary (`src/main.rs`), so that the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

fn operators() -> usize {
    std::env::var("FEDIGEN_BENCH_OPERATORS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(110_000)
}

/// `--child print|emit|rnix`: build the value, then measure one step in this fresh process.
fn child(kind: &str) {
    let value = large_value(operators());
    let expr = from_json(&value, DataPolicy::default()).unwrap();
    drop(value);
    let sample = match kind {
        "print" => {
            let (s, text) = measure::in_process(|| print_file(&[], &expr));
            println!("{}", text.len());
            s
        }
        "emit" => {
            let (s, text) = measure::in_process(|| {
                emit_file("bench.nix", &[], &expr, Verification::Syntax).unwrap()
            });
            println!("{}", text.len());
            s
        }
        "rnix" => {
            let text = print_file(&[], &expr);
            drop(expr);
            let (s, errors) =
                measure::in_process(|| rnix::Root::parse(black_box(&text)).errors().len());
            assert_eq!(errors, 0);
            println!("{}", text.len());
            s
        }
        other => panic!("unknown child {other}"),
    };
    measure::report(sample);
}

fn main() {
    if let Some(kind) = measure::flag("--child") {
        return child(&kind);
    }
    // `cargo test --all-targets` runs benchmarks once without `--bench`: a 70 MB run is not a test.
    if !std::env::args().any(|a| a == "--bench") {
        println!("emit benchmark: skipped (run `cargo bench -p fedigen --bench emit`)");
        return;
    }
    let operators = operators();
    let rounds: usize = std::env::var("FEDIGEN_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let value = large_value(operators);
    let expr = from_json(&value, DataPolicy::default()).unwrap();
    drop(value);
    let printed = print_file(&[], &expr);
    let emitted = emit_file("bench.nix", &[], &expr, Verification::Syntax).unwrap();
    assert_eq!(
        emitted, printed,
        "the fast path must not have needed nixfmt"
    );
    drop((emitted, expr));
    let mb = printed.len() as f64 / 1e6;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bench.nix");
    std::fs::write(&file, &printed).unwrap();
    if std::env::var_os("FEDIGEN_BENCH_NIXFMT").is_some() {
        let (s, formatted) = measure::in_process(|| nixfmt_rs::format(&printed).unwrap());
        assert_eq!(formatted, printed, "output must be nixfmt-canonical");
        println!(
            "nixfmt_rs format (canonical check), once: {:.2} s wall, {:.2} s CPU\n",
            s.wall, s.cpu
        );
    }
    let len = printed.len().to_string();
    drop(printed);

    let me = std::env::current_exe().unwrap();
    let run = |bin: &Path, kind: &str| {
        let (s, lines) = measure::child(Command::new(bin).args(["--bench", "--child", kind]));
        assert_eq!(lines, std::slice::from_ref(&len), "the same text");
        s
    };
    let before = measure::flag("--before");
    let load = measure::loadavg();
    let mut rows = vec![measure::Row::new(
        "emit + verify (print, rnix parse, checks)",
        || run(&me, "emit"),
    )];
    if let Some(before) = &before {
        rows.push(measure::Row::new(
            format!("the same, built from {before}"),
            || run(Path::new(before), "emit"),
        ));
    }
    rows.push(measure::Row::new(
        "print alone (fedigen, canonical layout)",
        || run(&me, "print"),
    ));
    rows.push(measure::Row::new("rnix parse alone (one thread)", || {
        run(&me, "rnix")
    }));
    rows.push(measure::Row::new(
        "`nix-instantiate --parse` (the process)",
        || measure::process_discarding(Command::new("nix-instantiate").arg("--parse").arg(&file)),
    ));
    let results = measure::interleaved(&mut rows, rounds);
    drop(rows);
    measure::print_table(
        &format!(
            "### Emit + verify: {mb:.1} MB of Nix ({operators} operators); each row a fresh process; medians of {rounds} interleaved rounds"
        ),
        &results,
        0,
        "s",
        &load,
    );
}
