//! Property tests of the emitter against the real tools: arbitrary JSON-like values are emitted as Nix, parsed by
//! rnix, laid out exactly as nixfmt would, and evaluated by the real `nix-instantiate`, which must find them equal
//! to the input (compared inside Nix, so floats and strings are compared exactly). Arbitrary syntax trees of every
//! construct the emitter supports are printed and checked against rnix, nixfmt and Nix's own parser.
//!
//! Values are checked in batches of 250 per Nix process, so thousands of cases take seconds.

use std::path::Path;

use fedigen::emit::{Verification, emit_file, has_wide_line};
use fedigen::eval::{Evaluator, Source};
use fedigen::nix::print::{layout_is_exact, print_expr, print_file};
use fedigen::nix::value::{DataPolicy, from_json};
use fedigen::nix::verify::{check_canonical, check_syntax};
use fedigen::nix::{AttrName, AttrPath, AttrSet, Entry, Expr, Ident, NixString, Param};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Number, Value};

/// Pieces that exercise every escaping rule, mixed with arbitrary Unicode.
const TRICKY: &[&str] = &[
    "${", "$${", "$$", "$", "''", "'", "'''", "''$", "''\\", "\\", "\"", "\r", "\n", "\t", "\r\n",
    "${x}", "'${", "  ", "{", "}", "#", "/*", "*/", "é", "\u{2028}", "\u{1b}", "\u{7f}", "🦀",
];

fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => proptest::sample::select(TRICKY).prop_map(str::to_owned),
        2 => any::<String>(),
        2 => "[a-z ]{0,8}",
        1 => "[a-z]{70,110}",
    ];
    prop::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat().replace('\0', ""))
}

const KEYS: &[&str] = &[
    "",
    "if",
    "then",
    "else",
    "assert",
    "with",
    "let",
    "in",
    "rec",
    "inherit",
    "or",
    "a.b",
    "a b",
    "__curPos",
    "_type",
    "__functor",
    "__toString",
    "outPath",
    "type",
    "1x",
    "x-y'",
    "enable",
    "${x}",
    "true",
    "null",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => proptest::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[a-zA-Z_][a-zA-Z0-9_'-]{0,6}",
        1 => text(),
    ]
}

