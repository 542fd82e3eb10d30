//! Nix's lexical rules, in one place: what a bare identifier is, how strings are escaped, how numbers are
//! written. Each function states the rule of ARCHITECTURE.md ("Emitting Nix: the rules") it implements; the unit tests below
//! hold the expected Nix text, reviewed by hand, and the property tests prove it with the real evaluator.

use std::fmt::Write as _;

/// A value that Nix cannot represent, or a name that cannot be what it was asked to be.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LexicalError {
    /// Nix strings are C strings inside the evaluator: a NUL byte cannot be represented.
    #[error("a NUL character (U+0000) cannot be represented in a Nix string; remove it")]
    NulInString,
    /// NaN and the infinities have no Nix literal.
    #[error("{0} cannot be represented in Nix: only finite numbers can")]
    NonFiniteFloat(f64),
    /// An identifier was expected (a variable, a formal parameter).
    #[error(
        "`{0}` is not a Nix identifier (letters, digits, `_`, `'`, `-`, not starting with a digit, not a keyword)"
    )]
    NotAnIdentifier(String),
    /// An attribute path needs at least one name.
    #[error("an attribute path needs at least one name")]
    EmptyAttrPath,
    /// Source paths are relative paths into the repository.
    #[error(
        "`{0}` is not a source path: write `./dir/file.nix` (letters, digits, `.`, `_`, `-`, no `..`)"
    )]
    NotASourcePath(String),
    /// Runtime paths are absolute paths on the target machine.
    #[error(
        "`{0}` is not an absolute path: runtime paths on the target machine must start with `/`"
    )]
    RelativeRuntimePath(String),
}

/// Nix keywords: never bare attribute names or identifiers (`or` included: Nix accepts it in some places only).
pub(crate) const KEYWORDS: [&str; 10] = [
    "if", "then", "else", "assert", "with", "let", "in", "rec", "inherit", "or",
];

/// Rule 3: a name is bare only if it matches `[a-zA-Z_][a-zA-Z0-9_'-]*` and is not a keyword.
/// `__curPos` is a token of its own in Nix's lexer, so it is never bare either.
pub(crate) fn is_bare_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '\'' | '-'))
        && !KEYWORDS.contains(&name)
        && name != "__curPos"
}

/// Rule 1: NUL cannot be represented; everything else can.
pub(crate) fn check_string_content(text: &str) -> Result<(), LexicalError> {
    if text.contains('\0') {
        Err(LexicalError::NulInString)
    } else {
        Ok(())
    }
}

/// Rule 1: escapes literal text for a double-quoted string. Exactly `\\`, `\"`, `\n`, `\r`, `\t` and `$` before
/// `{` are escaped; everything else (all of Unicode, other control characters) is written as it is.
/// `next_is_interpolation` tells whether a `${` follows this text, which makes a trailing `$` need escaping.
pub fn escape_double_quoted(out: &mut String, text: &str, next_is_interpolation: bool) {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' => match chars.peek() {
                Some('{') => out.push_str("\\$"),
                None if next_is_interpolation => out.push_str("\\$"),
                _ => out.push('$'),
            },
            c => out.push(c),
        }
    }
}

/// Rule 2: whether literal text can be written as an indented string (`''…''`) that means exactly the same and
/// that nixfmt leaves alone. It must be several lines ending in a newline, with at least one line starting
/// without a space (Nix strips the common indentation), no line that is only spaces and tabs (formatters strip
/// trailing white space), no CR or other control character but tab, and no `'` right before `${` (the `'`
/// would merge with the `''$` escape). Anything else is written double-quoted, which is always exact.
pub(crate) fn fits_indented(lines_text: &str) -> bool {
    if !lines_text.ends_with('\n') || lines_text.matches('\n').count() < 2 {
        return false;
    }
    if lines_text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return false;
    }
    if lines_text.contains("'${") {
        return false;
    }
    let mut some_line_unindented = false;
    for line in lines_text[..lines_text.len() - 1].split('\n') {
        if line.is_empty() {
            continue;
        }
        if line.trim_matches([' ', '\t']).is_empty() {
            return false;
        }
        some_line_unindented |= !line.starts_with(' ');
    }
    some_line_unindented
}

