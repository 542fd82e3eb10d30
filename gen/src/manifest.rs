//! Application manifests (`templates/<app>/manifest.toml`): what an application offers and needs.
//!
//! One manifest feeds everything that must agree about an application: the generated NixOS module's options,
//! the validation of operators' settings, the JSON Schema for the panel, the VM tests' health checks and the
//! documentation. So the model never hard-codes an application: adding a template adds its manifest.
//!
//! A manifest is read strictly (unknown keys are errors, with line and column) and then checked as a whole
//! (defaults and examples must have their option's type), so a template that loads is consistent.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::nix::{Expr, LexicalError};

/// An application's manifest, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Who the application is.
    pub application: Application,
    /// The typed settings an operator may choose, by name (a Nix identifier).
    pub options: BTreeMap<String, OptionSpec>,
    /// Services the application needs on its machine or from the provider.
    pub needs: Needs,
    /// Secrets the application needs, always passed as files on the target machine.
    pub secrets: BTreeMap<String, SecretSpec>,
    /// What one instance needs by default; operators may request more.
    pub resources: Resources,
    /// Ports the application listens on.
    pub ports: Vec<Port>,
    /// How a VM test (or a monitoring probe) knows the application is up.
    pub health: Health,
    /// One real action through the application's own admin tool, for the VM test.
    pub admin_action: Option<AdminAction>,
}

/// The application's identity.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// The template's folder name and the attribute under `fediversity.` (e.g. `mastodon`).
    pub name: String,
    /// The name people know (e.g. `Mastodon`).
    pub title: String,
    /// One sentence for the documentation and the panel.
    pub description: String,
    /// The upstream NixOS option set it maps onto (e.g. `services.mastodon`).
    pub upstream: String,
    /// The default subdomain under the operator's domain (e.g. `mastodon` → `mastodon.example.org`).
    pub subdomain: String,
}

/// One typed setting.
#[derive(Debug, Clone, PartialEq)]
pub struct OptionSpec {
    /// Its type, which decides validation, the JSON Schema and the Nix option type.
    pub ty: OptionType,
    /// The default; `None` makes the option required.
    pub default: Option<Value>,
    /// What it means, for the documentation and the generated `description`.
    pub description: String,
    /// An example value, for the documentation and the generated `example`.
    pub example: Option<Value>,
}

/// The types a setting can have. Each maps to a `lib.types` type, a JSON Schema and a validation rule.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionType {
    /// `true` / `false`.
    Bool,
    /// An integer, optionally bounded (inclusive).
    Int {
        /// The smallest allowed value.
        min: Option<i64>,
        /// The largest allowed value.
        max: Option<i64>,
    },
    /// A float.
    Float,
    /// A string, optionally matching a regular expression (whole string) or bounded in length.
    Str {
        /// A regular expression the whole string must match.
        pattern: Option<String>,
        /// The most characters allowed.
        max_length: Option<usize>,
    },
    /// One of fixed strings.
    Enum(Vec<String>),
    /// A TCP/UDP port, 1–65535.
    Port,
    /// An e-mail address.
    Email,
    /// A list of values of one scalar type.
    List(Box<OptionType>),
    /// An attribute set of values of one scalar type.
    Attrs(Box<OptionType>),
}

/// Services an application needs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Needs {
    /// A PostgreSQL database on the application's machine.
    #[serde(default)]
    pub postgresql: bool,
    /// A Redis instance on the application's machine.
    #[serde(default)]
    pub redis: bool,
    /// The provider's SMTP relay for outgoing mail.
    #[serde(default)]
    pub smtp: bool,
    /// S3 buckets on the provider's Garage cluster.
    #[serde(default)]
    pub s3_buckets: Vec<String>,
}

/// A secret the application needs. Values never appear in a specification or in the Nix store: the module
/// receives a path on the target machine (`…File` options).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    /// What it is for.
    pub description: String,
    /// Where it comes from.
    pub source: SecretSource,
    /// The file's contents in VM tests only (where a secret in the store is harmless); a real deployment
    /// never sees it.
    #[serde(default)]
    pub test_value: Option<String>,
}

