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
    /// A value serde could not write as JSON (a map key that is no string or number, a serialiser's error).
    #[error("cannot be written as JSON: {0}")]
    Unserialisable(String),
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
    let expr = walk(value, policy, &mut Vec::new(), &mut errors);
    if errors.is_empty() {
        Ok(expr)
    } else {
        Err(errors)
    }
}

/// Whether a JSON value can become Nix: exactly [`from_json`]'s errors, in its order, without building the
/// expression ([`check_serialize`] of the value).
pub fn check_json(value: &Value, policy: DataPolicy) -> Result<(), Vec<DataError>> {
    check_serialize(value, policy)
}

/// Whether a value can become Nix once serialised as JSON, checked as serde serialises it: no
/// `serde_json::Value` is made, no string copied. For data that goes into Nix as JSON (`builtins.fromJSON` of a
/// generated file) and must hold to [`from_json`]'s rules: building and dropping a tree only to check it cost a
/// fifth of `fedigen generate`'s CPU time at 1,000 operators (issue #18). The errors are `from_json`'s, each at its
/// path; a struct's fields are visited in their order (a map's in its own; `serde_json::Value`'s sorted, as
/// `from_json`'s), and a property test holds the two equal on JSON values. A value serde_json would write other
/// than it is (a float that is not finite becomes `null`) is refused too.
pub fn check_serialize<T: serde::Serialize + ?Sized>(
    value: &T,
    policy: DataPolicy,
) -> Result<(), Vec<DataError>> {
    let mut checker = check::Checker {
        policy,
        path: check::Path::default(),
        errors: Vec::new(),
    };
    // The checker's own errors are its findings; a serialiser error here only means a value serde cannot write.
    if let Err(check::Stop(message)) = value.serialize(&mut checker) {
        checker.errors.push(DataError {
            path: checker.path.json(),
            problem: DataProblem::Unserialisable(message),
        });
    }
    if checker.errors.is_empty() {
        Ok(())
    } else {
        Err(checker.errors)
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

/// The walk behind [`from_json`]: the expression of a value, every problem recorded at its path.
fn walk<'a>(
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
        Value::String(s) => match Expr::string(s) {
            Ok(e) => e,
            Err(e) => fail(path, e.into()),
        },
        Value::Array(items) => {
            let mut list = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                path.push(Step::Index(i));
                list.push(walk(item, policy, path, errors));
                path.pop();
            }
            Expr::List(list)
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
            let mut entries = Vec::with_capacity(keys.len());
            for key in keys {
                path.push(Step::Key(key));
                if !policy.allow_special_attributes && SPECIAL_ATTRIBUTES.contains(&key.as_str()) {
                    errors.push(DataError {
                        path: json_path(path),
                        problem: DataProblem::SpecialAttribute(key.clone()),
                    });
                }
                let value = walk(&map[key], policy, path, errors);
                match AttrName::new(key) {
                    Ok(name) => entries.push(Entry::binding(AttrPath::from(name), value)),
                    Err(e) => errors.push(DataError {
                        path: json_path(path),
                        problem: e.into(),
                    }),
                }
                path.pop();
            }
            Expr::attrs(entries)
        }
    }
}

/// JSON numbers keep their text (serde_json's `arbitrary_precision`), so an integer too large for `i64` is an
/// error instead of silently becoming a float.
fn number(n: &serde_json::Number) -> Result<Expr, DataProblem> {
    number_text(n.to_string())
}

