//! Reading Nix written by people: the static meaning of attribute names and literal strings in an rnix tree.
//!
//! The editor (`crate::edit`) and the option importer (`crate::import`) both need to know what name an
//! attribute path component denotes and what text a string literal holds, without evaluating anything. Both
//! answer `None` when the meaning depends on evaluation (an interpolation, a computed name), so callers can
//! refuse with the location instead of guessing.
//!
//! [`literal_value`] reads data (defaults, examples, enum items) the same way: what the text fixes is read,
//! anything else is refused with the node that needs evaluation.

use rnix::ast::{self, BinOpKind, InterpolPart, LiteralKind, UnaryOpKind};
use rowan::ast::AstNode;
use serde_json::{Map, Number, Value};

use crate::position::Position;

/// The name an attribute path component denotes, when it is fixed by the text: `name`, `"name"`, or
/// `${"name"}`. `None` for a computed name (`${x}`, `"a${b}"`).
pub(crate) fn attr_name(attr: &ast::Attr) -> Option<String> {
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
pub(crate) fn attrpath_names(path: &ast::Attrpath) -> Result<Vec<String>, ast::Attr> {
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
pub(crate) fn is_ident(expr: &ast::Expr, name: &str) -> bool {
    matches!(expr, ast::Expr::Ident(ident)
        if ident.ident_token().is_some_and(|t| t.text() == name))
}

/// Why an expression is not static data: the node that needs evaluation, and what it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct NotLiteral {
    /// The offending node (locate it with [`position`]).
    pub node: rnix::SyntaxNode,
    /// What it is and why it is not data.
    pub reason: String,
}

fn not_literal(
    node: &impl AstNode<Language = rnix::NixLanguage>,
    reason: impl Into<String>,
) -> NotLiteral {
    NotLiteral {
        node: node.syntax().clone(),
        reason: reason.into(),
    }
}

/// The JSON value an expression denotes when the text alone fixes it, without evaluating anything: strings
/// without interpolation, integers, floats, `true`/`false`/`null`, lists, attribute sets with static names
/// (nested paths such as `{ a.b = 1; }` merged), parentheses, and arithmetic on number literals (`-1`, and the
/// forms the emitter writes for values without a literal: `(-9223372036854775807 - 1)`, `(-1.0 * 0.0)`,
/// subnormals as `(x / 18446744073709551616.0)`). Importing options needs this to read defaults and examples
/// of modules nobody may evaluate here; anything else (a reference, a call, a path, `inherit`) is refused with
/// its node.
pub fn literal_value(expr: &ast::Expr) -> Result<Value, NotLiteral> {
    match expr {
        ast::Expr::Paren(paren) => match paren.expr() {
            Some(inner) => literal_value(&inner),
            None => Err(not_literal(paren, "an incomplete expression")),
        },
        ast::Expr::Str(s) => string_literal(s)
            .map(Value::String)
            .ok_or_else(|| not_literal(s, "a string with interpolation (`${…}`)")),
        ast::Expr::Literal(literal) => match literal.kind() {
            LiteralKind::Integer(i) => i
                .value()
                .map(Value::from)
                .map_err(|_| not_literal(literal, "an integer outside Nix's range")),
            LiteralKind::Float(f) => f
                .value()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| not_literal(literal, "a float Nix cannot represent")),
            LiteralKind::Uri(_) => Ok(Value::String(literal.syntax().text().to_string())),
        },
        ast::Expr::Ident(_) if is_ident(expr, "true") => Ok(Value::Bool(true)),
        ast::Expr::Ident(_) if is_ident(expr, "false") => Ok(Value::Bool(false)),
        ast::Expr::Ident(_) if is_ident(expr, "null") => Ok(Value::Null),
        ast::Expr::List(list) => list.items().map(|item| literal_value(&item)).collect(),
        ast::Expr::AttrSet(set) => attr_set_value(set),
        ast::Expr::UnaryOp(op) => {
            let operand = op
                .expr()
                .ok_or_else(|| not_literal(op, "an incomplete expression"))?;
            match (op.operator(), number(&operand)?) {
                (Some(UnaryOpKind::Negate), Num::Int(i)) => i
                    .checked_neg()
                    .map(Value::from)
                    .ok_or_else(|| not_literal(op, "an integer overflow")),
                (Some(UnaryOpKind::Negate), Num::Float(f)) => float_value(op, -f),
                _ => Err(not_literal(op, "an operation that needs evaluation")),
            }
        }
        ast::Expr::BinOp(op) => arithmetic(op),
        ast::Expr::Ident(ident) => Err(not_literal(
            ident,
            format!("a reference to `{}`", ident.syntax().text()),
        )),
        ast::Expr::Select(select) => Err(not_literal(
            select,
            format!("a reference to `{}`", select.syntax().text()),
        )),
        ast::Expr::Apply(apply) => Err(not_literal(apply, "a function call")),
        ast::Expr::PathAbs(_)
        | ast::Expr::PathRel(_)
        | ast::Expr::PathHome(_)
        | ast::Expr::PathSearch(_) => Err(not_literal(
            expr,
            "a path literal (it would be copied into the Nix store; write a string)",
        )),
        other => Err(not_literal(other, "an expression that needs evaluation")),
    }
}

