//! `add` and `remove`: one item of a list literal, compared by its static value, laid out like its siblings.

use rnix::ast;
use rowan::ast::AstNode;

use super::file::{NixFile, abbreviate};
use super::layout::render_item;
use super::lookup::{Hit, Wrapper, describe, module_wrapper};
use super::path::EditPath;
use super::types::{Edit, EditError, NewValue};
use crate::nix::Expr;
use crate::nix::print::print_expr_at;

impl NixFile {
    /// The edit that adds `item` at the end of the list literal `path` holds, laid out like the items already
    /// there (one per line, or inline), keeping every other item and comment. A list that already holds an item
    /// of the same static value is left as it is; a path not defined yet gets a binding holding `[ item ]`
    /// (the module system concatenates list definitions, so this adds to the option's other definitions).
    pub fn add_item(&self, path: &EditPath, item: &NewValue) -> Result<Edit, EditError> {
        let item_key = new_item_key(item)?;
        let lookup = self.lookup(path)?;
        let binding = match self.single_hit(path, &lookup)? {
            None => {
                let list = match item {
                    NewValue::Expr(expr) => NewValue::Expr(Expr::List(vec![expr.clone()])),
                    NewValue::Text(_) => NewValue::Text(format!("[ {} ]", render_item(item, 0))),
                };
                return self.checked(self.insert(path, &lookup, &list)?);
            }
            Some(Hit::Partial(binding, _)) => return Err(self.in_parts(path, &binding)),
            Some(Hit::Exact(binding)) => binding,
        };
        let list = self.list_of(path, &binding)?;
        let items: Vec<ast::Expr> = list.items().collect();
        if items
            .iter()
            .any(|existing| self.item_key(existing) == item_key)
        {
            let at = self.range_of(list.syntax()).start;
            return Ok(Edit {
                range: at..at,
                replacement: String::new(),
            });
        }
        let edit = match items.last() {
            Some(last) => {
                let start = self.start_of(last.syntax());
                let end = self.end_of(last.syntax());
                let (line_end, eol) = self.line_end(end);
                let after = self.text[end..line_end].trim_start();
                let indent = self.line_indent(last.syntax());
                if self.starts_line(start) && (after.is_empty() || after.starts_with('#')) {
                    Edit {
                        range: line_end..line_end,
                        replacement: format!(
                            "{eol}{}{}",
                            self.line_lead(last.syntax()),
                            render_item(item, indent)
                        ),
                    }
                } else {
                    Edit {
                        range: end..end,
                        replacement: format!(" {}", render_item(item, indent)),
                    }
                }
            }
            None => {
                let inside = self.inside_brackets(&list);
                let lead = self.line_lead(list.syntax());
                let indent = lead.chars().count() + 2;
                let text = render_item(item, indent);
                let between = &self.text[inside.clone()];
                if between.trim().is_empty() {
                    if text.contains('\n') {
                        let (_, eol) = self.line_end(inside.start);
                        Edit {
                            range: inside,
                            replacement: format!("{eol}{lead}  {text}{eol}{lead}"),
                        }
                    } else {
                        Edit {
                            range: inside,
                            replacement: format!(" {text} "),
                        }
                    }
                } else {
                    // Only comments inside: keep them, add the item before the closing bracket.
                    let close = inside.end;
                    let line_start = self.line_start(close);
                    if self.text[line_start..close].trim().is_empty() {
                        let (_, eol) = self.line_end(inside.start);
                        Edit {
                            range: line_start..line_start,
                            replacement: format!("{lead}  {text}{eol}"),
                        }
                    } else {
                        Edit {
                            range: close..close,
                            replacement: format!("{text} "),
                        }
                    }
                }
            }
        };
        self.checked(edit)
    }

