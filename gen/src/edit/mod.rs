//! Lossless edits of Nix files that people write: set, unset or read one attribute path, or add or remove one
//! item of a list literal, changing only the bytes of that definition or item.
//!
//! The file is parsed with rnix, whose syntax tree keeps every byte (comments, blank lines, odd spacing). The
//! path is looked up statically through the shapes NixOS configurations are written in: attribute sets at any
//! depth and any mix of `a.b.c = …;` and `a = { b = …; };`, function bodies (`{ config, lib, ... }: …` modules,
//! a flake's `outputs = { self, … }: …`, so that `outputs.packages` means what a person means by it),
//! `let … in`, `with …;`, `assert …;`, parentheses, `lib.mkIf`/`mkDefault`/`mkForce`/`mkOverride`/`mkBefore`/
//! `mkAfter`/`mkOrder` bodies, each set of a `lib.mkMerge [ … ]` list, and the set-literal argument of any other
//! call (`nixpkgs.lib.nixosSystem { … }`: what people mean by a path through it). An edit is one
//! replacement of a byte range ([`Edit`]); everything outside it stays identical. New values come from the
//! same printer as every generated file, indented for the place they land in.
//!
//! What cannot be decided from the text is refused with the reason and the location rather than guessed: a
//! computed name (`${x}`), an inherited attribute, a value that is not a set literal (`a = import ./x.nix;`)
//! on the way to the path, a path defined in several places (`get` merges the parts when they are plain data), a
//! list that is not a list literal (`a ++ b`, a variable), or a new attribute that could go into several sets.

use std::fmt;
use std::ops::Range;

use rnix::ast::{self, HasEntry};
use rowan::ast::AstNode;

use crate::nix::Expr;
use crate::nix::lexical;
use crate::nix::literal::{attr_name, is_ident};
use crate::nix::print::print_expr_at;
use crate::nix::verify::{self, Position, VerifyError};

mod skim;

/// An attribute path as people write it on the command line: `services.nginx.virtualHosts."example.org".root`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AttrPath(Vec<String>);

impl AttrPath {
    /// A path from its names (each may be any string; quoting is the printer's business).
    pub fn new(names: Vec<String>) -> Result<Self, String> {
        if names.is_empty() {
            return Err("an attribute path needs at least one name".to_owned());
        }
        if let Some(name) = names.iter().find(|n| n.contains('\0')) {
            return Err(format!(
                "the name {} contains NUL, which Nix cannot represent",
                serde_json::to_string(name).unwrap_or_default()
            ));
        }
        Ok(Self(names))
    }

    /// Parses Nix attribute-path syntax: names separated by `.`, each bare (`services`) or double-quoted with
    /// Nix escapes (`"example.org"`). Interpolations are refused: a path must name fixed attributes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = |why: &str| {
            format!(
                "`{text}` is not an attribute path: {why}; write names separated by dots, quoting names that \
                 are not identifiers (services.nginx.virtualHosts.\"example.org\".root)"
            )
        };
        if text.trim() != text || text.is_empty() {
            return Err(invalid("it is empty or has surrounding spaces"));
        }
        let probe = format!("{{ {text} = null; }}");
        let root = rnix::Root::parse(&probe);
        if !root.errors().is_empty() {
            return Err(invalid("Nix cannot parse it"));
        }
        let Some(ast::Expr::AttrSet(set)) = root.tree().expr() else {
            return Err(invalid("Nix cannot parse it"));
        };
        let entries: Vec<_> = set.entries().collect();
        let [ast::Entry::AttrpathValue(entry)] = entries.as_slice() else {
            return Err(invalid("it is more than one path"));
        };
        let path = entry.attrpath().ok_or_else(|| invalid("no names"))?;
        if path.syntax().text() != text {
            return Err(invalid("it is more than a path"));
        }
        let names = path
            .attrs()
            .map(|attr| attr_name(&attr).ok_or_else(|| invalid("a name is computed (`${…}`)")))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(names)
    }

    /// The names, outermost first.
    pub fn names(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&attrpath_text(&self.0))
    }
}

/// Names as Nix attribute-path text, quoted where needed.
fn attrpath_text(names: &[String]) -> String {
    let mut out = String::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        lexical::write_attr_name(&mut out, name);
    }
    out
}

/// The value to set: data converted by the emitter, or Nix text written by a person (inserted as written).
#[derive(Debug, Clone)]
pub enum NewValue {
    /// An expression printed by fedigen's printer, laid out for where it lands.
    Expr(Expr),
    /// Nix text, checked to parse on its own; inserted byte for byte.
    Text(String),
}

/// One change to a file: replace `range` of the old text with `replacement`. Everything else is untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// The bytes of the old text that change.
    pub range: Range<usize>,
    /// What they become.
    pub replacement: String,
}

impl Edit {
    /// The new text of the file.
    pub fn apply(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + self.replacement.len());
        out.push_str(&text[..self.range.start]);
        out.push_str(&self.replacement);
        out.push_str(&text[self.range.end..]);
        out
    }
}

/// Where a path is defined, as read from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    /// Where the binding (`name = value;`) starts; the first one when the path is defined in several places.
    pub position: Position,
    /// Where each binding that defines part of the value starts (one place for a single definition).
    pub places: Vec<Position>,
    /// The value's text, exactly as written; for a set defined in several places (`a.b = 1; a = { c = 2; };`),
    /// the merged value printed by fedigen's printer.
    pub value: String,
    /// The value's byte range in the file (`None` when merged from several places).
    pub range: Option<Range<usize>>,
    /// The value as JSON when the text fixes it (plain data: strings, numbers, lists, sets), or where and why
    /// it needs evaluation (`line:column: reason`).
    pub data: Result<serde_json::Value, String>,
}