/// [`number`]'s rule on a number's JSON text.
fn number_text(text: String) -> Result<Expr, DataProblem> {
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

/// The checking serialiser behind [`check_serialize`].
mod check {
    use serde::ser::{self, Serialize};

    use super::{DataError, DataPolicy, DataProblem, JsonPath, JsonStep, SPECIAL_ATTRIBUTES};
    use crate::nix::lexical::check_string_content;

    /// serde_json's name for a number kept as text (`arbitrary_precision`): a struct of one field, the text.
    const NUMBER_TOKEN: &str = "$serde_json::private::Number";

    /// Where the check is: the keys written into one buffer (no allocation per key once it has grown), each step
    /// a key's range in it or an index.
    #[derive(Default)]
    pub(super) struct Path {
        keys: String,
        steps: Vec<(usize, usize, Option<usize>)>,
    }

    impl Path {
        fn push_key(&mut self, key: &str) {
            let start = self.keys.len();
            self.keys.push_str(key);
            self.steps.push((start, self.keys.len(), None));
        }
        fn push_index(&mut self, index: usize) {
            self.steps
                .push((self.keys.len(), self.keys.len(), Some(index)));
        }
        fn pop(&mut self) {
            if let Some((start, _, _)) = self.steps.pop() {
                self.keys.truncate(start);
            }
        }
        fn last_key(&self) -> Option<&str> {
            match self.steps.last() {
                Some((start, end, None)) => Some(&self.keys[*start..*end]),
                _ => None,
            }
        }
        /// The path as an error names it.
        pub(super) fn json(&self) -> JsonPath {
            JsonPath(
                self.steps
                    .iter()
                    .map(|(start, end, index)| match index {
                        Some(i) => JsonStep::Index(*i),
                        None => JsonStep::Key(self.keys[*start..*end].to_owned()),
                    })
                    .collect(),
            )
        }
    }

    /// A serialiser's error: what serde could not write.
    #[derive(Debug)]
    pub(super) struct Stop(pub(super) String);

    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Stop {}

    impl ser::Error for Stop {
        fn custom<T: std::fmt::Display>(msg: T) -> Self {
            Stop(msg.to_string())
        }
    }

    /// The serialiser: what it has checked so far, and where it is.
    pub(super) struct Checker {
        pub(super) policy: DataPolicy,
        pub(super) path: Path,
        pub(super) errors: Vec<DataError>,
    }

    impl Checker {
        fn fail(&mut self, problem: DataProblem) {
            self.errors.push(DataError {
                path: self.path.json(),
                problem,
            });
        }
        fn string(&mut self, text: &str) {
            if let Err(e) = check_string_content(text) {
                self.fail(e.into());
            }
        }
        fn number(&mut self, text: String) {
            if let Err(problem) = super::number_text(text) {
                self.fail(problem);
            }
        }
        /// A member's key (its path pushed): refused as a special attribute at once; a NUL in it after its value's
        /// problems (`from_json`'s order). Returns that pending problem.
        fn key(&mut self, key: &str) -> Option<DataProblem> {
            self.path.push_key(key);
            if !self.policy.allow_special_attributes && SPECIAL_ATTRIBUTES.contains(&key) {
                self.fail(DataProblem::SpecialAttribute(key.to_owned()));
            }
            check_string_content(key).err().map(Into::into)
        }
        /// A member's value, after its key; then the key's pending problem, and the path popped.
        fn member<T: Serialize + ?Sized>(
            &mut self,
            value: &T,
            pending: Option<DataProblem>,
            map: &mut MapState,
        ) -> Result<(), Stop> {
            if !self.policy.allow_special_attributes
                && self.path.last_key() == Some("type")
                && value.serialize(IsDerivation).unwrap_or(false)
            {
                map.derivation = true;
            }
            value.serialize(&mut *self)?;
            if let Some(problem) = pending {
                self.fail(problem);
            }
            self.path.pop();
            Ok(())
        }
    }

    /// The compound methods of a serialiser that takes scalars only: each refuses with `message`.
    macro_rules! refuse_compounds {
        ($message:expr) => {
            fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Stop> {
                Err(Stop($message.into()))
            }
            fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Stop> {
                Err(Stop($message.into()))
            }
            fn serialize_tuple_struct(
                self,
                _: &'static str,
                _: usize,
            ) -> Result<Self::SerializeTupleStruct, Stop> {
                Err(Stop($message.into()))
            }
            fn serialize_tuple_variant(
                self,
                _: &'static str,
                _: u32,
                _: &'static str,
                _: usize,
            ) -> Result<Self::SerializeTupleVariant, Stop> {
                Err(Stop($message.into()))
            }
            fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Stop> {
                Err(Stop($message.into()))
            }
            fn serialize_struct(
                self,
                _: &'static str,
                _: usize,
            ) -> Result<Self::SerializeStruct, Stop> {
                Err(Stop($message.into()))
            }
            fn serialize_struct_variant(
                self,
                _: &'static str,
                _: u32,
                _: &'static str,
                _: usize,
            ) -> Result<Self::SerializeStructVariant, Stop> {
                Err(Stop($message.into()))
            }
        };
    }

    /// Whether a value is the string `derivation`.
    struct IsDerivation;

    macro_rules! not_derivation {
        ($($method:ident($($arg:ty),*)),* $(,)?) => {
            $(fn $method(self, $(_: $arg),*) -> Result<bool, Stop> { Ok(false) })*
        };
    }

    impl ser::Serializer for IsDerivation {
        type Ok = bool;
        type Error = Stop;
        type SerializeSeq = ser::Impossible<bool, Stop>;
        type SerializeTuple = ser::Impossible<bool, Stop>;
        type SerializeTupleStruct = ser::Impossible<bool, Stop>;
        type SerializeTupleVariant = ser::Impossible<bool, Stop>;
        type SerializeMap = ser::Impossible<bool, Stop>;
        type SerializeStruct = ser::Impossible<bool, Stop>;
        type SerializeStructVariant = ser::Impossible<bool, Stop>;
        fn serialize_str(self, v: &str) -> Result<bool, Stop> {
            Ok(v == "derivation")
        }
        not_derivation!(
            serialize_bool(bool),
            serialize_i8(i8),
            serialize_i16(i16),
            serialize_i32(i32),
            serialize_i64(i64),
            serialize_i128(i128),
            serialize_u8(u8),
            serialize_u16(u16),
            serialize_u32(u32),
            serialize_u64(u64),
            serialize_u128(u128),
            serialize_f32(f32),
            serialize_f64(f64),
            serialize_char(char),
            serialize_bytes(&[u8]),
            serialize_none(),
            serialize_unit(),
            serialize_unit_struct(&'static str),
            serialize_unit_variant(&'static str, u32, &'static str),
        );
        fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<bool, Stop> {
            v.serialize(self)
        }
        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            v: &T,
        ) -> Result<bool, Stop> {
            v.serialize(self)
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<bool, Stop> {
            Ok(false)
        }
        refuse_compounds!("not a string");
    }

    /// A map or struct being checked: where its own errors go (a `type = "derivation"` is reported at the set, before
    /// its members' problems, as `from_json` reports it), and whether it is one.
    pub(super) struct MapState {
        first_error: usize,
        derivation: bool,
        /// A key written by `serialize_key`, waiting for its value.
        pending: Option<Option<DataProblem>>,
        /// serde_json's number token: the one field is the number's text.
        number: bool,
    }

    /// A list, set or struct being checked: its elements' index, its members' state.
    pub(super) struct Compound<'c> {
        checker: &'c mut Checker,
        map: MapState,
        index: usize,
    }

    impl<'c> Compound<'c> {
        fn new(checker: &'c mut Checker, number: bool) -> Self {
            let first_error = checker.errors.len();
            Compound {
                checker,
                map: MapState {
                    first_error,
                    derivation: false,
                    pending: None,
                    number,
                },
                index: 0,
            }
        }
        fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
            self.checker.path.push_index(self.index);
            self.index += 1;
            value.serialize(&mut *self.checker)?;
            self.checker.path.pop();
            Ok(())
        }
        fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Stop> {
            if self.map.number {
                let text = value.serialize(KeyText)?;
                self.checker.number(text);
                return Ok(());
            }
            let pending = self.checker.key(key);
            self.checker.member(value, pending, &mut self.map)
        }
        fn finish(self) -> &'c mut Checker {
            if self.map.derivation {
                let error = DataError {
                    path: self.checker.path.json(),
                    problem: DataProblem::DerivationLike,
                };
                self.checker.errors.insert(self.map.first_error, error);
            }
            self.checker
        }
    }

    /// serde's three kinds of list, each checked element by element under its index.
    macro_rules! list {
        ($($kind:ident::$method:ident),*) => {
            $(impl ser::$kind for Compound<'_> {
                type Ok = ();
                type Error = Stop;
                fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
                    self.element(value)
                }
                fn end(self) -> Result<(), Stop> {
                    Ok(())
                }
            })*
        };
    }

    list!(
        SerializeSeq::serialize_element,
        SerializeTuple::serialize_element,
        SerializeTupleStruct::serialize_field
    );

    impl ser::SerializeTupleVariant for Compound<'_> {
        type Ok = ();
        type Error = Stop;
        fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
            self.element(value)
        }
        fn end(self) -> Result<(), Stop> {
            self.checker.path.pop();
            Ok(())
        }
    }

    impl ser::SerializeMap for Compound<'_> {
        type Ok = ();
        type Error = Stop;
        fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Stop> {
            let key = key.serialize(KeyText)?;
            self.map.pending = Some(self.checker.key(&key));
            Ok(())
        }
        fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
            let pending = self.map.pending.take().flatten();
            self.checker.member(value, pending, &mut self.map)
        }
        fn end(self) -> Result<(), Stop> {
            self.finish();
            Ok(())
        }
    }

    impl ser::SerializeStruct for Compound<'_> {
        type Ok = ();
        type Error = Stop;
        fn serialize_field<T: Serialize + ?Sized>(
            &mut self,
            key: &'static str,
            value: &T,
        ) -> Result<(), Stop> {
            self.field(key, value)
        }
        fn end(self) -> Result<(), Stop> {
            self.finish();
            Ok(())
        }
    }

    impl ser::SerializeStructVariant for Compound<'_> {
        type Ok = ();
        type Error = Stop;
        fn serialize_field<T: Serialize + ?Sized>(
            &mut self,
            key: &'static str,
            value: &T,
        ) -> Result<(), Stop> {
            self.field(key, value)
        }
        fn end(self) -> Result<(), Stop> {
            // The variant's name was pushed as the key of a one-member set.
            self.finish().path.pop();
            Ok(())
        }
    }

    /// A map key as serde_json writes it: a string, or a number's text.
    struct KeyText;

    macro_rules! key_number {
        ($($method:ident($arg:ty)),* $(,)?) => {
            $(fn $method(self, v: $arg) -> Result<String, Stop> { Ok(v.to_string()) })*
        };
    }

    impl ser::Serializer for KeyText {
        type Ok = String;
        type Error = Stop;
        type SerializeSeq = ser::Impossible<String, Stop>;
        type SerializeTuple = ser::Impossible<String, Stop>;
        type SerializeTupleStruct = ser::Impossible<String, Stop>;
        type SerializeTupleVariant = ser::Impossible<String, Stop>;
        type SerializeMap = ser::Impossible<String, Stop>;
        type SerializeStruct = ser::Impossible<String, Stop>;
        type SerializeStructVariant = ser::Impossible<String, Stop>;
        fn serialize_str(self, v: &str) -> Result<String, Stop> {
            Ok(v.to_owned())
        }
        key_number!(
            serialize_bool(bool),
            serialize_i8(i8),
            serialize_i16(i16),
            serialize_i32(i32),
            serialize_i64(i64),
            serialize_i128(i128),
            serialize_u8(u8),
            serialize_u16(u16),
            serialize_u32(u32),
            serialize_u64(u64),
            serialize_u128(u128),
            serialize_f32(f32),
            serialize_f64(f64),
            serialize_char(char),
        );
        fn serialize_bytes(self, _: &[u8]) -> Result<String, Stop> {
            Err(Stop("a key that is bytes".into()))
        }
        fn serialize_none(self) -> Result<String, Stop> {
            Err(Stop("a key that is null".into()))
        }
        fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<String, Stop> {
            v.serialize(self)
        }
        fn serialize_unit(self) -> Result<String, Stop> {
            Err(Stop("a key that is null".into()))
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result<String, Stop> {
            Err(Stop("a key that is null".into()))
        }
        fn serialize_unit_variant(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
        ) -> Result<String, Stop> {
            Ok(variant.to_owned())
        }
        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            v: &T,
        ) -> Result<String, Stop> {
            v.serialize(self)
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<String, Stop> {
            Err(Stop("a key that is a set".into()))
        }
        refuse_compounds!("a key that is a list or a set");
    }

    impl<'c> ser::Serializer for &'c mut Checker {
        type Ok = ();
        type Error = Stop;
        type SerializeSeq = Compound<'c>;
        type SerializeTuple = Compound<'c>;
        type SerializeTupleStruct = Compound<'c>;
        type SerializeTupleVariant = Compound<'c>;
        type SerializeMap = Compound<'c>;
        type SerializeStruct = Compound<'c>;
        type SerializeStructVariant = Compound<'c>;

        fn serialize_bool(self, _: bool) -> Result<(), Stop> {
            Ok(())
        }
        fn serialize_i8(self, _: i8) -> Result<(), Stop> {
            Ok(())
        }
        fn serialize_i16(self, _: i16) -> Result<(), Stop> {
            Ok(())
        }
        fn serialize_i32(self, _: i32) -> Result<(), Stop> {
            Ok(())
        }
        fn serialize_i64(self, _: i64) -> Result<(), Stop> {
            Ok(())
        }
        fn serialize_i128(self, v: i128) -> Result<(), Stop> {
            self.number(v.to_string());
            Ok(())
        }
        fn serialize_u8(self, _: u8) -> Result<(), Stop> {
            Ok(())
        }
        fn serialize_u16(self, _: u16) -> Result<(), Stop> {
            Ok(())
        }
        fn serialize_u32(self, _: u32) -> Result<(), Stop> {
            Ok(())
        }
        fn serialize_u64(self, v: u64) -> Result<(), Stop> {
            if i64::try_from(v).is_err() {
                self.number(v.to_string());
            }
            Ok(())
        }
        fn serialize_u128(self, v: u128) -> Result<(), Stop> {
            self.number(v.to_string());
            Ok(())
        }
        fn serialize_f32(self, v: f32) -> Result<(), Stop> {
            self.serialize_f64(f64::from(v))
        }
        fn serialize_f64(self, v: f64) -> Result<(), Stop> {
            if !v.is_finite() {
                self.fail(DataProblem::FloatOutOfRange(v.to_string()));
            }
            Ok(())
        }
        fn serialize_char(self, v: char) -> Result<(), Stop> {
            self.string(v.encode_utf8(&mut [0; 4]));
            Ok(())
        }
        fn serialize_str(self, v: &str) -> Result<(), Stop> {
            self.string(v);
            Ok(())
        }
        fn serialize_bytes(self, _: &[u8]) -> Result<(), Stop> {
            Ok(())
        }
        fn serialize_none(self) -> Result<(), Stop> {
            Ok(())
        }
        fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Stop> {
            v.serialize(self)
        }
        fn serialize_unit(self) -> Result<(), Stop> {
            Ok(())
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result<(), Stop> {
            Ok(())
        }
        fn serialize_unit_variant(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
        ) -> Result<(), Stop> {
            self.string(variant);
            Ok(())
        }
        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            v: &T,
        ) -> Result<(), Stop> {
            v.serialize(self)
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
            v: &T,
        ) -> Result<(), Stop> {
            let mut map = Compound::new(self, false);
            map.field(variant, v)?;
            map.finish();
            Ok(())
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'c>, Stop> {
            Ok(Compound::new(self, false))
        }
        fn serialize_tuple(self, _: usize) -> Result<Compound<'c>, Stop> {
            Ok(Compound::new(self, false))
        }
        fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Compound<'c>, Stop> {
            Ok(Compound::new(self, false))
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
            _: usize,
        ) -> Result<Compound<'c>, Stop> {
            // `{variant: [..]}`: the list's path is under the variant's name.
            if let Some(problem) = self.key(variant) {
                self.fail(problem);
            }
            Ok(Compound::new(self, false))
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Compound<'c>, Stop> {
            Ok(Compound::new(self, false))
        }
        fn serialize_struct(self, name: &'static str, _: usize) -> Result<Compound<'c>, Stop> {
            Ok(Compound::new(self, name == NUMBER_TOKEN))
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
            _: usize,
        ) -> Result<Compound<'c>, Stop> {
            if let Some(problem) = self.key(variant) {
                self.fail(problem);
            }
            Ok(Compound::new(self, false))
        }
    }
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

    /// A struct is checked as serde writes it, without a `Value`: every rule at its field's path, in field order.
    #[test]
    fn structs_are_checked_as_they_serialise() {
        #[derive(serde::Serialize)]
        enum Kind {
            Plain,
            Tagged { name: String },
        }
        #[derive(serde::Serialize)]
        struct Node {
            name: String,
            #[serde(rename = "_type")]
            kind: Kind,
            big: u64,
            ratio: f64,
            tags: std::collections::BTreeMap<String, String>,
            plain: Kind,
        }
        let node = Node {
            name: "a\0b".into(),
            kind: Kind::Tagged { name: "x".into() },
            big: u64::MAX,
            ratio: f64::NAN,
            tags: [("type".to_owned(), "derivation".to_owned())].into(),
            plain: Kind::Plain,
        };
        let errors: Vec<String> = check_serialize(&node, DataPolicy::default())
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert!(errors[0].starts_with("$.name: a NUL"), "{errors:#?}");
        assert!(
            errors[1].starts_with("$._type: the key `_type`"),
            "{errors:#?}"
        );
        assert!(
            errors[2].starts_with("$.big: the integer 18446744073709551615"),
            "{errors:#?}"
        );
        assert!(
            errors[3].starts_with("$.ratio: the number NaN"),
            "{errors:#?}"
        );
        assert!(
            errors[4].starts_with("$.tags: `type = \"derivation\"`"),
            "{errors:#?}"
        );
        let fine = Node {
            name: "a".into(),
            kind: Kind::Plain,
            big: 1,
            ratio: 0.5,
            tags: [("type".to_owned(), "app".to_owned())].into(),
            plain: Kind::Tagged { name: "ü".into() },
        };
        assert_eq!(
            check_serialize(
                &fine,
                DataPolicy {
                    allow_special_attributes: false
                }
            ),
            Err(vec![DataError {
                path: JsonPath(vec![JsonStep::Key("_type".into())]),
                problem: DataProblem::SpecialAttribute("_type".into()),
            }])
        );
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
