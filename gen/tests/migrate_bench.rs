//! The migration benchmark (issue #16): moving an operator's 1 GiB of objects and 1 GiB database from provider A
//! to provider B with `fedigen migrate run`, against doing the same by hand (`rclone sync` and `pg_dump -Fc |
//! pg_restore`), in one run, on the real components of `tests/migrate_real.rs` (PostgreSQL 15, two Garage 2.5.0
//! nodes, rclone, on 127.0.0.1; shared through `support/migrate_world.rs`).
//!
//! Why an env-gated trial and not a `cargo bench` target: it needs the fedigen binary (`CARGO_BIN_EXE_fedigen`),
//! the real servers and ~15 minutes and ~5 GB of disk, so it runs only when asked:
//!
//! ```text
//! FEDIGEN_MIGRATE_BENCH=1 cargo test -p fedigen --test migrate_bench -- --nocapture
//! ```
//!
//! (`FEDIGEN_MIGRATE_BENCH_MB` sets the size of each of the two, default 1024; everything is deleted after.)
//!
//! What it measures, each row once (a row moves a GiB: repeating rounds as `benches/measure` does would take an
//! hour on the project's 2 shared cores; the load average is printed beside the table):
//! 1. by hand, a full copy into an empty B (the applications stopped throughout: the freeze window is all of it);
//! 2. by hand, after that pre-copy, a 1 % change at A: `rclone sync` moves the delta, the database is dumped and
//!    restored whole;
//! 3. `fedigen migrate run` in one go into an empty B: total and freeze window (the `freeze` step's start to the
//!    `dns` step's end, from the times its progress lines arrive);
//! 4. `fedigen migrate run --bulk-only` into an empty B while A serves, then a 1 % change at A, then
//!    5. `fedigen migrate run`: its freeze window is the delta of the objects, the database whole, and the
//!    verification.
//!
//! Wall time; CPU time of the tools (fedigen and what it runs, or rclone, pg_dump and pg_restore: `wait4` of the
//! process and its children); CPU time of the four servers (Garage's threads and PostgreSQL's postmaster with all
//! its children, from `/proc`). The objects are many small ones (0–64 KiB, some empty), medium ones
//! (256 KiB–8 MiB) and multipart ones (24–72 MiB at a 5 MiB part size); the database is a table of posts
//! (random-looking text, an index, a sequence) grown until `pg_database_size` reaches the size.

#[path = "../benches/measure/mod.rs"]
mod measure;
mod support;
#[path = "support/migrate_world.rs"]
mod world;

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use world::{World, ok, pg_bin, run};

fn main() {
    let wanted = std::env::var_os("FEDIGEN_MIGRATE_BENCH").is_some_and(|v| !v.is_empty());
    support::run_gated(vec![(
        "migration_benchmark",
        wanted,
        trial,
        "set FEDIGEN_MIGRATE_BENCH=1 to run it (about 15 minutes and 5 GB of disk at the default 1024 MB; FEDIGEN_MIGRATE_BENCH_MB sets the size)",
    )]);
}

fn trial() -> Result<(), libtest_mimic::Failed> {
    benchmark();
    Ok(())
}

const MIB: u64 = 1 << 20;

/// Deterministic bytes that do not compress (Garage compresses blocks with zstd).
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(n as usize + 8);
        while (out.len() as u64) < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n as usize);
        out
    }
}

/// The objects of A: (key, size). Many small, medium ones up to the size, some multipart.
fn objects(total_mib: u64, rng: &mut XorShift) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let scale = |n: u64| (n * total_mib / 1024).max(1);
    for i in 0..scale(2000) {
        let size = if i % 97 == 0 { 0 } else { rng.below(64 << 10) };
        out.push((
            format!("cache/accounts/avatars/{:03}/{i}.png", i / 100),
            size,
        ));
    }
    for i in 0..scale(8) {
        out.push((
            format!("media_attachments/files/video-{i}.mp4"),
            (24 + rng.below(49)) * MIB,
        ));
    }
    let mut total: u64 = out.iter().map(|o| o.1).sum();
    let mut i = 0;
    while total < total_mib * MIB {
        let size = ((256 << 10) + rng.below(8 * MIB - (256 << 10))).min(total_mib * MIB - total);
        out.push((format!("media_attachments/files/{i:05}/original.jpg"), size));
        total += size;
        i += 1;
    }
    out
}