/// Why an edit was refused: what, where, and how to proceed. Nothing is written when an edit is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The file is not valid Nix to begin with.
    #[error(transparent)]
    Syntax(#[from] VerifyError),
    /// The path does not lead into attribute set literals the editor can follow.
    #[error("{file}:{position}: cannot edit `{path}`: {reason}")]
    Refused {
        /// The file.
        file: String,
        /// Where the obstacle is.
        position: Position,
        /// The path asked for.
        path: String,
        /// What the obstacle is and what to do instead.
        reason: String,
    },
    /// The path is defined by more than one binding.
    #[error(
        "{file}: cannot edit `{path}`: it is defined in {} places ({}); edit them one at a time through longer paths, or merge them by hand first",
        positions.len(),
        positions.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
    )]
    DefinedInSeveralPlaces {
        /// The file.
        file: String,
        /// The path asked for.
        path: String,
        /// Where each definition starts.
        positions: Vec<Position>,
    },
    /// `get` or `unset` of a path the file does not define.
    #[error("{file}: `{path}` is not defined{}", nearest.as_ref().map(|(p, at)| format!(" (the nearest definition is `{p}` at {at})")).unwrap_or_default())]
    NotDefined {
        /// The file.
        file: String,
        /// The path asked for.
        path: String,
        /// The longest defined prefix and where, to help spot a typo.
        nearest: Option<(String, Position)>,
    },
    /// `remove` of an item the list does not hold.
    #[error("{file}:{position}: `{path}` holds no item `{item}` (it is `{list}`)")]
    NoSuchItem {
        /// The file.
        file: String,
        /// Where the list is.
        position: Position,
        /// The path asked for.
        path: String,
        /// The item asked for, as printed.
        item: String,
        /// The list, as written (abbreviated).
        list: String,
    },
    /// Nix text given as the new value does not parse on its own.
    #[error("the new value does not parse as a Nix expression: {0}")]
    BadValue(String),
    /// The edited file does not parse (a bug in fedigen: the edit is not written).
    #[error(
        "{file}: the edit would not parse ({message}); nothing was written — please report this"
    )]
    Broken {
        /// The file.
        file: String,
        /// The parser's message.
        message: String,
    },
}

/// A parsed file, ready for lookups and edits.
pub struct Document {
    name: String,
    text: String,
    /// What rnix parsed: the text itself, or (for one path) the text with what is off the path skimmed, with
    /// the way back to the file's offsets. Every offset taken from the tree goes through it.
    tree: skim::Skimmed,
    root: ast::Expr,
    /// The only path this document can answer for, when it was skimmed for it.
    focus: Option<AttrPath>,
}

impl Document {
    /// Parses the whole of `text` (the contents of the file `name`, which is used in messages); any path can
    /// then be looked up.
    pub fn parse(name: &str, text: &str) -> Result<Self, EditError> {
        Self::from_tree(name, text, skim::Skimmed::whole(text), None)
    }

    /// Parses `text` for edits of `path` alone: the values of bindings unrelated to the path are skimmed by the
    /// tokenizer instead of parsed (see `skim`), which makes an edit of a large file several times cheaper than
    /// a full parse. Syntax errors inside those values are not looked for (`fedigen nix check` does); lexical
    /// errors anywhere and everything on the path are.
    pub fn for_path(name: &str, text: &str, path: &AttrPath) -> Result<Self, EditError> {
        let tree = skim::skim(text, path.names());
        Self::from_tree(name, text, tree, Some(path.clone()))
    }

    fn from_tree(
        name: &str,
        text: &str,
        tree: skim::Skimmed,
        focus: Option<AttrPath>,
    ) -> Result<Self, EditError> {
        let root = match verify::parse(name, &tree.text) {
            Ok(root) => root,
            // The whole file, so that a syntax error is reported where it is in the file.
            Err(_) if tree.text.len() != text.len() => {
                return Self::from_tree(name, text, skim::Skimmed::whole(text), focus);
            }
            Err(e) => return Err(e.into()),
        };
        let root = root.expr().ok_or_else(|| VerifyError::Syntax {
            file: name.to_owned(),
            position: Position { line: 1, column: 1 },
            message: "the file holds no expression".to_owned(),
        })?;
        Ok(Self {
            name: name.to_owned(),
            text: text.to_owned(),
            tree,
            root,
            focus,
        })
    }

