//! Where new text goes and how it is laid out: the indentation and line breaks of the lines around it, new
//! bindings after their closest sibling, new values printed for the column they land on, and whole-line removal.

use std::ops::Range;

use rnix::ast::{self, HasEntry};
use rowan::ast::AstNode;

use super::file::NixFile;
use super::lookup::Lookup;
use super::path::{EditPath, attrpath_text};
use super::types::{Edit, EditError, NewValue};
use crate::nix::Expr;
use crate::nix::literal::attr_name;
use crate::nix::print::print_expr_at;

impl NixFile {
    /// A new binding for `path` in the deepest set that the path reaches.
    pub(super) fn insert(
        &self,
        path: &EditPath,
        lookup: &Lookup,
        value: &NewValue,
    ) -> Result<Edit, EditError> {
        let deepest = lookup
            .sets
            .iter()
            .map(|s| s.depth)
            .max()
            .expect("the root is a set");
        let candidates: Vec<_> = lookup.sets.iter().filter(|s| s.depth == deepest).collect();
        let [target] = candidates.as_slice() else {
            return Err(EditError::Refused {
                file: self.name.clone(),
                position: self.position_of(candidates[0].set.syntax()),
                path: path.to_string(),
                reason: format!(
                    "it could be added to any of {} sets ({}); add it by hand to the one you mean, then fedigen can edit it",
                    candidates.len(),
                    candidates
                        .iter()
                        .map(|s| self.position_of(s.set.syntax()).to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        };
        let rest = &path.names()[target.depth..];
        let entries: Vec<_> = target.set.entries().collect();
        // After the last sibling sharing the longest prefix with the new path, or after the last binding.
        let anchor = entries
            .iter()
            .enumerate()
            .max_by_key(|(i, entry)| (shared_prefix(entry, rest), *i))
            .map(|(_, entry)| entry.clone());
        match anchor {
            Some(anchor) => {
                let indent = self.line_indent(anchor.syntax());
                let binding = format!("{} = {};", attrpath_text(rest), render(value, indent));
                let end = self.end_of(anchor.syntax());
                // The sibling's own line break and leading whitespace (tabs too), so the file stays uniform.
                let (line_end, eol) = self.line_end(end);
                let after = self.text[end..line_end].trim_start();
                if after.is_empty() || after.starts_with('#') {
                    Ok(Edit {
                        range: line_end..line_end,
                        replacement: format!("{eol}{}{binding}", self.line_lead(anchor.syntax())),
                    })
                } else {
                    Ok(Edit {
                        range: end..end,
                        replacement: format!(" {binding}"),
                    })
                }
            }
            None => {
                let inside = self.inside_braces(&target.set);
                let indent = self.line_indent(target.set.syntax());
                let binding = format!("{} = {};", attrpath_text(rest), render(value, indent + 2));
                let between = &self.text[inside.clone()];
                if between.trim().is_empty() {
                    Ok(Edit {
                        range: inside,
                        replacement: format!(
                            "\n{}{binding}\n{}",
                            " ".repeat(indent + 2),
                            " ".repeat(indent)
                        ),
                    })
                } else {
                    // Only comments inside: keep them, add the binding before the closing brace.
                    let close = inside.end;
                    let line_start = self.line_start(close);
                    if self.text[line_start..close].trim().is_empty() {
                        Ok(Edit {
                            range: line_start..line_start,
                            replacement: format!("{}{binding}\n", " ".repeat(indent + 2)),
                        })
                    } else {
                        Ok(Edit {
                            range: close..close,
                            replacement: format!("{binding} "),
                        })
                    }
                }
            }
        }
    }

    /// Removing a binding or a list item: its whole line(s) when it stands alone on them (with a comment after
    /// it on its last line, and the comment lines directly above it), otherwise the node and the space that
    /// separates it from its neighbour (`close` is the bracket that ends its set or list).
    pub(super) fn removal(&self, node: &rnix::SyntaxNode, close: char) -> Edit {
        let range = self.range_of(node);
        let line_start = self.line_start(range.start);
        let line_end = self.text[range.end..]
            .find('\n')
            .map_or(self.text.len(), |i| range.end + i);
        let before = &self.text[line_start..range.start];
        let after = self.text[range.end..line_end].trim_start();
        let replacement = String::new();
        if before.trim().is_empty() && (after.is_empty() || after.starts_with('#')) {
            let end = (line_end + 1).min(self.text.len());
            return Edit {
                range: self.attached_comments(node, line_start)..end,
                replacement,
            };
        }
        let spaces_after = self.text[range.end..]
            .find(|c: char| c != ' ' && c != '\t')
            .map_or(self.text.len(), |i| range.end + i);
        let rest = &self.text[spaces_after..];
        if rest.is_empty() || rest.starts_with([close, '\n', '\r']) {
            let spaces_before = self.text[..range.start].trim_end_matches([' ', '\t']).len();
            Edit {
                range: spaces_before..range.end,
                replacement,
            }
        } else {
            Edit {
                range: range.start..spaces_after,
                replacement,
            }
        }
    }

    /// Where the comment lines directly above `node` (which starts its line, at `line_start`) begin: each a
    /// comment alone on its line(s), with no blank line between it and what follows. A comment after code on
    /// its line belongs to that code, and one separated by a blank line to no binding in particular.
    pub(super) fn attached_comments(&self, node: &rnix::SyntaxNode, line_start: usize) -> usize {
        let mut start = line_start;
        let mut token = node.first_token();
        loop {
            let Some(mut previous) = token.as_ref().and_then(|t| t.prev_token()) else {
                return start;
            };
            if previous.kind() == rnix::SyntaxKind::TOKEN_WHITESPACE {
                match previous.prev_token() {
                    Some(t) => previous = t,
                    None => return start,
                }
            }
            if previous.kind() != rnix::SyntaxKind::TOKEN_COMMENT {
                return start;
            }
            // Offsets in the file: the skim may have removed code between the comment and the node.
            let range = previous.text_range();
            let comment_start = self.tree.file_offset(usize::from(range.start()), false);
            let comment_end = self.tree.file_offset(usize::from(range.end()), true);
            let gap = &self.text[comment_end..start];
            let own_line = self.starts_line(comment_start);
            if !own_line || gap.matches('\n').count() != 1 || !gap.trim().is_empty() {
                return start;
            }
            start = self.line_start(comment_start);
            token = Some(previous);
        }
    }

    /// The offset where the line holding `offset` starts.
    pub(super) fn line_start(&self, offset: usize) -> usize {
        self.text[..offset].rfind('\n').map_or(0, |i| i + 1)
    }

    /// Whether only spaces and tabs precede `offset` on its line.
    pub(super) fn starts_line(&self, offset: usize) -> bool {
        self.text[self.line_start(offset)..offset]
            .trim_start_matches([' ', '\t'])
            .is_empty()
    }

    /// Where the line holding `offset` ends (before its `\r\n` or `\n`), and the file's line break there.
    pub(super) fn line_end(&self, offset: usize) -> (usize, &'static str) {
        let mut line_end = self.text[offset..]
            .find('\n')
            .map_or(self.text.len(), |i| offset + i);
        let mut eol = "\n";
        if line_end > offset && self.text[..line_end].ends_with('\r') {
            line_end -= 1;
            eol = "\r\n";
        }
        (line_end, eol)
    }

    /// The bytes between a list's brackets.
    pub(super) fn inside_brackets(&self, list: &ast::List) -> Range<usize> {
        let open = list.l_brack_token().expect("a parsed list has brackets");
        let close = list.r_brack_token().expect("a parsed list has brackets");
        self.between(&open, &close)
    }

    /// The bytes between a set's braces.
    pub(super) fn inside_braces(&self, set: &ast::AttrSet) -> Range<usize> {
        let open = set.l_curly_token().expect("a parsed set has braces");
        let close = set.r_curly_token().expect("a parsed set has braces");
        self.between(&open, &close)
    }

    /// The bytes of the file between two tokens of the tree.
    fn between(&self, open: &rnix::SyntaxToken, close: &rnix::SyntaxToken) -> Range<usize> {
        self.tree
            .file_offset(usize::from(open.text_range().end()), true)
            ..self
                .tree
                .file_offset(usize::from(close.text_range().start()), false)
    }

    /// The indentation (in columns, a tab counting as one) of the line a node starts on.
    pub(super) fn line_indent(&self, node: &rnix::SyntaxNode) -> usize {
        self.line_lead(node).chars().count()
    }

    /// The whitespace that starts the line a node starts on, as written.
    pub(super) fn line_lead(&self, node: &rnix::SyntaxNode) -> &str {
        let start = self.start_of(node);
        let line = &self.text[self.line_start(start)..start];
        &line[..line.len() - line.trim_start_matches([' ', '\t']).len()]
    }
}

/// The new value's text for a binding on a line indented by `indent`.
pub(super) fn render(value: &NewValue, indent: usize) -> String {
    match value {
        NewValue::Expr(expr) => print_expr_at(expr, indent),
        NewValue::Text(text) => text.trim().to_owned(),
    }
}

/// How many leading names an entry shares with `rest` (0 for an inherit or a computed name).
pub(super) fn shared_prefix(entry: &ast::Entry, rest: &[String]) -> usize {
    let ast::Entry::AttrpathValue(binding) = entry else {
        return 0;
    };
    let Some(path) = binding.attrpath() else {
        return 0;
    };
    path.attrs()
        .zip(rest)
        .take_while(|(attr, name)| attr_name(attr).as_ref() == Some(*name))
        .count()
}

/// A new list item's text for a list whose items stand at column `indent`: parenthesised where a list item
/// needs it (`(-1)`, `(lib.mkIf c x)`).
pub(super) fn render_item(item: &NewValue, indent: usize) -> String {
    match item {
        NewValue::Expr(expr) => {
            // The printer lays the item out as one of a list's: print a list of it and take the item.
            let base = indent.saturating_sub(2);
            let list = print_expr_at(&Expr::List(vec![expr.clone()]), base);
            let open = format!("[\n{}", " ".repeat(base + 2));
            let close = list
                .rfind('\n')
                .expect("a printed list of one item has lines");
            list[open.len()..close].to_owned()
        }
        NewValue::Text(text) => {
            let text = text.trim();
            let atom = rnix::Root::parse(text).tree().expr().is_some_and(|expr| {
                matches!(
                    expr,
                    ast::Expr::Ident(_)
                        | ast::Expr::Literal(_)
                        | ast::Expr::Str(_)
                        | ast::Expr::List(_)
                        | ast::Expr::AttrSet(_)
                        | ast::Expr::Paren(_)
                        | ast::Expr::PathAbs(_)
                        | ast::Expr::PathRel(_)
                        | ast::Expr::PathHome(_)
                        | ast::Expr::PathSearch(_)
                ) || matches!(&expr, ast::Expr::Select(select) if select.default_expr().is_none())
            });
            if atom {
                text.to_owned()
            } else {
                format!("({text})")
            }
        }
    }
}
