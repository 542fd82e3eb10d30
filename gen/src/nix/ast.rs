//! The Nix syntax model: the expressions fedigen emits, and nothing it does not.
//!
//! Every value that holds user data (strings, attribute names, identifiers, numbers) is validated when it is
//! built, so that printing can never fail and never produce text whose meaning differs from the model.
//! Parentheses are not part of the model: the printer adds them where Nix's grammar needs them.

use super::lexical::{self, LexicalError};

/// A Nix expression, as fedigen builds it before printing.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A 64-bit integer; every `i64` is printable (the minimum as `(-9223372036854775807 - 1)`).
    Int(i64),
    /// A finite float (NaN and infinities cannot be built: see [`Expr::float`]).
    Float(Float),
    /// A string with optional interpolations; printed double-quoted or indented, whichever is exact and canonical.
    Str(NixString),
    /// A variable reference such as `lib` or `config`.
    Var(Ident),
    /// A path to a file of the repository itself, such as `./mastodon.nix` in `imports`: Nix copies it into the
    /// store, which is what module imports need. Paths on the target machine are strings (`Expr::runtime_path`).
    SourcePath(SourcePath),
    /// `[ … ]`
    List(Vec<Expr>),
    /// `{ … }` or `rec { … }`
    Attrs(AttrSet),
    /// `let … in body`
    Let(Vec<Entry>, Box<Expr>),
    /// `param: body`
    Lambda(Param, Box<Expr>),
    /// `function arg1 arg2 …` (at least one argument)
    Apply(Box<Expr>, Vec<Expr>),
    /// `base.a.b` or `base.a.b or default`
    Select(Box<Expr>, AttrPath, Option<Box<Expr>>),
    /// `with scope; body`
    With(Box<Expr>, Box<Expr>),
}

/// A float that Nix can represent: finite. Negative zero and subnormals are kept exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Float(f64);

impl Float {
    /// Accepts any finite float; NaN and the infinities have no Nix literal and are rejected.
    pub fn new(value: f64) -> Result<Self, LexicalError> {
        if value.is_finite() {
            Ok(Self(value))
        } else {
            Err(LexicalError::NonFiniteFloat(value))
        }
    }

    /// The value, for printing.
    pub fn get(self) -> f64 {
        self.0
    }
}

/// A relative path literal such as `./a/b.nix` or `../../modules`: `./` or leading `../` segments, then only
/// letters, digits, `.`, `_`, `-` and `/`, with no `.` or `..` segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePath(String);

impl SourcePath {
    /// Validates a relative source path.
    pub fn new(path: &str) -> Result<Self, LexicalError> {
        let mut rest = path.strip_prefix("./").unwrap_or(path);
        let relative = path.starts_with("./") || path.starts_with("../");
        while let Some(r) = rest.strip_prefix("../") {
            rest = r;
        }
        let valid = relative
            && !rest.is_empty()
            && rest
                .split('/')
                .all(|part| !part.is_empty() && part != ".." && part != ".")
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
        if valid {
            Ok(Self(path.to_owned()))
        } else {
            Err(LexicalError::NotASourcePath(path.to_owned()))
        }
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A string's contents: literal text (never containing NUL) and interpolated expressions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NixString {
    parts: Vec<StrPart>,
}

/// One piece of a [`NixString`].
#[derive(Debug, Clone, PartialEq)]
pub enum StrPart {
    /// Literal text, escaped by the printer; never contains NUL.
    Literal(String),
    /// `${ expr }`: the expression's value is spliced in by Nix.
    Interpolation(Expr),
}

impl NixString {
    /// A string of literal text. NUL cannot be represented in a Nix string, so it is an error.
    pub fn literal(text: &str) -> Result<Self, LexicalError> {
        let mut s = Self::default();
        s.push_literal(text)?;
        Ok(s)
    }

    /// Appends literal text, merging it with a preceding literal.
    pub fn push_literal(&mut self, text: &str) -> Result<&mut Self, LexicalError> {
        lexical::check_string_content(text)?;
        if text.is_empty() {
            return Ok(self);
        }
        match self.parts.last_mut() {
            Some(StrPart::Literal(last)) => last.push_str(text),
            _ => self.parts.push(StrPart::Literal(text.to_owned())),
        }
        Ok(self)
    }

