//! Application templates: `templates/<app>/module.nix.hbs` and the shared partials in `templates/_partials/`,
//! rendered with handlebars into Nix.
//!
//! Templates must not be an escape hatch for data to become code (DESIGN.md, rule 10). So: strict mode (a
//! missing value is an error, not an empty string), no HTML escaping, and values reach the output only through
//! typed helpers that emit Nix with the emitter — `nix-str`, `nix-value`, `nix-attr`, `nix-path`,
//! `nix-options`. A linter rejects everything else before rendering: triple-stash `{{{ }}}`, a bare `{{name}}`,
//! unknown helpers and decorators, each with the template's file, line and column. The rendered text is laid out
//! by nixfmt and parsed by rnix before it is returned.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use handlebars::template::{Parameter, Template, TemplateElement};
use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderError,
    RenderErrorReason,
};
use serde_json::{Value, json};

use crate::manifest::Manifest;
use crate::nix::print::print_expr;
use crate::nix::value::{DataPolicy, from_json};
use crate::nix::{AttrName, AttrPath, Entry, Expr, lexical, verify};

/// Helpers that emit Nix (and `toml-value`, a TOML value for the `#:` headers the VM test harness reads): the
/// only way a value reaches a template's output.
pub const VALUE_HELPERS: [&str; 6] = [
    "nix-str",
    "nix-value",
    "nix-attr",
    "nix-path",
    "nix-options",
    "toml-value",
];

/// Block helpers that only steer rendering and emit nothing themselves.
pub const BLOCK_HELPERS: [&str; 4] = ["if", "unless", "each", "with"];

/// Helpers usable inside a parameter (sub-expressions), e.g. `{{#if (eq a b)}}`.
pub const PARAMETER_HELPERS: [&str; 6] = ["eq", "ne", "and", "or", "not", "lookup"];

