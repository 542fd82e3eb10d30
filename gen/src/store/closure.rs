//! Closures and their difference by package name and version, like `nix store diff-closures` and nvd: runtime
//! closures (built outputs and every store path they refer to, with NAR sizes — what is deployed) and
//! derivation closures (every `.drv` a derivation depends on — what is built, build-only inputs included).
//!
//! This module computes; the references and sizes of runtime closures come from the store through
//! `crate::repro::nix` (which runs Nix).
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
pub(crate) fn parse_name_version(name: &str) -> (String, String) {
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
    /// NAR size of its store paths on that side, in bytes (runtime closures only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// A package on both sides whose store paths differ: versions changed, or rebuilt with the same versions.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackageChange {
    /// Package name.
    pub name: String,
    /// Versions before.
    pub old: Vec<String>,
    /// Versions after.
    pub new: Vec<String>,
    /// NAR size of its store paths before, in bytes (runtime closures only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_size: Option<u64>,
    /// NAR size after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_size: Option<u64>,
}

/// The total NAR size of both closures, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SizeChange {
    /// Size of the old closure.
    pub old: u64,
    /// Size of the new closure.
    pub new: u64,
}

/// What changed between two closures. Why four lists: a version change is a decision someone made; a rebuild
/// with the same version is a consequence of a changed input, and reviewers treat them differently. Sizes are
/// there for runtime closures (what is deployed: built outputs and their references), not for build-time
/// closures of derivations.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClosureDiff {
    /// Packages only in the new closure.
    pub added: Vec<Package>,
    /// Packages only in the old closure.
    pub removed: Vec<Package>,
    /// Packages whose versions changed.
    pub changed: Vec<PackageChange>,
    /// Packages with the same versions but different store paths (rebuilt because an input changed).
    pub rebuilt: Vec<PackageChange>,
    /// Total NAR sizes of the two closures (runtime closures only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<SizeChange>,
}

/// A size in bytes for people, in binary units as nvd and `nix store diff-closures` print them: `512 B`,
/// `1.5 KiB`, `12.3 MiB`.
pub(crate) fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A size change for people, always signed: `+1.5 KiB`, `-512 B`, `+0 B`.
pub(crate) fn format_delta(old: u64, new: u64) -> String {
    if new >= old {
        format!("+{}", format_size(new - old))
    } else {
        format!("-{}", format_size(old - new))
    }
}

impl ClosureDiff {
    /// Whether the closures are identical.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.rebuilt.is_empty()
    }

    /// Human-readable listing, one package per line, sorted by name, with size changes when known; deterministic.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let v = |v: &[String]| {
            if v.iter().all(String::is_empty) {
                "∅".to_owned()
            } else {
                v.join(", ")
            }
        };
        let delta = |old: Option<u64>, new: Option<u64>| match (old, new) {
            (Some(o), Some(n)) => format!(", {}", format_delta(o, n)),
            _ => String::new(),
        };
        for c in &self.changed {
            s.push_str(&format!(
                "[C] {}: {} → {}{}\n",
                c.name,
                v(&c.old),
                v(&c.new),
                delta(c.old_size, c.new_size)
            ));
        }
        for p in &self.added {
            s.push_str(&format!(
                "[A] {}: {}{}\n",
                p.name,
                v(&p.versions),
                delta(p.size.map(|_| 0), p.size)
            ));
        }
        for p in &self.removed {
            s.push_str(&format!(
                "[R] {}: {}{}\n",
                p.name,
                v(&p.versions),
                delta(p.size, p.size.map(|_| 0))
            ));
        }
        for c in &self.rebuilt {
            s.push_str(&format!(
                "[B] {}: {} (rebuilt){}\n",
                c.name,
                v(&c.new),
                delta(c.old_size, c.new_size)
            ));
        }
        s.push_str(&format!(
            "{} changed, {} added, {} removed, {} rebuilt\n",
            self.changed.len(),
            self.added.len(),
            self.removed.len(),
            self.rebuilt.len()
        ));
        if let Some(size) = self.size {
            s.push_str(&format!(
                "closure size: {} → {} ({})\n",
                format_size(size.old),
                format_size(size.new),
                format_delta(size.old, size.new)
            ));
        }
        s
    }
}

#[derive(Default)]
struct Side {
    versions: BTreeSet<String>,
    paths: BTreeSet<StorePath>,
    size: Option<u64>,
}

fn group<'a>(
    paths: impl IntoIterator<Item = (&'a StorePath, Option<u64>)>,
) -> BTreeMap<String, Side> {
    let mut m: BTreeMap<String, Side> = BTreeMap::new();
    for (p, size) in paths {
        let (name, version) = parse_name_version(p.name());
        let e = m.entry(name).or_default();
        e.versions.insert(version);
        e.paths.insert(p.clone());
        if let Some(size) = size {
            e.size = Some(e.size.unwrap_or(0) + size);
        }
    }
    m
}