/// Where a secret comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretSource {
    /// Generated on the target machine on first boot (random), never leaving it.
    Generated,
    /// Provided by the operator or the provider (a path or a named secret in the specification).
    Provided,
}

/// Default resources of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU cores.
    pub cores: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Disk in GiB.
    pub disk_gib: u32,
}

/// A port the application listens on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// What listens there (e.g. `web`, `streaming`).
    pub name: String,
    /// The port number.
    pub port: u16,
    /// Whether it is reachable from outside the machine (otherwise only nginx on the machine uses it).
    #[serde(default)]
    pub public: bool,
}

/// Health checks, which the VM tests perform and monitoring can reuse.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// systemd units that must become active.
    #[serde(default)]
    pub units: Vec<String>,
    /// TCP ports that must be open on the machine.
    #[serde(default)]
    pub tcp_ports: Vec<u16>,
    /// HTTP requests to the application's virtual host.
    #[serde(default)]
    pub http: Vec<HttpCheck>,
}

/// An HTTP request and what must come back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    /// The path, starting with `/`.
    pub path: String,
    /// The expected status code.
    #[serde(default = "ok_status")]
    pub status: u16,
    /// Text the body must contain.
    #[serde(default)]
    pub contains: Option<String>,
    /// Ask a local port directly over plain HTTP (an admin API) instead of the application's virtual host.
    #[serde(default)]
    pub port: Option<u16>,
}

fn ok_status() -> u16 {
    200
}

/// An action performed with the application's own admin tool in the VM test, e.g. creating an account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminAction {
    /// What it shows.
    pub description: String,
    /// The shell command run on the application's machine.
    pub command: String,
    /// Text the command's output must contain.
    #[serde(default)]
    pub expect: Option<String>,
}

/// Why a manifest cannot be used: where, and what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
pub struct ManifestError {
    /// The manifest file.
    pub file: PathBuf,
    /// Line and column (1-based), when known.
    pub location: Option<(usize, usize)>,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// The manifest as written, before checking.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    application: Application,
    #[serde(default)]
    options: BTreeMap<String, RawOption>,
    #[serde(default)]
    needs: Needs,
    #[serde(default)]
    secrets: BTreeMap<String, SecretSpec>,
    resources: Resources,
    #[serde(default)]
    ports: Vec<Port>,
    #[serde(default)]
    health: Health,
    #[serde(default)]
    admin_action: Option<AdminAction>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOption {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    of: Option<String>,
    #[serde(default)]
    values: Option<Vec<String>>,
    #[serde(default)]
    min: Option<i64>,
    #[serde(default)]
    max: Option<i64>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    max_length: Option<usize>,
    #[serde(default)]
    default: Option<toml::Value>,
    description: String,
    #[serde(default)]
    example: Option<toml::Value>,
}

impl Manifest {
    /// Reads and checks `templates/<app>/manifest.toml`.
    pub fn load(file: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(file).map_err(|e| ManifestError {
            file: file.to_owned(),
            location: None,
            message: e.to_string(),
        })?;
        Self::parse(file, &text)
    }