/// Writes `objects` into a local folder and uploads it to `g:media` with rclone (multipart above 5 MiB); the
/// folder is deleted after.
fn upload(w: &World, folder: &Path, objects: &[(String, u64)], rng: &mut XorShift) {
    for (key, size) in objects {
        let path = folder.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, rng.bytes(*size)).unwrap();
    }
    run(
        w.s3_a
            .rclone()
            .args([
                "copy",
                "--transfers",
                "8",
                "--s3-upload-cutoff",
                "5Mi",
                "--s3-chunk-size",
                "5Mi",
            ])
            .arg(folder)
            .arg("g:media"),
        "rclone copy (seed)",
    );
    std::fs::remove_dir_all(folder).unwrap();
}

/// Grows A's database to `mib` MiB: posts with random-looking text, an index, a sequence; a table of small
/// bytea blobs.
fn seed_database(w: &World, mib: u64) {
    w.pg_a.app(
        "CREATE TABLE accounts (id bigserial PRIMARY KEY, username text NOT NULL UNIQUE);
         CREATE TABLE statuses (id bigserial PRIMARY KEY, account_id bigint NOT NULL REFERENCES accounts,
             text text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
         CREATE INDEX statuses_account ON statuses (account_id, created_at);
         CREATE TABLE preview_cards (id serial PRIMARY KEY, image bytea);
         INSERT INTO accounts (username) SELECT 'user' || g FROM generate_series(1, 1000) g;
         INSERT INTO preview_cards (image) SELECT decode(md5(g::text) || md5((g * 7)::text), 'hex')
             FROM generate_series(1, 20000) g;",
    );
    let mut batch = 0u64;
    loop {
        let size: u64 = w
            .pg_a
            .app("SELECT pg_database_size('appdb')")
            .trim()
            .parse()
            .unwrap();
        if size >= mib * MIB {
            break;
        }
        // About 100 MiB a batch (≈ 560 bytes a row with its index entry).
        let rows = ((mib * MIB - size) / 560).clamp(1000, 200_000);
        let from = batch * 200_000;
        w.pg_a.app(&format!(
            "INSERT INTO statuses (account_id, text)
             SELECT 1 + g % 1000, md5(g::text) || ' ' || md5((g * 3)::text) || ' ' || md5((g * 5)::text) || ' '
                 || md5((g * 7)::text) || ' ' || md5((g * 11)::text) || ' ' || md5((g * 13)::text) || ' '
                 || md5((g * 17)::text) || ' ' || md5((g * 19)::text) || ' ' || md5((g * 23)::text) || ' '
                 || md5((g * 29)::text)
             FROM generate_series({}, {}) g",
            from + 1,
            from + rows
        ));
        batch += 1;
    }
    w.pg_a.app("ANALYZE");
}

/// Changes 1 % of A: new objects of 1 % of the bytes (one multipart), some small objects deleted and some
/// overwritten; 1 % of the rows updated and 1 % inserted.
fn change_one_percent(
    w: &World,
    total_mib: u64,
    tag: &str,
    objects: &[(String, u64)],
    rng: &mut XorShift,
) {
    let folder = w.path(&format!("change-{tag}"));
    let budget = total_mib * MIB / 100;
    let mut new = vec![(
        format!("media_attachments/files/{tag}/clip.mp4"),
        budget / 2,
    )];
    let mut left = budget - budget / 2;
    let mut i = 0;
    while left > 0 {
        let size = (rng.below(64 << 10) + 1).min(left);
        new.push((format!("cache/new-{tag}/{i}.png"), size));
        left -= size;
        i += 1;
    }
    // Overwrite 10 small objects (same keys, new bytes and sizes).
    for (key, _) in objects.iter().skip(11).step_by(150).take(10) {
        new.push((key.clone(), rng.below(64 << 10) + 1));
    }
    upload(w, &folder, &new, rng);
    for (key, _) in objects.iter().skip(3).step_by(170).take(10) {
        let _ = w
            .s3_a
            .rclone()
            .args(["deletefile"])
            .arg(format!("g:media/{key}"))
            .output();
    }
    let rows: u64 = w
        .pg_a
        .app("SELECT count(*) FROM statuses")
        .trim()
        .parse()
        .unwrap();
    let n = rows / 100;
    w.pg_a.app(&format!(
        "UPDATE statuses SET text = md5(text) || text WHERE id % 100 = {};
         INSERT INTO statuses (account_id, text) SELECT 1 + g % 1000, md5(g::text) || repeat(md5(('{tag}' || g)::text), 10)
             FROM generate_series(1, {n}) g;",
        rng.below(100)
    ));
}

/// CPU seconds of a process from `/proc/PID/stat`: its own (all threads) and, with `children`, that of its
/// children it has waited for.
fn proc_cpu(pid: u32, children: bool) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The fields after the command name in parentheses (which may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // SAFETY: no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // utime, stime, cutime, cstime are fields 14–17, i.e. 11–14 after the state (field 3).
    let own = f[11] + f[12];
    (if children { own + f[13] + f[14] } else { own }) / tick
}

/// The live children of `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) {
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            if rest.split_whitespace().nth(1) == Some(&pid.to_string()) {
                out.push(child);
            }
        }
    }
    out
}

