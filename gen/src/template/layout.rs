//! Layout of rendered text: nixfmt (its first pass is a template's fixpoint, [`crate::emit::settle_nixfmt`]), then rnix.

use std::path::Path;

use super::TemplateError;
use crate::nix::verify;

/// Lays rendered text out with nixfmt and parses it with rnix; errors point into the rendered text.
pub fn canonical(file: &Path, text: &str) -> Result<String, TemplateError> {
    let name = file.display().to_string();
    let formatted = verify::nixfmt(&name, text).map_err(|e| not_nix(file, text, e))?;
    finish_layout(file, text, formatted)
}

/// The rest of [`canonical`] once nixfmt has laid `text` out once: nixfmt to a fixpoint, then rnix.
pub(crate) fn finish_layout(
    file: &Path,
    text: &str,
    formatted: String,
) -> Result<String, TemplateError> {
    let name = file.display().to_string();
    // Unsettled after the last round: the last layout stands (it parses; `generate --check` compares it).
    // Templates settle in nixfmt's first pass (proven by tests/layout_fixpoint.rs and tests/generate.rs).
    let (formatted, _) =
        crate::emit::settle_nixfmt(&name, formatted, crate::emit::Settle::FirstPass)
            .map_err(|e| not_nix(file, text, e))?;
    verify::check_syntax(&name, &formatted).map_err(|e| not_nix(file, text, e))?;
    Ok(formatted)
}

/// A verification failure of rendered text, with the text itself (there is no template line to point at).
fn not_nix(file: &Path, text: &str, e: verify::VerifyError) -> TemplateError {
    TemplateError {
        file: file.to_owned(),
        location: None,
        message: format!("the rendered template is not valid Nix: {e}\n--- rendered text:\n{text}"),
    }
}

/// Rendered text that stands as it is: `Some(text)` when rnix parses it (no name bound twice) and no line outside a
/// string is wider than nixfmt's width (where nixfmt's layout depends on the width); `None` sends it to nixfmt.
pub(crate) fn as_rendered(file: &Path, text: &str) -> Result<Option<String>, TemplateError> {
    let name = file.display().to_string();
    let root = verify::parse(&name, text).map_err(|e| not_nix(file, text, e))?;
    verify::check_duplicates(&name, text, &root).map_err(|e| not_nix(file, text, e))?;
    if !crate::emit::has_wide_line(text) {
        return Ok(Some(text.to_owned()));
    }
    // Where each wide line passes nixfmt's width, in order: the tokens there are found in one walk of the file's
    // tokens (a look-up from the root for each line scanned a test script's thousands of tokens again each time).
    let mut beyond_width = Vec::new();
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches('\n');
        if crate::emit::has_wide_line(content) {
            let beyond = content
                .char_indices()
                .nth(crate::emit::NIXFMT_WIDTH)
                .map_or(content.len(), |(i, _)| i);
            beyond_width.push(start + beyond);
        }
        start += line.len();
    }
    let mut token = rowan::ast::AstNode::syntax(&root).first_token();
    for offset in beyond_width {
        // The token at the offset, the one starting there when it is between two (as `right_biased`).
        while let Some(t) = token
            .as_ref()
            .filter(|t| usize::from(t.text_range().end()) <= offset)
        {
            token = t.next_token();
        }
        // Where the line passes nixfmt's width: in a string's own text, which nixfmt never breaks, where that
        // string is a binding's whole value (`key = "a long string";`) or an indented string, or in an
        // interpolation inside a string (`${py "a long command"}` in a test script), the line stands as nixfmt
        // leaves it; elsewhere nixfmt decides the layout.
        let inside_string = token.as_ref().is_some_and(|token| {
            // The binding's `;` right after such a string (the string ends at the width): nixfmt leaves that line
            // as it is too.
            match token.kind() {
                rnix::SyntaxKind::TOKEN_SEMICOLON => {
                    token.prev_token().is_some_and(|t| unbreakable(&t))
                }
                _ => unbreakable(token),
            }
        });
        if !inside_string {
            return Ok(None);
        }
    }
    Ok(Some(text.to_owned()))
}

/// Whether a token is in a string nixfmt leaves on its line (in an interpolation inside a string, or the text of a
/// binding's whole value or of an indented string): see [`as_rendered`].
fn unbreakable(token: &rnix::SyntaxToken) -> bool {
    use rnix::SyntaxKind::{NODE_ATTRPATH_VALUE, NODE_INTERPOL, NODE_STRING};
    // In an interpolation of a string (`${py "a long command"}` in a test script): nixfmt keeps an interpolation
    // written on one line on it.
    if token
        .parent_ancestors()
        .skip_while(|n| n.kind() != NODE_INTERPOL)
        .any(|n| n.kind() == NODE_STRING)
    {
        return true;
    }
    let Some(string) = token.parent().filter(|p| p.kind() == NODE_STRING) else {
        return false;
    };
    string
        .parent()
        .is_some_and(|p| p.kind() == NODE_ATTRPATH_VALUE)
        || string.first_token().is_some_and(|t| t.text() == "''")
}

#[cfg(test)]
mod tests {
    use super::as_rendered;
    use std::path::Path;

    fn stands(text: &str) -> bool {
        as_rendered(Path::new("t.nix"), text).unwrap().is_some()
    }

    /// A line wider than nixfmt's width stands only where nixfmt cannot break it; the cases on either side of the
    /// rule, each checked against nixfmt itself.
    #[test]
    fn a_wide_line_stands_only_where_nixfmt_keeps_it() {
        let long = "x".repeat(120);
        let standing = [
            format!("{{\n  key = \"{long}\";\n}}\n"),
            // The string ends at the width: only its `;` is beyond it.
            format!("{{\n  key = \"{}\";\n}}\n", "z".repeat(90)),
            format!("{{\n  script = ''\n    {long}\n  '';\n}}\n"),
            format!("{{\n  script = ''\n    run(${{py \"{long}\"}})\n  '';\n}}\n"),
            format!(
                "{{\n  script = ''\n    {}${{py nodes.a.networking.primaryIPAddress}})\n  '';\n}}\n",
                "y".repeat(90)
            ),
        ];
        for text in &standing {
            assert!(stands(text), "{text}");
            let formatted = crate::nix::verify::nixfmt("t.nix", text).unwrap();
            assert_eq!(&formatted, text, "nixfmt changes what stands as rendered");
        }
        let to_nixfmt = [
            format!("{{\n  key = f \"a\" {{ }} \"{long}\";\n}}\n"),
            format!(
                "{{\n  key = [ \"{}\" \"{}\" ];\n}}\n",
                "a".repeat(60),
                "b".repeat(60)
            ),
        ];
        for text in &to_nixfmt {
            assert!(!stands(text), "{text}");
            let formatted = crate::nix::verify::nixfmt("t.nix", text).unwrap();
            assert_ne!(
                &formatted, text,
                "nixfmt keeps a line sent to it: the rule is too strict"
            );
        }
    }

    /// Text that is not Nix is an error, whatever its width.
    #[test]
    fn text_that_is_not_nix_is_refused() {
        assert!(as_rendered(Path::new("t.nix"), "{ a = ; }").is_err());
        assert!(as_rendered(Path::new("t.nix"), "{ a = 1; a = 2; }").is_err());
    }
}
