//! `fedigen migrate` against the real components, on 127.0.0.1: two PostgreSQL 15 clusters (Debian's, run as
//! `nobody` when the test runs as root), two Garage 2.5.0 clusters of one node each (provisioned by `fedigen
//! storage apply`), rclone, and folders. Provider A is seeded (a database with several tables, bytea and a large
//! object; a bucket with empty, small, large and multipart objects; a state folder with nested files, links and
//! modes; an identity secret), moved to B, and verified equal; then the run is killed (SIGKILL) at random moments
//! and resumed, or rolled back, and always ends with equal data while A stays intact; and random data shapes
//! migrate with equal data.
//!
//! Missing components make the tests fail with how to install them: `scripts/install-test-deps` installs
//! PostgreSQL 15 and rclone (Debian) and builds Garage 2.5.0 into `~/.cache/fedigen/` (or set
//! `FEDIGEN_GARAGE`).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proptest::prelude::*;

#[path = "support/migrate_world.rs"]
mod world;

use world::{World, hex, ok, pg_bin};

/// Seed A, pre-copy, change A, migrate, verify equal; B is then really a copy (rows, large object, bytes, modes,
/// links, the secret's mode); verify names a difference planted at B; the run is idempotent afterwards.
#[test]
fn a_migration_moves_everything_and_verification_proves_it() {
    let w = World::new();
    w.seed();
    let journal = w.path("journal");
    // Pre-copy while A serves; then A changes (a new row, object and file): the delta must carry them.
    ok(
        &w.fedigen(&["run", "--bulk-only"], &journal),
        "bulk-only run",
    );
    assert!(!w.path("frozen").exists(), "--bulk-only froze the source");
    w.pg_a.app("INSERT INTO users (name) VALUES ('late user')");
    std::fs::write(w.path("a/state/late.txt"), "written after the bulk copy").unwrap();
    let late = w.path("late-object");
    std::fs::write(&late, "late object").unwrap();
    w.s3_a.put(&late, "late/object.txt");
    let before = w.a_fingerprint();
    let started = Instant::now();
    let out = w.fedigen(&["run"], &journal);
    ok(&out, "run");
    eprintln!("migration after the pre-copy took {:?}", started.elapsed());
    for m in ["frozen", "started", "dns"] {
        assert!(w.path(m).exists(), "{m} was not run");
    }
    let report = w.verify();
    assert_eq!(report["equal"], true, "{report:#}");
    assert_eq!(report["items"].as_array().unwrap().len(), 4);
    assert_eq!(w.a_fingerprint(), before, "the migration changed A");
    assert_eq!(
        w.pg_b
            .app("SELECT count(*) FROM users WHERE name = 'late user'"),
        "1\n"
    );
    assert_eq!(
        w.pg_b.app("SELECT length(lo_get(lo)) FROM media"),
        "150000\n"
    );
    assert_eq!(
        w.pg_b.sql(
            "appdb",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'posts'"
        ),
        "app\n"
    );
    assert_eq!(w.s3_b.fingerprint(), w.s3_a.fingerprint());
    let secret = w.path("b/secrets/signing.key");
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_link(w.path("b/state/dangling")).unwrap(),
        Path::new("/does/not/exist")
    );
    // A second run does nothing (every step journaled).
    let again = w.fedigen(&["run"], &journal);
    ok(&again, "second run");
    // Verification can fail: plant one difference of each kind at B and have each named.
    // Verification reads neither a full dump nor every object's bytes (issue #16): changes that keep every
    // count and size must still be found — a row, a sequence and a large object changed in place, an object
    // overwritten with as many other bytes (one a store keeps an MD5 for, one uploaded in parts without one).
    w.pg_b.app("DELETE FROM posts WHERE id = 7");
    w.pg_b.app("UPDATE users SET name = 'user 30' WHERE id = 3");
    w.pg_b.app("SELECT setval('users_id_seq', 500)");
    w.pg_b.app("SELECT lo_put(lo, 10, '\\x00') FROM media");
    std::fs::write(w.path("b/state/.secrets_env"), "KEY=other\n").unwrap();
    w.s3_b.put(&late, "extra.txt");
    let same_size = w.path("same-size");
    std::fs::write(&same_size, vec![b'y'; 17]).unwrap();
    w.s3_b.put(&same_size, "small.txt");
    std::fs::write(&same_size, vec![1u8; 12 << 20]).unwrap();
    let out = w
        .s3_b
        .rclone()
        .args([
            "copyto",
            "--s3-upload-cutoff",
            "5Mi",
            "--s3-chunk-size",
            "5Mi",
            "--s3-disable-checksum",
        ])
        .arg(&same_size)
        .arg("g:media/big/multipart.bin")
        .output()
        .unwrap();
    ok(&out, "rclone copyto without an MD5");
    std::fs::write(&secret, "another key\n").unwrap();
    let report = w.verify();
    assert_eq!(report["equal"], false);
    let text = report.to_string();
    for needle in [
        "table public.posts: 5000 rows at the source, 4999 at the target",
        "table public.users: 51 rows on both sides, but their contents differ",
        "sequence public.users_id_seq: last value 51 at the source, 500 at the target",
        "large objects: 1 on both sides, but their numbers or contents differ",
        "differs: .secrets_env",
        "only at the target: extra.txt",
        "differs: small.txt",
        "differs: big/multipart.bin",
        "the target file's content differs",
    ] {
        assert!(text.contains(needle), "{needle} not in {report:#}");
    }
    let out = w.fedigen(&["verify"], Path::new(""));
    assert_eq!(
        out.status.code(),
        Some(1),
        "verify exit status on differences"
    );
    // After the switch, rollback is refused.
    let out = w.fedigen(&["rollback"], &journal);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the DNS switch is done"));
}

