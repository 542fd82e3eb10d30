//! Looking a path up through the shapes NixOS configurations take: nested and dotted bindings, functions,
//! `let`/`with`/`assert`, `lib.mkIf`-style wrappers, `mkMerge` lists and a call's set-literal argument.

use rnix::ast::{self, HasEntry};
use rowan::ast::AstNode;

use super::file::{NixFile, abbreviate};
use super::path::{EditPath, attrpath_text};
use super::types::EditError;
use crate::nix::literal::{attr_name, is_ident};

impl NixFile {
    pub(super) fn not_defined(&self, path: &EditPath, lookup: &Lookup) -> EditError {
        let nearest = lookup
            .sets
            .iter()
            .filter(|set| set.depth > 0)
            .max_by_key(|set| set.depth)
            .and_then(|set| {
                let binding = set.via.as_ref()?;
                Some((
                    attrpath_text(&path.names()[..set.depth]),
                    self.position_of(binding.syntax()),
                ))
            });
        EditError::NotDefined {
            file: self.name.clone(),
            path: path.to_string(),
            nearest,
        }
    }

    pub(super) fn single_hit(
        &self,
        path: &EditPath,
        lookup: &Lookup,
    ) -> Result<Option<Hit>, EditError> {
        match lookup.hits.as_slice() {
            [] => Ok(None),
            [(hit, _)] => Ok(Some(hit.clone())),
            hits => Err(EditError::DefinedInSeveralPlaces {
                file: self.name.clone(),
                path: path.to_string(),
                positions: hits
                    .iter()
                    .map(|(h, _)| self.position_of(h.binding().syntax()))
                    .collect(),
            }),
        }
    }

