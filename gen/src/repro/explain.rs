//! Why two derivations differ, down to the root cause: walk both `.drv` files, pair their inputs by name, and
//! recurse into changed inputs, as nix-diff does.
//!
//! Why: "the drv path differs from the lock" tells a provider nothing; "`mastodon` changed because `ruby`'s
//! `configureFlags` changed" tells them what to look at. A change that only replaces input store paths
//! (`only_input_paths`) is a consequence, not a cause, and root causes skip it.

use crate::store::drv::{Derivation, real_path};
use crate::store::path::StorePath;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

/// How one derivation differs from another, with its changed inputs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DrvDiff {
    /// Derivation name (`hello-2.12`).
    pub name: String,
    /// The old `.drv` path.
    pub old: String,
    /// The new `.drv` path.
    pub new: String,
    /// Differences in this derivation itself.
    pub changes: Vec<Change>,
    /// Changed input derivations, paired by name.
    pub inputs: Vec<DrvDiff>,
    /// This pair was already explained elsewhere in the tree (shared input); not expanded again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repeated: bool,
}

/// One difference inside a derivation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "field", rename_all = "snake_case")]
pub enum Change {
    /// The set of output names changed, or a fixed output's expected hash.
    Output {
        /// Output name.
        name: String,
        /// `algo:hash` before (empty when not fixed), `None` when absent.
        old: Option<String>,
        /// After.
        new: Option<String>,
    },
    /// `system` changed.
    Platform {
        /// Before.
        old: String,
        /// After.
        new: String,
    },
    /// The builder program changed.
    Builder {
        /// Before.
        old: String,
        /// After.
        new: String,
        /// Equal once store path hashes and versions are ignored (an echo of changed inputs).
        only_input_paths: bool,
    },
    /// The builder arguments changed.
    Args {
        /// Before.
        old: Vec<String>,
        /// After.
        new: Vec<String>,
        /// Equal once store path hashes and versions are ignored (an echo of changed inputs).
        only_input_paths: bool,
    },
    /// An environment variable was added, removed or changed.
    Env {
        /// Variable name.
        name: String,
        /// Before (`None`: added).
        old: Option<String>,
        /// After (`None`: removed).
        new: Option<String>,
        /// Equal once store path hashes and versions are ignored (an echo of changed inputs).
        only_input_paths: bool,
    },
    /// An input source (a file added to the store) was added, removed or has new contents.
    Source {
        /// Store path name of the source.
        name: String,
        /// Before.
        old: Option<String>,
        /// After.
        new: Option<String>,
    },
    /// An input derivation without a counterpart of the same name was added or removed.
    Input {
        /// Derivation name.
        name: String,
        /// Before.
        old: Option<String>,
        /// After.
        new: Option<String>,
    },
    /// The outputs used from an input derivation changed.
    InputOutputs {
        /// Input derivation name.
        name: String,
        /// Before.
        old: Vec<String>,
        /// After.
        new: Vec<String>,
    },
    /// The old `.drv` file is not in this store, so the walk stops here.
    Unavailable {
        /// Why.
        reason: String,
    },
}

impl Change {
    /// Whether this change can cause a rebuild by itself (and is not only the echo of a changed input).
    pub fn is_cause(&self) -> bool {
        match self {
            Change::Builder {
                only_input_paths, ..
            }
            | Change::Args {
                only_input_paths, ..
            }
            | Change::Env {
                only_input_paths, ..
            } => !only_input_paths,
            _ => true,
        }
    }
}

/// Replaces every `/nix/store/<hash>-<name-version>` in `s` by `/nix/store/<hash>-<name>`, so that values that
/// differ only by input paths (new hashes, new versions of the same input) compare equal.
pub(crate) fn without_store_hashes(s: &str) -> String {
    const PREFIX: &str = "/nix/store/";
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(PREFIX) {
        out.push_str(&rest[..i + PREFIX.len()]);
        rest = &rest[i + PREFIX.len()..];
        let b = rest.as_bytes();
        if b.len() > 32
            && b[32] == b'-'
            && b[..32]
                .iter()
                .all(|c| crate::store::base32::ALPHABET.contains(c))
        {
            let name_len = b[33..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || b"+-._?=".contains(c))
                .count();
            let (pname, _) = crate::store::closure::parse_name_version(&rest[33..33 + name_len]);
            out.push_str("<hash>-");
            out.push_str(&pname);
            rest = &rest[33 + name_len..];
        }
    }
    out.push_str(rest);
    out
}

/// Inputs are paired by package name without version, so `lib-1.0` → `lib-1.1` is one changed input.
fn pairing_key(p: &str) -> String {
    crate::store::closure::parse_name_version(&drv_name(p)).0
}

fn drv_name(p: &str) -> String {
    let base = p.rsplit('/').next().unwrap_or(p);
    StorePath::from_base_name(base)
        .map(|sp| sp.name().trim_end_matches(".drv").to_owned())
        .unwrap_or_else(|_| base.to_owned())
}

