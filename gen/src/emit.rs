//! Emission: an expression becomes the text of a file, and that text is proven before anyone sees it.
//! Verification is part of emitting, not an afterthought in tests: text that fails it is never returned.
//!
//! The printer lays out by structure alone, which is exactly nixfmt's layout for the shapes fedigen generates
//! ([`layout_is_exact`]) as long as every line fits in nixfmt's width. Where a line is wider, nixfmt's choices
//! depend on widths (a value moves below its `=`, an application breaks), and other shapes follow rules of
//! nixfmt's that the printer does not copy; such a file is handed to nixfmt itself (`nixfmt_rs`). Output is
//! canonical either way, and the common case stays a single linear pass.

use crate::nix::Expr;
use crate::nix::ast::Entry;
use crate::nix::print::{self, layout_is_exact, print_file_sequential};
use crate::nix::verify::{self, VerifyError};

/// nixfmt's default line width (RFC 166).
pub(crate) const NIXFMT_WIDTH: usize = 100;

/// How much to prove about emitted text before returning it. (The command line's `--verify` has its own type
/// in `cli/`, mapped onto this one: the library knows nothing of clap.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verification {
    /// Parse it with rnix (always done; about as fast as printing).
    #[default]
    Syntax,
    /// Also require it to be exactly what nixfmt makes of it (about ten times slower).
    Canonical,
}

/// Prints `expr` as the file `name` with `header` comment lines above it, and proves the result.
///
/// A file that is one large attribute set (the bulk data of many operators) is printed and verified in groups of
/// bindings on rayon's threads ([`emit_grouped`]); the text is byte for byte the sequential one, and any group
/// that fails a check sends the whole file down the sequential path, which reports the error where it is.
pub fn emit_file(
    name: &str,
    header: &[String],
    expr: &Expr,
    verification: Verification,
) -> Result<String, VerifyError> {
    if let Some(text) = emit_grouped(header, expr) {
        if verification == Verification::Canonical {
            verify::check_canonical(name, &text)?;
        }
        return Ok(text);
    }
    emit_sequential(name, header, expr, verification)
}

/// Prints and verifies a large attribute set in groups of [`print::GROUP`] bindings, in parallel: each group is
/// printed, parsed by rnix inside braces of its own, searched for wide lines and held to [`layout_is_exact`] while
/// its text is still in cache, and its bindings are checked for names bound twice on the model it was printed from
/// ([`verify::entries_bind_once`]; walking rnix's tree for it cost as much as the parse); then the groups are concatenated.
///
/// Why this is the same proof as parsing the whole file: every group ends after a binding's `;`, where the lexer
/// is in its default state, so `{ g1 g2 … }` parses exactly when each `{ gi }` does; names bound twice inside a
/// group are found by its model check, and across groups by requiring that no top-level name appears in two groups
/// (a name's definitions can only clash, or merge, with definitions of the same first name). `None` (a group
/// failed, or a name spans groups, or the file is small) means: take the sequential path.
fn emit_grouped(header: &[String], expr: &Expr) -> Option<String> {
    use rayon::prelude::*;
    let split = print::split_file(header, expr)?;
    let (disjoint, groups) = rayon::join(
        || top_level_names_disjoint(split.entries),
        || {
            split
                .entries
                .par_chunks(print::GROUP)
                .map(|entries| {
                    let body = print::print_entries(entries);
                    (print::entries_layout_is_exact(entries)
                        && !has_wide_line(&body)
                        && verify::entries_bind_once(entries)
                        && verify::bindings_parse_syntax(&body))
                    .then_some(body)
                })
                .collect::<Option<Vec<String>>>()
        },
    );
    let groups = groups?;
    if !disjoint || !verify::bindings_parse_after(&split.head) {
        return None;
    }
    Some(split.join(groups.iter().map(String::as_str)))
}

/// Whether no top-level name is bound in two groups of [`print::GROUP`] entries.
fn top_level_names_disjoint(entries: &[Entry]) -> bool {
    let mut group_of: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(entries.len());
    entries.iter().enumerate().all(|(i, entry)| {
        let group = i / print::GROUP;
        let mut names: Vec<&str> = Vec::new();
        match entry {
            Entry::Binding { path, .. } => names.push(path.names()[0].as_str()),
            Entry::Inherit {
                names: inherited, ..
            } => {
                names.extend(inherited.iter().map(|n| n.as_str()));
            }
        }
        names
            .into_iter()
            .all(|name| *group_of.entry(name).or_insert(group) == group)
    })
}

