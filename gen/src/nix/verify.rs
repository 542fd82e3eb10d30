//! The checks every emitted file passes before it may be written: it parses (rnix), it binds no attribute twice
//! (rnix accepts that, Nix does not: [`check_duplicates`]), and, where asked, it is exactly what nixfmt makes of
//! it. A failure here is a bug in fedigen, reported with the file and position so
//! it can be fixed; the text is never written.

use crate::position::Position;

/// Emitted text that failed a check: which file, where, and what the checker said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// rnix could not parse the text.
    #[error("{file}{}: emitted Nix does not parse ({message})", position.suffix())]
    Syntax {
        /// The file being emitted.
        file: String,
        /// Where the parser stopped.
        position: Position,
        /// The parser's message.
        message: String,
    },
    /// An attribute set, `rec` set or `let` binds one name twice: rnix accepts the text, Nix refuses it
    /// ("attribute … already defined").
    #[error(
        "{file}:{second}: emitted Nix defines the attribute `{path}` twice (first at {file}:{first}); Nix refuses such a file"
    )]
    DuplicateAttribute {
        /// The file being emitted.
        file: String,
        /// The attribute path, dotted as written (`a.b`).
        path: String,
        /// The first definition.
        first: Position,
        /// The definition Nix refuses.
        second: Position,
    },
    /// nixfmt lays the text out differently.
    #[error(
        "{file}:{line}: not nixfmt-canonical: nixfmt writes {} where the text has {}",
        json_quote(expected),
        json_quote(found)
    )]
    NotCanonical {
        /// The file being emitted.
        file: String,
        /// The first line that differs (1-based).
        line: usize,
        /// nixfmt's line.
        expected: String,
        /// fedigen's line.
        found: String,
    },
}

/// Parses `text` with rnix and checks that no attribute is defined twice; the first error is reported with its
/// position in `file`. This is what Nix's own parser accepts (rnix alone is more lenient).
pub fn check_syntax(file: &str, text: &str) -> Result<(), VerifyError> {
    let root = parse(file, text)?;
    check_duplicates(file, text, &root)
}

/// Whether `body`, bindings as printed inside a set, parses when put between braces (rnix alone: the names are
/// checked on the model they were printed from, [`entries_bind_once`]). The syntax half of one group's check in
/// `emit::emit_grouped`; `false` sends the file to the sequential check, which says where the problem is.
pub(crate) fn bindings_parse_syntax(body: &str) -> bool {
    let mut text = String::with_capacity(body.len() + 3);
    text.push('{');
    text.push_str(body);
    text.push_str("\n}");
    rnix::Root::parse(&text).errors().is_empty()
}

/// [`check_duplicates`] on the model a file is printed from instead of its text: whether the set with these entries,
/// and every set and `let` inside it, binds each name once by Nix's rules (the same rules as [`bindings`] and
/// [`bind`]: dotted paths and set literals merge, anything else bound again is an error).
///
/// Why: walking rnix's tree for this costs as much as parsing (its cursors allocate for every node visited, and every
/// name becomes a `String`); on the model the names are borrowed. It proves the text because the printer writes each
/// binding's path and each set literal as they are (names quoted when they are not identifiers, never computed): a
/// property test (`model_and_text_duplicate_checks_agree`) holds the two checks equal on printed expressions.
pub(crate) fn entries_bind_once(entries: &[crate::nix::ast::Entry]) -> bool {
    model::scope(entries).is_ok() && entries.iter().all(model::entry_inner_sets_bind_once)
}

/// The duplicate check on fedigen's own expressions ([`entries_bind_once`]), with [`add`]'s rule.
mod model {
    use super::{Bound, Duplicate, add};
    use crate::nix::ast::{Entry, Expr};

    /// A model's scope: names borrowed, no positions.
    type Scope<'e> = super::Scope<&'e str, ()>;

