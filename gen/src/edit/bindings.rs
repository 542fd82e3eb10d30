//! `get`, `set` and `unset`: reading and changing the binding a path names.

use rnix::ast;
use rowan::ast::AstNode;

use super::file::NixFile;
use super::layout::render;
use super::lookup::Hit;
use super::path::{EditPath, attrpath_text};
use super::types::{Definition, Edit, EditError, NewValue};
use crate::nix::literal::attr_name;
use crate::nix::print::print_expr_at;
use crate::position::Position;

impl NixFile {
    /// The definition of `path`, exactly as written; for a set defined in several places or in parts
    /// (`a.b = 1; a = { c = 2; };`), the merged value when every part is plain data under the same wrappers, and a
    /// refusal naming the places otherwise.
    pub fn get(&self, path: &EditPath) -> Result<Definition, EditError> {
        let lookup = self.lookup(path)?;
        match lookup.hits.as_slice() {
            [] => Err(self.not_defined(path, &lookup)),
            [(Hit::Exact(binding), _)] => {
                let value = binding.value().expect("a parsed binding has a value");
                let range = self.range_of(value.syntax());
                let data = crate::nix::literal::literal_value(&value).map_err(|not| {
                    format!(
                        "{}: not plain data: {}",
                        self.position_of(&not.node),
                        not.reason
                    )
                });
                let position = self.position_of(binding.syntax());
                Ok(Definition {
                    position,
                    places: vec![position],
                    value: self.text[range.clone()].to_owned(),
                    range: Some(range),
                    data,
                })
            }
            hits => self.merged(path, hits),
        }
    }

