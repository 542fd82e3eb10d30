//! Which files differ between two builds of one output (`<out>` and the `<out>.check` kept by
//! `nix-build --check --keep-failed`).
//!
//! Why: "output differs" is not actionable; "`share/doc/index.html`, 4012 vs 4013 bytes, first difference at byte
//! 1290" is. Deeper, format-aware analysis is diffoscope's job: `diffoscope_command` hands it over when installed.

use crate::store::Error as StoreError;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One difference between the two trees.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileDifference {
    /// Path relative to the output root (`.` for the root itself).
    pub path: String,
    /// What differs.
    #[serde(flatten)]
    pub kind: DifferenceKind,
}

/// Kinds of difference, most specific first.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "difference", rename_all = "snake_case")]
pub enum DifferenceKind {
    /// Same regular file, different bytes.
    Contents {
        /// Size in the first build.
        old_size: u64,
        /// Size in the second build.
        new_size: u64,
        /// Offset of the first differing byte (the shorter length when one is a prefix of the other).
        first_difference: u64,
    },
    /// Only the executable bit differs.
    Executable {
        /// Executable in the first build.
        old: bool,
        /// Executable in the second build.
        new: bool,
    },
    /// Symlink targets differ.
    SymlinkTarget {
        /// Target in the first build.
        old: String,
        /// Target in the second build.
        new: String,
    },
    /// File types differ (file, directory, symlink).
    Type {
        /// Type in the first build.
        old: String,
        /// Type in the second build.
        new: String,
    },
    /// Present only in the first build.
    OnlyInFirst,
    /// Present only in the second build.
    OnlyInSecond,
}

fn kind(m: &fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "directory"
    } else if t.is_file() {
        "file"
    } else {
        "other"
    }
}

/// Compares two trees; differences come sorted by path (deterministic).
pub(crate) fn diff_trees(first: &Path, second: &Path) -> Result<Vec<FileDifference>, StoreError> {
    let mut out = Vec::new();
    walk(first, second, ".", &mut out)?;
    Ok(out)
}

fn walk(a: &Path, b: &Path, rel: &str, out: &mut Vec<FileDifference>) -> Result<(), StoreError> {
    let ma = fs::symlink_metadata(a).map_err(|e| StoreError::io(a, e))?;
    let mb = fs::symlink_metadata(b).map_err(|e| StoreError::io(b, e))?;
    let push = |out: &mut Vec<FileDifference>, kind| {
        out.push(FileDifference {
            path: rel.to_owned(),
            kind,
        })
    };
    let (ka, kb) = (kind(&ma), kind(&mb));
    if ka != kb {
        push(
            out,
            DifferenceKind::Type {
                old: ka.into(),
                new: kb.into(),
            },
        );
        return Ok(());
    }
    match ka {
        "symlink" => {
            let ta = fs::read_link(a).map_err(|e| StoreError::io(a, e))?;
            let tb = fs::read_link(b).map_err(|e| StoreError::io(b, e))?;
            if ta != tb {
                push(
                    out,
                    DifferenceKind::SymlinkTarget {
                        old: ta.display().to_string(),
                        new: tb.display().to_string(),
                    },
                );
            }
        }
        "file" => {
            if let Some(off) = first_difference(a, b)? {
                push(
                    out,
                    DifferenceKind::Contents {
                        old_size: ma.len(),
                        new_size: mb.len(),
                        first_difference: off,
                    },
                );
            }
            let (xa, xb) = (ma.mode() & 0o100 != 0, mb.mode() & 0o100 != 0);
            if xa != xb {
                push(out, DifferenceKind::Executable { old: xa, new: xb });
            }
        }
        "directory" => {
            let names = |d: &Path| -> Result<std::collections::BTreeSet<Vec<u8>>, StoreError> {
                use std::os::unix::ffi::OsStringExt;
                fs::read_dir(d)
                    .map_err(|e| StoreError::io(d, e))?
                    .map(|e| {
                        e.map(|e| e.file_name().into_vec())
                            .map_err(|e| StoreError::io(d, e))
                    })
                    .collect()
            };
            let (na, nb) = (names(a)?, names(b)?);
            for n in na.union(&nb) {
                let name = String::from_utf8_lossy(n);
                let child = if rel == "." {
                    name.into_owned()
                } else {
                    format!("{rel}/{name}")
                };
                use std::os::unix::ffi::OsStrExt;
                let os = std::ffi::OsStr::from_bytes(n);
                match (na.contains(n), nb.contains(n)) {
                    (true, true) => walk(&a.join(os), &b.join(os), &child, out)?,
                    (true, false) => out.push(FileDifference {
                        path: child,
                        kind: DifferenceKind::OnlyInFirst,
                    }),
                    _ => out.push(FileDifference {
                        path: child,
                        kind: DifferenceKind::OnlyInSecond,
                    }),
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Offset of the first differing byte of two files, `None` when identical.
fn first_difference(a: &Path, b: &Path) -> Result<Option<u64>, StoreError> {
    use std::io::Read;
    let mut fa = fs::File::open(a).map_err(|e| StoreError::io(a, e))?;
    let mut fb = fs::File::open(b).map_err(|e| StoreError::io(b, e))?;
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    let mut off = 0u64;
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(|e| StoreError::io(a, e))?;
        let nb = read_full(&mut fb, &mut bb).map_err(|e| StoreError::io(b, e))?;
        let n = na.min(nb);
        if let Some(i) = ba[..n].iter().zip(&bb[..n]).position(|(x, y)| x != y) {
            return Ok(Some(off + i as u64));
        }
        if na != nb {
            return Ok(Some(off + n as u64));
        }
        if na == 0 {
            return Ok(None);
        }
        off += n as u64;
    }

    fn read_full(f: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    }
}

/// `diffoscope FIRST SECOND` when diffoscope is on `PATH`: the command a person should run next.
pub(crate) fn diffoscope_command(first: &Path, second: &Path) -> Option<String> {
    diffoscope_in(std::env::var_os("PATH").as_deref(), first, second)
}

/// `diffoscope_command` with an explicit search path (testable without touching the environment).
pub fn diffoscope_in(
    search_path: Option<&std::ffi::OsStr>,
    first: &Path,
    second: &Path,
) -> Option<String> {
    let found = search_path
        .map(|p| std::env::split_paths(p).any(|d| d.join("diffoscope").is_file()))
        .unwrap_or(false);
    found.then(|| format!("diffoscope {} {}", first.display(), second.display()))
}

/// Where `nix-build --check --keep-failed` leaves the second build of an output.
pub fn check_path(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".check");
    PathBuf::from(s)
}