/// Rule 2: escapes literal text inside an indented string: `''` becomes `'''` and `${` becomes `''${`.
/// A trailing `$` before an interpolation is written `''$`.
pub fn escape_indented(out: &mut String, text: &str, next_is_interpolation: bool) {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut start = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => {
                out.push_str(&text[start..i]);
                out.push_str("'''");
                i += 2;
                start = i;
            }
            b'$' if bytes.get(i + 1) == Some(&b'{')
                || (i + 1 == bytes.len() && next_is_interpolation) =>
            {
                out.push_str(&text[start..i]);
                out.push_str("''$");
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&text[start..]);
}

/// Rule 3: writes an attribute name, bare when it may be, otherwise quoted (so `a.b` stays one name).
pub(crate) fn write_attr_name(out: &mut String, name: &str) {
    if is_bare_identifier(name) {
        out.push_str(name);
    } else {
        out.push('"');
        escape_double_quoted(out, name, false);
        out.push('"');
    }
}

/// Rule 4: writes an integer. `i64::MIN` has no literal (`-9223372036854775808` overflows before negation), so
/// it is written as a subtraction, always parenthesised. Negative numbers are `-n`, which the printer
/// parenthesises where an application or a list would otherwise split it.
pub(crate) fn write_int(out: &mut String, value: i64) {
    if value == i64::MIN {
        out.push_str("(-9223372036854775807 - 1)");
    } else {
        let _ = write!(out, "{value}");
    }
}

/// The divisor used to write subnormal floats: 2^64, exact as a float.
const SUBNORMAL_SCALE: f64 = 18_446_744_073_709_551_616.0;

/// Rule 5: writes a finite float so that Nix reads back exactly the same value.
///
/// The digits are the shortest that round-trip (Rust's formatting), always with a `.` (`1e20` would be an
/// application in Nix). Nix's lexer rejects subnormal literals and reads `-0.0` as `0 - 0.0`, so those are
/// written as exact arithmetic: `(x / 18446744073709551616.0)` with a normal `x`, and `(-1.0 * 0.0)`.
pub(crate) fn write_float(out: &mut String, value: f64) {
    if value == 0.0 && value.is_sign_negative() {
        out.push_str("(-1.0 * 0.0)");
    } else if value != 0.0 && value.abs() < f64::MIN_POSITIVE {
        out.push('(');
        write_float_literal(out, value * SUBNORMAL_SCALE);
        out.push_str(" / ");
        write_float_literal(out, SUBNORMAL_SCALE);
        out.push(')');
    } else {
        write_float_literal(out, value);
    }
}

/// A normal float (or `0.0`) as a Nix float literal, with a leading `-` when negative.
fn write_float_literal(out: &mut String, value: f64) {
    let magnitude = value.abs();
    if value < 0.0 {
        out.push('-');
    }
    if magnitude == 0.0 || (1e-5..1e16).contains(&magnitude) {
        let start = out.len();
        let _ = write!(out, "{magnitude}");
        if !out[start..].contains('.') {
            out.push_str(".0");
        }
    } else {
        let text = format!("{magnitude:e}");
        let (mantissa, exponent) = text.split_once('e').expect("`{:e}` always has an exponent");
        out.push_str(mantissa);
        if !mantissa.contains('.') {
            out.push_str(".0");
        }
        out.push('e');
        out.push_str(exponent);
    }
}

