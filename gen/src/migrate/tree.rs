//! Directories: making a target folder exactly a copy of a source folder (files, folders, symbolic links and
//! their modes; owners too when run as root), and the checksum manifest that proves two folders are the same.
//!
//! The copy is incremental the way rsync is: a file whose size and modification time (to the nanosecond) match
//! is left alone, so the copy after the freeze moves only what changed since the bulk copy. Every file is
//! written beside its place and renamed over it, with its mode and time set first, so a copy killed at any
//! moment leaves whole files only (and a temporary file the next copy removes, since the source has none).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::io_error::IoError;

/// One entry of a folder, as the manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Entry {
    /// A folder and its permission bits.
    Dir {
        /// Permission bits (`0o7777` of the mode).
        mode: u32,
    },
    /// A regular file: its permission bits, size and SHA-256.
    File {
        /// Permission bits.
        mode: u32,
        /// Size in bytes.
        size: u64,
        /// SHA-256 of the content, hex.
        sha256: String,
    },
    /// A symbolic link and where it points (never followed).
    Symlink {
        /// The link's text.
        target: String,
    },
}

/// A folder's checksum manifest: every entry below it by relative path (`""` is the folder itself).
pub type Manifest = BTreeMap<String, Entry>;

/// What a copy did, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    /// Files written (new or changed).
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Entries removed from the target because the source no longer has them.
    pub removed: u64,
}

/// The checksum manifest of `root`.
pub fn manifest(root: &Path) -> Result<Manifest, IoError> {
    let mut out = Manifest::new();
    let meta = fs::symlink_metadata(root).map_err(|e| IoError::new("read", root, e))?;
    if !meta.is_dir() {
        return Err(IoError::new(
            "read the folder",
            root,
            std::io::Error::from(std::io::ErrorKind::NotADirectory),
        ));
    }
    walk(root, "", &mut out)?;
    Ok(out)
}

fn walk(path: &Path, relative: &str, out: &mut Manifest) -> Result<(), IoError> {
    let meta = fs::symlink_metadata(path).map_err(|e| IoError::new("read", path, e))?;
    let mode = meta.permissions().mode() & 0o7777;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(path).map_err(|e| IoError::new("read the link", path, e))?;
        out.insert(
            relative.to_owned(),
            Entry::Symlink {
                target: target.to_string_lossy().into_owned(),
            },
        );
    } else if ft.is_dir() {
        out.insert(relative.to_owned(), Entry::Dir { mode });
        for name in sorted_names(path)? {
            let child = if relative.is_empty() {
                name.clone()
            } else {
                format!("{relative}/{name}")
            };
            walk(&path.join(&name), &child, out)?;
        }
    } else if ft.is_file() {
        out.insert(
            relative.to_owned(),
            Entry::File {
                mode,
                size: meta.len(),
                sha256: hash_file(path)?,
            },
        );
    } else {
        return Err(special(path));
    }
    Ok(())
}

fn special(path: &Path) -> IoError {
    IoError::new(
        "copy (a socket, pipe or device is not state; remove it or leave its folder out)",
        path,
        std::io::Error::from(std::io::ErrorKind::Unsupported),
    )
}

