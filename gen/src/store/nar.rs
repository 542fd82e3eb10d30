//! NAR (Nix ARchive): the canonical serialisation of a filesystem tree whose SHA-256 is a store path's NAR hash.
//!
//! Why here: the repro check compares output NAR hashes with a lock file, over whole closures; spawning
//! `nix-hash` per path is slow and cannot run in parallel cheaply. The writer streams from the filesystem (large
//! files never sit in memory) and [`nar_hash_paths`] hashes several store paths in parallel (rayon). The reader
//! validates every rule Nix enforces (sorted unique names, zero padding), so that a NAR that parses re-serialises
//! to the same bytes.
//!
//! Format (Nix 2.8 `archive.cc`): every token is a string: little-endian u64 length, bytes, zero padding to 8.
//! `nix-archive-1 ( type regular [executable ""] contents <bytes> )`, `( type symlink target <t> )`,
//! `( type directory entry ( name <n> node <node> ) … )`, entries sorted by name bytes.

use super::hash::Hash;
use super::{Error, Result, nar_fs};
use rayon::prelude::*;
use sha2::Digest;
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const MAGIC: &[u8] = b"nix-archive-1";

/// A filesystem tree held in memory, exactly as much as a NAR can express.
///
/// Why: property tests generate trees, write them as NARs and to disk, and compare with Nix; the parser returns
/// one to inspect an archive. Directory entries are a `BTreeMap` of raw name bytes, so iteration order is NAR
/// order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NarNode {
    /// A regular file; `executable` is the owner-execute bit (the only mode bit NAR keeps).
    Regular {
        /// Whether the file is executable.
        executable: bool,
        /// The file's bytes.
        contents: Vec<u8>,
    },
    /// A symbolic link and its target bytes (not followed).
    Symlink {
        /// Link target, uninterpreted.
        target: Vec<u8>,
    },
    /// A directory; names are non-empty, not `.`/`..`, contain no `/` or NUL.
    Directory(BTreeMap<Vec<u8>, NarNode>),
}

/// Writes NAR tokens to any `Write`; why a separate type: both the filesystem dumper and [`NarNode`] use it.
struct Tokens<W: Write> {
    w: W,
}

impl<W: Write> Tokens<W> {
    fn str(&mut self, s: &[u8]) -> io::Result<()> {
        self.w.write_all(&(s.len() as u64).to_le_bytes())?;
        self.w.write_all(s)?;
        self.pad(s.len() as u64)
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let p = (8 - (len % 8) as usize) % 8;
        self.w.write_all(&[0u8; 8][..p])
    }
}

impl NarNode {
    /// Serialises the tree as a complete NAR.
    pub(crate) fn write_nar(&self, w: impl Write) -> io::Result<()> {
        let mut t = Tokens { w };
        t.str(MAGIC)?;
        self.write_node(&mut t)
    }

    /// The NAR bytes of this tree.
    pub fn to_nar(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_nar(&mut v)
            .expect("writing to a Vec cannot fail");
        v
    }

    fn write_node<W: Write>(&self, t: &mut Tokens<W>) -> io::Result<()> {
        t.str(b"(")?;
        t.str(b"type")?;
        match self {
            NarNode::Regular {
                executable,
                contents,
            } => {
                t.str(b"regular")?;
                if *executable {
                    t.str(b"executable")?;
                    t.str(b"")?;
                }
                t.str(b"contents")?;
                t.str(contents)?;
            }
            NarNode::Symlink { target } => {
                t.str(b"symlink")?;
                t.str(b"target")?;
                t.str(target)?;
            }
            NarNode::Directory(entries) => {
                t.str(b"directory")?;
                for (name, node) in entries {
                    t.str(b"entry")?;
                    t.str(b"(")?;
                    t.str(b"name")?;
                    t.str(name)?;
                    t.str(b"node")?;
                    node.write_node(t)?;
                    t.str(b")")?;
                }
            }
        }
        t.str(b")")
    }

