//! The typed helpers: the only way a value reaches a template's output. Each emits Nix (or, for `toml-value`,
//! a TOML value for the `#:` headers the VM test harness reads) through the emitter.

use handlebars::{
    Context, Handlebars, Helper, HelperDef, HelperResult, JsonTruthy, Output, PathAndJson,
    RenderContext, RenderError, RenderErrorReason, Renderable,
};
use serde_json::Value;

use crate::model::source::json_to_toml;
use crate::nix::print::{print_expr, print_expr_at};
use crate::nix::value::{DataPolicy, from_json};
use crate::nix::{Expr, SourcePath, lexical};

/// Helpers that emit Nix (and `toml-value`, a TOML value for the `#:` headers the VM test harness reads): the
/// only way a value reaches a template's output.
pub const VALUE_HELPERS: [&str; 8] = [
    "nix-str",
    "nix-value",
    "nix-attr",
    "nix-path",
    "nix-source-path",
    "nix-options",
    "toml-value",
    "py-name",
];

/// A handlebars registry as every template is rendered: strict mode (a missing value is an error), no HTML
/// escaping, no re-indented partials, and the typed helpers.
pub(crate) fn registry() -> Handlebars<'static> {
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    registry.register_escape_fn(handlebars::no_escape);
    registry.set_prevent_indent(true);
    for name in VALUE_HELPERS {
        registry.register_helper(name, Box::new(nix_helper));
    }
    // Handlebars' own `if` and `unless` take a name that names nothing as false, even in strict mode: a
    // misspelt `{{#if has_secret}}` would drop its block silently. These refuse it, as `each` and `with` do.
    registry.register_helper("if", Box::new(StrictCondition));
    registry.register_helper("unless", Box::new(StrictCondition));
    registry
}

/// `{{#if x}}` and `{{#unless x}}` in strict mode: `x` must name a value (which may be `null` or `false`).
/// Truth is handlebars' (empty strings, lists and objects, `0`, `false` and `null` are false).
struct StrictCondition;

impl HelperDef for StrictCondition {
    fn call<'reg: 'rc, 'rc>(
        &self,
        helper: &Helper<'rc>,
        registry: &'reg Handlebars<'reg>,
        context: &'rc Context,
        render: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let name = helper.name();
        let param = helper.param(0).ok_or_else(|| {
            RenderError::from(RenderErrorReason::Other(format!(
                "`{name}` needs one parameter, e.g. `{{{{#{name} needs.redis}}}}`"
            )))
        })?;
        if param.is_value_missing() {
            return Err(names_nothing(name, param));
        }
        let holds = param.value().is_truthy(false) == (name == "if");
        match if holds {
            helper.template()
        } else {
            helper.inverse()
        } {
            Some(block) => block.render(registry, context, render, out),
            None => Ok(()),
        }
    }
}

/// The error of a helper's parameter that names no value. Strict mode covers plain expressions, not helper
/// parameters: such a path would reach the helper as `null`. A missing value is an error, for every helper.
fn names_nothing(helper: &str, param: &PathAndJson<'_>) -> RenderError {
    let path = param
        .relative_path()
        .map_or_else(|| "its parameter".to_owned(), |p| format!("`{p}`"));
    RenderError::from(RenderErrorReason::Other(format!(
        "{helper}: {path} names no value (no such option, field or variable); check the name against the \
         manifest and the template's data (the comment at its top)"
    )))
}

