//! Scaffolds: the files a new application template starts from (`fedigen template new`, and the module
//! template `fedigen template import` writes beside an imported manifest).
//!
//! Their text lives in `templates/_scaffold/` (`manifest.toml.in`, `module.nix.hbs.in`; the folder starts with
//! `_`, so the catalog does not take it for an application, and the `.in` names keep it from being loaded as a
//! template), compiled into the binary so that `template new` works in any repository. `@APP@`, `@TITLE@` and
//! `@UPSTREAM@` stand for the application's name, its title and the upstream module. What is written renders
//! and passes `template check --allow-drafts` as it is; its `TODO`s mark what must be finished.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The manifest scaffold, with placeholders.
const MANIFEST: &str = include_str!("../../../templates/_scaffold/manifest.toml.in");

/// The module template scaffold, with placeholders.
const MODULE: &str = include_str!("../../../templates/_scaffold/module.nix.hbs.in");

/// Why a scaffold was not written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The application name breaks the naming rule (invalid input).
    #[error("{0}")]
    Name(String),
    /// The file or folder is there already (invalid input: nothing was written).
    #[error("{}: exists already; {hint}", path.display())]
    Exists {
        /// What exists.
        path: PathBuf,
        /// What to do instead.
        hint: &'static str,
    },
    /// The file system refused (the environment: nothing is left half-written).
    #[error("{}: {error}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
}

/// The manifest of a new application `app`: one example option, HTTPS, health checks of its unit and nginx.
pub fn manifest(app: &str) -> String {
    fill(MANIFEST, app, &format!("services.{app}"))
}

/// The module template of a new application mapped onto the upstream module `upstream` (`services.<app>`).
pub fn module(app: &str, upstream: &str) -> String {
    fill(MODULE, app, upstream)
}

fn fill(text: &str, app: &str, upstream: &str) -> String {
    text.replace("@TITLE@", &crate::import::title_case(app))
        .replace("@UPSTREAM@", upstream)
        .replace("@APP@", app)
}

/// Writes `templates/<app>/manifest.toml` and `module.nix.hbs` under `repo` for `template new`, after checking
/// the name. Refused when the folder exists; on a failed write the new folder is removed. Returns the folder.
pub fn create(repo: &Path, app: &str) -> Result<PathBuf, ScaffoldError> {
    crate::manifest::check_application_name(app).map_err(ScaffoldError::Name)?;
    let dir = repo.join("templates").join(app);
    if dir.exists() {
        return Err(ScaffoldError::Exists {
            path: dir,
            hint: "pick another name",
        });
    }
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("manifest.toml"), manifest(app)))
        .and_then(|()| {
            std::fs::write(
                dir.join("module.nix.hbs"),
                module(app, &format!("services.{app}")),
            )
        });
    match written {
        Ok(()) => Ok(dir),
        Err(error) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(ScaffoldError::Io { path: dir, error })
        }
    }
}

/// What [`write_imported`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportWritten {
    /// The manifest's path.
    pub manifest: PathBuf,
    /// The module template's path, when it was scaffolded (an existing one is kept).
    pub module: Option<PathBuf>,
}

/// Writes an imported manifest (`template import`) to `templates/<app>/manifest.toml` under `repo`, and a
/// module template scaffold beside it when there is none. An existing manifest is replaced only with `force`.
/// Each file is written whole or not at all.
pub fn write_imported(
    repo: &Path,
    imported: &crate::import::Import,
    force: bool,
) -> Result<ImportWritten, ScaffoldError> {
    let dir = repo.join("templates").join(&imported.name);
    let manifest = dir.join("manifest.toml");
    if manifest.exists() && !force {
        return Err(ScaffoldError::Exists {
            path: manifest,
            hint: "pass --force to replace it, or --stdout to compare",
        });
    }
    let io = |error| ScaffoldError::Io {
        path: dir.clone(),
        error,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    write_atomically(&manifest, &imported.manifest_text).map_err(io)?;
    let hbs = dir.join("module.nix.hbs");
    let module = if hbs.exists() {
        None
    } else {
        write_atomically(&hbs, &module(&imported.name, &imported.upstream)).map_err(io)?;
        Some(hbs)
    };
    Ok(ImportWritten { manifest, module })
}

/// Writes a file whole or not at all: a temporary file in the same folder, renamed over the target.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(text.as_bytes())?;
    temp.as_file().sync_all()?;
    temp.persist(path).map(drop).map_err(|e| e.error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_all_filled() {
        for text in [manifest("lemmy-x"), module("lemmy-x", "services.lemmy")] {
            assert!(!text.contains('@'), "{text}");
        }
        let manifest = manifest("lemmy-x");
        assert!(manifest.contains("title = \"Lemmy X\""), "{manifest}");
        assert!(
            manifest.contains("upstream = \"services.lemmy-x\""),
            "{manifest}"
        );
        let module = module("lemmy-x", "services.lemmy");
        assert!(
            module.contains("cfg = config.fediversity.lemmy-x;"),
            "{module}"
        );
        assert!(module.contains("    services.lemmy = {"), "{module}");
        // The comment names the upstream module as it is (it once read `{services.lemmy}`).
        assert!(
            module.contains("onto the upstream module services.lemmy."),
            "{module}"
        );
    }
}