fn sorted_names(dir: &Path) -> Result<Vec<String>, IoError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| IoError::new("list", dir, e))? {
        let entry = entry.map_err(|e| IoError::new("list", dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

fn hash_file(path: &Path) -> Result<String, IoError> {
    let mut file = fs::File::open(path).map_err(|e| IoError::new("read", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| IoError::new("read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Makes `target` exactly a copy of `source` (created when missing). Returns what it wrote.
pub fn sync(source: &Path, target: &Path) -> Result<Copied, IoError> {
    let meta = fs::symlink_metadata(source).map_err(|e| IoError::new("read", source, e))?;
    if !meta.is_dir() {
        return Err(IoError::new(
            "copy the folder",
            source,
            std::io::Error::from(std::io::ErrorKind::NotADirectory),
        ));
    }
    let mut copied = Copied::default();
    sync_dir(source, target, &meta, &mut copied)?;
    Ok(copied)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn own(path: &Path, meta: &fs::Metadata) -> Result<(), IoError> {
    if is_root() {
        std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))
            .map_err(|e| IoError::new("change the owner of", path, e))?;
    }
    Ok(())
}

fn sync_dir(
    source: &Path,
    target: &Path,
    meta: &fs::Metadata,
    copied: &mut Copied,
) -> Result<(), IoError> {
    match fs::symlink_metadata(target) {
        Ok(t) if t.is_dir() => {}
        Ok(_) => {
            fs::remove_file(target).map_err(|e| IoError::new("remove", target, e))?;
            copied.removed += 1;
            fs::create_dir(target).map_err(|e| IoError::new("create", target, e))?;
        }
        Err(_) => fs::create_dir_all(target).map_err(|e| IoError::new("create", target, e))?,
    }
    let names = sorted_names(source)?;
    for name in &names {
        let (from, to) = (source.join(name), target.join(name));
        let m = fs::symlink_metadata(&from).map_err(|e| IoError::new("read", &from, e))?;
        let ft = m.file_type();
        if ft.is_dir() {
            sync_dir(&from, &to, &m, copied)?;
        } else if ft.is_symlink() {
            let link = fs::read_link(&from).map_err(|e| IoError::new("read the link", &from, e))?;
            if fs::read_link(&to).ok().as_ref() != Some(&link) {
                let tmp = target.join(format!(".{name}.fedigen-tmp"));
                let _ = fs::remove_file(&tmp);
                std::os::unix::fs::symlink(&link, &tmp)
                    .map_err(|e| IoError::new("create the link", &tmp, e))?;
                own(&tmp, &m)?;
                replace(&tmp, &to)?;
                copied.files += 1;
            }
        } else if ft.is_file() {
            let same = fs::symlink_metadata(&to).is_ok_and(|t| {
                t.is_file()
                    && t.len() == m.len()
                    && t.mtime() == m.mtime()
                    && t.mtime_nsec() == m.mtime_nsec()
            });
            if same {
                let t = fs::symlink_metadata(&to).map_err(|e| IoError::new("read", &to, e))?;
                if t.permissions().mode() & 0o7777 != m.permissions().mode() & 0o7777 {
                    fs::set_permissions(&to, m.permissions())
                        .map_err(|e| IoError::new("change the mode of", &to, e))?;
                }
                if is_root() && (t.uid(), t.gid()) != (m.uid(), m.gid()) {
                    own(&to, &m)?;
                }
            } else {
                let tmp = target.join(format!(".{name}.fedigen-tmp"));
                let _ = fs::remove_file(&tmp);
                let bytes = fs::copy(&from, &tmp).map_err(|e| IoError::new("copy", &from, e))?;
                let file = fs::OpenOptions::new()
                    .write(true)
                    .open(&tmp)
                    .map_err(|e| IoError::new("open", &tmp, e))?;
                let times = fs::FileTimes::new()
                    .set_modified(m.modified().map_err(|e| IoError::new("read", &from, e))?)
                    .set_accessed(m.accessed().map_err(|e| IoError::new("read", &from, e))?);
                file.set_times(times)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| IoError::new("write", &tmp, e))?;
                drop(file);
                fs::set_permissions(&tmp, m.permissions())
                    .map_err(|e| IoError::new("change the mode of", &tmp, e))?;
                own(&tmp, &m)?;
                replace(&tmp, &to)?;
                copied.files += 1;
                copied.bytes += bytes;
            }
        } else {
            return Err(special(&from));
        }
    }
    // What the source no longer has (and temporary files of a killed copy) goes.
    for name in sorted_names(target)? {
        if !names.contains(&name) {
            let path = target.join(&name);
            let m = fs::symlink_metadata(&path).map_err(|e| IoError::new("read", &path, e))?;
            if m.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            }
            .map_err(|e| IoError::new("remove", &path, e))?;
            copied.removed += 1;
        }
    }
    if fs::symlink_metadata(target)
        .map(|t| t.permissions().mode() & 0o7777)
        .ok()
        != Some(meta.permissions().mode() & 0o7777)
    {
        fs::set_permissions(target, meta.permissions())
            .map_err(|e| IoError::new("change the mode of", target, e))?;
    }
    own(target, meta)?;
    Ok(())
}

/// Renames `tmp` over `to`; a folder in the way is removed first.
fn replace(tmp: &Path, to: &Path) -> Result<(), IoError> {
    if fs::symlink_metadata(to).is_ok_and(|t| t.is_dir()) {
        fs::remove_dir_all(to).map_err(|e| IoError::new("remove", to, e))?;
    }
    fs::rename(tmp, to).map_err(|e| IoError::new("replace", to, e))
}

/// The differences between two manifests, one line each (`only at the source: a/b`), sorted by path.
pub fn differences(source: &Manifest, target: &Manifest) -> Vec<String> {
    let mut out = Vec::new();
    let show = |p: &str| {
        if p.is_empty() {
            ".".to_owned()
        } else {
            p.to_owned()
        }
    };
    for (path, entry) in source {
        match target.get(path) {
            None => out.push(format!("only at the source: {}", show(path))),
            Some(other) if other != entry => out.push(format!(
                "differs: {} ({})",
                show(path),
                what_differs(entry, other)
            )),
            Some(_) => {}
        }
    }
    for path in target.keys().filter(|p| !source.contains_key(*p)) {
        out.push(format!("only at the target: {}", show(path)));
    }
    out
}

fn what_differs(a: &Entry, b: &Entry) -> String {
    match (a, b) {
        (
            Entry::File {
                mode: m1,
                size: s1,
                sha256: h1,
            },
            Entry::File {
                mode: m2,
                size: s2,
                sha256: h2,
            },
        ) => {
            let mut parts = Vec::new();
            if h1 != h2 {
                parts.push(format!(
                    "content: {s1} bytes against {s2} bytes, other SHA-256"
                ));
            }
            if m1 != m2 {
                parts.push(format!("mode {m1:04o} against {m2:04o}"));
            }
            parts.join(", ")
        }
        (Entry::Dir { mode: m1 }, Entry::Dir { mode: m2 }) => {
            format!("mode {m1:04o} against {m2:04o}")
        }
        (Entry::Symlink { target: t1 }, Entry::Symlink { target: t2 }) => {
            format!("link to `{t1}` against `{t2}`")
        }
        _ => format!("{} against {}", kind(a), kind(b)),
    }
}

fn kind(e: &Entry) -> &'static str {
    match e {
        Entry::Dir { .. } => "a folder",
        Entry::File { .. } => "a file",
        Entry::Symlink { .. } => "a link",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(root: &Path) {
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/f.txt"), "hello").unwrap();
        fs::write(root.join("empty"), "").unwrap();
        fs::set_permissions(root.join("empty"), fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink("a/b/f.txt", root.join("link")).unwrap();
        std::os::unix::fs::symlink("/nowhere", root.join("dangling")).unwrap();
        fs::set_permissions(root.join("a"), fs::Permissions::from_mode(0o750)).unwrap();
    }

    #[test]
    fn a_copy_is_equal_and_a_second_copy_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        seed(&a);
        let first = sync(&a, &b).unwrap();
        assert_eq!(first.files, 4);
        assert_eq!(
            differences(&manifest(&a).unwrap(), &manifest(&b).unwrap()),
            Vec::<String>::new()
        );
        assert_eq!(sync(&a, &b).unwrap(), Copied::default());
    }

    #[test]
    fn the_delta_moves_changes_and_removals_and_the_report_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        seed(&a);
        sync(&a, &b).unwrap();
        fs::write(a.join("a/b/f.txt"), "hello, world").unwrap();
        fs::remove_file(a.join("empty")).unwrap();
        fs::create_dir(a.join("empty")).unwrap();
        fs::remove_file(a.join("link")).unwrap();
        std::os::unix::fs::symlink("elsewhere", a.join("link")).unwrap();
        fs::write(b.join(".x.fedigen-tmp"), "left by a killed copy").unwrap();
        let found = differences(&manifest(&a).unwrap(), &manifest(&b).unwrap());
        assert_eq!(
            found,
            [
                "differs: a/b/f.txt (content: 12 bytes against 5 bytes, other SHA-256)",
                "differs: empty (a folder against a file)",
                "differs: link (link to `elsewhere` against `a/b/f.txt`)",
                "only at the target: .x.fedigen-tmp",
            ]
        );
        let delta = sync(&a, &b).unwrap();
        assert_eq!((delta.files, delta.removed), (2, 2));
        assert!(differences(&manifest(&a).unwrap(), &manifest(&b).unwrap()).is_empty());
    }
}