    /// Appends `${ expr }`.
    pub fn push_interpolation(&mut self, expr: Expr) -> &mut Self {
        self.parts.push(StrPart::Interpolation(expr));
        self
    }

    /// The pieces, in order.
    pub fn parts(&self) -> &[StrPart] {
        &self.parts
    }

    /// The literal text when the string has no interpolation.
    pub(crate) fn as_literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [StrPart::Literal(s)] => Some(s),
            _ => None,
        }
    }
}

/// An identifier usable as a variable or a formal parameter: `[a-zA-Z_][a-zA-Z0-9_'-]*`, not a keyword.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ident(String);

impl Ident {
    /// Validates `name`; keywords and anything that is not an identifier are rejected.
    pub fn new(name: &str) -> Result<Self, LexicalError> {
        if lexical::is_bare_identifier(name) {
            Ok(Self(name.to_owned()))
        } else {
            Err(LexicalError::NotAnIdentifier(name.to_owned()))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One attribute name: any string without NUL. The printer quotes it when it is not a bare identifier, so a
/// name containing a dot stays one name (`"a.b"`), never a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttrName(String);

impl AttrName {
    /// Validates `name` (no NUL).
    pub fn new(name: &str) -> Result<Self, LexicalError> {
        lexical::check_string_content(name)?;
        Ok(Self(name.to_owned()))
    }

    /// The name as Nix sees it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A non-empty attribute path `a.b."c d"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath(Vec<AttrName>);

impl AttrPath {
    /// A path of one or more names.
    pub fn new(names: Vec<AttrName>) -> Result<Self, LexicalError> {
        if names.is_empty() {
            Err(LexicalError::EmptyAttrPath)
        } else {
            Ok(Self(names))
        }
    }

    /// Splits a dotted path of bare identifiers (`services.mastodon.enable`); for names that need quoting,
    /// build the path from [`AttrName`]s instead.
    pub fn dotted(path: &str) -> Result<Self, LexicalError> {
        let names = path
            .split('.')
            .map(|n| Ident::new(n).map(|i| AttrName(i.0)))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(names)
    }

    /// The names, outermost first.
    pub fn names(&self) -> &[AttrName] {
        &self.0
    }
}

impl From<AttrName> for AttrPath {
    fn from(name: AttrName) -> Self {
        Self(vec![name])
    }
}

/// An attribute set's entries and whether it is `rec`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AttrSet {
    /// `rec { … }`: the entries see each other.
    pub recursive: bool,
    /// The entries, printed in this order.
    pub entries: Vec<Entry>,
}

/// One entry of an attribute set or a `let`.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// `path = value;`, with comment lines printed above it.
    Binding {
        /// `# …` lines above the binding (without the `#`), e.g. to explain a generated value.
        comment: Vec<String>,
        /// The attribute path being defined.
        path: AttrPath,
        /// The value.
        value: Expr,
    },
    /// `inherit a b;` or `inherit (from) a b;`
    Inherit {
        /// The set to take the names from; `None` takes them from the enclosing scope.
        from: Option<Expr>,
        /// The names; at least one.
        names: Vec<AttrName>,
    },
}

/// A function's parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// `x: …`
    Ident(Ident),
    /// `{ a, b ? default, ... }@bind: …`
    Formals {
        /// Each formal with its optional default.
        formals: Vec<(Ident, Option<Expr>)>,
        /// Whether `...` accepts further attributes (NixOS modules need it).
        ellipsis: bool,
        /// `@name`, binding the whole argument.
        bind: Option<Ident>,
    },
}

impl Expr {
    /// A literal string expression; NUL is rejected.
    pub fn string(text: &str) -> Result<Self, LexicalError> {
        NixString::literal(text).map(Expr::Str)
    }

    /// A path on the *target* machine, emitted as a string: a Nix path literal would copy the file from the
    /// generating machine into the world-readable store, which is wrong for runtime paths and fatal for secrets.
    pub(crate) fn runtime_path(path: &str) -> Result<Self, LexicalError> {
        if !path.starts_with('/') {
            return Err(LexicalError::RelativeRuntimePath(path.to_owned()));
        }
        Self::string(path)
    }

    /// A float; NaN and the infinities are rejected.
    pub fn float(value: f64) -> Result<Self, LexicalError> {
        Float::new(value).map(Expr::Float)
    }