    /// The edit that removes the item of the list literal `path` holds whose static value is `item`'s (`443`
    /// finds `443` however it is written; an item that needs evaluation, such as `pkgs.git`, is compared by its
    /// tokens), with its line and the comments that belong to it, keeping every other item and comment.
    pub fn remove_item(&self, path: &EditPath, item: &NewValue) -> Result<Edit, EditError> {
        let item_key = new_item_key(item)?;
        let lookup = self.lookup(path)?;
        let binding = match self.single_hit(path, &lookup)? {
            None => return Err(self.not_defined(path, &lookup)),
            Some(Hit::Partial(binding, _)) => return Err(self.in_parts(path, &binding)),
            Some(Hit::Exact(binding)) => binding,
        };
        let list = self.list_of(path, &binding)?;
        let found: Vec<ast::Expr> = list
            .items()
            .filter(|existing| self.item_key(existing) == item_key)
            .collect();
        let doomed = match found.as_slice() {
            [] => {
                return Err(EditError::NoSuchItem {
                    file: self.name.clone(),
                    position: self.position_of(list.syntax()),
                    path: path.to_string(),
                    item: abbreviate(&render_item(item, 0)),
                    list: abbreviate(&format!(
                        "[ {}]",
                        list.items()
                            .map(|e| format!(
                                "{} ",
                                abbreviate(&self.text[self.range_of(e.syntax())])
                            ))
                            .collect::<String>()
                    )),
                });
            }
            [doomed] => doomed,
            several => {
                return Err(self.refused(
                    path,
                    list.syntax(),
                    format!(
                        "`{}` is in the list {} times ({}); remove the ones you mean by hand",
                        abbreviate(&render_item(item, 0)),
                        several.len(),
                        several
                            .iter()
                            .map(|e| self.position_of(e.syntax()).to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        };
        let edit = self.removal(doomed.syntax(), ']');
        // A list left with nothing inside (not even a comment) becomes `[ ]`.
        let inside = self.inside_brackets(&list);
        let rest = format!(
            "{}{}",
            &self.text[inside.start..edit.range.start.clamp(inside.start, inside.end)],
            &self.text[edit.range.end.clamp(inside.start, inside.end)..inside.end]
        );
        let edit = if rest.trim().is_empty() {
            Edit {
                range: inside,
                replacement: " ".to_owned(),
            }
        } else {
            edit
        };
        self.checked(edit)
    }

    /// The list literal a binding's value is, seen through parentheses, `let`/`with`/`assert` and the module
    /// system's wrappers (`lib.mkForce [ … ]`), or why not.
    pub(super) fn list_of(
        &self,
        path: &EditPath,
        binding: &ast::AttrpathValue,
    ) -> Result<ast::List, EditError> {
        let mut expr = binding.value().expect("a parsed binding has a value");
        loop {
            let next = match &expr {
                ast::Expr::List(list) => return Ok(list.clone()),
                ast::Expr::Paren(p) => p.expr(),
                ast::Expr::LetIn(l) => l.body(),
                ast::Expr::With(w) => w.body(),
                ast::Expr::Assert(a) => a.body(),
                ast::Expr::Apply(apply) => match module_wrapper(apply) {
                    Some(Wrapper::Body(body)) => Some(body),
                    _ => None,
                },
                _ => None,
            };
            match next {
                Some(next) => expr = next,
                None => break,
            }
        }
        let written = abbreviate(&self.text[self.range_of(expr.syntax())]);
        let reason = match &expr {
            ast::Expr::BinOp(op) if op.operator() == Some(ast::BinOpKind::Concat) => format!(
                "it is a concatenation (`{written}`), so which of its lists an item belongs in is a choice fedigen does not make; edit one of the lists by hand (or set the whole value)"
            ),
            other => {
                let (what, computed) = describe(other);
                if computed {
                    format!(
                        "its value is {what} (`{written}`), not a list literal, so its items are only known when Nix evaluates it; edit the list where it is defined, or set the whole value"
                    )
                } else {
                    format!(
                        "its value is {what} (`{written}`), not a list; set the whole value instead"
                    )
                }
            }
        };
        Err(self.refused(path, expr.syntax(), reason))
    }

    pub(super) fn in_parts(&self, path: &EditPath, binding: &ast::AttrpathValue) -> EditError {
        self.refused(
            path,
            binding.syntax(),
            format!(
                "it is a set defined in parts (`{}`), not a list",
                binding
                    .attrpath()
                    .map(|p| p.syntax().to_string())
                    .unwrap_or_default()
            ),
        )
    }

    /// What an item of a list is compared by: its static value, or (when it needs evaluation) its tokens.
    pub(super) fn item_key(&self, item: &ast::Expr) -> ItemKey {
        item_key(item)
    }
}

/// What a list item is compared by: its static value where the text fixes it (`443`, `(443)` and `0x1bb`
/// alike), otherwise its tokens (`pkgs.git`), without spaces, comments or surrounding parentheses.
#[derive(Debug, PartialEq)]
pub(super) enum ItemKey {
    Data(serde_json::Value),
    Tokens(Vec<String>),
}

pub(super) fn item_key(item: &ast::Expr) -> ItemKey {
    if let Ok(data) = crate::nix::literal::literal_value(item) {
        return ItemKey::Data(data);
    }
    let mut inner = item.clone();
    while let ast::Expr::Paren(paren) = &inner {
        match paren.expr() {
            Some(e) => inner = e,
            None => break,
        }
    }
    ItemKey::Tokens(
        inner
            .syntax()
            .descendants_with_tokens()
            .filter_map(|element| element.into_token())
            .filter(|token| {
                !matches!(
                    token.kind(),
                    rnix::SyntaxKind::TOKEN_WHITESPACE | rnix::SyntaxKind::TOKEN_COMMENT
                )
            })
            .map(|token| token.text().to_owned())
            .collect(),
    )
}

/// The key of a new item, which must be one Nix expression.
pub(super) fn new_item_key(item: &NewValue) -> Result<ItemKey, EditError> {
    let text = match item {
        NewValue::Expr(expr) => print_expr_at(expr, 0),
        NewValue::Text(text) => text.clone(),
    };
    let parsed = rnix::Root::parse(&text);
    if let Some(error) = parsed.errors().first() {
        return Err(EditError::BadValue(error.to_string()));
    }
    let expr = parsed
        .tree()
        .expr()
        .ok_or_else(|| EditError::BadValue("it is empty".to_owned()))?;
    Ok(item_key(&expr))
}