    /// Parses and checks manifest text; `file` names it in errors.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ManifestError> {
        let error = |location, message: String| ManifestError {
            file: file.to_owned(),
            location,
            message,
        };
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            let location = e.span().map(|span| line_column(text, span.start));
            error(location, e.message().to_owned())
        })?;
        let mut options = BTreeMap::new();
        for (name, raw_option) in raw.options {
            let located = |message: String| {
                error(find_key(text, &name), format!("option `{name}`: {message}"))
            };
            if crate::nix::Ident::new(&name).is_err() {
                return Err(located(
                    "option names must be Nix identifiers (letters, digits, `_`, `-`)".into(),
                ));
            }
            options.insert(name.clone(), raw_option.check().map_err(located)?);
        }
        let app = &raw.application;
        if crate::nix::Ident::new(&app.name).is_err() {
            return Err(error(
                None,
                format!("application name `{}` must be a Nix identifier", app.name),
            ));
        }
        if crate::nix::AttrPath::dotted(&app.upstream).is_err() {
            return Err(error(
                None,
                format!("upstream `{}` must be a dotted option path", app.upstream),
            ));
        }
        for name in raw.secrets.keys() {
            if crate::nix::Ident::new(name).is_err() {
                return Err(error(
                    find_key(text, name),
                    format!("secret `{name}`: names must be Nix identifiers"),
                ));
            }
        }
        if let Some(check) = raw.health.http.iter().find(|c| !c.path.starts_with('/')) {
            return Err(error(
                None,
                format!("health check path `{}` must start with `/`", check.path),
            ));
        }
        Ok(Self {
            application: raw.application,
            options,
            needs: raw.needs,
            secrets: raw.secrets,
            resources: raw.resources,
            ports: raw.ports,
            health: raw.health,
            admin_action: raw.admin_action,
        })
    }

    /// Loads every `templates/*/manifest.toml`, sorted by application name; the folder name must be the
    /// application's name.
    pub fn load_all(templates: &Path) -> Result<Vec<Self>, ManifestError> {
        let read_dir = std::fs::read_dir(templates).map_err(|e| ManifestError {
            file: templates.to_owned(),
            location: None,
            message: e.to_string(),
        })?;
        let mut manifests = Vec::new();
        for entry in read_dir.flatten() {
            let file = entry.path().join("manifest.toml");
            if !file.is_file() {
                continue;
            }
            let manifest = Self::load(&file)?;
            if entry.file_name().to_str() != Some(manifest.application.name.as_str()) {
                return Err(ManifestError {
                    file,
                    location: None,
                    message: format!(
                        "the folder must be named after the application (`{}`)",
                        manifest.application.name
                    ),
                });
            }
            manifests.push(manifest);
        }
        manifests.sort_by(|a, b| a.application.name.cmp(&b.application.name));
        Ok(manifests)
    }
}

impl RawOption {
    fn check(self) -> Result<OptionSpec, String> {
        let ty = OptionType::from_parts(
            &self.ty,
            self.of.as_deref(),
            self.values,
            (self.min, self.max),
            self.pattern,
            self.max_length,
        )?;
        let to_json = |v: toml::Value, what: &str| -> Result<Value, String> {
            let json = serde_json::to_value(v).map_err(|e| format!("{what}: {e}"))?;
            ty.check(&json)
                .map_err(|e| format!("{what} {json} does not fit the type: {e}"))?;
            Ok(json)
        };
        Ok(OptionSpec {
            default: self.default.map(|v| to_json(v, "default")).transpose()?,
            example: self.example.map(|v| to_json(v, "example")).transpose()?,
            description: self.description,
            ty,
        })
    }
}

impl OptionType {
    fn from_parts(
        name: &str,
        of: Option<&str>,
        values: Option<Vec<String>>,
        (min, max): (Option<i64>, Option<i64>),
        pattern: Option<String>,
        max_length: Option<usize>,
    ) -> Result<Self, String> {
        let unused = |what: &str, present: bool| {
            if present {
                Err(format!("`{what}` does not apply to type `{name}`"))
            } else {
                Ok(())
            }
        };
        if name != "int" {
            unused("min", min.is_some())?;
            unused("max", max.is_some())?;
        }
        if name != "str" {
            unused("pattern", pattern.is_some())?;
            unused("max_length", max_length.is_some())?;
        }
        if name != "enum" {
            unused("values", values.is_some())?;
        }
        if name != "list" && name != "attrs" {
            unused("of", of.is_some())?;
        }
        Ok(match name {
            "bool" => Self::Bool,
            "int" => Self::Int { min, max },
            "float" => Self::Float,
            "str" => {
                if let Some(p) = &pattern {
                    regex_lite::Regex::new(p).map_err(|e| format!("pattern: {e}"))?;
                }
                Self::Str {
                    pattern,
                    max_length,
                }
            }
            "enum" => match values {
                Some(values) if !values.is_empty() => Self::Enum(values),
                _ => return Err("type `enum` needs `values = [ … ]`".into()),
            },
            "port" => Self::Port,
            "email" => Self::Email,
            "list" | "attrs" => {
                let of = of.ok_or_else(|| format!("type `{name}` needs `of = \"<type>\"`"))?;
                let inner = Self::from_parts(of, None, None, (None, None), None, None)?;
                if matches!(inner, Self::List(_) | Self::Attrs(_)) {
                    return Err("lists and attribute sets hold scalar values".into());
                }
                if name == "list" {
                    Self::List(Box::new(inner))
                } else {
                    Self::Attrs(Box::new(inner))
                }
            }
            other => {
                return Err(format!(
                    "unknown type `{other}`; use bool, int, float, str, enum, port, email, list or attrs"
                ));
            }
        })
    }