/// A problem in a template, located in the template file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
pub struct TemplateError {
    /// The template file.
    pub file: PathBuf,
    /// Line and column (1-based), when known.
    pub location: Option<(usize, usize)>,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A loaded set of templates: every application's `module.nix.hbs` and the shared partials, linted.
pub struct Templates {
    registry: Handlebars<'static>,
    /// Template name (`mastodon`) → its file, for errors and generated-file markers.
    files: BTreeMap<String, PathBuf>,
    /// Every registered template and partial by its registry name: its file and source, to map a position in
    /// rendered text back to the template line it came from ([`Templates::syntax_error`]).
    sources: BTreeMap<String, (PathBuf, String)>,
}

impl Templates {
    /// Loads `templates/_partials/*.nix.hbs` as partials (named by file stem) and each application's
    /// `templates/<app>/module.nix.hbs`, linting every one. Paths in errors and markers are relative to `root`.
    pub fn load(root: &Path, manifests: &[Manifest]) -> Result<Self, TemplateError> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        registry.set_prevent_indent(true);
        for name in VALUE_HELPERS {
            registry.register_helper(name, Box::new(nix_helper));
        }
        let mut files = BTreeMap::new();
        let mut sources = BTreeMap::new();
        let partials = root.join("templates/_partials");
        if let Ok(entries) = std::fs::read_dir(&partials) {
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            paths.sort();
            for path in paths {
                let Some(name) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".nix.hbs"))
                else {
                    continue;
                };
                let name = name.to_owned();
                let relative = relative(root, &path);
                let source = read(&path, &relative)?;
                lint(&relative, &source)?;
                registry
                    .register_partial(&name, &source)
                    .map_err(|e| handlebars_error(&relative, &e))?;
                sources.insert(name, (relative, source));
            }
        }
        for manifest in manifests {
            let app = &manifest.application.name;
            let path = root.join("templates").join(app).join("module.nix.hbs");
            let relative = relative(root, &path);
            let source = read(&path, &relative)?;
            lint(&relative, &source)?;
            registry
                .register_template_string(app, &source)
                .map_err(|e| handlebars_error(&relative, &e))?;
            files.insert(app.clone(), relative.clone());
            sources.insert(app.clone(), (relative, source));
        }
        Ok(Self {
            registry,
            files,
            sources,
        })
    }

    /// The template file of an application, relative to the repository (for markers and errors).
    pub fn file(&self, app: &str) -> Option<&Path> {
        self.files.get(app).map(PathBuf::as_path)
    }

    /// Renders an application's module with `settings` overriding the manifest's defaults (for `template
    /// check`; generation passes none), then lays it out with nixfmt and parses it. The result has no marker.
    pub fn render_module(
        &self,
        manifest: &Manifest,
        settings: Option<&Value>,
    ) -> Result<String, TemplateError> {
        let app = &manifest.application.name;
        let file = self
            .files
            .get(app)
            .cloned()
            .unwrap_or_else(|| PathBuf::from(app));
        let context = module_context(manifest, settings);
        self.render_checked(app, &file, &context)
    }

    /// Renders a registered template, then lays it out and parses it. A syntax error in the rendered text is
    /// reported at the template's own line and column, with the template lines around it.
    fn render_checked(
        &self,
        name: &str,
        file: &Path,
        context: &Value,
    ) -> Result<String, TemplateError> {
        let text = self
            .registry
            .render(name, context)
            .map_err(|e| render_error(file, &e))?;
        match std::panic::catch_unwind(|| nixfmt_rs::format(&text)) {
            Ok(Ok(formatted)) => finish_layout(file, &text, formatted),
            Ok(Err(e)) => Err(self.syntax_error(name, file, context, &text, &e)),
            Err(_) => canonical(file, &text),
        }
    }

    /// A syntax error of rendered text, mapped back to the template: the file (the template or a partial),
    /// the line and column there, the parser's message and help, and the template lines around it.
    fn syntax_error(
        &self,
        name: &str,
        file: &Path,
        context: &Value,
        text: &str,
        error: &nixfmt_rs::ParseError,
    ) -> TemplateError {
        let report = nixfmt_rs::format_error(text, Some("<rendered>"), error);
        let rendered = report.split("<rendered>:").nth(1).and_then(|rest| {
            let mut numbers = rest.splitn(3, |c: char| !c.is_ascii_digit());
            let line = numbers.next()?.parse::<usize>().ok()?;
            let column = numbers.next()?.parse::<usize>().ok()?;
            Some((line, column))
        });
        let mut message = format!(
            "the rendered template is not valid Nix: {}",
            error.message()
        );
        let help = error
            .help()
            .map(|h| format!("\n  help: {h}"))
            .unwrap_or_default();
        let mapped = rendered.and_then(|(line, column)| {
            let (file, template_line) = self.map_line(name, context, text, line)?;
            let source = self
                .sources
                .values()
                .find(|(f, _)| *f == file)
                .map(|(_, s)| s.as_str())?;
            let rendered_line = text.lines().nth(line - 1).unwrap_or_default();
            let template_text = source.lines().nth(template_line - 1).unwrap_or_default();
            let column = map_column(rendered_line, template_text, column);
            Some((file, template_line, column, source))
        });
        match mapped {
            Some((file, line, column, source)) => {
                message.push_str(&snippet(source, line, column));
                message.push_str(&help);
                TemplateError {
                    file,
                    location: Some((line, column)),
                    message,
                }
            }
            None => {
                if let Some((line, column)) = rendered {
                    message.push_str(&format!(
                        " (at line {line}, column {column} of the rendered text){}",
                        snippet(text, line, column)
                    ));
                }
                message.push_str(&help);
                TemplateError {
                    file: file.to_owned(),
                    location: None,
                    message,
                }
            }
        }
    }

    /// The template file and line that rendered line `line` of `text` comes from: the template and its partials
    /// are rendered again with a marker before each line break of their raw text, so every rendered line ends
    /// at a marker naming its template line (a line broken by a helper's output belongs to the template line
    /// holding the helper, whose marker follows). `None` when the marked rendering differs from `text` once
    /// the markers are removed.
    fn map_line(
        &self,
        name: &str,
        context: &Value,
        text: &str,
        line: usize,
    ) -> Option<(PathBuf, usize)> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        registry.set_prevent_indent(true);
        for helper in VALUE_HELPERS {
            registry.register_helper(helper, Box::new(nix_helper));
        }
        let files: Vec<&PathBuf> = self.sources.values().map(|(f, _)| f).collect();
        for (id, (registered, (_, source))) in self.sources.iter().enumerate() {
            let marked = mark_lines(source, id);
            let partial = !self.files.contains_key(registered) && !registered.ends_with(".nix.hbs");
            if partial {
                registry.register_partial(registered, marked).ok()?;
            } else {
                registry.register_template_string(registered, marked).ok()?;
            }
        }
        let marked = registry.render(name, context).ok()?;
        if strip_markers(&marked) != text {
            return None;
        }
        let start: usize = marked
            .split_inclusive('\n')
            .take(line - 1)
            .map(str::len)
            .sum();
        let rest = &marked[start..];
        let at = rest.find(MARK_OPEN)?;
        let inner = &rest[at + MARK_OPEN.len_utf8()..];
        let (id, template_line) = inner[..inner.find(MARK_CLOSE)?].split_once(':')?;
        let file = files.get(id.parse::<usize>().ok()?)?;
        Some(((*file).clone(), template_line.parse().ok()?))
    }
}

