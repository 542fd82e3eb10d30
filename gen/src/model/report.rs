//! Diagnostics and their rendering: every problem of a specification, each with its file, line, column, field
//! path, a label and a hint, rendered like rustc's errors (annotate-snippets, the renderer rustc itself uses).
//!
//! A report stays readable, and cheap, however large the specification and however many its problems:
//!
//! - each problem shows a bounded excerpt: the lines it points at (a span over many lines is shown by its first
//!   line), and of a long line only a window around each place it points at, the rest cut with `…`;
//! - a value echoed in a message (between backticks) is shortened to a bounded length with `…`, with control
//!   characters escaped, so a specification that reads a file into a field does not print the file;
//! - the same problem (same message, label and hint) at many places is shown a few times, then summarised
//!   (`… and 995 more like this`);
//! - positions are found with one line index and one sweep over the text for all problems, so the time and the
//!   memory of a report grow linearly with the text and the number of problems.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

use super::diagnostic::{Diagnostic, Target, shorten_message};
use super::source::SpecDocument;
use crate::position::{LineIndex, Position};

/// How many problems of one kind (same message, label and hint) are shown before the rest are summarised.
pub(crate) const SHOWN_PER_KIND: usize = 3;

/// A source line longer than this (in bytes) is shown only around the places it points at.
const LONG_LINE: usize = 160;
/// How much of a long line is kept before a place it points at (bytes, rounded to characters).
const KEEP_BEFORE: usize = 40;
/// How much of a long line is kept after a place it points at.
const KEEP_AFTER: usize = 80;
/// A related place at most this many lines from the primary one is shown in the same excerpt (the lines
/// between are folded by the renderer, and passed to it empty, so they cost one byte each).
const SAME_EXCERPT_LINES: usize = 1000;
/// A span over more lines than this is shown by its first line only.
const MAX_SPAN_LINES: usize = 8;

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
    /// 1-based line and column of the related place's start.
    pub related_position: Option<Position>,
}

/// Every problem found in one specification, located in its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecReport {
    /// The file name as given.
    pub file: String,
    /// The text the spans refer to (for a `.nix` file: the Nix source, or the JSON Nix produced).
    pub text: String,
    /// A note about the text, e.g. that positions refer to the JSON Nix produced.
    pub note: Option<String>,
    /// The problems, in document order.
    pub problems: Vec<Located>,
}

