//! The Nix store formats fedigen needs to prove what was built: Nix's base32, store path computation, NAR
//! serialisation and hashing, and `.drv` files in ATerm form.
//!
//! Why write them here: the crates.io `nix-compat` is an empty placeholder, and reproducibility checks must not
//! depend on shelling out to `nix-hash` for every path. Every format in this module is proven byte-for-byte
//! against Debian's Nix 2.8 by the `store_*` integration tests (`nix-store --dump`, `nix-hash`,
//! `nix-store --add`, `nix-store --add-fixed`, `nix-instantiate`).
//!
//! Boundaries: this module only computes and parses; it never runs Nix. Running Nix (evaluation, builds) is the
//! job of [`crate::repro`].

pub mod base32;
pub mod closure;
pub mod drv;
pub mod hash;
pub mod nar;
mod nar_fs;
pub mod path;

pub use base32::{decode as base32_decode, encode as base32_encode};
pub use drv::{Derivation, DerivationOutput};
pub use hash::{Hash, HashAlgo};
pub use nar::{NarNode, dump_path, nar_hash_path, nar_hash_paths};
pub use path::{StoreDir, StorePath};

use std::path::PathBuf;

/// Everything that can go wrong while computing or parsing store formats, with enough context to act on it.
///
/// Why one enum: callers (the repro check, the CLI) report these to people, so each variant carries the path or
/// the offending input rather than a bare I/O error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A string is not valid Nix base32 for the expected length.
    #[error("invalid Nix base32 {}: {reason}", quote(input))]
    Base32 {
        /// The rejected text.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A hash string (base16, base32, SRI or `algo:…`) could not be parsed.
    #[error("invalid hash {}: {reason}", quote(input))]
    Hash {
        /// The rejected text.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A store path or store path name is malformed.
    #[error("invalid store path {}: {reason}", quote(input))]
    StorePath {
        /// The rejected text.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading the filesystem tree failed while serialising it.
    #[error("cannot read {}: {}", path.display(), crate::io_error::describe(source))]
    Io {
        /// The file or directory being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file type that NAR cannot represent (socket, device, FIFO).
    #[error(
        "{path}: unsupported file type for a NAR (only regular files, symlinks and directories)"
    )]
    UnsupportedFileType {
        /// The offending path.
        path: PathBuf,
    },
    /// A NAR stream is malformed.
    #[error("invalid NAR at byte {offset}: {reason}")]
    Nar {
        /// Byte offset in the NAR stream where the problem was found.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A `.drv` file is not valid ATerm.
    #[error("invalid derivation{}: at byte {offset}: {reason}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Drv {
        /// The file, when known.
        path: Option<PathBuf>,
        /// Byte offset of the problem.
        offset: usize,
        /// What was expected.
        reason: String,
    },
}

/// Result type of the store module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Text from the outside quoted for a message to people: a JSON string (`"a\tb"`), so control characters and
/// quotes are visible and unambiguous — never Rust's debug formatting.
pub fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offending input is quoted as JSON (control characters visible), never with Rust's debug formatting.
    #[test]
    fn messages_quote_input_without_rust_debug_formatting() {
        let e = Error::StorePath {
            input: "a\u{7}b'".into(),
            reason: "illegal character".into(),
        };
        assert_eq!(
            e.to_string(),
            "invalid store path \"a\\u0007b'\": illegal character"
        );
        let bad =
            path::StorePath::from_base_name("00000000000000000000000000000000-a\u{7}").unwrap_err();
        assert!(
            bad.to_string().contains("illegal character \"\\u0007\""),
            "{bad}"
        );
        assert!(!bad.to_string().contains("\\u{7}"), "{bad}");
    }
}
