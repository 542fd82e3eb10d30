//! The real components of the migration tests and benchmark, on 127.0.0.1: PostgreSQL 15 clusters (Debian's,
//! run as `nobody` when the test runs as root), Garage 2.5.0 nodes provisioned by `fedigen storage apply`, and the
//! two providers A and B with the job moving A's state to B ([`World`]).
//!
//! Shared by `tests/migrate_real.rs` and `tests/migrate_bench.rs` through `#[path]`, so both exercise the same
//! setup. Missing components make them fail with how to install them (`scripts/install-test-deps`).
#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fedigen::migrate::job::{
    BucketMove, Commands, DatabaseMove, DirectoryMove, Job, Postgres, Replication, S3, SecretMove,
};
use fedigen::storage::config::{AdminApi, GarageSettings, S3Api};
use fedigen::storage::description::{Bucket, Description, Key};

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

pub fn pg_bin() -> PathBuf {
    std::env::var_os("FEDIGEN_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(PG_BIN))
}

/// Every component the tests need, or a message saying how to install what is missing.
pub fn prerequisites() -> PathBuf {
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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn run(c: &mut Command, what: &str) -> String {
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
pub struct Pg {
    pub dir: PathBuf,
    pub port: u16,
    /// The application's role and its password file (what the job names).
    pub app_password_file: PathBuf,
    /// Server settings given to `postgres` at every start (`-c wal_level=logical`).
    pub settings: String,
    /// The OS user the server runs as when the test runs as root.
    pub owner: String,
}

impl Pg {
    pub fn as_owner(&self, program: &str) -> Command {
        let tool = pg_bin().join(program);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", &self.owner, "--"]).arg(tool);
            c
        } else {
            Command::new(tool)
        }
    }

    pub fn start(root: &Path, name: &str) -> Pg {
        Pg::start_with(root, name, "")
    }

    /// A cluster whose server runs with `settings` (`postgres` options such as `-c wal_level=logical`), with
    /// the roles logical replication uses: `postgres` (the superuser, password `super-secret`) and `replicator`
    /// (`REPLICATION`, `SELECT` on the application's tables, password `rep-pw`).
    pub fn start_with(root: &Path, name: &str, settings: &str) -> Pg {
        Pg::start_as(root, name, settings, "nobody", "trust")
    }

    /// A cluster run by the OS user `owner` (as root), whose Unix socket authenticates by `local` (`trust`, or
    /// `peer` as NixOS's PostgreSQL does); TCP always by password.
    pub fn start_as(root: &Path, name: &str, settings: &str, owner: &str, local: &str) -> Pg {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let pw = dir.join("superuser.pw");
        std::fs::write(&pw, "super-secret\n").unwrap();
        if is_root() {
            let group = run(Command::new("id").args(["-gn", owner]), "id -gn");
            run(
                Command::new("chown")
                    .arg("-R")
                    .arg(format!("{owner}:{}", group.trim()))
                    .arg(&dir),
                "chown",
            );
        }
        let pg = Pg {
            port: free_port(),
            app_password_file: root.join(format!("{name}-app.pw")),
            dir,
            settings: settings.to_owned(),
            owner: owner.to_owned(),
        };
        let data = pg.dir.join("data");
        run(
            pg.as_owner("initdb")
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    &format!("--auth-local={local}"),
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
        std::fs::write(root.join(format!("{name}-super.pw")), "super-secret\n").unwrap();
        std::fs::write(root.join(format!("{name}-rep.pw")), "rep-pw\n").unwrap();
        pg.sql(
            "postgres",
            "CREATE ROLE replicator LOGIN REPLICATION PASSWORD 'rep-pw'",
        );
        pg.sql(
            "appdb",
            "ALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA public GRANT SELECT ON TABLES TO replicator",
        );
        pg
    }

    /// A connection as another role of the cluster (`postgres` or `replicator`), with its password file.
    pub fn role(&self, user: &str) -> Postgres {
        let file = if user == "postgres" { "super" } else { "rep" };
        let name = self.dir.file_name().unwrap().to_string_lossy().into_owned();
        Postgres {
            user: user.into(),
            password_file: Some(self.dir.with_file_name(format!("{name}-{file}.pw"))),
            os_user: None,
            ..self.connection()
        }
    }

    /// The replication roles of a job moving this cluster's database to `target`'s.
    pub fn replication_to(&self, target: &Pg) -> Replication {
        Replication {
            publisher: self.role("replicator"),
            subscriber: target.role("postgres"),
        }
    }

    /// What replication left at this cluster: publications, replication slots, subscriptions and tables
    /// with `REPLICA IDENTITY FULL`, one a line (empty when none).
    pub fn replication_leftovers(&self) -> String {
        self.sql(
            "appdb",
            "SELECT 'publication ' || pubname FROM pg_publication
             UNION ALL SELECT 'slot ' || slot_name FROM pg_replication_slots
             UNION ALL SELECT 'subscription ' || subname FROM pg_subscription
             UNION ALL SELECT 'replica identity full ' || relname FROM pg_class WHERE relreplident = 'f'",
        )
    }

    pub fn pg_ctl(&self, action: &str) {
        let data = self.dir.join("data");
        let mut c = self.as_owner("pg_ctl");
        c.arg("-D")
            .arg(&data)
            .arg("-o")
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -k {} {}",
                self.port,
                self.dir.display(),
                self.settings
            ))
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-m", "fast", action])
            .stdout(Stdio::null());
        run(&mut c, &format!("pg_ctl {action}"));
    }

    /// Runs SQL as the superuser (over TCP, with its password); returns psql's unaligned output.
    pub fn sql(&self, db: &str, query: &str) -> String {
        self.psql("postgres", "super-secret", db, query)
    }

    pub fn psql(&self, user: &str, password: &str, db: &str, query: &str) -> String {
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

    pub fn app(&self, query: &str) -> String {
        self.psql("app", "app-pw", "appdb", query)
    }

    pub fn connection(&self) -> Postgres {
        Postgres {
            host: "127.0.0.1".into(),
            port: self.port,
            user: "app".into(),
            database: "appdb".into(),
            password_file: Some(self.app_password_file.clone()),
            os_user: None,
            tls: Default::default(),
        }
    }

    /// The database `appdb` over this cluster's Unix socket (its folder), as the role `role`, with no password:
    /// how B's planner-made job reaches B's PostgreSQL on NixOS (`/run/postgresql`).
    pub fn socket_connection(&self, role: &str, os_user: Option<&str>) -> Postgres {
        Postgres {
            host: self.dir.display().to_string(),
            port: self.port,
            user: role.into(),
            database: "appdb".into(),
            password_file: None,
            os_user: os_user.map(str::to_owned),
            tls: Default::default(),
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
pub struct Garage {
    pub child: std::process::Child,
    pub s3_port: u16,
    pub key_file: PathBuf,
}

impl Garage {
    pub fn start(garage: &Path, root: &Path, name: &str) -> Garage {
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

    pub fn s3(&self) -> S3 {
        S3 {
            endpoint: format!("http://127.0.0.1:{}", self.s3_port),
            region: "garage".into(),
            bucket: "media".into(),
            key_file: self.key_file.clone(),
        }
    }

    /// rclone with this node as remote `g:`.
    pub fn rclone(&self) -> Command {
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

    pub fn put(&self, local: &Path, key: &str) {
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
    pub fn fingerprint(&self) -> String {
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

    pub fn wipe(&self) {
        run(self.rclone().args(["delete", "g:media"]), "rclone delete");
    }

    /// curl signing an S3 request to this node with its key (SigV4, `--aws-sigv4`): the bucket as S3 itself
    /// has it, without rclone, whose model of folders is what the bucket tests check.
    fn s3_request(&self, method: &str, path: &str) -> Command {
        let text = std::fs::read_to_string(&self.key_file).unwrap();
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap()
                .to_owned()
        };
        let mut c = Command::new("curl");
        c.args(["--silent", "--show-error", "--fail", "--request", method])
            .args(["--aws-sigv4", "aws:amz:garage:s3", "--user"])
            .arg(format!(
                "{}:{}",
                get("AWS_ACCESS_KEY_ID"),
                get("AWS_SECRET_ACCESS_KEY")
            ))
            .args(["--header", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
            .arg(format!("http://127.0.0.1:{}/media/{path}", self.s3_port));
        c
    }

    /// Writes the object `key` with `bytes` through S3 itself: any key S3 allows, also those rclone cannot
    /// name (ending in `/`).
    pub fn put_raw(&self, key: &str, bytes: &[u8]) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        let mut c = self.s3_request("PUT", &percent_encode(key));
        c.arg("--data-binary")
            .arg(format!("@{}", file.path().display()));
        run(&mut c, &format!("curl PUT {key}"));
    }

    /// Every object of the bucket as S3's own listing gives it (`ListObjectsV2` without a delimiter, so no
    /// folders: every key as it is): key → (size, ETag). One page (up to 1,000 objects) is all the bucket tests
    /// put, and a longer listing fails.
    pub fn raw_listing(&self) -> std::collections::BTreeMap<String, (u64, String)> {
        let xml = run(
            &mut self.s3_request("GET", "?list-type=2"),
            "curl ListObjectsV2",
        );
        assert!(
            xml.contains("<IsTruncated>false</IsTruncated>"),
            "more than one page of objects: {xml}"
        );
        xml.split("<Contents>")
            .skip(1)
            .map(|object| {
                let field = |name: &str| {
                    let open = format!("<{name}>");
                    let start = object.find(&open).unwrap() + open.len();
                    let end = start + object[start..].find('<').unwrap();
                    xml_text(&object[start..end])
                };
                (
                    field("Key"),
                    (field("Size").parse().unwrap(), field("ETag")),
                )
            })
            .collect()
    }
}

/// `s` percent-encoded for a URL's path, `/` kept.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// XML text with its five entities decoded.
fn xml_text(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Providers A and B, the folders and files each keeps, and the job moving A's state to B.
pub struct World {
    pub root: tempfile::TempDir,
    pub pg_a: Pg,
    pub pg_b: Pg,
    pub s3_a: Garage,
    pub s3_b: Garage,
    pub job_file: PathBuf,
}

impl World {
    /// A and B, A's database replicated to B during the bulk phase (A runs with `wal_level = logical`).
    pub fn new() -> World {
        World::build(true)
    }

    /// A and B; `replicated`: A runs with `wal_level = logical` and the job names the replication roles,
    /// else the database is dumped and restored after the freeze.
    pub fn build(replicated: bool) -> World {
        let garage = prerequisites();
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let p = root.path().to_owned();
        let settings = if replicated {
            "-c wal_level=logical"
        } else {
            ""
        };
        let (pg_a, pg_b) = (Pg::start_with(&p, "pg-a", settings), Pg::start(&p, "pg-b"));
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
                engine: Default::default(),
                source: pg_a.connection(),
                target: pg_b.connection(),
                replication: replicated.then(|| pg_a.replication_to(&pg_b)),
                url_rewrites: Vec::new(),
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
                target_stop: Vec::new(),
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

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// The fixed seed: tables with serials, text, bytea, a large object and 5,000 generated rows; objects
    /// empty, small, 1 MiB and 12 MiB (multipart at a 5 MiB cutoff); nested files, links, modes; a secret.
    pub fn seed(&self) {
        self.pg_a.app(
            "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);
             CREATE TABLE posts (id bigserial PRIMARY KEY, user_id int REFERENCES users, body text, at timestamptz DEFAULT now());
             CREATE TABLE media (id serial PRIMARY KEY, data bytea, lo oid);
             CREATE TABLE tags (name text, n int);
             INSERT INTO tags SELECT 'tag ' || g, g FROM generate_series(1, 40) g;
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
    pub fn a_fingerprint(&self) -> String {
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
                    "--no-publications",
                    "appdb",
                ])
                .env("PGPASSWORD", "app-pw"),
            "pg_dump A",
        );
        // What replication adds at A while it runs (a publication, REPLICA IDENTITY FULL for tables without a
        // primary key) is not A's data: `Pg::replication_leftovers` checks that it is gone after a rollback.
        let dump: String = dump
            .lines()
            .filter(|l| {
                !l.starts_with("\\restrict")
                    && !l.starts_with("\\unrestrict")
                    && !l.contains("REPLICA IDENTITY")
            })
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
    pub fn reset_b(&self, journal: &Path) {
        self.s3_b.wipe();
        let _ = std::fs::remove_dir_all(self.path("b"));
        let _ = std::fs::remove_dir_all(journal);
        for m in ["frozen", "started", "dns"] {
            let _ = std::fs::remove_file(self.path(m));
        }
    }

    pub fn fedigen(&self, args: &[&str], journal: &Path) -> std::process::Output {
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

    pub fn verify(&self) -> serde_json::Value {
        let out = self.fedigen(&["verify", "--json"], Path::new(""));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "verify printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }
}

pub fn sha(s: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kills `fedigen migrate run` (SIGKILL) at chosen moments, for the kill-and-resume tests of both engines
/// (`migrate_real`, `migrate_mysql`): one place for how a moment is drawn, how the run's progress is followed
/// and which step a kill landed in.
pub struct Killer {
    /// xorshift64 state: deterministic from the printed seed.
    state: u64,
    /// How long one whole run takes here: the range a random moment is drawn from.
    whole: Duration,
    /// How many kills landed in each step (the last one begun), for the test's summary and its checks.
    pub killed_in: std::collections::BTreeMap<String, u32>,
}

impl Killer {
    /// A killer for runs that take about `whole`; its seed is `FEDIGEN_KILL_SEED` when set, else random, and is
    /// printed, so a failing sequence of kills can be replayed.
    pub fn new(whole: Duration) -> Killer {
        let seed = std::env::var("FEDIGEN_KILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| u64::from_le_bytes(hex(8).as_bytes()[..8].try_into().unwrap()))
            | 1;
        eprintln!("whole run {whole:?}; kill seed {seed} (FEDIGEN_KILL_SEED replays it)");
        Killer {
            state: seed,
            whole,
            killed_in: Default::default(),
        }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    /// Starts `run` (a `fedigen migrate run` without `--quiet`: its progress lines on standard error are
    /// followed) and kills it: in even rounds at a random moment of a whole run; in odd rounds up to `jitter`
    /// after the next step of `late` (taken in turn) begins, as short steps are rarely hit by chance. Returns
    /// the step the kill landed in (the last one begun, or `(before the first step)`), counted in `killed_in`.
    pub fn kill(
        &mut self,
        mut run: Command,
        round: usize,
        late: &[&str],
        jitter: Duration,
    ) -> String {
        let random = self.next();
        let (wait_for, delay) = if round.is_multiple_of(2) {
            (
                None,
                Duration::from_millis(random % (self.whole.as_millis() as u64 + 1)),
            )
        } else {
            (
                Some(format!("{}: …", late[(round / 2) % late.len()])),
                Duration::from_millis(random % (jitter.as_millis() as u64).max(1)),
            )
        };
        let mut child = run
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead as _;
            let mut all = String::new();
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line.clone());
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        if let Some(wanted) = &wait_for {
            let deadline = Instant::now() + self.whole * 5 + Duration::from_secs(10);
            while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                if &line == wanted {
                    break;
                }
            }
        }
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        let log = reader.join().unwrap();
        let last = log
            .lines()
            .rev()
            .find_map(|l| l.strip_suffix(": …"))
            .unwrap_or("(before the first step)")
            .to_owned();
        *self.killed_in.entry(last.clone()).or_default() += 1;
        last
    }
}

/// A self-signed certificate and key for a database server on 127.0.0.1, made with openssl in `dir`, the key
/// owned by `owner` (when the test runs as root) with mode 0600, as PostgreSQL and MariaDB require of a key:
/// `(key, cert)`.
pub fn tls_certificate(dir: &Path, owner: &str) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    run(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null()),
        "openssl req",
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    if is_root() {
        run(
            Command::new("chown").arg(format!("{owner}:")).arg(&key),
            "chown",
        );
    }
    (key, cert)
}
