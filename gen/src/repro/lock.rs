//! The repro lock: what the project team's CI evaluated and built, committed next to the deployment.
//!
//! Why a file of our own: a provider must compare *its* evaluation and *its* build outputs with the ones that were
//! tested, without access to CI's store. The lock holds, per attribute, the `.drv` path, each output's path and
//! NAR hash, the derivation closure (so closures can be diffed by package without the old `.drv` files), and,
//! when built, the runtime closure of the outputs with NAR sizes (what `closure diff` compares by default).
//! JSON with sorted keys and a trailing newline, so that it diffs well and regenerating it is idempotent.
//!
//! Keys are snake_case, as in `repro check --json`'s report (one style for both). Version 1 locks, written with
//! Nix's camelCase keys (`drvPath`, `narHash`, `narSize`), are still read.

use super::{Error, Result};
use crate::store::Hash;
use std::collections::BTreeMap;
use std::path::Path;

/// Version of the lock format this code writes (2: snake_case keys, runtime closures).
pub(crate) const LOCK_VERSION: u32 = 2;

/// Versions this code reads (1: camelCase keys, no runtime closures).
pub(crate) const READABLE_VERSIONS: [u32; 2] = [1, 2];

/// A lock file.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lock {
    /// Format version (`LOCK_VERSION`).
    pub version: u32,
    /// Attribute path → what was locked for it.
    pub derivations: BTreeMap<String, LockedDerivation>,
}

/// One locked attribute.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockedDerivation {
    /// The `.drv` store path the attribute evaluated to.
    #[serde(alias = "drvPath")]
    pub drv_path: String,
    /// Output name → its path and NAR hash.
    pub outputs: BTreeMap<String, LockedOutput>,
    /// Every `.drv` in the derivation closure (sorted), for `closure diff --build-time` against a lock.
    pub closure: Vec<String>,
    /// Every store path the built outputs need at run time (their references, transitively, outputs
    /// included) → its NAR size in bytes; what is deployed, for `closure diff` against a lock. Absent when the
    /// lock was written without building (or by a version 1 fedigen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_closure: Option<BTreeMap<String, u64>>,
}

/// One locked output.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockedOutput {
    /// Output store path.
    pub path: String,
    /// NAR hash of the built output (`sha256:<base32>`, as `nix-store --query --hash`), absent when the lock was
    /// written without building.
    #[serde(alias = "narHash", default, skip_serializing_if = "Option::is_none")]
    pub nar_hash: Option<Hash>,
    /// NAR size in bytes, with the hash.
    #[serde(alias = "narSize", default, skip_serializing_if = "Option::is_none")]
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
        if !READABLE_VERSIONS.contains(&lock.version) {
            return Err(Error::Lock {
                path: path.to_owned(),
                reason: format!(
                    "unsupported version {} (this fedigen reads versions 1 and 2; a newer fedigen wrote it?)",
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Version 1 locks (camelCase keys, as fedigen wrote them before) still read; new locks are snake_case.
    #[test]
    fn old_camel_case_locks_read_and_new_ones_are_snake_case() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.json");
        std::fs::write(
            &old,
            r#"{"version":1,"derivations":{"a":{"drvPath":"/nix/store/00000000000000000000000000000000-a.drv",
"outputs":{"out":{"path":"/nix/store/11111111111111111111111111111111-a",
"narHash":"sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s","narSize":120}},"closure":[]}}}"#,
        )
        .unwrap();
        let lock = Lock::read(&old).unwrap();
        let a = &lock.derivations["a"];
        assert_eq!(
            a.drv_path,
            "/nix/store/00000000000000000000000000000000-a.drv"
        );
        assert_eq!(a.outputs["out"].nar_size, Some(120));
        assert!(a.outputs["out"].nar_hash.is_some());
        assert_eq!(a.runtime_closure, None);
        let new = Lock {
            version: LOCK_VERSION,
            ..lock
        }
        .to_json();
        for key in ["drv_path", "nar_hash", "nar_size"] {
            assert!(new.contains(&format!("\"{key}\"")), "{new}");
        }
        for key in ["drvPath", "narHash", "narSize"] {
            assert!(!new.contains(key), "{new}");
        }
    }
}
