//! Data into Nix: a JSON value becomes the Nix expression that evaluates to exactly that value.
//!
//! This is how operator settings typed into the panel reach generated files, so it treats every key and string
//! as data: names are quoted as needed, strings escaped, and keys that would change the meaning of a set for Nix
//! or the NixOS module system (`_type`, `__functor`, `outPath`, …) are refused unless asked for. Every problem
//! is reported at once, each with its JSON path.

use std::fmt;

use serde_json::Value;

use super::ast::{AttrName, AttrPath, Entry, Expr};
use super::lexical::LexicalError;

/// Attribute names that make Nix or the module system treat a set as something other than data:
/// `_type` (module-system markers such as `mkIf`/`mkOverride`), `__functor` (the set becomes callable),
/// `__toString` and `outPath` (string conversion and derivation-likeness), `__functionArgs`.
pub const SPECIAL_ATTRIBUTES: [&str; 5] = [
    "_type",
    "__functor",
    "__toString",
    "__functionArgs",
    "outPath",
];

/// How strictly user data is checked on its way into Nix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataPolicy {
    /// Let keys such as `_type` or `type = "derivation"` through as plain data. Off by default: data from a
    /// specification must never turn into a module-system directive or a fake derivation.
    pub allow_special_attributes: bool,
}

/// A location inside a JSON document, printed as `$.services["my key"][3]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JsonPath(Vec<JsonStep>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum JsonStep {
    Key(String),
    Index(usize),
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for step in &self.0 {
            match step {
                JsonStep::Index(i) => write!(f, "[{i}]")?,
                JsonStep::Key(k) if crate::nix::lexical::is_bare_identifier(k) => {
                    write!(f, ".{k}")?
                }
                JsonStep::Key(k) => write!(f, "[{}]", serde_json::Value::String(k.clone()))?,
            }
        }
        Ok(())
    }
}

/// One value that cannot become Nix, and where it is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct DataError {
    /// Where in the input.
    pub path: JsonPath,
    /// What is wrong and how to fix it.
    pub problem: DataProblem,
}

/// What is wrong with a value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DataProblem {
    /// A string, key or number that Nix cannot represent.
    #[error(transparent)]
    Lexical(#[from] LexicalError),
    /// An integer outside `i64`, Nix's only integer type.
    #[error(
        "the integer {0} is outside Nix's range (-9223372036854775808 to 9223372036854775807); write it as a string or a float"
    )]
    IntegerOutOfRange(String),
    /// A float literal too large for a 64-bit float.
    #[error("the number {0} is too large for a 64-bit float; Nix cannot represent it")]
    FloatOutOfRange(String),
    /// A key that would make Nix treat data as code.
    #[error(
        "the key `{0}` would make Nix or the NixOS module system treat this set as something other than data; rename it (or allow special attributes explicitly when that is what you mean)"
    )]
    SpecialAttribute(String),
    /// `type = "derivation"` makes a set look like a package to Nix and nixpkgs.
    #[error(
        "`type = \"derivation\"` would make this set look like a package to Nix; use another value (or allow special attributes explicitly when that is what you mean)"
    )]
    DerivationLike,
}

/// Converts a JSON value into the Nix expression that evaluates to it. Object keys come out in Nix's own order
/// (sorted by bytes), so equal values always give equal text.
pub fn from_json(value: &Value, policy: DataPolicy) -> Result<Expr, Vec<DataError>> {
    let mut errors = Vec::new();
    let expr = walk::<true>(value, policy, &mut Vec::new(), &mut errors);
    if errors.is_empty() {
        Ok(expr)
    } else {
        Err(errors)
    }
}

/// Whether a JSON value can become Nix: exactly [`from_json`]'s errors, in its order, without building the
/// expression. For data that goes into Nix as JSON (`builtins.fromJSON` of a generated file) and must hold to the
/// same rules; building and dropping the tree only to check it cost a fifth of `fedigen generate`'s CPU time at
/// 1,000 operators (issue #18).
pub fn check_json(value: &Value, policy: DataPolicy) -> Result<(), Vec<DataError>> {
    let mut errors = Vec::new();
    walk::<false>(value, policy, &mut Vec::new(), &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Where the walk is: borrowed from the value, made a [`JsonPath`] only for an error.
#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn json_path(steps: &[Step<'_>]) -> JsonPath {
    JsonPath(
        steps
            .iter()
            .map(|step| match step {
                Step::Key(k) => JsonStep::Key((*k).to_owned()),
                Step::Index(i) => JsonStep::Index(*i),
            })
            .collect(),
    )
}

/// The one walk behind [`from_json`] (`BUILD`: the expression) and [`check_json`] (not `BUILD`: every rule
/// applied, `Expr::Null` returned for every value).
fn walk<'a, const BUILD: bool>(
    value: &'a Value,
    policy: DataPolicy,
    path: &mut Vec<Step<'a>>,
    errors: &mut Vec<DataError>,
) -> Expr {
    let mut fail = |path: &[Step<'_>], problem: DataProblem| {
        errors.push(DataError {
            path: json_path(path),
            problem,
        });
        Expr::Null
    };
    match value {
        Value::Null => Expr::Null,
        Value::Bool(b) => Expr::Bool(*b),
        Value::Number(n) => match number(n) {
            Ok(e) => e,
            Err(problem) => fail(path, problem),
        },
        Value::String(s) if BUILD => match Expr::string(s) {
            Ok(e) => e,
            Err(e) => fail(path, e.into()),
        },
        Value::String(s) => match crate::nix::lexical::check_string_content(s) {
            Ok(()) => Expr::Null,
            Err(e) => fail(path, e.into()),
        },
        Value::Array(items) => {
            let mut list = Vec::with_capacity(if BUILD { items.len() } else { 0 });
            for (i, item) in items.iter().enumerate() {
                path.push(Step::Index(i));
                let e = walk::<BUILD>(item, policy, path, errors);
                path.pop();
                if BUILD {
                    list.push(e);
                }
            }
            if BUILD { Expr::List(list) } else { Expr::Null }
        }
        Value::Object(map) => {
            if !policy.allow_special_attributes
                && map.get("type").and_then(Value::as_str) == Some("derivation")
            {
                fail(path, DataProblem::DerivationLike);
            }
            // In Nix's order, sorted by bytes: serde_json's map already iterates so (a `BTreeMap` unless its
            // `preserve_order` feature is on), so the keys are sorted only when they are not.
            let mut keys: Vec<&String> = map.keys().collect();
            if !keys.is_sorted() {
                keys.sort_unstable();
            }
            let mut entries = Vec::with_capacity(if BUILD { keys.len() } else { 0 });
            for key in keys {
                path.push(Step::Key(key));
                if !policy.allow_special_attributes && SPECIAL_ATTRIBUTES.contains(&key.as_str()) {
                    errors.push(DataError {
                        path: json_path(path),
                        problem: DataProblem::SpecialAttribute(key.clone()),
                    });
                }
                let value = walk::<BUILD>(&map[key], policy, path, errors);
                let name = if BUILD {
                    AttrName::new(key).map(Some)
                } else {
                    crate::nix::lexical::check_string_content(key).map(|()| None)
                };
                match name {
                    Ok(Some(name)) => entries.push(Entry::binding(AttrPath::from(name), value)),
                    Ok(None) => {}
                    Err(e) => errors.push(DataError {
                        path: json_path(path),
                        problem: e.into(),
                    }),
                }
                path.pop();
            }
            if BUILD {
                Expr::attrs(entries)
            } else {
                Expr::Null
            }
        }
    }
}

