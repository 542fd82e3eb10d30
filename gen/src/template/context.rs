//! The data each template sees.

use serde_json::{Value, json};

use super::options::manifest_options_value;
use super::shell::health_context;
use crate::manifest::Manifest;

/// The data a module template sees: the manifest, with each option's Nix type and default already emitted.
pub(crate) fn module_context(manifest: &Manifest, settings: Option<&Value>) -> Value {
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

/// The VM test's view of a manifest: the module's context plus health checks as shell commands.
pub(crate) fn test_context(manifest: &Manifest) -> Value {
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