fn diff_grouped(old: BTreeMap<String, Side>, new: BTreeMap<String, Side>) -> ClosureDiff {
    let mut d = ClosureDiff::default();
    let vec = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
    let change = |name: &String, o: &Side, n: &Side| PackageChange {
        name: name.clone(),
        old: vec(&o.versions),
        new: vec(&n.versions),
        old_size: o.size,
        new_size: n.size,
    };
    for (name, o) in &old {
        match new.get(name) {
            None => d.removed.push(Package {
                name: name.clone(),
                versions: vec(&o.versions),
                size: o.size,
            }),
            Some(n) if n.versions != o.versions => d.changed.push(change(name, o, n)),
            Some(n) if n.paths != o.paths => d.rebuilt.push(change(name, o, n)),
            Some(_) => {}
        }
    }
    for (name, n) in &new {
        if !old.contains_key(name) {
            d.added.push(Package {
                name: name.clone(),
                versions: vec(&n.versions),
                size: n.size,
            });
        }
    }
    d
}

/// Compares two build-time closures given as store paths (derivations, or outputs without sizes), grouping by
/// package name.
pub(crate) fn diff_closures<'a>(
    old: impl IntoIterator<Item = &'a StorePath>,
    new: impl IntoIterator<Item = &'a StorePath>,
) -> ClosureDiff {
    diff_grouped(
        group(old.into_iter().map(|p| (p, None))),
        group(new.into_iter().map(|p| (p, None))),
    )
}

/// Compares two runtime closures (store path → NAR size), grouping by package name, with the size change of
/// every package and of the whole closure, as nvd does.
pub(crate) fn diff_runtime_closures(
    old: &BTreeMap<StorePath, u64>,
    new: &BTreeMap<StorePath, u64>,
) -> ClosureDiff {
    let mut d = diff_grouped(
        group(old.iter().map(|(p, s)| (p, Some(*s)))),
        group(new.iter().map(|(p, s)| (p, Some(*s)))),
    );
    d.size = Some(SizeChange {
        old: old.values().sum(),
        new: new.values().sum(),
    });
    d
}

/// The closure of `roots` as store paths, for [`diff_closures`].
pub(crate) fn closure_paths(root: &Path, roots: &[String]) -> Result<BTreeSet<StorePath>> {
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

    fn sp(s: &str) -> StorePath {
        StorePath::from_base_name(s).unwrap()
    }

    /// Sizes per package and in total; a package whose paths changed with the same version is rebuilt, with
    /// its size change; a package present on one side counts its whole size.
    #[test]
    fn runtime_diff_has_package_and_total_sizes() {
        let old = BTreeMap::from([
            (sp("00000000000000000000000000000000-app-2"), 1000),
            (sp("11111111111111111111111111111111-rt-1.0"), 2048),
            (sp("22222222222222222222222222222222-gone-1"), 10),
        ]);
        let new = BTreeMap::from([
            (sp("33333333333333333333333333333333-app-2"), 1000),
            (sp("44444444444444444444444444444444-rt-1.0"), 4096),
            (sp("55555555555555555555555555555555-fresh-3"), 7),
        ]);
        let d = diff_runtime_closures(&old, &new);
        assert_eq!(
            d.size,
            Some(SizeChange {
                old: 3058,
                new: 5103
            })
        );
        let rebuilt: Vec<_> = d
            .rebuilt
            .iter()
            .map(|c| (c.name.as_str(), c.old_size, c.new_size))
            .collect();
        assert_eq!(
            rebuilt,
            [
                ("app", Some(1000), Some(1000)),
                ("rt", Some(2048), Some(4096))
            ]
        );
        assert_eq!(d.added[0].size, Some(7));
        assert_eq!(d.removed[0].size, Some(10));
        let text = d.render();
        for line in [
            "[B] rt: 1.0 (rebuilt), +2.0 KiB\n",
            "[B] app: 2 (rebuilt), +0 B\n",
            "[A] fresh: 3, +7 B\n",
            "[R] gone: 1, -10 B\n",
            "closure size: 3.0 KiB → 5.0 KiB (+2.0 KiB)\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        // Build-time diffs have no sizes.
        let build = diff_closures(old.keys(), new.keys());
        assert_eq!(build.size, None);
        assert!(
            !build.render().contains("closure size"),
            "{}",
            build.render()
        );
    }

    #[test]
    fn sizes_read_like_nvd() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(format_delta(10, 4), "-6 B");
    }

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
