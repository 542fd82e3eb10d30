//! From declarations to a manifest draft: the shared prefix (`upstream`), names flattened to identifiers,
//! `enable` and `subdomain` as the application's title and subdomain, secrets, and name clashes.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::names::{flatten_name, show_path, title_case};
use super::read::{Declaration, Kind, Reader};
use super::{Finding, ImportedOption, ImportedSecret, Severity};
use crate::manifest::OptionType;
use crate::model::shape::secret_names::is_secret_like;
use crate::position::Position;

/// The option path shared by the top-level declarations' parents (the service, e.g. `services.foo`).
pub(super) fn shared_prefix(declarations: &[Declaration]) -> Vec<String> {
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

/// Whether values of the type are (or hold) free strings, which a secret-like name makes unusable.
pub(super) fn holds_strings(ty: &OptionType) -> bool {
    match ty {
        OptionType::Str { .. } | OptionType::Email => true,
        OptionType::List(inner) | OptionType::Attrs(inner) => holds_strings(inner),
        _ => false,
    }
}

/// The application's identity as the skeleton states it.
#[derive(Debug, Clone, Default)]
pub(super) struct ApplicationText {
    pub(super) title: String,
    pub(super) subdomain: String,
    pub(super) title_from_module: bool,
}

/// An import before its manifest is rendered and checked.
pub(super) struct Draft {
    pub(super) file: String,
    pub(super) name: String,
    pub(super) upstream: String,
    pub(super) options: BTreeMap<String, ImportedOption>,
    pub(super) secrets: BTreeMap<String, ImportedSecret>,
    pub(super) skipped: Vec<(String, Position, String)>,
    pub(super) findings: Vec<Finding>,
    pub(super) declared: Vec<Vec<String>>,
    pub(super) application: ApplicationText,
}

pub(super) fn assemble(
    file: &str,
    name: String,
    upstream: Vec<String>,
    reader: Reader<'_>,
) -> Draft {
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
                if is_secret_like(&flatten_name(relative)) && holds_strings(&option.ty) =>
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
                        } else if secret.optional {
                            "provided by the operator, optional: upstream's default is `null`"
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
pub(super) fn insert_option(
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