    /// The static value of a path defined by several bindings, merged as Nix and the module system would.
    pub(super) fn merged(
        &self,
        path: &EditPath,
        hits: &[(Hit, Vec<usize>)],
    ) -> Result<Definition, EditError> {
        let places: Vec<Position> = hits
            .iter()
            .map(|(hit, _)| self.position_of(hit.binding().syntax()))
            .collect();
        let listed = places
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let defined = match hits {
            [(hit, _)] => format!(
                "it is defined in parts (`{}`)",
                hit.binding()
                    .attrpath()
                    .map(|p| p.syntax().to_string())
                    .unwrap_or_default()
            ),
            _ => format!("it is defined in {} places ({listed})", hits.len()),
        };
        let cannot = |node: &rnix::SyntaxNode, why: String| {
            self.refused(
                path,
                node,
                format!(
                    "{defined} and {why}, so only Nix can merge them; ask for the longer paths, or evaluate the file"
                ),
            )
        };
        if let Some((hit, _)) = hits.iter().find(|(_, wrappers)| *wrappers != hits[0].1) {
            return Err(cannot(
                hit.binding().syntax(),
                "some of them stand under a function call (such as `lib.mkIf`) that the others do not".to_owned(),
            ));
        }
        let mut merged = serde_json::Map::new();
        for (hit, _) in hits {
            let binding = hit.binding();
            let value = binding.value().expect("a parsed binding has a value");
            let data = crate::nix::literal::literal_value(&value).map_err(|not| {
                cannot(
                    &not.node,
                    format!(
                        "the part at {} is not plain data ({})",
                        self.position_of(&not.node),
                        not.reason
                    ),
                )
            })?;
            let names: Vec<String> = match hit {
                Hit::Exact(_) => Vec::new(),
                Hit::Partial(_, consumed) => binding
                    .attrpath()
                    .expect("a binding has a path")
                    .attrs()
                    .skip(*consumed)
                    .map(|attr| {
                        attr_name(&attr).ok_or_else(|| {
                            cannot(
                                attr.syntax(),
                                format!("the name `{}` is computed", attr.syntax()),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
            };
            merge_into(&mut merged, &names, data).map_err(|at| {
                cannot(
                    binding.syntax(),
                    format!(
                        "`{}` is defined twice (again at {})",
                        attrpath_text(&[path.names(), &at].concat()),
                        self.position_of(binding.syntax())
                    ),
                )
            })?;
        }
        let merged = serde_json::Value::Object(merged);
        let policy = crate::nix::value::DataPolicy {
            allow_special_attributes: true,
        };
        let value = match crate::nix::value::from_json(&merged, policy) {
            Ok(expr) => print_expr_at(&expr, 0),
            Err(_) => merged.to_string(),
        };
        Ok(Definition {
            position: places[0],
            places,
            value,
            range: None,
            data: Ok(merged),
        })
    }

    /// The edit that makes `path` hold `value`: the old value replaced in place, a definition in parts replaced
    /// by one, or a new binding added to the deepest set the path already reaches (after its closest sibling).
    pub fn set(&self, path: &EditPath, value: &NewValue) -> Result<Edit, EditError> {
        if let NewValue::Text(text) = value {
            let parsed = rnix::Root::parse(text);
            if let Some(error) = parsed.errors().first() {
                return Err(EditError::BadValue(error.to_string()));
            }
            if parsed.tree().expr().is_none() {
                return Err(EditError::BadValue("it is empty".to_owned()));
            }
        }
        let lookup = self.lookup(path)?;
        let edit = match self.single_hit(path, &lookup)? {
            Some(Hit::Exact(binding)) => {
                let old = binding.value().expect("a parsed binding has a value");
                let indent = self.line_indent(binding.syntax());
                Edit {
                    range: self.range_of(old.syntax()),
                    replacement: render(value, indent),
                }
            }
            Some(Hit::Partial(binding, consumed)) => {
                // `a.b.c = 1;` setting `a.b`: keep `a.b` as written, replace the rest of the binding.
                let attrs: Vec<_> = binding
                    .attrpath()
                    .expect("a binding has a path")
                    .attrs()
                    .collect();
                let old = binding.value().expect("a parsed binding has a value");
                let indent = self.line_indent(binding.syntax());
                Edit {
                    range: self.end_of(attrs[consumed - 1].syntax())..self.end_of(old.syntax()),
                    replacement: format!(" = {}", render(value, indent)),
                }
            }
            None => self.insert(path, &lookup, value)?,
        };
        self.checked(edit)
    }

    /// The edit that removes the definition of `path`, with the line it stood on when it stood alone, and the
    /// comment lines directly above it (not one separated by a blank line, nor one that ends a line of code). A
    /// set literal left with nothing inside (not even a comment) is removed with its binding, so `unset a.b` of
    /// `a = { b = 1; };` leaves no `a = { };` behind, just as it would for `a.b = 1;`.
    pub fn unset(&self, path: &EditPath) -> Result<Edit, EditError> {
        let lookup = self.lookup(path)?;
        let binding = match self.single_hit(path, &lookup)? {
            Some(Hit::Exact(binding) | Hit::Partial(binding, _)) => binding,
            None => return Err(self.not_defined(path, &lookup)),
        };
        // Climb while the binding is the only thing in a set that is itself the plain value of a binding.
        let mut doomed = binding;
        loop {
            let Some(set) = doomed.syntax().parent().and_then(ast::AttrSet::cast) else {
                break;
            };
            let inside = self.inside_braces(&set);
            let own = self.removal(doomed.syntax(), '}').range;
            let rest = format!(
                "{}{}",
                &self.text[inside.start..own.start.clamp(inside.start, inside.end)],
                &self.text[own.end.clamp(inside.start, inside.end)..inside.end]
            );
            if !rest.trim().is_empty() {
                break;
            }
            let Some(parent) = plain_value_of(&set) else {
                break;
            };
            doomed = parent;
        }
        self.checked(self.removal(doomed.syntax(), '}'))
    }
}

/// The binding whose value is `set` itself (not through a wrapper), if any.
pub(super) fn plain_value_of(set: &ast::AttrSet) -> Option<ast::AttrpathValue> {
    ast::AttrpathValue::cast(set.syntax().parent()?)
}

/// Merges `value` into `map` at `names` (nested sets merge, as Nix merges `a.b = 1; a = { c = 2; };`), or
/// returns the names (below `map`) of an attribute defined twice.
pub(super) fn merge_into(
    map: &mut serde_json::Map<String, serde_json::Value>,
    names: &[String],
    value: serde_json::Value,
) -> Result<(), Vec<String>> {
    let Some((first, rest)) = names.split_first() else {
        // The value itself: a set whose attributes join the map.
        let serde_json::Value::Object(new) = value else {
            return Err(Vec::new());
        };
        for (name, inner) in new {
            merge_into(map, std::slice::from_ref(&name), inner)?;
        }
        return Ok(());
    };
    let within = |mut at: Vec<String>| {
        at.insert(0, first.clone());
        at
    };
    match map.get_mut(first) {
        None if rest.is_empty() => {
            map.insert(first.clone(), value);
            Ok(())
        }
        None => {
            let mut inner = serde_json::Map::new();
            merge_into(&mut inner, rest, value).map_err(within)?;
            map.insert(first.clone(), serde_json::Value::Object(inner));
            Ok(())
        }
        Some(serde_json::Value::Object(inner)) => merge_into(inner, rest, value).map_err(within),
        Some(_) => Err(vec![first.clone()]),
    }
}