    /// A variable reference.
    pub fn var(name: &str) -> Result<Self, LexicalError> {
        Ident::new(name).map(Expr::Var)
    }

    /// Whether `f` holds for every expression directly inside this one, in printing order (a set's or `let`'s values
    /// and `inherit (…)` sources, a string's interpolations, a function's defaults and body, …), stopping at the
    /// first that fails: for checks that walk the whole tree without allocating.
    pub(crate) fn all_children(&self, mut f: impl FnMut(&Expr) -> bool) -> bool {
        let entries = |entries: &[Entry], f: &mut dyn FnMut(&Expr) -> bool| {
            entries.iter().all(|entry| match entry {
                Entry::Binding { value, .. } => f(value),
                Entry::Inherit { from, .. } => from.as_ref().is_none_or(&mut *f),
            })
        };
        match self {
            Expr::Null
            | Expr::Bool(_)
            | Expr::Int(_)
            | Expr::Float(_)
            | Expr::Var(_)
            | Expr::SourcePath(_) => true,
            Expr::Str(s) => s.parts().iter().all(|part| match part {
                StrPart::Literal(_) => true,
                StrPart::Interpolation(e) => f(e),
            }),
            Expr::List(items) => items.iter().all(f),
            Expr::Attrs(set) => entries(&set.entries, &mut f),
            Expr::Let(bindings, body) => entries(bindings, &mut f) && f(body),
            Expr::Lambda(param, body) => {
                let defaults = match param {
                    Param::Ident(_) => true,
                    Param::Formals { formals, .. } => {
                        formals.iter().all(|(_, d)| d.as_ref().is_none_or(&mut f))
                    }
                };
                defaults && f(body)
            }
            Expr::Apply(function, args) => f(function) && args.iter().all(f),
            Expr::Select(base, _, default) => f(base) && default.as_deref().is_none_or(f),
            Expr::With(scope, body) => f(scope) && f(body),
        }
    }

    /// `base.a.b` for a dotted path of identifiers, e.g. `Expr::select_dotted(lib, "types.str")`.
    pub(crate) fn select_dotted(base: Expr, path: &str) -> Result<Self, LexicalError> {
        Ok(Expr::Select(Box::new(base), AttrPath::dotted(path)?, None))
    }

    /// A reference such as `lib.types.str` or `config.services.nginx`: a variable followed by a dotted path.
    pub fn reference(dotted: &str) -> Result<Self, LexicalError> {
        match dotted.split_once('.') {
            None => Self::var(dotted),
            Some((var, path)) => Self::select_dotted(Self::var(var)?, path),
        }
    }

    /// `function args…`; an empty argument list gives the function itself.
    pub fn apply(function: Expr, args: Vec<Expr>) -> Self {
        if args.is_empty() {
            function
        } else {
            Expr::Apply(Box::new(function), args)
        }
    }

    /// A nixpkgs option declaration, `lib.mkOption { type; default; example; description; }`, with the fields in
    /// nixpkgs' order and the optional ones left out when absent: the one way fedigen declares an option.
    pub(crate) fn mk_option(
        ty: Expr,
        default: Option<Expr>,
        example: Option<Expr>,
        description: &str,
    ) -> Result<Self, LexicalError> {
        let mut fields = vec![Entry::dotted("type", ty)?];
        if let Some(default) = default {
            fields.push(Entry::dotted("default", default)?);
        }
        if let Some(example) = example {
            fields.push(Entry::dotted("example", example)?);
        }
        fields.push(Entry::dotted("description", Expr::string(description)?)?);
        Ok(Expr::apply(
            Expr::reference("lib.mkOption")?,
            vec![Expr::attrs(fields)],
        ))
    }

    /// An attribute set of the given entries.
    pub fn attrs(entries: Vec<Entry>) -> Self {
        Expr::Attrs(AttrSet {
            recursive: false,
            entries,
        })
    }
}

impl Entry {
    /// `a.b.c = value;` for a dotted path of identifiers, without a comment.
    pub fn dotted(path: &str, value: Expr) -> Result<Self, LexicalError> {
        Ok(Self::binding(AttrPath::dotted(path)?, value))
    }

    /// `path = value;` without a comment.
    pub fn binding(path: AttrPath, value: Expr) -> Self {
        Entry::Binding {
            comment: Vec::new(),
            path,
            value,
        }
    }
}
