//! Layout of rendered text: nixfmt (its first pass is a template's fixpoint, [`crate::emit::settle_nixfmt`]), then rnix.

use std::path::Path;

use super::TemplateError;
use crate::nix::verify;

/// Lays rendered text out with nixfmt and parses it with rnix; errors point into the rendered text.
pub fn canonical(file: &Path, text: &str) -> Result<String, TemplateError> {
    let name = file.display().to_string();
    let formatted = verify::nixfmt(&name, text).map_err(|e| not_nix(file, text, e))?;
    finish_layout(file, text, formatted)
}

/// The rest of [`canonical`] once nixfmt has laid `text` out once: nixfmt to a fixpoint, then rnix.
pub(crate) fn finish_layout(
    file: &Path,
    text: &str,
    formatted: String,
) -> Result<String, TemplateError> {
    let name = file.display().to_string();
    // Unsettled after the last round: the last layout stands (it parses; `generate --check` compares it).
    // Templates settle in nixfmt's first pass (proven by tests/layout_fixpoint.rs and tests/generate.rs).
    let (formatted, _) =
        crate::emit::settle_nixfmt(&name, formatted, crate::emit::Settle::FirstPass)
            .map_err(|e| not_nix(file, text, e))?;
    verify::check_syntax(&name, &formatted).map_err(|e| not_nix(file, text, e))?;
    Ok(formatted)
}

/// A verification failure of rendered text, with the text itself (there is no template line to point at).
fn not_nix(file: &Path, text: &str, e: verify::VerifyError) -> TemplateError {
    TemplateError {
        file: file.to_owned(),
        location: None,
        message: format!("the rendered template is not valid Nix: {e}\n--- rendered text:\n{text}"),
    }
}
