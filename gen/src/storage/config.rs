//! A Garage node's `garage.toml`, from one settings structure.
//!
//! Why here: the NixOS module gets these settings as `services.garage.settings` (nixpkgs renders them with
//! `pkgs.formats.toml`, keys in Nix's sorted order), and the component tests start real Garage nodes with the
//! same structure rendered the same way, so what is tested is what the machines run. Secrets (the RPC secret,
//! the admin token) are never settings: they reach Garage through its environment (`GARAGE_RPC_SECRET`,
//! `GARAGE_ADMIN_TOKEN`), as the NixOS unit's environment file gives them.

use serde::Serialize;

/// The settings of one Garage 2.x node (the keys of `garage.toml` fedigen sets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GarageSettings {
    /// Where Garage keeps its metadata, `node_key` and `node_key.pub`.
    pub metadata_dir: String,
    /// Where Garage keeps object data.
    pub data_dir: String,
    /// The metadata database: `lmdb` (upstream's advice for production) or `sqlite`.
    pub db_engine: String,
    /// Copies of each object; the same on every node, and never changed once a layout exists.
    pub replication_factor: u32,
    /// `consistent` (Garage's default), `degraded` or `dangerous`; unset means Garage's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency_mode: Option<String>,
    /// Where the node listens for other nodes (RPC).
    pub rpc_bind_addr: String,
    /// The `host:port` other nodes reach this node's RPC at (announced to peers).
    pub rpc_public_addr: String,
    /// The other nodes, `<node id>@<host>:<port>` each, so the cluster forms with no manual step.
    pub bootstrap_peers: Vec<String>,
    /// The S3 API.
    pub s3_api: S3Api,
    /// The web endpoint (public buckets), if served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_web: Option<S3Web>,
    /// The admin API `fedigen storage apply` drives.
    pub admin: AdminApi,
}

/// `[s3_api]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct S3Api {
    /// Where the S3 API listens.
    pub api_bind_addr: String,
    /// The region clients must sign for.
    pub s3_region: String,
    /// The domain under which `<bucket>.<root_domain>` (virtual-host style) is served; one for every node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_domain: Option<String>,
}

/// `[s3_web]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct S3Web {
    /// Where the web endpoint listens.
    pub bind_addr: String,
    /// The domain under which `<bucket>.<root_domain>` is served; one for every node.
    pub root_domain: String,
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminApi {
    /// Where the admin API listens: loopback only (the admin token unlocks the whole cluster).
    pub api_bind_addr: String,
}

impl GarageSettings {
    /// The settings as `garage.toml` text, keys sorted as Nix sorts attributes (so it reads as
    /// `pkgs.formats.toml` writes the same attribute set).
    pub fn to_toml(&self) -> String {
        // Through a TOML table, whose map is sorted: the key order of a Nix attribute set.
        let sorted = toml::Table::try_from(self).expect("settings are TOML");
        toml::to_string(&sorted).expect("settings are TOML")
    }
}

/// One `bootstrap_peers` entry: `<64-hex node id>@<host:port>`.
pub fn peer(id: &str, rpc_public_addr: &str) -> String {
    format!("{id}@{rpc_public_addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> GarageSettings {
        GarageSettings {
            metadata_dir: "/var/lib/garage/meta".into(),
            data_dir: "/var/lib/garage/data".into(),
            db_engine: "sqlite".into(),
            replication_factor: 3,
            consistency_mode: None,
            rpc_bind_addr: "[::]:3901".into(),
            rpc_public_addr: "ams1.example.org:3901".into(),
            bootstrap_peers: vec![peer(&"ab".repeat(32), "ams2.example.org:3901")],
            s3_api: S3Api {
                api_bind_addr: "[::]:3900".into(),
                s3_region: "garage".into(),
                root_domain: Some(".s3.example.org".into()),
            },
            s3_web: Some(S3Web {
                bind_addr: "[::]:3902".into(),
                root_domain: ".web.example.org".into(),
            }),
            admin: AdminApi {
                api_bind_addr: "127.0.0.1:3903".into(),
            },
        }
    }

    #[test]
    fn renders_sorted_keys_and_tables_last() {
        let text = settings().to_toml();
        let keys: Vec<&str> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split(" = ").next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "bootstrap_peers",
                "data_dir",
                "db_engine",
                "metadata_dir",
                "replication_factor",
                "rpc_bind_addr",
                "rpc_public_addr",
                "[admin]",
                "api_bind_addr",
                "[s3_api]",
                "api_bind_addr",
                "root_domain",
                "s3_region",
                "[s3_web]",
                "bind_addr",
                "root_domain",
            ],
            "{text}"
        );
        // It parses back to the same values (TOML, not just text that looks like it).
        let back: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(back["replication_factor"].as_integer(), Some(3));
        assert_eq!(
            back["bootstrap_peers"][0].as_str().unwrap(),
            format!("{}@ams2.example.org:3901", "ab".repeat(32))
        );
        assert!(!text.contains("consistency_mode"), "unset is left out");
    }
}
