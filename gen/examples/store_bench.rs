//! Benchmark of fedigen's store formats against the real Nix, in one run so the ratios are comparable:
//!
//! 1. NAR hashing of a generated tree (≥ 1 GB: many small files, some large ones) — fedigen's streaming
//!    hasher vs `nix-hash --type sha256`, `nix-store --dump | sha256sum`, and `sha256sum` of the same NAR
//!    bytes already on disk; plus parallel hashing of the tree's top-level directories as separate paths.
//! 2. Parsing a closure of ≥ 1,000 derivations — fedigen's reader vs `nix show-derivation --recursive`.
//!
//! Run: `cargo run --release -p fedigen --example store_bench [-- --size-mb 1024 --drvs 1200 --runs 5]`
//! (`--only-closure` skips the tree; `--before BIN` adds rows for the same benchmark built from another
//! checkout). fedigen's rows run in fresh processes (this binary, `--child …`), interleaved with Nix's, wall and
//! CPU time, medians (see `benches/measure`).
//! The tree and the throwaway store live under /tmp and are deleted at the end. Prints a Markdown table.

use fedigen::store::closure::read_closure;
use fedigen::store::nar;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The Nix settings of the tests (`scripts/test-nix.conf`, appended to the inherited `NIX_CONFIG`).
#[path = "../tests/support/mod.rs"]
mod support;

/// Wall and CPU time, interleaved rounds, medians (shared with the benches).
#[path = "../benches/measure/mod.rs"]
mod measure;