    /// The file's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The definition of `path`, exactly as written; for a set defined in several places or in parts
    /// (`a.b = 1; a = { c = 2; };`), the merged value when every part is plain data under the same wrappers, and a
    /// refusal naming the places otherwise.
    pub fn get(&self, path: &AttrPath) -> Result<Definition, EditError> {
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
    fn merged(&self, path: &AttrPath, hits: &[(Hit, Vec<usize>)]) -> Result<Definition, EditError> {
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
    pub fn set(&self, path: &AttrPath, value: &NewValue) -> Result<Edit, EditError> {
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
    pub fn unset(&self, path: &AttrPath) -> Result<Edit, EditError> {
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

    /// The edit that adds `item` at the end of the list literal `path` holds, laid out like the items already
    /// there (one per line, or inline), keeping every other item and comment. A list that already holds an item
    /// of the same static value is left as it is; a path not defined yet gets a binding holding `[ item ]`
    /// (the module system concatenates list definitions, so this adds to the option's other definitions).
    pub fn add_item(&self, path: &AttrPath, item: &NewValue) -> Result<Edit, EditError> {
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
    pub fn remove_item(&self, path: &AttrPath, item: &NewValue) -> Result<Edit, EditError> {
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
    fn list_of(
        &self,
        path: &AttrPath,
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

    fn in_parts(&self, path: &AttrPath, binding: &ast::AttrpathValue) -> EditError {
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
    fn item_key(&self, item: &ast::Expr) -> ItemKey {
        item_key(item)
    }

    fn checked(&self, edit: Edit) -> Result<Edit, EditError> {
        // The smallest set literal around the edit, edited, must parse on its own: the edit stays inside it,
        // and outside it nothing changes. (The tree has the file's structure around the edit.)
        let range =
            self.tree.of_file_offset(edit.range.start)..self.tree.of_file_offset(edit.range.end);
        let enclosing = self
            .root
            .syntax()
            .covering_element(rowan::TextRange::new(
                (range.start as u32).into(),
                (range.end as u32).into(),
            ))
            .ancestors()
            .filter(|node| node.kind() == rnix::SyntaxKind::NODE_ATTR_SET)
            .map(|node| byte_range(&node))
            .find(|set| set.start < range.start && range.end < set.end)
            .unwrap_or(0..self.tree.text.len());
        let mut text = String::from(&self.tree.text[enclosing.start..range.start]);
        text.push_str(&edit.replacement);
        text.push_str(&self.tree.text[range.end..enclosing.end]);
        let parsed = rnix::Root::parse(&text);
        match parsed.errors().first() {
            None => Ok(edit),
            Some(error) => Err(EditError::Broken {
                file: self.name.clone(),
                message: error.to_string(),
            }),
        }
    }

    /// Where a node of the tree starts in the file.
    fn start_of(&self, node: &rnix::SyntaxNode) -> usize {
        self.tree
            .file_offset(usize::from(node.text_range().start()), false)
    }

    /// Where a node of the tree ends in the file.
    fn end_of(&self, node: &rnix::SyntaxNode) -> usize {
        self.tree
            .file_offset(usize::from(node.text_range().end()), true)
    }

    /// A node's bytes in the file.
    fn range_of(&self, node: &rnix::SyntaxNode) -> Range<usize> {
        self.start_of(node)..self.end_of(node)
    }

    fn position_of(&self, node: &rnix::SyntaxNode) -> Position {
        Position::of_offset(&self.text, self.start_of(node))
    }

    fn refused(&self, path: &AttrPath, node: &rnix::SyntaxNode, reason: String) -> EditError {
        EditError::Refused {
            file: self.name.clone(),
            position: self.position_of(node),
            path: path.to_string(),
            reason,
        }
    }

    fn not_defined(&self, path: &AttrPath, lookup: &Lookup) -> EditError {
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

    fn single_hit(&self, path: &AttrPath, lookup: &Lookup) -> Result<Option<Hit>, EditError> {
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
    fn lookup(&self, path: &AttrPath) -> Result<Lookup, EditError> {
        assert!(
            self.focus.as_ref().is_none_or(|focus| focus == path),
            "a document skimmed for `{}` cannot answer for `{path}`",
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
    fn sets_of(&self, expr: &ast::Expr) -> Result<Vec<SetUnder>, (rnix::SyntaxNode, String)> {
        self.sets_under(expr, Vec::new())
    }

    fn sets_under(
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

    fn walk(
        &self,
        path: &AttrPath,
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

    /// A new binding for `path` in the deepest set that the path reaches.
    fn insert(
        &self,
        path: &AttrPath,
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
                let mut line_end = self.text[end..]
                    .find('\n')
                    .map_or(self.text.len(), |i| end + i);
                // The sibling's own line break and leading whitespace (tabs too), so the file stays uniform.
                let mut eol = "\n";
                if line_end > end && self.text[..line_end].ends_with('\r') {
                    line_end -= 1;
                    eol = "\r\n";
                }
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
                    let line_start = self.text[..close].rfind('\n').map_or(0, |i| i + 1);
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
    fn removal(&self, node: &rnix::SyntaxNode, close: char) -> Edit {
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
    fn attached_comments(&self, node: &rnix::SyntaxNode, line_start: usize) -> usize {
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
    fn line_start(&self, offset: usize) -> usize {
        self.text[..offset].rfind('\n').map_or(0, |i| i + 1)
    }

    /// Whether only spaces and tabs precede `offset` on its line.
    fn starts_line(&self, offset: usize) -> bool {
        self.text[self.line_start(offset)..offset]
            .trim_start_matches([' ', '\t'])
            .is_empty()
    }

    /// Where the line holding `offset` ends (before its `\r\n` or `\n`), and the file's line break there.
    fn line_end(&self, offset: usize) -> (usize, &'static str) {
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
    fn inside_brackets(&self, list: &ast::List) -> Range<usize> {
        let open = list.l_brack_token().expect("a parsed list has brackets");
        let close = list.r_brack_token().expect("a parsed list has brackets");
        self.tree
            .file_offset(usize::from(open.text_range().end()), true)
            ..self
                .tree
                .file_offset(usize::from(close.text_range().start()), false)
    }

    /// The bytes between a set's braces.
    fn inside_braces(&self, set: &ast::AttrSet) -> Range<usize> {
        let open = set.l_curly_token().expect("a parsed set has braces");
        let close = set.r_curly_token().expect("a parsed set has braces");
        self.tree
            .file_offset(usize::from(open.text_range().end()), true)
            ..self
                .tree
                .file_offset(usize::from(close.text_range().start()), false)
    }

    /// The indentation (in columns, a tab counting as one) of the line a node starts on.
    fn line_indent(&self, node: &rnix::SyntaxNode) -> usize {
        self.line_lead(node).chars().count()
    }

    /// The whitespace that starts the line a node starts on, as written.
    fn line_lead(&self, node: &rnix::SyntaxNode) -> &str {
        let start = self.start_of(node);
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line = &self.text[line_start..start];
        &line[..line.len() - line.trim_start_matches([' ', '\t']).len()]
    }
}

/// The new value's text for a binding on a line indented by `indent`.
fn render(value: &NewValue, indent: usize) -> String {
    match value {
        NewValue::Expr(expr) => print_expr_at(expr, indent),
        NewValue::Text(text) => text.trim().to_owned(),
    }
}

/// What a lookup found.
#[derive(Default)]
struct Lookup {
    /// Bindings of the path itself (exact) or of longer paths inside it (partial), each with the function calls
    /// (`lib.mkIf …`) it stands under, by offset in the tree.
    hits: Vec<(Hit, Vec<usize>)>,
    /// The set literals on the way, with how much of the path leads to them.
    sets: Vec<SetOnPath>,
}

/// A binding that defines the path.
#[derive(Clone)]
enum Hit {
    /// `path = value;` (possibly split across nested sets).
    Exact(ast::AttrpathValue),
    /// `path.more = value;`: the binding defines part of the path's value; the number is how many of its
    /// names make up the path.
    Partial(ast::AttrpathValue, usize),
}

impl Hit {
    fn binding(&self) -> &ast::AttrpathValue {
        match self {
            Self::Exact(binding) | Self::Partial(binding, _) => binding,
        }
    }
}

/// A set literal the path reaches.
struct SetOnPath {
    set: ast::AttrSet,
    /// How many names of the path lead to this set.
    depth: usize,
    /// The binding whose value the set is (`None` for the file's top set).
    via: Option<ast::AttrpathValue>,
}

/// A set literal and the function calls it stands under (offsets in the tree).
type SetUnder = (ast::AttrSet, Vec<usize>);

/// The argument of a function call when it is a set literal (in parentheses or not), which a path goes
/// through: `nixpkgs.lib.nixosSystem { modules = …; }`.
fn set_argument(apply: &ast::Apply) -> Option<ast::Expr> {
    let argument = apply.argument()?;
    let mut inner = argument.clone();
    while let ast::Expr::Paren(paren) = inner {
        inner = paren.expr()?;
    }
    matches!(inner, ast::Expr::AttrSet(_)).then_some(argument)
}

/// How the module system wraps a set: `lib.mkIf c { … }` and friends, or `lib.mkMerge [ … ]`.
enum Wrapper {
    Body(ast::Expr),
    Merge(ast::List),
}

/// Recognises `mkIf cond body`, `mkDefault body`, `mkForce body`, `mkOverride n body`, `mkBefore body`,
/// `mkAfter body`, `mkOrder n body` (bare or as `lib.…`) with all their arguments, and `mkMerge [ … ]`.
fn module_wrapper(apply: &ast::Apply) -> Option<Wrapper> {
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

/// The binding whose value is `set` itself (not through a wrapper), if any.
fn plain_value_of(set: &ast::AttrSet) -> Option<ast::AttrpathValue> {
    ast::AttrpathValue::cast(set.syntax().parent()?)
}

/// Merges `value` into `map` at `names` (nested sets merge, as Nix merges `a.b = 1; a = { c = 2; };`), or
/// returns the names (below `map`) of an attribute defined twice.
fn merge_into(
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

/// How many leading names an entry shares with `rest` (0 for an inherit or a computed name).
fn shared_prefix(entry: &ast::Entry, rest: &[String]) -> usize {
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

fn byte_range(node: &rnix::SyntaxNode) -> Range<usize> {
    let range = node.text_range();
    usize::from(range.start())..usize::from(range.end())
}

fn incomplete(node: &rnix::SyntaxNode) -> (rnix::SyntaxNode, String) {
    (node.clone(), "is incomplete".to_owned())
}

/// What an expression is, in words, and whether its value is only known by evaluating it.
fn describe(expr: &ast::Expr) -> (&'static str, bool) {
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

fn not_a_set(written: &str, expr: &ast::Expr) -> (rnix::SyntaxNode, String) {
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

/// What a list item is compared by: its static value where the text fixes it (`443`, `(443)` and `0x1bb`
/// alike), otherwise its tokens (`pkgs.git`), without spaces, comments or surrounding parentheses.
#[derive(Debug, PartialEq)]
enum ItemKey {
    Data(serde_json::Value),
    Tokens(Vec<String>),
}

fn item_key(item: &ast::Expr) -> ItemKey {
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
fn new_item_key(item: &NewValue) -> Result<ItemKey, EditError> {
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

/// A new list item's text for a list whose items stand at column `indent`: parenthesised where a list item
/// needs it (`(-1)`, `(lib.mkIf c x)`).
fn render_item(item: &NewValue, indent: usize) -> String {
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

fn abbreviate(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default();
    if first.chars().count() > 40 || first.len() < text.len() {
        format!("{}…", first.chars().take(40).collect::<String>())
    } else {
        first.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(value: serde_json::Value) -> NewValue {
        NewValue::Expr(crate::nix::value::from_json(&value, Default::default()).unwrap())
    }

    fn path(text: &str) -> AttrPath {
        AttrPath::parse(text).unwrap()
    }

    fn set(text: &str, at: &str, value: serde_json::Value) -> String {
        let doc = Document::parse("test.nix", text).unwrap();
        doc.set(&path(at), &data(value)).unwrap().apply(text)
    }

    fn unset(text: &str, at: &str) -> String {
        let doc = Document::parse("test.nix", text).unwrap();
        doc.unset(&path(at)).unwrap().apply(text)
    }

    fn refusal(text: &str, at: &str) -> String {
        let doc = Document::parse("test.nix", text).unwrap();
        doc.set(&path(at), &data(json!(1))).unwrap_err().to_string()
    }

    const MODULE: &str = r#"# A machine someone maintains.
{ config, lib, pkgs, ... }:
let
  domain = "example.org"; # not ours to touch
in
{
  imports = [ ./hardware.nix ];

  # The web server.
  services.nginx = {
    enable = true;   # odd spacing kept
    virtualHosts."${domain}".root = "/srv/www";
  };
  networking.firewall.allowedTCPPorts = [ 80 443 ]; # web

  config = lib.mkIf config.services.nginx.enable {
    users.users.web.isSystemUser = true;
  };
}
"#;

    #[test]
    fn paths_parse_like_nix_attribute_paths() {
        assert_eq!(path(r#"a."b.c".d"#).names(), ["a", "b.c", "d"]);
        assert_eq!(path(r#"a."b.c".d"#).to_string(), r#"a."b.c".d"#);
        assert_eq!(path(r#""in".x"#).names(), ["in", "x"]);
        for bad in ["", "a.", "a b", "a = 1; b", "a.${x}", " a"] {
            assert!(AttrPath::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn replacing_a_value_touches_only_that_value() {
        let out = set(MODULE, "services.nginx.enable", json!(false));
        assert_eq!(
            out,
            MODULE.replace("enable = true;   #", "enable = false;   #")
        );
        let out = set(MODULE, "networking.firewall.allowedTCPPorts", json!([443]));
        assert_eq!(
            out,
            MODULE.replace("[ 80 443 ]; # web", "[\n    443\n  ]; # web")
        );
    }

    #[test]
    fn new_bindings_go_after_their_closest_sibling_at_its_indentation() {
        let out = set(MODULE, "services.nginx.recommendedTlsSettings", json!(true));
        assert_eq!(
            out,
            MODULE.replace(
                "\"/srv/www\";\n",
                "\"/srv/www\";\n    recommendedTlsSettings = true;\n"
            )
        );
        let out = set(MODULE, "networking.hostName", json!("web"));
        assert_eq!(
            out,
            MODULE.replace(
                "443 ]; # web\n",
                "443 ]; # web\n  networking.hostName = \"web\";\n"
            )
        );
        let out = set(MODULE, "config.users.users.web.group", json!("web"));
        assert!(
            out.contains("isSystemUser = true;\n    users.users.web.group = \"web\";\n"),
            "{out}"
        );
    }

    #[test]
    fn setting_a_set_lays_it_out_for_where_it_lands() {
        let out = set(
            "{\n  a = {\n    b = 1;\n  };\n}\n",
            "a.c",
            json!({"x": [1, {"y": "z"}]}),
        );
        assert_eq!(
            out,
            "{\n  a = {\n    b = 1;\n    c = {\n      x = [\n        1\n        {\n          y = \"z\";\n        }\n      ];\n    };\n  };\n}\n"
        );
        assert_eq!(set("{ }", "a.b", json!(1)), "{\n  a.b = 1;\n}");
        assert_eq!(set("{ a = 1; }", "b", json!(2)), "{ a = 1; b = 2; }");
    }

    #[test]
    fn a_definition_in_parts_is_replaced_keeping_the_names_as_written() {
        assert_eq!(
            set("{\n  a.b.c = 1; # one\n}\n", "a.b", json!({"d": 2})),
            "{\n  a.b = {\n    d = 2;\n  }; # one\n}\n"
        );
    }

    #[test]
    fn unset_removes_the_line_and_sets_it_leaves_empty() {
        assert_eq!(
            unset(MODULE, "networking.firewall.allowedTCPPorts"),
            MODULE.replace(
                "  networking.firewall.allowedTCPPorts = [ 80 443 ]; # web\n",
                ""
            )
        );
        assert_eq!(
            unset("{\n  a = {\n    b = 1;\n  };\n  c = 2;\n}\n", "a.b"),
            "{\n  c = 2;\n}\n"
        );
        assert_eq!(
            unset("{\n  a = {\n    # keep me\n\n    b = 1;\n  };\n}\n", "a.b"),
            "{\n  a = {\n    # keep me\n\n  };\n}\n"
        );
        assert_eq!(unset("{ a = 1; b = 2; }", "a"), "{ b = 2; }");
        assert_eq!(unset("{ a = 1; b = 2; }", "b"), "{ a = 1; }");
    }

    #[test]
    fn what_only_evaluation_could_decide_is_refused_with_its_place() {
        let computed = refusal(MODULE, "services.nginx.virtualHosts.x.root");
        assert!(computed.starts_with("test.nix:12:18: "), "{computed}");
        assert!(computed.contains("computed"), "{computed}");

        let inherited = refusal("{\n  inherit (x) a;\n}", "a.b");
        assert!(
            inherited.starts_with("test.nix:2:3: ") && inherited.contains("inherited"),
            "{inherited}"
        );

        let not_a_set = refusal("{\n  a = import ./a.nix;\n}", "a.b");
        assert!(
            not_a_set.starts_with("test.nix:2:7: ") && not_a_set.contains("function call"),
            "{not_a_set}"
        );

        let twice = refusal("{\n  a = { b = 1; };\n  a.b = 2;\n}", "a.b");
        assert!(twice.contains("2 places (2:9, 3:3)"), "{twice}");

        let merge = refusal("lib.mkMerge [ { a = 1; } { b = 2; } ]", "c");
        assert!(merge.contains("any of 2 sets (1:15, 1:26)"), "{merge}");
        assert_eq!(
            set("lib.mkMerge [ { a = 1; } { b = 2; } ]", "b", json!(3)),
            "lib.mkMerge [ { a = 1; } { b = 3; } ]"
        );
    }

    #[test]
    fn a_flakes_outputs_are_edited_through_the_function() {
        let flake = "{\n  inputs.nixpkgs.url = \"github:NixOS/nixpkgs/nixos-25.05\";\n  outputs =\n    { self, nixpkgs }:\n    let\n      lib = nixpkgs.lib;\n    in\n    {\n      nixosModules.web = ./web.nix;\n    };\n}\n";
        assert_eq!(
            set(flake, "outputs.nixosModules.db", json!("x")),
            flake.replace(
                "./web.nix;\n",
                "./web.nix;\n      nixosModules.db = \"x\";\n"
            )
        );
        assert_eq!(
            set(
                flake,
                "inputs.nixpkgs.url",
                json!("github:NixOS/nixpkgs/nixos-unstable")
            ),
            flake.replace("nixos-25.05", "nixos-unstable")
        );
    }

    #[test]
    fn packed_sets_are_edited_alike_skimmed_or_whole() {
        // Where bindings touch (`a=1;b=2;`), the skim's removed bindings sit right against kept ones.
        let text = "{a=1;b=2;c=3;x.y=4;x.z=5;}";
        let cases = [
            ("a", None, "{b=2;c=3;x.y=4;x.z=5;}"),
            ("b", None, "{a=1;c=3;x.y=4;x.z=5;}"),
            ("x.y", None, "{a=1;b=2;c=3;x.z=5;}"),
            ("a", Some(json!(9)), "{a=9;b=2;c=3;x.y=4;x.z=5;}"),
            ("d", Some(json!(9)), "{a=1;b=2;c=3;x.y=4;x.z=5; d = 9;}"),
            ("x.w", Some(json!(9)), "{a=1;b=2;c=3;x.y=4;x.z=5; x.w = 9;}"),
        ];
        for (at, value, want) in cases {
            let path = path(at);
            let answers: Vec<String> = [
                Document::parse("t.nix", text).unwrap(),
                Document::for_path("t.nix", text, &path).unwrap(),
            ]
            .iter()
            .map(|doc| match &value {
                Some(v) => doc.set(&path, &data(v.clone())).unwrap().apply(text),
                None => doc.unset(&path).unwrap().apply(text),
            })
            .collect();
            assert_eq!(answers, [want, want], "{at}");
        }
    }

    #[test]
    fn new_lines_follow_the_files_tabs_and_line_breaks() {
        assert_eq!(
            set("{\r\n\ta = 1;\r\n}\r\n", "b", json!(2)),
            "{\r\n\ta = 1;\r\n\tb = 2;\r\n}\r\n"
        );
    }

    #[test]
    fn every_construct_is_skimmed_as_it_is_parsed() {
        // Whatever the skim does with a construct, the answers must be those of a whole parse.
        let text = r#"{ config, lib ? import <nixpkgs/lib>, pkgs, ... }@args:
with lib;
assert args ? config;
let
  inherit (lib) mkIf;
  x = rec { a = 1; b = a; };
in rec {
  "quoted\"name" = 1;
  ${"fixed"}.b = 2;
  a /* between */ . b = { c = x.a or 3; d = ./${toString 1}.nix; e = https://example.org/x; };
  a.f = if args ? pkgs then { g = 1; } else { };
  h = let y = { z = 1; }; in y // { w = 2; };
  i = with x; { j = a; k = "${toString b}"; l = ''
    ${"interpolated"} '''quotes''' ''${not}
  ''; };
  inherit (x) b;
  m = assert true; { n = [ { o = 1; } ({ p = 2; }) ]; };
  q.r.s = mkIf true { t = 1; };
  u = lib.mkMerge [ { v = 1; } (lib.mkIf true { w = 2; }) ];
  packed={aa=1;bb=2;cc=3;};
  sys.web = nixpkgs.lib.nixosSystem { modules = [ 1 /* c */ 2 ]; list = [ ]; };
  sys.web.more = 1;
  lists = { cat = [ 1 2 ] ++ x; withx = with x; [ 2 y ]; one = [
    # two
    2
  ]; };
  lists.wrapped = lib.mkForce [ 3 ];
}
"#;
        let paths = [
            "quoted\"name",
            "fixed.b",
            "a.b.c",
            "a.b.new",
            "a.f.g",
            "a.new",
            "h.z",
            "i.j",
            "i.l",
            "b",
            "b.x",
            "m.n",
            "m.new",
            "q.r.s.t",
            "q.r.new",
            "q.new",
            "u.v",
            "u.w",
            "u.new",
            "packed.aa",
            "packed.bb",
            "packed.cc",
            "packed.dd",
            "new",
            "new.deeper",
            "sys.web",
            "sys.web.modules",
            "sys.web.list",
            "sys.web.new",
            "lists.cat",
            "lists.withx",
            "lists.one",
            "lists.wrapped",
            "lists.new",
        ];
        let value = data(json!({"x": [1, "two"]}));
        let two = data(json!(2));
        let packed = skim::skim(text, &["packed".to_owned(), "aa".to_owned()]);
        assert!(
            packed.text.len() < text.len() / 2,
            "the skim followed the file"
        );
        for at in paths {
            let path = AttrPath::new(at.split('.').map(str::to_owned).collect()).unwrap();
            let whole = Document::parse("k.nix", text).unwrap();
            let skimmed = Document::for_path("k.nix", text, &path).unwrap();
            let answers = |doc: &Document| {
                [
                    format!("{:?}", doc.get(&path)),
                    format!("{:?}", doc.set(&path, &value)),
                    format!("{:?}", doc.unset(&path)),
                    format!("{:?}", doc.add_item(&path, &two)),
                    format!("{:?}", doc.add_item(&path, &value)),
                    format!("{:?}", doc.remove_item(&path, &two)),
                ]
            };
            assert_eq!(answers(&whole), answers(&skimmed), "{at}");
        }
    }

    fn item(text: &str, at: &str, value: serde_json::Value, add: bool) -> Result<String, String> {
        let doc = Document::parse("test.nix", text).unwrap();
        let edit = if add {
            doc.add_item(&path(at), &data(value))
        } else {
            doc.remove_item(&path(at), &data(value))
        };
        edit.map(|e| e.apply(text)).map_err(|e| e.to_string())
    }

    fn add(text: &str, at: &str, value: serde_json::Value) -> String {
        item(text, at, value, true).unwrap()
    }

    fn remove(text: &str, at: &str, value: serde_json::Value) -> String {
        item(text, at, value, false).unwrap()
    }

    const PORTS: &str = "{\n  ports = [\n    22 # ssh\n\n    # the web\n    80\n    443 # tls\n  ];\n  inline = [ 1 2 3 ]; # small\n}\n";

    #[test]
    fn a_list_item_is_added_like_its_siblings() {
        assert_eq!(
            add(PORTS, "ports", json!(8080)),
            PORTS.replace("443 # tls\n", "443 # tls\n    8080\n")
        );
        assert_eq!(
            add(PORTS, "inline", json!(-4)),
            PORTS.replace("[ 1 2 3 ]", "[ 1 2 3 (-4) ]")
        );
        // An item equal to one already there, however it is written, changes nothing.
        let written = "{ a = [ (443) ''wheel'' ]; }";
        assert_eq!(add(written, "a", json!(443)), written);
        assert_eq!(add(written, "a", json!("wheel")), written);
        // Empty lists: inline for a one-line item, on lines of their own otherwise.
        assert_eq!(add("{ a = [ ]; }", "a", json!("x")), "{ a = [ \"x\" ]; }");
        assert_eq!(add("{ a = []; }", "a", json!(1)), "{ a = [ 1 ]; }");
        assert_eq!(
            add("{\n  a = [ ];\n}\n", "a", json!({"b": 1})),
            "{\n  a = [\n    {\n      b = 1;\n    }\n  ];\n}\n"
        );
        assert_eq!(
            add("{\n  a = [\n    # none yet\n  ];\n}\n", "a", json!(1)),
            "{\n  a = [\n    # none yet\n    1\n  ];\n}\n"
        );
        // Through the module system's wrappers, `with` and parentheses; a new path gets a one-item list.
        assert_eq!(
            add("{ a = lib.mkForce (with pkgs; [ git ]); }", "a", json!("x")),
            "{ a = lib.mkForce (with pkgs; [ git \"x\" ]); }"
        );
        assert_eq!(
            add("{\n  b = 1;\n}\n", "a", json!(1)),
            "{\n  b = 1;\n  a = [\n    1\n  ];\n}\n"
        );
        let doc = Document::parse("t.nix", "{ a = [ x ]; }").unwrap();
        let nix = |text: &str| NewValue::Text(text.to_owned());
        let added = |value| doc.add_item(&path("a"), &value).unwrap().apply(doc.text());
        assert_eq!(added(nix("lib.mkIf c y")), "{ a = [ x (lib.mkIf c y) ]; }");
        assert_eq!(added(nix(" x ")), "{ a = [ x ]; }");
        assert_eq!(added(nix("pkgs.git")), "{ a = [ x pkgs.git ]; }");
    }

    #[test]
    fn a_list_item_is_removed_with_its_comments_and_no_other() {
        // Its trailing comment and the comment lines directly above go; a comment after a blank line stays.
        assert_eq!(
            remove(PORTS, "ports", json!(80)),
            PORTS.replace("    # the web\n    80\n", "")
        );
        assert_eq!(
            remove(PORTS, "ports", json!(443)),
            PORTS.replace("    443 # tls\n", "")
        );
        assert_eq!(
            remove(PORTS, "ports", json!(22)),
            PORTS.replace("    22 # ssh\n", "")
        );
        assert_eq!(
            remove(PORTS, "inline", json!(1)),
            PORTS.replace("[ 1 2 3 ]", "[ 2 3 ]")
        );
        assert_eq!(
            remove(PORTS, "inline", json!(2)),
            PORTS.replace("[ 1 2 3 ]", "[ 1 3 ]")
        );
        assert_eq!(
            remove(PORTS, "inline", json!(3)),
            PORTS.replace("[ 1 2 3 ]", "[ 1 2 ]")
        );
        assert_eq!(
            remove("{ a = [ (443) ]; }", "a", json!(443)),
            "{ a = [ ]; }"
        );
        assert_eq!(
            remove("{\n  a = [\n    \"x\"\n  ];\n}\n", "a", json!("x")),
            "{\n  a = [ ];\n}\n"
        );
        let doc = Document::parse("t.nix", "{ a = with pkgs; [ git /* vcs */ htop ]; }").unwrap();
        let removed = doc
            .remove_item(&path("a"), &NewValue::Text("git".to_owned()))
            .unwrap()
            .apply(doc.text());
        assert_eq!(removed, "{ a = with pkgs; [ /* vcs */ htop ]; }");

        let absent = item(PORTS, "ports", json!(8080), false).unwrap_err();
        assert!(
            absent.starts_with("test.nix:2:11: ")
                && absent.contains("no item `8080` (it is `[ 22 80 443 ]`)"),
            "{absent}"
        );
        let twice = item("{ a = [ 1 2 1 ]; }", "a", json!(1), false).unwrap_err();
        assert!(twice.contains("2 times (1:9, 1:13)"), "{twice}");
    }

    #[test]
    fn a_list_that_is_not_a_literal_is_refused_with_the_reason() {
        let concat = item("{\n  a = [ 1 ] ++ b;\n}", "a", json!(2), true).unwrap_err();
        assert!(
            concat.starts_with("test.nix:2:7: ") && concat.contains("concatenation (`[ 1 ] ++ b`)"),
            "{concat}"
        );
        let variable = item("{\n  a = cfg.ports;\n}", "a", json!(2), false).unwrap_err();
        assert!(
            variable.starts_with("test.nix:2:7: ") && variable.contains("a variable (`cfg.ports`)"),
            "{variable}"
        );
        let scalar = item("{ a = 1; }", "a", json!(2), true).unwrap_err();
        assert!(scalar.contains("not a list"), "{scalar}");
        let set = item("{ a.b = [ ]; }", "a", json!(2), true).unwrap_err();
        assert!(set.contains("a set defined in parts"), "{set}");
    }

    #[test]
    fn get_merges_a_set_defined_in_several_places() {
        let get = |text: &str, at: &str| Document::parse("t.nix", text).unwrap().get(&path(at));
        let merged = get(
            "{\n  a.b = 1;\n  a = { c = 2; d.e = 3; };\n  a.d.f = 4;\n}",
            "a",
        )
        .unwrap();
        assert_eq!(
            merged.data,
            Ok(json!({"b": 1, "c": 2, "d": {"e": 3, "f": 4}}))
        );
        assert_eq!(
            merged.places,
            [
                Position { line: 2, column: 3 },
                Position { line: 3, column: 3 },
                Position { line: 4, column: 3 }
            ]
        );
        assert_eq!(merged.range, None);
        assert!(merged.value.contains("c = 2;"), "{}", merged.value);
        // A set in parts in one place, and the parts of a `mkMerge` (all under the same call).
        assert_eq!(
            get("{ a.b.c = 1; }", "a.b").unwrap().data,
            Ok(json!({"c": 1}))
        );
        assert_eq!(
            get("lib.mkMerge [ { a.b = 1; } { a.c = 2; } ]", "a")
                .unwrap()
                .data,
            Ok(json!({"b": 1, "c": 2}))
        );
        // Where only Nix can merge: a part that is not data, parts under different calls, a clash.
        let refusal = |text: &str| get(text, "a").unwrap_err().to_string();
        let computed = refusal("{\n  a.b = x;\n  a.c = 1;\n}");
        assert!(
            computed.contains("2 places (2:3, 3:3)")
                && computed.contains("the part at 2:9 is not plain data"),
            "{computed}"
        );
        let single = refusal("{\n  a.b = x;\n}");
        assert!(
            single.starts_with("t.nix:2:9: ")
                && single
                    .contains("defined in parts (`a.b`) and the part at 2:9 is not plain data"),
            "{single}"
        );
        let conditional = refusal("{\n  a = lib.mkIf c { b = 1; };\n  a.c = 1;\n}");
        assert!(conditional.contains("function call"), "{conditional}");
        let clash = refusal("{\n  a.b = 1;\n  a = { b = 2; };\n}");
        assert!(clash.contains("`a.b` is defined twice"), "{clash}");
    }

    #[test]
    fn unset_takes_the_comment_lines_attached_above() {
        let text = "{\n  a = 1; # about a\n  # about b,\n  /* on two\n     lines */\n  b = 2;\n\n  # about nothing in particular\n\n  c = 3;\n  d = 4; e = 5;\n  # about f\n  f.g = 6;\n}\n";
        assert_eq!(
            unset(text, "b"),
            text.replace("  # about b,\n  /* on two\n     lines */\n  b = 2;\n", "")
        );
        assert_eq!(unset(text, "c"), text.replace("  c = 3;\n", ""));
        assert_eq!(unset(text, "a"), text.replace("  a = 1; # about a\n", ""));
        assert_eq!(unset(text, "e"), text.replace(" e = 5;", ""));
        assert_eq!(
            unset(text, "f.g"),
            text.replace("  # about f\n  f.g = 6;\n", "")
        );
        // The binding's own comments gone, a set left empty goes too.
        assert_eq!(
            unset(
                "{\n  a = {\n    # about b\n    b = 1;\n  };\n  c = 2;\n}\n",
                "a.b"
            ),
            "{\n  c = 2;\n}\n"
        );
    }

    #[test]
    fn paths_go_through_a_calls_set_literal_argument() {
        let flake = "{\n  outputs =\n    { self, nixpkgs }:\n    {\n      nixosConfigurations.web = nixpkgs.lib.nixosSystem {\n        system = \"x86_64-linux\";\n        modules = [ ./web.nix ];\n      };\n    };\n}\n";
        assert_eq!(
            set(
                flake,
                "outputs.nixosConfigurations.web.system",
                json!("aarch64-linux")
            ),
            flake.replace("x86_64", "aarch64")
        );
        assert_eq!(
            set(
                flake,
                "outputs.nixosConfigurations.web.specialArgs.x",
                json!(1)
            ),
            flake.replace(
                "./web.nix ];\n",
                "./web.nix ];\n        specialArgs.x = 1;\n"
            )
        );
        let doc = Document::parse("flake.nix", flake).unwrap();
        let modules = path("outputs.nixosConfigurations.web.modules");
        let added = doc
            .add_item(&modules, &NewValue::Text("./db.nix".to_owned()))
            .unwrap();
        assert_eq!(
            added.apply(flake),
            flake.replace("./web.nix ]", "./web.nix ./db.nix ]")
        );
        assert_eq!(
            set("{ a = f { b = 1; }; }", "a.b", json!(2)),
            "{ a = f { b = 2; }; }"
        );
        assert_eq!(
            set(
                "{ a = pkgs.callPackage ./a.nix ({ b = 1; }); }",
                "a.c",
                json!(2)
            ),
            "{ a = pkgs.callPackage ./a.nix ({ b = 1; c = 2; }); }"
        );
    }

    #[test]
    fn get_returns_the_text_as_written() {
        let doc = Document::parse("m.nix", MODULE).unwrap();
        let found = doc
            .get(&path("networking.firewall.allowedTCPPorts"))
            .unwrap();
        assert_eq!(found.value, "[ 80 443 ]");
        assert_eq!(
            found.position,
            Position {
                line: 14,
                column: 3
            }
        );
        let missing = doc
            .get(&path("services.nginx.enabled"))
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("nearest definition is `services.nginx` at 10:3"),
            "{missing}"
        );
    }
}