/// Small deterministic generator for kill moments (seed printed, so a failure can be replayed).
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Killed (SIGKILL) at ≥ 20 random moments and resumed (or rolled back and run again): every time the run ends
/// with B equal to A, A unchanged, and the DNS switch done only when everything before it is.
#[test]
fn a_run_killed_at_random_moments_resumes_to_equal_data_and_leaves_a_intact() {
    let w = World::new();
    w.seed();
    let a = w.a_fingerprint();
    let journal = w.path("journal");
    // How long one whole run takes: the range the kills are drawn from.
    let t = Instant::now();
    ok(&w.fedigen(&["run"], &journal), "a first whole run");
    let whole = t.elapsed();
    let seed = std::env::var("FEDIGEN_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from_le_bytes(hex(8).as_bytes()[..8].try_into().unwrap()) | 1);
    eprintln!("whole run {whole:?}; kill seed {seed} (FEDIGEN_KILL_SEED replays it)");
    let mut rng = XorShift(seed);
    let mut killed_in = std::collections::BTreeMap::<String, u32>::new();
    for round in 0..22 {
        w.reset_b(&journal);
        let delay = Duration::from_millis(rng.next() % (whole.as_millis() as u64 + 1));
        let mut child = Command::new(env!("CARGO_BIN_EXE_fedigen"))
            .args(["migrate", "run", "--job"])
            .arg(&w.job_file)
            .arg("--journal")
            .arg(&journal)
            .env("FEDIGEN_PG_BIN", pg_bin())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        let last = log
            .lines()
            .rev()
            .find_map(|l| l.strip_suffix(": …"))
            .unwrap_or("(before the first step)")
            .to_owned();
        *killed_in.entry(last.clone()).or_default() += 1;
        // Until the switch, A is as it was, and startable: its server restarts and answers.
        if !w.path("dns").exists() {
            assert_eq!(
                w.a_fingerprint(),
                a,
                "round {round}: A changed (killed in {last})"
            );
            if round % 7 == 0 {
                w.pg_a.pg_ctl("restart");
                assert_eq!(w.pg_a.app("SELECT count(*) FROM posts"), "5000\n");
            }
        }
        if round % 4 == 1 && !w.path("dns").exists() {
            ok(&w.fedigen(&["rollback"], &journal), "rollback");
            assert!(
                !w.path("frozen").exists(),
                "rollback did not start the source again"
            );
        }
        ok(
            &w.fedigen(&["run"], &journal),
            &format!("round {round}: the resumed run (killed in {last})"),
        );
        assert!(w.path("dns").exists());
        let report = w.verify();
        assert_eq!(
            report["equal"], true,
            "round {round} (killed in {last}): {report:#}"
        );
    }
    eprintln!("killed in: {killed_in:?}");
    assert_eq!(w.a_fingerprint(), a);
}

/// A random data shape for A: rows, objects (sizes up to 300 KiB, some empty), files (nested, modes, empty).
#[derive(Debug, Clone)]
struct Shape {
    rows: Vec<(String, Vec<u8>)>,
    objects: Vec<(String, usize)>,
    files: Vec<(String, usize, u32)>,
}

fn shape() -> impl Strategy<Value = Shape> {
    let name = "[a-z]{1,6}(/[a-z0-9][a-z0-9 ._-]{0,7}){0,2}";
    (
        proptest::collection::vec(
            (".{0,40}", proptest::collection::vec(any::<u8>(), 0..200)),
            0..30,
        ),
        proptest::collection::btree_map(name, 0usize..300_000, 0..6),
        proptest::collection::btree_map(
            name,
            (
                0usize..100_000,
                prop_oneof![Just(0o600u32), Just(0o644), Just(0o755), Just(0o400)],
            ),
            0..8,
        ),
    )
        .prop_map(|(rows, objects, files)| Shape {
            rows,
            objects: objects.into_iter().collect(),
            files: files.into_iter().map(|(n, (s, m))| (n, s, m)).collect(),
        })
}

/// Random data shapes migrate with equal data: one pair of providers, each case a new shape of A's rows,
/// objects and files (shrunk to the smallest failing shape on a failure), migrated with a fresh journal.
#[test]
fn random_data_shapes_migrate_with_equal_data() {
    let w = World::new();
    std::fs::write(w.path("a/secrets/signing.key"), "k").unwrap();
    w.pg_a
        .app("CREATE TABLE t (id serial PRIMARY KEY, s text, b bytea)");
    let config = ProptestConfig {
        cases: 6,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let counter = std::cell::Cell::new(0usize);
    let result = proptest::test_runner::TestRunner::new(config).run(&shape(), |s| {
        counter.set(counter.get() + 1);
        let case = counter.get();
        w.pg_a.app("TRUNCATE t");
        for (text, bytes) in &s.rows {
            let hexed: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            w.pg_a.app(&format!(
                "INSERT INTO t (s, b) VALUES ('{}', decode('{hexed}', 'hex'))",
                text.replace('\0', "").replace('\'', "''")
            ));
        }
        w.s3_a.wipe();
        for (key, size) in &s.objects {
            let local = w.path("object");
            std::fs::write(&local, vec![(case + size) as u8; *size]).unwrap();
            w.s3_a.put(&local, key);
        }
        let state = w.path("a/state");
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).unwrap();
        for (name, size, mode) in &s.files {
            let path = state.join(name);
            // A name under another file's name cannot be a file too: skip it.
            if std::fs::create_dir_all(path.parent().unwrap()).is_err() || path.is_dir() {
                continue;
            }
            std::fs::write(&path, vec![*size as u8; *size]).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
        let journal = w.path(&format!("journal-{case}"));
        w.reset_b(&journal);
        ok(&w.fedigen(&["run"], &journal), "run");
        let report = w.verify();
        prop_assert_eq!(
            &report["equal"],
            &serde_json::Value::Bool(true),
            "{:#}",
            report
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Extensions, as PeerTube's database has them (`pg_trgm`, `unaccent`, created by a superuser): at B the
/// target's module has created `pg_trgm` already (a superuser's, which the application's role may neither drop
/// nor comment on) and not `unaccent` (trusted: the role creates it). The migration moves the database and
/// leaves B's `pg_trgm` as it was. Then A uses an extension only a superuser can create and B lacks it: the run
/// stops before the freeze, exit status 3, naming the extension and how to fix it.
#[test]
fn extensions_are_restored_or_refused_before_the_freeze() {
    world::prerequisites();
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = root.path().to_owned();
    let (a, b) = (world::Pg::start(&p, "pg-a"), world::Pg::start(&p, "pg-b"));
    a.sql(
        "appdb",
        "CREATE EXTENSION pg_trgm; CREATE EXTENSION unaccent",
    );
    b.sql("appdb", "CREATE EXTENSION pg_trgm");
    a.app(
        "CREATE TABLE video (id serial PRIMARY KEY, name text);
         CREATE INDEX video_name ON video USING gin (name gin_trgm_ops);
         INSERT INTO video (name) SELECT unaccent('Vidéo ' || g) FROM generate_series(1, 100) g;",
    );
    let marker = |n: &str| p.join(n).display().to_string();
    let job = fedigen::migrate::job::Job {
        operator: "op".into(),
        databases: vec![fedigen::migrate::job::DatabaseMove {
            name: "peertube".into(),
            source: a.connection(),
            target: b.connection(),
        }],
        buckets: Vec::new(),
        directories: Vec::new(),
        identity: Vec::new(),
        commands: fedigen::migrate::job::Commands {
            freeze: vec![vec!["touch".into(), marker("frozen")]],
            dns_switch: vec![vec!["touch".into(), marker("dns")]],
            ..Default::default()
        },
    };
    let job_file = p.join("job.json");
    std::fs::write(&job_file, job.to_json()).unwrap();
    let migrate = |verb: &str, journal: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fedigen"));
        c.args(["migrate", verb, "--job"]).arg(&job_file);
        if verb == "run" {
            c.arg("--journal").arg(p.join(journal));
        }
        c.env("FEDIGEN_PG_BIN", pg_bin()).output().unwrap()
    };
    ok(&migrate("run", "j1"), "run with pg_trgm at both sides");
    ok(&migrate("verify", ""), "verify");
    assert_eq!(
        b.app("SELECT count(*) FROM video WHERE name LIKE 'Video %'"),
        "100\n"
    );
    assert_eq!(
        b.sql(
            "appdb",
            "SELECT extname || ' ' || extowner::regrole FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1"
        ),
        "pg_trgm postgres\nunaccent app\n",
        "B's own pg_trgm was replaced, or unaccent not created by the application's role"
    );
    // A superuser-only extension B lacks: refused before anything is done.
    a.sql("appdb", "CREATE EXTENSION pg_buffercache");
    std::fs::remove_file(p.join("frozen")).unwrap();
    let out = migrate("run", "j2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("extension `pg_buffercache`, which only a superuser can create")
            && stderr.contains("CREATE EXTENSION \"pg_buffercache\";"),
        "{stderr}"
    );
    assert!(
        !p.join("frozen").exists(),
        "the source was frozen before the refusal"
    );
    // A target database of another encoding (Synapse's wants C collation too): refused before the freeze.
    b.sql(
        "postgres",
        "CREATE DATABASE latin OWNER app TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'",
    );
    let mut other = job.clone();
    other.databases[0].target.database = "latin".into();
    std::fs::write(&job_file, other.to_json()).unwrap();
    let out = migrate("run", "j3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(
            "database appdb has the encoding `UTF8` at the source and `LATIN1` at the target"
        ) && stderr.contains("ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"),
        "{stderr}"
    );
    assert!(!p.join("frozen").exists(), "the source was frozen");
}
