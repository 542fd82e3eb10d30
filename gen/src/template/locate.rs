//! Mapping a position in rendered text back to the template line it came from: a second rendering with a
//! marker before each raw line break, and the column found through the template's raw text.

/// The markers around `<template id>:<line>` in a marked rendering (Unicode private use characters, which
/// templates do not hold).
pub(crate) const MARK_OPEN: char = '\u{F8F0}';
pub(crate) const MARK_CLOSE: char = '\u{F8F1}';

/// `source` with a marker naming the line before each line break of raw text (not inside `{{ … }}`), except
/// on lines holding only whitespace and standalone tags (blocks, partials, comments), which handlebars removes
/// whole and which a marker would keep.
pub(crate) fn mark_lines(source: &str, id: usize) -> String {
    let mut out = String::with_capacity(source.len() * 2);
    let mut line = 1;
    let mut rest = source;
    let mut in_tag: Option<&str> = None;
    // Whether the current line so far is only whitespace and standalone tags.
    let mut standalone = true;
    while let Some(c) = rest.chars().next() {
        if let Some(close) = in_tag {
            if rest.starts_with(close) {
                out.push_str(close);
                rest = &rest[close.len()..];
                in_tag = None;
                continue;
            }
        } else if rest.starts_with("{{") {
            let body = rest[2..].trim_start_matches('~');
            let (close, kind_standalone) = if body.starts_with("!--") {
                ("--}}", true)
            } else {
                (
                    "}}",
                    body.starts_with(['#', '/', '^', '>', '!']) || body.starts_with("else"),
                )
            };
            standalone &= kind_standalone;
            in_tag = Some(close);
            out.push_str("{{");
            rest = &rest[2..];
            continue;
        } else if c == '\n' {
            if !standalone {
                out.push(MARK_OPEN);
                out.push_str(&format!("{id}:{line}"));
                out.push(MARK_CLOSE);
            }
            standalone = true;
        } else if !c.is_whitespace() {
            standalone = false;
        }
        if c == '\n' {
            line += 1;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A marked rendering without its markers.
pub(crate) fn strip_markers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for c in text.chars() {
        match c {
            MARK_OPEN => inside = true,
            MARK_CLOSE => inside = false,
            _ if !inside => out.push(c),
            _ => {}
        }
    }
    out
}

/// The column in the template line of a position in the rendered line: the same column while the rendered
/// line matches the template's raw text up to it; otherwise where the text at the position appears in the
/// template line (once); otherwise, when the raw text before the line's first `{{` is rendered unchanged, that
/// tag (whose output holds the position); otherwise the line's first non-blank column.
pub(crate) fn map_column(rendered: &str, template: &str, column: usize) -> usize {
    let before: String = rendered.chars().take(column - 1).collect();
    if template.starts_with(&before) && !before.contains("{{") {
        return column;
    }
    let first_tag = template.find("{{");
    let token: String = rendered
        .chars()
        .skip(column - 1)
        .take_while(|c| !c.is_whitespace())
        .collect();
    if !token.is_empty() && template.matches(token.as_str()).count() == 1 {
        let at = template.find(token.as_str()).unwrap_or(0);
        return template[..at].chars().count() + 1;
    }
    if let Some(tag) = first_tag
        && before.starts_with(&template[..tag])
    {
        return template[..tag].chars().count() + 1;
    }
    template.chars().take_while(|c| c.is_whitespace()).count() + 1
}

/// The lines around `line` of `text` (two before, one after) with a caret under `column`, like a compiler.
pub(crate) fn snippet(text: &str, line: usize, column: usize) -> String {
    let first = line.saturating_sub(2).max(1);
    let last = line + 1;
    let width = last.to_string().len();
    let mut out = String::new();
    for (i, content) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
        if i < first || i > last {
            continue;
        }
        out.push_str(&format!("\n  {i:>width$} | {content}"));
        if i == line {
            let pad: String = content
                .chars()
                .take(column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("\n  {:>width$} | {pad}^", ""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_name_raw_lines_and_leave_standalone_tags_alone() {
        let source =
            "{\n{{#if x}}\n  a = {{nix-value y}};\n{{/if}}\n  {{! note\n  more }}\n  b = 1;\n}\n";
        let marked = mark_lines(source, 7);
        let mark = |line: usize| format!("{MARK_OPEN}7:{line}{MARK_CLOSE}");
        assert_eq!(
            marked,
            format!(
                "{{{}\n{{{{#if x}}}}\n  a = {{{{nix-value y}}}};{}\n{{{{/if}}}}\n  {{{{! note\n  more }}}}\n  b = 1;{}\n}}{}\n",
                mark(1),
                mark(3),
                mark(7),
                mark(8)
            )
        );
        assert_eq!(strip_markers(&marked), source);
    }

    #[test]
    fn columns_map_through_raw_text_and_helper_output() {
        assert_eq!(map_column("  a = true", "  a = true", 7), 7);
        assert_eq!(
            map_column("  a = \"long value\" b", "  a = {{nix-str x}} b", 20),
            21,
            "found by the text at the position"
        );
        assert_eq!(
            map_column("  a = \"x\" b c", "  a = {{nix-str x}} q", 9),
            7,
            "otherwise the tag whose output holds it"
        );
        assert_eq!(
            map_column("  b = \"x\" b c", "  a = {{nix-str x}} q", 9),
            3,
            "otherwise the line's first column"
        );
        assert_eq!(
            snippet("a\nb\nc\nd\n", 3, 2),
            "\n  1 | a\n  2 | b\n  3 | c\n    |  ^\n  4 | d"
        );
    }
}