fn float() -> impl Strategy<Value = f64> {
    use proptest::num::f64 as f;
    prop_oneof![
        f::NORMAL | f::SUBNORMAL | f::ZERO | f::POSITIVE | f::NEGATIVE,
        proptest::sample::select(vec![
            0.0,
            -0.0,
            0.1,
            1e20,
            1e-7,
            123_456_789.123_456_79,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            5e-324,
            -5e-324,
            9_007_199_254_740_993.0,
        ]),
    ]
    .prop_filter("finite", |v| v.is_finite())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        proptest::sample::select(vec![i64::MIN, i64::MAX, 0, -1, 1]).prop_map(Value::from),
        float().prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Emits each value, checks it with rnix and nixfmt, then asks Nix whether each emitted file evaluates to exactly
/// the value read from its JSON file. Returns a description of every mismatch.
fn check_values(nix: &Evaluator, dir: &Path, values: &[Value]) -> Result<(), String> {
    let allow = DataPolicy {
        allow_special_attributes: true,
    };
    let mut driver = String::from("[\n");
    for (i, value) in values.iter().enumerate() {
        let expr = from_json(value, allow).map_err(|e| format!("value {i} refused: {e:?}"))?;
        let name = format!("emitted-{i}.nix");
        let text =
            emit_file(&name, &[], &expr, Verification::Canonical).map_err(|e| e.to_string())?;
        check_canonical(&name, &text).map_err(|e| format!("{e}\n{text}"))?;
        std::fs::write(dir.join(&name), &text).unwrap();
        std::fs::write(dir.join(format!("expected-{i}.json")), value.to_string()).unwrap();
        driver.push_str(&format!(
            "(builtins.fromJSON (builtins.readFile ./expected-{i}.json) == import ./{name})\n"
        ));
    }
    driver.push(']');
    std::fs::write(dir.join("driver.nix"), driver).unwrap();
    let result = nix
        .eval_file_json(&dir.join("driver.nix"))
        .map_err(|e| format!("Nix failed: {e}"))?;
    let equal = result.as_array().ok_or("not a list")?;
    for (i, ok) in equal.iter().enumerate() {
        if ok != &Value::Bool(true) {
            let text = std::fs::read_to_string(dir.join(format!("emitted-{i}.nix"))).unwrap();
            return Err(format!(
                "value {i} differs after Nix evaluation: {}\nemitted:\n{text}",
                values[i]
            ));
        }
    }
    Ok(())
}

fn nix() -> Evaluator {
    Evaluator::locate().expect("these tests need Nix: run scripts/install-test-deps")
}

#[test]
fn arbitrary_values_evaluate_to_themselves() {
    let nix = nix();
    let dir = tempfile::tempdir().unwrap();
    // 10 batches of 250 values: 2,500 values through rnix, nixfmt and the real evaluator.
    let mut runner = TestRunner::new(Config {
        cases: 10,
        max_shrink_iters: 0,
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(json_value(), 250), |values| {
            check_values(&nix, dir.path(), &values).map_err(TestCaseError::fail)
        })
        .map_err(reason_only)
        .unwrap();
}

#[test]
fn values_with_every_edge_case_evaluate_to_themselves() {
    let cases = serde_json::json!([
        "${x}", "$${x}", "$", "a$", "''", "'", "a'", "''${", "'${x}", "\\", "\r", "\r\n", "\t", "\u{1}",
        "multi\nline\n", "a\n\nb\n", "  indented\nnot\n", "ends with quote'\nline\n", "x ''${y}\nz\n",
        "price $\nnext\n", "$\n${\n",
        {"": 1, "or": 2, "if": 3, "a.b": 4, "__curPos": 5, "_type": 6, "${x}": 7, "a b": {"c": [[], {}]}},
        [i64::MIN, i64::MAX, -1, 0, 1],
        [0.0, -0.0, 1e20, 1e-7, 1.7976931348623157e308, 2.2250738585072014e-308, 5e-324, -5e-324, 0.1],
    ]);
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<Value> = cases.as_array().unwrap().clone();
    check_values(&nix(), dir.path(), &values).unwrap();
}

fn ident() -> impl Strategy<Value = Ident> {
    "[a-z][a-zA-Z0-9_'-]{0,5}".prop_filter_map("keyword", |s| Ident::new(&s).ok())
}

/// Variables the syntax trees refer to; the Nix parse test binds them all, since Nix resolves variables while
/// parsing.
const VARIABLES: [&str; 4] = ["x", "lib", "config", "pkgs"];

fn variable() -> impl Strategy<Value = Ident> {
    proptest::sample::select(&VARIABLES[..]).prop_map(|v| Ident::new(v).unwrap())
}

/// Nix's parser rejects an attribute defined twice, so each set keeps one entry per first name.
fn distinct_entries(entries: Vec<Entry>) -> Vec<Entry> {
    let mut seen = std::collections::BTreeSet::new();
    entries
        .into_iter()
        .filter_map(|entry| match entry {
            Entry::Binding { ref path, .. } => {
                seen.insert(path.names()[0].clone()).then_some(entry)
            }
            Entry::Inherit { from, names } => {
                let names: Vec<AttrName> = names
                    .into_iter()
                    .filter(|n| seen.insert(n.clone()))
                    .collect();
                (!names.is_empty()).then_some(Entry::Inherit { from, names })
            }
        })
        .collect()
}

fn attr_path() -> impl Strategy<Value = AttrPath> {
    prop::collection::vec(
        key().prop_map(|k| AttrName::new(&k.replace('\0', "")).unwrap()),
        1..3,
    )
    .prop_map(|names| AttrPath::new(names).unwrap())
}

fn syntax_tree() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        Just(Expr::Null),
        any::<bool>().prop_map(Expr::Bool),
        any::<i64>().prop_map(Expr::Int),
        float().prop_map(|f| Expr::float(f).unwrap()),
        text().prop_map(|s| Expr::string(&s).unwrap()),
        proptest::sample::select(&VARIABLES[..]).prop_map(|v| Expr::var(v).unwrap()),
    ];
    leaf.prop_recursive(5, 64, 5, |inner| {
        let entry = prop_oneof![
            4 => (prop::collection::vec("[ -~]{0,20}", 0..2), attr_path(), inner.clone())
                .prop_map(|(comment, path, value)| Entry::Binding { comment, path, value }),
            1 => (prop::option::of(inner.clone()), prop::collection::vec(variable(), 1..3)).prop_map(
                |(from, names)| Entry::Inherit {
                    from,
                    names: names.iter().map(|n| AttrName::new(n.as_str()).unwrap()).collect(),
                }
            ),
        ];
        let entries = prop::collection::vec(entry, 0..4).prop_map(distinct_entries);
        let param = prop_oneof![
            ident().prop_map(Param::Ident),
            (
                prop::collection::btree_map(ident(), prop::option::of(inner.clone()), 0..3),
                any::<bool>(),
                prop::option::of(ident())
            )
                // Nix rejects `{ a }@a` (a formal bound twice).
                .prop_map(|(formals, ellipsis, bind)| Param::Formals {
                    bind: bind.filter(|b| !formals.contains_key(b)),
                    formals: formals.into_iter().collect(),
                    ellipsis,
                }),
        ];
        let string = (text(), inner.clone(), text()).prop_map(|(a, e, b)| {
            let mut s = NixString::literal(&a).unwrap();
            s.push_interpolation(e);
            s.push_literal(&b).unwrap();
            Expr::Str(s)
        });
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Expr::List),
            (any::<bool>(), entries.clone())
                .prop_map(|(recursive, entries)| Expr::Attrs(AttrSet { recursive, entries })),
            (entries.clone().prop_filter("let needs a binding", |e| !e.is_empty()), inner.clone())
                .prop_map(|(entries, body)| Expr::Let(entries, Box::new(body))),
            (param, inner.clone()).prop_map(|(p, body)| Expr::Lambda(p, Box::new(body))),
            (inner.clone(), prop::collection::vec(inner.clone(), 1..4))
                .prop_map(|(f, args)| Expr::Apply(Box::new(f), args)),
            // Selections start from what real code selects from: variables, sets and calls.
            (
                prop_oneof![
                    variable().prop_map(Expr::Var),
                    // nixfmt_rs oscillates between two layouts of `{ }.a` after a function head: not generated.
                    entries.clone().prop_filter("empty set", |e| !e.is_empty()).prop_map(Expr::attrs),
                    (variable(), inner.clone()).prop_map(|(f, a)| Expr::apply(Expr::Var(f), vec![a])),
                ],
                attr_path(),
                prop::option::of(inner.clone())
            )
                .prop_map(|(base, path, default)| Expr::Select(Box::new(base), path, default.map(Box::new))),
            (inner.clone(), inner.clone()).prop_map(|(scope, body)| Expr::With(Box::new(scope), Box::new(body))),
            string,
        ]
    })
}