/// JSON numbers keep their text (serde_json's `arbitrary_precision`), so an integer too large for `i64` is an
/// error instead of silently becoming a float.
fn number(n: &serde_json::Number) -> Result<Expr, DataProblem> {
    let text = n.to_string();
    if !text.contains(['.', 'e', 'E']) {
        return text
            .parse::<i64>()
            .map(Expr::Int)
            .map_err(|_| DataProblem::IntegerOutOfRange(text));
    }
    let value: f64 = text
        .parse()
        .map_err(|_| DataProblem::FloatOutOfRange(text.clone()))?;
    Expr::float(value).map_err(|_| DataProblem::FloatOutOfRange(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nix::print::print_expr;

    fn nix(json: &str) -> Result<String, Vec<String>> {
        let value: Value = serde_json::from_str(json).unwrap();
        from_json(&value, DataPolicy::default())
            .map(|e| print_expr(&e))
            .map_err(|errors| errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn objects_become_sorted_expanded_sets() {
        assert_eq!(
            nix(r#"{"b": [1, -2, 2.5], "a": {"x.y": null, "if": "s"}}"#).unwrap(),
            "{\n  a = {\n    \"if\" = \"s\";\n    \"x.y\" = null;\n  };\n  b = [\n    1\n    (-2)\n    2.5\n  ];\n}"
        );
    }

    #[test]
    fn numbers_out_of_range_name_their_path() {
        let errors = nix(r#"{"a": [0, 9223372036854775808], "b c": 1e400}"#).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("$.a[1]: the integer 9223372036854775808 is outside"));
        assert!(
            errors[1].starts_with(r#"$["b c"]: the number 1e"#),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("too large for a 64-bit float"),
            "{errors:?}"
        );
        assert_eq!(
            nix("-9223372036854775808").unwrap(),
            "(-9223372036854775807 - 1)"
        );
    }

    #[test]
    fn nul_is_rejected_in_strings_and_keys() {
        let errors = nix(r#"{"k\u0000": "v\u0000"}"#).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().all(|e| e.contains("NUL")), "{errors:?}");
    }

    /// JSON values with every kind of problem the rules know, among good values.
    fn doubtful_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let text = prop::sample::select(vec![
            "",
            "a",
            "b c",
            "x\0y",
            "\0",
            "_type",
            "__functor",
            "outPath",
            "type",
            "derivation",
            "ü",
        ]);
        let number = prop::sample::select(vec![
            "0",
            "-1",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775809",
            "2.5",
            "1e400",
            "-1e400",
        ])
        .prop_map(|n| Value::Number(n.parse().unwrap()));
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            number,
            text.clone().prop_map(|t| Value::String(t.to_owned())),
        ];
        leaf.prop_recursive(4, 40, 5, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((text.clone(), inner), 0..5).prop_map(|entries| {
                    Value::Object(
                        entries
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v))
                            .collect(),
                    )
                }),
            ]
        })
    }

    proptest::proptest! {
        /// `check_json` is `from_json` without the tree: the same errors, in the same order, under both policies.
        #[test]
        fn checking_refuses_exactly_what_converting_refuses(value in doubtful_json(), allow in proptest::prelude::any::<bool>()) {
            let policy = DataPolicy { allow_special_attributes: allow };
            proptest::prop_assert_eq!(check_json(&value, policy), from_json(&value, policy).map(|_| ()));
        }
    }

    #[test]
    fn special_attributes_are_refused_unless_allowed() {
        let errors =
            nix(r#"{"s": {"_type": "if", "condition": true}, "d": {"type": "derivation"}}"#)
                .unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("$.d: `type = \"derivation\"`"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("$.s._type: the key `_type`"),
            "{errors:?}"
        );
        let allowed = DataPolicy {
            allow_special_attributes: true,
        };
        let value: Value = serde_json::from_str(r#"{"_type": "if"}"#).unwrap();
        assert!(from_json(&value, allowed).is_ok());
    }
}
