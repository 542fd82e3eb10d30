//! Importing the option declarations of an existing NixOS module into a manifest skeleton
//! (`fedigen template import`).
//!
//! A contributor adding an application usually starts from the upstream nixpkgs module. Its options are read
//! *statically* from the rnix tree — the module is never evaluated, since nixpkgs is not available here and a
//! module may do anything when evaluated — and translated into `templates/<app>/manifest.toml` options where the
//! manifest's types can say the same thing. Everything else is reported with its file, line and column and the
//! reason, and listed as a TOML comment in the skeleton, so nothing is dropped silently.
//!
//! Decisions (each reported where it applies):
//! - **Names**: option paths below the shared prefix (`upstream`, e.g. `services.foo`) are joined in camelCase
//!   (`services.foo.database.host` → `databaseHost`); a character a Nix identifier cannot hold becomes `_`.
//!   Each renaming is a note; a name that two paths would share keeps the first and reports the second.
//! - **`enable`** is not an option (every fediversity module has its own): its `mkEnableOption` text becomes the
//!   title. **`subdomain`** likewise: its default becomes the application's subdomain.
//! - **`nullOr t`** imports as `t`: the manifest has no null. A `null` default is dropped, which makes the
//!   option required; the report says so, for the contributor to choose a real default.
//! - **Secrets**: an option `<x>File` of type `str` or `path` whose name says secret, password, key, token,
//!   credentials or environment becomes `[secrets.<x>]` (provided), since secrets are files on the target. A
//!   string option named like a secret (`database.password`) is skipped: the model refuses secrets as strings
//!   in specifications, so operators could never set it.
//! - **Untranslatable types** (`package`, `path`, `submodule` inside `listOf`/`attrsOf`, `either`, `oneOf`,
//!   `functionTo`, `anything`, `attrs`, …): the option is skipped and listed, with its type, in the skeleton.
//!   A bare `submodule` is imported as the options it declares, nested names flattened as above.
//! - **Values** are read with [`literal_value`]: a default that needs evaluation (`pkgs.foo`, `"${x}/y"`,
//!   `literalExpression`) is dropped (with the upstream text in a TODO comment), which makes the option
//!   required until the contributor writes one; an example that is not data is dropped likewise. Lossy types
//!   (`lines`, `port` with 0, `nonEmptyStr`, `number`, …) are imported with a warning naming the loss.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use rnix::ast::{self, HasEntry};
use rowan::ast::AstNode;
use serde_json::Value;

use crate::manifest::{Manifest, ManifestError, OptionType};
use crate::model::shape::words;
use crate::nix::literal::{attrpath_names, literal_value, position};
use crate::nix::verify::{self, Position, VerifyError};

/// How much a finding matters to the contributor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Something was not translated, or translated with a loss: a human must decide.
    Warning,
    /// Something was translated in a way worth knowing (a renaming, a secret recognised).
    Note,
}

/// One thing the import did not translate exactly, where it is in the module and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Where in the module (1-based line and column).
    pub position: Position,
    /// Warning or note.
    pub severity: Severity,
    /// What happened and what to do.
    pub message: String,
}

/// An option translated into the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedOption {
    /// The upstream option path (e.g. `services.foo.database.host`).
    pub path: Vec<String>,
    /// Its manifest type.
    pub ty: OptionType,
    /// The default, when the module's text fixes one that fits the type.
    pub default: Option<Value>,
    /// The example, likewise.
    pub example: Option<Value>,
    /// The description (Markdown, as upstream wrote it).
    pub description: String,
    /// What a human must decide, written as TOML comments above the option.
    pub todo: Vec<String>,
}

/// A secret recognised from a `…File` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedSecret {
    /// The upstream option path.
    pub path: Vec<String>,
    /// What it holds.
    pub description: String,
    /// Whether fedigen's own generated modules say it is generated on the machine.
    pub generated: bool,
}

/// The result of an import: the manifest skeleton (text and checked value) and everything not translated.
#[derive(Debug, Clone)]
pub struct Import {
    /// The module's name in reports.
    pub file: String,
    /// The application's name (`--name`, or the last component of `upstream`).
    pub name: String,
    /// The option prefix shared by the declarations (e.g. `services.foo`).
    pub upstream: String,
    /// Translated options, by manifest name.
    pub options: BTreeMap<String, ImportedOption>,
    /// Recognised secrets, by manifest name.
    pub secrets: BTreeMap<String, ImportedSecret>,
    /// Options not imported: their path, where they are, and why.
    pub skipped: Vec<(String, Position, String)>,
    /// Every finding, ordered by position.
    pub findings: Vec<Finding>,
    /// Every option path the import read, whatever became of it (imported, skipped, the service's `enable`, a
    /// submodule whose options were imported one by one): what a check against the evaluator accounts for.
    pub declared: Vec<Vec<String>>,
    /// The skeleton `manifest.toml`.
    pub manifest_text: String,
    /// The skeleton as `Manifest::parse` reads it: proof that it loads.
    pub manifest: Manifest,
}

impl Import {
    /// The findings as compiler-style lines, `file:line:col: warning: …`, one per line.
    pub fn report(&self) -> String {
        self.findings
            .iter()
            .map(|f| format!("{}:{f}\n", self.file))
            .collect()
    }

    /// One line: what was imported and what was left to a human.
    pub fn summary(&self) -> String {
        let count = |s| self.findings.iter().filter(|f| f.severity == s).count();
        format!(
            "imported {} option(s) and {} secret(s) under `{}`; {} option(s) not imported; {} warning(s), {} note(s)",
            self.options.len(),
            self.secrets.len(),
            self.upstream,
            self.skipped.len(),
            count(Severity::Warning),
            count(Severity::Note),
        )
    }
}

/// Why a module cannot be imported at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImportError {
    /// The module does not parse.
    #[error("{file}:{position}: the module does not parse: {message}")]
    Syntax {
        /// The module's name in reports.
        file: String,
        /// Where the parser stopped.
        position: Position,
        /// The parser's message.
        message: String,
    },
    /// It parses, but is not a module this importer can read, or declares nothing to import.
    #[error("{file}:{position}: {message}")]
    Module {
        /// The module's name in reports.
        file: String,
        /// Where.
        position: Position,
        /// What is wrong.
        message: String,
    },
    /// The skeleton does not load as a manifest (a bug in the importer: reported rather than written).
    #[error("the imported manifest does not load: {0}")]
    Manifest(ManifestError),
}

