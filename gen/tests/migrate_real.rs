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

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fedigen::migrate::job::{
    BucketMove, Commands, DatabaseMove, DirectoryMove, Job, Postgres, S3, SecretMove,
};
use fedigen::storage::config::{AdminApi, GarageSettings, S3Api};
use fedigen::storage::description::{Bucket, Description, Key};
use proptest::prelude::*;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn pg_bin() -> PathBuf {
    std::env::var_os("FEDIGEN_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(PG_BIN))
}

/// Every component the tests need, or a message saying how to install what is missing.
fn prerequisites() -> PathBuf {
    let mut missing = Vec::new();
    if !pg_bin().join("initdb").is_file() {
        missing.push(format!(
            "PostgreSQL 15 is not installed ({} has no initdb): apt-get install postgresql-15, or set FEDIGEN_PG_BIN",
            pg_bin().display()
        ));
    }
    if !Command::new("rclone")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        missing.push("rclone is not installed: apt-get install rclone".into());
    }
    let garage = match std::env::var_os("FEDIGEN_GARAGE") {
        Some(p) => PathBuf::from(p),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(|| PathBuf::from("/root/.cache"));
            cache.join("fedigen/garage-2.5.0/bin/garage")
        }
    };
    if !garage.is_file() {
        missing.push(format!(
            "Garage 2.5.0 is not installed at {} (or FEDIGEN_GARAGE)",
            garage.display()
        ));
    }
    assert!(
        missing.is_empty(),
        "{}\nscripts/install-test-deps installs all of them on Debian",
        missing.join("\n")
    );
    garage
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn run(c: &mut Command, what: &str) -> String {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A PostgreSQL cluster in a folder, on a loopback port, with password authentication over TCP; stopped on
/// drop.
struct Pg {
    dir: PathBuf,
    port: u16,
    /// The application's role and its password file (what the job names).
    app_password_file: PathBuf,
}

impl Pg {
    fn as_owner(&self, program: &str) -> Command {
        let tool = pg_bin().join(program);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(tool);
            c
        } else {
            Command::new(tool)
        }
    }

    fn start(root: &Path, name: &str) -> Pg {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let pw = dir.join("superuser.pw");
        std::fs::write(&pw, "super-secret\n").unwrap();
        if is_root() {
            run(
                Command::new("chown")
                    .args(["-R", "nobody:nogroup"])
                    .arg(&dir),
                "chown",
            );
        }
        let pg = Pg {
            port: free_port(),
            app_password_file: root.join(format!("{name}-app.pw")),
            dir,
        };
        let data = pg.dir.join("data");
        run(
            pg.as_owner("initdb")
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--no-locale",
                    "-E",
                    "UTF8",
                ])
                .arg(format!("--pwfile={}", pw.display()))
                .stdout(Stdio::null()),
            "initdb",
        );
        pg.pg_ctl("start");
        std::fs::write(&pg.app_password_file, "app-pw\n").unwrap();
        pg.sql("postgres", "CREATE ROLE app LOGIN PASSWORD 'app-pw'");
        pg.sql("postgres", "CREATE DATABASE appdb OWNER app");
        pg
    }

    fn pg_ctl(&self, action: &str) {
        let data = self.dir.join("data");
        let mut c = self.as_owner("pg_ctl");
        c.arg("-D")
            .arg(&data)
            .arg("-o")
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -k {}",
                self.port,
                self.dir.display()
            ))
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-m", "fast", action])
            .stdout(Stdio::null());
        run(&mut c, &format!("pg_ctl {action}"));
    }

    /// Runs SQL as the superuser (over TCP, with its password); returns psql's unaligned output.
    fn sql(&self, db: &str, query: &str) -> String {
        self.psql("postgres", "super-secret", db, query)
    }

    fn psql(&self, user: &str, password: &str, db: &str, query: &str) -> String {
        run(
            Command::new(pg_bin().join("psql"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    user,
                    "-d",
                    db,
                ])
                .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", query])
                .env("PGPASSWORD", password),
            query,
        )
    }

    fn app(&self, query: &str) -> String {
        self.psql("app", "app-pw", "appdb", query)
    }

    fn connection(&self) -> Postgres {
        Postgres {
            host: "127.0.0.1".into(),
            port: self.port,
            user: "app".into(),
            database: "appdb".into(),
            password_file: Some(self.app_password_file.clone()),
        }
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// One Garage node with one bucket and one key, provisioned by `fedigen storage apply`; killed on drop.
struct Garage {
    child: std::process::Child,
    s3_port: u16,
    key_file: PathBuf,
}

impl Garage {
    fn start(garage: &Path, root: &Path, name: &str) -> Garage {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("meta")).unwrap();
        let (s3_port, rpc, admin) = (free_port(), free_port(), free_port());
        let settings = GarageSettings {
            metadata_dir: dir.join("meta").display().to_string(),
            data_dir: dir.join("data").display().to_string(),
            db_engine: "sqlite".into(),
            replication_factor: 1,
            consistency_mode: None,
            rpc_bind_addr: format!("127.0.0.1:{rpc}"),
            rpc_public_addr: format!("127.0.0.1:{rpc}"),
            bootstrap_peers: Vec::new(),
            s3_api: S3Api {
                api_bind_addr: format!("127.0.0.1:{s3_port}"),
                s3_region: "garage".into(),
                root_domain: None,
            },
            s3_web: None,
            admin: AdminApi {
                api_bind_addr: format!("127.0.0.1:{admin}"),
            },
        };
        let config = dir.join("garage.toml");
        std::fs::write(&config, settings.to_toml()).unwrap();
        let (secret, token) = (hex(32), hex(32));
        let log = std::fs::File::create(dir.join("garage.log")).unwrap();
        let child = Command::new(garage)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .env("GARAGE_RPC_SECRET", &secret)
            .env("GARAGE_ADMIN_TOKEN", &token)
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let g = Garage {
            child,
            s3_port,
            key_file: dir.join("s3.env"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let id = loop {
            let out = Command::new(garage)
                .arg("-c")
                .arg(&config)
                .args(["node", "id", "-q"])
                .env("GARAGE_RPC_SECRET", &secret)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() && text.contains('@') {
                break text.split('@').next().unwrap().to_owned();
            }
            assert!(Instant::now() < deadline, "garage node id: {text}");
            std::thread::sleep(Duration::from_millis(200));
        };
        let key_id = format!("GK{}", hex(12));
        std::fs::write(
            &g.key_file,
            format!(
                "AWS_ACCESS_KEY_ID={key_id}\nAWS_SECRET_ACCESS_KEY={}\n",
                hex(32)
            ),
        )
        .unwrap();
        let description = Description::new(1)
            .with_node("n1", &id, "dc1", 1 << 30)
            .with_bucket(Bucket {
                name: "media".into(),
                website: false,
                keys: vec![Key {
                    id: key_id,
                    secret_file: g.key_file.clone(),
                    name: format!("{name}/app"),
                    read: true,
                    write: true,
                    owner: true,
                }],
            });
        let desc_file = dir.join("storage.json");
        std::fs::write(&desc_file, description.to_json()).unwrap();
        let token_file = dir.join("token");
        std::fs::write(&token_file, &token).unwrap();
        run(
            Command::new(env!("CARGO_BIN_EXE_fedigen"))
                .args([
                    "--quiet",
                    "storage",
                    "apply",
                    "--wait",
                    "60",
                    "--description",
                ])
                .arg(&desc_file)
                .arg("--admin")
                .arg(format!("http://127.0.0.1:{admin}"))
                .arg("--token-file")
                .arg(&token_file),
            "fedigen storage apply",
        );
        g
    }

    fn s3(&self) -> S3 {
        S3 {
            endpoint: format!("http://127.0.0.1:{}", self.s3_port),
            region: "garage".into(),
            bucket: "media".into(),
            key_file: self.key_file.clone(),
        }
    }

    /// rclone with this node as remote `g:`.
    fn rclone(&self) -> Command {
        let text = std::fs::read_to_string(&self.key_file).unwrap();
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap()
                .to_owned()
        };
        let mut c = Command::new("rclone");
        c.env("RCLONE_CONFIG", "/dev/null")
            .env_remove("AWS_CA_BUNDLE")
            .env("RCLONE_CONFIG_G_TYPE", "s3")
            .env("RCLONE_CONFIG_G_PROVIDER", "Other")
            .env(
                "RCLONE_CONFIG_G_ENDPOINT",
                format!("http://127.0.0.1:{}", self.s3_port),
            )
            .env("RCLONE_CONFIG_G_REGION", "garage")
            .env("RCLONE_CONFIG_G_FORCE_PATH_STYLE", "true")
            .env("RCLONE_CONFIG_G_ACCESS_KEY_ID", get("AWS_ACCESS_KEY_ID"))
            .env(
                "RCLONE_CONFIG_G_SECRET_ACCESS_KEY",
                get("AWS_SECRET_ACCESS_KEY"),
            )
            .arg("--s3-no-check-bucket");
        c
    }

    fn put(&self, local: &Path, key: &str) {
        run(
            self.rclone()
                .args([
                    "copyto",
                    "--s3-upload-cutoff",
                    "5Mi",
                    "--s3-chunk-size",
                    "5Mi",
                ])
                .arg(local)
                .arg(format!("g:media/{key}")),
            "rclone copyto",
        );
    }

    /// Every object's name, size and MD5 of its downloaded bytes: what A must keep.
    fn fingerprint(&self) -> String {
        run(
            self.rclone().args(["md5sum", "--download", "g:media"]),
            "rclone md5sum",
        )
        .lines()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join("\n")
    }

    fn wipe(&self) {
        run(self.rclone().args(["delete", "g:media"]), "rclone delete");
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Providers A and B, the folders and files each keeps, and the job moving A's state to B.
struct World {
    root: tempfile::TempDir,
    pg_a: Pg,
    pg_b: Pg,
    s3_a: Garage,
    s3_b: Garage,
    job_file: PathBuf,
}

impl World {
    fn new() -> World {
        let garage = prerequisites();
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let p = root.path().to_owned();
        let (pg_a, pg_b) = (Pg::start(&p, "pg-a"), Pg::start(&p, "pg-b"));
        let (s3_a, s3_b) = (
            Garage::start(&garage, &p, "garage-a"),
            Garage::start(&garage, &p, "garage-b"),
        );
        std::fs::create_dir_all(p.join("a/state")).unwrap();
        std::fs::create_dir_all(p.join("a/secrets")).unwrap();
        let user = run(Command::new("id").arg("-un"), "id -un")
            .trim()
            .to_owned();
        let group = run(Command::new("id").arg("-gn"), "id -gn")
            .trim()
            .to_owned();
        let marker = |n: &str| p.join(n).display().to_string();
        let job = Job {
            operator: "op".into(),
            databases: vec![DatabaseMove {
                name: "app".into(),
                source: pg_a.connection(),
                target: pg_b.connection(),
            }],
            buckets: vec![BucketMove {
                name: "media".into(),
                source: s3_a.s3(),
                target: s3_b.s3(),
            }],
            directories: vec![DirectoryMove {
                name: "state".into(),
                source: marker("a/state"),
                target: marker("b/state"),
            }],
            identity: vec![SecretMove {
                name: "signing_key".into(),
                source: marker("a/secrets/signing.key"),
                target: p.join("b/secrets/signing.key"),
                owner: user,
                group,
                mode: "0600".into(),
            }],
            commands: Commands {
                freeze: vec![vec!["touch".into(), marker("frozen")]],
                start: vec![vec!["touch".into(), marker("started")]],
                health: vec![vec!["test".into(), "-e".into(), marker("started")]],
                health_timeout_seconds: 10,
                dns_switch: vec![vec!["touch".into(), marker("dns")]],
                source_start: vec![vec!["rm".into(), "-f".into(), marker("frozen")]],
            },
        };
        let job_file = p.join("job.json");
        std::fs::write(&job_file, job.to_json()).unwrap();
        World {
            root,
            pg_a,
            pg_b,
            s3_a,
            s3_b,
            job_file,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// The fixed seed: tables with serials, text, bytea, a large object and 5,000 generated rows; objects
    /// empty, small, 1 MiB and 12 MiB (multipart at a 5 MiB cutoff); nested files, links, modes; a secret.
    fn seed(&self) {
        self.pg_a.app(
            "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);
             CREATE TABLE posts (id bigserial PRIMARY KEY, user_id int REFERENCES users, body text, at timestamptz DEFAULT now());
             CREATE TABLE media (id serial PRIMARY KEY, data bytea, lo oid);
             INSERT INTO users (name) SELECT 'user ' || g FROM generate_series(1, 50) g;
             INSERT INTO posts (user_id, body) SELECT 1 + g % 50, repeat('x', g % 300) || E'\\n\\t''\"' FROM generate_series(1, 5000) g;
             INSERT INTO media (data, lo) VALUES (decode(repeat('00ff10', 10000), 'hex'), lo_from_bytea(0, decode(repeat('abcdef', 50000), 'hex')));",
        );
        let files = self.path("seed-objects");
        std::fs::create_dir_all(&files).unwrap();
        for (key, size) in [
            ("empty", 0usize),
            ("small.txt", 17),
            ("dir/one mib.bin", 1 << 20),
            ("big/multipart.bin", 12 << 20),
        ] {
            let local = files.join(key.replace('/', "_"));
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            std::fs::write(&local, data).unwrap();
            self.s3_a.put(&local, key);
        }
        let state = self.path("a/state");
        std::fs::create_dir_all(state.join("public-system/media/1/2")).unwrap();
        std::fs::write(
            state.join("public-system/media/1/2/avatar.png"),
            vec![9u8; 70_000],
        )
        .unwrap();
        std::fs::write(state.join(".secrets_env"), "KEY=value\n").unwrap();
        std::fs::set_permissions(
            state.join(".secrets_env"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::fs::write(state.join("empty"), "").unwrap();
        std::fs::create_dir_all(state.join("empty-dir")).unwrap();
        std::fs::set_permissions(
            state.join("public-system"),
            std::fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        std::os::unix::fs::symlink("public-system/media", state.join("media-link")).unwrap();
        std::os::unix::fs::symlink("/does/not/exist", state.join("dangling")).unwrap();
        std::fs::write(
            self.path("a/secrets/signing.key"),
            "ed25519 a_key 0123456789\n",
        )
        .unwrap();
    }

    /// What A holds: database dump digest, objects' bytes, the folder's manifest, the secret.
    fn a_fingerprint(&self) -> String {
        let dump = run(
            Command::new(pg_bin().join("pg_dump"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.pg_a.port.to_string(),
                    "-U",
                    "app",
                    "--no-owner",
                    "appdb",
                ])
                .env("PGPASSWORD", "app-pw"),
            "pg_dump A",
        );
        let dump: String = dump
            .lines()
            .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
            .collect();
        let manifest = fedigen::migrate::tree::manifest(&self.path("a/state")).unwrap();
        format!(
            "{}\n{}\n{}\n{}",
            dump.len(),
            sha(&dump),
            self.s3_a.fingerprint(),
            serde_json::to_string(&manifest).unwrap()
        ) + &std::fs::read_to_string(self.path("a/secrets/signing.key")).unwrap()
    }

    /// B as if nothing had happened yet (its database is left: the restore replaces what is there).
    fn reset_b(&self, journal: &Path) {
        self.s3_b.wipe();
        let _ = std::fs::remove_dir_all(self.path("b"));
        let _ = std::fs::remove_dir_all(journal);
        for m in ["frozen", "started", "dns"] {
            let _ = std::fs::remove_file(self.path(m));
        }
    }

    fn fedigen(&self, args: &[&str], journal: &Path) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_fedigen"))
            .arg("--quiet")
            .args(["migrate", args[0], "--job"])
            .arg(&self.job_file)
            .args(if args[0] == "verify" {
                vec![]
            } else {
                vec!["--journal".as_ref(), journal.as_os_str()]
            })
            .args(&args[1..])
            .env("FEDIGEN_PG_BIN", pg_bin())
            .output()
            .unwrap()
    }

    fn verify(&self) -> serde_json::Value {
        let out = self.fedigen(&["verify", "--json"], Path::new(""));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "verify printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

fn sha(s: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

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
    w.pg_b.app("DELETE FROM posts WHERE id = 7");
    std::fs::write(w.path("b/state/.secrets_env"), "KEY=other\n").unwrap();
    w.s3_b.put(&late, "extra.txt");
    std::fs::write(&secret, "another key\n").unwrap();
    let report = w.verify();
    assert_eq!(report["equal"], false);
    let text = report.to_string();
    for needle in [
        "table public.posts: 5000 rows at the source, 4999 at the target",
        "differs: .secrets_env",
        "only at the target: extra.txt",
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
