//! The JSON Schema printer: the same structure tree the checker walks, printed as draft 2020-12.

use serde_json::{Map, Value, json};

use super::format::StrFormat;
use super::tree::{Field, Shape, application_fields, spec_shape};
use crate::manifest::SecretSource;
use crate::model::Catalog;

/// The JSON Schema (draft 2020-12) of specifications. Keys are sorted (serde_json's map), so the output is
/// deterministic.
pub fn json_schema(catalog: &Catalog) -> Value {
    let mut schema = shape_schema(&spec_shape(), catalog);
    let object = schema.as_object_mut().expect("the root is an object");
    object.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    object.insert(
        "$id".into(),
        json!("https://fediversity.eu/schemas/fedigen-specification.json"),
    );
    object.insert(
        "title".into(),
        json!("fedigen specification: a hosting provider and its operators"),
    );
    object.insert(
        "$defs".into(),
        json!({
            "secret": {
                "description": "a reference to a secret: a file on the target machine or a name in the provider's secret store; never the value",
                "oneOf": [
                    {"type": "object", "properties": {"file": StrFormat::AbsolutePath.schema()}, "required": ["file"], "additionalProperties": false},
                    {"type": "object", "properties": {"secret": StrFormat::SecretName.schema()}, "required": ["secret"], "additionalProperties": false}
                ]
            }
        }),
    );
    schema
}

fn object_schema(fields: &[Field], catalog: &Catalog, extra: Option<(&str, Value)>) -> Value {
    let mut properties = Map::new();
    let mut required: Vec<&str> = Vec::new();
    if let Some((tag, value)) = &extra {
        properties.insert((*tag).to_owned(), value.clone());
        required.push(tag);
    }
    for field in fields {
        let mut s = shape_schema(&field.shape, catalog);
        if let Some(o) = s.as_object_mut()
            && !o.contains_key("$ref")
        {
            o.insert("description".into(), json!(field.doc));
        }
        properties.insert(field.name.to_owned(), s);
        if field.required || has_required_entries(&field.shape, catalog) {
            required.push(field.name);
        }
    }
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

/// Whether settings or secrets have entries without which they are invalid, so the field itself is required.
fn has_required_entries(shape: &Shape, catalog: &Catalog) -> bool {
    match shape {
        Shape::Settings(app) => catalog
            .manifests
            .get(app)
            .is_some_and(|m| m.options.values().any(|o| o.default.is_none())),
        Shape::AppSecrets(app) => catalog.manifests.get(app).is_some_and(|m| {
            m.secrets
                .values()
                .any(|s| s.source == SecretSource::Provided && !s.optional)
        }),
        _ => false,
    }
}

fn shape_schema(shape: &Shape, catalog: &Catalog) -> Value {
    match shape {
        Shape::Bool => json!({"type": "boolean"}),
        Shape::True(_) => json!({"const": true}),
        Shape::Int(min, max) => json!({"type": "integer", "minimum": min, "maximum": max}),
        Shape::Str(format) => format.schema(),
        Shape::Object(fields) => object_schema(fields, catalog, None),
        Shape::Map {
            key,
            value: inner,
            min_entries: min,
        } => json!({
            "type": "object",
            "propertyNames": key.schema(),
            "additionalProperties": shape_schema(inner, catalog),
            "minProperties": min,
        }),
        Shape::List(inner) => json!({"type": "array", "items": shape_schema(inner, catalog)}),
        Shape::Tagged(tag, variants) => json!({
            "oneOf": variants
                .iter()
                .map(|(name, fields)| object_schema(fields, catalog, Some((tag, json!({"const": name})))))
                .collect::<Vec<_>>()
        }),
        Shape::Secret => json!({"$ref": "#/$defs/secret"}),
        Shape::Applications => {
            let properties: Map<String, Value> = catalog
                .manifests
                .iter()
                .map(|(name, m)| {
                    let mut s = object_schema(&application_fields(name), catalog, None);
                    s["description"] = json!(format!(
                        "{}: {}",
                        m.application.title, m.application.description
                    ));
                    (name.clone(), s)
                })
                .collect();
            json!({"type": "object", "properties": properties, "additionalProperties": false})
        }
        Shape::Settings(app) => {
            let Some(manifest) = catalog.manifests.get(app) else {
                return json!({"type": "object"});
            };
            let mut properties = Map::new();
            let mut required = Vec::new();
            for (name, option) in &manifest.options {
                let mut s = option.ty.json_schema();
                s["description"] = json!(option.description);
                if let Some(default) = &option.default {
                    s["default"] = default.clone();
                } else {
                    required.push(name.clone());
                }
                properties.insert(name.clone(), s);
            }
            json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
        }
        Shape::AppSecrets(app) => {
            let Some(manifest) = catalog.manifests.get(app) else {
                return json!({"type": "object"});
            };
            let provided: Vec<&String> = manifest
                .secrets
                .iter()
                .filter(|(_, s)| s.source == SecretSource::Provided)
                .map(|(n, _)| n)
                .collect();
            let properties: Map<String, Value> = provided
                .iter()
                .map(|n| ((*n).clone(), json!({"$ref": "#/$defs/secret"})))
                .collect();
            // Optional secrets may be left out.
            let required: Vec<&&String> = provided
                .iter()
                .filter(|n| !manifest.secrets[n.as_str()].optional)
                .collect();
            json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
        }
    }
}
