//! Benchmark: `fedigen generate` planning for a specification of 1,000 operators with every application
//! enabled, verification included (every file printed, parsed by rnix; templates laid out by nixfmt). Run with
//! `cargo bench -p fedigen --bench generate`; prints a Markdown table for BENCHMARKS.md, with peak memory
//! (the process's maximum resident set size, from getrusage).

use std::fmt::Write as _;
use std::time::Instant;

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
nodes.a = { zone = "a", capacity_gib = 1000 }
nodes.b = { zone = "b", capacity_gib = 1000 }
nodes.c = { zone = "c", capacity_gib = 1000 }
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
"#
        );
    }
    spec
}

fn peak_rss_mib() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    usage.ru_maxrss as f64 / 1024.0
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("generate benchmark: skipped (run `cargo bench -p fedigen --bench generate`)");
        return;
    }
    let operators: usize = std::env::var("FEDIGEN_BENCH_OPERATORS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("bench.toml");
    std::fs::write(&spec_path, specification(operators)).unwrap();
    let before = peak_rss_mib();
    let start = Instant::now();
    let plan = fedigen::generate::plan_with_spec(&repo, Some(&spec_path)).unwrap();
    let elapsed = start.elapsed().as_secs_f64();
    let bytes: usize = plan.files.values().map(String::len).sum();
    let peak = peak_rss_mib();
    // The same output through the real tools, one after another: rnix alone, and nixfmt (nixfmt_rs).
    let start = Instant::now();
    for text in plan.files.values() {
        assert!(rnix::Root::parse(text).errors().is_empty());
    }
    let rnix = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for text in plan.files.values() {
        assert_eq!(
            &nixfmt_rs::format(text).unwrap(),
            text,
            "generated output must be canonical"
        );
    }
    let nixfmt = start.elapsed().as_secs_f64();
    println!(
        "{} files, {:.1} MB of Nix; peak memory {peak:.0} MiB (before planning: {before:.0} MiB)\n",
        plan.files.len(),
        bytes as f64 / 1e6
    );
    println!("| step, {operators} operators | seconds | ratio to fedigen generate |");
    println!("|---|---|---|");
    println!(
        "| fedigen generate: load and check the spec, render, emit, verify every file | {elapsed:.2} | 1.00× |"
    );
    println!(
        "| rnix parse of the same files alone | {rnix:.2} | {:.2}× |",
        rnix / elapsed
    );
    println!(
        "| nixfmt_rs format of the same files alone | {nixfmt:.2} | {:.2}× |",
        nixfmt / elapsed
    );
}
