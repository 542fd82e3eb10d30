//! Reading a module's option declarations from the rnix tree: the module's shape (function, `let`, `with`),
//! where `options` are, each `mkOption`/`mkEnableOption`/`mkPackageOption` and its fields, and what a type
//! expression means for the manifest. Nothing is evaluated.

use std::collections::BTreeMap;

use rnix::ast::{self, HasEntry};
use rowan::ast::AstNode;
use serde_json::Value;

use super::names::show_path;
use super::{Finding, ImportedOption, ImportedSecret, Severity};
use crate::manifest::OptionType;
use crate::model::shape::secret_names::is_secret_file_stem;
use crate::nix::literal::{attrpath_names, literal_value, position};
use crate::position::Position;

/// The module's attribute set: through `{ … }:` functions, `let … in`, `with …;` and parentheses.
pub(super) fn module_set(expr: &ast::Expr) -> Result<ast::AttrSet, rnix::SyntaxNode> {
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
pub(super) fn module_lets(expr: &ast::Expr, lets: &mut BTreeMap<String, ast::Expr>) {
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
pub(super) fn plain(expr: &ast::Expr) -> ast::Expr {
    match expr {
        ast::Expr::Paren(p) => p.expr().map_or_else(|| expr.clone(), |e| plain(&e)),
        ast::Expr::With(w) => w.body().map_or_else(|| expr.clone(), |e| plain(&e)),
        _ => expr.clone(),
    }
}

/// A function application `f a b` as the function's static name (`lib.types.ints.between`) and its arguments;
/// a bare reference is a call without arguments.
pub(super) fn call(expr: &ast::Expr) -> Option<(Vec<String>, Vec<ast::Expr>)> {
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
pub(super) fn lib_function(names: &[String]) -> Option<&str> {
    let rest = names.strip_prefix(&["lib".to_owned()]).unwrap_or(names);
    let rest = rest.strip_prefix(&["options".to_owned()]).unwrap_or(rest);
    match rest {
        [one] => Some(one),
        _ => None,
    }
}

/// The name of a type of `lib.types` (`types.str`, `lib.types.ints.between`, or bare after `with types;`).
pub(super) fn type_name(names: &[String]) -> String {
    let rest = names.strip_prefix(&["lib".to_owned()]).unwrap_or(names);
    let rest = rest.strip_prefix(&["types".to_owned()]).unwrap_or(rest);
    rest.join(".")
}

/// One declaration found in the module.
pub(super) struct Declaration {
    pub(super) path: Vec<String>,
    pub(super) position: Position,
    pub(super) in_submodule: bool,
    pub(super) kind: Kind,
}

pub(super) enum Kind {
    Option(ImportedOption),
    Secret(ImportedSecret),
    /// `mkEnableOption "thing"` at the service's `enable`.
    Enable(String),
    Skipped(String),
    /// A submodule whose options were read one by one (declared on their own).
    Submodule,
}

pub(super) struct Reader<'a> {
    pub(super) text: &'a str,
    pub(super) lets: BTreeMap<String, ast::Expr>,
    pub(super) findings: Vec<Finding>,
    pub(super) declarations: Vec<Declaration>,
}

/// The source text of a node on one line, for reports.
pub(super) fn source(node: &impl AstNode<Language = rnix::NixLanguage>) -> String {
    let text = node.syntax().text().to_string();
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 80 {
        format!("{}…", one_line.chars().take(79).collect::<String>())
    } else {
        one_line
    }
}

/// What a type expression means for the manifest.
pub(super) enum TypeRead {
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
    pub(super) fn at(&self, node: &rnix::SyntaxNode) -> Position {
        position(self.text, node)
    }

    pub(super) fn report(&mut self, node: &rnix::SyntaxNode, severity: Severity, message: String) {
        let position = self.at(node);
        self.findings.push(Finding {
            position,
            severity,
            message,
        });
    }

    /// A module (or a submodule's) attribute set: `options…` entries are read, the rest is configuration.
    pub(super) fn module(&mut self, set: &ast::AttrSet, prefix: &[String], in_submodule: bool) {
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
    pub(super) fn options(&mut self, expr: &ast::Expr, path: Vec<String>, in_submodule: bool) {
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
    pub(super) fn declaration(&mut self, expr: &ast::Expr, path: &[String]) -> Kind {
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
    pub(super) fn update(&mut self, kind: Kind, overrides: &ast::AttrSet, path: &[String]) -> Kind {
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

    pub(super) fn mk_enable_option(
        &mut self,
        expr: &ast::Expr,
        args: &[ast::Expr],
        path: &[String],
    ) -> Kind {
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
    pub(super) fn text_of(&mut self, expr: &ast::Expr, what: &str) -> Option<String> {
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

    pub(super) fn mk_option(&mut self, fields: &ast::AttrSet, path: &[String]) -> Kind {
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
    pub(super) fn text_of_literal_expression(&self, expr: &ast::Expr) -> String {
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
    pub(super) fn secret(
        &mut self,
        last: &str,
        type_expr: &ast::Expr,
        fields: &BTreeMap<String, ast::Expr>,
    ) -> Option<Kind> {
        let stem = last.strip_suffix("File").filter(|s| !s.is_empty())?;
        if !is_secret_file_stem(stem) {
            return None;
        }
        let mut ty = plain(type_expr);
        let mut nullable = false;
        loop {
            let (names, args) = call(&ty)?;
            match (type_name(&names).as_str(), args.as_slice()) {
                ("str" | "path" | "nonEmptyStr", []) => break,
                ("nullOr", [inner]) => {
                    nullable = true;
                    ty = plain(inner);
                }
                _ => return None,
            }
        }
        // `nullOr path` with the default `null`: the service runs without the file, so the secret is optional.
        let optional = nullable
            && fields
                .get("default")
                .is_some_and(|d| d.syntax().text().to_string().trim() == "null");
        let mut description = match fields.get("description") {
            Some(d) => self.text_of(d, &format!("`{last}`: the description"))?,
            None => format!("TODO: what `{last}` holds"),
        };
        // fedigen's own generated modules wrap the manifest's description; unwrap it (round trips).
        let mut generated = false;
        if let Some(inner) = description.strip_prefix("Path on the machine of the file holding ") {
            let inner = inner.to_owned();
            let inner = inner
                .strip_suffix(" Optional: `null` when the application runs without it.")
                .unwrap_or(&inner);
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
            optional,
        }))
    }

    /// A reference to a module-level `let` binding, replaced by its value (once: no recursion).
    pub(super) fn resolve(&self, expr: &ast::Expr) -> ast::Expr {
        match plain(expr) {
            ast::Expr::Ident(ident) => ident
                .ident_token()
                .and_then(|t| self.lets.get(t.text()).cloned())
                .unwrap_or_else(|| expr.clone()),
            other => other,
        }
    }

    pub(super) fn read_type(&mut self, expr: &ast::Expr) -> TypeRead {
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
pub(super) fn not_data(expr: &ast::Expr, reason: &str) -> String {
    match call(expr).and_then(|(names, _)| lib_function(&names).map(str::to_owned)) {
        Some(f) if f.starts_with("literal") => {
            format!("`{f}` is Nix code for the documentation, not a value")
        }
        _ => reason.to_owned(),
    }
}