    /// The scope these entries make, or the first name bound twice.
    pub(super) fn scope(entries: &[Entry]) -> Result<Scope<'_>, Duplicate<&str, ()>> {
        let mut made = Scope::default();
        for entry in entries {
            match entry {
                Entry::Inherit { names, .. } => {
                    for name in names {
                        add(&mut made, &[(name.as_str(), ())], Bound::Other)?;
                    }
                }
                Entry::Binding { path, value, .. } => {
                    let names: Vec<(&str, ())> =
                        path.names().iter().map(|n| (n.as_str(), ())).collect();
                    let new = match value {
                        Expr::Attrs(set) => Bound::Set(scope(&set.entries)?),
                        _ => Bound::Other,
                    };
                    add(&mut made, &names, new)?;
                }
            }
        }
        Ok(made)
    }

    /// Whether the sets and `let`s inside one entry's value bind each name once. A set literal that is a
    /// binding's value was checked with its parent's scope; the expressions inside it are walked still.
    pub(super) fn entry_inner_sets_bind_once(entry: &Entry) -> bool {
        match entry {
            Entry::Binding { value, .. } => walk(value, true),
            Entry::Inherit { from, .. } => from.as_ref().is_none_or(|from| walk(from, false)),
        }
    }

    /// Whether every set and `let` in `expr` binds each name once; `binding_value`: `expr` is the value of a binding
    /// (its own names belong to the parent's scope, already checked).
    fn walk(expr: &Expr, binding_value: bool) -> bool {
        match expr {
            Expr::Attrs(set) => {
                (binding_value || scope(&set.entries).is_ok())
                    && set.entries.iter().all(entry_inner_sets_bind_once)
            }
            Expr::Let(entries, body) => {
                scope(entries).is_ok()
                    && entries.iter().all(entry_inner_sets_bind_once)
                    && walk(body, false)
            }
            other => other.all_children(|e| walk(e, false)),
        }
    }
}

/// Whether the head of a grouped file (header comments, `{` or `rec {`) parses when the set is closed after it:
/// a comment line must not have let code through.
pub(crate) fn bindings_parse_after(head: &str) -> bool {
    let mut text = String::with_capacity(head.len() + 2);
    text.push_str(head);
    text.push_str("\n}");
    check_syntax("", &text).is_ok()
}

/// Finds a name bound twice in one attribute set, `rec` set or `let`, by Nix's own rules (its parser's
/// `addAttr`): `a.b = 1; a.c = 2;` and `a = { b = 1; }; a.c = 2;` merge, and two set literals bound to one name
/// merge their attributes; a name bound again to anything else, an `inherit`ed name bound again, or one attribute
/// given by both halves of a merge is an error. Names written as strings (`"a"`, `${"a"}`) are the same names;
/// computed names (`${x}`) are only known when evaluating and are not compared, as Nix does not compare them.
/// Both definitions are reported, at `file:line:column`.
pub fn check_duplicates(file: &str, text: &str, root: &rnix::Root) -> Result<(), VerifyError> {
    use rnix::ast;
    use rowan::ast::AstNode;
    for node in root.syntax().descendants() {
        let scope = if let Some(set) = ast::AttrSet::cast(node.clone()) {
            bindings(&set)
        } else if let Some(let_in) = ast::LetIn::cast(node.clone()) {
            bindings(&let_in)
        } else {
            continue;
        };
        // A set that is the value of a binding was already checked with its parent (where it may merge).
        if ast::AttrSet::can_cast(node.kind()) && is_binding_value(&node) {
            continue;
        }
        if let Err(duplicate) = scope {
            return Err(VerifyError::DuplicateAttribute {
                file: file.to_owned(),
                path: duplicate.path.join("."),
                first: Position::of_offset(text, duplicate.first),
                second: Position::of_offset(text, duplicate.second),
            });
        }
    }
    Ok(())
}

/// Whether an attribute set is (inside parentheses) the value of a binding of a set or `let`.
fn is_binding_value(node: &rnix::SyntaxNode) -> bool {
    use rnix::ast;
    use rowan::ast::AstNode;
    let mut parent = node.parent();
    while let Some(p) = parent.clone().filter(|p| ast::Paren::can_cast(p.kind())) {
        parent = p.parent();
    }
    parent.is_some_and(|p| ast::AttrpathValue::can_cast(p.kind()))
}

/// A name defined twice: its path and where both definitions are (byte offsets in the text; nothing on the model).
struct Duplicate<K, P> {
    path: Vec<K>,
    first: P,
    second: P,
}

/// What a name is bound to, as far as merging goes.
enum Bound<K, P> {
    /// An attribute set literal (written, or made by a dotted path): later bindings may add to it.
    Set(Scope<K, P>),
    /// `inherit`ed, or any other expression: final.
    Other,
}

/// The static names of one set or `let`, each with where it is defined: names from the text (`String`, byte offsets)
/// or from the model (`&str`, no position).
struct Scope<K, P>(std::collections::BTreeMap<K, (P, Bound<K, P>)>);

