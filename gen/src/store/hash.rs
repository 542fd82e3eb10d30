//! Hashes as Nix prints and parses them (`sha256:<base32>`, bare base16, bare base32), and the XOR folding
//! Nix uses to shorten a SHA-256 to the 160 bits of a store path.

use super::{Error, Result, base32};
use sha2::Digest;
use std::fmt;

/// Hash algorithms that can appear in Nix store paths and derivations.
///
/// Why all four although fedigen computes only SHA-256/512: a `.drv` file may name any of them (a
/// fixed-output `outputHashAlgo = "sha1"`), and such files must still parse and print exactly.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum HashAlgo {
    /// MD5 (16 bytes), legacy fixed outputs only.
    Md5,
    /// SHA-1 (20 bytes), legacy fixed outputs only.
    Sha1,
    /// SHA-256 (32 bytes): NAR hashes, store paths, most fixed outputs.
    Sha256,
    /// SHA-512 (64 bytes).
    Sha512,
}

impl HashAlgo {
    /// Name as Nix spells it (`sha256`).
    pub fn name(self) -> &'static str {
        match self {
            HashAlgo::Md5 => "md5",
            HashAlgo::Sha1 => "sha1",
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Sha512 => "sha512",
        }
    }

    /// Digest length in bytes; used to tell base16 from base32 when parsing a bare hash, as Nix does.
    pub(crate) fn digest_len(self) -> usize {
        match self {
            HashAlgo::Md5 => 16,
            HashAlgo::Sha1 => 20,
            HashAlgo::Sha256 => 32,
            HashAlgo::Sha512 => 64,
        }
    }

    /// Parses `md5`, `sha1`, `sha256`, `sha512`.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "md5" => HashAlgo::Md5,
            "sha1" => HashAlgo::Sha1,
            "sha256" => HashAlgo::Sha256,
            "sha512" => HashAlgo::Sha512,
            _ => {
                return Err(Error::Hash {
                    input: s.to_owned(),
                    reason: "unknown hash algorithm".into(),
                });
            }
        })
    }
}

/// A digest together with its algorithm.
///
/// Why a type and not `[u8; 32]`: lock files and derivations carry hashes as text in several encodings; keeping
/// the algorithm attached means a SHA-1 fixed-output hash can never be compared with a SHA-256 NAR hash.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hash {
    algo: HashAlgo,
    bytes: Vec<u8>,
}

impl Hash {
    /// Wraps raw digest bytes; fails when the length does not match the algorithm.
    pub fn new(algo: HashAlgo, bytes: Vec<u8>) -> Result<Self> {
        if bytes.len() != algo.digest_len() {
            return Err(Error::Hash {
                input: hex(&bytes),
                reason: format!(
                    "{} digest must be {} bytes, got {}",
                    algo.name(),
                    algo.digest_len(),
                    bytes.len()
                ),
            });
        }
        Ok(Hash { algo, bytes })
    }

    /// SHA-256 of `data`: the hash Nix uses for store paths and NARs.
    pub fn sha256(data: &[u8]) -> Self {
        Hash {
            algo: HashAlgo::Sha256,
            bytes: sha2::Sha256::digest(data).to_vec(),
        }
    }

    /// Wraps a finished SHA-256 digest.
    pub(crate) fn from_sha256(digest: [u8; 32]) -> Self {
        Hash {
            algo: HashAlgo::Sha256,
            bytes: digest.to_vec(),
        }
    }

    /// The algorithm.
    pub(crate) fn algo(&self) -> HashAlgo {
        self.algo
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Lowercase hexadecimal, as in `.drv` files and `nix-hash --type sha256`.
    pub fn to_base16(&self) -> String {
        hex(&self.bytes)
    }

    /// Nix base32, as in `nix-hash --base32` and `nix-store --query --hash`.
    pub fn to_base32(&self) -> String {
        base32::encode(&self.bytes)
    }

    /// `sha256:<base32>`, the form `nix-store --query --hash` prints and fedigen's lock files store.
    pub(crate) fn to_typed_base32(&self) -> String {
        format!("{}:{}", self.algo.name(), self.to_base32())
    }

    /// `sha256:<base16>`, the form Nix hashes into fixed-output store paths.
    pub(crate) fn to_typed_base16(&self) -> String {
        format!("{}:{}", self.algo.name(), self.to_base16())
    }

    /// Parses a bare base16 or base32 digest of a known algorithm (the length tells which, as in Nix).
    pub(crate) fn parse_bare(algo: HashAlgo, s: &str) -> Result<Self> {
        let bytes = if s.len() == algo.digest_len() * 2 {
            unhex(s).ok_or_else(|| Error::Hash {
                input: s.to_owned(),
                reason: "invalid base16".into(),
            })?
        } else if s.len() == base32::encoded_len(algo.digest_len()) {
            base32::decode(s)?
        } else {
            return Err(Error::Hash {
                input: s.to_owned(),
                reason: format!("wrong length for {}", algo.name()),
            });
        };
        Hash::new(algo, bytes)
    }

    /// Parses `algo:digest` with the digest in base16 or base32.
    pub(crate) fn parse_typed(s: &str) -> Result<Self> {
        let (algo, rest) = s.split_once(':').ok_or_else(|| Error::Hash {
            input: s.to_owned(),
            reason: "expected <algo>:<digest>".into(),
        })?;
        Hash::parse_bare(HashAlgo::parse(algo)?, rest)
    }

    /// Folds the digest to `size` bytes by XOR, as Nix's `compressHash` does for store path hashes.
    pub(crate) fn compress(&self, size: usize) -> Vec<u8> {
        compress(&self.bytes, size)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_typed_base32())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_typed_base32())
    }
}

impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_typed_base32())
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hash::parse_typed(&s).map_err(serde::de::Error::custom)
    }
}

/// XOR-folds `bytes` into `size` bytes (Nix's `compressHash`).
pub(crate) fn compress(bytes: &[u8], size: usize) -> Vec<u8> {
    let mut out = vec![0u8; size];
    for (i, b) in bytes.iter().enumerate() {
        out[i % size] ^= b;
    }
    out
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    fn v(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2)
        .map(|p| Some(v(p[0])? << 4 | v(p[1])?))
        .collect()
}
