//! Diagnostics and their rendering: every problem of a specification, each with its file, line, column, field
//! path, a label and a hint, rendered like rustc's errors (annotate-snippets, the renderer rustc itself uses).

use std::fmt;
use std::ops::Range;

use annotate_snippets::{AnnotationKind, Level, Renderer, Snippet};

use super::path::FieldPath;
use super::source::Document;
use crate::nix::verify::Position;

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
    pub fn at_key(mut self) -> Self {
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
}

/// A diagnostic placed in its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The diagnostic.
    pub diagnostic: Diagnostic,
    /// The byte range it points at.
    pub span: Range<usize>,
    /// 1-based line and column of the span's start.
    pub position: Position,
    /// The related place's byte range.
    pub related_span: Option<Range<usize>>,
}

/// Every problem found in one specification, located in its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The file name as given.
    pub file: String,
    /// The text the spans refer to (for a `.nix` file: the Nix source, or the JSON Nix produced).
    pub text: String,
    /// A note about the text, e.g. that positions refer to the JSON Nix produced.
    pub note: Option<String>,
    /// The problems, in document order.
    pub problems: Vec<Located>,
}

impl Report {
    /// Locates diagnostics in a document and sorts them by position (then by path, for a stable order).
    pub fn new(document: &Document, diagnostics: Vec<Diagnostic>) -> Self {
        let mut problems: Vec<Located> = diagnostics
            .into_iter()
            .map(|diagnostic| {
                let span = diagnostic
                    .span
                    .clone()
                    .unwrap_or_else(|| document.span(&diagnostic.path, diagnostic.target));
                let related_span = diagnostic
                    .related
                    .as_ref()
                    .map(|(p, _)| document.span(p, Target::Key));
                Located {
                    position: Position::of_offset(&document.text, span.start),
                    span,
                    related_span,
                    diagnostic,
                }
            })
            .collect();
        problems.sort_by(|a, b| {
            (a.span.start, &a.diagnostic.path, &a.diagnostic.message).cmp(&(
                b.span.start,
                &b.diagnostic.path,
                &b.diagnostic.message,
            ))
        });
        problems.dedup();
        Self {
            file: document.name.clone(),
            text: document.text.clone(),
            note: document.note.clone(),
            problems,
        }
    }

    /// Renders every problem like rustc, with colours or plain; ends with a summary line.
    pub fn render(&self, color: bool) -> String {
        let renderer = if color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        let mut out = String::new();
        for problem in &self.problems {
            let d = &problem.diagnostic;
            let title = if d.path.is_root() {
                d.message.clone()
            } else {
                format!("{}: {}", d.path, d.message)
            };
            let mut snippet = Snippet::source(self.text.as_str())
                .path(self.file.as_str())
                .fold(true)
                .annotation(
                    AnnotationKind::Primary
                        .span(problem.span.clone())
                        .label(d.label.as_str()),
                );
            if let (Some(span), Some((_, label))) = (&problem.related_span, &d.related)
                && span != &problem.span
            {
                snippet = snippet.annotation(
                    AnnotationKind::Context
                        .span(span.clone())
                        .label(label.as_str()),
                );
            }
            let mut group = Level::ERROR.primary_title(title).element(snippet);
            if let Some(hint) = &d.hint {
                group = group.element(Level::HELP.message(hint.as_str()));
            }
            out.push_str(&renderer.render(&[group]));
            out.push_str("\n\n");
        }
        if let Some(note) = &self.note {
            out.push_str(&format!("note: {note}\n"));
        }
        let n = self.problems.len();
        out.push_str(&format!(
            "error: {} is not a valid specification: {n} error{}\n",
            self.file,
            if n == 1 { "" } else { "s" }
        ));
        out
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}
