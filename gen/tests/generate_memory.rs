//! `fedigen generate` holds no file's text beyond its write (issue #18): at 10,000 operators the whole plan was
//! 640 MiB. Measured with a counting allocator: the most memory live while a generation streams into a
//! `write::Writer` stays well below the size of what it writes (above what loading the specification takes),
//! while collecting the same files into a `Plan` (what `generate` did before) holds at least all of it — the
//! measurement can tell the two apart.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting the bytes live and the most live since the last [`reset_peak`].
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Every byte ever allocated (what work allocates, whether or not it stays live).
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
/// Held by each test while it measures: the counters are the process's, and the two tests run on parallel
/// threads by default, so one test's allocations would count in the other's figures (CI once saw 835 KB for a
/// measurement that is 338 KB alone).
static MEASURING: std::sync::Mutex<()> = std::sync::Mutex::new(());

// SAFETY: every call is passed to the system allocator unchanged; only counters are updated besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the system allocator's.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(pointer, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        // SAFETY: as above.
        let new = unsafe { System.realloc(pointer, layout, size) };
        if !new.is_null() {
            ALLOCATED.fetch_add(size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Starts a measurement: the bytes live now.
fn reset_peak() -> usize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

/// A specification of `operators` operators with every application (the benchmark's, `benches/generate.rs`).
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
applications.mastodon = {{ settings = {{ streamingProcesses = 2 }} }}
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

/// Copies the repository's templates into a fresh repository (generate reads nothing else).
fn scratch_repository() -> tempfile::TempDir {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(source.join("templates"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

#[test]
fn generating_streams_each_file_to_its_write_and_holds_none() {
    let _measuring = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let operators = 120;
    let repo = scratch_repository();
    let spec = repo.path().join("spec.toml");
    std::fs::write(&spec, specification(operators)).unwrap();

    // Loading the specification alone (which every generation does first, whatever it does with the files).
    let catalog = fedigen::model::Catalog::load(&repo.path().join("templates")).unwrap();
    let before = reset_peak();
    drop(fedigen::model::load(&spec, &catalog).unwrap());
    let load = PEAK.load(Ordering::Relaxed) - before;

    // Collected (the whole plan held until the write): at least every file's text at once.
    let before = reset_peak();
    let plan = fedigen::generate::plan_with_spec(repo.path(), Some(&spec)).unwrap();
    let collected = PEAK.load(Ordering::Relaxed) - before;
    let total: usize = plan.files.values().map(String::len).sum();
    assert!(plan.files.len() > 6 * operators, "{}", plan.files.len());
    drop(plan);

    // Streamed into the writer: each file is staged on disk by the task that makes it.
    let roots = fedigen::generate::roots(true);
    let before = reset_peak();
    let run = fedigen::write::Writer::begin(
        repo.path(),
        &roots,
        fedigen::write::Mode::Write { diffs: false },
    )
    .unwrap();
    let regions = fedigen::generate::stream(repo.path(), Some(&spec), &run).unwrap();
    let files = run.files();
    let applied = run.finish(&regions).unwrap();
    let streamed = PEAK.load(Ordering::Relaxed) - before;
    assert_eq!(applied.len(), files, "every file is new");
    let written: usize = roots
        .iter()
        .flat_map(|root| walk(&repo.path().join(root)))
        .map(|file| std::fs::metadata(file).unwrap().len() as usize)
        .sum();
    assert_eq!(written, total, "the stream wrote what the plan held");
    eprintln!(
        "{total} bytes written; at most live: loading the specification {load}, collected {collected}, streamed {streamed}"
    );
    assert!(
        collected >= total,
        "the measurement sees the collected plan: {collected} bytes at most live, {total} bytes planned"
    );
    assert!(
        streamed < load + total / 4,
        "streaming held {streamed} bytes at most, for {total} bytes written and {load} bytes to load the \
         specification (collected: {collected})"
    );
}

/// One operator's VM tests (its deployment test and its migration test) cost the same whatever the number of
/// operators: the migration test's side at provider B cloned the whole specification, every operator, for each
/// operator's test (quadratic in the number of operators; 7 % of generation's CPU at 300 operators, issue #18).
/// Measured as the bytes allocated while building the first operator's tests' data, with 4 and with 120
/// operators in the specification (the clone alone allocated tens of kilobytes per operator).
#[test]
fn one_operators_tests_cost_the_same_whatever_the_number_of_operators() {
    let _measuring = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let repo = scratch_repository();
    let catalog = fedigen::model::Catalog::load(&repo.path().join("templates")).unwrap();
    let mut allocated = Vec::new();
    for operators in [4, 120] {
        let path = repo.path().join(format!("spec-{operators}.toml"));
        std::fs::write(&path, specification(operators)).unwrap();
        let spec = fedigen::model::load(&path, &catalog).unwrap();
        let operator = &spec.operators[0];
        let before = ALLOCATED.load(Ordering::Relaxed);
        let deployment = fedigen::template::DeploymentTest::new(&spec, &catalog, operator);
        let migration = fedigen::template::MigrationTest::new(&spec, &catalog, operator);
        allocated.push(ALLOCATED.load(Ordering::Relaxed) - before);
        drop((deployment, migration));
    }
    let (few, many) = (allocated[0], allocated[1]);
    assert!(
        many < few + few / 4,
        "one operator's tests allocated {few} bytes among 4 operators and {many} among 120: their cost grows \
         with the number of operators"
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
