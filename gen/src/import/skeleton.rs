//! The manifest skeleton as TOML: every imported option and secret with where it came from, and a TODO for
//! everything a person must decide.

use serde_json::Value;

use super::assemble::Draft;
use super::names::{show_path, title_case};
use crate::manifest::OptionType;

/// A TOML value for a JSON value the manifest accepts (no nulls: the type checks have refused them).
pub(super) fn toml_value(value: &Value) -> toml::Value {
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

pub(super) fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

pub(super) fn toml_key(key: &str) -> String {
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
pub(super) fn comment(out: &mut String, text: &str) {
    for line in text.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
}

/// The type's `type = …` and its parameters, as manifest keys.
pub(super) fn type_keys(ty: &OptionType) -> Vec<(&'static str, toml::Value)> {
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
pub(super) fn render(import: &Draft) -> String {
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
        out.push_str("# TODO: who reads the file — the upstream unit's `User=`/`Group=` when its own code or script reads it,\n# or `credential = \"<unit>.service\"` when systemd reads it as root (EnvironmentFile=, LoadCredential=).\n");
        let _ = writeln!(
            out,
            "reader = {{ user = {0}, group = {0}, unit = {1} }}",
            toml_string(&import.name),
            toml_string(&format!("{}.service", import.name))
        );
        if secret.optional && !secret.generated {
            out.push_str("# The module runs without it (upstream's default is `null`): the template must handle `null`.\n");
            out.push_str("optional = true\n");
        }
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
