//! The repro lock: what the project team's CI evaluated and built, committed next to the deployment.
//!
//! Why a file of our own: a provider must compare *its* evaluation and *its* build outputs with the ones that were
//! tested, without access to CI's store. The lock holds, per attribute, the `.drv` path, each output's path and
//! NAR hash, and the derivation closure (so closures can be diffed by package without the old `.drv` files).
//! JSON with sorted keys and a trailing newline, so that it diffs well and regenerating it is idempotent.

use super::{Error, Result};
use crate::store::Hash;
use std::collections::BTreeMap;
use std::path::Path;

/// Version of the lock format this code writes and reads.
pub const LOCK_VERSION: u32 = 1;

/// A lock file.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lock {
    /// Format version ([`LOCK_VERSION`]).
    pub version: u32,
    /// Attribute path → what was locked for it.
    pub derivations: BTreeMap<String, LockedDerivation>,
}

/// One locked attribute.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockedDerivation {
    /// The `.drv` store path the attribute evaluated to.
    #[serde(rename = "drvPath")]
    pub drv_path: String,
    /// Output name → its path and NAR hash.
    pub outputs: BTreeMap<String, LockedOutput>,
    /// Every `.drv` in the derivation closure (sorted), for `closure diff` against a lock.
    pub closure: Vec<String>,
}

/// One locked output.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockedOutput {
    /// Output store path.
    pub path: String,
    /// NAR hash of the built output (`sha256:<base32>`, as `nix-store --query --hash`), absent when the lock was
    /// written without building.
    #[serde(rename = "narHash", default, skip_serializing_if = "Option::is_none")]
    pub nar_hash: Option<Hash>,
    /// NAR size in bytes, with the hash.
    #[serde(rename = "narSize", default, skip_serializing_if = "Option::is_none")]
    pub nar_size: Option<u64>,
}

impl Lock {
    /// Reads and validates a lock file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read(path).map_err(|e| Error::Io {
            context: format!("reading lock {}", path.display()),
            source: e,
        })?;
        let lock: Lock = serde_json::from_slice(&text).map_err(|e| Error::Lock {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        if lock.version != LOCK_VERSION {
            return Err(Error::Lock {
                path: path.to_owned(),
                reason: format!(
                    "unsupported version {} (expected {LOCK_VERSION})",
                    lock.version
                ),
            });
        }
        Ok(lock)
    }

    /// The canonical text of the lock (pretty JSON, sorted keys, trailing newline).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("lock serialises");
        s.push('\n');
        s
    }

    /// Writes the lock atomically (temporary file in the same directory, then rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let io = |e| Error::Io {
            context: format!("writing lock {}", path.display()),
            source: e,
        };
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        std::io::Write::write_all(&mut tmp, self.to_json().as_bytes()).map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }
}