/// Imports the option declarations of the module `text` (named `file` in reports). `name` overrides the
/// application's name, which is otherwise the last component of the shared option prefix.
pub fn import_module(file: &str, text: &str, name: Option<&str>) -> Result<Import, ImportError> {
    let root = verify::parse(file, text).map_err(|e| match e {
        VerifyError::Syntax {
            file,
            position,
            message,
        } => ImportError::Syntax {
            file,
            position,
            message,
        },
        other => ImportError::Syntax {
            file: file.to_owned(),
            position: Position { line: 1, column: 1 },
            message: other.to_string(),
        },
    })?;
    let module_error = |node: &rnix::SyntaxNode, message: String| ImportError::Module {
        file: file.to_owned(),
        position: position(text, node),
        message,
    };
    let expr = root
        .expr()
        .ok_or_else(|| module_error(root.syntax(), "the file holds no expression".into()))?;
    let set = module_set(&expr).map_err(|node| {
        module_error(
            &node,
            "not a NixOS module: expected an attribute set, or a function returning one".into(),
        )
    })?;
    let mut lets = BTreeMap::new();
    module_lets(&expr, &mut lets);
    let mut reader = Reader {
        text,
        lets,
        findings: Vec::new(),
        declarations: Vec::new(),
    };
    reader.module(&set, &[], false);
    if reader.declarations.iter().all(|d| d.in_submodule) {
        return Err(module_error(
            set.syntax(),
            "no option declarations found under `options`".into(),
        ));
    }
    let upstream = shared_prefix(&reader.declarations);
    if upstream.is_empty() {
        return Err(module_error(
            set.syntax(),
            "the option declarations share no prefix (such as `services.foo`); import one service at a time"
                .into(),
        ));
    }
    if let Some(quoted) = upstream
        .iter()
        .find(|n| !crate::nix::lexical::is_bare_identifier(n))
    {
        return Err(module_error(
            set.syntax(),
            format!(
                "the option prefix `{}` has the quoted name `{quoted}`, which a manifest's `upstream` cannot hold",
                show_path(&upstream)
            ),
        ));
    }
    let name = match name {
        Some(name) => name.to_owned(),
        None => upstream.last().cloned().unwrap_or_default(),
    };
    if crate::nix::Ident::new(&name).is_err() || name.starts_with('_') {
        return Err(module_error(
            set.syntax(),
            format!(
                "`{name}` cannot name an application: pass --name with letters, digits and `-`, starting with a letter"
            ),
        ));
    }
    let draft = assemble(file, name, upstream, reader);
    let manifest_text = render(&draft);
    let manifest_path = PathBuf::from(format!("templates/{}/manifest.toml", draft.name));
    let manifest =
        Manifest::parse(&manifest_path, &manifest_text).map_err(ImportError::Manifest)?;
    Ok(Import {
        file: draft.file,
        name: draft.name,
        upstream: draft.upstream,
        options: draft.options,
        secrets: draft.secrets,
        skipped: draft.skipped,
        findings: draft.findings,
        declared: draft.declared,
        manifest_text,
        manifest,
    })
}

/// The module's attribute set: through `{ … }:` functions, `let … in`, `with …;` and parentheses.
fn module_set(expr: &ast::Expr) -> Result<ast::AttrSet, rnix::SyntaxNode> {
    match expr {
        ast::Expr::AttrSet(set) => Ok(set.clone()),
        ast::Expr::Lambda(lambda) => lambda
            .body()
            .ok_or_else(|| lambda.syntax().clone())
            .and_then(|b| module_set(&b)),
        ast::Expr::LetIn(let_in) => let_in
            .body()
            .ok_or_else(|| let_in.syntax().clone())
            .and_then(|b| module_set(&b)),
        ast::Expr::With(with) => with
            .body()
            .ok_or_else(|| with.syntax().clone())
            .and_then(|b| module_set(&b)),
        ast::Expr::Paren(paren) => paren
            .expr()
            .ok_or_else(|| paren.syntax().clone())
            .and_then(|b| module_set(&b)),
        other => Err(other.syntax().clone()),
    }
}

/// The `let` bindings on the way to the module's attribute set (`let tlsOptions = { … }; in { … }`), so
/// a submodule declared by name is read; references are resolved, never evaluated.
fn module_lets(expr: &ast::Expr, lets: &mut BTreeMap<String, ast::Expr>) {
    let next = match expr {
        ast::Expr::Lambda(lambda) => lambda.body(),
        ast::Expr::With(with) => with.body(),
        ast::Expr::Paren(paren) => paren.expr(),
        ast::Expr::LetIn(let_in) => {
            for entry in let_in.entries() {
                if let ast::Entry::AttrpathValue(binding) = entry
                    && let (Some(path), Some(value)) = (binding.attrpath(), binding.value())
                    && let Ok([name]) = attrpath_names(&path).as_deref()
                {
                    lets.insert(name.clone(), value);
                }
            }
            let_in.body()
        }
        _ => None,
    };
    if let Some(next) = next {
        module_lets(&next, lets);
    }
}

/// Strips parentheses and `with …;`, which change no option declaration.
fn plain(expr: &ast::Expr) -> ast::Expr {
    match expr {
        ast::Expr::Paren(p) => p.expr().map_or_else(|| expr.clone(), |e| plain(&e)),
        ast::Expr::With(w) => w.body().map_or_else(|| expr.clone(), |e| plain(&e)),
        _ => expr.clone(),
    }
}

/// A function application `f a b` as the function's static name (`lib.types.ints.between`) and its arguments;
/// a bare reference is a call without arguments.
fn call(expr: &ast::Expr) -> Option<(Vec<String>, Vec<ast::Expr>)> {
    let mut args = Vec::new();
    let mut head = plain(expr);
    while let ast::Expr::Apply(apply) = &head {
        args.push(apply.argument()?);
        head = plain(&apply.lambda()?);
    }
    args.reverse();
    let names = match &head {
        ast::Expr::Ident(ident) => vec![ident.ident_token()?.text().to_owned()],
        ast::Expr::Select(select) if select.default_expr().is_none() => {
            let ast::Expr::Ident(base) = select.expr()? else {
                return None;
            };
            let mut names = vec![base.ident_token()?.text().to_owned()];
            names.extend(attrpath_names(&select.attrpath()?).ok()?);
            names
        }
        _ => return None,
    };
    Some((names, args))
}

/// The name of a function of `lib` (`mkOption`, `lib.mkOption`, `lib.options.mkOption`), without the prefix.
fn lib_function(names: &[String]) -> Option<&str> {
    let rest = names.strip_prefix(&["lib".to_owned()]).unwrap_or(names);
    let rest = rest.strip_prefix(&["options".to_owned()]).unwrap_or(rest);
    match rest {
        [one] => Some(one),
        _ => None,
    }
}

/// The name of a type of `lib.types` (`types.str`, `lib.types.ints.between`, or bare after `with types;`).
fn type_name(names: &[String]) -> String {
    let rest = names.strip_prefix(&["lib".to_owned()]).unwrap_or(names);
    let rest = rest.strip_prefix(&["types".to_owned()]).unwrap_or(rest);
    rest.join(".")
}

/// One declaration found in the module.
struct Declaration {
    path: Vec<String>,
    position: Position,
    in_submodule: bool,
    kind: Kind,
}

enum Kind {
    Option(ImportedOption),
    Secret(ImportedSecret),
    /// `mkEnableOption "thing"` at the service's `enable`.
    Enable(String),
    Skipped(String),
    /// A submodule whose options were read one by one (declared on their own).
    Submodule,
}

struct Reader<'a> {
    text: &'a str,
    lets: BTreeMap<String, ast::Expr>,
    findings: Vec<Finding>,
    declarations: Vec<Declaration>,
}

/// The source text of a node on one line, for reports.
fn source(node: &impl AstNode<Language = rnix::NixLanguage>) -> String {
    let text = node.syntax().text().to_string();
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 80 {
        format!("{}…", one_line.chars().take(79).collect::<String>())
    } else {
        one_line
    }
}

