//! The checker: it walks a document along the structure tree ([`super::tree`]) and collects every problem, each
//! with its field path: unknown fields (with a "did you mean"), missing ones, types, string formats, integer
//! ranges, secret references (a literal where a reference belongs is refused with how to reference it), and each
//! application's settings and secrets against its manifest. What needs the whole model (uniqueness, collisions,
//! limits, references between parts) is in [`crate::model::check`].

use serde_json::{Map, Value};

use super::format::{StrFormat, check_runtime_path};
use super::secret_names::{is_path_reference, is_secret_like};
use super::suggest::suggest;
use super::tree::{Field, Shape, U32_MAX, application_fields, spec_shape};
use crate::manifest::{Manifest, SecretSource};
use crate::model::Catalog;
use crate::model::diagnostic::Diagnostic;
use crate::model::path::FieldPath;

/// Checks a document against the structure, with application settings against their manifests.
pub fn check(value: &Value, catalog: &Catalog) -> Vec<Diagnostic> {
    let mut checker = Checker {
        catalog,
        out: Vec::new(),
    };
    checker.no_nul(value, &FieldPath::root());
    if checker.out.is_empty() {
        checker.value(value, &spec_shape(), &FieldPath::root());
    }
    checker.out
}

struct Checker<'a> {
    catalog: &'a Catalog,
    out: Vec<Diagnostic>,
}

/// How a value is called in messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An unknown key: "did you mean" when a known one is close, else the list of known ones.
fn unknown(path: FieldPath, what: &str, name: &str, known: &[&str]) -> Diagnostic {
    let d = Diagnostic::new(
        path,
        format!("unknown {what} `{name}`"),
        format!("unknown {what}"),
    )
    .at_key();
    match suggest(name, known.iter().copied()) {
        Some(s) => d.hint(format!("did you mean `{s}`?")),
        None if known.is_empty() => d.hint(format!("no {what}s are allowed here")),
        None => d.hint(format!("expected one of {}", list(known))),
    }
}

const SECRET_HINT: &str = "reference it instead: an object with `file` (a path on the target machine, e.g. `{ file = \"/run/secrets/smtp-password\" }`) or `secret` (a name in the provider's secret store, e.g. `{ secret = \"smtp-password\" }`)";

