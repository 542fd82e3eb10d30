//! Float canonicalisation: equal values become equal text before the typed model is built.

use serde_json::Value;

use crate::manifest::OptionType;
use crate::model::Catalog;

/// Makes equal values equal text: a setting of a float type holds a float even when written as an integer
/// (`2` → `2.0`), as Nix and TOML would read it back.
pub fn canonicalize(value: &mut Value, catalog: &Catalog) {
    let Some(operators) = value.get_mut("operators").and_then(Value::as_array_mut) else {
        return;
    };
    for operator in operators {
        let Some(apps) = operator
            .get_mut("applications")
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for (app, application) in apps {
            let (Some(manifest), Some(settings)) = (
                catalog.manifests.get(app),
                application
                    .get_mut("settings")
                    .and_then(Value::as_object_mut),
            ) else {
                continue;
            };
            for (name, v) in settings {
                if let Some(option) = manifest.options.get(name) {
                    float_values(&option.ty, v);
                }
            }
        }
    }
}

fn float_values(ty: &OptionType, value: &mut Value) {
    match (ty, value) {
        (OptionType::Float, Value::Number(n)) => {
            if let Some(f) = n.as_f64().and_then(serde_json::Number::from_f64) {
                *n = f;
            }
        }
        (OptionType::List(inner), Value::Array(items)) => {
            items.iter_mut().for_each(|v| float_values(inner, v))
        }
        (OptionType::Attrs(inner), Value::Object(map)) => {
            map.values_mut().for_each(|v| float_values(inner, v))
        }
        _ => {}
    }
}
