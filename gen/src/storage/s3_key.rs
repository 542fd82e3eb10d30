//! Application S3 keys made by the provider: `fedigen storage s3-key --out FILE`.
//!
//! Why the provider makes them and not Garage: the secret must reach the application's machine, and a key Garage
//! generated would have to travel back from the cluster. So the provider writes one environment file per
//! operator's application, `AWS_ACCESS_KEY_ID=GK…` and `AWS_SECRET_ACCESS_KEY=…` (the form Mastodon, PeerTube,
//! Synapse's boto3 and Pixelfed read), places it on the application's machine and on the node running `fedigen
//! storage apply`, which imports it (`ImportKey`). The id is `GK` + 24 lowercase hex digits and the secret 64
//! lowercase hex digits: the one form every Garage 2.x imports (2.0 demands exactly it).

use std::path::Path;

use super::node_key::{NodeKeyError, place};

/// A fresh key: its id and its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Key {
    /// `GK` and 24 lowercase hex digits.
    pub id: String,
    /// 64 lowercase hex digits.
    pub secret: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl S3Key {
    /// A key from the operating system's randomness (12 bytes of id, 32 of secret, as Garage's own keys).
    pub fn generate() -> Result<Self, NodeKeyError> {
        let mut bytes = [0u8; 44];
        getrandom::fill(&mut bytes).map_err(|e| {
            NodeKeyError::Io(format!("no randomness from the operating system: {e}"))
        })?;
        Ok(S3Key {
            id: format!("GK{}", hex(&bytes[..12])),
            secret: hex(&bytes[12..]),
        })
    }

    /// The environment file's text.
    pub fn env_text(&self) -> String {
        format!(
            "AWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\n",
            self.id, self.secret
        )
    }

    /// Writes the environment file to `path` (mode 0600), never replacing an existing file (a key once
    /// imported keeps its secret forever: a new secret needs a new id), never half-written.
    pub fn write_new(&self, path: &Path) -> Result<(), NodeKeyError> {
        if path.symlink_metadata().is_ok() {
            return Err(NodeKeyError::Exists(path.to_owned()));
        }
        place(path, self.env_text().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::apply::resolve_key_ids;
    use crate::storage::description::{Bucket, Description, Key};

    #[test]
    fn a_written_key_is_what_apply_reads_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("uni-mastodon.env");
        let key = S3Key::generate().unwrap();
        assert!(
            crate::storage::description::is_key_id(&key.id),
            "{}",
            key.id
        );
        assert!(crate::storage::description::is_hex(&key.secret, 64));
        key.write_new(&path).unwrap();
        let description = Description::new(1)
            .with_node("a", &"ab".repeat(32), "z", 1 << 30)
            .with_bucket(Bucket {
                name: "uni-mastodon".into(),
                website: true,
                keys: vec![Key {
                    id: String::new(),
                    secret_file: path.clone(),
                    name: "uni/mastodon".into(),
                    read: true,
                    write: true,
                    owner: false,
                }],
            });
        let resolved = resolve_key_ids(&description).unwrap();
        assert_eq!(resolved.buckets[0].keys[0].id, key.id);
        let other = S3Key::generate().unwrap();
        assert!(matches!(
            other.write_new(&path),
            Err(NodeKeyError::Exists(_))
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), key.env_text());
    }

    #[test]
    fn a_key_file_without_a_valid_id_is_refused_before_anything_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.env");
        std::fs::write(&path, "AWS_ACCESS_KEY_ID=custom\nAWS_SECRET_ACCESS_KEY=x\n").unwrap();
        let description = Description::new(1).with_bucket(Bucket {
            name: "abc".into(),
            website: false,
            keys: vec![Key {
                id: String::new(),
                secret_file: path,
                name: "a/b".into(),
                read: true,
                write: false,
                owner: false,
            }],
        });
        let err = resolve_key_ids(&description).unwrap_err().to_string();
        assert!(err.contains("GK and 24 lowercase hex digits"), "{err}");
        assert!(err.contains("(found \"custom\")"), "{err}");
    }
}
