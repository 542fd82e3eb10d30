//! The linter: templates hold typed helpers, block helpers, partials, comments and text, and nothing else.
//! Checked before rendering, at the template's line and column.

use std::path::Path;

use handlebars::template::{Parameter, Template, TemplateElement};

use super::TemplateError;
use super::helpers::VALUE_HELPERS;
use crate::position::Position;

/// Block helpers that only steer rendering and emit nothing themselves.
pub const BLOCK_HELPERS: [&str; 4] = ["if", "unless", "each", "with"];

/// Helpers usable inside a parameter (sub-expressions), e.g. `{{#if (eq a b)}}`.
pub const PARAMETER_HELPERS: [&str; 6] = ["eq", "ne", "and", "or", "not", "lookup"];

/// Rejects everything but typed helpers, block helpers, partials, comments and text (compiling `source` first: the
/// loader lints what its registry compiled instead, [`lint_compiled`]).
#[cfg(test)]
pub fn lint(file: &Path, source: &str) -> Result<(), TemplateError> {
    let template = Template::compile(source).map_err(|e| TemplateError {
        file: file.to_owned(),
        location: e.pos().map(Position::from),
        message: e.reason().to_string(),
    })?;
    lint_compiled(file, source, &template)
}

/// The linter's check of a template already compiled from `source` (as the registry compiled it: compiling is the costly
/// part of loading the templates, handlebars finding each element's line and column from the start of the text).
pub fn lint_compiled(file: &Path, source: &str, template: &Template) -> Result<(), TemplateError> {
    if let Some(offset) = source.find("{{{") {
        let p = Position::of_offset(source, offset);
        return Err(TemplateError {
            file: file.to_owned(),
            location: Some(p),
            message: "raw output `{{{ … }}}` is not allowed: emit values with a typed helper \
                      (nix-str, nix-value, nix-attr, nix-path, nix-source-path, nix-options)"
                .into(),
        });
    }
    lint_template(file, template)
}

fn lint_template(file: &Path, template: &Template) -> Result<(), TemplateError> {
    for (i, element) in template.elements.iter().enumerate() {
        let location = template.mapping.get(i).map(|m| Position::new(m.0, m.1));
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
        assert_eq!(raw.location, Some(Position::new(2, 7)), "{raw}");
        assert!(raw.message.contains("{{{"), "{raw}");
        let bare = lint_text("{\n  x = \"{{application.title}}\";\n}").unwrap_err();
        assert_eq!(bare.location, Some(Position::new(2, 8)), "{bare}");
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
}
