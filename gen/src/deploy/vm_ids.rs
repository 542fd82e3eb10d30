//! `deployments/tofu/vm-ids.json`: each machine's Proxmox VM id, kept across regenerations.
//!
//! Why a committed allocation and not a hash of the name or a spec field per machine: ids must never change
//! while a machine exists (OpenTofu replaces a VM whose `vm_id` changes), must not collide, and must not come
//! back for another machine after one is removed (its backups and logs name the id). `generate` reads the file
//! and extends it; `generate --check` reports it stale and writes nothing. The operator sets only where the
//! range starts (`provider.runtime.first_vm_id`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::DEPLOYMENTS;
use crate::write::marker_text;

/// The folder of the OpenTofu configuration, under `deployments/`.
pub const TOFU_DIR: &str = "tofu";

/// The VM id allocation, in [`TOFU_DIR`].
pub const VM_IDS_FILE: &str = "vm-ids.json";

/// The first VM id given out when the specification names none: Proxmox VE's own first id.
pub const DEFAULT_FIRST_VM_ID: u32 = 100;

/// The largest VM id Proxmox VE accepts.
pub const MAX_VM_ID: u32 = 999_999_999;

/// `deployments/tofu/vm-ids.json`, relative to the repository.
pub fn vm_ids_path() -> PathBuf {
    Path::new(DEPLOYMENTS).join(TOFU_DIR).join(VM_IDS_FILE)
}

/// JSON as fedigen writes it: two-space indentation, keys sorted, a final line break.
pub(crate) fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("JSON values print");
    text.push('\n');
    text
}

/// The VM ids of machines, kept across regenerations: a machine keeps its id as long as it exists, a new machine
/// takes the next id after every id ever given out (never one a removed machine had), and a removed machine's
/// id is remembered in `retired` (a machine of that name that comes back gets it again).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmIds {
    /// The marker (`"//"`), kept out of the data.
    #[serde(rename = "//", default, skip_serializing)]
    marker: Option<String>,
    /// Machine name → VM id, for the machines planned now.
    pub machines: BTreeMap<String, u32>,
    /// Machine name → VM id, for machines that were removed: their ids are not given out again.
    #[serde(default)]
    pub retired: BTreeMap<String, u32>,
}

impl VmIds {
    /// Reads the committed allocation of the repository at `repo` (`deployments/tofu/vm-ids.json`); none when
    /// the file does not exist (a first generation). A file that is not a valid allocation is refused with its
    /// path and how to repair it, never silently replaced: replacing it would renumber the provider's VMs.
    pub fn read(repo: &Path) -> Result<Option<Self>, VmIdsError> {
        let relative = vm_ids_path();
        let path = repo.join(&relative);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(VmIdsError::Io(crate::io_error::IoError::new(
                    "read", path, e,
                )));
            }
        };
        Self::parse(&text)
            .map(Some)
            .map_err(|message| VmIdsError::Invalid {
                path: relative,
                message,
            })
    }

    /// Parses and checks an allocation: ids in Proxmox's range, no id twice, no machine both planned and
    /// retired.
    pub fn parse(text: &str) -> Result<Self, String> {
        let ids: Self = serde_json::from_str(text).map_err(|e| {
            format!(
                "line {}, column {}: {}",
                e.line(),
                e.column(),
                strip_position(&e.to_string())
            )
        })?;
        let mut seen: BTreeMap<u32, &str> = BTreeMap::new();
        for (section, name, id) in ids.entries() {
            if !(DEFAULT_FIRST_VM_ID..=MAX_VM_ID).contains(&id) {
                return Err(format!(
                    "`{section}.{name}` is {id}; Proxmox VE ids are {DEFAULT_FIRST_VM_ID} to {MAX_VM_ID}"
                ));
            }
            if let Some(other) = seen.insert(id, name) {
                return Err(format!(
                    "VM id {id} is given to both `{other}` and `{name}`; each machine needs its own"
                ));
            }
        }
        if let Some(name) = ids.machines.keys().find(|m| ids.retired.contains_key(*m)) {
            return Err(format!(
                "`{name}` is both in `machines` and in `retired`; keep it in one"
            ));
        }
        Ok(ids)
    }

    /// Every (section, machine, id) of the allocation.
    fn entries(&self) -> impl Iterator<Item = (&'static str, &str, u32)> {
        self.machines
            .iter()
            .map(|(n, id)| ("machines", n.as_str(), *id))
            .chain(
                self.retired
                    .iter()
                    .map(|(n, id)| ("retired", n.as_str(), *id)),
            )
    }

    /// The allocation for `names` (the machines planned now, in planned order) after `self` (the previous one):
    /// kept ids stay, new machines take ids after every id known (and not below `first`), in order.
    pub fn allocate<'a>(&self, names: impl IntoIterator<Item = &'a str>, first: u32) -> Self {
        let names: Vec<&str> = names.into_iter().collect();
        let mut next = self
            .entries()
            .map(|(_, _, id)| id.saturating_add(1))
            .max()
            .unwrap_or(first)
            .max(first);
        let mut machines = BTreeMap::new();
        for name in &names {
            let id = match self.machines.get(*name).or_else(|| self.retired.get(*name)) {
                Some(id) => *id,
                None => {
                    let id = next;
                    next = next.saturating_add(1);
                    id
                }
            };
            machines.insert((*name).to_owned(), id);
        }
        let retired = self
            .entries()
            .filter(|(_, name, _)| !machines.contains_key(*name))
            .map(|(_, name, id)| (name.to_owned(), id))
            .collect();
        Self {
            marker: None,
            machines,
            retired,
        }
    }

    /// The allocation as the generated file: the marker first, then the ids.
    pub(super) fn to_text(&self, spec_name: &str) -> String {
        let value = json!({
            "//": format!(
                "{} Machine name → Proxmox VM id: ids are kept while a machine exists and never given to \
                 another machine; commit this file and never delete it (a lost allocation renumbers the VMs).",
                marker_text(&format!("{spec_name} (Proxmox VM ids)"))
            ),
            "machines": self.machines,
            "retired": self.retired,
        });
        pretty(&value)
    }
}