/// The template of the per-application VM tests, relative to the repository.
pub const APPLICATION_TEST: &str = "templates/_tests/application.nix.hbs";

/// The template of the per-operator deployment VM tests, relative to the repository.
pub const DEPLOYMENT_TEST: &str = "templates/_tests/deployment.nix.hbs";

/// The template of what the VM tests share (`vm-tests/generated/lib/common.nix`), relative to the repository.
pub const COMMON_TEST: &str = "templates/_tests/common.nix.hbs";

impl Templates {
    /// Loads the VM test templates (linted like every template): one per application, one per deployment.
    pub fn load_tests(&mut self, root: &Path) -> Result<(), TemplateError> {
        for file in [APPLICATION_TEST, DEPLOYMENT_TEST, COMMON_TEST] {
            let relative = PathBuf::from(file);
            let source = read(&root.join(&relative), &relative)?;
            lint(&relative, &source)?;
            self.registry
                .register_template_string(file, &source)
                .map_err(|e| handlebars_error(&relative, &e))?;
            self.sources.insert(file.to_owned(), (relative, source));
        }
        Ok(())
    }

    /// Renders the NixOS VM test of one application from its manifest's health checks and admin action.
    pub fn render_application_test(&self, manifest: &Manifest) -> Result<String, TemplateError> {
        self.render_test(APPLICATION_TEST, &test_context(manifest))
    }

    /// Renders the VM test of one operator's deployment from its context (see [`crate::deploy::test_context`]).
    pub fn render_deployment_test(&self, context: &Value) -> Result<String, TemplateError> {
        self.render_test(DEPLOYMENT_TEST, context)
    }

    /// Renders what the VM tests share: the certificate and test-node helpers they import.
    pub fn render_common_test(&self) -> Result<String, TemplateError> {
        self.render_test(COMMON_TEST, &Value::Null)
    }

    /// Renders a VM test template (registered under its file name) and lays the result out.
    fn render_test(&self, file: &str, context: &Value) -> Result<String, TemplateError> {
        self.render_checked(file, &PathBuf::from(file), context)
    }
}

/// Quotes a string for a POSIX shell: single quotes, with `'` written as `'\''`.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// A manifest's health checks for a VM test: units, ports, and HTTP checks as shell commands. A remote check is
/// completed in Nix by `curl … https://<host>` before `remote_suffix`; a local one (an admin port) is complete.
pub fn health_context(manifest: &Manifest) -> Value {
    let http: Vec<Value> = manifest
        .health
        .http
        .iter()
        .map(|check| {
            let expectation = format!(
                ")\" = {}{}",
                check.status,
                check
                    .contains
                    .as_ref()
                    .map(|c| format!(" && grep -F -- {} /tmp/body", shell_quote(c)))
                    .unwrap_or_default()
            );
            json!({
                "port": check.port,
                "remote_suffix": format!("{}{expectation}", shell_quote(&check.path)),
                "local_command": check.port.map(|port| format!(
                    "test \"$(curl --silent --output /tmp/body --write-out '%{{http_code}}' http://127.0.0.1:{port}{}{expectation}",
                    shell_quote(&check.path)
                )),
            })
        })
        .collect();
    json!({
        "units": manifest.health.units,
        "tcp_ports": manifest.health.tcp_ports,
        "http": http,
    })
}

