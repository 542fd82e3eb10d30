//! Reading Nix written by people: the static meaning of attribute names and literal strings in an rnix tree.
//!
//! The editor (`crate::edit`) and the option importer (`crate::import`) both need to know what name an
//! attribute path component denotes and what text a string literal holds, without evaluating anything. Both
//! answer `None` when the meaning depends on evaluation (an interpolation, a computed name), so callers can
//! refuse with the location instead of guessing.

use rnix::ast::{self, InterpolPart};

use super::verify::Position;

/// The name an attribute path component denotes, when it is fixed by the text: `name`, `"name"`, or
/// `${"name"}`. `None` for a computed name (`${x}`, `"a${b}"`).
pub fn attr_name(attr: &ast::Attr) -> Option<String> {
    match attr {
        ast::Attr::Ident(ident) => Some(ident.ident_token()?.text().to_owned()),
        ast::Attr::Str(s) => string_literal(s),
        ast::Attr::Dynamic(dynamic) => match dynamic.expr()? {
            ast::Expr::Str(s) => string_literal(&s),
            _ => None,
        },
    }
}

/// The names of an attribute path (`a."b.c".d`), or the first component whose name is computed.
pub fn attrpath_names(path: &ast::Attrpath) -> Result<Vec<String>, ast::Attr> {
    path.attrs()
        .map(|attr| attr_name(&attr).ok_or(attr))
        .collect()
}

/// The text of a string literal (double-quoted or indented, with Nix's escapes and indentation stripping
/// applied), or `None` when it interpolates.
pub fn string_literal(s: &ast::Str) -> Option<String> {
    let mut text = String::new();
    for part in s.normalized_parts() {
        match part {
            InterpolPart::Literal(literal) => text.push_str(&literal),
            InterpolPart::Interpolation(_) => return None,
        }
    }
    Some(text)
}

/// Where a node starts in `text`.
pub fn position(text: &str, node: &rnix::SyntaxNode) -> Position {
    Position::of_offset(text, usize::from(node.text_range().start()))
}

/// Whether a token is an identifier with the given text (for `true`, `false`, `null`, `lib`, …).
pub fn is_ident(expr: &ast::Expr, name: &str) -> bool {
    matches!(expr, ast::Expr::Ident(ident)
        if ident.ident_token().is_some_and(|t| t.text() == name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rowan::ast::AstNode;

    fn first_attr(text: &str) -> ast::Attrpath {
        let root = rnix::Root::parse(text).tree();
        root.syntax()
            .descendants()
            .find_map(ast::Attrpath::cast)
            .expect("an attribute path")
    }

    #[test]
    fn names_fixed_by_the_text_are_read_and_computed_ones_are_refused() {
        let names = attrpath_names(&first_attr(r#"{ a."b.c".${"d"}.${'' e''} = 1; }"#)).unwrap();
        assert_eq!(names, ["a", "b.c", "d", "e"]);
        let computed = attrpath_names(&first_attr(r#"{ a.${x}.b = 1; }"#)).unwrap_err();
        assert_eq!(computed.syntax().text().to_string(), "${x}");
        assert!(attrpath_names(&first_attr(r#"{ "a${x}" = 1; }"#)).is_err());
    }

    #[test]
    fn escapes_and_indentation_follow_nix() {
        let string = |text: &str| {
            let root = rnix::Root::parse(text).tree();
            let Some(ast::Expr::Str(s)) = root.expr() else {
                panic!("{text} is not a string")
            };
            string_literal(&s)
        };
        assert_eq!(
            string("''\n    a ''${b}\n      c'''\n  ''").unwrap(),
            "a ${b}\n  c''\n"
        );
        assert_eq!(string(r#""x\ty\"\${z}""#).unwrap(), "x\ty\"${z}");
        assert_eq!(string(r#""x${y}""#), None);
    }
}
