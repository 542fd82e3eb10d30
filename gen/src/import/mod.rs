//! Importing the option declarations of an existing NixOS module into a manifest skeleton
//! (`fedigen template import`).
//!
//! A contributor adding an application usually starts from the upstream nixpkgs module. Its options are read
//! *statically* from the rnix tree — the module is never evaluated, since nixpkgs is not available here and a
//! module may do anything when evaluated — and translated into `templates/<app>/manifest.toml` options where the
//! manifest's types can say the same thing. Everything else is reported with its file, line and column and the
//! reason, and listed as a TOML comment in the skeleton, so nothing is dropped silently.
//!
//! Decisions (each reported where it applies):
//! - **Names**: option paths below the shared prefix (`upstream`, e.g. `services.foo`) are joined in camelCase
//!   (`services.foo.database.host` → `databaseHost`); a character a Nix identifier cannot hold becomes `_`.
//!   Each renaming is a note; a name that two paths would share keeps the first and reports the second.
//! - **`enable`** is not an option (every fediversity module has its own): its `mkEnableOption` text becomes the
//!   title. **`subdomain`** likewise: its default becomes the application's subdomain.
//! - **`nullOr t`** imports as `t`: the manifest has no null. A `null` default is dropped, which makes the
//!   option required; the report says so, for the contributor to choose a real default.
//! - **Secrets**: an option `<x>File` of type `str` or `path` whose name says secret, password, key, token,
//!   credentials or environment becomes `[secrets.<x>]` (provided), since secrets are files on the target;
//!   `nullOr` of one with the default `null` becomes an optional secret (`optional = true`): the service runs
//!   without it, so specifications need not name it. A
//!   string option named like a secret (`database.password`) is skipped: the model refuses secrets as strings
//!   in specifications, so operators could never set it.
//! - **Untranslatable types** (`package`, `path`, `submodule` inside `listOf`/`attrsOf`, `either`, `oneOf`,
//!   `functionTo`, `anything`, `attrs`, …): the option is skipped and listed, with its type, in the skeleton.
//!   A bare `submodule` is imported as the options it declares, nested names flattened as above.
//! - **Values** are read with [`literal_value`](crate::nix::literal::literal_value): a default that needs evaluation (`pkgs.foo`, `"${x}/y"`,
//!   `literalExpression`) is dropped (with the upstream text in a TODO comment), which makes the option
//!   required until the contributor writes one; an example that is not data is dropped likewise. Lossy types
//!   (`lines`, `port` with 0, `nonEmptyStr`, `number`, …) are imported with a warning naming the loss.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use rowan::ast::AstNode;
use serde_json::Value;

use crate::manifest::{Manifest, ManifestError, OptionType};
use crate::nix::literal::position;
use crate::nix::verify::{self, VerifyError};
use crate::position::Position;

mod assemble;
mod names;
mod read;
mod skeleton;

use assemble::{assemble, shared_prefix};
pub use names::{flatten_name, show_path, title_case};
use read::{Reader, module_lets, module_set};
use skeleton::render;

/// How much a finding matters to the contributor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Something was not translated, or translated with a loss: a human must decide.
    Warning,
    /// Something was translated in a way worth knowing (a renaming, a secret recognised).
    Note,
}

/// One thing the import did not translate exactly, where it is in the module and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Where in the module (1-based line and column).
    pub position: Position,
    /// Warning or note.
    pub severity: Severity,
    /// What happened and what to do.
    pub message: String,
}

/// An option translated into the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedOption {
    /// The upstream option path (e.g. `services.foo.database.host`).
    pub path: Vec<String>,
    /// Its manifest type.
    pub ty: OptionType,
    /// The default, when the module's text fixes one that fits the type.
    pub default: Option<Value>,
    /// The example, likewise.
    pub example: Option<Value>,
    /// The description (Markdown, as upstream wrote it).
    pub description: String,
    /// What a human must decide, written as TOML comments above the option.
    pub todo: Vec<String>,
}

/// A secret recognised from a `…File` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedSecret {
    /// The upstream option path.
    pub path: Vec<String>,
    /// What it holds.
    pub description: String,
    /// Whether fedigen's own generated modules say it is generated on the machine.
    pub generated: bool,
    /// Whether the module runs without it (`nullOr` with the default `null`): an optional secret.
    pub optional: bool,
}