    /// Checks a value (as JSON) against the type; the error says what was expected.
    pub fn check(&self, value: &Value) -> Result<(), String> {
        match (self, value) {
            (Self::Bool, Value::Bool(_)) | (Self::Float, Value::Number(_)) => Ok(()),
            (Self::Int { min, max }, Value::Number(n)) => {
                let i = n.as_i64().ok_or("expected an integer")?;
                if min.is_some_and(|m| i < m) || max.is_some_and(|m| i > m) {
                    Err(format!("expected an integer {}", self.range_text()))
                } else {
                    Ok(())
                }
            }
            (Self::Port, Value::Number(n)) => match n.as_u64() {
                Some(1..=65535) => Ok(()),
                _ => Err("expected a port number from 1 to 65535".into()),
            },
            (
                Self::Str {
                    pattern,
                    max_length,
                },
                Value::String(s),
            ) => {
                if max_length.is_some_and(|m| s.chars().count() > m) {
                    return Err(format!(
                        "expected at most {} characters",
                        max_length.unwrap_or(0)
                    ));
                }
                if let Some(p) = pattern {
                    let re =
                        regex_lite::Regex::new(&format!("^(?:{p})$")).map_err(|e| e.to_string())?;
                    if !re.is_match(s) {
                        return Err(format!("expected a string matching `{p}`"));
                    }
                }
                Ok(())
            }
            (Self::Enum(values), Value::String(s)) if values.contains(s) => Ok(()),
            (Self::Enum(values), _) => Err(format!("expected one of {}", values.join(", "))),
            (Self::Email, Value::String(s)) => {
                if is_email(s) {
                    Ok(())
                } else {
                    Err("expected an e-mail address such as `admin@example.org`".into())
                }
            }
            (Self::List(inner), Value::Array(items)) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, item)| inner.check(item).map_err(|e| format!("item {i}: {e}"))),
            (Self::Attrs(inner), Value::Object(map)) => map
                .iter()
                .try_for_each(|(k, v)| inner.check(v).map_err(|e| format!("`{k}`: {e}"))),
            _ => Err(format!("expected {self}")),
        }
    }

    fn range_text(&self) -> String {
        match self {
            Self::Int {
                min: Some(a),
                max: Some(b),
            } => format!("from {a} to {b}"),
            Self::Int {
                min: Some(a),
                max: None,
            } => format!("of at least {a}"),
            Self::Int {
                min: None,
                max: Some(b),
            } => format!("of at most {b}"),
            _ => String::new(),
        }
    }

    /// The JSON Schema (draft 2020-12) of values of this type, for the panel and editors.
    pub fn json_schema(&self) -> Value {
        use serde_json::json;
        match self {
            Self::Bool => json!({"type": "boolean"}),
            Self::Int { min, max } => {
                let mut schema = json!({"type": "integer"});
                if let Some(min) = min {
                    schema["minimum"] = json!(min);
                }
                if let Some(max) = max {
                    schema["maximum"] = json!(max);
                }
                schema
            }
            Self::Float => json!({"type": "number"}),
            Self::Str {
                pattern,
                max_length,
            } => {
                let mut schema = json!({"type": "string"});
                if let Some(p) = pattern {
                    schema["pattern"] = json!(format!("^(?:{p})$"));
                }
                if let Some(m) = max_length {
                    schema["maxLength"] = json!(m);
                }
                schema
            }
            Self::Enum(values) => json!({"enum": values}),
            Self::Port => json!({"type": "integer", "minimum": 1, "maximum": 65535}),
            Self::Email => json!({"type": "string", "format": "email", "pattern": EMAIL_PATTERN}),
            Self::List(inner) => json!({"type": "array", "items": inner.json_schema()}),
            Self::Attrs(inner) => {
                json!({"type": "object", "additionalProperties": inner.json_schema()})
            }
        }
    }

    /// The NixOS option type (`lib.types.…`) the generated module declares.
    pub fn nix_type(&self) -> Result<Expr, LexicalError> {
        let types = |path: &str| Expr::reference(&format!("lib.types.{path}"));
        Ok(match self {
            Self::Bool => types("bool")?,
            Self::Int {
                min: Some(a),
                max: Some(b),
            } => Expr::apply(types("ints.between")?, vec![Expr::Int(*a), Expr::Int(*b)]),
            Self::Int {
                min: Some(0),
                max: None,
            } => types("ints.unsigned")?,
            Self::Int {
                min: Some(1),
                max: None,
            } => types("ints.positive")?,
            Self::Int { .. } => types("int")?,
            Self::Float => types("float")?,
            Self::Str {
                pattern: Some(p), ..
            } => Expr::apply(types("strMatching")?, vec![Expr::string(p)?]),
            Self::Str { .. } | Self::Email => types("str")?,
            Self::Enum(values) => Expr::apply(
                types("enum")?,
                vec![Expr::List(
                    values
                        .iter()
                        .map(|v| Expr::string(v))
                        .collect::<Result<_, _>>()?,
                )],
            ),
            Self::Port => types("port")?,
            Self::List(inner) => Expr::apply(types("listOf")?, vec![inner.nix_type()?]),
            Self::Attrs(inner) => Expr::apply(types("attrsOf")?, vec![inner.nix_type()?]),
        })
    }
}