/// Explains how `.drv` `new` differs from `old`, reading both from the store rooted at `root`.
///
/// A missing or unreadable old file becomes a [`Change::Unavailable`] (the lock may come from another machine);
/// a missing new file is an error.
pub fn explain(root: &Path, old: &str, new: &str) -> Result<DrvDiff, crate::store::Error> {
    let mut seen = HashSet::new();
    explain_inner(root, old, new, &mut seen)
}

fn explain_inner(
    root: &Path,
    old: &str,
    new: &str,
    seen: &mut HashSet<(String, String)>,
) -> Result<DrvDiff, crate::store::Error> {
    let mut diff = DrvDiff {
        name: drv_name(new),
        old: old.to_owned(),
        new: new.to_owned(),
        changes: vec![],
        inputs: vec![],
        repeated: false,
    };
    if !seen.insert((old.to_owned(), new.to_owned())) {
        diff.repeated = true;
        return Ok(diff);
    }
    let n = Derivation::read(&real_path(root, new))?;
    let o = match Derivation::read(&real_path(root, old)) {
        Ok(o) => o,
        Err(e) => {
            diff.changes.push(Change::Unavailable {
                reason: e.to_string(),
            });
            return Ok(diff);
        }
    };
    let fixed = |d: &Derivation| -> BTreeMap<String, String> {
        d.outputs
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    if v.hash.is_empty() {
                        String::new()
                    } else {
                        format!("{}:{}", v.hash_algo, v.hash)
                    },
                )
            })
            .collect()
    };
    let (fo, fn_) = (fixed(&o), fixed(&n));
    for k in fo.keys().chain(fn_.keys()).collect::<BTreeSet<_>>() {
        if fo.get(k) != fn_.get(k) {
            diff.changes.push(Change::Output {
                name: k.clone(),
                old: fo.get(k).cloned(),
                new: fn_.get(k).cloned(),
            });
        }
    }
    if o.platform != n.platform {
        diff.changes.push(Change::Platform {
            old: o.platform.clone(),
            new: n.platform.clone(),
        });
    }
    if o.builder != n.builder {
        let only = without_store_hashes(&o.builder) == without_store_hashes(&n.builder);
        diff.changes.push(Change::Builder {
            old: o.builder.clone(),
            new: n.builder.clone(),
            only_input_paths: only,
        });
    }
    if o.args != n.args {
        let norm = |a: &[String]| {
            a.iter()
                .map(|s| without_store_hashes(s))
                .collect::<Vec<_>>()
        };
        let only = norm(&o.args) == norm(&n.args);
        diff.changes.push(Change::Args {
            old: o.args.clone(),
            new: n.args.clone(),
            only_input_paths: only,
        });
    }
    for k in o.env.keys().chain(n.env.keys()).collect::<BTreeSet<_>>() {
        let (a, b) = (o.env.get(k), n.env.get(k));
        if a != b {
            let only = match (a, b) {
                (Some(a), Some(b)) => without_store_hashes(a) == without_store_hashes(b),
                _ => false,
            };
            diff.changes.push(Change::Env {
                name: k.clone(),
                old: a.cloned(),
                new: b.cloned(),
                only_input_paths: only,
            });
        }
    }
    // Sources, paired by store path name.
    let by_name = |set: &BTreeSet<String>| -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in set {
            m.entry(pairing_key(p)).or_default().push(p.clone());
        }
        m
    };
    let (so, sn) = (by_name(&o.input_srcs), by_name(&n.input_srcs));
    for name in so.keys().chain(sn.keys()).collect::<BTreeSet<_>>() {
        let (a, b) = (
            so.get(name).cloned().unwrap_or_default(),
            sn.get(name).cloned().unwrap_or_default(),
        );
        for (x, y) in pair(a, b) {
            diff.changes.push(Change::Source {
                name: name.clone(),
                old: x,
                new: y,
            });
        }
    }
    // Input derivations, paired by name; recurse into changed pairs.
    let group = |m: &BTreeMap<String, BTreeSet<String>>| -> BTreeMap<String, Vec<String>> {
        let mut g: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in m.keys() {
            g.entry(pairing_key(p)).or_default().push(p.clone());
        }
        g
    };
    let (io, inn) = (group(&o.input_drvs), group(&n.input_drvs));
    for name in io.keys().chain(inn.keys()).collect::<BTreeSet<_>>() {
        let (a, b) = (
            io.get(name).cloned().unwrap_or_default(),
            inn.get(name).cloned().unwrap_or_default(),
        );
        // Unchanged paths: only the outputs used may differ.
        for p in a.iter().filter(|p| b.contains(p)) {
            let (x, y) = (&o.input_drvs[p], &n.input_drvs[p]);
            if x != y {
                diff.changes.push(Change::InputOutputs {
                    name: name.clone(),
                    old: x.iter().cloned().collect(),
                    new: y.iter().cloned().collect(),
                });
            }
        }
        for (x, y) in pair(a, b) {
            match (x, y) {
                (Some(x), Some(y)) => diff.inputs.push(explain_inner(root, &x, &y, seen)?),
                (x, y) => diff.changes.push(Change::Input {
                    name: name.clone(),
                    old: x,
                    new: y,
                }),
            }
        }
    }
    Ok(diff)
}