/// The VM test's view of a manifest: the module's context plus health checks as shell commands.
fn test_context(manifest: &Manifest) -> Value {
    let mut context = module_context(manifest, None);
    let app = &manifest.application.name;
    let secrets: serde_json::Map<String, Value> = manifest
        .secrets
        .iter()
        .map(|(name, secret)| {
            (
                name.clone(),
                json!({
                    "option": format!("{name}File"),
                    "test_path": format!("/etc/fedigen-test/{name}"),
                    "etc_name": format!("fedigen-test/{name}"),
                    "test_value": secret.test_value.clone().unwrap_or_else(|| format!("fedigen-test-{name}")),
                }),
            )
        })
        .collect();
    context["test_name"] = json!(format!("fedigen-{app}"));
    context["description"] = json!(format!(
        "{}: its health checks{} on a VM with the generated module",
        manifest.application.title,
        if manifest.admin_action.is_some() {
            " and an admin action"
        } else {
            ""
        }
    ));
    context["resources"]["disk_mib"] = json!(u64::from(manifest.resources.disk_gib) * 1024);
    context["https"] = json!(manifest.ports.iter().any(|p| p.port == 443));
    context["has_secrets"] = json!(!secrets.is_empty());
    context["secrets"] = Value::Object(secrets);
    context["health"] = health_context(manifest);
    context["admin_action"] = match &manifest.admin_action {
        Some(action) => json!({
            "description": action.description,
            "command": action.command,
            "expect": action.expect,
        }),
        None => Value::Null,
    };
    context
}

/// Lays rendered text out with nixfmt and parses it with rnix; errors point into the rendered text.
pub fn canonical(file: &Path, text: &str) -> Result<String, TemplateError> {
    let name = file.display().to_string();
    let to_error = |e: verify::VerifyError| TemplateError {
        file: file.to_owned(),
        location: None,
        message: format!("the rendered template is not valid Nix: {e}\n--- rendered text:\n{text}"),
    };
    let formatted = verify::nixfmt(&name, text).map_err(to_error)?;
    finish_layout(file, text, formatted)
}

/// The rest of [`canonical`] once nixfmt has laid `text` out once: nixfmt to a fixpoint, then rnix.
fn finish_layout(file: &Path, text: &str, formatted: String) -> Result<String, TemplateError> {
    let name = file.display().to_string();
    let to_error = |e: verify::VerifyError| TemplateError {
        file: file.to_owned(),
        location: None,
        message: format!("the rendered template is not valid Nix: {e}\n--- rendered text:\n{text}"),
    };
    let mut formatted = formatted;
    for _ in 0..3 {
        let again = verify::nixfmt(&name, &formatted).map_err(to_error)?;
        if again == formatted {
            break;
        }
        formatted = again;
    }
    verify::check_syntax(&name, &formatted).map_err(to_error)?;
    Ok(formatted)
}

/// The markers around `<template id>:<line>` in a marked rendering (Unicode private use characters, which
/// templates do not hold).
const MARK_OPEN: char = '\u{F8F0}';
const MARK_CLOSE: char = '\u{F8F1}';

