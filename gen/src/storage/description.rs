//! The storage description: the generated JSON a Garage node's provisioning unit is given (`fedigen storage
//! apply --description FILE`). It says what the cluster must look like (nodes, zones, capacities, replication)
//! and which buckets and keys must exist with which permissions.
//!
//! Why a file of its own and not the specification: it lands in the Nix store, so it holds **no secrets** (a
//! key's secret is a path read at run time), and it is the one input of the code that runs on the machines and
//! in the tests, so both exercise exactly the same thing. The deployment generator builds it with
//! [`Description::new`] and the `with_*` methods.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The whole cluster as it must be after `fedigen storage apply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Description {
    /// The generated file's marker (JSON has no comments: it is the first member, `"//"`); ignored.
    #[serde(default, rename = "//", skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// How many copies Garage keeps of each object. Must equal `replication_factor` in every node's
    /// `garage.toml`, and can never change once a layout exists (Garage refuses to start then).
    pub replication_factor: u32,
    /// In how many distinct zones each partition must be stored: `"maximum"` (Garage's default: as many as
    /// possible) or a number between 1 and the replication factor.
    #[serde(default)]
    pub zone_redundancy: ZoneRedundancy,
    /// The storage nodes of the layout. A node of the current layout that is not here is removed (drained).
    pub nodes: Vec<Node>,
    /// The buckets that must exist, each with the keys allowed on it. Buckets not listed are left alone.
    #[serde(default)]
    pub buckets: Vec<Bucket>,
}

/// One storage node of the layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// The node's name in the specification; stored as the node's layout tag, so `garage status` shows it.
    pub name: String,
    /// The node's public key, 64 lowercase hex digits (`fedigen storage node-key` prints it; `garage node id`
    /// shows it before the `@`). Empty (left out) in a description of a single node: the node whose admin API
    /// `apply` drives, whatever key Garage made itself (a node alone, as the Garage module provisions it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The zone (data centre, site) the node is in: Garage spreads copies over zones.
    pub zone: String,
    /// The storage capacity Garage may plan with on this node, in bytes (at least 1024).
    pub capacity_bytes: u64,
}

/// A bucket, named by its global alias, and the keys allowed on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    /// The bucket's global alias, following Garage's (S3's) rules: 3 to 63 characters of `a-z 0-9 . -`,
    /// starting and ending with a letter or digit, not an IP address, no `xn--`, not ending in `-s3alias`.
    pub name: String,
    /// Whether Garage's web endpoint serves the bucket (public media); its index document is `index.html`.
    #[serde(default)]
    pub website: bool,
    /// The keys allowed on the bucket, with exactly these permissions; any other key's permissions on the
    /// bucket are revoked.
    #[serde(default)]
    pub keys: Vec<Key>,
}

/// An S3 key and its permissions on one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    /// The access key id: `GK` and 24 lowercase hex digits (the form every Garage 2.x imports). Empty (left
    /// out of the JSON) means "the `AWS_ACCESS_KEY_ID=` line of `secret_file`", read when `apply` runs: how the
    /// generated description names an application's key, whose id the provider chose with the secret
    /// (`fedigen storage s3-key`), so rotating a key is replacing one file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The file holding the secret, read when `apply` runs (never in the store): either an environment file
    /// with an `AWS_SECRET_ACCESS_KEY=` line (and, if present, an `AWS_ACCESS_KEY_ID=` line that must equal
    /// `id`), as the application reads it, or the bare secret.
    pub secret_file: PathBuf,
    /// The key's name in Garage, for people (`garage key list`), e.g. `operator/application`.
    pub name: String,
    /// May read objects.
    #[serde(default)]
    pub read: bool,
    /// May write and delete objects.
    #[serde(default)]
    pub write: bool,
    /// May change the bucket's website, CORS and lifecycle settings through S3.
    #[serde(default)]
    pub owner: bool,
}

/// Garage's zone redundancy parameter of the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZoneRedundancy {
    /// As many zones as possible (Garage's default).
    #[default]
    Maximum,
    /// At least this many zones.
    AtLeast(u32),
}

