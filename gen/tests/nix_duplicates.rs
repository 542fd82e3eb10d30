//! The emitter's duplicate-attribute check (`nix::verify::check_duplicates`) against Nix's own parser: random
//! sets, `rec` sets and `let`s over three names, written every way a name can be written (`a`, `"a"`,
//! `${"a"}`, computed `${x}`), with dotted paths, nested and parenthesised set literals that merge, `inherit`,
//! and values that do not merge. fedigen must refuse exactly the texts `nix-instantiate --parse` refuses.

use fedigen::eval::{Evaluator, Source};
use fedigen::nix::verify::{VerifyError, check_syntax};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

/// One attribute path component: a few names, spelled in every static way, and sometimes computed.
fn attr(computed: bool) -> impl Strategy<Value = String> {
    let name = proptest::sample::select(vec!["a", "b", "c"]);
    let ways = if computed { 7 } else { 6 };
    (name, 0..ways).prop_map(|(n, how)| match how {
        0..=2 => n.to_owned(),
        3 => format!("\"{n}\""),
        4 => format!("${{\"{n}\"}}"),
        5 => format!("\"{n}\\n\""),
        _ => "${x}".to_owned(),
    })
}

/// A path; in a `let` its first name cannot be computed ("dynamic attributes not allowed in let").
fn attr_path(in_let: bool) -> impl Strategy<Value = String> {
    (attr(!in_let), prop::collection::vec(attr(true), 0..3)).prop_map(|(first, rest)| {
        std::iter::once(first)
            .chain(rest)
            .collect::<Vec<_>>()
            .join(".")
    })
}

/// Bindings of a set or `let`: `path = value;` and `inherit (x) names;`.
fn entries(value: BoxedStrategy<String>, in_let: bool) -> BoxedStrategy<String> {
    let entry = prop_oneof![
        4 => (attr_path(in_let), value).prop_map(|(p, v)| format!("{p} = {v};")),
        1 => prop::collection::vec(proptest::sample::select(vec!["a", "b", "c"]), 1..3)
            .prop_map(|names| format!("inherit (x) {};", names.join(" "))),
    ];
    prop::collection::vec(entry, 0..5)
        .prop_map(|e| e.join(" "))
        .boxed()
}

fn value() -> BoxedStrategy<String> {
    let leaf = prop_oneof![Just("1".to_owned()), Just("x".to_owned())];
    leaf.prop_recursive(3, 40, 5, |inner| {
        let set = entries(inner.clone(), false)
            .prop_map(|e| format!("{{ {e} }}"))
            .boxed();
        prop_oneof![
            3 => set.clone(),
            1 => set.clone().prop_map(|s| format!("({s})")),
            1 => set.clone().prop_map(|s| format!("rec {s}")),
            1 => (entries(inner.clone(), true), set.clone()).prop_map(|(e, s)| format!("(let {e} in {s})")),
            1 => prop::collection::vec(inner, 0..3).prop_map(|items| format!("[ {} ]", items.join(" "))),
            1 => set.prop_map(|s| format!("(y: {s})")),
        ]
    })
    .boxed()
}

fn document() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => value().prop_map(|v| format!("x: {v}\n")),
        1 => entries(value(), true).prop_map(|e| format!("x: let {e} in 1\n")),
    ]
}

#[test]
fn duplicate_attributes_are_refused_exactly_where_nix_refuses_them() {
    let nix = Evaluator::locate().expect("these tests need Nix: run scripts/install-test-deps");
    let mut runner = TestRunner::new(Config::default());
    let strategy = document();
    let sources: Vec<Source> = (0..400)
        .map(|i| Source {
            name: format!("doc-{i}.nix"),
            text: strategy.new_tree(&mut runner).unwrap().current(),
        })
        .collect();
    // What fedigen accepts goes to Nix in one batch (it should all parse); what it refuses, one file at a time
    // (a failing batch is bisected, which costs a process per failure and more).
    let ours: Vec<Result<(), VerifyError>> = sources
        .iter()
        .map(|s| check_syntax(&s.name, &s.text))
        .collect();
    let accepted: Vec<Source> = sources
        .iter()
        .zip(&ours)
        .filter(|(_, r)| r.is_ok())
        .map(|(s, _)| s.clone())
        .collect();
    let mut accepted_verdicts = nix.parse(&accepted).into_iter();
    let verdicts: Vec<_> = sources
        .iter()
        .zip(&ours)
        .map(|(source, ours)| match ours {
            Ok(()) => accepted_verdicts.next().expect("one verdict per source"),
            Err(_) => nix
                .parse(std::slice::from_ref(source))
                .pop()
                .expect("one verdict"),
        })
        .collect();
    let mut refused = 0;
    let mut failures = Vec::new();
    for ((source, ours), verdict) in sources.iter().zip(&ours).zip(verdicts) {
        match (ours, verdict) {
            (Ok(()), Ok(())) => {}
            (Err(VerifyError::DuplicateAttribute { .. }), Err(e))
                if e.to_string().contains("already defined") =>
            {
                refused += 1
            }
            (ours, nix) => failures.push(format!(
                "{}: {}\n  fedigen: {ours:?}\n  nix: {nix:?}",
                source.name, source.text
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} disagree:\n{}",
        failures.len(),
        sources.len(),
        failures.join("\n")
    );
    // Both verdicts must be well represented, or the test proves little.
    assert!(
        refused > 40 && refused < 360,
        "{refused} of {} refused",
        sources.len()
    );
}
