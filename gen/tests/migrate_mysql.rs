//! `fedigen migrate` of MySQL databases against real MariaDB (Debian's `mariadb-server`, as nixpkgs' Pixelfed
//! uses MariaDB), and of stored media URLs with both engines.
//!
//! Two throwaway `mariadbd` servers on Unix sockets in temporary folders (no network), run as `nobody`; the
//! application's user is `nobody` too and authenticates with `unix_socket`, as NixOS's `ensureUsers` creates
//! Pixelfed's user, so the job's tools must run as that OS user (`os_user`) and the dump crosses the root-only
//! journal folder on their standard input and output. A is seeded with several tables (a blob, rows of NULLs,
//! utf8mb4 text, a foreign key, a table without a key, a view, a trigger, a function) and media URLs naming A's
//! media host; the move rewrites them to B's; verification is equal, and names a planted difference and an
//! unrewritten URL. The run killed at several moments (in the restore and the rewrite among them) resumes to
//! equal data with every URL rewritten once. The PostgreSQL trial moves a table of URLs between two real
//! PostgreSQL 15 clusters the same way.
//!
//! Trials whose components are missing are reported ignored with the reason (`scripts/install-test-deps`
//! installs them).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fedigen::migrate::job::{Commands, DatabaseMove, Engine, Job, Postgres, UrlRewrite};

mod support;
#[path = "support/migrate_world.rs"]
mod world;

const FROM: &str = "https://media.a.test/op-pixelfed-media/";
const TO: &str = "https://media.b.test/op-pixelfed-media-b/";

type Outcome = Result<(), libtest_mimic::Failed>;

fn mariadbd() -> PathBuf {
    std::env::var_os("FEDIGEN_MARIADBD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/mariadbd"))
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

/// A MariaDB server in a folder, on a Unix socket (and, for a source reached as B reaches A, on a TCP port of
/// 127.0.0.1), run as `nobody`; stopped on drop.
struct Maria {
    socket: PathBuf,
    /// The TCP port, when the server listens on one.
    port: Option<u16>,
    child: Child,
}

impl Maria {
    /// Initialises and starts a server in `root/name`, with a database `pixelfed` and the user `nobody`
    /// (`unix_socket`, every privilege on `pixelfed.*` and no other, as nixpkgs' pixelfed.nix asks
    /// `ensureUsers` for; mariadb-install-db's own account for the `--user` has every privilege, so it is
    /// replaced).
    fn start(root: &Path, name: &str) -> Maria {
        Maria::start_on(root, name, None)
    }

    /// As [`Maria::start`], also listening on a free TCP port of 127.0.0.1, with the account the plan asks A's
    /// provider for (`migrate plan`'s manual line): `pixelfed`@'127.0.0.%' with a password, beside the local
    /// account nixpkgs' mysql.nix makes (`pixelfed` with no host part, so `@'%'`, by `unix_socket`; the network
    /// pattern, more specific, takes the TCP login, as in the migration VM tests), SELECT, LOCK TABLES,
    /// SHOW VIEW, TRIGGER and EVENT on `pixelfed`.*, and SELECT on `mysql.proc` (without it, mariadb-dump leaves
    /// out the routines another account defined, and the schema digest, read by the same account, misses them:
    /// the seed's function `twice` was lost silently).
    fn start_tcp(root: &Path, name: &str, password: &str) -> Maria {
        Maria::start_tcp_with(root, name, password, &[], "")
    }

    /// As [`Maria::start_tcp`], the server given `options` and B's account `require` (`REQUIRE SSL`).
    fn start_tcp_with(
        root: &Path,
        name: &str,
        password: &str,
        options: &[String],
        require: &str,
    ) -> Maria {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let m = Maria::start_with(root, name, Some(port), options);
        m.sql(
            "",
            &format!(
                "CREATE USER 'pixelfed' IDENTIFIED VIA unix_socket; \
                 CREATE OR REPLACE USER 'pixelfed'@'127.0.0.%' IDENTIFIED BY '{password}' {require}; \
                 GRANT SELECT, LOCK TABLES, SHOW VIEW, TRIGGER, EVENT ON pixelfed.* TO 'pixelfed'@'127.0.0.%'; \
                 GRANT SELECT ON mysql.proc TO 'pixelfed'@'127.0.0.%'"
            ),
        );
        m
    }