    /// Reads a tree from the filesystem into memory (symlinks not followed). For tests and small trees;
    /// use [`dump_path`] to stream large ones.
    pub fn from_path(path: &Path) -> Result<Self> {
        let meta = fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(path).map_err(|e| Error::io(path, e))?;
            Ok(NarNode::Symlink {
                target: target.into_os_string().into_vec(),
            })
        } else if ft.is_file() {
            let contents = fs::read(path).map_err(|e| Error::io(path, e))?;
            Ok(NarNode::Regular {
                executable: meta.mode() & 0o100 != 0,
                contents,
            })
        } else if ft.is_dir() {
            let mut entries = BTreeMap::new();
            for e in fs::read_dir(path).map_err(|e| Error::io(path, e))? {
                let e = e.map_err(|e| Error::io(path, e))?;
                entries.insert(e.file_name().into_vec(), NarNode::from_path(&e.path())?);
            }
            Ok(NarNode::Directory(entries))
        } else {
            Err(Error::UnsupportedFileType {
                path: path.to_owned(),
            })
        }
    }

    /// Creates the tree at `path` (which must not exist), like `nix-store --restore`.
    pub fn restore(&self, path: &Path) -> Result<()> {
        match self {
            NarNode::Regular {
                executable,
                contents,
            } => {
                fs::write(path, contents).map_err(|e| Error::io(path, e))?;
                let mode = if *executable { 0o555 } else { 0o444 };
                fs::set_permissions(path, fs::Permissions::from_mode(mode))
                    .map_err(|e| Error::io(path, e))
            }
            NarNode::Symlink { target } => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), path)
                    .map_err(|e| Error::io(path, e))
            }
            NarNode::Directory(entries) => {
                fs::create_dir(path).map_err(|e| Error::io(path, e))?;
                for (name, node) in entries {
                    node.restore(&path.join(std::ffi::OsStr::from_bytes(name)))?;
                }
                Ok(())
            }
        }
    }
}

/// Streams the NAR serialisation of the filesystem tree at `path` into `out`, like `nix-store --dump`.
///
/// Why streaming: store outputs can be gigabytes; memory stays at one read buffer. Returns the number of
/// bytes written.
pub fn dump_path(path: &Path, out: impl Write) -> Result<u64> {
    nar_fs::dump(path, &mut nar_fs::WriteSink::new(out))
}

/// SHA-256 of the NAR of `path` and the NAR's size: what `nix-hash --type sha256 PATH` and
/// `nix-store --query --hash` report.
///
/// Why two threads: reading many small files is system-call bound and SHA-256 is CPU bound; this thread walks
/// and reads (straight into the hasher's buffers) while a second one hashes, with up to 64 MiB between them.
pub fn nar_hash_path(path: &Path) -> Result<(Hash, u64)> {
    let mut h = nar_fs::PipelinedHasher::new(nar_fs::CHUNK, nar_fs::QUEUE_BYTES);
    let size = nar_fs::dump(path, &mut h)?;
    Ok((
        Hash::from_sha256(h.finish().map_err(|e| Error::io(path, e))?),
        size,
    ))
}

/// [`nar_hash_path`] on the calling thread only (for callers that already parallelise across paths).
pub(crate) fn nar_hash_path_single_thread(path: &Path) -> Result<(Hash, u64)> {
    let mut s = nar_fs::WriteSink::new(nar_fs::HashWriter(sha2::Sha256::new()));
    let size = nar_fs::dump(path, &mut s)?;
    Ok((Hash::from_sha256(s.w.0.finalize().into()), size))
}

/// NAR hashes of many paths, computed in parallel on rayon's pool; results are in the order of `paths`.
///
/// Why parallel across paths: a NAR hash is one sequential SHA-256 stream, but a closure has many store
/// paths, so this scales with cores while each hash stays streaming. A single path uses the two-thread
/// pipeline of [`nar_hash_path`] instead.
pub fn nar_hash_paths(paths: &[PathBuf]) -> Vec<Result<(Hash, u64)>> {
    if paths.len() == 1 {
        return vec![nar_hash_path(&paths[0])];
    }
    paths
        .par_iter()
        .map(|p| nar_hash_path_single_thread(p))
        .collect()
}

/// Parses a complete NAR from `r` into a tree, enforcing Nix's rules; trailing bytes are an error.
pub fn parse_nar(r: impl Read) -> Result<NarNode> {
    let mut p = Parser { r, off: 0 };
    p.expect(MAGIC)?;
    let node = p.node(0)?;
    let mut extra = [0u8; 1];
    match p.r.read(&mut extra) {
        Ok(0) => Ok(node),
        Ok(_) => Err(p.err("trailing bytes after the archive")),
        Err(e) => Err(p.err(&e.to_string())),
    }
}