/// Whether a float is written as a parenthesised expression (negative zero, subnormals).
pub(crate) fn float_is_expression(value: f64) -> bool {
    value == 0.0 && value.is_sign_negative() || (value != 0.0 && value.abs() < f64::MIN_POSITIVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dq(text: &str) -> String {
        let mut out = String::new();
        escape_double_quoted(&mut out, text, false);
        out
    }

    fn ind(text: &str) -> String {
        let mut out = String::new();
        escape_indented(&mut out, text, false);
        out
    }

    fn float(value: f64) -> String {
        let mut out = String::new();
        write_float(&mut out, value);
        out
    }

    #[test]
    fn double_quoted_escapes_exactly_the_nix_escapes() {
        assert_eq!(dq(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(dq("l1\nl2\r\tx"), r"l1\nl2\r\tx");
        assert_eq!(dq("${x}"), r"\${x}");
        assert_eq!(dq("$${x}"), r"$\${x}");
        assert_eq!(dq("cost: $5, {braces}, $"), "cost: $5, {braces}, $");
        // Not Rust's or JSON's escapes: control characters and Unicode stay raw.
        assert_eq!(dq("\u{7}\u{1b}é\u{2028}"), "\u{7}\u{1b}é\u{2028}");
    }

    #[test]
    fn trailing_dollar_before_an_interpolation_is_escaped() {
        let mut out = String::new();
        escape_double_quoted(&mut out, "price $", true);
        assert_eq!(out, r"price \$");
        let mut out = String::new();
        escape_indented(&mut out, "price $", true);
        assert_eq!(out, "price ''$");
    }

    #[test]
    fn indented_escapes_quotes_and_interpolation() {
        assert_eq!(ind("a''b"), "a'''b");
        assert_eq!(ind("a'''b"), "a''''b");
        assert_eq!(ind("${x}"), "''${x}");
        assert_eq!(ind("$${x}"), "$''${x}");
        assert_eq!(ind("it's $HOME"), "it's $HOME");
    }

    #[test]
    fn indented_only_where_it_is_exact() {
        assert!(fits_indented("line one\n  line two\n"));
        assert!(fits_indented("a\n\nb\n"));
        assert!(
            !fits_indented("single line\n"),
            "one line reads better quoted"
        );
        assert!(!fits_indented("a\nb"), "no final newline");
        assert!(
            !fits_indented("  a\n  b\n"),
            "common indentation would be stripped"
        );
        assert!(!fits_indented("a\n   \nb\n"), "white-space-only line");
        assert!(!fits_indented("a\r\nb\r\n"), "CR");
        assert!(!fits_indented("a'${x}\nb\n"), "quote before interpolation");
    }

    #[test]
    fn attribute_names_are_quoted_unless_bare() {
        let name = |n: &str| {
            let mut out = String::new();
            write_attr_name(&mut out, n);
            out
        };
        assert_eq!(name("enable"), "enable");
        assert_eq!(name("a-b'_1"), "a-b'_1");
        assert_eq!(name("_type"), "_type");
        assert_eq!(name("a.b"), r#""a.b""#);
        assert_eq!(name(""), r#""""#);
        assert_eq!(name("1abc"), r#""1abc""#);
        assert_eq!(name("with space"), r#""with space""#);
        assert_eq!(name("${x}"), r#""\${x}""#);
        for keyword in KEYWORDS {
            assert_eq!(name(keyword), format!("\"{keyword}\""));
        }
        assert_eq!(name("__curPos"), r#""__curPos""#);
    }

    #[test]
    fn integers_cover_all_of_i64() {
        let int = |v: i64| {
            let mut out = String::new();
            write_int(&mut out, v);
            out
        };
        assert_eq!(int(0), "0");
        assert_eq!(int(-1), "-1");
        assert_eq!(int(i64::MAX), "9223372036854775807");
        assert_eq!(int(i64::MIN), "(-9223372036854775807 - 1)");
    }

    #[test]
    fn floats_always_have_a_point_and_full_precision() {
        assert_eq!(float(1.0), "1.0");
        assert_eq!(float(0.0), "0.0");
        assert_eq!(float(-2.5), "-2.5");
        assert_eq!(float(0.1), "0.1");
        // The nearest double to 123456789.123456789 prints with 17 significant digits.
        #[allow(clippy::excessive_precision)]
        let nearest = 123456789.123456789;
        assert_eq!(float(nearest), "123456789.12345679");
        assert_eq!(float(1e20), "1.0e20");
        assert_eq!(float(1.5e-7), "1.5e-7");
        assert_eq!(float(f64::MAX), "1.7976931348623157e308");
        assert_eq!(float(f64::MIN_POSITIVE), "2.2250738585072014e-308");
        assert_eq!(float(-0.0), "(-1.0 * 0.0)");
        // 5e-324 is 2^-1074; times 2^64 it is 2^-1010, a normal float.
        assert_eq!(
            float(5e-324),
            "(9.113902524445497e-305 / 1.8446744073709552e19)"
        );
        assert!(
            float_is_expression(5e-324) && float_is_expression(-0.0) && !float_is_expression(-1.0)
        );
    }
}
