//! Component tests of Garage provisioning against the real Garage 2.5.0 on 127.0.0.1: nodes started with the
//! `garage.toml` fedigen renders ([`GarageSettings`]), node keys made by `fedigen storage node-key`, the cluster
//! formed through `bootstrap_peers` alone, then `fedigen storage apply` (the real binary) driving it.
//!
//! Garage is a test tool built once per machine by `scripts/install-test-deps` into
//! `${XDG_CACHE_HOME:-~/.cache}/fedigen/garage-2.5.0/bin/garage` (or named by `FEDIGEN_GARAGE`); rclone is
//! Debian's. Without them each trial is reported ignored with the reason — never passed. A libtest-mimic
//! harness, so that is decided when the tests run. Every process is started by the trial that stops it (a
//! guard kills them on drop), every wait is bounded, and only loopback addresses are used.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use fedigen::storage::client::{Admin as _, HttpAdmin};
use fedigen::storage::config::{AdminApi, GarageSettings, S3Api, S3Web, peer};
use fedigen::storage::description::{Bucket, Description, Key, ZoneRedundancy};
use libtest_mimic::{Arguments, Failed, Trial};
use proptest::prelude::*;
use serde_json::Value;

const GIB: u64 = 1 << 30;

fn garage() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("FEDIGEN_GARAGE") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("FEDIGEN_GARAGE={} is not a file", path.display()))
        };
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or("neither XDG_CACHE_HOME nor HOME is set")?;
    let path = cache.join("fedigen/garage-2.5.0/bin/garage");
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "Garage 2.5.0 is not installed at {} (run scripts/install-test-deps, or set FEDIGEN_GARAGE)",
            path.display()
        ))
    }
}

fn rclone() -> Result<(), String> {
    match Command::new("rclone").arg("version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err("rclone is not installed (run scripts/install-test-deps)".into()),
    }
}

fn fail(message: impl Into<String>) -> Failed {
    Failed::from(message.into())
}

