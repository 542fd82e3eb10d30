//! The data file of a shared VM test: one operator's data for `vm-tests/generated/lib/deployment.nix` or
//! `lib/migration.nix`, which read it with `builtins.fromJSON`, build the nodes from it and hand the script its part
//! as one JSON value. What a rendered test refused, its data refuses too, here, for both tests.

use serde::Serialize;

use crate::nix::value::{DataPolicy, check_serialize};

/// The names the shared tests' scripts bind at their top level: lib/common.nix's helpers and imports, the loops'
/// variables. The test driver declares every node as a typed global of its Python name (the type stub of nixpkgs'
/// `nixos/lib/testing/driver.nix`, which mypy checks the script against), so a script binding a node's name to
/// something else does not build; and `client`, the node every shared test adds. `gen/tests/vm_scripts.rs` holds
/// this list to the names the generated scripts bind.
pub const SCRIPT_NAMES: &[&str] = &[
    "FIRST_SWITCH_UNITS",
    "a",
    "a_identity",
    "access",
    "again",
    "allowed",
    "assert_no_failed_units",
    "at_a",
    "at_b",
    "b",
    "before",
    "booted",
    "changed",
    "changed_units",
    "client",
    "driver_symbols",
    "fnmatchcase",
    "garage_node",
    "held",
    "held_at_a",
    "held_at_b",
    "held_sha256",
    "http",
    "identity",
    "identity_sums",
    "instance",
    "json",
    "key_file",
    "known_machines",
    "machine_named",
    "move",
    "name",
    "node",
    "output",
    "path",
    "peer",
    "perform",
    "port",
    "public_at_a",
    "rebuilt",
    "restarted",
    "restarted_silently",
    "runs_on",
    "served_sha256",
    "server",
    "shlex",
    "side",
    "side_a",
    "side_b",
    "step",
    "storage",
    "storage_a",
    "storage_b",
    "storage_nodes",
    "storage_up",
    "started_by_timers",
    "stored",
    "stored_objects",
    "switch",
    "switch_dns",
    "test",
    "timed",
    "unit",
    "unit_invocations",
    "units_within",
    "upgrade",
    "url",
];

/// A node of the test as its data names it.
pub(crate) struct DataNode<'a> {
    /// The node's name (an attribute of the test's `nodes`).
    pub name: &'a str,
    /// Its Python name in the script (the driver's: `pythonize_name` of the name).
    pub python: &'a str,
    /// Its generated module, relative to `vm-tests/generated/`, when the data names one.
    pub module: Option<&'a str>,
}

/// The data file's text (pretty JSON and a final newline, members in the data's order), or why the data cannot
/// be a test: a module that is no source path (the function makes a path of it: a relative path that can only
/// name the repository's files), a Python name that is no identifier or one the script binds (`SCRIPT_NAMES`), a
/// node given twice (the function's `listToAttrs` would keep one silently), a Garage node's Python name that is no
/// identifier, or any value Nix would not hold as data (`check_serialize`, checked as serde writes it, without a
/// `serde_json::Value`: a NUL, which `builtins.fromJSON` of Nix 2.8 cuts the string at; an integer outside Nix's;
/// `_type` and the other names the module system reads as directives).
pub(crate) fn data_file<T: Serialize>(
    test_name: &str,
    nodes: &[DataNode<'_>],
    garage_python: &[&str],
    value: &T,
) -> Result<String, String> {
    let mut names = std::collections::BTreeSet::from(["client"]);
    for node in nodes {
        if !super::helpers::is_python_name(node.python) {
            return Err(format!(
                "{test_name}: node {}'s script name {:?} is no Python identifier",
                node.name, node.python
            ));
        }
        if SCRIPT_NAMES.contains(&node.python) {
            return Err(format!(
                "{test_name}: node {}'s script name {:?} is a name the test's script binds; rename the node",
                node.name, node.python
            ));
        }
        if !names.insert(node.name) {
            return Err(format!("{test_name}: node {} is given twice", node.name));
        }
        if let Some(module) = node.module {
            crate::nix::SourcePath::new(module).map_err(|e| format!("{test_name}: {e}"))?;
        }
    }
    if let Some(python) = garage_python
        .iter()
        .find(|p| !super::helpers::is_python_name(p))
    {
        return Err(format!(
            "{test_name}: the Garage node's script name {python:?} is no Python identifier"
        ));
    }
    check_serialize(value, DataPolicy::default()).map_err(|errors| {
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!("{test_name}: {}", errors.join("; "))
    })?;
    let mut text = serde_json::to_string_pretty(value).expect("checked data prints as JSON");
    text.push('\n');
    Ok(text)
}