/// Pairs the elements of `a` and `b` not present in both, in sorted order; leftovers pair with `None`.
fn pair(a: Vec<String>, b: Vec<String>) -> Vec<(Option<String>, Option<String>)> {
    let only_a: Vec<String> = a.iter().filter(|x| !b.contains(x)).cloned().collect();
    let only_b: Vec<String> = b.iter().filter(|x| !a.contains(x)).cloned().collect();
    let n = only_a.len().max(only_b.len());
    (0..n)
        .map(|i| (only_a.get(i).cloned(), only_b.get(i).cloned()))
        .collect()
}

impl DrvDiff {
    /// The derivations where a change originates: those with a change that is a cause by itself
    /// ([`Change::is_cause`]), or whose difference no changed input explains.
    pub fn root_causes(&self) -> Vec<&DrvDiff> {
        let mut v = Vec::new();
        self.collect_causes(&mut v);
        v
    }

    fn collect_causes<'a>(&'a self, v: &mut Vec<&'a DrvDiff>) {
        if self.repeated {
            return;
        }
        if self.changes.iter().any(Change::is_cause) || self.inputs.is_empty() {
            v.push(self);
        }
        for i in &self.inputs {
            i.collect_causes(v);
        }
    }

    /// An indented tree for people: each changed derivation, its own changes, then its changed inputs.
    pub fn render(&self) -> String {
        let mut s = String::new();
        self.render_into(&mut s, 0);
        s
    }

    fn render_into(&self, s: &mut String, depth: usize) {
        let pad = "  ".repeat(depth);
        s.push_str(&format!(
            "{pad}{}: {} → {}{}\n",
            self.name,
            self.old,
            self.new,
            if self.repeated { " (see above)" } else { "" }
        ));
        for c in &self.changes {
            let line = match c {
                Change::Output { name, old, new } => {
                    format!("output {name}: {} → {}", opt(old), opt(new))
                }
                Change::Platform { old, new } => format!("system: {old} → {new}"),
                Change::Builder {
                    old,
                    new,
                    only_input_paths,
                } => format!(
                    "builder: {} → {}{}",
                    short(old),
                    short(new),
                    echo(*only_input_paths)
                ),
                Change::Args {
                    old,
                    new,
                    only_input_paths,
                } => {
                    format!(
                        "args: {} → {}{}",
                        short(&json_list(old)),
                        short(&json_list(new)),
                        echo(*only_input_paths)
                    )
                }
                Change::Env {
                    name,
                    old,
                    new,
                    only_input_paths,
                } => {
                    format!(
                        "env {name}: {} → {}{}",
                        short(&opt(old)),
                        short(&opt(new)),
                        echo(*only_input_paths)
                    )
                }
                Change::Source { name, old, new } => {
                    format!("source {name}: {} → {}", opt(old), opt(new))
                }
                Change::Input { name, old, new } => {
                    format!("input {name}: {} → {}", opt(old), opt(new))
                }
                Change::InputOutputs { name, old, new } => {
                    format!(
                        "outputs used from {name}: {} → {}",
                        old.join(", "),
                        new.join(", ")
                    )
                }
                Change::Unavailable { reason } => {
                    format!("old derivation not available here: {reason}")
                }
            };
            s.push_str(&format!("{pad}  - {line}\n"));
        }
        for i in &self.inputs {
            i.render_into(s, depth + 1);
        }
    }
}

/// A value for people: quoted as a JSON string (escapes visible), or `(none)`.
fn opt(v: &Option<String>) -> String {
    v.as_deref()
        .map(crate::store::quote)
        .unwrap_or_else(|| "(none)".into())
}

/// A list of strings for people, as JSON.
fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).expect("strings serialise")
}

fn echo(only: bool) -> &'static str {
    if only { " (store paths only)" } else { "" }
}

fn short(s: &str) -> String {
    const MAX: usize = 160;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(MAX).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::without_store_hashes;

    #[test]
    fn store_paths_are_normalised_to_package_names() {
        let a = "echo /nix/store/0a8a3k2b6dmvqdkrv2c4a3a4lq1pqh2v-lib-1.0/bin/x > $out";
        let b = "echo /nix/store/1b8a3k2b6dmvqdkrv2c4a3a4lq1pqh2v-lib-1.1/bin/x > $out";
        assert_eq!(
            without_store_hashes(a),
            "echo /nix/store/<hash>-lib/bin/x > $out"
        );
        assert_eq!(without_store_hashes(a), without_store_hashes(b));
        assert_ne!(
            without_store_hashes(a),
            without_store_hashes(&b.replace("lib-", "other-"))
        );
        assert_eq!(without_store_hashes("/nix/store/short"), "/nix/store/short");
    }
}
