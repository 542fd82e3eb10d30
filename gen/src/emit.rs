//! Emission: an expression becomes the text of a file, and that text is proven before anyone sees it.
//! Verification is part of emitting, not an afterthought in tests: text that fails it is never returned.
//!
//! The printer lays out by structure alone, which is exactly nixfmt's layout for the shapes fedigen generates
//! ([`layout_is_exact`]) as long as every line fits in nixfmt's width. Where a line is wider, nixfmt's choices
//! depend on widths (a value moves below its `=`, an application breaks), and other shapes follow rules of
//! nixfmt's that the printer does not copy; such a file is handed to nixfmt itself (`nixfmt_rs`). Output is
//! canonical either way, and the common case stays a single linear pass.

use crate::nix::Expr;
use crate::nix::print::{layout_is_exact, print_file};
use crate::nix::verify::{self, VerifyError};

/// nixfmt's default line width (RFC 166).
pub(crate) const NIXFMT_WIDTH: usize = 100;

/// How much to prove about emitted text before returning it. (The command line's `--verify` has its own type
/// in `cli/`, mapped onto this one: the library knows nothing of clap.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verification {
    /// Parse it with rnix (always done; about as fast as printing).
    #[default]
    Syntax,
    /// Also require it to be exactly what nixfmt makes of it (about ten times slower).
    Canonical,
}

/// Prints `expr` as the file `name` with `header` comment lines above it, and proves the result.
pub fn emit_file(
    name: &str,
    header: &[String],
    expr: &Expr,
    verification: Verification,
) -> Result<String, VerifyError> {
    let mut text = print_file(header, expr);
    verify::check_syntax(name, &text)?;
    if has_wide_line(&text) || !layout_is_exact(expr) {
        // nixfmt_rs rejects a few valid files (it mistakes `a'` and `a_` for the same formal) and is not
        // idempotent on a few odd shapes (`{ }.a`); the printer's own, parsed text stands in those cases.
        if let Some(formatted) = nixfmt_fixpoint(name, &text) {
            verify::check_syntax(name, &formatted)?;
            text = formatted;
        }
    } else if verification == Verification::Canonical {
        verify::check_canonical(name, &text)?;
    }
    Ok(text)
}

/// Whether a line other than a comment is wider than nixfmt's width (counted in characters, as nixfmt does).
pub fn has_wide_line(text: &str) -> bool {
    text.lines().any(|line| {
        line.len() > NIXFMT_WIDTH
            && line.chars().count() > NIXFMT_WIDTH
            && !line.trim_start().starts_with('#')
    })
}

/// Formats with nixfmt until the text stops changing (at most four rounds), or `None` when nixfmt fails.
fn nixfmt_fixpoint(name: &str, text: &str) -> Option<String> {
    let first = verify::nixfmt(name, text).ok()?;
    match settle_nixfmt(name, first) {
        Ok((text, true)) => Some(text),
        _ => None,
    }
}

/// The one nixfmt fixpoint loop (for emitted files and rendered templates): text nixfmt laid out once, formatted
/// again until it stops changing (at most three more rounds, since nixfmt is not idempotent on a few shapes).
/// Returns the last text and whether it settled.
pub(crate) fn settle_nixfmt(name: &str, formatted: String) -> Result<(String, bool), VerifyError> {
    let mut text = formatted;
    for _ in 0..3 {
        let again = verify::nixfmt(name, &text)?;
        if again == text {
            return Ok((text, true));
        }
        text = again;
    }
    Ok((text, false))
}