impl<K, P> Default for Scope<K, P> {
    fn default() -> Self {
        Self(std::collections::BTreeMap::new())
    }
}

/// Adds one definition to a scope as Nix's parser does (`addAttr`): `path` (each name with where it is written) bound
/// to `new`. The names before the last are sets, made or merged into; two set literals bound to one name merge their
/// attributes; anything else bound to a name already bound is the duplicate returned. Both checks use this one rule.
fn add<K: Ord + Clone, P: Copy>(
    mut current: &mut Scope<K, P>,
    path: &[(K, P)],
    new: Bound<K, P>,
) -> Result<(), Duplicate<K, P>> {
    let names = |upto: usize| path[..=upto].iter().map(|(name, _)| name.clone()).collect();
    let Some(((last, at), inner)) = path.split_last() else {
        return Ok(());
    };
    for (i, (name, at)) in inner.iter().enumerate() {
        let (first, bound) = current
            .0
            .entry(name.clone())
            .or_insert_with(|| (*at, Bound::Set(Scope::default())));
        match bound {
            Bound::Set(inner) => current = inner,
            Bound::Other => {
                return Err(Duplicate {
                    path: names(i),
                    first: *first,
                    second: *at,
                });
            }
        }
    }
    match current.0.get_mut(last) {
        None => {
            current.0.insert(last.clone(), (*at, new));
        }
        Some((first, existing)) => match (existing, new) {
            (Bound::Set(old), Bound::Set(added)) => {
                for (key, (offset, bound)) in added.0 {
                    if let Some((earlier, _)) = old.0.get(&key) {
                        let mut path: Vec<K> = names(inner.len());
                        path.push(key);
                        return Err(Duplicate {
                            path,
                            first: *earlier,
                            second: offset,
                        });
                    }
                    old.0.insert(key, (offset, bound));
                }
            }
            _ => {
                return Err(Duplicate {
                    path: names(inner.len()),
                    first: *first,
                    second: *at,
                });
            }
        },
    }
    Ok(())
}

/// The names bound by the entries of one set or `let` in the text, built as Nix's parser builds them.
fn bindings(
    node: &impl rnix::ast::HasEntry,
) -> Result<Scope<String, usize>, Duplicate<String, usize>> {
    use rnix::ast;
    use rowan::ast::AstNode;
    let mut scope = Scope::default();
    for entry in node.entries() {
        match entry {
            ast::Entry::Inherit(inherit) => {
                for attr in inherit.attrs() {
                    let Some(name) = super::literal::attr_name(&attr) else {
                        continue;
                    };
                    let at = usize::from(attr.syntax().text_range().start());
                    add(&mut scope, &[(name, at)], Bound::Other)?;
                }
            }
            ast::Entry::AttrpathValue(binding) => {
                let (Some(path), Some(value)) = (binding.attrpath(), binding.value()) else {
                    continue;
                };
                bind(&mut scope, &path, value)?;
            }
        }
    }
    Ok(scope)
}

/// Adds one binding `path = value;` of the text to a scope.
fn bind(
    scope: &mut Scope<String, usize>,
    path: &rnix::ast::Attrpath,
    value: rnix::ast::Expr,
) -> Result<(), Duplicate<String, usize>> {
    use rowan::ast::AstNode;
    let mut names = Vec::new();
    for attr in path.attrs() {
        let at = usize::from(attr.syntax().text_range().start());
        let Some(name) = super::literal::attr_name(&attr) else {
            // A computed name makes a set of its own that nothing else can reach before evaluation: the names
            // before it are sets still, and only the value's own bindings can clash.
            add(scope, &names, Bound::Set(Scope::default()))?;
            if let Some(set) = set_literal(&value) {
                bindings(&set)?;
            }
            return Ok(());
        };
        names.push((name, at));
    }
    let new = match set_literal(&value) {
        Some(set) => Bound::Set(bindings(&set)?),
        None => Bound::Other,
    };
    add(scope, &names, new)
}

/// The attribute set literal (`{ … }` or `rec { … }`, inside any parentheses) an expression is, if it is one.
fn set_literal(expr: &rnix::ast::Expr) -> Option<rnix::ast::AttrSet> {
    match expr {
        rnix::ast::Expr::AttrSet(set) => Some(set.clone()),
        rnix::ast::Expr::Paren(paren) => set_literal(&paren.expr()?),
        _ => None,
    }
}