    /// Every binding of `path` and every set literal on the way to it.
    pub(super) fn lookup(&self, path: &EditPath) -> Result<Lookup, EditError> {
        assert!(
            self.focus.as_ref().is_none_or(|focus| focus == path),
            "a file skimmed for `{}` cannot answer for `{path}`",
            self.focus
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        let mut lookup = Lookup::default();
        let sets = self.sets_of(&self.root).map_err(|(node, reason)| {
            self.refused(path, &node, format!("the file's value {reason}"))
        })?;
        for (set, wrappers) in sets {
            self.walk(path, set, 0, None, &wrappers, &mut lookup)?;
        }
        Ok(lookup)
    }

    /// The set literals an expression is, seen through the wrappers that leave a set a set, each with the
    /// function calls it stands under (their offsets in the tree): a module wrapper's body, each set of a
    /// `mkMerge` list, and the set-literal argument of any other call (`nixpkgs.lib.nixosSystem { … }`,
    /// `pkgs.callPackage ./x.nix { … }`), which is what people mean by a path through it.
    pub(super) fn sets_of(
        &self,
        expr: &ast::Expr,
    ) -> Result<Vec<SetUnder>, (rnix::SyntaxNode, String)> {
        self.sets_under(expr, Vec::new())
    }

    pub(super) fn sets_under(
        &self,
        expr: &ast::Expr,
        mut wrappers: Vec<usize>,
    ) -> Result<Vec<SetUnder>, (rnix::SyntaxNode, String)> {
        let mut expr = expr.clone();
        loop {
            expr = match expr {
                ast::Expr::AttrSet(set) => return Ok(vec![(set, wrappers)]),
                ast::Expr::Paren(p) => p.expr().ok_or_else(|| incomplete(p.syntax()))?,
                ast::Expr::LetIn(l) => l.body().ok_or_else(|| incomplete(l.syntax()))?,
                ast::Expr::With(w) => w.body().ok_or_else(|| incomplete(w.syntax()))?,
                ast::Expr::Assert(a) => a.body().ok_or_else(|| incomplete(a.syntax()))?,
                ast::Expr::Lambda(l) => l.body().ok_or_else(|| incomplete(l.syntax()))?,
                ast::Expr::Apply(apply) => {
                    wrappers.push(usize::from(apply.syntax().text_range().start()));
                    match module_wrapper(&apply) {
                        Some(Wrapper::Body(body)) => body,
                        Some(Wrapper::Merge(list)) => {
                            let mut sets = Vec::new();
                            for item in list.items() {
                                sets.extend(self.sets_under(&item, wrappers.clone())?);
                            }
                            return Ok(sets);
                        }
                        None => match set_argument(&apply) {
                            Some(argument) => argument,
                            None => {
                                return Err(not_a_set(
                                    &self.text[self.range_of(apply.syntax())],
                                    &ast::Expr::Apply(apply),
                                ));
                            }
                        },
                    }
                }
                other => {
                    let written = &self.text[self.range_of(other.syntax())];
                    return Err(not_a_set(written, &other));
                }
            };
        }
    }

    pub(super) fn walk(
        &self,
        path: &EditPath,
        set: ast::AttrSet,
        depth: usize,
        via: Option<ast::AttrpathValue>,
        wrappers: &[usize],
        lookup: &mut Lookup,
    ) -> Result<(), EditError> {
        let rest = &path.names()[depth..];
        lookup.sets.push(SetOnPath {
            set: set.clone(),
            depth,
            via,
        });
        for entry in set.entries() {
            match entry {
                ast::Entry::Inherit(inherit) => {
                    for attr in inherit.attrs() {
                        if attr_name(&attr).is_none_or(|name| name == rest[0]) {
                            return Err(self.refused(
                                path,
                                inherit.syntax(),
                                format!(
                                    "`{}` is inherited here (`{}`), so its value lives elsewhere; edit it where it is defined, or replace the inherit by a binding first",
                                    attrpath_text(&path.names()[..=depth]),
                                    inherit.syntax()
                                ),
                            ));
                        }
                    }
                }
                ast::Entry::AttrpathValue(binding) => {
                    let Some(attrpath) = binding.attrpath() else {
                        continue;
                    };
                    let attrs: Vec<_> = attrpath.attrs().collect();
                    let mut matched = 0;
                    let mut diverged = false;
                    for attr in &attrs {
                        if matched == rest.len() {
                            break;
                        }
                        match attr_name(attr) {
                            None => {
                                return Err(self.refused(
                                    path,
                                    attr.syntax(),
                                    format!(
                                        "the name `{}` is computed, so whether it is `{}` is only known when Nix evaluates it",
                                        attr.syntax(),
                                        rest[matched]
                                    ),
                                ));
                            }
                            Some(name) if name == rest[matched] => matched += 1,
                            Some(_) => {
                                diverged = true;
                                break;
                            }
                        }
                    }
                    if diverged || matched == 0 {
                        continue;
                    }
                    if matched == rest.len() {
                        let hit = if attrs.len() == matched {
                            Hit::Exact(binding)
                        } else {
                            Hit::Partial(binding, matched)
                        };
                        lookup.hits.push((hit, wrappers.to_vec()));
                        continue;
                    }
                    // The binding names a prefix of the path: follow its value.
                    let Some(value) = binding.value() else {
                        continue;
                    };
                    let sets = self.sets_of(&value).map_err(|(node, reason)| {
                        self.refused(
                            path,
                            &node,
                            format!(
                                "`{}` {reason}",
                                attrpath_text(&path.names()[..depth + matched])
                            ),
                        )
                    })?;
                    for (inner, under) in sets {
                        let under = [wrappers, &under].concat();
                        let via = Some(binding.clone());
                        self.walk(path, inner, depth + matched, via, &under, lookup)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// What a lookup found.
#[derive(Default)]
pub(super) struct Lookup {
    /// Bindings of the path itself (exact) or of longer paths inside it (partial), each with the function calls
    /// (`lib.mkIf …`) it stands under, by offset in the tree.
    pub(super) hits: Vec<(Hit, Vec<usize>)>,
    /// The set literals on the way, with how much of the path leads to them.
    pub(super) sets: Vec<SetOnPath>,
}

/// A binding that defines the path.
#[derive(Clone)]
pub(super) enum Hit {
    /// `path = value;` (possibly split across nested sets).
    Exact(ast::AttrpathValue),
    /// `path.more = value;`: the binding defines part of the path's value; the number is how many of its
    /// names make up the path.
    Partial(ast::AttrpathValue, usize),
}

impl Hit {
    pub(super) fn binding(&self) -> &ast::AttrpathValue {
        match self {
            Self::Exact(binding) | Self::Partial(binding, _) => binding,
        }
    }
}

/// A set literal the path reaches.
pub(super) struct SetOnPath {
    pub(super) set: ast::AttrSet,
    /// How many names of the path lead to this set.
    pub(super) depth: usize,
    /// The binding whose value the set is (`None` for the file's top set).
    pub(super) via: Option<ast::AttrpathValue>,
}

/// A set literal and the function calls it stands under (offsets in the tree).
pub(super) type SetUnder = (ast::AttrSet, Vec<usize>);

/// The argument of a function call when it is a set literal (in parentheses or not), which a path goes
/// through: `nixpkgs.lib.nixosSystem { modules = …; }`.
pub(super) fn set_argument(apply: &ast::Apply) -> Option<ast::Expr> {
    let argument = apply.argument()?;
    let mut inner = argument.clone();
    while let ast::Expr::Paren(paren) = inner {
        inner = paren.expr()?;
    }
    matches!(inner, ast::Expr::AttrSet(_)).then_some(argument)
}

/// How the module system wraps a set: `lib.mkIf c { … }` and friends, or `lib.mkMerge [ … ]`.
pub(super) enum Wrapper {
    Body(ast::Expr),
    Merge(ast::List),
}

/// Recognises `mkIf cond body`, `mkDefault body`, `mkForce body`, `mkOverride n body`, `mkBefore body`,
/// `mkAfter body`, `mkOrder n body` (bare or as `lib.…`) with all their arguments, and `mkMerge [ … ]`.
pub(super) fn module_wrapper(apply: &ast::Apply) -> Option<Wrapper> {
    let mut args = vec![apply.argument()?];
    let mut head = apply.lambda()?;
    while let ast::Expr::Apply(inner) = head {
        args.push(inner.argument()?);
        head = inner.lambda()?;
    }
    let name = match &head {
        ast::Expr::Ident(ident) => ident.ident_token()?.text().to_owned(),
        ast::Expr::Select(select) if select.default_expr().is_none() => {
            let base = select.expr()?;
            if !is_ident(&base, "lib") {
                return None;
            }
            let names: Vec<_> = select.attrpath()?.attrs().collect();
            let [attr] = names.as_slice() else {
                return None;
            };
            attr_name(attr)?
        }
        _ => return None,
    };
    let arity = match name.as_str() {
        "mkDefault" | "mkForce" | "mkBefore" | "mkAfter" | "mkMerge" => 1,
        "mkIf" | "mkOverride" | "mkOrder" => 2,
        _ => return None,
    };
    if args.len() != arity {
        return None;
    }
    let last = args.swap_remove(0);
    if name == "mkMerge" {
        match last {
            ast::Expr::List(list) => Some(Wrapper::Merge(list)),
            _ => None,
        }
    } else {
        Some(Wrapper::Body(last))
    }
}

pub(super) fn incomplete(node: &rnix::SyntaxNode) -> (rnix::SyntaxNode, String) {
    (node.clone(), "is incomplete".to_owned())
}

/// What an expression is, in words, and whether its value is only known by evaluating it.
pub(super) fn describe(expr: &ast::Expr) -> (&'static str, bool) {
    match expr {
        ast::Expr::Ident(_) | ast::Expr::Select(_) => ("a variable", true),
        ast::Expr::Apply(_) => ("a function call", true),
        ast::Expr::BinOp(_) => ("an operation (such as `//`)", true),
        ast::Expr::IfElse(_) => ("an `if`", true),
        ast::Expr::List(_) => ("a list", false),
        ast::Expr::AttrSet(_) => ("an attribute set", false),
        ast::Expr::Literal(_)
        | ast::Expr::Str(_)
        | ast::Expr::PathAbs(_)
        | ast::Expr::PathRel(_)
        | ast::Expr::PathHome(_)
        | ast::Expr::PathSearch(_) => ("a plain value", false),
        _ => ("an expression", true),
    }
}

pub(super) fn not_a_set(written: &str, expr: &ast::Expr) -> (rnix::SyntaxNode, String) {
    let (what, computed) = describe(expr);
    let consequence = if computed {
        "not an attribute set literal, so what it holds is only known when Nix evaluates it; edit it where it is defined, or write it as a set literal"
    } else {
        "which has no attributes; set the whole value instead"
    };
    (
        expr.syntax().clone(),
        format!("is {what} (`{}`), {consequence}", abbreviate(written)),
    )
}
