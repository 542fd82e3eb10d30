//! Store paths and how Nix computes them (`makeStorePath` and friends in Nix 2.8's `store-api.cc`).
//!
//! Why: the repro check must know *before building* which output paths a derivation will have, and must be able
//! to say that a source was added unchanged; both need Nix's exact path computation.

use super::hash::{Hash, HashAlgo};
use super::{Error, Result, base32};
use std::collections::BTreeSet;
use std::fmt;

/// The logical store directory (`/nix/store`). Why a type: a store path's hash covers this string, so a
/// different store directory gives different paths; chroot stores (`--store /tmp/x`) keep `/nix/store`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreDir(String);

impl Default for StoreDir {
    fn default() -> Self {
        StoreDir("/nix/store".to_owned())
    }
}

impl StoreDir {
    /// A store directory other than `/nix/store` (must be absolute, without a trailing slash).
    pub fn new(dir: impl Into<String>) -> Result<Self> {
        let dir = dir.into();
        if !dir.starts_with('/') || dir.ends_with('/') {
            return Err(Error::StorePath {
                input: dir,
                reason: "store directory must be absolute, no trailing /".into(),
            });
        }
        Ok(StoreDir(dir))
    }

    /// The directory as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The absolute path of a store path in this store (`/nix/store/<hash>-<name>`).
    pub fn print(&self, path: &StorePath) -> String {
        format!("{}/{}", self.0, path)
    }

    /// Parses an absolute store path (`/nix/store/<hash>-<name>`); anything below it (`/bin/sh`) is an error.
    pub fn parse(&self, abs: &str) -> Result<StorePath> {
        let rest = abs
            .strip_prefix(&self.0)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| Error::StorePath {
                input: abs.to_owned(),
                reason: format!("not in {}", self.0),
            })?;
        StorePath::from_base_name(rest)
    }

    /// Splits an absolute path inside the store into its store path and the rest (`/bin/sh`), if it is one.
    pub fn split(&self, abs: &str) -> Option<(StorePath, String)> {
        let rest = abs.strip_prefix(&self.0)?.strip_prefix('/')?;
        let (base, sub) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        StorePath::from_base_name(base)
            .ok()
            .map(|p| (p, sub.to_owned()))
    }

    /// `makeStorePath`: `<type>:sha256:<base16 of hash>:<store dir>:<name>`, SHA-256, folded to 20 bytes.
    pub(crate) fn make_store_path(
        &self,
        path_type: &str,
        hash: &Hash,
        name: &str,
    ) -> Result<StorePath> {
        check_name(name)?;
        let s = format!(
            "{}:{}:{}:{}",
            path_type,
            hash.to_typed_base16(),
            self.0,
            name
        );
        let digest = Hash::sha256(s.as_bytes()).compress(HASH_BYTES);
        Ok(StorePath {
            hash: base32::encode(&digest),
            name: name.to_owned(),
        })
    }

    /// `makeType`: the path type string with its references (and `self`), which the hash covers.
    pub(crate) fn make_type(
        &self,
        kind: &str,
        references: &BTreeSet<StorePath>,
        self_reference: bool,
    ) -> String {
        let mut s = kind.to_owned();
        for r in references {
            s.push(':');
            s.push_str(&self.print(r));
        }
        if self_reference {
            s.push_str(":self");
        }
        s
    }

    /// The path of `builtins.toFile name contents` and of a `.drv` file: type `text` with its references.
    pub fn make_text_path(
        &self,
        name: &str,
        contents: &[u8],
        references: &BTreeSet<StorePath>,
    ) -> Result<StorePath> {
        self.make_store_path(
            &self.make_type("text", references, false),
            &Hash::sha256(contents),
            name,
        )
    }

    /// The path of a fixed-output store object: `nix-store --add` (recursive SHA-256 of the NAR),
    /// `nix-store --add-fixed [--recursive] ALGO`, `builtins.path`, fixed-output derivations.
    pub fn make_fixed_output_path(
        &self,
        method: IngestionMethod,
        hash: &Hash,
        name: &str,
        references: &BTreeSet<StorePath>,
        self_reference: bool,
    ) -> Result<StorePath> {
        if method == IngestionMethod::Recursive && hash.algo() == HashAlgo::Sha256 {
            self.make_store_path(
                &self.make_type("source", references, self_reference),
                hash,
                name,
            )
        } else {
            if !references.is_empty() || self_reference {
                return Err(Error::StorePath {
                    input: name.to_owned(),
                    reason: "only recursive SHA-256 fixed outputs may have references".into(),
                });
            }
            let inner = format!("fixed:out:{}{}:", method.prefix(), hash.to_typed_base16());
            self.make_store_path("output:out", &Hash::sha256(inner.as_bytes()), name)
        }
    }

    /// The output path of an input-addressed derivation from its hash modulo (see
    /// [`super::drv::Derivation::hash_modulo`]): `makeOutputPath` in Nix.
    pub(crate) fn make_output_path(
        &self,
        output: &str,
        drv_hash_modulo: &Hash,
        drv_name: &str,
    ) -> Result<StorePath> {
        self.make_store_path(
            &format!("output:{output}"),
            drv_hash_modulo,
            &output_path_name(drv_name, output),
        )
    }
}

