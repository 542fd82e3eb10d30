//! Attribute paths as people type them on the command line.

use std::fmt;

use rnix::ast::{self, HasEntry};
use rowan::ast::AstNode;

use crate::nix::lexical;
use crate::nix::literal::attr_name;

/// An attribute path as people write it on the command line: `services.nginx.virtualHosts."example.org".root`.
/// (Not [`crate::nix::AttrPath`], the path of a binding fedigen emits: this one is typed by a person and looked up
/// in a file a person wrote.)
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EditPath(Vec<String>);

impl EditPath {
    /// A path from its names (each may be any string; quoting is the printer's business).
    pub fn new(names: Vec<String>) -> Result<Self, String> {
        if names.is_empty() {
            return Err("an attribute path needs at least one name".to_owned());
        }
        if let Some(name) = names.iter().find(|n| n.contains('\0')) {
            return Err(format!(
                "the name {} contains NUL, which Nix cannot represent",
                serde_json::to_string(name).unwrap_or_default()
            ));
        }
        Ok(Self(names))
    }

    /// Parses Nix attribute-path syntax: names separated by `.`, each bare (`services`) or double-quoted with
    /// Nix escapes (`"example.org"`). Interpolations are refused: a path must name fixed attributes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = |why: &str| {
            format!(
                "`{text}` is not an attribute path: {why}; write names separated by dots, quoting names that \
                 are not identifiers (services.nginx.virtualHosts.\"example.org\".root)"
            )
        };
        if text.trim() != text || text.is_empty() {
            return Err(invalid("it is empty or has surrounding spaces"));
        }
        let probe = format!("{{ {text} = null; }}");
        let root = rnix::Root::parse(&probe);
        if !root.errors().is_empty() {
            return Err(invalid("Nix cannot parse it"));
        }
        let Some(ast::Expr::AttrSet(set)) = root.tree().expr() else {
            return Err(invalid("Nix cannot parse it"));
        };
        let entries: Vec<_> = set.entries().collect();
        let [ast::Entry::AttrpathValue(entry)] = entries.as_slice() else {
            return Err(invalid("it is more than one path"));
        };
        let path = entry.attrpath().ok_or_else(|| invalid("no names"))?;
        if path.syntax().text() != text {
            return Err(invalid("it is more than a path"));
        }
        let names = path
            .attrs()
            .map(|attr| attr_name(&attr).ok_or_else(|| invalid("a name is computed (`${…}`)")))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(names)
    }

    /// The names, outermost first.
    pub fn names(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for EditPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&attrpath_text(&self.0))
    }
}

/// Names as Nix attribute-path text, quoted where needed.
pub(super) fn attrpath_text(names: &[String]) -> String {
    let mut out = String::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        lexical::write_attr_name(&mut out, name);
    }
    out
}
