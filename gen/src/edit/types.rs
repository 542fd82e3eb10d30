//! What an edit takes (a new value) and gives (an edit, a definition, or why it was refused).

use std::ops::Range;

use crate::nix::Expr;
use crate::nix::verify::VerifyError;
use crate::position::Position;

/// The value to set: data converted by the emitter, or Nix text written by a person (inserted as written).
#[derive(Debug, Clone)]
pub enum NewValue {
    /// An expression printed by fedigen's printer, laid out for where it lands.
    Expr(Expr),
    /// Nix text, checked to parse on its own; inserted byte for byte.
    Text(String),
}

/// One change to a file: replace `range` of the old text with `replacement`. Everything else is untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// The bytes of the old text that change.
    pub range: Range<usize>,
    /// What they become.
    pub replacement: String,
}

impl Edit {
    /// The new text of the file.
    pub fn apply(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + self.replacement.len());
        out.push_str(&text[..self.range.start]);
        out.push_str(&self.replacement);
        out.push_str(&text[self.range.end..]);
        out
    }
}

/// Where a path is defined, as read from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    /// Where the binding (`name = value;`) starts; the first one when the path is defined in several places.
    pub position: Position,
    /// Where each binding that defines part of the value starts (one place for a single definition).
    pub places: Vec<Position>,
    /// The value's text, exactly as written; for a set defined in several places (`a.b = 1; a = { c = 2; };`),
    /// the merged value printed by fedigen's printer.
    pub value: String,
    /// The value's byte range in the file (`None` when merged from several places).
    pub range: Option<Range<usize>>,
    /// The value as JSON when the text fixes it (plain data: strings, numbers, lists, sets), or where and why
    /// it needs evaluation (`line:column: reason`).
    pub data: Result<serde_json::Value, String>,
}

/// Why an edit was refused: what, where, and how to proceed. Nothing is written when an edit is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The file is not valid Nix to begin with.
    #[error(transparent)]
    Syntax(#[from] VerifyError),
    /// The path does not lead into attribute set literals the editor can follow.
    #[error("{file}:{position}: cannot edit `{path}`: {reason}")]
    Refused {
        /// The file.
        file: String,
        /// Where the obstacle is.
        position: Position,
        /// The path asked for.
        path: String,
        /// What the obstacle is and what to do instead.
        reason: String,
    },
    /// The path is defined by more than one binding.
    #[error(
        "{file}: cannot edit `{path}`: it is defined in {} places ({}); edit them one at a time through longer paths, or merge them by hand first",
        positions.len(),
        positions.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
    )]
    DefinedInSeveralPlaces {
        /// The file.
        file: String,
        /// The path asked for.
        path: String,
        /// Where each definition starts.
        positions: Vec<Position>,
    },
    /// `get` or `unset` of a path the file does not define.
    #[error("{file}: `{path}` is not defined{}", nearest.as_ref().map(|(p, at)| format!(" (the nearest definition is `{p}` at {at})")).unwrap_or_default())]
    NotDefined {
        /// The file.
        file: String,
        /// The path asked for.
        path: String,
        /// The longest defined prefix and where, to help spot a typo.
        nearest: Option<(String, Position)>,
    },
    /// `remove` of an item the list does not hold.
    #[error("{file}:{position}: `{path}` holds no item `{item}` (it is `{list}`)")]
    NoSuchItem {
        /// The file.
        file: String,
        /// Where the list is.
        position: Position,
        /// The path asked for.
        path: String,
        /// The item asked for, as printed.
        item: String,
        /// The list, as written (abbreviated).
        list: String,
    },
    /// Nix text given as the new value does not parse on its own.
    #[error("the new value does not parse as a Nix expression: {0}")]
    BadValue(String),
    /// The edited file does not parse (a bug in fedigen: the edit is not written).
    #[error(
        "{file}: the edit would not parse ({message}); nothing was written — please report this"
    )]
    Broken {
        /// The file.
        file: String,
        /// The parser's message.
        message: String,
    },
}