/// A manifest value (a default or an example) as Nix data.
pub(crate) fn data(value: &Value) -> Result<Expr, String> {
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
        return Err(names_nothing(name, param));
    }
    let value = param.value();
    let text = match name {
        "nix-str" => match value {
            Value::String(s) => Expr::string(s)
                .map(|e| print_expr_at(&e, line_indent()))
                .map_err(|e| fail(e.to_string()))?,
            other => return Err(fail(format!("expects a string, got {other}"))),
        },
        "nix-path" => match value {
            Value::String(s) => Expr::runtime_path(s)
                .map(|e| print_expr(&e))
                .map_err(|e| fail(e.to_string()))?,
            other => return Err(fail(format!("expects an absolute path, got {other}"))),
        },
        // A file of the repository, relative to the rendered file: a path literal (`../../deployments/x.nix`),
        // which Nix resolves against the file's folder. Never for secrets (a path literal copies into the store).
        "nix-source-path" => match value {
            Value::String(s) => SourcePath::new(s)
                .map(|p| print_expr(&Expr::SourcePath(p)))
                .map_err(|e| fail(e.to_string()))?,
            other => return Err(fail(format!("expects a relative path, got {other}"))),
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
        "nix-value" => data(value)
            .map(|e| print_expr_at(&e, line_indent()))
            .map_err(fail)?,
        // A machine's name in a VM test script (a Python identifier the test driver defines): checked to be
        // one, so it cannot change the script around it. Values in scripts are JSON strings, never this.
        "py-name" => match value {
            Value::String(s) if is_python_name(s) => s.clone(),
            other => {
                return Err(fail(format!(
                    "expects a Python identifier (letters, digits, `_`, not a keyword), got {other}"
                )));
            }
        },
        "toml-value" => {
            // The model's conversion (the one JSON → TOML of the crate): numbers by their kind.
            let toml = json_to_toml(value).map_err(|e| match value {
                Value::Null => fail(e),
                _ => fail(format!("{e}, in {value}")),
            })?;
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

thread_local! {
    /// The indentation of the line being rendered on this thread ([`render_in_place`]): where a multi-line value
    /// a helper prints continues, so it is laid out as nixfmt lays it out in place.
    static LINE_INDENT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The indentation of the line a helper is printing into (0 outside [`render_in_place`]).
fn line_indent() -> usize {
    LINE_INDENT.with(std::cell::Cell::get)
}

/// Renders a registered template as `Handlebars::render` does, telling the helpers the indentation of the line
/// each prints into: a multi-line value (a list, a set, an indented string) is printed at that indentation, as
/// nixfmt would lay it out there, so the rendered text needs no nixfmt (issue #18; `tests/layout_fixpoint.rs`
/// and `tests/generate.rs` prove nixfmt leaves every rendered file unchanged).
pub(crate) fn render_in_place(
    registry: &Handlebars<'_>,
    name: &str,
    context: &Value,
) -> Result<String, RenderError> {
    /// The output, tracking the indentation of its last line.
    struct Tracking {
        text: Vec<u8>,
        /// Where the last line starts, and whether only spaces followed so far.
        line_start: usize,
        in_indent: bool,
    }
    impl std::io::Write for Tracking {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            for (i, &b) in bytes.iter().enumerate() {
                if b == b'\n' {
                    self.line_start = self.text.len() + i + 1;
                    self.in_indent = true;
                } else if b != b' ' && self.in_indent {
                    self.in_indent = false;
                    LINE_INDENT.with(|c| c.set(self.text.len() + i - self.line_start));
                }
            }
            if self.in_indent {
                LINE_INDENT.with(|c| c.set(self.text.len() + bytes.len() - self.line_start));
            }
            self.text.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    LINE_INDENT.with(|c| c.set(0));
    let mut out = Tracking {
        text: Vec::new(),
        line_start: 0,
        in_indent: true,
    };
    let result = registry.render_to_write(name, context, &mut out);
    LINE_INDENT.with(|c| c.set(0));
    result?;
    String::from_utf8(out.text)
        .map_err(|e| RenderError::from(RenderErrorReason::Other(e.to_string())))
}

/// Whether `name` is a Python identifier in ASCII and no keyword: what `py-name` may emit.
pub(crate) fn is_python_name(name: &str) -> bool {
    const KEYWORDS: [&str; 35] = [
        "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class",
        "continue", "def", "del", "elif", "else", "except", "finally", "for", "from", "global",
        "if", "import", "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return",
        "try", "while", "with", "yield",
    ];
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&name)
}

#[cfg(test)]
mod python_name_tests {
    use super::is_python_name;

    #[test]
    fn python_names_are_identifiers_and_no_keywords() {
        for good in ["server", "amstelland_mastodon", "_x", "a1"] {
            assert!(is_python_name(good), "{good}");
        }
        for bad in ["", "1a", "a-b", "with", "None", "a.b", "a(b)", "é"] {
            assert!(!is_python_name(bad), "{bad}");
        }
    }
}