/// The result of an import: the manifest skeleton (text and checked value) and everything not translated.
#[derive(Debug, Clone)]
pub struct Import {
    /// The module's name in reports.
    pub file: String,
    /// The application's name (`--name`, or the last component of `upstream`).
    pub name: String,
    /// The option prefix shared by the declarations (e.g. `services.foo`).
    pub upstream: String,
    /// Translated options, by manifest name.
    pub options: BTreeMap<String, ImportedOption>,
    /// Recognised secrets, by manifest name.
    pub secrets: BTreeMap<String, ImportedSecret>,
    /// Options not imported: their path, where they are, and why.
    pub skipped: Vec<(String, Position, String)>,
    /// Every finding, ordered by position.
    pub findings: Vec<Finding>,
    /// Every option path the import read, whatever became of it (imported, skipped, the service's `enable`, a
    /// submodule whose options were imported one by one): what a check against the evaluator accounts for.
    pub declared: Vec<Vec<String>>,
    /// The skeleton `manifest.toml`.
    pub manifest_text: String,
    /// The skeleton as `Manifest::parse` reads it: proof that it loads.
    pub manifest: Manifest,
}

impl Import {
    /// The findings as compiler-style lines, `file:line:col: warning: …`, one per line.
    pub fn report(&self) -> String {
        self.findings
            .iter()
            .map(|f| format!("{}:{f}\n", self.file))
            .collect()
    }

    /// One line: what was imported and what was left to a human.
    pub fn summary(&self) -> String {
        let count = |s| self.findings.iter().filter(|f| f.severity == s).count();
        format!(
            "imported {} option(s) and {} secret(s) under `{}`; {} option(s) not imported; {} warning(s), {} note(s)",
            self.options.len(),
            self.secrets.len(),
            self.upstream,
            self.skipped.len(),
            count(Severity::Warning),
            count(Severity::Note),
        )
    }
}

/// Why a module cannot be imported at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImportError {
    /// The module does not parse.
    #[error("{file}:{position}: the module does not parse: {message}")]
    Syntax {
        /// The module's name in reports.
        file: String,
        /// Where the parser stopped.
        position: Position,
        /// The parser's message.
        message: String,
    },
    /// It parses, but is not a module this importer can read, or declares nothing to import.
    #[error("{file}:{position}: {message}")]
    Module {
        /// The module's name in reports.
        file: String,
        /// Where.
        position: Position,
        /// What is wrong.
        message: String,
    },
    /// The skeleton does not load as a manifest (a bug in the importer: reported rather than written).
    #[error("the imported manifest does not load: {0}")]
    Manifest(ManifestError),
}

/// Imports the option declarations of the module `text` (named `file` in reports). `name` overrides the
/// application's name, which is otherwise the last component of the shared option prefix.
pub fn import_module(file: &str, text: &str, name: Option<&str>) -> Result<Import, ImportError> {
    let root = verify::parse(file, text).map_err(|e| match e {
        VerifyError::Syntax {
            file,
            position,
            message,
        } => ImportError::Syntax {
            file,
            position,
            message,
        },
        other => ImportError::Syntax {
            file: file.to_owned(),
            position: Position { line: 1, column: 1 },
            message: other.to_string(),
        },
    })?;
    let module_error = |node: &rnix::SyntaxNode, message: String| ImportError::Module {
        file: file.to_owned(),
        position: position(text, node),
        message,
    };
    let expr = root
        .expr()
        .ok_or_else(|| module_error(root.syntax(), "the file holds no expression".into()))?;
    let set = module_set(&expr).map_err(|node| {
        module_error(
            &node,
            "not a NixOS module: expected an attribute set, or a function returning one".into(),
        )
    })?;
    let mut lets = BTreeMap::new();
    module_lets(&expr, &mut lets);
    let mut reader = Reader {
        text,
        lets,
        findings: Vec::new(),
        declarations: Vec::new(),
    };
    reader.module(&set, &[], false);
    if reader.declarations.iter().all(|d| d.in_submodule) {
        return Err(module_error(
            set.syntax(),
            "no option declarations found under `options`".into(),
        ));
    }
    let upstream = shared_prefix(&reader.declarations);
    if upstream.is_empty() {
        return Err(module_error(
            set.syntax(),
            "the option declarations share no prefix (such as `services.foo`); import one service at a time"
                .into(),
        ));
    }
    if let Some(quoted) = upstream
        .iter()
        .find(|n| !crate::nix::lexical::is_bare_identifier(n))
    {
        return Err(module_error(
            set.syntax(),
            format!(
                "the option prefix `{}` has the quoted name `{quoted}`, which a manifest's `upstream` cannot hold",
                show_path(&upstream)
            ),
        ));
    }
    let (name, given) = match name {
        Some(name) => (name.to_owned(), true),
        None => (upstream.last().cloned().unwrap_or_default(), false),
    };
    if let Err(reason) = crate::manifest::check_application_name(&name) {
        return Err(module_error(
            set.syntax(),
            if given {
                format!("--name: {reason}")
            } else {
                format!(
                    "{reason}; the name comes from the option prefix `{}`: pass --name to choose another",
                    show_path(&upstream)
                )
            },
        ));
    }
    let draft = assemble(file, name, upstream, reader);
    // The state the module keeps (StateDirectory=, dataDir defaults), drafted with TODOs for a person to finish.
    let upstream_module = file.find("nixos/modules/").map(|i| &file[i..]);
    let manifest_text =
        render(&draft) + &crate::state::draft(&crate::state::scan_upstream(text), upstream_module);
    let manifest_path = PathBuf::from(format!("templates/{}/manifest.toml", draft.name));
    let manifest =
        Manifest::parse(&manifest_path, &manifest_text).map_err(ImportError::Manifest)?;
    Ok(Import {
        file: draft.file,
        name: draft.name,
        upstream: draft.upstream,
        options: draft.options,
        secrets: draft.secrets,
        skipped: draft.skipped,
        findings: draft.findings,
        declared: draft.declared,
        manifest_text,
        manifest,
    })
}

