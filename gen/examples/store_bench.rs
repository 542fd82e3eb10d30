//! Benchmark of fedigen's store formats against the real Nix, in one run so the ratios are comparable:
//!
//! 1. NAR hashing of a generated tree (≥ 1 GB: many small files, some large ones) — fedigen's streaming
//!    hasher vs `nix-hash --type sha256`, `nix-store --dump | sha256sum`, and `sha256sum` of the same NAR
//!    bytes already on disk; plus parallel hashing of the tree's top-level directories as separate paths.
//! 2. Parsing a closure of ≥ 1,000 derivations — fedigen's reader vs `nix show-derivation --recursive`.
//!
//! Run: `cargo run --release -p fedigen --example store_bench [-- --size-mb 1024 --drvs 1200 --runs 3]`
//! (`--only-closure` skips the tree).
//! The tree and the throwaway store live under /tmp and are deleted at the end. Prints a Markdown table.

use fedigen::store::closure::read_closure;
use fedigen::store::nar;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The Nix settings of the tests (`scripts/test-nix.conf`, appended to the inherited `NIX_CONFIG`).
#[path = "../tests/support/mod.rs"]
mod support;

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

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = vec![];
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed());
    }
    times.sort();
    (times[times.len() / 2], last.unwrap())
}

fn sh(script: &str) -> String {
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", script])
        .env("NIX_CONFIG", support::nix_config())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "{script} failed");
    String::from_utf8(out.stdout).unwrap()
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

    let mut rows: Vec<(String, Duration, String)> = vec![];
    let (d, (h, _)) = time(runs, || nar::nar_hash_path(&tree).unwrap());
    let ours = h.to_base16();
    rows.push((
        "fedigen `nar_hash_path` (walk + hash threads)".into(),
        d,
        ours.clone(),
    ));
    let (d, out) = time(runs, || sh(&format!("nix-hash --type sha256 {tree_s}")));
    rows.push(("`nix-hash --type sha256`".into(), d, out.trim().to_owned()));
    let (d, out) = time(runs, || {
        sh(&format!("nix-store --dump {tree_s} | sha256sum"))
    });
    rows.push((
        "`nix-store --dump \\| sha256sum`".into(),
        d,
        out.split_whitespace().next().unwrap().to_owned(),
    ));
    let (d, out) = time(runs, || sh(&format!("sha256sum {}", nar_file.display())));
    rows.push((
        "`sha256sum` of the NAR file (same bytes, cached)".into(),
        d,
        out.split_whitespace().next().unwrap().to_owned(),
    ));
    let parts: Vec<PathBuf> = (0..8).map(|i| tree.join(format!("part{i}"))).collect();
    let (d_seq, seq) = time(runs, || {
        parts
            .iter()
            .map(|p| nar::nar_hash_path(p).unwrap().0)
            .collect::<Vec<_>>()
    });
    let (d_par, par) = time(runs, || {
        nar::nar_hash_paths(&parts)
            .into_iter()
            .map(|r| r.unwrap().0)
            .collect::<Vec<_>>()
    });
    assert_eq!(seq, par);
    let part_args: Vec<String> = parts.iter().map(|p| p.display().to_string()).collect();
    let (d_nix8, out8) = time(runs, || {
        sh(&format!("nix-hash --type sha256 {}", part_args.join(" ")))
    });
    assert_eq!(
        out8.lines().map(str::to_owned).collect::<Vec<_>>(),
        seq.iter().map(|h| h.to_base16()).collect::<Vec<_>>()
    );

    for (name, _, h) in &rows {
        assert_eq!(h, &ours, "{name} disagrees");
    }
    let base = rows[0].1.as_secs_f64();
    println!(
        "### NAR hashing: {files} files, {:.2} GiB of file data, NAR {:.2} GiB (median of {runs} runs, warm page cache)\n",
        bytes as f64 / (1u64 << 30) as f64,
        nar_size as f64 / (1u64 << 30) as f64
    );
    println!("| method | time | throughput | relative to fedigen |\n|---|---:|---:|---:|");
    for (name, d, _) in &rows {
        println!(
            "| {name} | {:.2} s | {:.0} MiB/s | {:.2}× |",
            d.as_secs_f64(),
            nar_size as f64 / (1 << 20) as f64 / d.as_secs_f64(),
            d.as_secs_f64() / base
        );
    }
    println!("\nSeveral store paths (the tree's 8 top-level directories as separate paths):\n");
    println!("| method | time | relative to fedigen parallel |\n|---|---:|---:|");
    for (name, d) in [
        ("fedigen `nar_hash_paths` (rayon, 2 cores)", d_par),
        ("fedigen, one path after another", d_seq),
        ("`nix-hash --type sha256 p1 … p8`", d_nix8),
    ] {
        println!(
            "| {name} | {:.2} s | {:.2}× |",
            d.as_secs_f64(),
            d.as_secs_f64() / d_par.as_secs_f64()
        );
    }
    fs::remove_dir_all(&tree).unwrap();
    fs::remove_file(&nar_file).unwrap();
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let size_mb = arg("--size-mb", 1024);
    let skip_nar = std::env::args().any(|a| a == "--only-closure");
    let drvs = arg("--drvs", 1200);
    let runs = arg("--runs", 3) as usize;
    let work = tempfile::Builder::new()
        .prefix("fedigen-bench-")
        .tempdir_in("/tmp")
        .unwrap();
    println!(
        "Machine: {} cores, load average at start {} (shared machine: other jobs may run).\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        loadavg()
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
    // Interleaved (Nix, fedigen, Nix, fedigen, …) so that both see the same machine load; medians.
    let cruns = runs * 3;
    let (mut t_nix, mut t_ours) = (vec![], vec![]);
    let (mut json, mut closure) = (String::new(), Default::default());
    for _ in 0..cruns {
        let (d, j) = time(1, || {
            sh(&format!(
                "nix show-derivation --store {} --recursive {root_drv}",
                store.display()
            ))
        });
        t_nix.push(d);
        json = j;
        let (d, c) = time(1, || {
            read_closure(&store, std::slice::from_ref(&root_drv)).unwrap()
        });
        t_ours.push(d);
        closure = c;
    }
    t_nix.sort();
    t_ours.sort();
    let (d_nix, d_ours) = (t_nix[cruns / 2], t_ours[cruns / 2]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let theirs: std::collections::BTreeSet<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(theirs, closure.keys().collect(), "same closure");
    let (d_print, _) = time(cruns, || {
        closure.values().map(|d| d.to_aterm().len()).sum::<usize>()
    });
    println!(
        "\n### Parsing a closure of {} derivations (median of {cruns} runs)\n",
        closure.len()
    );
    println!("| method | time | relative to fedigen |\n|---|---:|---:|");
    println!(
        "| fedigen `read_closure` (read + parse, rayon) | {:.1} ms | 1.00× |",
        d_ours.as_secs_f64() * 1e3
    );
    println!(
        "| `nix show-derivation --recursive` | {:.1} ms | {:.1}× |",
        d_nix.as_secs_f64() * 1e3,
        d_nix.as_secs_f64() / d_ours.as_secs_f64()
    );
    println!(
        "| fedigen printing all back to ATerm | {:.1} ms | {:.2}× |",
        d_print.as_secs_f64() * 1e3,
        d_print.as_secs_f64() / d_ours.as_secs_f64()
    );
    println!("\nLoad average at the end: {}.", loadavg());
}