struct Parser<R: Read> {
    r: R,
    off: u64,
}

/// Longest token other than file contents and symlink targets; guards against absurd allocations.
const MAX_TOKEN: u64 = 1 << 40;

impl<R: Read> Parser<R> {
    fn err(&self, reason: &str) -> Error {
        Error::Nar {
            offset: self.off,
            reason: reason.to_owned(),
        }
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.r
            .read_exact(buf)
            .map_err(|e| self.err(&format!("unexpected end: {e}")))?;
        self.off += buf.len() as u64;
        Ok(())
    }

    fn string(&mut self) -> Result<Vec<u8>> {
        let mut len = [0u8; 8];
        self.exact(&mut len)?;
        let len = u64::from_le_bytes(len);
        if len > MAX_TOKEN {
            return Err(self.err("string length too large"));
        }
        let mut s = Vec::new();
        let start = self.off;
        (&mut self.r)
            .take(len)
            .read_to_end(&mut s)
            .map_err(|e| self.err(&e.to_string()))?;
        self.off += s.len() as u64;
        if s.len() as u64 != len {
            return Err(Error::Nar {
                offset: start,
                reason: "unexpected end inside a string".into(),
            });
        }
        let p = ((8 - len % 8) % 8) as usize;
        let mut pad = [0u8; 8];
        self.exact(&mut pad[..p])?;
        if pad[..p].iter().any(|&b| b != 0) {
            return Err(self.err("non-zero padding"));
        }
        Ok(s)
    }

    fn expect(&mut self, want: &[u8]) -> Result<()> {
        let at = self.off;
        let got = self.string()?;
        if got != want {
            return Err(Error::Nar {
                offset: at,
                reason: format!(
                    "expected {}, got {}",
                    super::quote(&String::from_utf8_lossy(want)),
                    super::quote(&String::from_utf8_lossy(&got))
                ),
            });
        }
        Ok(())
    }

    fn node(&mut self, depth: usize) -> Result<NarNode> {
        if depth > 1024 {
            return Err(self.err("directory nesting too deep"));
        }
        self.expect(b"(")?;
        self.expect(b"type")?;
        let at = self.off;
        let node = match self.string()?.as_slice() {
            b"regular" => {
                let mut tag = self.string()?;
                let executable = tag == b"executable";
                if executable {
                    self.expect(b"")?;
                    tag = self.string()?;
                }
                if tag != b"contents" {
                    return Err(self.err("expected \"contents\""));
                }
                NarNode::Regular {
                    executable,
                    contents: self.string()?,
                }
            }
            b"symlink" => {
                self.expect(b"target")?;
                NarNode::Symlink {
                    target: self.string()?,
                }
            }
            b"directory" => {
                let mut entries = BTreeMap::new();
                let mut prev: Option<Vec<u8>> = None;
                loop {
                    let tag_at = self.off;
                    match self.string()?.as_slice() {
                        b")" => return Ok(NarNode::Directory(entries)),
                        b"entry" => {}
                        _ => {
                            return Err(Error::Nar {
                                offset: tag_at,
                                reason: "expected \"entry\" or \")\"".into(),
                            });
                        }
                    }
                    self.expect(b"(")?;
                    self.expect(b"name")?;
                    let name_at = self.off;
                    let name = self.string()?;
                    if name.is_empty()
                        || name == b"."
                        || name == b".."
                        || name.contains(&b'/')
                        || name.contains(&0)
                    {
                        return Err(Error::Nar {
                            offset: name_at,
                            reason: format!(
                                "invalid entry name {}",
                                super::quote(&String::from_utf8_lossy(&name))
                            ),
                        });
                    }
                    if prev.as_ref().is_some_and(|p| p >= &name) {
                        return Err(Error::Nar {
                            offset: name_at,
                            reason: "entries not sorted or duplicated".into(),
                        });
                    }
                    self.expect(b"node")?;
                    let child = self.node(depth + 1)?;
                    self.expect(b")")?;
                    prev = Some(name.clone());
                    entries.insert(name, child);
                }
            }
            other => {
                return Err(Error::Nar {
                    offset: at,
                    reason: format!(
                        "unknown node type {}",
                        super::quote(&String::from_utf8_lossy(other))
                    ),
                });
            }
        };
        self.expect(b")")?;
        Ok(node)
    }
}