/// A serde_json message without its ` at line L column C` tail (the place is said first).
fn strip_position(message: &str) -> &str {
    message
        .rfind(" at line ")
        .map_or(message, |at| &message[..at])
}

/// Why the committed VM id allocation could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VmIdsError {
    /// The file could not be read: the environment's fault.
    #[error(transparent)]
    Io(#[from] crate::io_error::IoError),
    /// The file is not a valid allocation.
    #[error(
        "{}: {message}. This file keeps each machine's Proxmox VM id; restore it from version control (`git \
         checkout -- {}`) or repair it by hand: fedigen will not replace it, as that would renumber the VMs",
        path.display(),
        path.display()
    )]
    Invalid {
        /// The file, relative to the repository.
        path: PathBuf,
        /// What is wrong, with the line and column.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn an_allocation_keeps_ids_and_never_reuses_a_removed_machines() {
        let first = VmIds::default().allocate(["a", "b", "c"], 100);
        assert_eq!(
            first.machines,
            BTreeMap::from([("a".into(), 100), ("b".into(), 101), ("c".into(), 102)])
        );
        // `b` removed and `d` added in one regeneration: `d` does not get 101.
        let second = first.allocate(["a", "c", "d"], 100);
        assert_eq!(second.machines["a"], 100);
        assert_eq!(second.machines["c"], 102);
        assert_eq!(second.machines["d"], 103);
        assert_eq!(second.retired, BTreeMap::from([("b".into(), 101)]));
        // `b` comes back: its own id again.
        let third = second.allocate(["a", "b", "c", "d"], 100);
        assert_eq!(third.machines["b"], 101);
        assert!(third.retired.is_empty());
        // A higher first id leaves existing ids alone.
        let fourth = third.allocate(["a", "e"], 5000);
        assert_eq!(fourth.machines["a"], 100);
        assert_eq!(fourth.machines["e"], 5000);
    }

    #[test]
    fn the_allocation_file_reads_back_as_written_and_bad_files_are_refused() {
        let ids = VmIds::default()
            .allocate(["a", "b"], 100)
            .allocate(["b"], 100);
        let text = ids.to_text("examples/provider.toml");
        assert!(text.starts_with(crate::write::JSON_MARKER), "{text}");
        assert_eq!(VmIds::parse(&text).unwrap().allocate(["b"], 100), ids);
        for (bad, says) in [
            (r#"{"machines": {"a": 100, "b": 100}}"#, "given to both"),
            (r#"{"machines": {"a": 99}}"#, "Proxmox VE ids are 100"),
            (
                r#"{"machines": {"a": 100}, "retired": {"a": 100}}"#,
                "given to both",
            ),
            (
                r#"{"machines": {"a": 100}, "retired": {"a": 101}}"#,
                "both in `machines`",
            ),
            (r#"{"machines": {"a": "x"}}"#, "line 1, column"),
            (r#"{"machines": {}, "extra": 1}"#, "unknown field"),
        ] {
            let error = VmIds::parse(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    proptest! {
        /// Across any sequence of regenerations (machines added and removed), a machine's id never changes
        /// while it exists, no two machines ever share an id, and an id once given is never given to another
        /// machine.
        #[test]
        fn ids_are_stable_unique_and_never_reused(
            generations in proptest::collection::vec(
                proptest::collection::btree_set("[a-h]", 0..6), 1..8),
            first in 100u32..2000,
        ) {
            let mut ids = VmIds::default();
            let mut owner: BTreeMap<u32, String> = BTreeMap::new();
            let mut last: BTreeMap<String, u32> = BTreeMap::new();
            for names in &generations {
                ids = ids.allocate(names.iter().map(String::as_str), first);
                prop_assert_eq!(ids.machines.keys().collect::<BTreeSet<_>>(), names.iter().collect());
                let unique: BTreeSet<u32> = ids.machines.values().copied().collect();
                prop_assert_eq!(unique.len(), ids.machines.len());
                for (name, id) in &ids.machines {
                    prop_assert!(*id >= first);
                    if let Some(before) = owner.insert(*id, name.clone()) {
                        prop_assert_eq!(&before, name, "id {} given to another machine", id);
                    }
                    if let Some(previous) = last.get(name) {
                        prop_assert_eq!(previous, id, "{} was renumbered", name);
                    }
                }
                for (name, id) in &ids.machines {
                    last.insert(name.clone(), *id);
                }
                // The file round-trips.
                let text = ids.to_text("spec.toml");
                prop_assert_eq!(&VmIds::parse(&text).unwrap().allocate(names.iter().map(String::as_str), first), &ids);
            }
        }
    }
}