/// `line:col: warning: message`: the report line without the file, which the [`Import`] knows.
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        write!(f, "{}: {kind}: {}", self.position, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|p| (*p).to_owned()).collect()
    }

    #[test]
    fn paths_flatten_to_camel_case_identifiers() {
        assert_eq!(
            flatten_name(&names(&["database", "createLocally"])),
            "databaseCreateLocally"
        );
        assert_eq!(flatten_name(&names(&["max.size"])), "max_size");
        assert_eq!(flatten_name(&names(&["9lives"])), "_9lives");
        assert_eq!(
            flatten_name(&names(&["if"])),
            "if_",
            "keywords are not identifiers"
        );
        assert_eq!(
            show_path(&names(&["services", "a.b", "if"])),
            r#"services."a.b"."if""#
        );
    }

    fn refusal(text: &str) -> String {
        import_module("m.nix", text, None).unwrap_err().to_string()
    }

    #[test]
    fn modules_that_cannot_be_imported_are_refused_with_a_position() {
        assert_eq!(
            refusal("[ 1 ]"),
            "m.nix:1:1: not a NixOS module: expected an attribute set, or a function returning one"
        );
        assert_eq!(
            refusal(
                "{ lib, ... }:\n{ options.a.x = lib.mkOption { type = lib.types.int; }; options.b.y = lib.mkOption { type = lib.types.int; }; }"
            ),
            "m.nix:2:1: the option declarations share no prefix (such as `services.foo`); import one service at a time"
        );
        assert!(refusal("{ options.services.x = {").starts_with("m.nix:1:"));
        assert!(
            refusal(r#"{ options.services."a.b".x = mkOption { type = types.int; }; }"#)
                .contains("the option prefix `services.\"a.b\"` has the quoted name `a.b`"),
            "a prefix the manifest cannot hold is refused, not written"
        );
        let bad_name = import_module(
            "m.nix",
            "{ lib, ... }: { options.services.x.y = lib.mkOption { type = lib.types.int; description = \"d\"; }; }",
            Some("_hidden"),
        )
        .unwrap_err();
        assert!(
            bad_name
                .to_string()
                .contains("--name: `_hidden` is not an application name"),
            "{bad_name}"
        );
        for (name, why) in [
            ("fediversity", "modules/fediversity.nix"),
            ("Foo-Bar", "e.g. `foo-bar`"),
            ("let", "`let` is a Nix keyword"),
        ] {
            let refused = import_module(
                "m.nix",
                "{ lib, ... }: { options.services.x.y = lib.mkOption { type = lib.types.int; description = \"d\"; }; }",
                Some(name),
            )
            .unwrap_err()
            .to_string();
            assert!(refused.contains(why), "{name}: {refused}");
        }
        let derived = import_module(
            "m.nix",
            "{ lib, ... }: { options.services.default.y = lib.mkOption { type = lib.types.int; description = \"d\"; }; }",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            derived.contains("`default` is reserved") && derived.contains("pass --name"),
            "{derived}"
        );
    }

    #[test]
    fn a_bare_attribute_set_is_a_module_and_its_name_comes_from_the_prefix() {
        let import = import_module(
            "m.nix",
            r#"{ options.services.my-app.level = mkOption { type = types.ints.between 0 9; default = 3; description = "d"; };
                 options.services.my-app.enable = mkOption { type = types.bool; default = false; description = "Run it."; }; }"#,
            None,
        )
        .unwrap();
        assert_eq!(import.name, "my-app");
        assert_eq!(import.upstream, "services.my-app");
        assert_eq!(
            import.options["level"].ty,
            OptionType::Int {
                min: Some(0),
                max: Some(9)
            }
        );
        assert_eq!(import.options["level"].default, Some(Value::from(3)));
        assert_eq!(
            import.options.len(),
            1,
            "an `enable` written with mkOption is the service's switch too"
        );
    }
}