/// Strings that have broken code generators: interpolation, both quote styles, escapes, lines, Unicode.
const TRICKY_STRINGS: [&str; 8] = [
    "",
    "${builtins.abort \"injected\"}",
    "''${x} ''\n'",
    "\"; x = 1; \"",
    "back\\slash $ {",
    "multi\nline\n  text\n",
    "é ✓ 🦀",
    "x",
];

impl OptionType {
    /// Edge values of the type, for rendering templates with more than their defaults (`fedigen template
    /// check`): bounds, every enum value, and adversarial strings that fit the type. Deterministic.
    pub fn samples(&self) -> Vec<Value> {
        let candidates: Vec<Value> = match self {
            Self::Bool => vec![Value::Bool(false), Value::Bool(true)],
            Self::Int { min, max } => {
                let lo = min.unwrap_or(i64::MIN);
                let hi = max.unwrap_or(i64::MAX);
                vec![lo.into(), hi.into(), (lo / 2 + hi / 2).into()]
            }
            Self::Float => vec![0.0.into(), (-1.5).into(), 1e300.into(), 5e-324.into()],
            Self::Port => vec![1.into(), 65535.into()],
            Self::Enum(values) => values.iter().map(|v| Value::from(v.as_str())).collect(),
            Self::Email => vec![
                "admin@uu.example".into(),
                "o'brien+fedi@sub.domain.example".into(),
            ],
            Self::Str { .. } => TRICKY_STRINGS.iter().map(|s| Value::from(*s)).collect(),
            Self::List(inner) => {
                let mut values = vec![Value::Array(vec![])];
                values.push(Value::Array(inner.samples()));
                values
            }
            Self::Attrs(inner) => {
                let mut values = vec![Value::Object(serde_json::Map::new())];
                let map = TRICKY_STRINGS
                    .iter()
                    .zip(inner.samples())
                    .map(|(k, v)| ((*k).to_owned(), v))
                    .collect();
                values.push(Value::Object(map));
                values
            }
        };
        candidates
            .into_iter()
            .filter(|v| self.check(v).is_ok())
            .collect()
    }
}

impl fmt::Display for OptionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool => f.write_str("a boolean"),
            Self::Int { .. } => write!(f, "an integer {}", self.range_text()),
            Self::Float => f.write_str("a number"),
            Self::Str { .. } => f.write_str("a string"),
            Self::Enum(values) => write!(f, "one of {}", values.join(", ")),
            Self::Port => f.write_str("a port number"),
            Self::Email => f.write_str("an e-mail address"),
            Self::List(inner) => write!(f, "a list of {inner}"),
            Self::Attrs(inner) => write!(f, "an attribute set of {inner}"),
        }
    }
}