/// [`emit_file`] on one thread: print, parse, and lay out with nixfmt where the printer's layout is not exact.
fn emit_sequential(
    name: &str,
    header: &[String],
    expr: &Expr,
    verification: Verification,
) -> Result<String, VerifyError> {
    let mut text = print_file_sequential(header, expr);
    verify::check_syntax(name, &text)?;
    if has_wide_line(&text) || !layout_is_exact(expr) {
        // nixfmt_rs rejects a few valid files (it mistakes `a'` and `a_` for the same formal) and is not
        // idempotent on a few odd shapes (`{ }.a`); the printer's own, parsed text stands in those cases.
        if let Some(formatted) = nixfmt_fixpoint(name, &text) {
            verify::check_syntax(name, &formatted)?;
            text = formatted;
        }
    } else if verification == Verification::Canonical {
        verify::check_canonical(name, &text)?;
    }
    Ok(text)
}

/// Whether a line other than a comment is wider than nixfmt's width (counted in characters, as nixfmt does).
pub fn has_wide_line(text: &str) -> bool {
    text.lines().any(|line| {
        line.len() > NIXFMT_WIDTH
            && line.chars().count() > NIXFMT_WIDTH
            && !line.trim_start().starts_with('#')
    })
}

/// Formats with nixfmt until the text stops changing (at most four rounds), or `None` when nixfmt fails.
fn nixfmt_fixpoint(name: &str, text: &str) -> Option<String> {
    let first = verify::nixfmt(name, text).ok()?;
    match settle_nixfmt(name, first, Settle::ToFixpoint) {
        Ok((text, true)) => Some(text),
        _ => None,
    }
}

/// How far [`settle_nixfmt`] goes after nixfmt's first pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    /// Format again until the text stops changing: for emitted trees of any shape, where nixfmt is known not to
    /// be idempotent on a few (`{ }.a`).
    ToFixpoint,
    /// Take the first pass: for rendered templates, whose first pass is their fixpoint. The second pass was half
    /// the cost of generating 1,000 operators' VM tests and changed nothing in 0 of 1,011 files (issue #18);
    /// `tests/layout_fixpoint.rs` (property-generated specifications) and `tests/generate.rs` (every generated
    /// file of the repository is nixfmt-canonical) run the second pass and fail when a template stops settling in
    /// one.
    FirstPass,
}