/// How a fixed-output object's content was hashed. Why: the same bytes give different paths per method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngestionMethod {
    /// The hash is of the file's bytes (`--add-fixed` without `--recursive`, `outputHashMode = "flat"`).
    Flat,
    /// The hash is of the NAR serialisation (`nix-store --add`, `outputHashMode = "recursive"`).
    Recursive,
}

impl IngestionMethod {
    /// `r:` for recursive, empty for flat: the prefix Nix puts before the algorithm.
    pub fn prefix(self) -> &'static str {
        match self {
            IngestionMethod::Flat => "",
            IngestionMethod::Recursive => "r:",
        }
    }
}

/// Name of the store path of output `output` of a derivation called `drv_name` (`name` or `name-output`).
pub(crate) fn output_path_name(drv_name: &str, output: &str) -> String {
    if output == "out" {
        drv_name.to_owned()
    } else {
        format!("{drv_name}-{output}")
    }
}

const HASH_BYTES: usize = 20;
const HASH_CHARS: usize = 32;

/// A store path without its store directory: `<32 base32 chars>-<name>`.
///
/// Why hash and name kept apart: closure diffs compare by name across hashes, and derivation diffs match
/// inputs by name. Ordering equals Nix's (by base name), which `.drv` files and path hashes depend on.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StorePath {
    hash: String,
    name: String,
}

impl StorePath {
    /// Parses `<hash>-<name>` (no directory).
    pub(crate) fn from_base_name(base: &str) -> Result<Self> {
        let err = |reason: &str| Error::StorePath {
            input: base.to_owned(),
            reason: reason.to_owned(),
        };
        if base.len() < HASH_CHARS + 2 || base.as_bytes()[HASH_CHARS] != b'-' {
            return Err(err("expected <32-char hash>-<name>"));
        }
        let (hash, name) = (&base[..HASH_CHARS], &base[HASH_CHARS + 1..]);
        base32::decode(hash).map_err(|_| err("hash part is not Nix base32"))?;
        check_name(name)?;
        Ok(StorePath {
            hash: hash.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The name after the hash (`hello-2.12.drv`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.hash, self.name)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl TryFrom<String> for StorePath {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        match s.strip_prefix("/nix/store/") {
            Some(b) => StorePath::from_base_name(b),
            None => StorePath::from_base_name(&s),
        }
    }
}

impl From<StorePath> for String {
    fn from(p: StorePath) -> String {
        StoreDir::default().print(&p)
    }
}

/// Checks a store path name as Nix does: 1–211 characters of `[A-Za-z0-9+-._?=]`, not starting with `.`.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let err = |reason: &str| Error::StorePath {
        input: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() {
        return Err(err("empty name"));
    }
    if name.len() > 211 {
        return Err(err("name longer than 211 characters"));
    }
    if name.starts_with('.') {
        return Err(err("name starts with a dot"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "+-._?=".contains(*c)))
    {
        return Err(err(&format!(
            "illegal character {}",
            super::quote(&c.to_string())
        )));
    }
    Ok(())
}