/// Parses `text` with rnix into its lossless syntax tree (every byte, comments and spacing included), or
/// reports the first error with its position in `file`.
pub fn parse(file: &str, text: &str) -> Result<rnix::Root, VerifyError> {
    let parse = rnix::Root::parse(text);
    let Some(error) = parse.errors().first() else {
        return Ok(parse.tree());
    };
    let offset = match error {
        rnix::ParseError::Unexpected(range)
        | rnix::ParseError::UnexpectedExtra(range)
        | rnix::ParseError::UnexpectedWanted(_, range, _)
        | rnix::ParseError::UnexpectedDoubleBind(range)
        | rnix::ParseError::DuplicatedArgs(range, _) => usize::from(range.start()),
        _ => text.len(),
    };
    Err(VerifyError::Syntax {
        file: file.to_owned(),
        position: Position::of_offset(text, offset),
        message: error.to_string(),
    })
}

/// Formats `text` with nixfmt (the `nixfmt_rs` library) and requires the result to be identical, so users'
/// `nixfmt --check` never fights generated files. About ten times slower than parsing: used by tests,
/// `fedigen template check` and `--verify canonical`, not on every write of large data.
pub fn check_canonical(file: &str, text: &str) -> Result<(), VerifyError> {
    let formatted = nixfmt(file, text)?;
    if formatted == text {
        return Ok(());
    }
    let (line, expected, found) = formatted
        .split('\n')
        .zip(text.split('\n'))
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| (i + 1, a.to_owned(), b.to_owned()))
        .unwrap_or_else(|| {
            let lines = formatted.lines().count().min(text.lines().count());
            (lines + 1, "<different length>".into(), String::new())
        });
    Err(VerifyError::NotCanonical {
        file: file.to_owned(),
        line,
        expected,
        found,
    })
}

/// Formats `text` with `nixfmt_rs`. A parse error or a panic inside the formatter (a bug there) is an error
/// naming the file, never a crash of fedigen.
pub fn nixfmt(file: &str, text: &str) -> Result<String, VerifyError> {
    let failed = |message: String| VerifyError::Syntax {
        file: file.to_owned(),
        position: Position { line: 0, column: 0 },
        message,
    };
    match std::panic::catch_unwind(|| nixfmt_rs::format(text)) {
        Ok(Ok(formatted)) => Ok(formatted),
        Ok(Err(e)) => Err(failed(nixfmt_rs::format_error(text, Some(file), &e))),
        Err(_) => Err(failed(
            "nixfmt_rs panicked while formatting this file".to_owned(),
        )),
    }
}