/// The one nixfmt fixpoint loop (for emitted files and rendered templates): text nixfmt laid out once, formatted
/// again until it stops changing (at most three more rounds, since nixfmt is not idempotent on a few shapes), or
/// taken as it is ([`Settle::FirstPass`]). Returns the last text and whether it settled.
pub(crate) fn settle_nixfmt(
    name: &str,
    formatted: String,
    settle: Settle,
) -> Result<(String, bool), VerifyError> {
    if settle == Settle::FirstPass {
        return Ok((formatted, true));
    }
    let mut text = formatted;
    for _ in 0..3 {
        let again = verify::nixfmt(name, &text)?;
        if again == text {
            return Ok((text, true));
        }
        text = again;
    }
    Ok((text, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nix::ast::{AttrName, AttrPath};
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// Values of the shapes data takes (and a few the printer hands to nixfmt): scalars, strings that need
    /// escapes or are indented, nested sets with dotted paths, lists with negative numbers, applications.
    fn value() -> impl Strategy<Value = Expr> {
        let leaf = prop_oneof![
            Just(Expr::Null),
            any::<bool>().prop_map(Expr::Bool),
            any::<i64>().prop_map(Expr::Int),
            "([a-z ${}\"\\\\]|\n|\t|é){0,30}".prop_map(|s| Expr::string(&s).unwrap()),
            "v[a-z]{0,7}".prop_map(|s| Expr::var(&s).unwrap()),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..4).prop_map(Expr::List),
                vec(("k[a-z]{0,2}(\\.k[a-z]{0,2})?", inner.clone()), 0..4).prop_map(|entries| {
                    let mut seen = std::collections::BTreeSet::new();
                    Expr::attrs(
                        entries
                            .into_iter()
                            .filter(|(p, _)| seen.insert(p.split('.').next().unwrap().to_owned()))
                            .map(|(p, v)| Entry::binding(AttrPath::dotted(&p).unwrap(), v))
                            .collect(),
                    )
                }),
                (inner.clone(), inner)
                    .prop_map(|(f, a)| Expr::apply(Expr::var("f").unwrap(), vec![f, a])),
            ]
        })
    }

    /// A large top-level set: distinct names (some needing quotes, some keywords), some `inherit`s.
    fn large_set(entries: usize) -> impl Strategy<Value = Expr> {
        vec(value(), entries..entries + 1400).prop_map(|values| {
            let entries = values
                .into_iter()
                .enumerate()
                .map(|(i, v)| match i % 97 {
                    0 => Entry::Inherit {
                        from: None,
                        names: vec![AttrName::new(&format!("inh{i}")).unwrap()],
                    },
                    1 => Entry::binding(
                        AttrPath::from(AttrName::new(&format!("a b.{i}")).unwrap()),
                        v,
                    ),
                    2 => Entry::binding(AttrPath::dotted(&format!("op{i}.nested")).unwrap(), v),
                    _ => {
                        Entry::binding(AttrPath::from(AttrName::new(&format!("op{i}")).unwrap()), v)
                    }
                })
                .collect();
            Expr::attrs(entries)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

        /// The parallel printer and emitter write exactly what the sequential ones write, byte for byte, whether
        /// the grouped path succeeds or falls back (over-wide lines, shapes nixfmt lays out).
        #[test]
        fn grouped_printing_and_emitting_equal_the_sequential_ones(set in large_set(2 * print::GROUP)) {
            let header = vec!["generated".to_owned(), "by a test".to_owned()];
            let parallel = print::print_file(&header, &set);
            prop_assert!(parallel == print_file_sequential(&header, &set));
            let grouped = emit_file("t.nix", &header, &set, Verification::Syntax);
            let sequential = emit_sequential("t.nix", &header, &set, Verification::Syntax);
            prop_assert_eq!(grouped, sequential);
        }
    }

    fn op(i: usize) -> Entry {
        Entry::binding(
            AttrPath::dotted(&format!("op{i}")).unwrap(),
            Expr::Int(i as i64),
        )
    }

    #[test]
    fn a_large_set_that_needs_nothing_of_nixfmt_takes_the_grouped_path() {
        let set = Expr::attrs((0..3 * print::GROUP).map(op).collect());
        let text = emit_grouped(&[], &set).expect("grouped");
        assert_eq!(text, print_file_sequential(&[], &set));
    }

    /// A name bound in two groups (which neither group's parse can see) is refused as the sequential check
    /// refuses it, with both places.
    #[test]
    fn a_name_bound_twice_across_groups_is_refused_with_both_places() {
        let mut entries: Vec<Entry> = (0..3 * print::GROUP).map(op).collect();
        entries[2 * print::GROUP + 7] = op(3);
        let set = Expr::attrs(entries);
        assert_eq!(emit_grouped(&[], &set), None);
        match emit_file("t.nix", &[], &set, Verification::Syntax) {
            Err(VerifyError::DuplicateAttribute {
                path,
                first,
                second,
                ..
            }) => {
                assert_eq!(path, "op3");
                assert_eq!((first.line, second.line), (5, 2 * print::GROUP + 9));
            }
            other => panic!("expected a duplicate, got {other:?}"),
        }
    }

    /// `a.b = 1;` in one group and `a.c = 2;` in another merge in Nix; the grouped path does not judge that and
    /// hands the file to the sequential check, which accepts it.
    #[test]
    fn a_set_merged_across_groups_is_accepted_by_the_sequential_check() {
        let mut entries: Vec<Entry> = (0..3 * print::GROUP).map(op).collect();
        entries[0] = Entry::binding(AttrPath::dotted("a.b").unwrap(), Expr::Int(1));
        entries[2 * print::GROUP] = Entry::binding(AttrPath::dotted("a.c").unwrap(), Expr::Int(2));
        let set = Expr::attrs(entries);
        assert_eq!(emit_grouped(&[], &set), None);
        let text = emit_file("t.nix", &[], &set, Verification::Syntax).unwrap();
        assert_eq!(text, print_file_sequential(&[], &set));
    }
}