/// As in the `fedigen` binary (`src/main.rs`), so that the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: fast, deterministic filler (content does not matter to SHA-256 speed).
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// Writes the tree: `dirs` top-level directories, each with sub-directories of small files (0–8 KiB), a few
/// executables and symlinks, and `large` files of `large_mb` MiB spread over them. Returns (files, bytes).
fn generate(root: &Path, size_mb: u64) -> (u64, u64) {
    let mut rng = Rng(0x9E3779B97F4A7C15);
    let large_mb = 64u64;
    let large = (size_mb * 6 / 10) / large_mb; // ~60% in large files
    let small_budget = size_mb * (1 << 20) - large * large_mb * (1 << 20);
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut buf = vec![0u8; 8192];
    let top = 8;
    let mut written = 0u64;
    let mut i = 0u64;
    while written < small_budget {
        let dir = root
            .join(format!("part{}", i % top))
            .join(format!("d{:03}", (i / top) % 250));
        if i < top * 250 {
            fs::create_dir_all(&dir).unwrap();
        }
        let len = (rng.next() % 8192) as usize;
        rng.fill(&mut buf[..len]);
        let p = dir.join(format!("f{i}.dat"));
        fs::write(&p, &buf[..len]).unwrap();
        if i.is_multiple_of(97) {
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        if i.is_multiple_of(101) {
            std::os::unix::fs::symlink(format!("f{i}.dat"), dir.join(format!("l{i}"))).unwrap();
        }
        written += len as u64;
        files += 1;
        i += 1;
    }
    bytes += written;
    let mut big = vec![0u8; 1 << 20];
    for j in 0..large {
        let p = root
            .join(format!("part{}", j % top))
            .join(format!("large{j}.bin"));
        let mut f = fs::File::create(&p).unwrap();
        for _ in 0..large_mb {
            rng.fill(&mut big);
            f.write_all(&big).unwrap();
        }
        files += 1;
        bytes += large_mb << 20;
    }
    (files, bytes)
}

fn sh_cmd(script: &str) -> Command {
    let mut c = Command::new("bash");
    c.args(["-o", "pipefail", "-c", script])
        .env("NIX_CONFIG", support::nix_config());
    c
}

fn sh(script: &str) -> String {
    let (_, out) = measure::process(&mut sh_cmd(script));
    String::from_utf8(out).unwrap()
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn closure_nix(n: u64) -> String {
    // n derivations in layers; each depends on up to three earlier ones. Instantiated only, never built.
    format!(
        r#"let
  mk = i: deps: derivation {{ name = "pkg${{toString i}}-1.${{toString (i - (i / 7) * 7)}}"; system = "x86_64-linux";
    builder = "/bin/sh"; args = [ "-c" "echo ${{toString i}} > $out" ]; deps = map (d: d.out) deps; }};
  step = acc: i: acc ++ [ (mk i (if i == 0 then [ ] else [ (builtins.elemAt acc (i - 1)) (builtins.elemAt acc (i / 2)) (builtins.elemAt acc (i / 3)) ])) ];
  all = builtins.foldl' step [ ] (builtins.genList (i: i) {n});
in mk {n} all
"#
    )
}

/// The NAR hashing half: generate the tree, time every contender, delete the tree.
fn bench_nar(work: &Path, size_mb: u64, runs: usize) {
    let tree = work.join("tree");
    fs::create_dir(&tree).unwrap();
    let t = Instant::now();
    let (files, bytes) = generate(&tree, size_mb);
    eprintln!(
        "generated {files} files, {:.2} GiB in {:?}",
        bytes as f64 / (1u64 << 30) as f64,
        t.elapsed()
    );
    let tree_s = tree.display().to_string();
    let nar_file = work.join("tree.nar");
    // Warm the page cache and keep the NAR for the raw sha256sum baseline.
    sh(&format!(
        "nix-store --dump {tree_s} > {}",
        nar_file.display()
    ));
    let nar_size = fs::metadata(&nar_file).unwrap().len();

    let ours = nar::nar_hash_path(&tree).unwrap().0.to_base16();
    let check = |name: &str, out: &[u8]| {
        let out = String::from_utf8_lossy(out);
        let got = out.split_whitespace().next().unwrap_or_default();
        assert_eq!(got, ours, "{name} disagrees");
    };
    let nar_s = nar_file.display().to_string();
    let load = measure::loadavg();
    let me = std::env::current_exe().unwrap();
    let fedigen = |bin: &Path| {
        let (s, lines) = measure::child(Command::new(bin).args(["--child", "nar"]).arg(&tree));
        assert_eq!(lines, std::slice::from_ref(&ours));
        s
    };
    let mut rows = vec![measure::Row::new(
        "fedigen `nar_hash_path` (walk + hash threads)",
        || fedigen(&me),
    )];
    if let Some(before) = measure::flag("--before") {
        rows.push(measure::Row::new(
            format!("the same, built from {before}"),
            move || fedigen(Path::new(&before)),
        ));
    }
    rows.extend([
        // The floor on this CPU: a NAR hash is one SHA-256 stream over the NAR's bytes, which cannot be split
        // across cores; this row hashes those bytes already in memory with the same code, one thread, nothing
        // read from files. A walker that keeps the hashing thread busy all the time reaches this row.
        measure::Row::new(
            "the limit: SHA-256 of the NAR's bytes already in memory (same `sha2`, one thread, no files)",
            || {
                let (s, lines) = measure::child(
                    Command::new(&me).args(["--child", "sha256-in-memory"]).arg(&nar_file),
                );
                assert_eq!(lines, std::slice::from_ref(&ours));
                s
            },
        ),
        measure::Row::new("`nix-hash --type sha256`", || {
            let (s, out) =
                measure::process(&mut sh_cmd(&format!("nix-hash --type sha256 {tree_s}")));
            check("nix-hash", &out);
            s
        }),
        measure::Row::new("`nix-store --dump \\| sha256sum`", || {
            let (s, out) = measure::process(&mut sh_cmd(&format!(
                "nix-store --dump {tree_s} | sha256sum"
            )));
            check("nix-store --dump | sha256sum", &out);
            s
        }),
        measure::Row::new("`sha256sum` of the NAR file (same bytes, cached)", || {
            let (s, out) = measure::process(&mut sh_cmd(&format!("sha256sum {nar_s}")));
            check("sha256sum", &out);
            s
        }),
    ]);
    let results = measure::interleaved(&mut rows, runs);
    drop(rows);
    let title = format!(
        "### NAR hashing: {files} files, {:.2} GiB of file data, NAR {:.2} GiB ({:.0} MiB; medians of {runs} interleaved rounds, warm page cache)",
        bytes as f64 / (1u64 << 30) as f64,
        nar_size as f64 / (1u64 << 30) as f64,
        nar_size as f64 / (1u64 << 20) as f64,
    );
    measure::print_table(&title, &results, 0, "s", &load);

    let parts: Vec<PathBuf> = (0..8).map(|i| tree.join(format!("part{i}"))).collect();
    let seq: Vec<String> = parts
        .iter()
        .map(|p| nar::nar_hash_path(p).unwrap().0.to_base16())
        .collect();
    let part_args: Vec<String> = parts.iter().map(|p| p.display().to_string()).collect();
    let load = measure::loadavg();
    let mut rows = vec![
        measure::Row::new("fedigen `nar_hash_paths` (rayon, 2 cores)", || {
            let (s, hashes) = measure::in_process(|| nar::nar_hash_paths(&parts));
            let hashes: Vec<String> = hashes
                .into_iter()
                .map(|r| r.unwrap().0.to_base16())
                .collect();
            assert_eq!(hashes, seq);
            s
        }),
        measure::Row::new("fedigen, one path after another", || {
            measure::in_process(|| {
                for p in &parts {
                    nar::nar_hash_path(p).unwrap();
                }
            })
            .0
        }),
        measure::Row::new("`nix-hash --type sha256 p1 … p8`", || {
            let (s, out) = measure::process(&mut sh_cmd(&format!(
                "nix-hash --type sha256 {}",
                part_args.join(" ")
            )));
            let out = String::from_utf8(out).unwrap();
            assert_eq!(out.lines().map(str::to_owned).collect::<Vec<_>>(), seq);
            s
        }),
    ];
    let results = measure::interleaved(&mut rows, runs);
    drop(rows);
    measure::print_table(
        "The 8 top-level directories as separate store paths:",
        &results,
        0,
        "s",
        &load,
    );
    fs::remove_dir_all(&tree).unwrap();
    fs::remove_file(&nar_file).unwrap();
}

/// Lowercase hex of `bytes` (the form `to_base16` prints).
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `--child nar PATH`, `--child sha256-in-memory NAR_FILE` or `--child closure STORE DRV`: one measured execution in this fresh process; prints
/// the result, then the measurement.
fn child(kind: &str) {
    let args: Vec<String> = std::env::args().collect();
    let sample = match kind {
        "nar" => {
            let (s, (h, _)) =
                measure::in_process(|| nar::nar_hash_path(Path::new(&args[3])).unwrap());
            println!("{}", h.to_base16());
            s
        }
        "sha256-in-memory" => {
            use sha2::Digest;
            let bytes = fs::read(&args[3]).unwrap();
            let (s, digest) = measure::in_process(|| sha2::Sha256::digest(&bytes));
            println!("{}", hex(&digest));
            s
        }
        "closure" => {
            let (s, c) = measure::in_process(|| {
                read_closure(Path::new(&args[3]), std::slice::from_ref(&args[4])).unwrap()
            });
            println!("{}", c.len());
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
    let size_mb = arg("--size-mb", 1024);
    let skip_nar = std::env::args().any(|a| a == "--only-closure");
    let drvs = arg("--drvs", 1200);
    let runs = arg("--runs", 5) as usize;
    let work = tempfile::Builder::new()
        .prefix("fedigen-bench-")
        .tempdir_in("/tmp")
        .unwrap();
    println!(
        "Machine: {} cores, load average at start {} (shared machine: other jobs may run).\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        measure::loadavg()
    );
    if !skip_nar {
        bench_nar(work.path(), size_mb, runs);
    }

    // Closure parsing.
    let store = work.path().join("store");
    let file = work.path().join("closure.nix");
    fs::write(&file, closure_nix(drvs)).unwrap();
    let root_drv = sh(&format!(
        "nix-instantiate --store {} {}",
        store.display(),
        file.display()
    ))
    .trim()
    .to_owned();
    // Interleaved with Nix (each round starts with another row), medians, wall and CPU.
    let cruns = runs * 3;
    let (_, json) = measure::process(&mut sh_cmd(&format!(
        "nix show-derivation --store {} --recursive {root_drv}",
        store.display()
    )));
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let theirs: std::collections::BTreeSet<String> =
        v.as_object().unwrap().keys().cloned().collect();
    let closure = read_closure(&store, std::slice::from_ref(&root_drv)).unwrap();
    assert_eq!(theirs, closure.keys().cloned().collect(), "same closure");
    let show = format!(
        "nix show-derivation --store {} --recursive {root_drv}",
        store.display()
    );
    let load = measure::loadavg();
    let me = std::env::current_exe().unwrap();
    let fedigen = |bin: &Path| {
        let (s, lines) = measure::child(
            Command::new(bin)
                .args(["--child", "closure"])
                .arg(&store)
                .arg(&root_drv),
        );
        assert_eq!(lines, [closure.len().to_string()]);
        s
    };
    let mut rows = vec![measure::Row::new(
        "fedigen `read_closure` (read + parse; fresh process)",
        || fedigen(&me),
    )];
    if let Some(before) = measure::flag("--before") {
        rows.push(measure::Row::new(
            format!("the same, built from {before}"),
            move || fedigen(Path::new(&before)),
        ));
    }
    rows.extend([
        measure::Row::new("`nix show-derivation --recursive`", || {
            measure::process(&mut sh_cmd(&show)).0
        }),
        measure::Row::new(
            "fedigen printing all back to ATerm (in the benchmark's process)",
            || {
                measure::in_process(|| closure.values().map(|d| d.to_aterm().len()).sum::<usize>())
                    .0
            },
        ),
    ]);
    let results = measure::interleaved(&mut rows, cruns);
    drop(rows);
    measure::print_table(
        &format!(
            "### Parsing a closure of {} derivations (medians of {cruns} interleaved rounds)",
            closure.len()
        ),
        &results,
        0,
        "ms",
        &load,
    );
    let worst_ratio = results[1]
        .walls
        .iter()
        .zip(&results[0].walls)
        .map(|(nix, ours)| nix / ours)
        .fold(f64::INFINITY, f64::min);
    println!(
        "Smallest ratio of `nix show-derivation` to fedigen within one round: {worst_ratio:.1}×.\n"
    );
}