/// A line quoted as a JSON string, so spaces, tabs and control characters are visible in a message.
fn json_quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    #[test]
    fn syntax_errors_carry_file_and_position() {
        assert_eq!(check_syntax("ok.nix", "{ a = 1; }\n"), Ok(()));
        let err = check_syntax("bad.nix", "{\n  a = [ -1 ;\n}\n").unwrap_err();
        let VerifyError::Syntax { file, position, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(file, "bad.nix");
        assert_eq!(position.line, 2, "{err}");
    }

    #[test]
    fn non_canonical_text_is_caught_with_the_differing_line() {
        assert_eq!(check_canonical("ok.nix", "{\n  a = 1;\n}\n"), Ok(()));
        let err = check_canonical("f.nix", "{\n  a =  1;\n}\n").unwrap_err();
        assert!(
            matches!(&err, VerifyError::NotCanonical { line: 2, expected, .. } if expected == "  a = 1;"),
            "{err:?}"
        );
    }

    /// The text of a duplicate error: the path and both positions.
    fn duplicate(text: &str) -> Option<(String, String, String)> {
        match check_syntax("d.nix", text) {
            Ok(()) => None,
            Err(VerifyError::DuplicateAttribute {
                path,
                first,
                second,
                ..
            }) => Some((path, first.to_string(), second.to_string())),
            Err(e) => panic!("{text}: {e}"),
        }
    }

    /// Sets, `let`s and lists over three names, with dotted paths and `inherit`s: many bind a name twice, many merge.
    fn scoped() -> impl proptest::strategy::Strategy<Value = crate::nix::Expr> {
        use crate::nix::ast::{AttrName, AttrPath, AttrSet, Entry, Expr};
        use proptest::prelude::*;
        let name =
            prop::sample::select(vec!["a", "b", "c"]).prop_map(|n| AttrName::new(n).unwrap());
        let leaf = prop_oneof![Just(Expr::Int(1)), Just(Expr::var("x").unwrap())];
        leaf.prop_recursive(4, 48, 4, move |inner| {
            let entry = prop_oneof![
                3 => (prop::collection::vec(name.clone(), 1..3), inner.clone()).prop_map(|(names, value)| {
                    Entry::Binding { comment: vec![], path: AttrPath::new(names).unwrap(), value }
                }),
                1 => prop::collection::vec(name.clone(), 1..3)
                    .prop_map(|names| Entry::Inherit { from: None, names }),
            ];
            let entries = prop::collection::vec(entry, 0..4);
            prop_oneof![
                (any::<bool>(), entries.clone())
                    .prop_map(|(recursive, entries)| Expr::Attrs(AttrSet { recursive, entries })),
                (entries.prop_filter("a let binds something", |e| !e.is_empty()), inner.clone())
                    .prop_map(|(entries, body)| Expr::Let(entries, Box::new(body))),
                prop::collection::vec(inner, 1..3).prop_map(Expr::List),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// The duplicate check on the model (used for the groups of large files) says what the check on the printed
        /// text says, for every set, `let` and merge.
        #[test]
        fn model_and_text_duplicate_checks_agree(
            set in scoped().prop_filter("a set", |e| matches!(e, crate::nix::Expr::Attrs(_)))
        ) {
            let crate::nix::Expr::Attrs(crate::nix::ast::AttrSet { entries, .. }) = &set else { unreachable!() };
            let text = crate::nix::print::print_expr(&set);
            let by_text = match check_syntax("p.nix", &text) {
                Ok(()) => true,
                Err(VerifyError::DuplicateAttribute { .. }) => false,
                Err(e) => panic!("{text}: {e}"),
            };
            proptest::prop_assert_eq!(entries_bind_once(entries), by_text, "{}", text);
        }
    }

    #[test]
    fn attributes_defined_twice_are_refused_with_both_places() {
        let d = |path: &str, first: &str, second: &str| {
            Some((path.to_owned(), first.to_owned(), second.to_owned()))
        };
        assert_eq!(
            duplicate("{\n  a = 1;\n  a = 2;\n}\n"),
            d("a", "2:3", "3:3")
        );
        assert_eq!(duplicate("{ a.b = 1; a.b = 2; }"), d("a.b", "1:5", "1:14"));
        assert_eq!(
            duplicate("{ a.b = 1; a = { b = 2; }; }"),
            d("a.b", "1:5", "1:18")
        );
        assert_eq!(
            duplicate("{ a = { b = 2; }; a.b = 1; }"),
            d("a.b", "1:9", "1:21")
        );
        assert_eq!(duplicate("rec { a = 1; a = 2; }"), d("a", "1:7", "1:14"));
        assert_eq!(duplicate("let a = 1; a = 2; in a"), d("a", "1:5", "1:12"));
        assert_eq!(
            duplicate("{ \"a\" = 1; ${\"a\"} = 2; }"),
            d("a", "1:3", "1:12")
        );
        assert_eq!(duplicate("{ inherit a; a = 2; }"), d("a", "1:11", "1:14"));
        assert_eq!(duplicate("{ a = x; a.b = 1; }"), d("a", "1:3", "1:10"));
        assert_eq!(duplicate("{ a.b = 1; a = x; }"), d("a", "1:3", "1:12"));
        assert_eq!(
            duplicate("{ a.b.c = 1; a = { b = { d = 2; }; }; }"),
            d("a.b", "1:5", "1:20")
        );
        // Nested anywhere: in a list, a function body, a computed name's value.
        assert!(duplicate("[ ({ x }: { y = { a = 1; a = 1; }; }) ]").is_some());
        assert!(duplicate("{ ${x}.y = { a = 1; a = 2; }; }").is_some());
        // Sets that merge, as Nix merges them.
        for ok in [
            "{ a.b = 1; a.c = 2; }",
            "{ a.b = 1; a = { c = 2; }; }",
            "{ a = { c = 2; }; a.b = 1; }",
            "{ a = { c = 2; }; a = { b = 1; }; }",
            "{ a = rec { c = 2; }; a.b = 1; }",
            "{ a = ({ c = 2; }); a.b = 1; }",
            "{ a = { b = { d = 2; }; }; a.b.c = 1; }",
            "let a.b = 1; a.c = 2; in a",
            "{ ${x} = 1; ${x} = 2; }",
            "{ a = 1; b = { a = 2; }; }",
        ] {
            assert_eq!(duplicate(ok), None, "{ok}");
        }
    }
}