impl Serialize for ZoneRedundancy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ZoneRedundancy::Maximum => serializer.serialize_str("maximum"),
            ZoneRedundancy::AtLeast(n) => serializer.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for ZoneRedundancy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Number(u32),
        }
        match Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("expected \"maximum\" or a whole number of zones")
        })? {
            Raw::Word(w) if w == "maximum" => Ok(ZoneRedundancy::Maximum),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "expected \"maximum\" or a whole number of zones, found \"{w}\""
            ))),
            Raw::Number(n) => Ok(ZoneRedundancy::AtLeast(n)),
        }
    }
}

pub use crate::json_document::Problem;

/// Why a storage description was refused: every problem, each at its JSON path.
pub type DescriptionError = crate::json_document::InvalidDocument;

impl Description {
    /// An empty description for `replication_factor` copies (zone redundancy "maximum"), to fill with
    /// [`Description::with_node`] and [`Description::with_bucket`]: how the deployment generator builds one.
    pub fn new(replication_factor: u32) -> Self {
        Description {
            comment: None,
            replication_factor,
            zone_redundancy: ZoneRedundancy::Maximum,
            nodes: Vec::new(),
            buckets: Vec::new(),
        }
    }

    /// Adds a storage node.
    pub fn with_node(mut self, name: &str, id: &str, zone: &str, capacity_bytes: u64) -> Self {
        self.nodes.push(Node {
            name: name.to_owned(),
            id: id.to_owned(),
            zone: zone.to_owned(),
            capacity_bytes,
        });
        self
    }

    /// Adds a bucket.
    pub fn with_bucket(mut self, bucket: Bucket) -> Self {
        self.buckets.push(bucket);
        self
    }

    /// Parses and validates a description; `source` names the file in messages.
    pub fn parse(text: &str, source: &str) -> Result<Self, DescriptionError> {
        crate::json_document::parse(text, source, "storage description", Self::problems)
    }

