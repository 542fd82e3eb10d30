//! Garage node keys made by the provider: `fedigen storage node-key --out FILE`.
//!
//! Why the provider makes them and not Garage: a node's public key is its id, and the other nodes need that id
//! in `bootstrap_peers` before the node ever starts, so the cluster forms without a manual `garage node
//! connect`. Garage reads `metadata_dir/node_key` as libsodium's 64-byte ed25519 secret key, which is the
//! 32-byte seed followed by the 32-byte public key, and `metadata_dir/node_key.pub` as the 32-byte public key;
//! it never re-derives one from the other, so both files are written here, consistently.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;

/// A node key pair.
pub struct NodeKey {
    signing: SigningKey,
}

/// Why a node key could not be written.
#[derive(Debug)]
pub enum NodeKeyError {
    /// The file (or its `.pub`) exists: a node's identity is never replaced silently (nothing was written).
    Exists(PathBuf),
    /// The file system refused (the folder is missing, not writable…), or no randomness was available.
    Io(String),
}

impl std::fmt::Display for NodeKeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeKeyError::Exists(p) => write!(
                f,
                "{} exists: a node key is never overwritten (its public key is the node's identity); choose another path, or delete the file if the node never ran with it",
                p.display()
            ),
            NodeKeyError::Io(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for NodeKeyError {}

impl NodeKey {
    /// A new key pair from the operating system's randomness.
    pub fn generate() -> Result<Self, NodeKeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| {
            NodeKeyError::Io(format!("no randomness from the operating system: {e}"))
        })?;
        Ok(NodeKey {
            signing: SigningKey::from_bytes(&seed),
        })
    }

    /// The key pair whose 32-byte seed is `seed` (for tests that need fixed ids).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        NodeKey {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The node id: the public key as 64 lowercase hex digits, as `garage node id` prints it.
    pub fn id(&self) -> String {
        self.signing
            .verifying_key()
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The `node_key` file's bytes: seed ‖ public key (libsodium's secret key layout).
    pub fn secret_bytes(&self) -> [u8; 64] {
        self.signing.to_keypair_bytes()
    }

    /// Writes the key to `path` (mode 0600) and the public key to `path` + `.pub`, never replacing an
    /// existing file, and never leaving a half-written one: each is written to a temporary file in the same
    /// folder and then linked into place, which fails if the name exists.
    pub fn write_new(&self, path: &Path) -> Result<(), NodeKeyError> {
        self.write_new_as(path, &self.secret_bytes())
    }

    /// [`NodeKey::write_new`] with the key as 128 lowercase hex digits and a newline: the form a text secret
    /// store holds (sops' YAML and JSON values are strings); the Garage module's node-key step decodes it.
    pub fn write_new_hex(&self, path: &Path) -> Result<(), NodeKeyError> {
        let hex: String = self
            .secret_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .chain(std::iter::once("\n".to_owned()))
            .collect();
        self.write_new_as(path, hex.as_bytes())
    }

    fn write_new_as(&self, path: &Path, secret: &[u8]) -> Result<(), NodeKeyError> {
        let public = pub_path(path);
        for p in [path, public.as_path()] {
            if p.symlink_metadata().is_ok() {
                return Err(NodeKeyError::Exists(p.to_owned()));
            }
        }
        place(path, secret)?;
        if let Err(e) = place(&public, self.signing.verifying_key().as_bytes()) {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        Ok(())
    }
}

/// `node_key` → `node_key.pub`: the file Garage reads the public key from.
pub fn pub_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Writes `bytes` to a new file `path`, mode 0600, atomically and without replacing anything.
pub(crate) fn place(path: &Path, bytes: &[u8]) -> Result<(), NodeKeyError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let io = |action: &str, p: &Path, e: std::io::Error| {
        NodeKeyError::Io(format!(
            "cannot {action} {}: {}",
            p.display(),
            crate::io_error::describe(&e)
        ))
    };
    let tmp = tempfile::Builder::new()
        .prefix(".node-key-")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(|e| io("write in", dir, e))?;
    let mut file = tmp.as_file();
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io("write", tmp.path(), e))?;
    match std::fs::hard_link(tmp.path(), path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(NodeKeyError::Exists(path.to_owned()))
        }
        Err(e) => Err(io("write", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032's first test vector: the public key of this seed is known, so the id and the 64-byte layout
    /// (seed ‖ public key, what Garage's libsodium reads) are checked against an outside source.
    #[test]
    fn the_key_layout_is_seed_then_public_key() {
        let seed: [u8; 32] =
            hex32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let key = NodeKey::from_seed(seed);
        let public = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        assert_eq!(key.id(), public);
        let bytes = key.secret_bytes();
        assert_eq!(bytes[..32], seed);
        assert_eq!(bytes[32..], hex32(public));
    }

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn written_once_mode_0600_never_overwritten() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node_key");
        let key = NodeKey::generate().unwrap();
        key.write_new(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), key.secret_bytes());
        assert_eq!(
            std::fs::read(pub_path(&path)).unwrap(),
            key.secret_bytes()[32..]
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let other = NodeKey::generate().unwrap();
        assert_ne!(other.id(), key.id());
        assert!(matches!(
            other.write_new(&path),
            Err(NodeKeyError::Exists(_))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), key.secret_bytes(), "kept");
        // Only the two files: no temporary left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        // A lone .pub also blocks, before anything is written.
        let lone = dir.path().join("k2");
        std::fs::write(pub_path(&lone), b"x").unwrap();
        assert!(matches!(
            other.write_new(&lone),
            Err(NodeKeyError::Exists(_))
        ));
        assert!(!lone.exists());
    }
}