    fn start_on(root: &Path, name: &str, port: Option<u16>) -> Maria {
        Maria::start_with(root, name, port, &[])
    }

    fn start_with(root: &Path, name: &str, port: Option<u16>, options: &[String]) -> Maria {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        world::run(
            Command::new("chown").args(["nobody:nogroup"]).arg(&dir),
            "chown",
        );
        let data = dir.join("data");
        // Each server's own temporary folder: two bootstraps sharing /tmp once failed removing a temporary table
        // the other had taken ("Unknown table 'mysql.tmp_user_sys'").
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        world::run(
            Command::new("chown").args(["nobody:nogroup"]).arg(&tmp),
            "chown",
        );
        world::run(
            Command::new("mariadb-install-db")
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--tmpdir={}", tmp.display()))
                .env("TMPDIR", &tmp)
                .args([
                    "--user=nobody",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                ])
                .stdout(Stdio::null()),
            "mariadb-install-db",
        );
        let socket = dir.join("mysqld.sock");
        let child = Command::new(mariadbd())
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--log-error={}", dir.join("error.log").display()))
            .args(match port {
                Some(port) => vec![
                    "--bind-address=127.0.0.1".to_owned(),
                    format!("--port={port}"),
                ],
                None => vec!["--skip-networking".to_owned()],
            })
            .args([
                "--user=nobody",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
            ])
            .args(options)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        let m = Maria {
            socket,
            port,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while m.try_sql("", "SELECT 1").is_err() {
            assert!(
                Instant::now() < deadline,
                "mariadbd did not answer in 60 s: {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        m.sql(
            "",
            "CREATE DATABASE pixelfed CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci; \
             DROP USER IF EXISTS 'nobody'@'localhost'; \
             CREATE USER 'nobody'@'localhost' IDENTIFIED VIA unix_socket; \
             GRANT ALL PRIVILEGES ON pixelfed.* TO 'nobody'@'localhost'",
        );
        m
    }

    fn try_sql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .args([
                "--user=root",
                "--default-character-set=utf8mb4",
                "--batch",
                "--raw",
                "--skip-column-names",
            ])
            .args(if db.is_empty() {
                vec![]
            } else {
                vec![format!("--database={db}")]
            })
            .arg(format!("--execute={sql}"))
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs `sql` as the server's root in `db` ("" for none).
    fn sql(&self, db: &str, sql: &str) -> String {
        self.try_sql(db, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The application's connection: its socket, as `nobody` (unix_socket), run as that OS user.
    fn connection(&self) -> Postgres {
        Postgres {
            host: self.socket.display().to_string(),
            port: 3306,
            user: "nobody".into(),
            database: "pixelfed".into(),
            password_file: None,
            os_user: Some("nobody".into()),
            tls: Default::default(),
        }
    }
}

impl Maria {
    /// The source's connection as the planner writes it: TCP with a password file, as `pixelfed`.
    fn tcp_connection(&self, password_file: &Path) -> Postgres {
        Postgres {
            host: "127.0.0.1".into(),
            port: self.port.expect("a server listening on TCP"),
            user: "pixelfed".into(),
            database: "pixelfed".into(),
            password_file: Some(password_file.to_owned()),
            os_user: None,
            tls: Default::default(),
        }
    }
}

impl Drop for Maria {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A's data: Pixelfed-like tables with media URLs, and the shapes a dump must carry. The view, trigger and
/// function are the application user's (as Pixelfed's migrations would make them): only their definer may read
/// a routine's body, which the dump needs.
const SEED: &str = "
CREATE TABLE profiles (id BIGINT UNSIGNED PRIMARY KEY AUTO_INCREMENT, username VARCHAR(64) NOT NULL, bio TEXT NULL);
CREATE TABLE media (id BIGINT UNSIGNED PRIMARY KEY AUTO_INCREMENT, profile_id BIGINT UNSIGNED NOT NULL,
  media_path VARCHAR(255) NOT NULL, cdn_url VARCHAR(255) NULL, thumbnail_url VARCHAR(255) NULL,
  FOREIGN KEY (profile_id) REFERENCES profiles (id));
CREATE TABLE blobs (id INT PRIMARY KEY, data LONGBLOB NULL, n DOUBLE NULL, d DATETIME(6) NULL, j JSON NULL);
CREATE TABLE nokey (s VARCHAR(20), n INT);
CREATE TABLE audit (id INT PRIMARY KEY AUTO_INCREMENT, what VARCHAR(64));
CREATE TABLE posts (id INT PRIMARY KEY, profile_id BIGINT UNSIGNED, body TEXT);
CREATE DEFINER = 'nobody'@'localhost' VIEW media_urls AS SELECT id, cdn_url FROM media;
CREATE DEFINER = 'nobody'@'localhost' TRIGGER nokey_ai AFTER INSERT ON nokey FOR EACH ROW INSERT INTO audit (what) VALUES (CONCAT('nokey ', NEW.s));
CREATE DEFINER = 'nobody'@'localhost' FUNCTION twice (x INT) RETURNS INT DETERMINISTIC RETURN x * 2;
INSERT INTO profiles (username, bio) SELECT CONCAT('user', seq), CONCAT('Zoë 📷 ', seq, ' \\\\ \\' \"') FROM seq_1_to_200;
INSERT INTO profiles (username, bio) VALUES ('nobio', NULL);
INSERT INTO media (profile_id, media_path, cdn_url, thumbnail_url)
  SELECT 1 + seq % 200, CONCAT('public/m/', seq, '.jpg'), CONCAT('https://media.a.test/op-pixelfed-media/public/m/', seq, '.jpg'),
         IF(seq % 2 = 0, CONCAT('https://media.a.test/op-pixelfed-media/public/m/', seq, '_thumb.jpg'), NULL)
  FROM seq_1_to_500;
INSERT INTO media (profile_id, media_path, cdn_url, thumbnail_url) VALUES
  (1, 'remote', 'https://other.example/op-pixelfed-media/x.jpg', NULL),
  (1, 'upper', 'HTTPS://MEDIA.A.TEST/op-pixelfed-media/upper.jpg', NULL),
  (1, 'local', NULL, NULL);
INSERT INTO blobs SELECT seq, UNHEX(CONCAT('00ff', REPEAT(SHA2(seq, 256), 40))), seq / 3, '2026-11-28 12:00:00.123456', JSON_OBJECT('n', seq) FROM seq_1_to_100;
INSERT INTO blobs VALUES (0, NULL, NULL, NULL, NULL);
INSERT INTO nokey VALUES ('a', 1), ('a', 1), (NULL, NULL);
INSERT INTO posts SELECT seq, 1 + seq % 200, REPEAT(CONCAT('post ', seq, ' '), 20) FROM seq_1_to_20000;
";

fn mysql_job(a: &Maria, b: &Maria, dir: &Path) -> Job {
    let marker = |n: &str| dir.join(n).display().to_string();
    let rewrite = |column: &str| UrlRewrite {
        table: "media".into(),
        column: column.into(),
        from: FROM.into(),
        to: TO.into(),
    };
    Job {
        operator: "op".into(),
        databases: vec![DatabaseMove {
            name: "pixelfed".into(),
            engine: Engine::Mysql,
            source: a.connection(),
            target: b.connection(),
            replication: None,
            url_rewrites: vec![rewrite("cdn_url"), rewrite("thumbnail_url")],
        }],
        buckets: Vec::new(),
        directories: Vec::new(),
        identity: Vec::new(),
        commands: Commands {
            freeze: vec![vec!["touch".into(), marker("frozen")]],
            source_start: vec![vec!["rm".into(), "-f".into(), marker("frozen")]],
            dns_switch: vec![vec!["touch".into(), marker("dns")]],
            ..Default::default()
        },
    }
}

fn fedigen(job_file: &Path, verb: &str, journal: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fedigen"));
    c.args(["migrate", verb, "--job"]).arg(job_file);
    if verb == "verify" {
        c.arg("--json");
    } else {
        c.arg("--journal").arg(journal);
    }
    c.env("FEDIGEN_PG_BIN", world::pg_bin());
    c
}

fn verify(job_file: &Path) -> serde_json::Value {
    let out = fedigen(job_file, "verify", Path::new("")).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The differences the report gives for the database `name`.
fn differences(report: &serde_json::Value) -> Vec<String> {
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["differences"].as_array().unwrap().clone())
        .map(|d| d.as_str().unwrap().to_owned())
        .collect()
}

/// What the URL columns hold, by prefix: (A's, B's, others) — every URL rewritten exactly once shows as
/// A's count 0 and B's the source's A count.
fn url_counts(m: &Maria) -> String {
    m.sql(
        "pixelfed",
        &format!(
            "SELECT SUM(LEFT(c, {}) = BINARY '{FROM}'), SUM(LEFT(c, {}) = BINARY '{TO}'), SUM(c IS NOT NULL) FROM \
             (SELECT cdn_url AS c FROM media UNION ALL SELECT thumbnail_url FROM media) AS u",
            FROM.len(),
            TO.len()
        ),
    )
}

fn temp_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    root
}

/// Seed A, migrate, verify equal; B holds A's data with the URLs rewritten (and only those that begin with A's
/// prefix, byte for byte); verification names a planted difference and an unrewritten URL; A is unchanged; a
/// second run does nothing.
fn a_mysql_database_moves_with_its_urls_rewritten() -> Outcome {
    let root = temp_root();
    let p = root.path();
    // A is reached as B reaches it in production: over TCP with a password (the dump and verification's
    // queries both; mariadb-dump once refused an option only the client knows, `--connect-timeout`).
    let password = "a-source-password";
    let (a, b) = (Maria::start_tcp(p, "a", password), Maria::start(p, "b"));
    let password_file = p.join("source-password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    a.sql("pixelfed", SEED);
    // B's module made a table of its own before the move: the restore empties the database first.
    b.sql(
        "pixelfed",
        "CREATE TABLE leftover (x INT); INSERT INTO leftover VALUES (1)",
    );
    let mut job = mysql_job(&a, &b, p);
    job.databases[0].source = a.tcp_connection(&password_file);
    let job_file = p.join("job.json");
    std::fs::write(&job_file, job.to_json()).unwrap();
    let journal = p.join("journal");
    let a_urls = url_counts(&a);
    assert_eq!(a_urls, "750\t0\t752\n", "the seed's URLs");
    world::ok(
        &fedigen(&job_file, "run", &journal).output().unwrap(),
        "the run",
    );
    assert!(p.join("dns").exists());
    let report = verify(&job_file);
    assert_eq!(report["equal"], true, "{report:#}");
    assert_eq!(url_counts(&b), "0\t750\t752\n", "B's URLs");
    assert_eq!(url_counts(&a), a_urls, "A's URLs changed");
    // Only A's prefix, compared byte for byte: another host and another case stay as they were.
    assert_eq!(
        b.sql(
            "pixelfed",
            "SELECT cdn_url FROM media WHERE media_path IN ('remote', 'upper') ORDER BY id"
        ),
        "https://other.example/op-pixelfed-media/x.jpg\nHTTPS://MEDIA.A.TEST/op-pixelfed-media/upper.jpg\n"
    );
    for sql in [
        "SELECT HEX(data), n, d, j FROM blobs WHERE id IN (0, 7) ORDER BY id",
        "SELECT bio FROM profiles WHERE id IN (1, 201) ORDER BY id",
        "SELECT COUNT(*), SUM(CRC32(body)) FROM posts",
        "SELECT twice(21)",
    ] {
        assert_eq!(b.sql("pixelfed", sql), a.sql("pixelfed", sql), "{sql}");
    }
    assert!(
        b.sql("pixelfed", "SELECT bio FROM profiles WHERE id = 1")
            .contains("Zoë 📷")
    );
    assert_eq!(
        b.sql("pixelfed", "SHOW TABLES LIKE 'leftover'"),
        "",
        "the restore kept a table the dump does not have"
    );
    // The trigger came along: it fires at B.
    b.sql("pixelfed", "INSERT INTO nokey VALUES ('b', 2)");
    assert_eq!(
        b.sql(
            "pixelfed",
            "SELECT what FROM audit ORDER BY id DESC LIMIT 1"
        ),
        "nokey b\n"
    );
    let report = verify(&job_file);
    let found = differences(&report);
    assert!(
        found
            .iter()
            .any(|d| d.starts_with("table nokey: 3 rows at the source, 4 at the target"))
            && found.iter().any(|d| d.starts_with("table audit:")),
        "{report:#}"
    );
    // Undone, but the trigger's table counts on from a higher AUTO_INCREMENT: the schema differs (the next
    // id is part of it) until the counter is set back.
    b.sql(
        "pixelfed",
        "DELETE FROM nokey WHERE s = 'b'; DELETE FROM audit WHERE what = 'nokey b'",
    );
    let report = verify(&job_file);
    assert_eq!(
        differences(&report),
        ["the schemas differ: compare `SHOW CREATE TABLE` of each table on both sides"],
        "{report:#}"
    );
    b.sql("pixelfed", "ALTER TABLE audit AUTO_INCREMENT = 1");
    let report = verify(&job_file);
    assert_eq!(report["equal"], true, "{report:#}");
    // A changed value, a URL left at A's host, and a changed schema are each named.
    b.sql("pixelfed", "UPDATE blobs SET n = 0.5 WHERE id = 7");
    b.sql(
        "pixelfed",
        &format!(
            "UPDATE media SET thumbnail_url = CONCAT('{FROM}', 'public/m/4_thumb.jpg') WHERE id = 4"
        ),
    );
    b.sql("pixelfed", "ALTER TABLE posts ADD INDEX (profile_id)");
    let found = differences(&verify(&job_file));
    assert_eq!(
        found,
        [
            "table blobs: 101 rows on both sides, but their contents differ",
            "table media: 503 rows on both sides, but their contents differ",
            "the schemas differ: compare `SHOW CREATE TABLE` of each table on both sides",
        ],
        "{found:#?}"
    );
    // Done: a second run does every step as done, and changes nothing.
    let out = fedigen(&job_file, "run", &journal).output().unwrap();
    world::ok(&out, "the second run");
    assert_eq!(url_counts(&b), "1\t749\t752\n");
    Ok(())
}

/// Killed at random moments and just after the restore or the rewrite begin, then resumed: always equal data,
/// every URL rewritten once, A intact.
fn a_killed_mysql_run_resumes_to_equal_data() -> Outcome {
    let root = temp_root();
    let p = root.path();
    let (a, b) = (Maria::start(p, "a"), Maria::start(p, "b"));
    a.sql("pixelfed", SEED);
    let job = mysql_job(&a, &b, p);
    let job_file = p.join("job.json");
    std::fs::write(&job_file, job.to_json()).unwrap();
    let journal = p.join("journal");
    let a_sum = a.sql("pixelfed", "CHECKSUM TABLE media, blobs, posts, profiles");
    let t = Instant::now();
    world::ok(
        &fedigen(&job_file, "run", &journal).output().unwrap(),
        "a first whole run",
    );
    let whole = t.elapsed();
    let mut killer = world::Killer::new(whole);
    for round in 0..8 {
        b.sql("", "DROP DATABASE pixelfed; CREATE DATABASE pixelfed CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci");
        let _ = std::fs::remove_dir_all(&journal);
        for m in ["frozen", "dns"] {
            let _ = std::fs::remove_file(p.join(m));
        }
        let late = ["dump:pixelfed", "restore:pixelfed", "rewrite:pixelfed"];
        let run = fedigen(&job_file, "run", &journal);
        let last = killer.kill(run, round, &late, Duration::from_millis(40));
        assert_eq!(
            a.sql("pixelfed", "CHECKSUM TABLE media, blobs, posts, profiles"),
            a_sum,
            "round {round}: A changed (killed in {last})"
        );
        world::ok(
            &fedigen(&job_file, "run", &journal).output().unwrap(),
            &format!("round {round}: the resumed run (killed in {last})"),
        );
        let report = verify(&job_file);
        assert_eq!(
            report["equal"], true,
            "round {round} (killed in {last}): {report:#}"
        );
        assert_eq!(
            url_counts(&b),
            "0\t750\t752\n",
            "round {round} (killed in {last})"
        );
    }
    let killed_in = &killer.killed_in;
    eprintln!("killed in: {killed_in:?}");
    assert!(
        killed_in
            .keys()
            .filter(|k| k.starts_with("restore:") || k.starts_with("rewrite:"))
            .count()
            >= 1,
        "no kill hit the restore or the rewrite: {killed_in:?}"
    );
    Ok(())
}

/// PostgreSQL: URLs rewritten after the restore; verification equal, and names an unrewritten URL and another
/// change in the same table.
fn postgresql_urls_follow_the_move() -> Outcome {
    let root = temp_root();
    let p = root.path();
    let a = world::Pg::start(p, "pg-a");
    let b = world::Pg::start(p, "pg-b");
    a.app(&format!(
        "CREATE TABLE media (id serial PRIMARY KEY, cdn_url varchar(255), thumbnail_url text, note text);
         INSERT INTO media (cdn_url, thumbnail_url, note)
           SELECT '{FROM}' || g || '.jpg', CASE WHEN g % 2 = 0 THEN '{FROM}' || g || '_t.jpg' END, 'n' || g
           FROM generate_series(1, 300) g;
         INSERT INTO media (cdn_url, note) VALUES ('https://other.example/x.jpg', 'o''q\\'), (upper('{FROM}') || 'u.jpg', NULL);
         CREATE TABLE other (id int PRIMARY KEY, s text);
         INSERT INTO other SELECT g, 's' || g FROM generate_series(1, 50) g;"
    ));
    let rewrite = |column: &str| UrlRewrite {
        table: "media".into(),
        column: column.into(),
        from: FROM.into(),
        to: TO.into(),
    };
    let marker = |n: &str| p.join(n).display().to_string();
    let job = Job {
        operator: "op".into(),
        databases: vec![DatabaseMove {
            name: "app".into(),
            engine: Engine::Postgresql,
            source: a.connection(),
            target: b.connection(),
            replication: None,
            url_rewrites: vec![rewrite("cdn_url"), rewrite("thumbnail_url")],
        }],
        buckets: Vec::new(),
        directories: Vec::new(),
        identity: Vec::new(),
        commands: Commands {
            freeze: vec![vec!["touch".into(), marker("frozen")]],
            dns_switch: vec![vec!["touch".into(), marker("dns")]],
            ..Default::default()
        },
    };
    let job_file = p.join("job.json");
    std::fs::write(&job_file, job.to_json()).unwrap();
    let journal = p.join("journal");
    world::ok(
        &fedigen(&job_file, "run", &journal).output().unwrap(),
        "the run",
    );
    let report = verify(&job_file);
    assert_eq!(report["equal"], true, "{report:#}");
    let counts = format!(
        "SELECT count(*) FILTER (WHERE left(c, {}) = '{FROM}'), count(*) FILTER (WHERE left(c, {}) = '{TO}'), count(c) \
         FROM (SELECT cdn_url AS c FROM media UNION ALL SELECT thumbnail_url FROM media) u",
        FROM.len(),
        TO.len()
    );
    assert_eq!(b.app(&counts), "0|450|452\n");
    assert_eq!(a.app(&counts), "450|0|452\n");
    assert_eq!(
        b.app("SELECT cdn_url FROM media WHERE id > 300 ORDER BY id"),
        format!(
            "https://other.example/x.jpg\n{}u.jpg\n",
            FROM.to_uppercase()
        )
    );
    b.app(&format!(
        "UPDATE media SET cdn_url = '{FROM}7.jpg' WHERE id = 7"
    ));
    let found = differences(&verify(&job_file));
    assert_eq!(
        found,
        ["table public.media: 302 rows on both sides, but their contents differ"],
        "{found:#?}"
    );
    b.app(&format!(
        "UPDATE media SET cdn_url = '{TO}7.jpg' WHERE id = 7"
    ));
    b.app("UPDATE other SET s = 'changed' WHERE id = 3");
    let found = differences(&verify(&job_file));
    assert_eq!(
        found,
        ["table public.other: 50 rows on both sides, but their contents differ"],
        "{found:#?}"
    );
    Ok(())
}

/// A MySQL database crosses only encrypted (issue #16's operator review, B3), against real MariaDB servers: A has
/// a certificate (self-signed, made with openssl) and B's account `REQUIRE SSL`, as the planner asks of A's
/// provider. With the job's `tls.mode = "require"` (what the planner's jobs get for A's machine) the tools
/// connect with `--ssl` and the run completes with equal data; with `disable` A refuses the login and the run
/// stops before the freeze; a server without TLS and `require`: refused before the freeze too.
fn a_mysql_database_crosses_encrypted_or_not_at_all() -> Outcome {
    use fedigen::migrate::job::TlsMode;
    let root = temp_root();
    let p = root.path();
    let (key, cert) = world::tls_certificate(&p.join("tls"), "nobody");
    let password = "a-source-password";
    let a = Maria::start_tcp_with(
        p,
        "a",
        password,
        &[
            format!("--ssl-cert={}", cert.display()),
            format!("--ssl-key={}", key.display()),
        ],
        "REQUIRE SSL",
    );
    let plain = Maria::start_tcp(p, "plain", password);
    let b = Maria::start(p, "b");
    let password_file = p.join("source-password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    a.sql("pixelfed", SEED);
    let attempt = |source: &Maria, mode: TlsMode, name: &str| {
        let dir = p.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut job = mysql_job(source, &b, &dir);
        job.databases[0].source = source.tcp_connection(&password_file);
        job.databases[0].source.tls.mode = Some(mode);
        let job_file = dir.join("job.json");
        std::fs::write(&job_file, job.to_json()).unwrap();
        let out = fedigen(&job_file, "run", &dir.join("journal"))
            .output()
            .unwrap();
        (out, dir, job_file)
    };
    let (out, dir, _) = attempt(&a, TlsMode::Disable, "clear");
    if out.status.success() || dir.join("frozen").exists() {
        return Err(format!(
            "a login in clear was let in, or A frozen: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let (out, dir, _) = attempt(&plain, TlsMode::Require, "no-tls");
    if out.status.success() || dir.join("frozen").exists() {
        return Err(format!(
            "a server without TLS was used, or frozen: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.contains("offers no TLS") {
        return Err(format!("the refusal does not say why: {stderr}").into());
    }
    let (out, _, job_file) = attempt(&a, TlsMode::Require, "encrypted");
    world::ok(&out, "the run with TLS required");
    let report = verify(&job_file);
    assert_eq!(report["equal"], true, "{report:#}");
    Ok(())
}

/// PeerTube's shape, PostgreSQL: a column holding URLs of two buckets (`"videoFile"."fileUrl"`: web videos and
/// HLS files, each `https://<bucket>.<S3 host>/…`), a camel-case table, rows of files on disk (no URL prefix).
/// Each bucket's prefix is rewritten by its own rewrite; verification of the move is equal (the source's rows
/// mapped through both rewrites: with only the first mapped, the HLS rows would differ), and names a row left
/// with A's prefix at B.
fn a_column_of_several_buckets_is_rewritten_per_bucket() -> Outcome {
    let root = temp_root();
    let p = root.path();
    let a = world::Pg::start(p, "pg-a");
    let b = world::Pg::start(p, "pg-b");
    let (web_a, hls_a) = ("https://op-web.s3.a.test/", "https://op-hls.s3.a.test/");
    let (web_b, hls_b) = ("https://op-web.s3.b.test/", "https://op-hls.s3.b.test/");
    a.app(&format!(
        r#"CREATE TABLE "videoFile" (id serial PRIMARY KEY, "fileUrl" varchar(2000), storage int NOT NULL);
         INSERT INTO "videoFile" ("fileUrl", storage)
           SELECT CASE WHEN g % 3 = 0 THEN '{web_a}' || g || '.mp4' WHEN g % 3 = 1 THEN '{hls_a}' || g || '-frag.mp4' ELSE NULL END,
                  CASE WHEN g % 3 = 2 THEN 0 ELSE 1 END
           FROM generate_series(1, 90) g;"#
    ));
    let rewrite = |from: &str, to: &str| UrlRewrite {
        table: "videoFile".into(),
        column: "fileUrl".into(),
        from: from.into(),
        to: to.into(),
    };
    let marker = |n: &str| p.join(n).display().to_string();
    let job = Job {
        operator: "op".into(),
        databases: vec![DatabaseMove {
            name: "peertube".into(),
            engine: Engine::Postgresql,
            source: a.connection(),
            target: b.connection(),
            replication: None,
            url_rewrites: vec![rewrite(web_a, web_b), rewrite(hls_a, hls_b)],
        }],
        buckets: Vec::new(),
        directories: Vec::new(),
        identity: Vec::new(),
        commands: Commands {
            freeze: vec![vec!["touch".into(), marker("frozen")]],
            dns_switch: vec![vec!["touch".into(), marker("dns")]],
            ..Default::default()
        },
    };
    assert!(job.problems().is_empty(), "{:?}", job.problems());
    let job_file = p.join("job.json");
    std::fs::write(&job_file, job.to_json()).unwrap();
    world::ok(
        &fedigen(&job_file, "run", &p.join("journal"))
            .output()
            .unwrap(),
        "the run",
    );
    let report = verify(&job_file);
    assert_eq!(report["equal"], true, "{report:#}");
    let counts = |prefixes: [&str; 2]| {
        format!(
            r#"SELECT count(*) FILTER (WHERE left("fileUrl", {}) = '{}'), count(*) FILTER (WHERE left("fileUrl", {}) = '{}'), count("fileUrl") FROM "videoFile""#,
            prefixes[0].len(),
            prefixes[0],
            prefixes[1].len(),
            prefixes[1]
        )
    };
    assert_eq!(b.app(&counts([web_b, hls_b])), "30|30|60\n", "B's URLs");
    assert_eq!(
        b.app(&counts([web_a, hls_a])),
        "0|0|60\n",
        "A's prefixes left at B"
    );
    assert_eq!(a.app(&counts([web_a, hls_a])), "30|30|60\n", "A changed");
    b.app(&format!(
        r#"UPDATE "videoFile" SET "fileUrl" = '{hls_a}1-frag.mp4' WHERE id = 1"#
    ));
    let found = differences(&verify(&job_file));
    assert_eq!(
        found,
        [r#"table public."videoFile": 90 rows on both sides, but their contents differ"#],
        "{found:#?}"
    );
    // Overlapping prefixes of one column are refused: a value could be rewritten twice.
    let mut bad = job.clone();
    bad.databases[0].url_rewrites = vec![rewrite(web_a, hls_a), rewrite(hls_a, hls_b)];
    assert!(
        bad.problems()
            .iter()
            .any(|p| p.path == "databases[0].url_rewrites[1].from"),
        "{:?}",
        bad.problems()
    );
    Ok(())
}

fn main() {
    let maria = mariadbd().is_file()
        && on_path("mariadb-install-db")
        && on_path("mariadb")
        && world::is_root();
    let maria_reason = "needs MariaDB (Debian's mariadb-server: scripts/install-test-deps installs it; or \
                        FEDIGEN_MARIADBD) and root (the server and the tools run as nobody)";
    let pg = world::pg_bin().join("initdb").is_file();
    let pg_reason =
        "needs PostgreSQL 15 (Debian's postgresql-15: scripts/install-test-deps installs it)";
    support::run_gated(vec![
        (
            "a_mysql_database_moves_with_its_urls_rewritten",
            maria,
            a_mysql_database_moves_with_its_urls_rewritten,
            maria_reason,
        ),
        (
            "a_killed_mysql_run_resumes_to_equal_data",
            maria,
            a_killed_mysql_run_resumes_to_equal_data,
            maria_reason,
        ),
        (
            "a_mysql_database_crosses_encrypted_or_not_at_all",
            maria,
            a_mysql_database_crosses_encrypted_or_not_at_all,
            maria_reason,
        ),
        (
            "postgresql_urls_follow_the_move",
            pg,
            postgresql_urls_follow_the_move,
            pg_reason,
        ),
        (
            "a_column_of_several_buckets_is_rewritten_per_bucket",
            pg,
            a_column_of_several_buckets_is_rewritten_per_bucket,
            pg_reason,
        ),
    ])
}
