//! Nix's base32: its own alphabet (no `e`, `o`, `u`, `t`) and its own bit order (the *last* character encodes
//! the *first* bits). Store path hashes and `nix-hash --base32` use it, so fedigen must print and read it exactly.

use super::{Error, Result};

/// The 32 characters Nix uses, in digit order. Why these: Nix omits `e o u t` to avoid forming words in paths.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Length of the base32 text for `len` bytes (`ceil(len * 8 / 5)`), as Nix computes it.
pub const fn encoded_len(len: usize) -> usize {
    if len == 0 { 0 } else { (len * 8 - 1) / 5 + 1 }
}

/// Encodes bytes in Nix base32, exactly as `nix-hash --to-base32` and store path names do.
pub fn encode(bytes: &[u8]) -> String {
    let len = encoded_len(bytes.len());
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        let lo = (bytes[i] as u16) >> j;
        let hi = if i + 1 < bytes.len() {
            (bytes[i + 1] as u16) << (8 - j)
        } else {
            0
        };
        out.push(ALPHABET[((lo | hi) & 0x1f) as usize] as char);
    }
    out
}

fn digit(c: u8) -> Option<u8> {
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u8)
}

/// Decodes Nix base32 into `encoded.len() * 5 / 8` bytes.
///
/// Why strict: a string that does not round-trip (wrong length, stray high bits, foreign characters) is
/// rejected, as Nix rejects it, so that two spellings can never denote the same hash.
pub fn decode(encoded: &str) -> Result<Vec<u8>> {
    let s = encoded.as_bytes();
    let size = s.len() * 5 / 8;
    if encoded_len(size) != s.len() {
        return Err(Error::Base32 {
            input: encoded.to_owned(),
            reason: "length is not that of any byte string",
        });
    }
    let mut out = vec![0u8; size];
    for n in 0..s.len() {
        let c = s[s.len() - n - 1];
        let d = digit(c).ok_or_else(|| Error::Base32 {
            input: encoded.to_owned(),
            reason: "character outside Nix's alphabet",
        })?;
        let b = n * 5;
        let i = b / 8;
        let j = b % 8;
        out[i] |= ((d as u16) << j) as u8;
        let carry = ((d as u16) >> (8 - j)) as u8;
        if i + 1 < size {
            out[i + 1] |= carry;
        } else if carry != 0 {
            return Err(Error::Base32 {
                input: encoded.to_owned(),
                reason: "non-zero padding bits",
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty() {
        assert_eq!(encode(&[]), "");
        assert_eq!(decode("").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn rejects_bad_input() {
        assert!(decode("e").is_err());
        assert!(decode("0e").is_err());
        // 2 chars = 10 bits -> 1 byte; top bits of the first char must be zero.
        assert!(decode("z0").is_err());
        assert!(decode("70").is_ok());
        assert!(decode("80").is_err());
    }
}
