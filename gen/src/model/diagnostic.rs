//! One problem in a specification, as the checks find it: a field path, whether the key or the value is at
//! fault, a message, a label and a hint. The checks ([`super::shape`], [`super::check`], [`super::source`]) make
//! diagnostics; [`super::report`] places them in the text and renders them. Here too: how values quoted in
//! messages are kept short, so a message never echoes a whole file.

use std::ops::Range;

use super::path::FieldPath;

/// The longest value echoed in a message, in characters, before it is cut with `…`.
pub(crate) const MAX_QUOTED: usize = 60;
/// The longest message (title, label or hint), in characters, before it is cut with `…`.
const MAX_MESSAGE: usize = 400;

/// Which part of an entry a diagnostic points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The key (`domain` in `domain = "…"`): for unknown fields, and for objects that miss a field.
    Key,
    /// The value: for values that are wrong.
    Value,
}

/// One problem in a specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where, as a field path.
    pub path: FieldPath,
    /// Whether the key or the value is at fault.
    pub target: Target,
    /// What is wrong (one line).
    pub message: String,
    /// A short label under the source text.
    pub label: String,
    /// How to fix it.
    pub hint: Option<String>,
    /// Another place that takes part (e.g. the first use of a duplicated name), with its label.
    pub related: Option<(FieldPath, String)>,
    /// An exact byte range, for problems found before there are paths (syntax errors, duplicate keys).
    pub span: Option<Range<usize>>,
}

impl Diagnostic {
    /// A problem with the value at `path`.
    pub fn new(path: FieldPath, message: impl Into<String>, label: impl Into<String>) -> Self {
        Self {
            path,
            target: Target::Value,
            message: message.into(),
            label: label.into(),
            hint: None,
            related: None,
            span: None,
        }
    }

    /// Points at the key instead of the value.
    pub(crate) fn at_key(mut self) -> Self {
        self.target = Target::Key;
        self
    }

    /// Adds how to fix it.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds another place that takes part.
    pub fn related(mut self, path: FieldPath, label: impl Into<String>) -> Self {
        self.related = Some((path, label.into()));
        self
    }

    /// What makes two problems "the same problem at another place", for summarising repeated ones: the same
    /// field (list indices aside: `operators[*].contact`), the same label and the same hint. The message may
    /// differ by the value it quotes.
    pub(super) fn kind(&self) -> (String, &str, Option<&str>) {
        let mut field = String::new();
        for step in &self.path.0 {
            match step {
                super::path::Step::Key(k) => {
                    field.push('.');
                    field.push_str(k);
                }
                super::path::Step::Index(_) => field.push_str("[*]"),
            }
        }
        (field, &self.label, self.hint.as_deref())
    }
}

/// A message with every value it quotes (between backticks) shortened to [`MAX_QUOTED`] characters and its
/// control characters escaped, and the whole cut at a bounded length: a message never echoes a whole file.
pub(crate) fn shorten_message(message: &str) -> String {
    let parts: Vec<&str> = message.split('`').collect();
    let mut out = String::new();
    // An odd number of parts means balanced backticks: the odd-numbered parts are quoted values.
    let balanced = parts.len() % 2 == 1;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('`');
        }
        if balanced && i % 2 == 1 {
            out.push_str(&shorten_value(part, MAX_QUOTED));
        } else {
            out.push_str(&escape_controls(part));
        }
    }
    shorten_value(&out, MAX_MESSAGE)
}

/// A value as shown in a message: control characters escaped (`\n`, `\t`, `\u{1b}`), and cut after `max`
/// characters with `…`.
pub(crate) fn shorten_value(value: &str, max: usize) -> String {
    let escaped = escape_controls(value);
    match escaped.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &escaped[..cut]),
        None => escaped,
    }
}

fn escape_controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_shortened_and_escaped() {
        let long = "x".repeat(500);
        let shown = shorten_message(&format!("`{long}` is longer than 32 characters"));
        assert_eq!(
            shown,
            format!("`{}…` is longer than 32 characters", "x".repeat(MAX_QUOTED))
        );
        assert_eq!(shorten_message("`a\nb` is odd"), "`a\\nb` is odd");
        assert_eq!(shorten_message("short `ok` stays"), "short `ok` stays");
        // Unbalanced backticks: nothing is taken for a value, but the whole stays bounded.
        let unbalanced = format!("`{long}");
        assert_eq!(
            shorten_message(&unbalanced).chars().count(),
            MAX_MESSAGE + 1
        );
    }
}