/// CPU seconds the four servers have used so far: Garage A and B, and each PostgreSQL postmaster with its
/// children (the backends it has reaped, and the live ones).
fn servers_cpu(w: &World) -> f64 {
    let mut total = proc_cpu(w.s3_a.child.id(), true) + proc_cpu(w.s3_b.child.id(), true);
    for pg in [&w.pg_a, &w.pg_b] {
        let pid: u32 = std::fs::read_to_string(pg.dir.join("data/postmaster.pid"))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        total += proc_cpu(pid, true);
        total += children_of(pid)
            .into_iter()
            .map(|c| proc_cpu(c, false))
            .sum::<f64>();
    }
    total
}

/// One row of the table.
struct Row {
    name: String,
    wall: f64,
    tools_cpu: f64,
    servers_cpu: f64,
    /// Seconds the applications are stopped.
    freeze: f64,
    /// Wall seconds of each step, for fedigen's rows.
    steps: Vec<(String, f64)>,
}

/// Runs `cmd` to the end, timing it (wall, and CPU of it and its children from `wait4`) and the servers' CPU;
/// each line it writes to standard error is timestamped (fedigen's `step: …` / `step: done`).
#[allow(clippy::zombie_processes)]
fn timed(w: &World, cmd: &mut Command) -> (f64, f64, f64, Vec<(f64, String)>) {
    let servers = servers_cpu(w);
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        lines.push((start.elapsed().as_secs_f64(), line));
    }
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: the child is ours and not yet reaped; wait4 fills `status` and `usage`.
    let usage = unsafe {
        assert_eq!(
            libc::wait4(
                child.id() as libc::pid_t,
                &mut status,
                0,
                usage.as_mut_ptr()
            ),
            child.id() as libc::pid_t
        );
        usage.assume_init()
    };
    let wall = start.elapsed().as_secs_f64();
    let text: Vec<&str> = lines.iter().map(|l| l.1.as_str()).collect();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{} failed (status {status}):\n{}",
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        text.join("\n")
    );
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        wall,
        secs(usage.ru_utime) + secs(usage.ru_stime),
        servers_cpu(w) - servers,
        lines,
    )
}

/// By hand: `rclone sync` A → B, then `pg_dump -Fc | pg_restore` (into B's database, replacing what is there);
/// the applications stopped throughout.
fn by_hand(w: &World, name: &str) -> Row {
    let script = format!(
        "set -e -o pipefail
         rclone sync --s3-no-check-bucket FEDIGENSRC:media FEDIGENDST:media
         PGPASSWORD=app-pw {bin}/pg_dump -h 127.0.0.1 -p {a} -U app -Fc appdb \
           | PGPASSWORD=app-pw {bin}/pg_restore -h 127.0.0.1 -p {b} -U app --clean --if-exists --no-owner \
               --no-privileges --single-transaction --exit-on-error -d appdb",
        bin = pg_bin().display(),
        a = w.pg_a.port,
        b = w.pg_b.port,
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &script])
        .env("RCLONE_CONFIG", "/dev/null")
        .env_remove("AWS_CA_BUNDLE");
    for (remote, g) in [("FEDIGENSRC", &w.s3_a), ("FEDIGENDST", &w.s3_b)] {
        let r = g.rclone();
        for (k, v) in r.get_envs() {
            if let (Some(rest), Some(v)) = (k.to_str().unwrap().strip_prefix("RCLONE_CONFIG_G_"), v)
            {
                cmd.env(format!("RCLONE_CONFIG_{remote}_{rest}"), v);
            }
        }
    }
    let (wall, tools_cpu, servers_cpu, _) = timed(w, &mut cmd);
    Row {
        name: name.into(),
        wall,
        tools_cpu,
        servers_cpu,
        freeze: wall,
        steps: Vec::new(),
    }
}

