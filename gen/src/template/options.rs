//! The option declarations of a generated module (`{{nix-options}}`), built with the AST from the manifest.

use serde_json::{Value, json};

use super::helpers::data;
use crate::manifest::Manifest;
use crate::nix::print::print_expr;
use crate::nix::{AttrName, AttrPath, Entry, Expr, lexical};

/// The manifest's option declarations, carried in the context for `{{nix-options}}` as already-emitted Nix.
pub(crate) fn manifest_options_value(manifest: &Manifest) -> Value {
    match option_declarations(manifest) {
        Ok(expr) => Value::String(print_expr(&expr)),
        Err(e) => json!({ "error": e }),
    }
}

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
    let [enable, subdomain] = crate::manifest::FIXED_OPTIONS;
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