/// Words that make a `…File` option a secret besides the model's own secret words
/// (`crate::model::shape::is_secret_like`): environment files are how nixpkgs modules take secrets.
const SECRET_WORDS: [&str; 3] = ["environment", "env", "secrets"];

/// What a type expression means for the manifest.
enum TypeRead {
    Scalar {
        ty: OptionType,
        nullable: bool,
        losses: Vec<String>,
    },
    Submodule {
        set: ast::AttrSet,
        nullable: bool,
    },
    Untranslatable(String),
}

impl Reader<'_> {
    fn at(&self, node: &rnix::SyntaxNode) -> Position {
        position(self.text, node)
    }

    fn report(&mut self, node: &rnix::SyntaxNode, severity: Severity, message: String) {
        let position = self.at(node);
        self.findings.push(Finding {
            position,
            severity,
            message,
        });
    }

    /// A module (or a submodule's) attribute set: `options…` entries are read, the rest is configuration.
    fn module(&mut self, set: &ast::AttrSet, prefix: &[String], in_submodule: bool) {
        for entry in set.entries() {
            let ast::Entry::AttrpathValue(binding) = entry else {
                continue;
            };
            let (Some(path), Some(value)) = (binding.attrpath(), binding.value()) else {
                continue;
            };
            let Ok(names) = attrpath_names(&path) else {
                continue;
            };
            match names.split_first() {
                Some((first, rest)) if first == "options" => {
                    let mut full = prefix.to_vec();
                    full.extend_from_slice(rest);
                    self.options(&value, full, in_submodule);
                }
                Some((first, _)) if first == "imports" => self.report(
                    binding.syntax(),
                    Severity::Warning,
                    "`imports` are not followed: options declared by the imported modules (renamed or removed \
                     options too) are not read; import those modules one by one"
                        .into(),
                ),
                Some((first, _)) if in_submodule && first == "freeformType" => self.report(
                    binding.syntax(),
                    Severity::Warning,
                    format!(
                        "`{}`: the free-form settings of this submodule are not imported; declare the ones operators need as options",
                        show_path(prefix)
                    ),
                ),
                _ => {}
            }
        }
    }

    /// Everything under `options`: nested sets of declarations.
    fn options(&mut self, expr: &ast::Expr, path: Vec<String>, in_submodule: bool) {
        let expr = plain(expr);
        if let ast::Expr::AttrSet(set) = &expr {
            for entry in set.entries() {
                match entry {
                    ast::Entry::Inherit(inherit) => self.report(
                        inherit.syntax(),
                        Severity::Warning,
                        format!("`{}`: inherited options are not read", source(&inherit)),
                    ),
                    ast::Entry::AttrpathValue(binding) => {
                        let (Some(attrpath), Some(value)) = (binding.attrpath(), binding.value())
                        else {
                            continue;
                        };
                        match attrpath_names(&attrpath) {
                            Ok(names) => {
                                let mut full = path.clone();
                                full.extend(names);
                                self.options(&value, full, in_submodule);
                            }
                            Err(attr) => self.report(
                                attr.syntax(),
                                Severity::Warning,
                                format!(
                                    "the option name `{}` is computed; its declarations are not read",
                                    source(&attr)
                                ),
                            ),
                        }
                    }
                }
            }
            return;
        }
        let position = self.at(expr.syntax());
        let kind = self.declaration(&expr, &path);
        if let Kind::Skipped(reason) = &kind {
            self.findings.push(Finding {
                position,
                severity: Severity::Warning,
                message: format!("{reason}; not imported"),
            });
        }
        self.declarations.push(Declaration {
            path,
            position,
            in_submodule,
            kind,
        });
    }

    /// What one declaration is: `mkOption { … }`, `mkEnableOption "…"`, `mkPackageOption …`, or one of them
    /// updated with fields (`mkEnableOption "…" // { default = true; }`, a nixpkgs idiom).
    fn declaration(&mut self, expr: &ast::Expr, path: &[String]) -> Kind {
        let dotted = show_path(path);
        if let ast::Expr::BinOp(op) = expr
            && op.operator() == Some(ast::BinOpKind::Update)
            && let (Some(lhs), Some(rhs)) = (op.lhs(), op.rhs())
            && let ast::Expr::AttrSet(overrides) = plain(&rhs)
        {
            let kind = self.declaration(&plain(&lhs), path);
            return self.update(kind, &overrides, path);
        }
        match call(expr) {
            Some((names, args)) => match lib_function(&names) {
                Some("mkOption") => match args.as_slice() {
                    [ast::Expr::AttrSet(fields)] => self.mk_option(fields, path),
                    _ => Kind::Skipped(format!(
                        "`{dotted}`: `mkOption` with a computed argument is not read"
                    )),
                },
                Some("mkEnableOption") => self.mk_enable_option(expr, &args, path),
                Some("mkPackageOption") => Kind::Skipped(format!(
                    "`{dotted}`: a package option (`mkPackageOption`) is not translatable: the module template chooses packages, not operators"
                )),
                _ => Kind::Skipped(format!(
                    "`{dotted}`: `{}` is not an option declaration fedigen can read",
                    source(expr)
                )),
            },
            None => Kind::Skipped(format!(
                "`{dotted}`: `{}` is not an option declaration fedigen can read",
                source(expr)
            )),
        }
    }

    /// Applies `// { default = …; example = …; description = …; }` to a declaration read from the left side.
    fn update(&mut self, kind: Kind, overrides: &ast::AttrSet, path: &[String]) -> Kind {
        let dotted = show_path(path);
        let Kind::Option(mut option) = kind else {
            if let Kind::Enable(_) = kind {
                self.report(
                    overrides.syntax(),
                    Severity::Warning,
                    format!(
                        "`{dotted}`: the fields updating the service's `enable` are not imported"
                    ),
                );
            }
            return kind;
        };
        for entry in overrides.entries() {
            let ast::Entry::AttrpathValue(binding) = entry else {
                continue;
            };
            let (Some(attrpath), Some(value)) = (binding.attrpath(), binding.value()) else {
                continue;
            };
            let field = match attrpath_names(&attrpath).as_deref() {
                Ok([name]) => name.clone(),
                _ => String::new(),
            };
            match field.as_str() {
                "default" | "example" => match literal_value(&value) {
                    Ok(v) if option.ty.check(&v).is_ok() => {
                        if field == "default" {
                            option.default = Some(v);
                        } else {
                            option.example = Some(v);
                        }
                    }
                    _ => {
                        self.report(
                            value.syntax(),
                            Severity::Warning,
                            format!("`{dotted}`: the updated {field} `{}` is not data of the option's type; dropped", source(&value)),
                        );
                        if field == "default" {
                            option.default = None;
                            option
                                .todo
                                .push(format!("upstream default: {}", source(&value)));
                        } else {
                            option.example = None;
                        }
                    }
                },
                "description" => match self.text_of(&value, &format!("`{dotted}`: the description"))
                {
                    Some(text) => option.description = text,
                    None => self.report(
                        value.syntax(),
                        Severity::Warning,
                        format!(
                            "`{dotted}`: the updated description is computed; the original is kept"
                        ),
                    ),
                },
                _ => self.report(
                    binding.syntax(),
                    Severity::Warning,
                    format!(
                        "`{dotted}`: the update `{}` is not imported",
                        source(&attrpath)
                    ),
                ),
            }
        }
        Kind::Option(option)
    }

    fn mk_enable_option(&mut self, expr: &ast::Expr, args: &[ast::Expr], path: &[String]) -> Kind {
        let dotted = show_path(path);
        let Some(thing) = args.first() else {
            return Kind::Skipped(format!("`{dotted}`: `mkEnableOption` without its argument"));
        };
        let thing = match self.text_of(thing, &format!("`{dotted}`")) {
            Some(text) => text,
            None => {
                return Kind::Skipped(format!(
                    "`{dotted}`: the text of `{}` is computed",
                    source(expr)
                ));
            }
        };
        if path.last().map(String::as_str) == Some("enable") {
            return Kind::Enable(thing);
        }
        Kind::Option(ImportedOption {
            path: path.to_vec(),
            ty: OptionType::Bool,
            default: Some(Value::Bool(false)),
            example: Some(Value::Bool(true)),
            description: format!("Whether to enable {thing}."),
            todo: Vec::new(),
        })
    }

    /// The text of a description-like expression: a string (interpolations kept as their source, with a
    /// warning), through `mdDoc`/`literalMD` and parentheses.
    fn text_of(&mut self, expr: &ast::Expr, what: &str) -> Option<String> {
        let expr = plain(expr);
        match &expr {
            ast::Expr::Str(s) => {
                let mut text = String::new();
                let mut interpolated = false;
                for part in s.normalized_parts() {
                    match part {
                        ast::InterpolPart::Literal(literal) => text.push_str(&literal),
                        ast::InterpolPart::Interpolation(i) => {
                            interpolated = true;
                            text.push_str(&i.syntax().text().to_string());
                        }
                    }
                }
                if interpolated {
                    self.report(
                        s.syntax(),
                        Severity::Warning,
                        format!("{what}: the text interpolates; the interpolations are kept as written (`${{…}}`): rewrite them"),
                    );
                }
                Some(text)
            }
            _ => match call(&expr) {
                Some((names, args)) if args.len() == 1 => match lib_function(&names) {
                    Some("mdDoc" | "literalMD") => self.text_of(&args[0], what),
                    _ => None,
                },
                _ => None,
            },
        }
    }

    fn mk_option(&mut self, fields: &ast::AttrSet, path: &[String]) -> Kind {
        let dotted = show_path(path);
        let mut by_name: BTreeMap<String, ast::Expr> = BTreeMap::new();
        for entry in fields.entries() {
            let ast::Entry::AttrpathValue(binding) = entry else {
                self.report(
                    entry.syntax(),
                    Severity::Warning,
                    format!("`{dotted}`: `inherit` in `mkOption` is not read"),
                );
                continue;
            };
            let (Some(attrpath), Some(value)) = (binding.attrpath(), binding.value()) else {
                continue;
            };
            match attrpath_names(&attrpath).as_deref() {
                Ok([name]) => {
                    by_name.insert(name.clone(), value);
                }
                _ => self.report(
                    binding.syntax(),
                    Severity::Warning,
                    format!("`{dotted}`: `{}` is not read", source(&attrpath)),
                ),
            }
        }
        for (field, value) in &by_name {
            let message = match field.as_str() {
                "type" | "default" | "defaultText" | "example" | "description" => continue,
                "apply" => {
                    "an `apply` function transforms the value upstream; map it in module.nix.hbs"
                }
                "readOnly" | "internal" | "visible" => continue,
                _ => "this field of `mkOption` is not imported",
            };
            let node = value
                .syntax()
                .parent()
                .unwrap_or_else(|| value.syntax().clone());
            self.report(
                &node,
                Severity::Warning,
                format!("`{dotted}`: `{field}`: {message}"),
            );
        }
        for flag in ["readOnly", "internal"] {
            if by_name.get(flag).and_then(|v| literal_value(v).ok()) == Some(Value::Bool(true)) {
                return Kind::Skipped(format!(
                    "`{dotted}`: {flag} options are not settings for operators"
                ));
            }
        }
        let Some(type_expr) = by_name.get("type") else {
            return Kind::Skipped(format!("`{dotted}`: no `type`"));
        };
        let last = path.last().cloned().unwrap_or_default();
        if let Some(secret) = self.secret(&last, type_expr, &by_name) {
            return secret;
        }
        let read = self.read_type(type_expr);
        let description = match by_name.get("description") {
            Some(d) => match self.text_of(d, &format!("`{dotted}`: the description")) {
                Some(text) => text,
                None => {
                    self.report(
                        d.syntax(),
                        Severity::Warning,
                        format!("`{dotted}`: the description is computed; write one"),
                    );
                    format!("TODO: describe `{dotted}`.")
                }
            },
            None => {
                self.report(
                    type_expr.syntax(),
                    Severity::Warning,
                    format!("`{dotted}`: no description; write one"),
                );
                format!("TODO: describe `{dotted}`.")
            }
        };
        let (ty, nullable, losses) = match read {
            TypeRead::Untranslatable(reason) => {
                return Kind::Skipped(format!("`{dotted}`: {reason}"));
            }
            TypeRead::Submodule { set, nullable } => {
                let node = type_expr.syntax();
                if nullable {
                    self.report(
                        node,
                        Severity::Warning,
                        format!("`{dotted}`: `nullOr submodule`: the manifest has no null; its options are imported as if it were set"),
                    );
                }
                if let Some(default) = by_name.get("default")
                    && literal_value(default).ok() != Some(Value::Object(Default::default()))
                {
                    self.report(
                        default.syntax(),
                        Severity::Warning,
                        format!("`{dotted}`: the submodule's own default `{}` is not imported; the defaults of its options apply", source(default)),
                    );
                }
                self.report(
                    node,
                    Severity::Note,
                    format!("`{dotted}`: a submodule; its options are imported one by one"),
                );
                self.module(&set, path, true);
                return Kind::Submodule;
            }
            TypeRead::Scalar {
                ty,
                nullable,
                losses,
            } => (ty, nullable, losses),
        };
        for loss in losses {
            self.report(
                type_expr.syntax(),
                Severity::Warning,
                format!("`{dotted}`: {loss}"),
            );
        }
        let mut todo = Vec::new();
        let default = match by_name.get("default") {
            None => None,
            Some(expr) => match literal_value(expr) {
                Ok(Value::Null) if nullable => {
                    self.report(
                        expr.syntax(),
                        Severity::Warning,
                        format!("`{dotted}`: the default `null` (of `nullOr`) has no manifest equivalent; the option is required until you write a default"),
                    );
                    todo.push("upstream default: null (the manifest has no null)".to_owned());
                    None
                }
                Ok(value) => match ty.check(&value) {
                    Ok(()) => Some(value),
                    Err(e) => {
                        self.report(
                            expr.syntax(),
                            Severity::Warning,
                            format!("`{dotted}`: the default `{}` does not fit the imported type ({e}); dropped, so the option is required", source(expr)),
                        );
                        todo.push(format!("upstream default: {}", source(expr)));
                        None
                    }
                },
                Err(e) => {
                    let node = e.node.clone();
                    self.report(
                        &node,
                        Severity::Warning,
                        format!("`{dotted}`: the default is not data ({}); dropped, so the option is required until you write one", not_data(expr, &e.reason)),
                    );
                    let shown = by_name
                        .get("defaultText")
                        .map(|t| self.text_of_literal_expression(t))
                        .unwrap_or_else(|| source(expr));
                    todo.push(format!("upstream default: {shown}"));
                    None
                }
            },
        };
        if nullable && !todo.iter().any(|t| t.contains("null")) {
            self.report(
                type_expr.syntax(),
                Severity::Warning,
                format!("`{dotted}`: `nullOr` is imported as its inner type: the manifest has no null, so null is no longer accepted"),
            );
        }
        let example = match by_name.get("example") {
            None => None,
            Some(expr) => match literal_value(expr) {
                Ok(value) => match ty.check(&value) {
                    Ok(()) => Some(value),
                    Err(e) => {
                        self.report(
                            expr.syntax(),
                            Severity::Warning,
                            format!("`{dotted}`: the example `{}` does not fit the imported type ({e}); dropped", source(expr)),
                        );
                        None
                    }
                },
                Err(e) => {
                    let shown = self.text_of_literal_expression(expr);
                    let node = e.node.clone();
                    self.report(
                        &node,
                        Severity::Warning,
                        format!(
                            "`{dotted}`: the example is not data ({}); dropped",
                            not_data(expr, &e.reason)
                        ),
                    );
                    todo.push(format!("upstream example: {shown}"));
                    None
                }
            },
        };
        Kind::Option(ImportedOption {
            path: path.to_vec(),
            ty,
            default,
            example,
            description,
            todo,
        })
    }

    /// The text inside `literalExpression "…"` / `literalMD "…"` (or the source), for TODO comments.
    fn text_of_literal_expression(&self, expr: &ast::Expr) -> String {
        if let Some((names, args)) = call(expr)
            && args.len() == 1
            && matches!(
                lib_function(&names),
                Some("literalExpression" | "literalMD" | "literalExample")
            )
            && let ast::Expr::Str(s) = plain(&args[0])
            && let Some(text) = crate::nix::literal::string_literal(&s)
        {
            return text.split_whitespace().collect::<Vec<_>>().join(" ");
        }
        source(expr)
    }

    /// A `…File` option that names a secret, of type `str` or `path` (or `nullOr` of one).
    fn secret(
        &mut self,
        last: &str,
        type_expr: &ast::Expr,
        fields: &BTreeMap<String, ast::Expr>,
    ) -> Option<Kind> {
        let stem = last.strip_suffix("File").filter(|s| !s.is_empty())?;
        if !crate::model::shape::is_secret_like(stem)
            && !words(stem)
                .iter()
                .any(|w| SECRET_WORDS.contains(&w.as_str()))
        {
            return None;
        }
        let mut ty = plain(type_expr);
        loop {
            let (names, args) = call(&ty)?;
            match (type_name(&names).as_str(), args.as_slice()) {
                ("str" | "path" | "nonEmptyStr", []) => break,
                ("nullOr", [inner]) => ty = plain(inner),
                _ => return None,
            }
        }
        let mut description = match fields.get("description") {
            Some(d) => self.text_of(d, &format!("`{last}`: the description"))?,
            None => format!("TODO: what `{last}` holds"),
        };
        // fedigen's own generated modules wrap the manifest's description; unwrap it (round trips).
        let mut generated = false;
        if let Some(inner) = description.strip_prefix("Path on the machine of the file holding ") {
            let inner = inner.to_owned();
            for (suffix, is_generated) in [
                (
                    "; never a store path, so the secret stays out of the world-readable Nix store. Generated on the machine when absent.",
                    true,
                ),
                (
                    "; never a store path, so the secret stays out of the world-readable Nix store.",
                    false,
                ),
            ] {
                if let Some(core) = inner.strip_suffix(suffix) {
                    description = core.to_owned();
                    generated = is_generated;
                    break;
                }
            }
        }
        Some(Kind::Secret(ImportedSecret {
            path: Vec::new(),
            description,
            generated,
        }))
    }

    /// A reference to a module-level `let` binding, replaced by its value (once: no recursion).
    fn resolve(&self, expr: &ast::Expr) -> ast::Expr {
        match plain(expr) {
            ast::Expr::Ident(ident) => ident
                .ident_token()
                .and_then(|t| self.lets.get(t.text()).cloned())
                .unwrap_or_else(|| expr.clone()),
            other => other,
        }
    }

    fn read_type(&mut self, expr: &ast::Expr) -> TypeRead {
        let expr = plain(expr);
        let shown = source(&expr);
        let untranslatable =
            |why: &str| TypeRead::Untranslatable(format!("the type `{shown}` {why}"));
        let Some((names, args)) = call(&expr) else {
            return untranslatable("is computed, not a `lib.types` type");
        };
        let name = type_name(&names);
        let scalar = |ty: OptionType, losses: Vec<String>| TypeRead::Scalar {
            ty,
            nullable: false,
            losses,
        };
        let int = |min: Option<i64>, max: Option<i64>| OptionType::Int { min, max };
        let string = || OptionType::Str {
            pattern: None,
            max_length: None,
        };
        match (name.as_str(), args.as_slice()) {
            ("bool", []) => scalar(OptionType::Bool, vec![]),
            ("str", []) => scalar(string(), vec![]),
            ("nonEmptyStr", []) => scalar(
                OptionType::Str {
                    pattern: Some(r"[\s\S]*[^ \t\n][\s\S]*".into()),
                    max_length: None,
                },
                vec!["`nonEmptyStr` is imported as `str` with a pattern requiring a character other than space, tab or newline; the generated module declares `strMatching`".into()],
            ),
            ("lines" | "commas" | "envVar", []) => scalar(
                string(),
                vec![format!("`{name}` is imported as `str`: values are the same, but upstream merges several definitions by joining them, and the manifest's type does not")],
            ),
            ("int", []) => scalar(int(None, None), vec![]),
            ("ints.positive", []) => scalar(int(Some(1), None), vec![]),
            ("ints.unsigned", []) => scalar(int(Some(0), None), vec![]),
            ("ints.u8", []) => scalar(int(Some(0), Some(255)), vec![]),
            ("ints.u16", []) => scalar(int(Some(0), Some(65535)), vec![]),
            ("ints.u32", []) => scalar(int(Some(0), Some(4_294_967_295)), vec![]),
            ("ints.s8", []) => scalar(int(Some(-128), Some(127)), vec![]),
            ("ints.s16", []) => scalar(int(Some(-32768), Some(32767)), vec![]),
            ("ints.s32", []) => scalar(int(Some(-2_147_483_648), Some(2_147_483_647)), vec![]),
            ("port", []) => scalar(
                OptionType::Port,
                vec!["`port` allows 0 upstream (it is `ints.u16`); the manifest's `port` is 1 to 65535".into()],
            ),
            ("float", []) => scalar(OptionType::Float, vec![]),
            ("number", []) => scalar(
                OptionType::Float,
                vec!["`number` is imported as `float`: the manifest accepts integers for it, but the generated module declares `float`, which does not".into()],
            ),
            ("ints.between", [a, b]) => match (literal_value(a), literal_value(b)) {
                (Ok(Value::Number(a)), Ok(Value::Number(b))) if a.as_i64().is_some() && b.as_i64().is_some() => {
                    if a.as_i64() <= b.as_i64() {
                        scalar(int(a.as_i64(), b.as_i64()), vec![])
                    } else {
                        untranslatable("is an empty range")
                    }
                }
                _ => untranslatable("has bounds that are not integer literals"),
            },
            ("enum", [items]) => match literal_value(items) {
                Ok(Value::Array(items)) if !items.is_empty() && items.iter().all(Value::is_string) => scalar(
                    OptionType::Enum(items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()),
                    vec![],
                ),
                Ok(Value::Array(items)) if !items.is_empty() => untranslatable("has values other than strings; the manifest's enums are strings"),
                _ => untranslatable("has values that are not a literal, non-empty list"),
            },
            ("strMatching", [pattern]) => match literal_value(pattern) {
                Ok(Value::String(p)) if regex_lite::Regex::new(&p).is_ok() => scalar(
                    OptionType::Str { pattern: Some(p), max_length: None },
                    vec![],
                ),
                Ok(Value::String(_)) => untranslatable("has a regular expression the manifest's regex engine does not read"),
                _ => untranslatable("has a pattern that is not a string literal"),
            },
            ("listOf" | "attrsOf", [inner]) => match self.read_type(inner) {
                TypeRead::Scalar { ty, nullable: false, losses }
                    if !matches!(ty, OptionType::List(_) | OptionType::Attrs(_)) =>
                {
                    let ty = if name == "listOf" {
                        OptionType::List(Box::new(ty))
                    } else {
                        OptionType::Attrs(Box::new(ty))
                    };
                    scalar(ty, losses)
                }
                TypeRead::Scalar { nullable: true, .. } => untranslatable("holds nulls, which the manifest cannot express"),
                TypeRead::Scalar { .. } => untranslatable("nests lists or attribute sets; the manifest's lists and attribute sets hold scalars"),
                TypeRead::Submodule { .. } => untranslatable("holds submodules; the manifest cannot express a list or set of them"),
                TypeRead::Untranslatable(reason) => TypeRead::Untranslatable(format!("the type `{shown}` holds values it cannot express: {reason}")),
            },
            ("nullOr", [inner]) => match self.read_type(inner) {
                TypeRead::Scalar { ty, losses, .. } => TypeRead::Scalar { ty, nullable: true, losses },
                TypeRead::Submodule { set, .. } => TypeRead::Submodule { set, nullable: true },
                other => other,
            },
            ("submodule", [module]) => match module_set(&self.resolve(module)) {
                Ok(set) => TypeRead::Submodule { set, nullable: false },
                Err(_) => untranslatable("is a submodule whose options are computed"),
            },
            (
                "package" | "path" | "pathInStore" | "anything" | "attrs" | "raw" | "unspecified"
                | "either" | "oneOf" | "functionTo" | "lazyAttrsOf" | "uniq" | "unique" | "coercedTo"
                | "separatedString" | "shellPackage" | "pkgs" | "addCheck" | "listOf" | "attrsOf"
                | "nullOr" | "submodule" | "deferredModule" | "package'",
                _,
            ) => untranslatable("has no manifest equivalent"),
            _ => untranslatable("is not a `lib.types` type fedigen knows"),
        }
    }
}