fn attr_set_value(set: &ast::AttrSet) -> Result<Value, NotLiteral> {
    use ast::HasEntry;
    let mut map = Map::new();
    for entry in set.entries() {
        let ast::Entry::AttrpathValue(binding) = entry else {
            return Err(not_literal(
                &entry,
                "`inherit` (a reference to another value)",
            ));
        };
        let path = binding
            .attrpath()
            .ok_or_else(|| not_literal(&binding, "an incomplete binding"))?;
        let names = attrpath_names(&path)
            .map_err(|attr| not_literal(&attr, "a computed attribute name"))?;
        let value = binding
            .value()
            .ok_or_else(|| not_literal(&binding, "an incomplete binding"))
            .and_then(|v| literal_value(&v))?;
        insert_path(&mut map, &names, value).map_err(|name| {
            not_literal(&path, format!("the attribute `{name}` is defined twice"))
        })?;
    }
    Ok(Value::Object(map))
}

/// Inserts `value` at `names` (merging nested sets as Nix does for `a.b = 1; a.c = 2;`), or names the
/// attribute defined twice.
fn insert_path(map: &mut Map<String, Value>, names: &[String], value: Value) -> Result<(), String> {
    let (first, rest) = names.split_first().expect("an attribute path has a name");
    if rest.is_empty() {
        return match (map.get_mut(first), value) {
            (None, value) => {
                map.insert(first.clone(), value);
                Ok(())
            }
            (Some(Value::Object(old)), Value::Object(new)) => {
                for (k, v) in new {
                    insert_path(old, &[k], v)?;
                }
                Ok(())
            }
            _ => Err(first.clone()),
        };
    }
    match map
        .entry(first.clone())
        .or_insert_with(|| Value::Object(Map::new()))
    {
        Value::Object(inner) => insert_path(inner, rest, value),
        _ => Err(first.clone()),
    }
}

#[derive(Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn float(self) -> f64 {
        match self {
            Self::Int(i) => i as f64,
            Self::Float(f) => f,
        }
    }
}

fn number(expr: &ast::Expr) -> Result<Num, NotLiteral> {
    match literal_value(expr)? {
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) if !n.to_string().contains(['.', 'e', 'E']) => Ok(Num::Int(i)),
            (_, Some(f)) => Ok(Num::Float(f)),
            _ => Err(not_literal(expr, "a number out of range")),
        },
        _ => Err(not_literal(
            expr,
            "arithmetic on something other than numbers",
        )),
    }
}

fn float_value(
    node: &impl AstNode<Language = rnix::NixLanguage>,
    f: f64,
) -> Result<Value, NotLiteral> {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| not_literal(node, "arithmetic without a finite result"))
}