/// `n` free TCP ports on 127.0.0.1 (the kernel's choice; released just before Garage binds them).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Runs `fedigen` with `args`, returning its status code, stdout and stderr.
fn fedigen(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fedigen"));
    c.args(args)
        .env_remove("GARAGE_ADMIN_TOKEN")
        .env_remove("GARAGE_ADMIN_TOKEN_FILE");
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output().expect("fedigen runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Node {
    name: String,
    id: String,
    settings: GarageSettings,
    config: PathBuf,
    log: PathBuf,
    s3: u16,
    admin: u16,
    child: Option<Child>,
}

/// Garage nodes on 127.0.0.1, each in its own folder; the guard stops every process it started.
struct Cluster {
    dir: tempfile::TempDir,
    garage: PathBuf,
    rpc_secret: String,
    token: String,
    nodes: Vec<Node>,
    /// `id@127.0.0.1:rpc` of every node made so far (the bootstrap peers of the next).
    peers: Vec<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Cluster {
    fn new(garage: PathBuf) -> Cluster {
        let hex = || -> String {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).expect("randomness");
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        };
        Cluster {
            dir: tempfile::tempdir().expect("a temporary folder"),
            garage,
            rpc_secret: hex(),
            token: hex(),
            nodes: Vec::new(),
            peers: Vec::new(),
        }
    }

    /// Makes a node: its key by `fedigen storage node-key`, its ports and settings. Does not start it.
    fn make_node(&mut self, name: &str) -> Result<usize, Failed> {
        let root = self.dir.path().join(name);
        let meta = root.join("meta");
        std::fs::create_dir_all(&meta)?;
        let key_file = meta.join("node_key");
        let (code, out, err) = fedigen(
            &[
                "--quiet",
                "storage",
                "node-key",
                "--out",
                key_file.to_str().unwrap(),
            ],
            &[],
        );
        if code != 0 {
            return Err(fail(format!("node-key exited {code}: {err}")));
        }
        let id = out.trim().to_owned();
        let ports = free_ports(4);
        let rpc = format!("127.0.0.1:{}", ports[1]);
        self.peers.push(peer(&id, &rpc));
        let settings = GarageSettings {
            metadata_dir: meta.display().to_string(),
            data_dir: root.join("data").display().to_string(),
            db_engine: "sqlite".into(),
            replication_factor: 3,
            consistency_mode: None,
            rpc_bind_addr: rpc.clone(),
            rpc_public_addr: rpc.clone(),
            bootstrap_peers: Vec::new(),
            s3_api: S3Api {
                api_bind_addr: format!("127.0.0.1:{}", ports[0]),
                s3_region: "garage".into(),
                root_domain: Some(".s3.localhost".into()),
            },
            s3_web: Some(S3Web {
                bind_addr: format!("127.0.0.1:{}", ports[2]),
                root_domain: ".web.localhost".into(),
            }),
            admin: AdminApi {
                api_bind_addr: format!("127.0.0.1:{}", ports[3]),
            },
        };
        let config = root.join("garage.toml");
        self.nodes.push(Node {
            name: name.into(),
            id,
            settings,
            config,
            log: root.join("garage.log"),
            s3: ports[0],
            admin: ports[3],
            child: None,
        });
        Ok(self.nodes.len() - 1)
    }

    /// Starts node `i` with its `garage.toml` rendered from [`GarageSettings`], every node made so far as
    /// bootstrap peers (as a deployment lists every node); first checks that Garage reports the id
    /// `fedigen storage node-key` printed.
    fn start(&mut self, i: usize) -> Result<(), Failed> {
        let node = &mut self.nodes[i];
        node.settings.bootstrap_peers = self.peers.clone();
        let config = node.config.clone();
        let (id, rpc) = (node.id.clone(), node.settings.rpc_public_addr.clone());
        std::fs::write(&config, node.settings.to_toml())?;
        // Garage's own view of the key fedigen wrote.
        let out = Command::new(&self.garage)
            .arg("-c")
            .arg(&config)
            .args(["node", "id", "-q"])
            .env("GARAGE_RPC_SECRET", &self.rpc_secret)
            .output()?;
        let garage_id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if garage_id != format!("{id}@{rpc}") {
            return Err(fail(format!(
                "garage node id says {garage_id:?}, fedigen storage node-key printed {id}@{rpc}"
            )));
        }
        let node = &mut self.nodes[i];
        let log = std::fs::File::create(&node.log)?;
        let child = Command::new(&self.garage)
            .arg("-c")
            .arg(&node.config)
            .arg("server")
            .env("GARAGE_RPC_SECRET", &self.rpc_secret)
            .env("GARAGE_ADMIN_TOKEN", &self.token)
            .env("RUST_LOG", "garage=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        node.child = Some(child);
        Ok(())
    }

    fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.nodes[0].admin)
    }

    fn client(&self) -> HttpAdmin {
        HttpAdmin::new(&self.admin_url(), &self.token)
    }

    /// Runs `fedigen storage apply --json` on `description`; its JSON report.
    fn apply(&self, description: &Description) -> Result<Value, Failed> {
        let file = self.dir.path().join("storage.json");
        std::fs::write(&file, description.to_json())?;
        let (code, out, err) = fedigen(
            &[
                "storage",
                "apply",
                "--description",
                file.to_str().unwrap(),
                "--admin",
                &self.admin_url(),
                "--wait",
                "90",
                "--json",
            ],
            &[("GARAGE_ADMIN_TOKEN", &self.token)],
        );
        if code != 0 {
            return Err(fail(format!(
                "fedigen storage apply exited {code}\nstdout: {out}\nstderr: {err}\nlogs:\n{}",
                self.logs()
            )));
        }
        Ok(serde_json::from_str(&out)?)
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(&n.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                format!(
                    "--- {}\n{}",
                    n.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Garage's own count of admin API calls per endpoint (its `/metrics`, open without a metrics token).
    fn admin_calls(&self) -> Result<BTreeMap<String, u64>, Failed> {
        let text = ureq::get(format!("{}/metrics", self.admin_url()))
            .call()?
            .body_mut()
            .read_to_string()?;
        let mut calls = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| l.starts_with("api_admin_request_counter"))
        {
            let Some(endpoint) = line
                .split("api_endpoint=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
            else {
                continue;
            };
            let count: f64 = line.rsplit(' ').next().unwrap_or("0").parse()?;
            // `/v2/GetClusterLayout` → `GetClusterLayout`; `/metrics`, `/health` keep their path.
            let endpoint = endpoint.strip_prefix("/v2/").unwrap_or(endpoint);
            *calls.entry(endpoint.to_owned()).or_default() += count as u64;
        }
        Ok(calls)
    }

    /// The calls between two [`Cluster::admin_calls`] to endpoints that change something (not Get…/List…).
    fn changing_calls_between(
        before: &BTreeMap<String, u64>,
        after: &BTreeMap<String, u64>,
    ) -> BTreeMap<String, u64> {
        after
            .iter()
            .filter(|(e, _)| !(e.starts_with("Get") || e.starts_with("List") || e.starts_with('/')))
            .map(|(e, n)| (e.clone(), n - before.get(e).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// An S3 key for the tests: id, secret, and its env-format secret file.
struct TestKey {
    id: String,
    secret: String,
    file: PathBuf,
}

fn test_key(dir: &Path, n: u32) -> TestKey {
    let id = format!("GK{n:024x}");
    let secret = format!("{:064x}", u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let file = dir.join(format!("{id}.env"));
    std::fs::write(
        &file,
        format!("AWS_ACCESS_KEY_ID={id}\nAWS_SECRET_ACCESS_KEY={secret}\n"),
    )
    .unwrap();
    TestKey { id, secret, file }
}

fn key(k: &TestKey, name: &str, read: bool, write: bool, owner: bool) -> Key {
    Key {
        id: k.id.clone(),
        secret_file: k.file.clone(),
        name: name.into(),
        read,
        write,
        owner,
    }
}

/// rclone against one node's S3 API with `key`; Ok(stdout) or Err(stderr).
fn rclone_run(
    s3_port: u16,
    key: &TestKey,
    args: &[&str],
    input: Option<&str>,
) -> Result<String, String> {
    rclone_in("garage", s3_port, key, args, input)
}

/// [`rclone_run`] signing for `region`.
fn rclone_in(
    region: &str,
    s3_port: u16,
    key: &TestKey,
    args: &[&str],
    input: Option<&str>,
) -> Result<String, String> {
    use std::io::Write as _;
    let mut c = Command::new("rclone");
    c.args(args)
        .args([
            "--s3-no-check-bucket",
            "--retries",
            "1",
            "--low-level-retries",
            "1",
        ])
        .args(["--contimeout", "5s", "--timeout", "20s"])
        // A CA bundle for AWS' SDK in the caller's environment makes rclone refuse plain HTTP on loopback.
        .env_remove("AWS_CA_BUNDLE")
        .env("RCLONE_CONFIG", "/dev/null")
        .env("RCLONE_CONFIG_G_TYPE", "s3")
        .env("RCLONE_CONFIG_G_PROVIDER", "Other")
        .env(
            "RCLONE_CONFIG_G_ENDPOINT",
            format!("http://127.0.0.1:{s3_port}"),
        )
        .env("RCLONE_CONFIG_G_REGION", region)
        .env("RCLONE_CONFIG_G_FORCE_PATH_STYLE", "true")
        .env("RCLONE_CONFIG_G_ACCESS_KEY_ID", &key.id)
        .env("RCLONE_CONFIG_G_SECRET_ACCESS_KEY", &key.secret)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| e.to_string())?;
    if let Some(text) = input {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Layout roles: node id → (zone, capacity, tags).
type Roles = BTreeMap<String, (String, u64, Vec<String>)>;

/// The layout's roles as Garage reports them.
fn layout_roles(admin: &mut HttpAdmin) -> Result<Roles, Failed> {
    let layout = admin
        .get("GetClusterLayout", &[])
        .map_err(|e| fail(e.to_string()))?;
    Ok(layout["roles"]
        .as_array()
        .ok_or_else(|| fail(format!("no roles: {layout}")))?
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or("").to_owned(),
                (
                    r["zone"].as_str().unwrap_or("").to_owned(),
                    r["capacity"].as_u64().unwrap_or(0),
                    r["tags"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect(),
                ),
            )
        })
        .collect())
}

/// Checks the cluster is exactly as `description` says: layout roles, and per bucket its website access and
/// every key's permissions (no other key with any).
fn check_converged(admin: &mut HttpAdmin, description: &Description) -> Result<(), Failed> {
    let roles = layout_roles(admin)?;
    let want: Roles = description
        .nodes
        .iter()
        .map(|n| {
            (
                n.id.clone(),
                (n.zone.clone(), n.capacity_bytes, vec![n.name.clone()]),
            )
        })
        .collect();
    if roles != want {
        return Err(fail(format!("layout roles {roles:?}, described {want:?}")));
    }
    // Every bucket in bulk, a page at a time (a lookup per bucket costs Garage ~0.1 s of argon2 each).
    let mut listed: BTreeMap<String, Value> = BTreeMap::new();
    let mut offset = String::new();
    loop {
        let mut query = vec![("limit", "1000")];
        if !offset.is_empty() {
            query.push(("offset", offset.as_str()));
        }
        let page = admin
            .get("ListBucketsInfo", &query)
            .map_err(|e| fail(format!("ListBucketsInfo: {e}")))?;
        let page = page.as_array().cloned().unwrap_or_default();
        let before = listed.len();
        for b in &page {
            for alias in b["globalAliases"].as_array().into_iter().flatten() {
                listed.insert(alias.as_str().unwrap_or("").to_owned(), b.clone());
            }
            offset = b["id"].as_str().unwrap_or("").to_owned();
        }
        if page.len() < 1000 || listed.len() == before {
            break;
        }
    }
    for bucket in &description.buckets {
        let info = listed
            .get(&bucket.name)
            .ok_or_else(|| fail(format!("bucket {} does not exist", bucket.name)))?;
        if info["websiteAccess"] != Value::Bool(bucket.website) {
            return Err(fail(format!("bucket {} website: {info}", bucket.name)));
        }
        let have: BTreeMap<String, [bool; 3]> = info["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| {
                let p = &k["permissions"];
                (
                    k["accessKeyId"].as_str().unwrap_or("").to_owned(),
                    ["read", "write", "owner"].map(|f| p[f] == Value::Bool(true)),
                )
            })
            .filter(|(_, p)| p.iter().any(|x| *x))
            .collect();
        let want: BTreeMap<String, [bool; 3]> = bucket
            .keys
            .iter()
            .map(|k| (k.id.clone(), [k.read, k.write, k.owner]))
            .collect();
        if have != want {
            return Err(fail(format!(
                "bucket {} permissions {have:?}, described {want:?}",
                bucket.name
            )));
        }
    }
    Ok(())
}

/// Applies twice: the first converges, the second changes nothing — no change reported, no POST sent
/// (fedigen's count), and no changing call seen by Garage (its own metrics). Returns the first report.
fn apply_twice(cluster: &Cluster, description: &Description) -> Result<Value, Failed> {
    let t = Instant::now();
    let first = cluster.apply(description)?;
    if std::env::var_os("FEDIGEN_STORAGE_TIMES").is_some() {
        eprintln!(
            "apply: {:.2} s {}",
            t.elapsed().as_secs_f64(),
            first["changes"]
        );
    }
    let mut admin = cluster.client();
    // Keys named by their secret files only (the generated description's form) take the files' ids.
    let resolved =
        fedigen::storage::apply::resolve_key_ids(description).map_err(|e| fail(e.to_string()))?;
    check_converged(&mut admin, &resolved)?;
    let before = cluster.admin_calls()?;
    let second = cluster.apply(description)?;
    let after = cluster.admin_calls()?;
    if second["changes"] != serde_json::json!([]) || second["changing_calls"] != 0 {
        return Err(fail(format!(
            "the second apply changed something: {second}"
        )));
    }
    let changing = Cluster::changing_calls_between(&before, &after);
    if !changing.is_empty() {
        return Err(fail(format!(
            "Garage saw changing calls during the second apply: {changing:?}"
        )));
    }
    if after.get("GetClusterLayout").copied().unwrap_or(0)
        <= before.get("GetClusterLayout").copied().unwrap_or(0)
    {
        return Err(fail(format!(
            "Garage's metrics did not count the second apply's reads (is the count meaningful?): {after:?}"
        )));
    }
    Ok(first)
}

fn three_node_cluster() -> Result<Cluster, Failed> {
    let mut cluster = Cluster::new(garage().map_err(fail)?);
    for name in ["ams1", "ams2", "rtm1"] {
        cluster.make_node(name)?;
    }
    for i in 0..3 {
        cluster.start(i)?;
    }
    Ok(cluster)
}

/// The whole story of the issue on three (then four) real nodes.
fn cluster_forms_provisions_isolates_and_survives() -> Result<(), Failed> {
    let started = Instant::now();
    let mut cluster = three_node_cluster()?;
    let keys_dir = cluster.dir.path().join("keys");
    std::fs::create_dir_all(&keys_dir)?;
    let a = test_key(&keys_dir, 0xa);
    let b = test_key(&keys_dir, 0xb);
    let n = &cluster.nodes;
    let mut description = Description::new(3)
        .with_node(&n[0].name, &n[0].id, "ams", GIB)
        .with_node(&n[1].name, &n[1].id, "ams", 2 * GIB)
        .with_node(&n[2].name, &n[2].id, "rtm", 3 * GIB)
        .with_bucket(Bucket {
            name: "opa-mastodon".into(),
            website: true,
            keys: vec![key(&a, "opa/mastodon", true, true, false)],
        })
        .with_bucket(Bucket {
            name: "opb-pixelfed".into(),
            website: false,
            keys: vec![key(&b, "opb/pixelfed", true, true, true)],
        });
    let first = apply_twice(&cluster, &description)?;
    println!(
        "figure: 3 Garage nodes started, cluster formed by bootstrap_peers, first apply done in {:.1} s (layout version {}, {} changes)",
        started.elapsed().as_secs_f64(),
        first["layout_version"],
        first["changes"].as_array().map_or(0, Vec::len)
    );
    if first["layout_version"] != 1 {
        return Err(fail(format!("first apply: {first}")));
    }

    // Isolation: A's object is readable with A's key and refused with B's, for reading and writing.
    let s3 = cluster.nodes[0].s3;
    rclone_run(
        s3,
        &a,
        &["rcat", "g:opa-mastodon/media/a.txt"],
        Some("from A\n"),
    )
    .map_err(|e| fail(format!("write with A's key: {e}")))?;
    let read = rclone_run(s3, &a, &["cat", "g:opa-mastodon/media/a.txt"], None)
        .map_err(|e| fail(format!("read with A's key: {e}")))?;
    if read != "from A\n" {
        return Err(fail(format!("read back {read:?}")));
    }
    if let Ok(out) = rclone_run(s3, &b, &["cat", "g:opa-mastodon/media/a.txt"], None) {
        return Err(fail(format!("B's key read A's object: {out:?}")));
    }
    if rclone_run(
        s3,
        &b,
        &["rcat", "g:opa-mastodon/media/b.txt"],
        Some("from B\n"),
    )
    .is_ok()
    {
        return Err(fail("B's key wrote into A's bucket"));
    }

    // A node added to the description joins the layout.
    let d = cluster.make_node("fra1")?;
    cluster.start(d)?;
    let n4 = &cluster.nodes[d];
    description = description.with_node(&n4.name, &n4.id, "fra", GIB);
    // Someone else staged a change meanwhile (removing ams2): apply reverts it and stages its own.
    let foreign = serde_json::json!({ "roles": [{ "id": cluster.nodes[1].id, "remove": true }] });
    cluster
        .client()
        .post("UpdateClusterLayout", &[], &foreign)
        .map_err(|e| fail(e.to_string()))?;
    let added = apply_twice(&cluster, &description)?;
    if !added["changes"]
        .to_string()
        .contains("reverted staged changes")
    {
        return Err(fail(format!(
            "the foreign staged change was not reverted: {added}"
        )));
    }
    if added["layout_version"] != 2 {
        return Err(fail(format!("adding a node: {added}")));
    }

    // One node stopped: reads and writes still succeed (replication 3, quorum 2).
    cluster.stop(2);
    rclone_run(
        s3,
        &a,
        &["rcat", "g:opa-mastodon/media/c.txt"],
        Some("one node down\n"),
    )
    .map_err(|e| fail(format!("write with a node down: {e}")))?;
    let read = rclone_run(s3, &a, &["cat", "g:opa-mastodon/media/a.txt"], None)
        .map_err(|e| fail(format!("read with a node down: {e}")))?;
    if read != "from A\n" {
        return Err(fail(format!("read back with a node down {read:?}")));
    }

    // The stopped node removed from the description: it leaves the layout (drained), once.
    description.nodes.retain(|n| n.name != "rtm1");
    let removed = apply_twice(&cluster, &description)?;
    let removal = removed["changes"].to_string();
    if removed["layout_version"] != 3 || !removal.contains("rtm1") || !removal.contains("removed") {
        return Err(fail(format!("removing a node: {removed}")));
    }
    let read = rclone_run(s3, &a, &["cat", "g:opa-mastodon/media/c.txt"], None)
        .map_err(|e| fail(format!("read after the removal: {e}")))?;
    if read != "one node down\n" {
        return Err(fail(format!("read back after the removal {read:?}")));
    }
    println!(
        "figure: whole component story (3 nodes, 2 buckets, isolation, add, stop, remove) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A key whose secret in Garage differs from its file is a loud failure (exit status 1), and an invalid
/// description is refused before Garage is touched (exit status 2); an unreachable Garage is exit status 3.
fn failures_have_their_exit_statuses() -> Result<(), Failed> {
    let cluster = three_node_cluster()?;
    let keys_dir = cluster.dir.path().join("keys");
    std::fs::create_dir_all(&keys_dir)?;
    let a = test_key(&keys_dir, 0xc);
    let n = &cluster.nodes;
    let description = Description::new(3)
        .with_node(&n[0].name, &n[0].id, "ams", GIB)
        .with_node(&n[1].name, &n[1].id, "ams", GIB)
        .with_node(&n[2].name, &n[2].id, "rtm", GIB)
        .with_bucket(Bucket {
            name: "opc-peertube".into(),
            website: true,
            keys: vec![key(&a, "opc/peertube", true, true, true)],
        });
    cluster.apply(&description)?;
    std::fs::write(
        &a.file,
        format!("AWS_SECRET_ACCESS_KEY={}\n", "f".repeat(64)),
    )?;
    let file = cluster.dir.path().join("storage.json");
    let run = |admin: &str| {
        fedigen(
            &[
                "storage",
                "apply",
                "--description",
                file.to_str().unwrap(),
                "--admin",
                admin,
                "--wait",
                "2",
            ],
            &[("GARAGE_ADMIN_TOKEN", &cluster.token)],
        )
    };
    let (code, _, err) = run(&cluster.admin_url());
    if code != 1 || !err.contains("another secret") || !err.contains("new id") {
        return Err(fail(format!("a changed secret: exit {code}, {err}")));
    }
    let port = free_ports(1)[0];
    let (code, _, err) = run(&format!("http://127.0.0.1:{port}"));
    if code != 3 || !err.contains("unreachable") {
        return Err(fail(format!("no Garage: exit {code}, {err}")));
    }
    std::fs::write(&file, description.to_json().replace("opc-peertube", "opC"))?;
    let (code, _, err) = run(&cluster.admin_url());
    if code != 2 || !err.contains("buckets[0].name") {
        return Err(fail(format!("invalid description: exit {code}, {err}")));
    }
    Ok(())
}

/// Random descriptions (zones, capacities, buckets, keys, permissions, website access) on one cluster: each
/// converges in one run and a second run is a no-op. Few cases: each may change the layout.
fn random_descriptions_converge_in_one_run() -> Result<(), Failed> {
    let cluster = three_node_cluster()?;
    let keys_dir = cluster.dir.path().join("keys");
    std::fs::create_dir_all(&keys_dir)?;
    let pool: Vec<TestKey> = (1..=4).map(|n| test_key(&keys_dir, 0x100 + n)).collect();
    let ids: Vec<String> = cluster.nodes.iter().map(|n| n.id.clone()).collect();
    let names: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
    let zones = ["ams", "rtm", "fra"];
    let bucket = (
        "[a-z0-9]{3,8}",
        any::<bool>(),
        proptest::collection::btree_map(
            0usize..4,
            (any::<bool>(), any::<bool>(), any::<bool>()),
            0..3,
        ),
    );
    let strategy = (
        proptest::collection::vec((0usize..3, 1u64..4), 3),
        any::<bool>(),
        proptest::collection::vec(bucket, 1..4),
    );
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(4);
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..Default::default()
    });
    let started = Instant::now();
    let runs = std::cell::Cell::new(0);
    let result = runner.run(&strategy, |(nodes, at_least_one, buckets)| {
        let mut d = Description::new(3);
        for (i, (zone, gib)) in nodes.iter().enumerate() {
            d = d.with_node(&names[i], &ids[i], zones[*zone], gib * GIB);
        }
        if at_least_one {
            d.zone_redundancy = ZoneRedundancy::AtLeast(1);
        }
        let mut seen = BTreeSet::new();
        for (suffix, website, keys) in buckets {
            let name = format!("p-{suffix}");
            if !seen.insert(name.clone()) {
                continue;
            }
            let keys = keys
                .into_iter()
                .map(|(k, (r, w, o))| {
                    // A key must be allowed something: read when nothing else.
                    key(&pool[k], &format!("pool/{k}"), r || !(w || o), w, o)
                })
                .collect();
            d = d.with_bucket(Bucket {
                name,
                website,
                keys,
            });
        }
        runs.set(runs.get() + 1);
        apply_twice(&cluster, &d).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        Ok(())
    });
    result.map_err(|e| fail(e.to_string()))?;
    println!(
        "figure: {} random descriptions, each applied twice and checked, in {:.1} s",
        runs.get(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The repository (the specification's templates, the Garage module).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The node-key step of the generated Garage module (`templates/garage/module.nix.hbs`, between its
/// `fedigen:begin/end install-node-key` lines), as the machine runs it: POSIX sh, arguments key file and
/// metadata directory. Read from the template, so what is tested is what the machines run.
fn install_node_key_script() -> String {
    let template = std::fs::read_to_string(repo().join("templates/garage/module.nix.hbs"))
        .expect("the Garage template");
    let lines: Vec<&str> = template
        .lines()
        .skip_while(|l| !l.contains("# fedigen:begin install-node-key"))
        .skip(1)
        .take_while(|l| !l.contains("# fedigen:end install-node-key"))
        .collect();
    assert!(
        !lines.is_empty(),
        "the template has the install-node-key lines"
    );
    // A Nix indented string: the common indentation is removed; nothing in it is interpolated (no `${`).
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let script: String = lines
        .iter()
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
        .collect();
    assert!(
        !script.contains("${") && !script.contains("''"),
        "no Nix interpolation or escape in the script"
    );
    script
}

/// A folder of links to the programs a NixOS service finds on its PATH and nothing else: systemd's
/// `stage2ServiceConfig` gives every unit coreutils, findutils, gnugrep, gnused and systemd (nixos/lib/systemd-lib.nix),
/// and the Garage unit adds none. Built from Debian's package lists of the same tools, so a script that calls
/// anything else (`cmp`, `xxd`, `od` from elsewhere) fails here as it would on the machine.
fn service_path() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let out = Command::new("dpkg")
        .args(["-L", "coreutils", "findutils", "grep", "sed"])
        .output()
        .expect("dpkg lists Debian's coreutils, findutils, grep and sed");
    for file in String::from_utf8_lossy(&out.stdout).lines() {
        let path = Path::new(file);
        let in_bin = path
            .parent()
            .is_some_and(|p| p == Path::new("/bin") || p == Path::new("/usr/bin"));
        if let (true, Some(name)) = (in_bin && path.is_file(), path.file_name()) {
            let _ = std::os::unix::fs::symlink(path, dir.path().join(name));
        }
    }
    assert!(
        dir.path().join("sha256sum").exists() && !dir.path().join("cmp").exists(),
        "the service PATH has coreutils and no diffutils"
    );
    dir
}

/// Runs the node-key step with a NixOS service's PATH ([`service_path`]); Ok(()) or Err(stderr).
fn install_node_key(key: &Path, meta: &Path) -> Result<(), String> {
    let path = service_path();
    let out = Command::new("/bin/sh")
        .env("PATH", path.path())
        .arg("-c")
        .arg(install_node_key_script())
        .arg("garage-install-node-key")
        .arg(key)
        .arg(meta)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `fedigen storage node-key [--hex] --out PATH`: its exit code, standard output (the id) and standard error.
fn node_key_cli(path: &Path, hex: bool) -> (i32, String, String) {
    let mut args = vec!["--quiet", "storage", "node-key"];
    if hex {
        args.push("--hex");
    }
    args.extend(["--out", path.to_str().unwrap()]);
    fedigen(&args, &[])
}

/// The node-key step places the key and its public half, again without change, and refuses a different key
/// or a file of the wrong length, naming the fix.
fn node_key_step_places_and_never_replaces() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("node.key");
    let (code, out, err) = node_key_cli(&key, false);
    if code != 0 {
        return Err(fail(format!("node-key exited {code}: {err}")));
    }
    let meta = dir.path().join("state/meta");
    std::fs::create_dir_all(dir.path().join("state"))?;
    install_node_key(&key, &meta).map_err(|e| fail(format!("first placement: {e}")))?;
    let placed = std::fs::read(meta.join("node_key"))?;
    let public = std::fs::read(meta.join("node_key.pub"))?;
    if placed != std::fs::read(&key)? || public != placed[32..] {
        return Err(fail("node_key or node_key.pub differ from the key file"));
    }
    let hex: String = public.iter().map(|b| format!("{b:02x}")).collect();
    if hex != out.trim() {
        return Err(fail(format!(
            "node_key.pub is {hex}, node-key printed {out}"
        )));
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(meta.join("node_key"))?
        .permissions()
        .mode()
        & 0o777;
    if mode != 0o600 {
        return Err(fail(format!("node_key has mode {mode:o}")));
    }
    install_node_key(&key, &meta).map_err(|e| fail(format!("second placement: {e}")))?;
    // Another key for the same node: refused, the placed identity unchanged.
    let other = dir.path().join("other.key");
    node_key_cli(&other, false);
    match install_node_key(&other, &meta) {
        Ok(()) => return Err(fail("a different node key replaced the placed one")),
        Err(e) if e.contains("refusing to change the node's identity") => {}
        Err(e) => return Err(fail(format!("unexpected message: {e}"))),
    }
    if std::fs::read(meta.join("node_key"))? != placed {
        return Err(fail("the placed key changed"));
    }
    // Review-14 F11: the key as a text secret store holds it (`--hex`: 128 hex digits and a newline) is placed
    // as the same 64 bytes, and its public half is the id node-key printed.
    let hex_key = dir.path().join("hex.key");
    let (code, id, err) = node_key_cli(&hex_key, true);
    if code != 0 {
        return Err(fail(format!("node-key --hex exited {code}: {err}")));
    }
    let text = std::fs::read_to_string(&hex_key)?;
    if text.len() != 129 || !text.ends_with('\n') {
        return Err(fail(format!("node-key --hex wrote {text:?}")));
    }
    let hex_meta = dir.path().join("hex/meta");
    install_node_key(&hex_key, &hex_meta).map_err(|e| fail(format!("hex placement: {e}")))?;
    let decoded: Vec<u8> = (0..64)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let placed_hex = std::fs::read(hex_meta.join("node_key"))?;
    let public_hex: String = std::fs::read(hex_meta.join("node_key.pub"))?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if placed_hex != decoded || public_hex != id.trim() {
        return Err(fail(format!(
            "the hex key was placed as {} bytes with id {public_hex}, node-key printed {id}",
            placed_hex.len()
        )));
    }
    install_node_key(&hex_key, &hex_meta).map_err(|e| fail(format!("hex, again: {e}")))?;
    let bad_hex = dir.path().join("bad-hex.key");
    std::fs::write(&bad_hex, format!("{}zz\n", &text[..126]))?;
    match install_node_key(&bad_hex, &dir.path().join("bad/meta")) {
        Ok(()) => return Err(fail("a key with non-hex digits was placed")),
        Err(e) if e.contains("128 hex digits") => {}
        Err(e) => return Err(fail(format!("unexpected message: {e}"))),
    }
    let short = dir.path().join("short.key");
    std::fs::write(&short, [0u8; 63])?;
    match install_node_key(&short, &dir.path().join("fresh/meta")) {
        Ok(()) => Err(fail("a 63-byte key was placed")),
        Err(e) if e.contains("63 bytes, not 64") => Ok(()),
        Err(e) => Err(fail(format!("unexpected message: {e}"))),
    }
}

/// A key file `fedigen storage s3-key` wrote, as a [`TestKey`].
fn s3_key_file(path: &Path) -> Result<TestKey, Failed> {
    let (code, out, err) = fedigen(
        &[
            "--quiet",
            "storage",
            "s3-key",
            "--out",
            path.to_str().unwrap(),
        ],
        &[],
    );
    if code != 0 {
        return Err(fail(format!("s3-key exited {code}: {err}")));
    }
    let text = std::fs::read_to_string(path)?;
    let secret = text
        .lines()
        .find_map(|l| l.strip_prefix("AWS_SECRET_ACCESS_KEY="))
        .ok_or_else(|| fail("no secret in the key file"))?
        .to_owned();
    Ok(TestKey {
        id: out.trim().to_owned(),
        secret,
        file: path.to_owned(),
    })
}

/// `(name, id, address)` triples as borrowed strings.
fn as_refs(n: &[(String, String, String)]) -> Vec<(&str, &str, &str)> {
    n.iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect()
}

/// The example specification with the given nodes' ids and RPC addresses (a loopback address each, so every
/// node keeps the generated RPC port 3901), written beside its templates' repository for loading.
fn example_spec(dir: &Path, nodes: &[(&str, &str, &str)]) -> Result<PathBuf, Failed> {
    let text = std::fs::read_to_string(repo().join("examples/provider.toml"))?;
    let mut spec: toml::Table = toml::from_str(&text)?;
    let storage = spec["provider"]["object_storage"]["nodes"]
        .as_table()
        .cloned()
        .ok_or_else(|| fail("the example has object storage nodes"))?;
    let mut out = toml::Table::new();
    for (name, id, address) in nodes {
        let mut node = storage
            .get(*name)
            .cloned()
            .unwrap_or_else(|| storage["ams2"].clone());
        let t = node.as_table_mut().unwrap();
        t.insert("node_id".into(), (*id).into());
        t.insert("rpc_address".into(), (*address).into());
        if !storage.contains_key(*name) {
            // A new node: a machine of its own, with an address of its own.
            let mut network = toml::Table::new();
            let mut v4 = toml::Table::new();
            v4.insert("address".into(), "192.0.2.29/24".into());
            network.insert("ipv4".into(), v4.into());
            t.insert("network".into(), network.into());
        }
        out.insert((*name).into(), node);
    }
    spec["provider"].as_table_mut().unwrap()["object_storage"]
        .as_table_mut()
        .unwrap()
        .insert("nodes".into(), out.into());
    let path = dir.join("provider.toml");
    std::fs::write(&path, toml::to_string(&spec)?)?;
    Ok(path)
}

/// The generated files of a specification (as `fedigen generate` plans them), and its storage description
/// with the key files moved from `/run/secrets/` to `secrets` (this machine has no `/run/secrets`).
fn generated(
    spec_path: &Path,
    secrets: &Path,
) -> Result<
    (
        fedigen::model::Spec,
        fedigen::model::Catalog,
        BTreeMap<PathBuf, String>,
        Description,
    ),
    Failed,
> {
    let (spec, catalog) = fedigen::deploy::load_spec(&repo(), spec_path).map_err(fail)?;
    let files =
        fedigen::deploy::plan(&spec, &catalog, "provider.toml").map_err(|e| fail(e.to_string()))?;
    let json = files
        .get(Path::new("deployments/storage.json"))
        .ok_or_else(|| fail("no deployments/storage.json generated"))?
        .replace("\"/run/secrets/", &format!("\"{}/", secrets.display()));
    let description =
        Description::parse(&json, "deployments/storage.json").map_err(|e| fail(e.to_string()))?;
    Ok((spec, catalog, files, description))
}

/// What the test changes in a node's generated settings to run three nodes on one host: where it listens
/// and keeps its files (the ports of S3, web and admin, free ones; the RPC port stays, on the node's own
/// loopback address). Everything else (rpc_public_addr, bootstrap_peers, replication, regions, root domains)
/// is the generated value.
fn localise(settings: &mut GarageSettings, root: &Path, rpc_address: &str) -> [u16; 3] {
    let ports = free_ports(3);
    settings.metadata_dir = root.join("meta").display().to_string();
    settings.data_dir = root.join("data").display().to_string();
    settings.rpc_bind_addr = format!("{rpc_address}:3901");
    settings.s3_api.api_bind_addr = format!("127.0.0.1:{}", ports[0]);
    if let Some(web) = &mut settings.s3_web {
        web.bind_addr = format!("127.0.0.1:{}", ports[1]);
    }
    settings.admin.api_bind_addr = format!("127.0.0.1:{}", ports[2]);
    [ports[0], ports[1], ports[2]]
}

/// The generated deployment against real Garage: the example specification (three nodes, three operators,
/// five applications) with fresh node keys; each node started with the settings fedigen generates (rendered
/// to garage.toml as nixpkgs renders `services.garage.settings`) after the generated node-key step placed its
/// key; the cluster forms from bootstrap_peers alone; the generated description applied twice (the second a
/// no-op); each operator's key works on its own bucket only; then a fourth node added to the specification
/// joins the layout.
fn generated_deployment_forms_provisions_and_grows() -> Result<(), Failed> {
    let started = Instant::now();
    let garage = garage().map_err(fail)?;
    let mut cluster = Cluster::new(garage);
    let dir = cluster.dir.path().to_owned();
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets)?;
    // A loopback subnet of this run's own, so that every node's generated RPC port 3901 is free.
    let mut net = [0u8; 2];
    getrandom::fill(&mut net)?;
    let address = |n: u8| format!("127.{}.{}.{n}", net[0].max(1), net[1]);
    let mut nodes: Vec<(String, String, String)> = Vec::new();
    for (i, name) in ["ams1", "ams2", "rtm1", "fra1"].iter().enumerate() {
        let key = dir.join(format!("{name}.key"));
        let (code, out, err) = fedigen(
            &[
                "--quiet",
                "storage",
                "node-key",
                "--out",
                key.to_str().unwrap(),
            ],
            &[],
        );
        if code != 0 {
            return Err(fail(format!("node-key exited {code}: {err}")));
        }
        nodes.push((
            name.to_string(),
            out.trim().to_owned(),
            address(i as u8 + 1),
        ));
    }
    let spec_path = example_spec(&dir, &as_refs(&nodes[..3]))?;
    let (spec, catalog, files, description) = generated(&spec_path, &secrets)?;
    // Every operator's application has its key file, made by the provider's tool.
    let mut keys = BTreeMap::new();
    for bucket in &description.buckets {
        for key in &bucket.keys {
            if !key.secret_file.exists() {
                keys.insert(key.name.clone(), s3_key_file(&key.secret_file)?);
            }
        }
    }
    if keys.len() != 5 {
        return Err(fail(format!(
            "expected a key per operator's application (5), got {:?}",
            keys.keys()
        )));
    }
    let cluster_file = &files[Path::new("deployments/garage-cluster.nix")];
    let start_node = |cluster: &mut Cluster,
                      spec: &fedigen::model::Spec,
                      catalog: &fedigen::model::Catalog,
                      (name, id, address): &(String, String, String)|
     -> Result<usize, Failed> {
        let mut settings = fedigen::deploy::storage::node_settings(spec, catalog, name)
            .ok_or_else(|| fail(format!("no settings for {name}")))?;
        if settings.rpc_public_addr != format!("{address}:3901") {
            return Err(fail(format!(
                "{name}: rpc_public_addr {}",
                settings.rpc_public_addr
            )));
        }
        let root = cluster.dir.path().join(name);
        std::fs::create_dir_all(&root)?;
        let ports = localise(&mut settings, &root, address);
        install_node_key(
            &cluster.dir.path().join(format!("{name}.key")),
            Path::new(&settings.metadata_dir),
        )
        .map_err(fail)?;
        cluster.nodes.push(Node {
            name: name.clone(),
            id: id.clone(),
            settings,
            config: root.join("garage.toml"),
            log: root.join("garage.log"),
            s3: ports[0],
            admin: ports[2],
            child: None,
        });
        let i = cluster.nodes.len() - 1;
        // Start with exactly the generated bootstrap_peers (start() takes the cluster's list).
        cluster.peers = cluster.nodes[i].settings.bootstrap_peers.clone();
        cluster.start(i)?;
        Ok(i)
    };
    for node in &nodes[..3] {
        let settings = fedigen::deploy::storage::node_settings(&spec, &catalog, &node.0).unwrap();
        // The Nix files carry the same values: every peer and root domain in garage-cluster.nix.
        for peer in &settings.bootstrap_peers {
            if !cluster_file.contains(&format!("\"{peer}\"")) {
                return Err(fail(format!("garage-cluster.nix lacks the peer {peer}")));
            }
        }
        if !cluster_file.contains(&format!(
            "root_domain = \"{}\";",
            settings.s3_api.root_domain.clone().unwrap()
        )) {
            return Err(fail("garage-cluster.nix lacks the S3 root domain"));
        }
        if settings.bootstrap_peers.len() != 3 {
            return Err(fail(format!(
                "{}: peers {:?}",
                node.0, settings.bootstrap_peers
            )));
        }
        start_node(&mut cluster, &spec, &catalog, node)?;
    }
    let first = apply_twice(&cluster, &description)?;
    println!(
        "figure: the example specification's generated deployment (3 nodes, {} buckets, {} keys) formed and provisioned in {:.1} s",
        description.buckets.len(),
        keys.len(),
        started.elapsed().as_secs_f64()
    );
    if first["layout_version"] != 1 {
        return Err(fail(format!("first apply: {first}")));
    }
    // Each operator's key on its own bucket only.
    let s3 = cluster.nodes[0].s3;
    let region = cluster.nodes[0].settings.s3_api.s3_region.clone();
    let region = region.as_str();
    let a = &keys["amstelland/mastodon"];
    let b = &keys["digitalevrijheid/mastodon"];
    rclone_in(
        region,
        s3,
        a,
        &["rcat", "g:amstelland-mastodon/media/a.txt"],
        Some("from A\n"),
    )
    .map_err(|e| fail(format!("write with A's key: {e}")))?;
    let read = rclone_in(
        region,
        s3,
        a,
        &["cat", "g:amstelland-mastodon/media/a.txt"],
        None,
    )
    .map_err(|e| fail(format!("read with A's key: {e}")))?;
    if read != "from A\n" {
        return Err(fail(format!("read back {read:?}")));
    }
    if let Ok(out) = rclone_in(
        region,
        s3,
        b,
        &["cat", "g:amstelland-mastodon/media/a.txt"],
        None,
    ) {
        return Err(fail(format!("B's key read A's object: {out:?}")));
    }
    if rclone_in(
        region,
        s3,
        b,
        &["rcat", "g:amstelland-mastodon/media/b.txt"],
        Some("from B\n"),
    )
    .is_ok()
    {
        return Err(fail("B's key wrote into A's bucket"));
    }
    rclone_in(
        region,
        s3,
        b,
        &["rcat", "g:digitalevrijheid-mastodon/media/b.txt"],
        Some("from B\n"),
    )
    .map_err(|e| fail(format!("write with B's key into B's bucket: {e}")))?;

    // A fourth node added to the specification: regenerated, started, and it joins the layout.
    let spec_path = example_spec(&dir, &as_refs(&nodes))?;
    let (spec, catalog, _, description) = generated(&spec_path, &secrets)?;
    if description.nodes.len() != 4 {
        return Err(fail(format!(
            "the description has {} nodes",
            description.nodes.len()
        )));
    }
    start_node(&mut cluster, &spec, &catalog, &nodes[3])?;
    let grown = apply_twice(&cluster, &description)?;
    if grown["layout_version"] != 2 || !grown["changes"].to_string().contains("fra1") {
        return Err(fail(format!("adding fra1: {grown}")));
    }
    println!(
        "figure: generated deployment story (form, provision, isolate, grow to 4 nodes) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A node alone, as the Garage module provisions it by default (its description names no id: the node the
/// admin API belongs to): `apply` lays it out, and Garage's `/health` turns from 503 to 200 — what the
/// generated VM test of the Garage template waits for after `fedigen-storage-apply`.
fn a_node_alone_lays_itself_out() -> Result<(), Failed> {
    let mut cluster = Cluster::new(garage().map_err(fail)?);
    let i = cluster.make_node("server")?;
    cluster.nodes[i].settings.replication_factor = 1;
    cluster.peers.clear();
    cluster.start(i)?;
    let health = |c: &Cluster| -> Option<u16> {
        match ureq::get(format!("{}/health", c.admin_url())).call() {
            Ok(r) => Some(r.status().as_u16()),
            Err(ureq::Error::StatusCode(code)) => Some(code),
            Err(_) => None,
        }
    };
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while health(&cluster).is_none() && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    if health(&cluster) != Some(503) {
        return Err(fail(format!(
            "before the layout /health is {:?}, not 503",
            health(&cluster)
        )));
    }
    // The module's default description for a node alone (templates/garage/module.nix.hbs), as JSON.
    let description = Description::parse(
        r#"{"nodes":[{"capacity_bytes":1073741824,"name":"server","zone":"local"}],"replication_factor":1}"#,
        "single-node.json",
    )
    .map_err(|e| fail(e.to_string()))?;
    let first = cluster.apply(&description)?;
    if first["layout_version"] != 1 {
        return Err(fail(format!("first apply: {first}")));
    }
    let second = cluster.apply(&description)?;
    if second["changing_calls"] != 0 {
        return Err(fail(format!("second apply: {second}")));
    }
    match health(&cluster) {
        Some(200) => Ok(()),
        other => Err(fail(format!("after the layout /health is {other:?}"))),
    }
}

/// User and system CPU seconds of the children of `sh` after it ran `script` (its `times` builtin), and the
/// wall time.
fn timed_sh(script: &str, envs: &[(&str, &str)]) -> Result<(f64, f64), Failed> {
    let started = Instant::now();
    // From a file: thousands of CLI calls exceed the argument length limit.
    let file = tempfile::NamedTempFile::new()?;
    // `set -e`: a failing command fails the run (else `times`, the last command, would make it succeed and a
    // command that never ran would be timed as instantaneous).
    std::fs::write(file.path(), format!("set -e\n{script}\ntimes\n"))?;
    let mut c = Command::new("sh");
    c.arg(file.path());
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = c.output()?;
    let wall = started.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(fail(format!(
            "the timed run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    // `times` prints the shell's, then its children's user and system time: `0m1.234s 0m0.100s`.
    let text = String::from_utf8_lossy(&out.stdout);
    let children = text.lines().last().unwrap_or("");
    let seconds = |t: &str| -> f64 {
        let (m, s) = t
            .trim_end_matches('s')
            .split_once('m')
            .unwrap_or(("0", "0"));
        m.parse::<f64>().unwrap_or(0.0) * 60.0 + s.parse::<f64>().unwrap_or(0.0)
    };
    let cpu: f64 = children.split_whitespace().map(seconds).sum();
    Ok((wall, cpu))
}

/// CPU seconds the running Garage nodes have used so far (`/proc/<pid>/stat` utime + stime).
fn garage_cpu(cluster: &Cluster) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    cluster
        .nodes
        .iter()
        .filter_map(|n| n.child.as_ref())
        .filter_map(|c| std::fs::read_to_string(format!("/proc/{}/stat", c.id())).ok())
        .map(|stat| {
            let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let fields: Vec<&str> = after.split_whitespace().collect();
            let num = |i: usize| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            (num(11) + num(12)) / tick
        })
        .sum()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The benchmark of BENCHMARKS.md ("Provisioning object storage"): `fedigen storage apply` for
/// FEDIGEN_BENCH_OPERATORS (1,000) operators × 4 applications (a bucket with website access and a key each)
/// against a running 3-node cluster, then the same work as one `garage` CLI call per step (`bucket create`,
/// `key import --yes`, `bucket allow`, `bucket website --allow`) for FEDIGEN_BENCH_CLI_OPERATORS (100) × 4
/// other pairs, in the same run. Wall and CPU time of the client side and of the Garage nodes.
fn bench_provisioning() -> Result<(), Failed> {
    let count = |var: &str, default: usize| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (operators, cli_operators) = (
        count("FEDIGEN_BENCH_OPERATORS", 1000),
        count("FEDIGEN_BENCH_CLI_OPERATORS", 100),
    );
    let apps = ["mastodon", "pixelfed", "peertube", "synapse"];
    let cluster = three_node_cluster()?;
    let keys_dir = cluster.dir.path().join("keys");
    std::fs::create_dir_all(&keys_dir)?;
    let n = &cluster.nodes;
    let mut description = Description::new(3)
        .with_node(&n[0].name, &n[0].id, "ams", GIB)
        .with_node(&n[1].name, &n[1].id, "ams", GIB)
        .with_node(&n[2].name, &n[2].id, "rtm", GIB);
    // The cluster laid out first, so both sides do only bucket and key work.
    cluster.apply(&description)?;
    let mut k = 0u32;
    for op in 0..operators {
        for app in apps {
            k += 1;
            let key = test_key(&keys_dir, 0x10_0000 + k);
            description = description.with_bucket(Bucket {
                name: format!("op{op}-{app}"),
                website: true,
                keys: vec![self::key(&key, &format!("op{op}/{app}"), true, true, false)],
            });
        }
    }
    let file = cluster.dir.path().join("bench.json");
    std::fs::write(&file, description.to_json())?;
    let load_before = loadavg();
    let garage_before = garage_cpu(&cluster);
    let parallel = count("FEDIGEN_BENCH_PARALLEL", 4);
    let apply_cmd = format!(
        "'{}' --quiet storage apply --description '{}' --admin '{}' --parallel {parallel} --json >/dev/null",
        env!("CARGO_BIN_EXE_fedigen"),
        file.display(),
        cluster.admin_url()
    );
    println!(
        "figure: {operators} operators x 4 applications, --parallel {parallel}, CLI sample {cli_operators} x 4"
    );
    let (wall, cpu) = timed_sh(&apply_cmd, &[("GARAGE_ADMIN_TOKEN", &cluster.token)])?;
    let garage_apply = garage_cpu(&cluster) - garage_before;
    let pairs = operators * apps.len();
    println!(
        "figure: fedigen storage apply, {pairs} (operator, application) pairs: wall {wall:.1} s ({:.2} ms/pair), client CPU {cpu:.1} s, Garage CPU {garage_apply:.1} s",
        wall * 1000.0 / pairs as f64
    );
    check_converged(&mut cluster.client(), &description)?;
    let garage_before = garage_cpu(&cluster);
    let (wall2, cpu2) = timed_sh(&apply_cmd, &[("GARAGE_ADMIN_TOKEN", &cluster.token)])?;
    let garage_noop = garage_cpu(&cluster) - garage_before;
    // The CLI: one process per step, against node 1 over RPC, as an operator's script would.
    let config = cluster.nodes[0].config.display().to_string();
    let g = cluster.garage.display().to_string();
    let mut script = String::new();
    for op in 0..cli_operators {
        for app in apps {
            k += 1;
            let key = test_key(&keys_dir, 0x10_0000 + k);
            let bucket = format!("cli{op}-{app}");
            for args in [
                format!("bucket create {bucket}"),
                format!(
                    "key import --yes -n cli{op}/{app} {} {}",
                    key.id, key.secret
                ),
                format!("bucket allow --read --write {bucket} --key {}", key.id),
                format!("bucket website --allow {bucket}"),
            ] {
                script.push_str(&format!("'{g}' -c '{config}' {args} >/dev/null\n"));
            }
        }
    }
    let garage_before = garage_cpu(&cluster);
    let (cli_wall, cli_cpu) = timed_sh(&script, &[("GARAGE_RPC_SECRET", &cluster.rpc_secret)])?;
    let garage_cli = garage_cpu(&cluster) - garage_before;
    let cli_pairs = cli_operators * apps.len();
    let load_after = loadavg();
    println!("figure: load average before {load_before}, after {load_after}");
    println!(
        "figure: second apply (no-op) over {pairs} pairs: wall {wall2:.1} s, client CPU {cpu2:.1} s, Garage CPU {garage_noop:.1} s"
    );
    println!(
        "figure: garage CLI, one call per step, {cli_pairs} pairs ({} calls): wall {cli_wall:.1} s ({:.2} ms/pair), client CPU {cli_cpu:.1} s, Garage CPU {garage_cli:.1} s",
        cli_pairs * 4,
        cli_wall * 1000.0 / cli_pairs as f64
    );
    println!(
        "figure: per pair, the CLI takes {:.1}× the wall time of fedigen storage apply",
        (cli_wall / cli_pairs as f64) / (wall / pairs as f64)
    );
    Ok(())
}

fn trial(name: &str, needs_rclone: bool, test: fn() -> Result<(), Failed>) -> Trial {
    let missing = garage()
        .err()
        .or_else(|| if needs_rclone { rclone().err() } else { None });
    match missing {
        Some(reason) => {
            eprintln!("ignored {name}: {reason}");
            Trial::test(name, test).with_ignored_flag(true)
        }
        None => Trial::test(name, test),
    }
}

fn main() {
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test(
            "node_key_step_places_and_never_replaces",
            node_key_step_places_and_never_replaces,
        ),
        trial(
            "a_node_alone_lays_itself_out",
            false,
            a_node_alone_lays_itself_out,
        ),
        trial(
            "generated_deployment_forms_provisions_and_grows",
            true,
            generated_deployment_forms_provisions_and_grows,
        ),
        trial(
            "cluster_forms_provisions_isolates_and_survives",
            true,
            cluster_forms_provisions_isolates_and_survives,
        ),
        trial(
            "failures_have_their_exit_statuses",
            false,
            failures_have_their_exit_statuses,
        ),
        trial(
            "random_descriptions_converge_in_one_run",
            false,
            random_descriptions_converge_in_one_run,
        ),
    ];
    let mut trials = trials;
    // The benchmark (BENCHMARKS.md): minutes of work, run on request only.
    let bench = trial("bench_provisioning", false, bench_provisioning);
    trials.push(if std::env::var_os("FEDIGEN_STORAGE_BENCH").is_some() {
        bench
    } else {
        eprintln!(
            "ignored bench_provisioning: set FEDIGEN_STORAGE_BENCH=1 to run the benchmark (minutes)"
        );
        bench.with_ignored_flag(true)
    });
    libtest_mimic::run(&args, trials).exit();
}
