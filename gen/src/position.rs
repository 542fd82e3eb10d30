//! Positions in text for people: 1-based line and column (columns count Unicode scalar values, as editors do).
//! One type for every place fedigen points into a file (emitted Nix, specifications, imported modules, edited
//! files, generated regions), and one line index to find many positions in one text cheaply. It knows nothing of
//! what the text is.

use std::fmt;
use std::ops::Range;

/// A position in a file: 1-based line and column (columns count Unicode scalar values, as editors do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl Position {
    /// Line `line`, column `column` (both 1-based).
    pub const fn new(line: usize, column: usize) -> Self {
        Self { line, column }
    }

    /// The position of byte `offset` in `text`.
    pub fn of_offset(text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = &text[..text.floor_char_boundary(offset)];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Self {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl Position {
    /// `:line:column`, or nothing when the position is unknown (line 0).
    pub(crate) fn suffix(&self) -> String {
        if self.line == 0 {
            String::new()
        } else {
            format!(":{self}")
        }
    }
}

/// A `(line, column)` pair as other libraries give one (handlebars' `pos()`, annotate positions), both 1-based.
impl From<(usize, usize)> for Position {
    fn from((line, column): (usize, usize)) -> Self {
        Self { line, column }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Where every line of a text starts, computed once so that each position costs a binary search, not a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    /// Indexes the lines of `text`.
    pub(crate) fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Self { starts }
    }

    /// The 0-based line holding byte `offset`.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset) - 1
    }

    /// The byte range of a 0-based line, without its line break.
    pub(crate) fn range(&self, text: &str, line: usize) -> Range<usize> {
        let start = self.starts[line];
        let end = self
            .starts
            .get(line + 1)
            .map_or(text.len(), |next| next - 1);
        start..end.max(start)
    }

    /// The byte offset of a 1-based line and column (columns counted in bytes, as Nix and serde_json do).
    pub(crate) fn offset_of(&self, text: &str, line: usize, column: usize) -> usize {
        let Some(&start) = self.starts.get(line.saturating_sub(1)) else {
            return text.len();
        };
        let offset = (start + column.saturating_sub(1)).min(text.len());
        text.floor_char_boundary(offset)
    }

    /// The lines (0-based, end exclusive) a span covers.
    pub(crate) fn lines_of(&self, span: &Range<usize>) -> Range<usize> {
        self.line_of(span.start)..self.line_of(span.end.max(span.start + 1) - 1) + 1
    }

    /// The positions (1-based line, column in characters) of sorted offsets, in one sweep over the text.
    pub(crate) fn positions(&self, text: &str, sorted: &[usize]) -> Vec<Position> {
        let mut out = Vec::with_capacity(sorted.len());
        let mut cursor: Option<(usize, usize, usize)> = None; // (line, offset, column at offset)
        for &offset in sorted {
            let offset = text.floor_char_boundary(offset.min(text.len()));
            let line = self.line_of(offset);
            let (from, column) = match cursor {
                Some((l, at, column)) if l == line && at <= offset => (at, column),
                _ => (self.starts[line], 1),
            };
            let column = column + text[from..offset].chars().count();
            cursor = Some((line, offset, column));
            out.push(Position {
                line: line + 1,
                column,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn positions_count_characters_not_bytes() {
        assert_eq!(
            Position::of_offset("é\nxé!", 6),
            Position { line: 2, column: 3 }
        );
    }

    proptest! {
        /// The one-sweep positions are exactly those of `Position::of_offset`, for any text and offsets.
        #[test]
        fn swept_positions_equal_positions_of_offsets(
            text in "(a|é|\n|xyz|\u{1F600}){0,40}",
            mut offsets in proptest::collection::vec(0usize..200, 0..12),
        ) {
            offsets.iter_mut().for_each(|o| *o = text.floor_char_boundary((*o).min(text.len())));
            offsets.sort_unstable();
            offsets.dedup();
            let swept = LineIndex::new(&text).positions(&text, &offsets);
            let expected: Vec<Position> = offsets.iter().map(|&o| Position::of_offset(&text, o)).collect();
            prop_assert_eq!(swept, expected);
        }

    }
}