/// `fedigen migrate run` (with `extra` arguments), its steps' times read from its progress lines.
fn fedigen(w: &World, journal: &Path, extra: &[&str], name: &str) -> Row {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fedigen"));
    cmd.args(["migrate", "run", "--job"])
        .arg(&w.job_file)
        .arg("--journal")
        .arg(journal)
        .args(extra)
        .env("FEDIGEN_PG_BIN", pg_bin());
    let (wall, tools_cpu, servers_cpu, lines) = timed(w, &mut cmd);
    let mut started = std::collections::BTreeMap::new();
    let mut steps = Vec::new();
    for (t, line) in &lines {
        if let Some(step) = line.strip_suffix(": …") {
            started.insert(step.to_owned(), *t);
        } else if let Some(step) = line.strip_suffix(": done")
            && let Some(s) = started.get(step)
        {
            steps.push((step.to_owned(), t - s));
        }
    }
    let at = |suffix: &str| lines.iter().find(|(_, l)| l == suffix).map(|(t, _)| *t);
    let freeze = match (at("freeze: …"), at("dns: done")) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    Row {
        name: name.into(),
        wall,
        tools_cpu,
        servers_cpu,
        freeze,
        steps,
    }
}

/// B emptied: its bucket, its database dropped and created again (owned by the application's role), the
/// journal and markers.
fn reset_b(w: &World, journal: &Path) {
    w.reset_b(journal);
    w.pg_b
        .sql("postgres", "DROP DATABASE IF EXISTS appdb WITH (FORCE)");
    w.pg_b.sql("postgres", "CREATE DATABASE appdb OWNER app");
}

fn du(path: &Path) -> String {
    run(Command::new("du").args(["-sh"]).arg(path), "du")
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned()
}

fn benchmark() {
    let mib: u64 = std::env::var("FEDIGEN_MIGRATE_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let load_before = measure::loadavg();
    let w = World::new();
    std::fs::write(w.path("a/secrets/signing.key"), "ed25519 a_key 0123\n").unwrap();
    std::fs::write(w.path("a/state/config.yml"), "x: 1\n").unwrap();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let t = Instant::now();
    let objects = objects(mib, &mut rng);
    upload(&w, &w.path("seed"), &objects, &mut rng);
    seed_database(&w, mib);
    let db_size = w
        .pg_a
        .app("SELECT pg_size_pretty(pg_database_size('appdb'))");
    eprintln!(
        "seeded A in {:.0} s: {} objects, {} MiB; database {}",
        t.elapsed().as_secs_f64(),
        objects.len(),
        objects.iter().map(|o| o.1).sum::<u64>() / MIB,
        db_size.trim()
    );
    let journal = w.path("journal");
    let mut rows = Vec::new();
    rows.push(by_hand(
        &w,
        "by hand, full copy into an empty B (`rclone sync`; `pg_dump -Fc | pg_restore`)",
    ));
    change_one_percent(&w, mib, "one", &objects, &mut rng);
    rows.push(by_hand(&w, "by hand, after that copy, a 1 % change"));
    reset_b(&w, &journal);
    rows.push(fedigen(
        &w,
        &journal,
        &[],
        "`fedigen migrate run` in one go into an empty B",
    ));
    let disk = du(w.root.path());
    reset_b(&w, &journal);
    rows.push(fedigen(
        &w,
        &journal,
        &["--bulk-only"],
        "`fedigen migrate run --bulk-only` into an empty B (A serves)",
    ));
    change_one_percent(&w, mib, "two", &objects, &mut rng);
    rows.push(fedigen(
        &w,
        &journal,
        &[],
        "then a 1 % change at A, `fedigen migrate run`",
    ));
    ok(
        &w.fedigen(&["verify"], Path::new("")),
        "verify after the last run",
    );
    let load_after = measure::loadavg();

    println!(
        "\nMigrating {mib} MiB of objects ({} objects) and a {} database, one run each:\n",
        objects.len(),
        db_size.trim()
    );
    println!(
        "| row | wall (s) | CPU, tools (s) | CPU, servers (s) | freeze window (s) | freeze ÷ full copy by hand |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let full = rows[0].wall;
    for r in &rows {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} % |",
            r.name,
            r.wall,
            r.tools_cpu,
            r.servers_cpu,
            r.freeze,
            100.0 * r.freeze / full
        );
    }
    println!("\nfedigen's steps (wall seconds):\n");
    println!("| step | one go | after the pre-copy and a 1 % change |");
    println!("|---|---:|---:|");
    for (step, one) in &rows[2].steps {
        let after = rows[4]
            .steps
            .iter()
            .find(|(s, _)| s == step)
            .map_or("—".to_owned(), |(_, t)| format!("{t:.1}"));
        println!("| {step} | {one:.1} | {after} |");
    }
    let bulk = rows[3].steps.iter().map(|s| s.1).sum::<f64>();
    println!(
        "\nBulk copy before the freeze: {bulk:.1} s. Disk at the peak (A, B, the dump): {disk}. Load average before: {load_before}; after: {load_after}."
    );
    drop(w);
}