impl Checker<'_> {
    fn push(&mut self, d: Diagnostic) {
        self.out.push(d);
    }

    fn no_nul(&mut self, value: &Value, path: &FieldPath) {
        match value {
            Value::String(s) if s.contains('\0') => self.push(
                Diagnostic::new(
                    path.clone(),
                    "a NUL character cannot be represented in Nix",
                    "contains NUL",
                )
                .hint("remove the NUL character"),
            ),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .for_each(|(i, v)| self.no_nul(v, &path.index(i))),
            Value::Object(map) => map.iter().for_each(|(k, v)| {
                if k.contains('\0') {
                    self.push(
                        Diagnostic::new(
                            path.key(k),
                            "a NUL character cannot be represented in Nix",
                            "contains NUL",
                        )
                        .at_key()
                        .hint("remove the NUL character"),
                    );
                }
                self.no_nul(v, &path.key(k));
            }),
            _ => {}
        }
    }

    fn mismatch(&mut self, path: &FieldPath, expected: &str, found: &Value) {
        self.push(Diagnostic::new(
            path.clone(),
            format!("expected {expected}, found {}", kind(found)),
            format!("expected {expected}"),
        ));
    }

    fn value(&mut self, value: &Value, shape: &Shape, path: &FieldPath) {
        match (shape, value) {
            (Shape::Bool, Value::Bool(_)) => {}
            (Shape::Bool, v) => self.mismatch(path, "a boolean", v),
            (Shape::True(_), Value::Bool(true)) => {}
            (Shape::True(why), v) => self.push(
                Diagnostic::new(
                    path.clone(),
                    match v {
                        Value::Bool(false) => "must be `true`, found `false`".to_owned(),
                        v => format!("must be `true`, found {}", kind(v)),
                    },
                    "must be `true`",
                )
                .hint(*why),
            ),
            (Shape::Int(min, max), Value::Number(n)) if n.as_i64().is_some() => {
                let i = n.as_i64().unwrap_or_default();
                if i < *min || i > *max {
                    let expected = if *min == 1 && *max == U32_MAX {
                        "a positive integer".to_owned()
                    } else {
                        format!("an integer from {min} to {max}")
                    };
                    self.push(Diagnostic::new(
                        path.clone(),
                        format!("{i} is out of range: expected {expected}"),
                        "out of range",
                    ));
                }
            }
            (Shape::Int(..), v) => self.mismatch(path, "an integer", v),
            (Shape::Str(format), Value::String(s)) => {
                if let Err(p) = format.check(s) {
                    let mut d = Diagnostic::new(path.clone(), p.message, p.label);
                    d.hint = p.hint;
                    self.push(d);
                }
            }
            (Shape::Str(_), v) => self.mismatch(path, "a string", v),
            (Shape::Object(fields), Value::Object(map)) => self.object(map, fields, &[], path),
            (
                Shape::Map {
                    key: key_format,
                    value: inner,
                    min_entries: min,
                },
                Value::Object(map),
            ) => {
                if map.len() < *min {
                    self.push(
                        Diagnostic::new(path.clone(), "needs at least one entry", "empty")
                            .at_key()
                            .hint("add an entry or remove the field"),
                    );
                }
                for (k, v) in map {
                    if let Err(p) = key_format.check(k) {
                        let mut d = Diagnostic::new(path.key(k), p.message, p.label).at_key();
                        d.hint = p.hint;
                        self.push(d);
                    }
                    self.value(v, inner, &path.key(k));
                }
            }
            (Shape::List(inner), Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    self.value(item, inner, &path.index(i));
                }
            }
            (Shape::List(_), v) => self.mismatch(path, "a list", v),
            (Shape::Tagged(tag, variants), Value::Object(map)) => {
                self.tagged(map, tag, variants, path)
            }
            (Shape::Secret, v) => self.secret(v, path),
            (Shape::Applications, Value::Object(map)) => {
                let known: Vec<&str> = self.catalog.manifests.keys().map(String::as_str).collect();
                for (name, v) in map {
                    if self.catalog.manifests.contains_key(name) {
                        self.value(v, &Shape::Object(application_fields(name)), &path.key(name));
                    } else {
                        let mut d = unknown(path.key(name), "application", name, &known);
                        let applications = format!(
                            "the applications are the folders of templates/ with a manifest: {}",
                            list(&known)
                        );
                        d.hint = Some(match d.hint.filter(|h| h.starts_with("did")) {
                            Some(suggestion) => format!("{suggestion} ({applications})"),
                            None => applications,
                        });
                        self.push(d);
                    }
                }
            }
            (Shape::Settings(app), Value::Object(map)) => {
                if let Some(manifest) = self.catalog.manifests.get(app) {
                    self.settings(map, manifest, path);
                }
            }
            (Shape::AppSecrets(app), Value::Object(map)) => {
                // Without the manifest (no garage template) the cross-checks say what is missing.
                if let Some(manifest) = self.catalog.manifests.get(app) {
                    self.app_secrets(map, manifest, path);
                }
            }
            (
                Shape::Object(_)
                | Shape::Map { .. }
                | Shape::Tagged(..)
                | Shape::Applications
                | Shape::Settings(_)
                | Shape::AppSecrets(_),
                v,
            ) => self.mismatch(path, "an object", v),
        }
    }

    fn object(
        &mut self,
        map: &Map<String, Value>,
        fields: &[Field],
        extra_known: &[&str],
        path: &FieldPath,
    ) {
        let known: Vec<&str> = extra_known
            .iter()
            .copied()
            .chain(fields.iter().map(|f| f.name))
            .collect();
        for (k, v) in map {
            match fields.iter().find(|f| f.name == k) {
                Some(field) => self.value(v, &field.shape, &path.key(k)),
                None if extra_known.contains(&k.as_str()) => {}
                None if !path.is_root() && ["provider", "operators"].contains(&k.as_str()) => {
                    self.push(unknown(path.key(k), "field", k, &known).hint(format!(
                        "`{k}` belongs at the top level: in TOML, keys written after a `[table]` header belong to that table; move it above the first header"
                    )))
                }
                None => self.push(unknown(path.key(k), "field", k, &known)),
            }
        }
        for field in fields.iter().filter(|f| !map.contains_key(f.name)) {
            if field.required {
                self.push(missing(path, field.name, field.doc));
            } else if matches!(field.shape, Shape::Settings(_) | Shape::AppSecrets(_)) {
                // Absent settings or secrets are empty ones: required entries must still be named.
                self.value(
                    &Value::Object(Map::new()),
                    &field.shape,
                    &path.key(field.name),
                );
            }
        }
    }

    fn tagged(
        &mut self,
        map: &Map<String, Value>,
        tag: &str,
        variants: &[(&'static str, Vec<Field>)],
        path: &FieldPath,
    ) {
        let names: Vec<&str> = variants.iter().map(|(n, _)| *n).collect();
        match map.get(tag) {
            None => self.push(
                Diagnostic::new(
                    path.clone(),
                    format!("missing field `{tag}`"),
                    format!("missing `{tag}`"),
                )
                .at_key()
                .hint(format!("add `{tag}`, one of {}", list(&names))),
            ),
            Some(Value::String(name)) => match variants.iter().find(|(n, _)| n == name) {
                Some((_, fields)) => self.object(map, fields, &[tag], path),
                None => {
                    let d = Diagnostic::new(
                        path.key(tag),
                        format!("unknown {tag} `{name}`"),
                        format!("unknown {tag}"),
                    );
                    self.push(match suggest(name, names.iter().copied()) {
                        Some(s) => d.hint(format!("did you mean `{s}`?")),
                        None => d.hint(format!("expected one of {}", list(&names))),
                    });
                }
            },
            Some(v) => self.mismatch(&path.key(tag), "a string", v),
        }
    }

    fn secret(&mut self, value: &Value, path: &FieldPath) {
        match value {
            Value::String(_) => self.push(
                Diagnostic::new(
                    path.clone(),
                    "a secret value cannot be written in a specification",
                    "a literal secret",
                )
                .hint(SECRET_HINT),
            ),
            Value::Object(map) => {
                for k in map.keys().filter(|k| *k != "file" && *k != "secret") {
                    self.push(unknown(path.key(k), "field", k, &["file", "secret"]));
                }
                match (map.get("file"), map.get("secret")) {
                    (Some(_), Some(_)) => self.push(
                        Diagnostic::new(
                            path.clone(),
                            "a secret reference has either `file` or `secret`, not both",
                            "both given",
                        )
                        .hint("keep one of them"),
                    ),
                    (None, None) if map.keys().all(|k| k == "file" || k == "secret") => self.push(
                        Diagnostic::new(
                            path.clone(),
                            "missing field `file` or `secret`",
                            "an empty secret reference",
                        )
                        .hint(SECRET_HINT),
                    ),
                    (Some(file), None) => self.value(
                        file,
                        &Shape::Str(StrFormat::AbsolutePath),
                        &path.key("file"),
                    ),
                    (None, Some(name)) => self.value(
                        name,
                        &Shape::Str(StrFormat::SecretName),
                        &path.key("secret"),
                    ),
                    (None, None) => {}
                }
            }
            v => self.mismatch(path, "a secret reference", v),
        }
    }

    fn settings(&mut self, map: &Map<String, Value>, manifest: &Manifest, path: &FieldPath) {
        let app = &manifest.application.name;
        let known: Vec<&str> = manifest.options.keys().map(String::as_str).collect();
        for (name, value) in map {
            let at = path.key(name);
            let Some(option) = manifest.options.get(name) else {
                let mut d = unknown(at, "setting", name, &known);
                if known.is_empty() {
                    d.hint = Some(format!("`{app}` has no settings"));
                }
                self.push(d);
                continue;
            };
            let before = self.out.len();
            self.secret_literals(name, value, &at);
            self.data_only(value, &at);
            if self.out.len() == before
                && let Err(e) = option.ty.check(value)
            {
                self.push(
                    Diagnostic::new(at.clone(), format!("invalid value for `{name}`: {e}"), e)
                        .hint(format!("{name}: {}", option.description)),
                );
            }
        }
        for (name, option) in &manifest.options {
            if option.default.is_none() && !map.contains_key(name) {
                self.push(missing_setting(path, app, name, &option.description));
            }
        }
    }

    /// A string under a key named like a secret is a secret written in the specification.
    fn secret_literals(&mut self, key: &str, value: &Value, path: &FieldPath) {
        match value {
            Value::String(s) if is_secret_like(key) && !is_path_reference(key, s) => self.push(
                Diagnostic::new(
                    path.clone(),
                    format!("`{key}` looks like a secret, and secret values cannot be written in a specification"),
                    "a literal secret",
                )
                .hint("if the application needs this secret, its manifest declares it under [secrets]: give it in the application's `secrets` as `{ file = \"/run/secrets/…\" }` or `{ secret = \"…\" }`"),
            ),
            // A `…File`/`…Path` setting is a path on the machine: the rule of secret files holds for it (the
            // Nix store is only refused where the key names a secret).
            Value::String(s) if is_path_reference(key, s) => {
                if let Err(p) = check_runtime_path(s)
                    && (p.label != "in the Nix store" || is_secret_like(key))
                {
                    let mut d = Diagnostic::new(path.clone(), p.message, p.label);
                    d.hint = p.hint;
                    self.push(d);
                }
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .for_each(|(i, v)| self.secret_literals(key, v, &path.index(i))),
            Value::Object(map) => map.iter().for_each(|(k, v)| self.secret_literals(k, v, &path.key(k))),
            _ => {}
        }
    }

    /// Keys that would turn data into code for Nix or the module system are refused, as the emitter would.
    fn data_only(&mut self, value: &Value, path: &FieldPath) {
        match value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .for_each(|(i, v)| self.data_only(v, &path.index(i))),
            Value::Object(map) => {
                for (k, v) in map {
                    let special = crate::nix::value::SPECIAL_ATTRIBUTES.contains(&k.as_str())
                        || (k == "type" && v.as_str() == Some("derivation"));
                    if special {
                        self.push(
                            Diagnostic::new(
                                path.key(k),
                                format!("the key `{k}` would make Nix treat this data as code"),
                                "special to Nix",
                            )
                            .at_key()
                            .hint("rename the key"),
                        );
                    }
                    self.data_only(v, &path.key(k));
                }
            }
            _ => {}
        }
    }

    fn app_secrets(&mut self, map: &Map<String, Value>, manifest: &Manifest, path: &FieldPath) {
        let app = &manifest.application.name;
        let provided: Vec<&str> = manifest
            .secrets
            .iter()
            .filter(|(_, s)| s.source == SecretSource::Provided)
            .map(|(n, _)| n.as_str())
            .collect();
        for (name, value) in map {
            match manifest.secrets.get(name) {
                Some(spec) if spec.source == SecretSource::Generated => self.push(
                    Diagnostic::new(
                        path.key(name),
                        format!("`{name}` is generated on the machine and cannot be provided"),
                        "generated secret",
                    )
                    .at_key()
                    .hint(format!("remove it: {app} creates it on first boot")),
                ),
                Some(_) => self.secret(value, &path.key(name)),
                None => {
                    let mut d = unknown(path.key(name), "secret", name, &provided);
                    if provided.is_empty() {
                        d.hint = Some(format!("`{app}` takes no provided secrets"));
                    }
                    self.push(d);
                }
            }
        }
        // Optional secrets may be left out.
        for name in provided
            .iter()
            .filter(|n| !map.contains_key(**n) && !manifest.secrets[**n].optional)
        {
            let description = &manifest.secrets[*name].description;
            self.push(
                Diagnostic::new(path.clone(), format!("missing secret `{name}` of `{app}`"), format!("missing `{name}`"))
                    .at_key()
                    .hint(format!(
                        "{name}: {}. Reference it: `{name} = {{ file = \"/run/secrets/…\" }}` or `{name} = {{ secret = \"…\" }}`",
                        description.trim_end_matches('.')
                    )),
            );
        }
    }
}

fn missing(path: &FieldPath, name: &str, doc: &str) -> Diagnostic {
    Diagnostic::new(
        path.clone(),
        format!("missing field `{name}`"),
        format!("missing `{name}`"),
    )
    .at_key()
    .hint(format!("add `{name}`: {doc}"))
}

fn missing_setting(path: &FieldPath, app: &str, name: &str, description: &str) -> Diagnostic {
    Diagnostic::new(
        path.clone(),
        format!("missing setting `{name}` of `{app}`"),
        format!("missing `{name}`"),
    )
    .at_key()
    .hint(format!("`{name}` has no default: {description}"))
}