/// `+ - * /` on number literals with Nix's rules: integers stay integers (checked, division truncates), a
/// float on either side makes a float.
fn arithmetic(op: &ast::BinOp) -> Result<Value, NotLiteral> {
    let (Some(lhs), Some(rhs), Some(kind)) = (op.lhs(), op.rhs(), op.operator()) else {
        return Err(not_literal(op, "an incomplete expression"));
    };
    if !matches!(
        kind,
        BinOpKind::Add | BinOpKind::Sub | BinOpKind::Mul | BinOpKind::Div
    ) {
        return Err(not_literal(op, "an operation that needs evaluation"));
    }
    let (a, b) = (number(&lhs)?, number(&rhs)?);
    if let (Num::Int(a), Num::Int(b)) = (a, b) {
        let result = match kind {
            BinOpKind::Add => a.checked_add(b),
            BinOpKind::Sub => a.checked_sub(b),
            BinOpKind::Mul => a.checked_mul(b),
            _ => a.checked_div(b),
        };
        return result
            .map(Value::from)
            .ok_or_else(|| not_literal(op, "an integer overflow or a division by zero"));
    }
    let (a, b) = (a.float(), b.float());
    let result = match kind {
        BinOpKind::Add => a + b,
        BinOpKind::Sub => a - b,
        BinOpKind::Mul => a * b,
        _ if b == 0.0 => return Err(not_literal(op, "a division by zero")),
        _ => a / b,
    };
    float_value(op, result)
}

#[cfg(test)]
mod tests {
    use super::*;

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

#[cfg(test)]
mod value_tests {
    use super::*;
    use serde_json::json;

    fn value(text: &str) -> Result<Value, String> {
        let root = rnix::Root::parse(text).tree();
        literal_value(&root.expr().expect("an expression"))
            .map_err(|e| format!("{}: {e}", e.node.text()))
    }

    #[test]
    fn data_fixed_by_the_text_is_read() {
        assert_eq!(
            value(
                r#"{ a.b = [ 1 (-2) 2.5 "s" ''x'' null true ]; a.c = { d = false; }; "e f" = -3; }"#
            )
            .unwrap(),
            json!({"a": {"b": [1, -2, 2.5, "s", "x", null, true], "c": {"d": false}}, "e f": -3})
        );
        assert_eq!(
            value("(-9223372036854775807 - 1)").unwrap(),
            json!(i64::MIN)
        );
        let negative_zero = value("(-1.0 * 0.0)").unwrap();
        assert!(negative_zero.as_f64().unwrap().is_sign_negative());
        assert_eq!(
            value("(4.0 / 18446744073709551616.0)").unwrap().as_f64(),
            Some(4.0 / 18446744073709551616.0)
        );
        assert_eq!(
            value("7 / 2").unwrap(),
            json!(3),
            "integer division truncates as in Nix"
        );
        assert!(
            value("1e3").unwrap_err().contains("function call"),
            "`1e3` is not a float in Nix but `1` applied to `e3`"
        );
    }

    #[test]
    fn anything_that_needs_evaluation_is_refused_with_its_node() {
        assert_eq!(
            value(r#"[ 1 "a${b}" ]"#).unwrap_err(),
            r#""a${b}": a string with interpolation (`${…}`)"#
        );
        assert_eq!(
            value("{ x = pkgs.hello; }").unwrap_err(),
            "pkgs.hello: a reference to `pkgs.hello`"
        );
        assert_eq!(
            value("{ inherit x; }").unwrap_err(),
            "inherit x;: `inherit` (a reference to another value)"
        );
        assert!(
            value("{ a = 1; a = 2; }")
                .unwrap_err()
                .contains("defined twice")
        );
        assert!(
            value("{ a.b = 1; a = 2; }")
                .unwrap_err()
                .contains("defined twice")
        );
        assert!(value("./file").unwrap_err().contains("path literal"));
        assert!(
            value("-9223372036854775807 - 2")
                .unwrap_err()
                .contains("overflow")
        );
        assert!(value("1 / 0").unwrap_err().contains("division by zero"));
        assert!(value("f 1").unwrap_err().contains("function call"));
    }
}
