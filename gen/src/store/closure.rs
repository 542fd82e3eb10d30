//! Derivation closures (every `.drv` a derivation depends on) and their difference by package name and version,
//! like `nix store diff-closures` and nvd.
//!
//! Why: before a rollout a provider wants to see *what* changed between what was tested and what will be
//! deployed: packages added, removed, upgraded, or rebuilt with the same version.

use super::drv::{Derivation, real_path};
use super::path::StorePath;
use super::{Error, Result};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

/// Reads the derivation closure of `roots` (absolute `.drv` store paths) from the store rooted at `root`
/// (`/` for the system store, the `--store` directory for a chroot store).
///
/// Breadth-first; a level with many new derivations (the wide middle of a NixOS closure) is read and parsed in
/// parallel with rayon, a narrow one (a long dependency chain) on this thread, because waking worker threads
/// for one or two small files costs more than parsing them.
pub fn read_closure(root: &Path, roots: &[String]) -> Result<BTreeMap<String, Derivation>> {
    const PARALLEL_FROM: usize = 32;
    let read = |p: &String| Ok((p.clone(), Derivation::read(&real_path(root, p))?));
    let mut all: BTreeMap<String, Derivation> = BTreeMap::new();
    let mut seen: HashSet<String> = roots.iter().cloned().collect();
    let mut frontier: Vec<String> = seen.iter().cloned().collect();
    while !frontier.is_empty() {
        let parsed: Vec<(String, Derivation)> = if frontier.len() >= PARALLEL_FROM {
            frontier.par_iter().map(read).collect::<Result<_>>()?
        } else {
            frontier.iter().map(read).collect::<Result<_>>()?
        };
        frontier = Vec::new();
        for (p, d) in parsed {
            for input in d.input_drvs.keys() {
                if seen.insert(input.clone()) {
                    frontier.push(input.clone());
                }
            }
            all.insert(p, d);
        }
    }
    Ok(all)
}

/// Splits a store path name into package name and version as Nix's `DrvName` and nvd do: the version starts
/// after the first `-` that is followed by a non-letter. A trailing `.drv` is removed first.
///
/// `hello-2.12.1` → (`hello`, `2.12.1`); `busybox` → (`busybox`, ``); `perl5.36.0-JSON-4.10` →
/// (`perl5.36.0-JSON`, `4.10`).
pub fn parse_name_version(name: &str) -> (String, String) {
    let name = name.strip_suffix(".drv").unwrap_or(name);
    let b = name.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'-' && i + 1 < b.len() && !b[i + 1].is_ascii_alphabetic() {
            return (name[..i].to_owned(), name[i + 1..].to_owned());
        }
    }
    (name.to_owned(), String::new())
}

/// A package present on one side only.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Package {
    /// Package name (`hello`).
    pub name: String,
    /// Its versions on that side (several when a closure holds more than one).
    pub versions: Vec<String>,
}

/// A package whose versions differ between the two sides.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackageChange {
    /// Package name.
    pub name: String,
    /// Versions before.
    pub old: Vec<String>,
    /// Versions after.
    pub new: Vec<String>,
}

/// What changed between two closures. Why four lists: a version change is a decision someone made; a rebuild
/// with the same version is a consequence of a changed input, and reviewers treat them differently.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClosureDiff {
    /// Packages only in the new closure.
    pub added: Vec<Package>,
    /// Packages only in the old closure.
    pub removed: Vec<Package>,
    /// Packages whose versions changed.
    pub changed: Vec<PackageChange>,
    /// Packages with the same versions but different store paths (rebuilt because an input changed).
    pub rebuilt: Vec<Package>,
}

impl ClosureDiff {
    /// Whether the closures are identical.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.rebuilt.is_empty()
    }

    /// Human-readable listing, one package per line, sorted by name; deterministic.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let v = |v: &[String]| {
            if v.iter().all(String::is_empty) {
                "∅".to_owned()
            } else {
                v.join(", ")
            }
        };
        for c in &self.changed {
            s.push_str(&format!("[C] {}: {} → {}\n", c.name, v(&c.old), v(&c.new)));
        }
        for p in &self.added {
            s.push_str(&format!("[A] {}: {}\n", p.name, v(&p.versions)));
        }
        for p in &self.removed {
            s.push_str(&format!("[R] {}: {}\n", p.name, v(&p.versions)));
        }
        for p in &self.rebuilt {
            s.push_str(&format!("[B] {}: {} (rebuilt)\n", p.name, v(&p.versions)));
        }
        s.push_str(&format!(
            "{} changed, {} added, {} removed, {} rebuilt\n",
            self.changed.len(),
            self.added.len(),
            self.removed.len(),
            self.rebuilt.len()
        ));
        s
    }
}

#[derive(Default)]
struct Side {
    versions: BTreeSet<String>,
    paths: BTreeSet<StorePath>,
}

fn group<'a>(paths: impl IntoIterator<Item = &'a StorePath>) -> BTreeMap<String, Side> {
    let mut m: BTreeMap<String, Side> = BTreeMap::new();
    for p in paths {
        let (name, version) = parse_name_version(p.name());
        let e = m.entry(name).or_default();
        e.versions.insert(version);
        e.paths.insert(p.clone());
    }
    m
}

/// Compares two closures given as store paths (derivations or outputs), grouping by package name.
pub fn diff_closures<'a>(
    old: impl IntoIterator<Item = &'a StorePath>,
    new: impl IntoIterator<Item = &'a StorePath>,
) -> ClosureDiff {
    let (old, new) = (group(old), group(new));
    let mut d = ClosureDiff::default();
    let vec = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
    for (name, o) in &old {
        match new.get(name) {
            None => d.removed.push(Package {
                name: name.clone(),
                versions: vec(&o.versions),
            }),
            Some(n) if n.versions != o.versions => d.changed.push(PackageChange {
                name: name.clone(),
                old: vec(&o.versions),
                new: vec(&n.versions),
            }),
            Some(n) if n.paths != o.paths => d.rebuilt.push(Package {
                name: name.clone(),
                versions: vec(&n.versions),
            }),
            Some(_) => {}
        }
    }
    for (name, n) in &new {
        if !old.contains_key(name) {
            d.added.push(Package {
                name: name.clone(),
                versions: vec(&n.versions),
            });
        }
    }
    d
}

/// The closure of `roots` as store paths, for [`diff_closures`].
pub fn closure_paths(root: &Path, roots: &[String]) -> Result<BTreeSet<StorePath>> {
    read_closure(root, roots)?
        .keys()
        .map(|p| {
            p.strip_prefix("/nix/store/")
                .ok_or_else(|| Error::StorePath {
                    input: p.clone(),
                    reason: "not in /nix/store".into(),
                })
                .and_then(StorePath::from_base_name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_version_like_nix() {
        assert_eq!(
            parse_name_version("hello-2.12.1.drv"),
            ("hello".into(), "2.12.1".into())
        );
        assert_eq!(parse_name_version("busybox"), ("busybox".into(), "".into()));
        assert_eq!(
            parse_name_version("perl5.36.0-JSON-4.10"),
            ("perl5.36.0-JSON".into(), "4.10".into())
        );
        assert_eq!(
            parse_name_version("foo-bar-baz-1"),
            ("foo-bar-baz".into(), "1".into())
        );
    }
}
