//! What every benchmark of this repository measures, and how (shared by `benches/*.rs` and
//! `examples/store_bench.rs` through `#[path]`).
//!
//! The project's machines have 2 cores, often shared with other builds, so one figure alone says little. Every
//! row is therefore measured as wall time *and* CPU time (user + system, from `getrusage` for work in this
//! process, from `wait4` for a child process and everything it waited for), the contenders run interleaved in
//! the same run (round after round, each round starting with a different row, after one untimed round that
//! warms the page cache and the allocator for all of them alike), medians are reported, and the comparison is
//! the ratio within the run. The load average is printed beside each table.

#![allow(dead_code)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Instant;

/// One timed execution.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Elapsed seconds.
    pub wall: f64,
    /// User + system CPU seconds, all threads (and, for a process, its waited-for children).
    pub cpu: f64,
    /// Peak resident memory in MiB (of the process measured; 0 when not known).
    pub max_rss_mib: f64,
}

fn seconds(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

fn usage(who: libc::c_int) -> libc::rusage {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    unsafe {
        libc::getrusage(who, usage.as_mut_ptr());
        usage.assume_init()
    }
}

/// CPU seconds of this process so far (all threads).
pub fn cpu_self() -> f64 {
    let u = usage(libc::RUSAGE_SELF);
    seconds(u.ru_utime) + seconds(u.ru_stime)
}

/// Peak resident memory of this process so far, in MiB.
pub fn max_rss_self_mib() -> f64 {
    usage(libc::RUSAGE_SELF).ru_maxrss as f64 / 1024.0
}

/// Times `f` in this process.
pub fn in_process<T>(f: impl FnOnce() -> T) -> (Sample, T) {
    let cpu = cpu_self();
    let start = Instant::now();
    let out = f();
    let wall = start.elapsed().as_secs_f64();
    (
        Sample {
            wall,
            cpu: cpu_self() - cpu,
            max_rss_mib: max_rss_self_mib(),
        },
        out,
    )
}

/// Runs `cmd` to completion (stdout captured, stderr inherited) and times it, CPU and peak memory from `wait4`.
/// Panics when it fails: a benchmark of a failing command means nothing.
pub fn process(cmd: &mut Command) -> (Sample, Vec<u8>) {
    run(cmd, true)
}

/// [`process`] with the standard output thrown away (`/dev/null`), for commands that print much.
pub fn process_discarding(cmd: &mut Command) -> Sample {
    run(cmd, false).0
}

// The child is reaped by `wait4` (which also gives its resource usage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn run(cmd: &mut Command, capture: bool) -> (Sample, Vec<u8>) {
    let start = Instant::now();
    let mut child = cmd
        .stdout(if capture {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut out = Vec::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_end(&mut out).unwrap();
    }
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: the child is ours and not yet reaped; wait4 fills `status` and `usage`.
    let usage = unsafe {
        let r = libc::wait4(
            child.id() as libc::pid_t,
            &mut status,
            0,
            usage.as_mut_ptr(),
        );
        assert_eq!(r, child.id() as libc::pid_t, "wait4");
        usage.assume_init()
    };
    let wall = start.elapsed().as_secs_f64();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed (status {status})"
    );
    (
        Sample {
            wall,
            cpu: seconds(usage.ru_utime) + seconds(usage.ru_stime),
            max_rss_mib: usage.ru_maxrss as f64 / 1024.0,
        },
        out,
    )
}

/// A contender: its name in the table, and one timed execution.
pub struct Row<'a> {
    /// The row's label.
    pub name: String,
    /// Runs it once.
    pub run: Box<dyn FnMut() -> Sample + 'a>,
}

impl<'a> Row<'a> {
    /// A row.
    pub fn new(name: impl Into<String>, run: impl FnMut() -> Sample + 'a) -> Self {
        Row {
            name: name.into(),
            run: Box::new(run),
        }
    }
}

/// Medians of one row.
#[derive(Clone, Debug)]
pub struct Result {
    /// The row's label.
    pub name: String,
    /// Median wall seconds.
    pub wall: f64,
    /// Median CPU seconds.
    pub cpu: f64,
    /// Largest peak memory seen, MiB.
    pub max_rss_mib: f64,
    /// Every wall time, in the order measured.
    pub walls: Vec<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs the rows interleaved: one untimed warm-up round, then `rounds` rounds, round `r` starting at row
/// `r mod rows` (so no row is always first, paying the page faults and cold caches of the round).
pub fn interleaved(rows: &mut [Row<'_>], rounds: usize) -> Vec<Result> {
    for row in rows.iter_mut() {
        (row.run)();
    }
    let n = rows.len();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); n];
    for r in 0..rounds {
        for k in 0..n {
            let i = (r + k) % n;
            samples[i].push((rows[i].run)());
        }
    }
    rows.iter()
        .zip(samples)
        .map(|(row, s)| Result {
            name: row.name.clone(),
            wall: median(s.iter().map(|x| x.wall).collect()),
            cpu: median(s.iter().map(|x| x.cpu).collect()),
            max_rss_mib: s.iter().map(|x| x.max_rss_mib).fold(0.0, f64::max),
            walls: s.iter().map(|x| x.wall).collect(),
        })
        .collect()
}

/// The machine's load average (1, 5, 15 minutes), as `/proc/loadavg` says.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Prints a Markdown table: median wall and CPU in `unit` (`"s"` or `"ms"`), and each ratio to row `base`.
pub fn print_table(title: &str, results: &[Result], base: usize, unit: &str, load_before: &str) {
    let scale = if unit == "ms" { 1e3 } else { 1.0 };
    let digits = if unit == "ms" { 1 } else { 2 };
    println!("{title}\n");
    println!("| row | wall ({unit}) | CPU ({unit}) | wall ÷ first row | CPU ÷ first row |");
    println!("|---|---:|---:|---:|---:|");
    let (bw, bc) = (results[base].wall, results[base].cpu);
    for r in results {
        println!(
            "| {} | {:.digits$} | {:.digits$} | {:.2}× | {:.2}× |",
            r.name,
            r.wall * scale,
            r.cpu * scale,
            r.wall / bw,
            r.cpu / bc
        );
    }
    println!(
        "\nLoad average before: {load_before}; after: {}.\n",
        loadavg()
    );
}

/// What a child process in `--child` mode prints on its last line: its own measurement of the work (after its
/// setup), so that "each in a fresh process" excludes setup that is not the work (building the input).
pub fn report(sample: Sample) {
    println!("{} {} {}", sample.wall, sample.cpu, sample.max_rss_mib);
}

/// Runs `cmd`, a benchmark binary in `--child` mode, and reads its [`report`]; other output lines are returned.
pub fn child(cmd: &mut Command) -> (Sample, Vec<String>) {
    let (_, out) = process(cmd);
    let out = String::from_utf8(out).expect("UTF-8");
    let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
    let last = lines.pop().expect("a report line");
    let v: Vec<f64> = last
        .split_whitespace()
        .map(|x| x.parse().expect("a number"))
        .collect();
    (
        Sample {
            wall: v[0],
            cpu: v[1],
            max_rss_mib: v[2],
        },
        lines,
    )
}

/// The value after `--flag` on the command line.
pub fn flag(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}