    /// The description as deterministic, pretty JSON (what the generator writes).
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a description serialises");
        text.push('\n');
        text
    }

    /// Every problem of the description, each at its JSON path; empty when it is valid.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut problem = |path: String, message: String| out.push(Problem { path, message });
        let rf = self.replication_factor;
        if rf == 0 {
            problem(
                "replication_factor".into(),
                "must be at least 1 (3 for a cluster that survives one node down)".into(),
            );
        }
        if let ZoneRedundancy::AtLeast(n) = self.zone_redundancy {
            let zones: BTreeSet<&str> = self.nodes.iter().map(|n| n.zone.as_str()).collect();
            if n == 0 || n > rf {
                problem(
                    "zone_redundancy".into(),
                    format!("must be between 1 and the replication factor ({rf}), or \"maximum\""),
                );
            } else if zones.len() < n as usize {
                problem(
                    "zone_redundancy".into(),
                    format!(
                        "asks for {n} zones but the nodes are in {} ({}); add nodes in other zones or lower it",
                        zones.len(),
                        zones.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
        if self.nodes.len() < rf as usize {
            problem(
                "nodes".into(),
                format!(
                    "{} node(s) but the replication factor is {rf}: Garage needs at least as many storage nodes as copies",
                    self.nodes.len()
                ),
            );
        }
        let mut names = BTreeMap::new();
        let mut ids = BTreeMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let at = |field: &str| format!("nodes[{i}].{field}");
            if node.name.is_empty() {
                problem(at("name"), "must not be empty".into());
            } else if let Some(first) = names.insert(node.name.as_str(), i) {
                problem(
                    at("name"),
                    format!("\"{}\" is also the name of nodes[{first}]", node.name),
                );
            }
            if node.id.is_empty() && self.nodes.len() == 1 {
                // The one node is the driven node itself (resolved by `apply`).
            } else if !is_hex(&node.id, 64) {
                problem(
                    at("id"),
                    format!(
                        "\"{}\" is not a node id: it must be 64 lowercase hex digits, the public key `fedigen storage node-key` prints",
                        node.id
                    ),
                );
            } else if let Some(first) = ids.insert(node.id.as_str(), i) {
                problem(at("id"), format!("is also the id of nodes[{first}]"));
            }
            if node.zone.is_empty() {
                problem(at("zone"), "must not be empty".into());
            }
            if node.capacity_bytes < 1024 {
                problem(
                    at("capacity_bytes"),
                    format!(
                        "{} is below Garage's minimum of 1024 bytes",
                        node.capacity_bytes
                    ),
                );
            }
        }
        let mut bucket_names = BTreeMap::new();
        let mut key_uses: BTreeMap<&str, (String, &Key)> = BTreeMap::new();
        for (b, bucket) in self.buckets.iter().enumerate() {
            if let Some(why) = bucket_name_problem(&bucket.name) {
                problem(
                    format!("buckets[{b}].name"),
                    format!("\"{}\" is not a valid bucket name: {why}", bucket.name),
                );
            } else if let Some(first) = bucket_names.insert(bucket.name.as_str(), b) {
                problem(
                    format!("buckets[{b}].name"),
                    format!(
                        "\"{}\" is also the name of buckets[{first}]: bucket names are global to the cluster",
                        bucket.name
                    ),
                );
            }
            let mut in_bucket = BTreeSet::new();
            for (k, key) in bucket.keys.iter().enumerate() {
                let at = |field: &str| format!("buckets[{b}].keys[{k}].{field}");
                if key.id.is_empty() {
                    // The id is the secret file's, read at run time: one file is one key.
                    if key.secret_file.as_os_str().is_empty() {
                        problem(
                            at("secret_file"),
                            "must not be empty: a key without an id takes it from this file's AWS_ACCESS_KEY_ID= line".into(),
                        );
                    }
                    if !(key.read || key.write || key.owner) {
                        problem(
                            format!("buckets[{b}].keys[{k}]"),
                            "gives no permission (read, write or owner): remove the key or allow something".into(),
                        );
                    }
                    continue;
                }
                if !is_key_id(&key.id) {
                    problem(
                        at("id"),
                        format!(
                            "\"{}\" is not a key id: it must be GK followed by 24 lowercase hex digits",
                            key.id
                        ),
                    );
                    continue;
                }
                if !in_bucket.insert(key.id.as_str()) {
                    problem(
                        at("id"),
                        format!(
                            "{} is listed twice on this bucket; give it one entry",
                            key.id
                        ),
                    );
                }
                if key.secret_file.as_os_str().is_empty() {
                    problem(at("secret_file"), "must not be empty".into());
                }
                if !(key.read || key.write || key.owner) {
                    problem(
                        format!("buckets[{b}].keys[{k}]"),
                        "gives no permission (read, write or owner): remove the key or allow something".into(),
                    );
                }
                match key_uses.get(key.id.as_str()) {
                    Some((first, other))
                        if other.secret_file != key.secret_file || other.name != key.name =>
                    {
                        problem(
                            at("id"),
                            format!(
                                "{} is also at {first} with another name or secret_file: one key has one name and one secret",
                                key.id
                            ),
                        );
                    }
                    Some(_) => {}
                    None => {
                        key_uses.insert(&key.id, (format!("buckets[{b}].keys[{k}]"), key));
                    }
                }
            }
        }
        out
    }
}

/// Whether `s` is exactly `len` lowercase hex digits.
pub(crate) fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `s` is a key id every Garage 2.x imports: `GK` and 24 lowercase hex digits.
pub(crate) fn is_key_id(s: &str) -> bool {
    s.strip_prefix("GK").is_some_and(|hex| is_hex(hex, 24))
}

/// Why Garage would refuse `name` as a bucket name (its `is_valid_bucket_name`, punycode not allowed), or
/// `None` when it is valid.
pub(crate) fn bucket_name_problem(name: &str) -> Option<&'static str> {
    if name.len() < 3 || name.len() > 63 {
        Some("it must be 3 to 63 characters long")
    } else if !name
        .chars()
        .all(|c| matches!(c, '.' | '-' | 'a'..='z' | '0'..='9'))
    {
        Some("only lowercase letters, digits, '-' and '.' are allowed")
    } else if name.starts_with(['-', '.']) || name.ends_with(['-', '.']) {
        Some("it must start and end with a letter or digit")
    } else if name.parse::<std::net::IpAddr>().is_ok() {
        Some("it must not be an IP address")
    } else if name.starts_with("xn--") || name.contains(".xn--") {
        Some("no label may start with xn-- (punycode)")
    } else if name.ends_with("-s3alias") {
        Some("it must not end in -s3alias")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn valid() -> Description {
        Description::new(3)
            .with_node("ams1", &id(1), "ams", 1 << 30)
            .with_node("ams2", &id(2), "ams", 1 << 30)
            .with_node("rtm1", &id(3), "rtm", 1 << 30)
            .with_bucket(Bucket {
                name: "opa-mastodon".into(),
                website: true,
                keys: vec![Key {
                    id: format!("GK{}", "ab".repeat(12)),
                    secret_file: "/run/secrets/s3-opa-mastodon".into(),
                    name: "opa/mastodon".into(),
                    read: true,
                    write: true,
                    owner: false,
                }],
            })
    }

    #[test]
    fn a_valid_description_round_trips() {
        let d = valid();
        assert_eq!(d.problems(), vec![]);
        assert_eq!(Description::parse(&d.to_json(), "x.json").unwrap(), d);
        let with_number = d
            .to_json()
            .replace("\"zone_redundancy\": \"maximum\"", "\"zone_redundancy\": 2");
        assert_eq!(
            Description::parse(&with_number, "x.json")
                .unwrap()
                .zone_redundancy,
            ZoneRedundancy::AtLeast(2)
        );
    }

    #[test]
    fn problems_name_their_json_path() {
        let mut d = valid();
        d.nodes[1].id = "AB".repeat(32);
        d.nodes[2].name = "ams1".into();
        d.nodes[2].capacity_bytes = 10;
        d.buckets[0].name = "opA-mastodon".into();
        d.buckets[0].keys[0].id = "GK123".into();
        let paths: Vec<String> = d.problems().into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            [
                "nodes[1].id",
                "nodes[2].name",
                "nodes[2].capacity_bytes",
                "buckets[0].name",
                "buckets[0].keys[0].id"
            ]
        );
    }

    #[test]
    fn fewer_nodes_than_copies_and_duplicates_are_refused() {
        let mut d = valid();
        d.nodes.pop();
        d.buckets.push(d.buckets[0].clone());
        d.buckets[1].keys[0].name = "other".into();
        let problems = d.problems();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(text[0].starts_with("nodes: 2 node(s) but the replication factor is 3"));
        assert!(
            text[1].starts_with("buckets[1].name: \"opa-mastodon\" is also the name of buckets[0]")
        );
        assert!(
            text[2].starts_with("buckets[1].keys[0].id: GKabab"),
            "{text:?}"
        );
        assert_eq!(problems.len(), 3, "{text:?}");
    }

    #[test]
    fn unknown_fields_and_bad_types_are_refused_with_their_path() {
        let text = valid().to_json().replace("\"website\"", "\"websit\"");
        let e = Description::parse(&text, "d.json").unwrap_err();
        assert_eq!(e.problems[0].path, "buckets[0].websit");
        assert!(
            e.problems[0].message.contains("unknown field `websit`"),
            "{e}"
        );
        let text = valid().to_json().replace("\"maximum\"", "\"most\"");
        let e = Description::parse(&text, "d.json").unwrap_err();
        assert_eq!(e.problems[0].path, "zone_redundancy");
        assert!(
            e.to_string()
                .starts_with("invalid storage description d.json:\n  zone_redundancy: expected")
        );
    }

    #[test]
    fn zone_redundancy_is_checked_against_rf_and_zones() {
        let mut d = valid();
        d.zone_redundancy = ZoneRedundancy::AtLeast(4);
        assert_eq!(d.problems()[0].path, "zone_redundancy");
        d.zone_redundancy = ZoneRedundancy::AtLeast(3);
        assert!(
            d.problems()[0]
                .message
                .contains("nodes are in 2 (ams, rtm)")
        );
        d.zone_redundancy = ZoneRedundancy::AtLeast(2);
        assert_eq!(d.problems(), vec![]);
    }

    /// Garage's rules, case by case (the names Garage 2.5.0 accepts and refuses).
    #[test]
    fn bucket_names_follow_garages_rules() {
        for ok in ["abc", "opa-mastodon", "a.b-c", &"a".repeat(63), "xn-a"] {
            assert_eq!(bucket_name_problem(ok), None, "{ok}");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "opA-mastodon",
            "a_b",
            "-ab",
            "ab.",
            "192.168.1.1",
            "xn--ab",
            "a.xn--b",
            "media-s3alias",
        ] {
            assert!(bucket_name_problem(bad).is_some(), "{bad}");
        }
    }
}