/// `source` with a marker naming the line before each line break of raw text (not inside `{{ … }}`), except
/// on lines holding only whitespace and standalone tags (blocks, partials, comments), which handlebars removes
/// whole and which a marker would keep.
fn mark_lines(source: &str, id: usize) -> String {
    let mut out = String::with_capacity(source.len() * 2);
    let mut line = 1;
    let mut rest = source;
    let mut in_tag: Option<&str> = None;
    // Whether the current line so far is only whitespace and standalone tags.
    let mut standalone = true;
    while let Some(c) = rest.chars().next() {
        if let Some(close) = in_tag {
            if rest.starts_with(close) {
                out.push_str(close);
                rest = &rest[close.len()..];
                in_tag = None;
                continue;
            }
        } else if rest.starts_with("{{") {
            let body = rest[2..].trim_start_matches('~');
            let (close, kind_standalone) = if body.starts_with("!--") {
                ("--}}", true)
            } else {
                (
                    "}}",
                    body.starts_with(['#', '/', '^', '>', '!']) || body.starts_with("else"),
                )
            };
            standalone &= kind_standalone;
            in_tag = Some(close);
            out.push_str("{{");
            rest = &rest[2..];
            continue;
        } else if c == '\n' {
            if !standalone {
                out.push(MARK_OPEN);
                out.push_str(&format!("{id}:{line}"));
                out.push(MARK_CLOSE);
            }
            standalone = true;
        } else if !c.is_whitespace() {
            standalone = false;
        }
        if c == '\n' {
            line += 1;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A marked rendering without its markers.
fn strip_markers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for c in text.chars() {
        match c {
            MARK_OPEN => inside = true,
            MARK_CLOSE => inside = false,
            _ if !inside => out.push(c),
            _ => {}
        }
    }
    out
}

/// The column in the template line of a position in the rendered line: the same column while the rendered
/// line matches the template's raw text up to it; otherwise where the text at the position appears in the
/// template line (once); otherwise, when the raw text before the line's first `{{` is rendered unchanged, that
/// tag (whose output holds the position); otherwise the line's first non-blank column.
fn map_column(rendered: &str, template: &str, column: usize) -> usize {
    let before: String = rendered.chars().take(column - 1).collect();
    if template.starts_with(&before) && !before.contains("{{") {
        return column;
    }
    let first_tag = template.find("{{");
    let token: String = rendered
        .chars()
        .skip(column - 1)
        .take_while(|c| !c.is_whitespace())
        .collect();
    if !token.is_empty() && template.matches(token.as_str()).count() == 1 {
        let at = template.find(token.as_str()).unwrap_or(0);
        return template[..at].chars().count() + 1;
    }
    if let Some(tag) = first_tag
        && before.starts_with(&template[..tag])
    {
        return template[..tag].chars().count() + 1;
    }
    template.chars().take_while(|c| c.is_whitespace()).count() + 1
}

/// The lines around `line` of `text` (two before, one after) with a caret under `column`, like a compiler.
fn snippet(text: &str, line: usize, column: usize) -> String {
    let first = line.saturating_sub(2).max(1);
    let last = line + 1;
    let width = last.to_string().len();
    let mut out = String::new();
    for (i, content) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
        if i < first || i > last {
            continue;
        }
        out.push_str(&format!("\n  {i:>width$} | {content}"));
        if i == line {
            let pad: String = content
                .chars()
                .take(column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("\n  {:>width$} | {pad}^", ""));
        }
    }
    out
}

/// The data a module template sees: the manifest, with each option's Nix type and default already emitted.
fn module_context(manifest: &Manifest, settings: Option<&Value>) -> Value {
    let options: serde_json::Map<String, Value> = manifest
        .options
        .iter()
        .map(|(name, spec)| {
            let value = settings
                .and_then(|s| s.get(name))
                .or(spec.default.as_ref())
                .cloned()
                .unwrap_or(Value::Null);
            (
                name.clone(),
                json!({
                    "description": spec.description,
                    "default": spec.default,
                    "value": value,
                    "type": spec.ty.to_string(),
                }),
            )
        })
        .collect();
    let secrets: serde_json::Map<String, Value> = manifest
        .secrets
        .iter()
        .map(|(name, s)| {
            (
                name.clone(),
                json!({ "description": s.description, "option": format!("{name}File") }),
            )
        })
        .collect();
    json!({
        "application": {
            "name": manifest.application.name,
            "title": manifest.application.title,
            "description": manifest.application.description,
            "upstream": manifest.application.upstream,
            "subdomain": manifest.application.subdomain,
        },
        "options": options,
        "secrets": secrets,
        "needs": {
            "postgresql": manifest.needs.postgresql,
            "redis": manifest.needs.redis,
            "smtp": manifest.needs.smtp,
            "s3_buckets": manifest.needs.s3_buckets,
        },
        "ports": manifest.ports.iter().map(|p| (p.name.clone(), json!(p.port))).collect::<serde_json::Map<_, _>>(),
        "resources": {
            "cores": manifest.resources.cores,
            "memory_mib": manifest.resources.memory_mib,
            "disk_gib": manifest.resources.disk_gib,
        },
        "__manifest_options": manifest_options_value(manifest),
    })
}

/// The manifest's option declarations, carried in the context for `{{nix-options}}` as already-emitted Nix.
fn manifest_options_value(manifest: &Manifest) -> Value {
    match option_declarations(manifest) {
        Ok(expr) => Value::String(print_expr(&expr)),
        Err(e) => json!({ "error": e }),
    }
}

/// The options every generated module declares itself, before the manifest's own: a manifest option cannot
/// take these names.
pub const FIXED_OPTIONS: [&str; 2] = ["enable", "subdomain"];

/// `{ enable = lib.mkEnableOption "…"; subdomain = lib.mkOption { … }; <opt> = lib.mkOption { … }; <secret>File
/// = lib.mkOption { … }; }` for an application, from its manifest.
pub fn option_declarations(manifest: &Manifest) -> Result<Expr, String> {
    let e = |r: Result<Expr, lexical::LexicalError>| r.map_err(|e| e.to_string());
    let name = |n: &str| {
        AttrName::new(n)
            .map_err(|e| e.to_string())
            .map(AttrPath::from)
    };
    let field = |n: &str, v: Expr| -> Result<Entry, String> { Ok(Entry::binding(name(n)?, v)) };
    let [enable, subdomain] = FIXED_OPTIONS;
    let mut entries = vec![field(
        enable,
        Expr::apply(
            e(Expr::reference("lib.mkEnableOption"))?,
            vec![e(Expr::string(&manifest.application.title))?],
        ),
    )?];
    entries.push(field(
        subdomain,
        e(Expr::mk_option(
            e(Expr::reference("lib.types.str"))?,
            Some(e(Expr::string(&manifest.application.subdomain))?),
            None,
            &format!(
                "The host name of {} under `fediversity.domain`.",
                manifest.application.title
            ),
        ))?,
    )?);
    for (option, spec) in &manifest.options {
        let default = spec.default.as_ref().map(data).transpose()?;
        let example = spec.example.as_ref().map(data).transpose()?;
        let ty = spec.ty.nix_type().map_err(|e| e.to_string())?;
        entries.push(field(
            option,
            e(Expr::mk_option(ty, default, example, &spec.description))?,
        )?);
    }
    for (secret, spec) in &manifest.secrets {
        let source = match spec.source {
            crate::manifest::SecretSource::Generated => " Generated on the machine when absent.",
            crate::manifest::SecretSource::Provided => "",
        };
        let optional = if spec.optional {
            " Optional: `null` when the application runs without it."
        } else {
            ""
        };
        let description = format!(
            "Path on the machine of the file holding {}; never a store path, so the secret stays out of the \
             world-readable Nix store.{source}{optional}",
            spec.description
        );
        let str_type = e(Expr::reference("lib.types.str"))?;
        let (ty, default) = if spec.optional {
            (
                Expr::apply(e(Expr::reference("lib.types.nullOr"))?, vec![str_type]),
                Some(Expr::Null),
            )
        } else {
            (str_type, None)
        };
        entries.push(field(
            &format!("{secret}File"),
            e(Expr::mk_option(ty, default, None, &description))?,
        )?);
    }
    Ok(Expr::attrs(entries))
}

/// A manifest value (a default or an example) as Nix data.
fn data(value: &Value) -> Result<Expr, String> {
    from_json(value, DataPolicy::default()).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// The one helper function behind all `nix-*` helpers: each turns its parameter into Nix text.
fn nix_helper(
    helper: &Helper<'_>,
    _: &Handlebars<'_>,
    context: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let name = helper.name();
    let fail =
        |message: String| RenderError::from(RenderErrorReason::Other(format!("{name}: {message}")));
    if name == "nix-options" {
        return match context.data().get("__manifest_options") {
            Some(Value::String(text)) => out.write(text).map_err(RenderError::from),
            other => Err(fail(format!(
                "the manifest's options cannot be emitted: {}",
                other.map_or_else(|| "nothing".to_owned(), |v| v.to_string())
            ))),
        };
    }
    let param = helper
        .param(0)
        .ok_or_else(|| fail("needs one parameter, e.g. `{{nix-str application.title}}`".into()))?;
    // Strict mode covers plain expressions, not helper parameters: a path that names nothing would reach the
    // helper as `null` and be emitted as `null`. A missing value is an error, for every typed helper.
    if param.is_value_missing() {
        let path = param
            .relative_path()
            .map_or_else(|| "its parameter".to_owned(), |p| format!("`{p}`"));
        return Err(fail(format!(
            "{path} names no value (no such option, field or variable); check the name against the manifest"
        )));
    }
    let value = param.value();
    let text = match name {
        "nix-str" => match value {
            Value::String(s) => Expr::string(s)
                .map(|e| print_expr(&e))
                .map_err(|e| fail(e.to_string()))?,
            other => return Err(fail(format!("expects a string, got {other}"))),
        },
        "nix-path" => match value {
            Value::String(s) => Expr::runtime_path(s)
                .map(|e| print_expr(&e))
                .map_err(|e| fail(e.to_string()))?,
            other => return Err(fail(format!("expects an absolute path, got {other}"))),
        },
        "nix-attr" => match value {
            Value::String(s) => {
                let mut text = String::new();
                lexical::check_string_content(s).map_err(|e| fail(e.to_string()))?;
                lexical::write_attr_name(&mut text, s);
                text
            }
            other => return Err(fail(format!("expects an attribute name, got {other}"))),
        },
        "nix-value" => data(value).map(|e| print_expr(&e)).map_err(fail)?,
        "toml-value" => {
            let toml =
                json_to_toml(value).ok_or_else(|| fail(format!("{value} has no TOML form")))?;
            let text = toml.to_string();
            if text.contains('\n') {
                return Err(fail(format!(
                    "{} does not fit on one header line",
                    serde_json::to_string(&text).unwrap_or_default()
                )));
            }
            text
        }
        _ => return Err(fail("unknown helper".into())),
    };
    out.write(&text).map_err(RenderError::from)
}

/// A JSON value as TOML (numbers by their kind: serde_json keeps number text, so serde's own conversion would not
/// see them as numbers). `null` has no TOML form.
fn json_to_toml(value: &Value) -> Option<toml::Value> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(items) => {
            toml::Value::Array(items.iter().map(json_to_toml).collect::<Option<_>>()?)
        }
        Value::Object(map) => toml::Value::Table(
            map.iter()
                .map(|(k, v)| Some((k.clone(), json_to_toml(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

/// Rejects everything but typed helpers, block helpers, partials, comments and text.
pub fn lint(file: &Path, source: &str) -> Result<(), TemplateError> {
    let template = Template::compile(source).map_err(|e| TemplateError {
        file: file.to_owned(),
        location: e.pos(),
        message: e.reason().to_string(),
    })?;
    if let Some(offset) = source.find("{{{") {
        let p = verify::Position::of_offset(source, offset);
        return Err(TemplateError {
            file: file.to_owned(),
            location: Some((p.line, p.column)),
            message: "raw output `{{{ … }}}` is not allowed: emit values with a typed helper \
                      (nix-str, nix-value, nix-attr, nix-path, nix-options)"
                .into(),
        });
    }
    lint_template(file, &template)
}

fn lint_template(file: &Path, template: &Template) -> Result<(), TemplateError> {
    for (i, element) in template.elements.iter().enumerate() {
        let location = template.mapping.get(i).map(|m| (m.0, m.1));
        let error = |message: String| TemplateError {
            file: file.to_owned(),
            location,
            message,
        };
        match element {
            TemplateElement::RawString(_) | TemplateElement::Comment(_) => {}
            TemplateElement::PartialExpression(_) | TemplateElement::PartialBlock(_) => {}
            TemplateElement::HtmlExpression(_) => {
                return Err(error(
                    "raw output `{{{ … }}}` is not allowed: use a typed helper".into(),
                ));
            }
            TemplateElement::Expression(helper) => {
                let name = helper_name(&helper.name);
                if !VALUE_HELPERS.contains(&name.as_str()) {
                    return Err(error(format!(
                        "`{{{{{name}}}}}` would insert text unchecked; emit values with a typed helper: \
                         {{{{nix-str {name}}}}}, {{{{nix-value {name}}}}}, {{{{nix-attr {name}}}}} or {{{{nix-path {name}}}}}"
                    )));
                }
                lint_parameters(&helper.params).map_err(error)?;
            }
            TemplateElement::HelperBlock(helper) => {
                let name = helper_name(&helper.name);
                if !BLOCK_HELPERS.contains(&name.as_str()) {
                    return Err(error(format!(
                        "block helper `{name}` is not allowed; use one of {}",
                        BLOCK_HELPERS.join(", ")
                    )));
                }
                lint_parameters(&helper.params).map_err(error)?;
                for inner in [&helper.template, &helper.inverse].into_iter().flatten() {
                    lint_template(file, inner)?;
                }
            }
            _ => return Err(error("decorators are not allowed in templates".into())),
        }
    }
    Ok(())
}

fn lint_parameters(params: &[Parameter]) -> Result<(), String> {
    for param in params {
        if let Parameter::Subexpression(sub) = param {
            let name = sub.name();
            if !PARAMETER_HELPERS.contains(&name) {
                return Err(format!(
                    "helper `{name}` is not allowed inside a parameter; use one of {}",
                    PARAMETER_HELPERS.join(", ")
                ));
            }
            if let Some(params) = sub.params() {
                lint_parameters(params)?;
            }
        }
    }
    Ok(())
}

fn helper_name(name: &Parameter) -> String {
    match name {
        Parameter::Name(n) => n.clone(),
        Parameter::Path(
            handlebars::Path::Relative((_, raw)) | handlebars::Path::Local((_, _, raw)),
        ) => raw.clone(),
        Parameter::Literal(l) => l.to_string(),
        Parameter::Subexpression(s) => s.name().to_owned(),
        // Handlebars has no other parameter kind today; a future one gets a plain name, not Rust's debug text.
        _ => "(an expression)".to_owned(),
    }
}

fn relative(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_owned()
}

fn read(path: &Path, relative: &Path) -> Result<String, TemplateError> {
    std::fs::read_to_string(path).map_err(|e| TemplateError {
        file: relative.to_owned(),
        location: None,
        message: e.to_string(),
    })
}

fn handlebars_error(file: &Path, e: &handlebars::TemplateError) -> TemplateError {
    TemplateError {
        file: file.to_owned(),
        location: e.pos(),
        message: e.reason().to_string(),
    }
}

fn render_error(file: &Path, e: &RenderError) -> TemplateError {
    let template = e.template_name.clone();
    let file = match &template {
        // Application templates are named after their folder, VM test templates after their file; any other
        // name is a partial's.
        Some(name)
            if Path::new(name) != file
                && !file.ends_with(format!("{name}.nix.hbs"))
                && file.iter().all(|c| c != name.as_str()) =>
        {
            PathBuf::from(format!("templates/_partials/{name}.nix.hbs"))
        }
        _ => file.to_owned(),
    };
    TemplateError {
        file,
        location: e.line_no.zip(e.column_no),
        message: e.reason().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lint_text(source: &str) -> Result<(), TemplateError> {
        lint(Path::new("templates/demo/module.nix.hbs"), source)
    }

    #[test]
    fn typed_helpers_blocks_and_partials_pass() {
        lint_text("{ x = {{nix-str application.title}}; {{#if needs.redis}}y = {{nix-value options}};{{/if}} {{> nginx-vhost}} }")
            .unwrap();
        lint_text("{{#each options}}{{nix-attr @key}} = {{nix-value this.value}};{{/each}}")
            .unwrap();
        lint_text("{{#if (eq application.name \"x\")}}a{{/if}}").unwrap();
    }

    #[test]
    fn escape_hatches_are_rejected_with_their_position() {
        let raw = lint_text("{\n  x = {{{application.title}}};\n}").unwrap_err();
        assert_eq!(raw.location, Some((2, 7)), "{raw}");
        assert!(raw.message.contains("{{{"), "{raw}");
        let bare = lint_text("{\n  x = \"{{application.title}}\";\n}").unwrap_err();
        assert_eq!(bare.location, Some((2, 8)), "{bare}");
        assert!(
            bare.message.contains("{{nix-str application.title}}"),
            "{bare}"
        );
        let unknown = lint_text("{{#raw}}x{{/raw}}").unwrap_err();
        assert!(
            unknown
                .message
                .contains("block helper `raw` is not allowed"),
            "{unknown}"
        );
        let nested = lint_text("{{#if x}}{{y}}{{/if}}").unwrap_err();
        assert!(nested.message.contains("`{{y}}`"), "{nested}");
        let sub = lint_text("{{nix-str (concat a b)}}").unwrap_err();
        assert!(sub.message.contains("`concat` is not allowed"), "{sub}");
    }

    #[test]
    fn marks_name_raw_lines_and_leave_standalone_tags_alone() {
        let source =
            "{\n{{#if x}}\n  a = {{nix-value y}};\n{{/if}}\n  {{! note\n  more }}\n  b = 1;\n}\n";
        let marked = mark_lines(source, 7);
        let mark = |line: usize| format!("{MARK_OPEN}7:{line}{MARK_CLOSE}");
        assert_eq!(
            marked,
            format!(
                "{{{}\n{{{{#if x}}}}\n  a = {{{{nix-value y}}}};{}\n{{{{/if}}}}\n  {{{{! note\n  more }}}}\n  b = 1;{}\n}}{}\n",
                mark(1),
                mark(3),
                mark(7),
                mark(8)
            )
        );
        assert_eq!(strip_markers(&marked), source);
    }

    #[test]
    fn columns_map_through_raw_text_and_helper_output() {
        assert_eq!(map_column("  a = true", "  a = true", 7), 7);
        assert_eq!(
            map_column("  a = \"long value\" b", "  a = {{nix-str x}} b", 20),
            21,
            "found by the text at the position"
        );
        assert_eq!(
            map_column("  a = \"x\" b c", "  a = {{nix-str x}} q", 9),
            7,
            "otherwise the tag whose output holds it"
        );
        assert_eq!(
            map_column("  b = \"x\" b c", "  a = {{nix-str x}} q", 9),
            3,
            "otherwise the line's first column"
        );
        assert_eq!(
            snippet("a\nb\nc\nd\n", 3, 2),
            "\n  1 | a\n  2 | b\n  3 | c\n    |  ^\n  4 | d"
        );
    }
}
