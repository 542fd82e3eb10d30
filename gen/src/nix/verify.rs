//! The checks every emitted file passes before it may be written: it parses (rnix), and, where asked, it is
//! exactly what nixfmt makes of it. A failure here is a bug in fedigen, reported with the file and position so
//! it can be fixed; the text is never written.

use std::fmt;

/// A position in a file: 1-based line and column (columns count Unicode scalar values, as editors do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl Position {
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
    pub fn suffix(&self) -> String {
        if self.line == 0 {
            String::new()
        } else {
            format!(":{self}")
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Emitted text that failed a check: which file, where, and what the checker said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// rnix could not parse the text.
    #[error("{file}{}: emitted Nix does not parse ({message})", position.suffix())]
    Syntax {
        /// The file being emitted.
        file: String,
        /// Where the parser stopped.
        position: Position,
        /// The parser's message.
        message: String,
    },
    /// nixfmt lays the text out differently.
    #[error(
        "{file}:{line}: not nixfmt-canonical: nixfmt writes {expected:?} where the text has {found:?}"
    )]
    NotCanonical {
        /// The file being emitted.
        file: String,
        /// The first line that differs (1-based).
        line: usize,
        /// nixfmt's line.
        expected: String,
        /// fedigen's line.
        found: String,
    },
}

/// Parses `text` with rnix; the first error is reported with its position in `file`.
pub fn check_syntax(file: &str, text: &str) -> Result<(), VerifyError> {
    parse(file, text).map(drop)
}

/// Parses `text` with rnix into its lossless syntax tree (every byte, comments and spacing included), or
/// reports the first error with its position in `file`.
pub fn parse(file: &str, text: &str) -> Result<rnix::Root, VerifyError> {
    let parse = rnix::Root::parse(text);
    let Some(error) = parse.errors().first() else {
        return Ok(parse.tree());
    };
    let offset = match error {
        rnix::ParseError::Unexpected(range)
        | rnix::ParseError::UnexpectedExtra(range)
        | rnix::ParseError::UnexpectedWanted(_, range, _)
        | rnix::ParseError::UnexpectedDoubleBind(range)
        | rnix::ParseError::DuplicatedArgs(range, _) => usize::from(range.start()),
        _ => text.len(),
    };
    Err(VerifyError::Syntax {
        file: file.to_owned(),
        position: Position::of_offset(text, offset),
        message: error.to_string(),
    })
}

/// Formats `text` with nixfmt (the `nixfmt_rs` library) and requires the result to be identical, so users'
/// `nixfmt --check` never fights generated files. About ten times slower than parsing: used by tests,
/// `fedigen template check` and `--verify canonical`, not on every write of large data.
pub fn check_canonical(file: &str, text: &str) -> Result<(), VerifyError> {
    let formatted = nixfmt(file, text)?;
    if formatted == text {
        return Ok(());
    }
    let (line, expected, found) = formatted
        .split('\n')
        .zip(text.split('\n'))
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| (i + 1, a.to_owned(), b.to_owned()))
        .unwrap_or_else(|| {
            let lines = formatted.lines().count().min(text.lines().count());
            (lines + 1, "<different length>".into(), String::new())
        });
    Err(VerifyError::NotCanonical {
        file: file.to_owned(),
        line,
        expected,
        found,
    })
}

/// Formats `text` with `nixfmt_rs`. A parse error or a panic inside the formatter (a bug there) is an error
/// naming the file, never a crash of fedigen.
pub fn nixfmt(file: &str, text: &str) -> Result<String, VerifyError> {
    let failed = |message: String| VerifyError::Syntax {
        file: file.to_owned(),
        position: Position { line: 0, column: 0 },
        message,
    };
    match std::panic::catch_unwind(|| nixfmt_rs::format(text)) {
        Ok(Ok(formatted)) => Ok(formatted),
        Ok(Err(e)) => Err(failed(nixfmt_rs::format_error(text, Some(file), &e))),
        Err(_) => Err(failed(
            "nixfmt_rs panicked while formatting this file".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_carry_file_and_position() {
        assert_eq!(check_syntax("ok.nix", "{ a = 1; }\n"), Ok(()));
        let err = check_syntax("bad.nix", "{\n  a = [ -1 ;\n}\n").unwrap_err();
        let VerifyError::Syntax { file, position, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(file, "bad.nix");
        assert_eq!(position.line, 2, "{err}");
    }

    #[test]
    fn non_canonical_text_is_caught_with_the_differing_line() {
        assert_eq!(check_canonical("ok.nix", "{\n  a = 1;\n}\n"), Ok(()));
        let err = check_canonical("f.nix", "{\n  a =  1;\n}\n").unwrap_err();
        assert!(
            matches!(&err, VerifyError::NotCanonical { line: 2, expected, .. } if expected == "  a = 1;"),
            "{err:?}"
        );
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        assert_eq!(
            Position::of_offset("é\nxé!", 6),
            Position { line: 2, column: 3 }
        );
    }
}