/// The e-mail rule used by validation and by the JSON Schema, so both agree: a local part, `@`, and a domain
/// with at least one dot.
pub const EMAIL_PATTERN: &str = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$";

/// Whether `s` is an e-mail address by [`EMAIL_PATTERN`].
pub fn is_email(s: &str) -> bool {
    static RE: std::sync::OnceLock<regex_lite::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex_lite::Regex::new(EMAIL_PATTERN).expect("valid pattern"))
        .is_match(s)
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let p = crate::nix::verify::Position::of_offset(text, offset);
    (p.line, p.column)
}

/// Where a table key such as `[options.name]` or `name = ` is first written, for errors found after parsing.
fn find_key(text: &str, key: &str) -> Option<(usize, usize)> {
    text.lines().enumerate().find_map(|(i, line)| {
        let l = line.trim_start();
        let hit = l.starts_with(&format!("[options.{key}]"))
            || l.starts_with(&format!("[secrets.{key}]"))
            || l.starts_with(&format!("{key} ="))
            || l.starts_with(&format!("{key}="));
        hit.then(|| (i + 1, line.len() - l.len() + 1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nix::print::print_expr;

    const MINIMAL: &str = r#"
[application]
name = "demo"
title = "Demo"
description = "A demonstration."
upstream = "services.demo"
subdomain = "demo"

[resources]
cores = 1
memory_mib = 512
disk_gib = 1
"#;

    fn parse(extra: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(
            Path::new("templates/demo/manifest.toml"),
            &format!("{MINIMAL}{extra}"),
        )
    }

    #[test]
    fn options_are_typed_and_defaults_checked() {
        let m = parse(
            r#"
[options.maxChars]
type = "int"
min = 1
max = 10000
default = 500
description = "Longest post."

[options.mode]
type = "enum"
values = ["open", "closed"]
default = "open"
description = "Who may register."
"#,
        )
        .unwrap();
        assert_eq!(
            m.options["maxChars"].ty,
            OptionType::Int {
                min: Some(1),
                max: Some(10000)
            }
        );
        assert_eq!(
            print_expr(&m.options["maxChars"].ty.nix_type().unwrap()),
            "lib.types.ints.between 1 10000"
        );
        assert_eq!(
            print_expr(&m.options["mode"].ty.nix_type().unwrap()),
            "lib.types.enum [\n  \"open\"\n  \"closed\"\n]"
        );
        let bad = parse("[options.x]\ntype = \"int\"\nmax = 3\ndefault = 4\ndescription = \"d\"\n")
            .unwrap_err();
        assert_eq!(bad.location, Some((13, 1)), "the `[options.x]` line: {bad}");
        assert!(
            bad.message
                .contains("default 4 does not fit the type: expected an integer of at most 3"),
            "{bad}"
        );
    }

    #[test]
    fn unknown_keys_are_errors_with_their_position() {
        let err = parse("[needs]\npostgres = true\n").unwrap_err();
        assert_eq!(err.location.map(|l| l.0), Some(14), "{err}");
        assert!(err.message.contains("unknown field `postgres`"), "{err}");
        assert!(
            err.message.contains("postgresql"),
            "the message lists the known fields: {err}"
        );
    }

    #[test]
    fn types_check_values() {
        let email = OptionType::Email;
        assert!(email.check(&Value::from("admin@uu.example")).is_ok());
        assert!(email.check(&Value::from("admin@localhost")).is_err());
        assert!(email.check(&Value::from("not an address")).is_err());
        let list = OptionType::List(Box::new(OptionType::Port));
        assert!(list.check(&serde_json::json!([80, 443])).is_ok());
        assert_eq!(
            list.check(&serde_json::json!([80, 0])).unwrap_err(),
            "item 1: expected a port number from 1 to 65535"
        );
        let s = OptionType::Str {
            pattern: Some("[a-z]+".into()),
            max_length: Some(5),
        };
        assert!(s.check(&Value::from("abc")).is_ok());
        assert!(
            s.check(&Value::from("abc1")).is_err(),
            "the pattern covers the whole string"
        );
        assert!(s.check(&Value::from("abcdef")).is_err());
    }
}