impl SpecReport {
    /// Locates diagnostics in a document and sorts them by position (then by path, for a stable order).
    pub fn new(document: &SpecDocument, diagnostics: Vec<Diagnostic>) -> Self {
        let text = document.text.as_str();
        let clip = |span: Range<usize>| {
            let start = text.floor_char_boundary(span.start.min(text.len()));
            let end = text.ceil_char_boundary(span.end.clamp(start, text.len()));
            start..end
        };
        let unknown = Position { line: 0, column: 0 };
        let mut problems: Vec<Located> = diagnostics
            .into_iter()
            .map(|diagnostic| {
                let span = clip(
                    diagnostic
                        .span
                        .clone()
                        .unwrap_or_else(|| document.span(&diagnostic.path, diagnostic.target)),
                );
                let related_span = diagnostic
                    .related
                    .as_ref()
                    .map(|(p, _)| clip(document.span(p, Target::Key)));
                Located {
                    position: unknown,
                    related_position: related_span.as_ref().map(|_| unknown),
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
        // Every position in one sweep over the text: a column costs the characters since the previous place.
        let mut offsets: Vec<usize> = problems
            .iter()
            .flat_map(|p| {
                std::iter::once(p.span.start).chain(p.related_span.iter().map(|r| r.start))
            })
            .collect();
        offsets.sort_unstable();
        offsets.dedup();
        let positions = LineIndex::new(text).positions(text, &offsets);
        let position_of = |offset: usize| {
            positions[offsets
                .binary_search(&offset)
                .expect("every offset was swept")]
        };
        for problem in &mut problems {
            problem.position = position_of(problem.span.start);
            problem.related_position = problem.related_span.as_ref().map(|r| position_of(r.start));
        }
        Self {
            file: document.name.clone(),
            text: document.text.clone(),
            note: document.note.clone(),
            problems,
        }
    }

    /// Every problem as data, for `fedigen validate --json` (CI jobs, the panel): file, line, column, field,
    /// message, label, hint and the related place. Nothing is summarised (a machine wants them all); quoted
    /// values are shortened as in [`SpecReport::render`], so a report stays linear in the number of problems.
    pub fn to_json(&self) -> serde_json::Value {
        let problems: Vec<serde_json::Value> = self
            .problems
            .iter()
            .map(|p| {
                let d = &p.diagnostic;
                let related = d.related.as_ref().map(|(path, label)| {
                    let at = p
                        .related_position
                        .unwrap_or(Position { line: 0, column: 0 });
                    serde_json::json!({
                        "field": path.to_string(),
                        "label": shorten_message(label),
                        "line": at.line,
                        "column": at.column,
                    })
                });
                serde_json::json!({
                    "file": self.file,
                    "line": p.position.line,
                    "column": p.position.column,
                    "field": d.path.to_string(),
                    "message": shorten_message(&d.message),
                    "label": shorten_message(&d.label),
                    "hint": d.hint.as_deref().map(shorten_message),
                    "related": related,
                })
            })
            .collect();
        serde_json::json!({
            "file": self.file,
            "valid": false,
            "note": self.note,
            "problems": problems,
        })
    }

    /// Renders every problem like rustc, with colours or plain; repeated problems are summarised, and the
    /// report ends with a summary line.
    pub fn render(&self, color: bool) -> String {
        let renderer = if color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        let lines = LineIndex::new(&self.text);
        // How many problems of each kind there are, and where the last one is.
        let mut kinds: HashMap<_, (usize, Position)> = HashMap::new();
        for problem in &self.problems {
            let entry = kinds
                .entry(problem.diagnostic.kind())
                .or_insert((0, problem.position));
            entry.0 += 1;
            entry.1 = problem.position;
        }
        let mut shown: HashMap<_, usize> = HashMap::new();
        let mut out = String::new();
        for problem in &self.problems {
            let kind = problem.diagnostic.kind();
            let count = shown.entry(kind.clone()).or_insert(0);
            *count += 1;
            if *count > SHOWN_PER_KIND {
                continue;
            }
            out.push_str(&self.render_one(problem, &lines, &renderer));
            out.push_str("\n\n");
            let (total, last) = kinds[&kind];
            if *count == SHOWN_PER_KIND && total > SHOWN_PER_KIND {
                out.push_str(&format!(
                    "note: … and {} more like this, not shown (the last at {}:{last})\n\n",
                    total - SHOWN_PER_KIND,
                    self.file
                ));
            }
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

    /// One problem: its title, a bounded excerpt of the text with its places marked, and its hint.
    fn render_one(&self, problem: &Located, lines: &LineIndex, renderer: &Renderer) -> String {
        let d = &problem.diagnostic;
        let title = shorten_message(&if d.path.is_root() {
            d.message.clone()
        } else {
            format!("{}: {}", d.path, d.message)
        });
        let label = shorten_message(&d.label);
        let related_label = d.related.as_ref().map(|(_, l)| shorten_message(l));
        let primary = shown_span(lines, &self.text, problem.span.clone());
        let related = problem
            .related_span
            .as_ref()
            .filter(|r| **r != problem.span)
            .map(|r| shown_span(lines, &self.text, r.clone()));
        let primary_lines = lines.lines_of(&primary);
        // The related place shares the excerpt when it is near; otherwise it gets an excerpt of its own.
        let (together, apart) = match related {
            Some(r) => {
                let r_lines = lines.lines_of(&r);
                let gap = if r_lines.start > primary_lines.end {
                    r_lines.start - primary_lines.end
                } else {
                    primary_lines.start.saturating_sub(r_lines.end)
                };
                if gap <= SAME_EXCERPT_LINES {
                    (Some(r), None)
                } else {
                    (None, Some(r))
                }
            }
            None => (None, None),
        };
        let mut spans = vec![primary.clone()];
        spans.extend(together.clone());
        let main = Excerpt::new(&self.text, lines, &spans);
        let mut snippet = main.snippet(&self.file).annotation(
            AnnotationKind::Primary
                .span(main.spans[0].clone())
                .label(label.as_str()),
        );
        if let (Some(_), Some(label)) = (&together, &related_label) {
            snippet = snippet.annotation(
                AnnotationKind::Context
                    .span(main.spans[1].clone())
                    .label(label.as_str()),
            );
        }
        let mut group = Group::with_title(Level::ERROR.primary_title(title)).element(snippet);
        // The renderer names the place by its column in the excerpt; where a long line was cut before it,
        // that column is replaced below by the place's column in the file.
        let mut columns = vec![(main.position(0), problem.position)];
        let other = apart.map(|r| Excerpt::new(&self.text, lines, &[r]));
        if let (Some(other), Some(label), Some(position)) =
            (&other, &related_label, problem.related_position)
        {
            columns.push((other.position(0), position));
            group = group.element(
                other.snippet(&self.file).annotation(
                    AnnotationKind::Context
                        .span(other.spans[0].clone())
                        .label(label.as_str()),
                ),
            );
        }
        let hint = d.hint.as_deref().map(shorten_message);
        if let Some(hint) = &hint {
            group = group.element(Level::HELP.message(hint.as_str()));
        }
        let mut rendered = renderer.render(&[group]);
        let mut from = 0;
        for (shown, actual) in columns {
            let shown = format!("{}:{shown}", self.file);
            if let Some(at) = rendered[from..].find(&shown) {
                let at = from + at;
                let actual = format!("{}:{actual}", self.file);
                rendered.replace_range(at..at + shown.len(), &actual);
                from = at + actual.len();
            }
        }
        rendered
    }
}

impl fmt::Display for SpecReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

/// The lines of the text shown for one problem, long lines cut around the places marked, with the places'
/// spans moved into it.
struct Excerpt {
    /// The excerpt's text.
    text: String,
    /// The 1-based number of its first line.
    first_line: usize,
    /// The marked places, as ranges of `text`.
    spans: Vec<Range<usize>>,
}

impl Excerpt {
    /// The excerpt of the lines holding `spans` (each within its shown bounds), every line between them too.
    fn new(text: &str, lines: &LineIndex, spans: &[Range<usize>]) -> Self {
        let first = spans
            .iter()
            .map(|s| lines.line_of(s.start))
            .min()
            .unwrap_or(0);
        let last = spans
            .iter()
            .map(|s| lines.line_of(s.end.max(s.start + 1) - 1))
            .max()
            .unwrap_or(0)
            .max(first);
        let mut out = String::new();
        let mut moved: Vec<Range<usize>> = spans.to_vec();
        // The lines the places cover; the others between them are folded away, so they are left empty.
        let covered: Vec<Range<usize>> = spans.iter().map(|s| lines.lines_of(s)).collect();
        for line in first..=last {
            if !covered.iter().any(|c| c.contains(&line)) {
                if line < last {
                    out.push('\n');
                }
                continue;
            }
            let range = lines.range(text, line);
            let content = &text[range.clone()];
            let base = out.len();
            if content.len() <= LONG_LINE {
                out.push_str(content);
                for (span, new) in spans.iter().zip(moved.iter_mut()) {
                    for (point, slot) in [(span.start, &mut new.start), (span.end, &mut new.end)] {
                        if range.contains(&point) || point == range.end {
                            *slot = base + point - range.start;
                        }
                    }
                }
            } else {
                // Keep a window around each place on this line, merged where they overlap.
                let mut points: Vec<usize> = spans
                    .iter()
                    .flat_map(|s| [s.start, s.end])
                    .filter(|p| (range.start..=range.end).contains(p))
                    .collect();
                if points.is_empty() {
                    points.push(range.start);
                }
                points.sort_unstable();
                let mut pieces: Vec<Range<usize>> = Vec::new();
                for p in points {
                    let start =
                        text.floor_char_boundary(p.saturating_sub(KEEP_BEFORE).max(range.start));
                    let end = text.ceil_char_boundary((p + KEEP_AFTER).min(range.end));
                    match pieces.last_mut() {
                        Some(last) if start <= last.end => last.end = last.end.max(end),
                        _ => pieces.push(start..end),
                    }
                }
                if pieces[0].start > range.start {
                    out.push('…');
                }
                for (i, piece) in pieces.iter().enumerate() {
                    if i > 0 {
                        out.push_str(" … ");
                    }
                    let at = out.len();
                    out.push_str(&text[piece.clone()]);
                    for (span, new) in spans.iter().zip(moved.iter_mut()) {
                        for (point, slot) in
                            [(span.start, &mut new.start), (span.end, &mut new.end)]
                        {
                            if (piece.start..=piece.end).contains(&point) {
                                *slot = at + point - piece.start;
                            }
                        }
                    }
                }
                if pieces.last().is_some_and(|p| p.end < range.end) {
                    out.push('…');
                }
            }
            if line < last {
                out.push('\n');
            }
        }
        Self {
            text: out,
            first_line: first + 1,
            spans: moved,
        }
    }

    /// The snippet of the excerpt, named by the file, its lines numbered as in the file.
    fn snippet<'a>(&'a self, file: &'a str) -> Snippet<'a, annotate_snippets::Annotation<'a>> {
        Snippet::source(self.text.as_str())
            .line_start(self.first_line)
            .fold(true)
            .path(file)
    }

    /// The line and column the renderer gives the start of place `i` (the column counted in the excerpt).
    fn position(&self, i: usize) -> Position {
        let in_excerpt = Position::of_offset(&self.text, self.spans[i].start);
        Position {
            line: self.first_line - 1 + in_excerpt.line,
            column: in_excerpt.column,
        }
    }
}

/// The part of a span that is shown: all of it, or its first line when it covers many.
fn shown_span(lines: &LineIndex, text: &str, span: Range<usize>) -> Range<usize> {
    let covered = lines.lines_of(&span);
    if covered.len() > MAX_SPAN_LINES {
        span.start..lines.range(text, covered.start).end
    } else {
        span
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_same_problem_at_many_places_is_summarised_even_with_different_values() {
        let operators: Vec<String> = (0..10)
            .map(|i| {
                format!(
                    r#"{{"name": "o{i}", "domain": "o{i}.example", "contact": "nobody {i}", "admin": {{"username": "admin", "email": "admin@o{i}.example"}}}}"#
                )
            })
            .collect();
        let text = format!(
            r#"{{"provider": {{"name": "p", "domain": "p.example", "runtime": {{"backend": "qemu"}}, "acme": {{"email": "a@p.example", "accept_terms": true}}}}, "operators": [{}]}}"#,
            operators.join(",\n")
        );
        let document = SpecDocument::json("t.json", &text);
        let report = crate::model::from_document(&document, &crate::model::Catalog::default())
            .expect_err("every contact is invalid");
        assert_eq!(report.problems.len(), 10);
        let out = report.render(false);
        let shown = out
            .lines()
            .filter(|l| l.starts_with("error: operators["))
            .count();
        assert_eq!(shown, SHOWN_PER_KIND, "{out}");
        assert!(out.contains("… and 7 more like this"), "{out}");
        assert!(
            out.ends_with("t.json is not a valid specification: 10 errors\n"),
            "{out}"
        );
    }

    proptest! {
        /// An excerpt keeps the marked text of every place, however long the line.
        #[test]
        fn excerpts_keep_the_marked_text(
            prefix in 0usize..2_000,
            gap in 0usize..2_000,
            lines_between in 0usize..3,
        ) {
            let text = format!(
                "{}FIRST{}{}SECOND{}\nend\n",
                "a".repeat(prefix),
                "b".repeat(gap),
                "\n".repeat(lines_between),
                "c".repeat(gap)
            );
            let first = text.find("FIRST").unwrap();
            let second = text.find("SECOND").unwrap();
            let index = LineIndex::new(&text);
            let excerpt = Excerpt::new(&text, &index, &[first..first + 5, second..second + 6]);
            prop_assert_eq!(&excerpt.text[excerpt.spans[0].clone()], "FIRST");
            prop_assert_eq!(&excerpt.text[excerpt.spans[1].clone()], "SECOND");
            // At most two lines shown (the others are folded, empty), each a short line or the windows of a long one.
            let per_line = LONG_LINE.max(2 * (KEEP_BEFORE + KEEP_AFTER) + 16);
            prop_assert!(excerpt.text.len() <= 2 * per_line + lines_between);
        }
    }
}
