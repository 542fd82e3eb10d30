//! Benchmark: `fedigen generate` planning for a specification of 1,000 operators with every application
//! enabled, verification included (every file printed, parsed by rnix; templates laid out by nixfmt). Run with
//! `cargo bench -p fedigen --bench generate`; prints a Markdown table for BENCHMARKS.md.
//!
//! Every row runs in a fresh process (this binary again, `--child …`) that measures its own work, wall and CPU
//! time and peak memory (max RSS); the rows run interleaved, medians (see `measure`). `--before BIN` adds the
//! same benchmark built from another checkout (to compare a change within one run).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "measure/mod.rs"]
mod measure;

/// As in the `fedigen` binary (`src/main.rs`), so that the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A specification of `operators` operators, each running every application but Garage (which is the
/// provider's object storage, three nodes), on the QEMU backend.
fn specification(operators: usize) -> String {
    let mut spec = String::from(
        r#"[provider]
name = "bench"
domain = "bench-provider.example"

[provider.runtime]
backend = "qemu"

[provider.acme]
email = "hostmaster@bench-provider.example"
accept_terms = true

[provider.smtp]
host = "smtp.bench-provider.example"
port = 587
user = "fediversity"
password = { secret = "smtp-password" }
from = "noreply@bench-provider.example"

[provider.object_storage]
replication_factor = 3
region = "bench"
secrets.environment = { secret = "garage-environment" }
nodes.a = { zone = "a", capacity_gib = 1000, network = { dhcp = true } }
nodes.b = { zone = "b", capacity_gib = 1000, network = { dhcp = true } }
nodes.c = { zone = "c", capacity_gib = 1000, network = { dhcp = true } }
"#,
    );
    for i in 0..operators {
        let _ = write!(
            spec,
            r#"
[[operators]]
name = "op{i}"
domain = "op{i}.example"
contact = "admin@op{i}.example"
admin = {{ username = "admin", email = "admin@op{i}.example" }}
applications.mastodon = {{ settings = {{ streamingProcesses = 2, extraConfig = {{ AUTHORIZED_FETCH = "true" }} }} }}
applications.pixelfed = {{ settings = {{ appName = "Pixels {i}" }}, secrets.appSecrets = {{ secret = "op{i}-pixelfed" }} }}
applications.peertube = {{ secrets.peertubeSecret = {{ secret = "op{i}-peertube" }} }}
applications.matrix-synapse = {{ secrets.synapseSecrets = {{ secret = "op{i}-synapse" }} }}
machines.mastodon.network = {{ dhcp = true }}
machines.pixelfed.network = {{ dhcp = true }}
machines.peertube.network = {{ dhcp = true }}
machines.matrix-synapse.network = {{ dhcp = true }}
"#
        );
    }
    spec
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The generated files, one after another, each preceded by its length (what the rnix, nixfmt and JSON rows
/// read: the Nix files, or the JSON files).
fn read_bundle(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let mut files = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
        files.push(String::from_utf8(rest[8..8 + len].to_vec()).unwrap());
        rest = &rest[8 + len..];
    }
    files
}

/// `--child generate|rnix|nixfmt FILE`: one measured execution in this fresh process.
fn child(kind: &str, file: &Path) {
    let sample = match kind {
        "generate" => {
            let (sample, plan) = measure::in_process(|| {
                fedigen::generate::plan_with_spec(&repository(), Some(file)).unwrap()
            });
            let bytes: usize = plan.files.values().map(String::len).sum();
            println!("{} {bytes}", plan.files.len());
            sample
        }
        "rnix" => {
            let files = read_bundle(file);
            measure::in_process(|| {
                for text in &files {
                    assert!(rnix::Root::parse(text).errors().is_empty());
                }
            })
            .0
        }
        "json" => {
            let files = read_bundle(file);
            measure::in_process(|| {
                for text in &files {
                    serde_json::from_str::<serde_json::Value>(text).unwrap();
                }
            })
            .0
        }
        "nixfmt" => {
            let files = read_bundle(file);
            measure::in_process(|| {
                for text in &files {
                    assert_eq!(
                        &nixfmt_rs::format(text).unwrap(),
                        text,
                        "generated output must be canonical"
                    );
                }
            })
            .0
        }
        other => panic!("unknown child {other}"),
    };
    measure::report(sample);
}

fn main() {
    if let Some(kind) = measure::flag("--child") {
        let file = std::env::args().next_back().unwrap();
        return child(&kind, Path::new(&file));
    }
    if !std::env::args().any(|a| a == "--bench") {
        println!("generate benchmark: skipped (run `cargo bench -p fedigen --bench generate`)");
        return;
    }
    let operators: usize = std::env::var("FEDIGEN_BENCH_OPERATORS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rounds: usize = std::env::var("FEDIGEN_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let with_nixfmt = std::env::var_os("FEDIGEN_BENCH_NO_NIXFMT").is_none();
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("bench.toml");
    std::fs::write(&spec_path, specification(operators)).unwrap();
    // The files once, for the rnix and nixfmt rows (the Nix files) and the JSON row (the migration tests' data).
    let plan = fedigen::generate::plan_with_spec(&repository(), Some(&spec_path)).unwrap();
    let bytes: usize = plan.files.values().map(String::len).sum();
    let bundle_of = |name: &str, json: bool| {
        let path = dir.path().join(name);
        let mut out = Vec::new();
        for (file, text) in &plan.files {
            if file.extension().is_some_and(|e| e == "json") == json {
                out.extend_from_slice(&(text.len() as u64).to_le_bytes());
                out.extend_from_slice(text.as_bytes());
            }
        }
        eprintln!("{}: {} bytes", if json { "JSON" } else { "Nix" }, out.len());
        std::fs::write(&path, out).unwrap();
        path
    };
    let bundle = bundle_of("files.bin", false);
    let json = bundle_of("json.bin", true);
    let expected = format!("{} {bytes}", plan.files.len());
    drop(plan);

    let me = std::env::current_exe().unwrap();
    let before = measure::flag("--before");
    let run = |bin: &Path, kind: &str, file: &Path| {
        let (sample, lines) = measure::child(
            Command::new(bin)
                .args(["--bench", "--child", kind])
                .arg(file)
                .current_dir(repository()),
        );
        if kind == "generate" {
            assert_eq!(lines, std::slice::from_ref(&expected), "the same files");
        }
        sample
    };
    let load = measure::loadavg();
    let mut rows = vec![measure::Row::new(
        "fedigen generate: load and check the spec, render, emit, verify every file",
        || run(&me, "generate", &spec_path),
    )];
    if let Some(before) = &before {
        rows.push(measure::Row::new(
            format!("the same, built from {}", before),
            || run(Path::new(before), "generate", &spec_path),
        ));
    }
    rows.push(measure::Row::new(
        "rnix parse of the same Nix files alone",
        || run(&me, "rnix", &bundle),
    ));
    rows.push(measure::Row::new(
        "serde_json parse of the JSON files alone (the migration tests' data)",
        || run(&me, "json", &json),
    ));
    if with_nixfmt {
        rows.push(measure::Row::new(
            "nixfmt_rs format of the same Nix files alone",
            || run(&me, "nixfmt", &bundle),
        ));
    }
    let results = measure::interleaved(&mut rows, rounds);
    drop(rows);
    let title = format!(
        "### `generate`, {operators} operators: {} files, {:.1} MB of Nix and JSON; each row a fresh process; medians of {rounds} interleaved rounds; peak memory of fedigen generate {:.0} MiB",
        expected.split(' ').next().unwrap(),
        bytes as f64 / 1e6,
        results[0].max_rss_mib,
    );
    measure::print_table(&title, &results, 0, "s", &load);
}