/// Why a value is not data, naming `literalExpression` and friends (documentation, not values).
fn not_data(expr: &ast::Expr, reason: &str) -> String {
    match call(expr).and_then(|(names, _)| lib_function(&names).map(str::to_owned)) {
        Some(f) if f.starts_with("literal") => {
            format!("`{f}` is Nix code for the documentation, not a value")
        }
        _ => reason.to_owned(),
    }
}

/// An option path as Nix writes it: components that are not bare identifiers quoted (`services.a."b.c"`).
pub fn show_path(path: &[String]) -> String {
    path.iter()
        .map(|name| {
            let mut out = String::new();
            crate::nix::lexical::write_attr_name(&mut out, name);
            out
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The option path shared by the top-level declarations' parents (the service, e.g. `services.foo`).
fn shared_prefix(declarations: &[Declaration]) -> Vec<String> {
    let mut parents = declarations
        .iter()
        .filter(|d| !d.in_submodule && !d.path.is_empty())
        .map(|d| &d.path[..d.path.len() - 1]);
    let Some(first) = parents.next() else {
        return Vec::new();
    };
    let mut prefix = first.to_vec();
    for parent in parents {
        let common = prefix
            .iter()
            .zip(parent)
            .take_while(|(a, b)| a == b)
            .count();
        prefix.truncate(common);
    }
    prefix
}

/// The manifest name of an option path below `upstream`: camelCase joining, characters a Nix identifier
/// cannot hold replaced by `_`.
pub fn flatten_name(relative: &[String]) -> String {
    let mut name = String::new();
    for (i, part) in relative.iter().enumerate() {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            if i == 0 {
                name.push(first);
            } else {
                name.extend(first.to_uppercase());
            }
            name.extend(chars);
        }
    }
    let mut name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '\'' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        name.insert(0, '_');
    }
    if crate::nix::Ident::new(&name).is_err() {
        name.push('_');
    }
    name
}

/// Whether values of the type are (or hold) free strings, which a secret-like name makes unusable.
fn holds_strings(ty: &OptionType) -> bool {
    match ty {
        OptionType::Str { .. } | OptionType::Email => true,
        OptionType::List(inner) | OptionType::Attrs(inner) => holds_strings(inner),
        _ => false,
    }
}

/// The application's identity as the skeleton states it.
#[derive(Debug, Clone, Default)]
struct ApplicationText {
    title: String,
    subdomain: String,
    title_from_module: bool,
}

/// An import before its manifest is rendered and checked.
struct Draft {
    file: String,
    name: String,
    upstream: String,
    options: BTreeMap<String, ImportedOption>,
    secrets: BTreeMap<String, ImportedSecret>,
    skipped: Vec<(String, Position, String)>,
    findings: Vec<Finding>,
    declared: Vec<Vec<String>>,
    application: ApplicationText,
}

/// The title a name suggests (`matrix-synapse` → `Matrix Synapse`), for skeletons until a person writes one.
pub fn title_case(name: &str) -> String {
    name.split('-')
        .map(|w| {
            w.chars()
                .take(1)
                .flat_map(char::to_uppercase)
                .chain(w.chars().skip(1))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn assemble(file: &str, name: String, upstream: Vec<String>, reader: Reader<'_>) -> Draft {
    let Reader {
        mut findings,
        declarations,
        ..
    } = reader;
    let mut application = ApplicationText {
        title: title_case(&name),
        subdomain: name.clone(),
        title_from_module: false,
    };
    let mut options = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut taken: BTreeSet<String> = BTreeSet::new();
    let declared = declarations.iter().map(|d| d.path.clone()).collect();
    let note = |findings: &mut Vec<Finding>, position, severity, message| {
        findings.push(Finding {
            position,
            severity,
            message,
        })
    };
    for declaration in declarations {
        let dotted = show_path(&declaration.path);
        let relative = declaration
            .path
            .strip_prefix(upstream.as_slice())
            .unwrap_or(&declaration.path);
        match declaration.kind {
            Kind::Submodule => {}
            Kind::Skipped(reason) => {
                let reason = reason
                    .strip_prefix(&format!("`{dotted}`: "))
                    .map_or_else(|| reason.clone(), str::to_owned);
                skipped.push((dotted, declaration.position, reason));
            }
            Kind::Enable(thing) if relative == ["enable"] => {
                application.title = thing;
                application.title_from_module = true;
                note(
                    &mut findings,
                    declaration.position,
                    Severity::Note,
                    format!(
                        "`{dotted}`: every fediversity module has its own `enable`; its text is the title"
                    ),
                );
            }
            Kind::Enable(thing) => {
                let name = flatten_name(relative);
                let option = ImportedOption {
                    path: declaration.path.clone(),
                    ty: OptionType::Bool,
                    default: Some(Value::Bool(false)),
                    example: Some(Value::Bool(true)),
                    description: format!("Whether to enable {thing}."),
                    todo: Vec::new(),
                };
                insert_option(
                    &mut findings,
                    &mut options,
                    &mut taken,
                    &mut skipped,
                    declaration.position,
                    relative,
                    name,
                    option,
                );
            }
            Kind::Option(option) if relative == ["enable"] && option.ty == OptionType::Bool => {
                note(
                    &mut findings,
                    declaration.position,
                    Severity::Note,
                    format!(
                        "`{dotted}`: every fediversity module has its own `enable`; not imported"
                    ),
                );
            }
            Kind::Option(option)
                if relative == ["subdomain"]
                    && option.default.as_ref().is_some_and(Value::is_string) =>
            {
                application.subdomain = option
                    .default
                    .as_ref()
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                note(
                    &mut findings,
                    declaration.position,
                    Severity::Note,
                    format!(
                        "`{dotted}`: every fediversity module has its own `subdomain`; its default is the application's subdomain"
                    ),
                );
            }
            Kind::Option(option)
                if crate::model::shape::is_secret_like(&flatten_name(relative))
                    && holds_strings(&option.ty) =>
            {
                let reason = "named like a secret, and specifications may not hold secrets as strings (the model \
                              refuses them): declare a `…File` secret instead";
                note(
                    &mut findings,
                    declaration.position,
                    Severity::Warning,
                    format!("`{dotted}`: {reason}; not imported"),
                );
                skipped.push((dotted, declaration.position, reason.to_owned()));
            }
            Kind::Option(option) => {
                let name = flatten_name(relative);
                insert_option(
                    &mut findings,
                    &mut options,
                    &mut taken,
                    &mut skipped,
                    declaration.position,
                    relative,
                    name,
                    option,
                );
            }
            Kind::Secret(mut secret) => {
                let mut stem = relative.to_vec();
                if let Some(last) = stem.last_mut() {
                    *last = last.strip_suffix("File").unwrap_or(last).to_owned();
                }
                let name = flatten_name(&stem);
                secret.path = declaration.path.clone();
                if !taken.insert(name.clone()) {
                    note(
                        &mut findings,
                        declaration.position,
                        Severity::Warning,
                        format!("`{dotted}`: the secret name `{name}` is taken; not imported"),
                    );
                    skipped.push((
                        dotted,
                        declaration.position,
                        format!("the name `{name}` is taken"),
                    ));
                    continue;
                }
                note(
                    &mut findings,
                    declaration.position,
                    Severity::Note,
                    format!(
                        "`{dotted}`: a secret file; imported as secret `{name}` ({}; the module receives `{name}File`)",
                        if secret.generated {
                            "generated on the machine"
                        } else {
                            "provided by the operator"
                        }
                    ),
                );
                secrets.insert(name, secret);
            }
        }
    }
    findings.sort_by(|a, b| {
        (a.position.line, a.position.column, a.severity, &a.message).cmp(&(
            b.position.line,
            b.position.column,
            b.severity,
            &b.message,
        ))
    });
    findings.dedup();
    Draft {
        file: file.to_owned(),
        name,
        upstream: show_path(&upstream),
        options,
        secrets,
        skipped,
        findings,
        declared,
        application,
    }
}

#[allow(clippy::too_many_arguments)]
fn insert_option(
    findings: &mut Vec<Finding>,
    options: &mut BTreeMap<String, ImportedOption>,
    taken: &mut BTreeSet<String>,
    skipped: &mut Vec<(String, Position, String)>,
    position: Position,
    relative: &[String],
    mut name: String,
    option: ImportedOption,
) {
    let dotted = show_path(&option.path);
    if matches!(name.as_str(), "enable" | "subdomain") {
        let renamed = format!("upstream{}", flatten_name(&[String::new(), name.clone()]));
        findings.push(Finding {
            position,
            severity: Severity::Note,
            message: format!("`{dotted}`: `{name}` is an option of every fediversity module; imported as `{renamed}`"),
        });
        name = renamed;
    } else if relative.len() != 1 || relative[0] != name {
        findings.push(Finding {
            position,
            severity: Severity::Note,
            message: format!("`{dotted}`: imported as option `{name}`"),
        });
    }
    if !taken.insert(name.clone()) {
        findings.push(Finding {
            position,
            severity: Severity::Warning,
            message: format!(
                "`{dotted}`: the name `{name}` is taken by another option; not imported"
            ),
        });
        skipped.push((dotted, position, format!("the name `{name}` is taken")));
        return;
    }
    options.insert(name, option);
}

/// A TOML value for a JSON value the manifest accepts (no nulls: the type checks have refused them).
fn toml_value(value: &Value) -> toml::Value {
    match value {
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) if !n.to_string().contains(['.', 'e', 'E']) => toml::Value::Integer(i),
            _ => toml::Value::Float(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(items) => toml::Value::Array(items.iter().map(toml_value).collect()),
        Value::Object(map) => toml::Value::Table(
            map.iter()
                .map(|(k, v)| (k.clone(), toml_value(v)))
                .collect(),
        ),
        Value::Null => toml::Value::String(String::new()),
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn toml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        toml_string(key)
    }
}

/// `# text` lines for a comment that may span lines.
fn comment(out: &mut String, text: &str) {
    for line in text.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
}

/// The type's `type = …` and its parameters, as manifest keys.
fn type_keys(ty: &OptionType) -> Vec<(&'static str, toml::Value)> {
    let name = |s: &str| toml::Value::String(s.to_owned());
    match ty {
        OptionType::Bool => vec![("type", name("bool"))],
        OptionType::Int { min, max } => {
            let mut keys = vec![("type", name("int"))];
            if let Some(min) = min {
                keys.push(("min", toml::Value::Integer(*min)));
            }
            if let Some(max) = max {
                keys.push(("max", toml::Value::Integer(*max)));
            }
            keys
        }
        OptionType::Float => vec![("type", name("float"))],
        OptionType::Str {
            pattern,
            max_length,
        } => {
            let mut keys = vec![("type", name("str"))];
            if let Some(p) = pattern {
                keys.push(("pattern", name(p)));
            }
            if let Some(m) = max_length {
                keys.push(("max_length", toml::Value::Integer(*m as i64)));
            }
            keys
        }
        OptionType::Enum(values) => vec![
            ("type", name("enum")),
            (
                "values",
                toml::Value::Array(values.iter().map(|v| name(v)).collect()),
            ),
        ],
        OptionType::Port => vec![("type", name("port"))],
        OptionType::Email => vec![("type", name("email"))],
        OptionType::List(inner) | OptionType::Attrs(inner) => {
            let outer = if matches!(ty, OptionType::List(_)) {
                "list"
            } else {
                "attrs"
            };
            let of = type_keys(inner)
                .into_iter()
                .next()
                .map_or_else(|| name("str"), |(_, v)| v);
            vec![("type", name(outer)), ("of", of)]
        }
    }
}

/// The skeleton `manifest.toml`: the imported options and secrets, placeholders for what the module cannot
/// say (needs, resources, ports, health), and a TODO comment wherever a human must decide.
fn render(import: &Draft) -> String {
    let application = &import.application;
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Imported by `fedigen template import` from {} (the `{}` options).",
        import.file, import.upstream
    );
    out.push_str(
        "# Review every TODO, then write module.nix.hbs and run `fedigen template check`. Option types: bool, int\n\
         # (min, max), float, str (pattern, max_length), enum (values), port, email, list and attrs (of = \"<type>\").\n\n",
    );
    out.push_str("[application]\n");
    let _ = writeln!(out, "name = {}", toml_string(&import.name));
    if !application.title_from_module {
        out.push_str("# TODO: the name people know.\n");
    } else {
        out.push_str("# TODO: the title is the text of upstream's `mkEnableOption`; shorten it to the name people know.\n");
    }
    let _ = writeln!(out, "title = {}", toml_string(&application.title));
    let _ = writeln!(
        out,
        "description = {}",
        toml_string(&format!(
            "TODO: one sentence about {}.",
            title_case(&import.name)
        ))
    );
    let _ = writeln!(out, "upstream = {}", toml_string(&import.upstream));
    let _ = writeln!(out, "subdomain = {}", toml_string(&application.subdomain));
    for (name, option) in &import.options {
        out.push('\n');
        let _ = writeln!(out, "# From `{}`.", show_path(&option.path));
        for todo in &option.todo {
            comment(&mut out, &format!("TODO: {todo}"));
        }
        let _ = writeln!(out, "[options.{}]", toml_key(name));
        for (key, value) in type_keys(&option.ty) {
            let _ = writeln!(out, "{key} = {value}");
        }
        if let Some(default) = &option.default {
            let _ = writeln!(out, "default = {}", toml_value(default));
        }
        let _ = writeln!(out, "description = {}", toml_string(&option.description));
        if let Some(example) = &option.example {
            let _ = writeln!(out, "example = {}", toml_value(example));
        }
    }
    if !import.skipped.is_empty() {
        out.push_str("\n# TODO: not imported (declare what operators need by hand, or set it in module.nix.hbs):\n");
        for (path, position, reason) in &import.skipped {
            comment(
                &mut out,
                &format!("- {path} ({}:{position}): {reason}", import.file),
            );
        }
    }
    for (name, secret) in &import.secrets {
        out.push('\n');
        let _ = writeln!(out, "# From `{}`.", show_path(&secret.path));
        let _ = writeln!(out, "[secrets.{}]", toml_key(name));
        let _ = writeln!(out, "description = {}", toml_string(&secret.description));
        let _ = writeln!(
            out,
            "source = {}",
            toml_string(if secret.generated {
                "generated"
            } else {
                "provided"
            })
        );
    }
    let _ = write!(
        out,
        r#"
# TODO: what the application needs on its machine or from the provider.
[needs]
postgresql = false
redis = false
smtp = false
s3_buckets = []

# TODO: the resources one instance needs at least.
[resources]
cores = 1
memory_mib = 1024
disk_gib = 10

# TODO: the ports it listens on.
[[ports]]
name = "https"
port = 443
public = true

# TODO: the units, ports and pages that show it is up (the VM tests check them).
[health]
units = [{}]
tcp_ports = [443]

[[health.http]]
path = "/"
status = 200
"#,
        toml_string(&format!("{}.service", import.name))
    );
    out
}

/// `line:col: warning: message`: the report line without the file, which the [`Import`] knows.
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        write!(f, "{}: {kind}: {}", self.position, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|p| (*p).to_owned()).collect()
    }

    #[test]
    fn paths_flatten_to_camel_case_identifiers() {
        assert_eq!(
            flatten_name(&names(&["database", "createLocally"])),
            "databaseCreateLocally"
        );
        assert_eq!(flatten_name(&names(&["max.size"])), "max_size");
        assert_eq!(flatten_name(&names(&["9lives"])), "_9lives");
        assert_eq!(
            flatten_name(&names(&["if"])),
            "if_",
            "keywords are not identifiers"
        );
        assert_eq!(
            show_path(&names(&["services", "a.b", "if"])),
            r#"services."a.b"."if""#
        );
    }

    #[test]
    fn secret_words_are_found_in_every_naming_style() {
        assert_eq!(words("appSecrets"), ["app", "secrets"]);
        assert_eq!(words("db_password-path"), ["db", "password", "path"]);
        assert_eq!(words("environment"), ["environment"]);
    }

    fn refusal(text: &str) -> String {
        import_module("m.nix", text, None).unwrap_err().to_string()
    }

    #[test]
    fn modules_that_cannot_be_imported_are_refused_with_a_position() {
        assert_eq!(
            refusal("[ 1 ]"),
            "m.nix:1:1: not a NixOS module: expected an attribute set, or a function returning one"
        );
        assert_eq!(
            refusal(
                "{ lib, ... }:\n{ options.a.x = lib.mkOption { type = lib.types.int; }; options.b.y = lib.mkOption { type = lib.types.int; }; }"
            ),
            "m.nix:2:1: the option declarations share no prefix (such as `services.foo`); import one service at a time"
        );
        assert!(refusal("{ options.services.x = {").starts_with("m.nix:1:"));
        assert!(
            refusal(r#"{ options.services."a.b".x = mkOption { type = types.int; }; }"#)
                .contains("the option prefix `services.\"a.b\"` has the quoted name `a.b`"),
            "a prefix the manifest cannot hold is refused, not written"
        );
        let bad_name = import_module(
            "m.nix",
            "{ lib, ... }: { options.services.x.y = lib.mkOption { type = lib.types.int; description = \"d\"; }; }",
            Some("_hidden"),
        )
        .unwrap_err();
        assert!(
            bad_name.to_string().contains("cannot name an application"),
            "{bad_name}"
        );
    }

    #[test]
    fn a_bare_attribute_set_is_a_module_and_its_name_comes_from_the_prefix() {
        let import = import_module(
            "m.nix",
            r#"{ options.services.my-app.level = mkOption { type = types.ints.between 0 9; default = 3; description = "d"; };
                 options.services.my-app.enable = mkOption { type = types.bool; default = false; description = "Run it."; }; }"#,
            None,
        )
        .unwrap();
        assert_eq!(import.name, "my-app");
        assert_eq!(import.upstream, "services.my-app");
        assert_eq!(
            import.options["level"].ty,
            OptionType::Int {
                min: Some(0),
                max: Some(9)
            }
        );
        assert_eq!(import.options["level"].default, Some(Value::from(3)));
        assert_eq!(
            import.options.len(),
            1,
            "an `enable` written with mkOption is the service's switch too"
        );
    }
}