/// 2,000 cases, or as many as `PROPTEST_CASES` asks for (to search wider once in a while).
fn syntax_tree_cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(Config { cases: syntax_tree_cases(), ..Config::default() })]

    /// Every construct, nested in every other, is emitted as text that rnix parses and that nixfmt leaves
    /// unchanged; where the printer claims its layout is exact (and no line is too wide), the printer's own text
    /// is already nixfmt's, without the fallback.
    #[test]
    fn arbitrary_syntax_trees_emit_canonically(expr in syntax_tree()) {
        let header = ["generated by a test".to_owned()];
        let printed = print_file(&header, &expr);
        prop_assert!(check_syntax("tree.nix", &printed).is_ok(), "{:?}\n{printed}", check_syntax("tree.nix", &printed));
        let emitted = emit_file("tree.nix", &header, &expr, Verification::Syntax).unwrap();
        // Where nixfmt_rs itself fails on the text (its bugs), there is no canonical form to compare with.
        if let Ok(formatted) = fedigen::nix::verify::nixfmt("tree.nix", &emitted) {
            prop_assert_eq!(formatted, emitted);
        }
        if layout_is_exact(&expr)
            && !has_wide_line(&printed)
            && let Err(e) = check_canonical("tree.nix", &printed)
        {
            let formatted = nixfmt_rs::format(&printed).unwrap_or_default();
            prop_assert!(false, "{e}\n--- fedigen:\n{printed}\n--- nixfmt:\n{formatted}");
        }
    }
}

#[test]
fn arbitrary_syntax_trees_parse_with_nix() {
    let nix = nix();
    let mut runner = TestRunner::new(Config {
        cases: 4,
        max_shrink_iters: 0,
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(syntax_tree(), 200), |trees| {
            let sources: Vec<Source> = trees
                .iter()
                .enumerate()
                .map(|(i, t)| Source {
                    name: format!("tree-{i}.nix"),
                    text: format!("{{ {}, ... }}:\n{}", VARIABLES.join(", "), print_expr(t)),
                })
                .collect();
            for (source, result) in sources.iter().zip(nix.parse(&sources)) {
                prop_assert!(result.is_ok(), "{:?}\n{}", result, source.text);
            }
            Ok(())
        })
        .map_err(reason_only)
        .unwrap();
}

/// A failed batch is reported by its reason, which names the failing case; the whole batch would be unreadable.
fn reason_only<T>(error: proptest::test_runner::TestError<T>) -> String {
    match error {
        proptest::test_runner::TestError::Fail(reason, _) => reason.to_string(),
        proptest::test_runner::TestError::Abort(reason) => reason.to_string(),
    }
}
