//! `fedigen validate` and `fedigen schema`: check a specification against the model and the application
//! manifests, and print the JSON Schema of specifications for the panel and editors.

use std::io::Write as _;
use std::path::PathBuf;

use clap::Args;

use crate::cli::error::{Class, CliError, CliResult, Status};
use fedigen::model::{self, Catalog, LoadError};

/// Arguments of `fedigen validate`.
#[derive(Args)]
pub struct ValidateArgs {
    /// The specification: `.toml` (by hand), `.json` (from the panel) or `.nix` (evaluated with Nix).
    #[arg(default_value = "examples/provider.toml")]
    spec: PathBuf,
    /// The folder of application templates whose manifests define the applications and their settings
    /// (default: `templates/` of the repository around the specification, or around the current directory).
    #[arg(long)]
    templates: Option<PathBuf>,
    /// Print the loaded specification, with defaults filled in, as JSON.
    #[arg(long)]
    print: bool,
    /// Print the verdict as JSON on standard output, for CI jobs and the panel: `{"file", "valid": true,
    /// "provider", "operators", "applications"}`, or `{"file", "valid": false, "problems": [{"file", "line",
    /// "column", "field", "message", "label", "hint", "related"}]}`, or `{"file", "valid": false, "error"}` when
    /// the file could not be read at all. The exit status is the same as without --json.
    #[arg(long, conflicts_with = "print")]
    json: bool,
}

/// Arguments of `fedigen schema`.
#[derive(Args)]
pub struct SchemaArgs {
    /// The folder of application templates whose manifests define the applications and their settings
    /// (default: `templates/` of the repository around the current directory).
    #[arg(long)]
    templates: Option<PathBuf>,
}

/// The templates folder: the one given, else that of the repository around `near` (a specification's folder),
/// else that of the repository around the current directory, else `templates`.
pub(crate) fn templates_dir(explicit: Option<PathBuf>, near: Option<&std::path::Path>) -> PathBuf {
    use fedigen::generate::find_repository;
    explicit.unwrap_or_else(|| {
        let near = near.and_then(|p| std::fs::canonicalize(p).ok());
        let cwd = std::env::current_dir().ok();
        near.iter()
            .chain(cwd.iter())
            .find_map(|dir| find_repository(dir).ok())
            .map_or_else(|| PathBuf::from("templates"), |repo| repo.join("templates"))
    })
}

/// The applications' manifests; a broken manifest is invalid input (exit status 2), every problem reported.
/// `published` refuses drafts (texts still saying TODO), for what is handed on (`fedigen schema`). No templates
/// folder at all is the environment's fault (exit status 3), said with where it was looked for.
pub(crate) fn catalog(templates: &std::path::Path, published: bool) -> Result<Catalog, CliError> {
    if !templates.is_dir() {
        return Err(CliError::environment(format_args!(
            "no application templates at {}: specifications are checked against the manifests in a \
                 `templates/` folder; run inside the repository or pass --templates DIR",
            templates.display()
        )));
    }
    let loaded = if published {
        fedigen::manifest::Manifest::load_published(templates)
    } else {
        fedigen::manifest::Manifest::load_all(templates)
    };
    loaded.map(Catalog::from_manifests).map_err(|e| {
        for problem in &e.problems {
            eprintln!("error: {problem}");
        }
        CliError::reported(Class::InvalidInput)
    })
}

/// Validates a specification; every problem is printed like a compiler error, and the exit status is 2.
pub fn validate(args: ValidateArgs) -> CliResult {
    let templates = templates_dir(args.templates, args.spec.parent());
    let catalog = catalog(&templates, false)?;
    match model::load(&args.spec, &catalog) {
        Ok(spec) => {
            // The provider's SSH host keys beside the specification (NixOps4 needs one per machine).
            let machines = fedigen::deploy::machines(&spec, &catalog);
            match fedigen::deploy::host_keys::deployment_problems(&args.spec, &machines) {
                Err(problems) => {
                    if args.json {
                        let verdict = serde_json::json!({
                            "file": args.spec.display().to_string(),
                            "valid": false,
                            "host_keys": problems,
                        });
                        crate::cli::output::outln!("{verdict}");
                    } else {
                        for problem in &problems {
                            eprintln!("error: {problem}");
                        }
                    }
                    return Err(CliError::reported(Class::InvalidInput));
                }
                Ok(Some(note)) if !args.json => crate::cli::output::info!("note: {note}"),
                Ok(_) => {}
            }
            if args.print {
                let text =
                    serde_json::to_string_pretty(&model::to_json(&spec)).expect("JSON prints");
                // A closed pipe (`| head`) is not an error worth a panic.
                let _ = writeln!(std::io::stdout(), "{text}");
            } else {
                let apps: usize = spec
                    .operators
                    .iter()
                    .map(|o| o.applications.values().filter(|a| a.enable).count())
                    .sum();
                let mut warnings = model::network_warnings(&spec, &catalog);
                warnings.extend(fedigen::deploy::host_keys::stale_keys(
                    &args.spec, &machines,
                ));
                if args.json {
                    let verdict = serde_json::json!({
                        "file": args.spec.display().to_string(),
                        "valid": true,
                        "warnings": warnings,
                        "provider": spec.provider.name,
                        "operators": spec.operators.len(),
                        "applications": apps,
                    });
                    crate::cli::output::outln!("{verdict}");
                    return Ok(Status::Success);
                }
                for warning in &warnings {
                    crate::cli::output::info!("{}: warning: {warning}", args.spec.display());
                }
                crate::cli::output::info!(
                    "{}: valid: provider `{}`, {} operator(s), {apps} application(s)",
                    args.spec.display(),
                    spec.provider.name,
                    spec.operators.len()
                );
            }
            Ok(Status::Success)
        }
        Err(LoadError::Invalid(report)) if args.json => {
            crate::cli::output::outln!("{}", report.to_json());
            Err(CliError::reported(Class::InvalidInput))
        }
        Err(LoadError::Invalid(report)) => {
            eprint!("{}", report.render(crate::cli::output::color_stderr()));
            Err(CliError::reported(Class::InvalidInput))
        }
        Err(e) => {
            if args.json {
                let verdict = serde_json::json!({
                    "file": args.spec.display().to_string(),
                    "valid": false,
                    "error": e.to_string(),
                });
                crate::cli::output::outln!("{verdict}");
            }
            Err(CliError::from(e))
        }
    }
}

/// Prints the JSON Schema of specifications (draft 2020-12), with every application's settings.
pub fn schema(args: SchemaArgs) -> CliResult {
    let catalog = catalog(&templates_dir(args.templates, None), true)?;
    let text = serde_json::to_string_pretty(&model::json_schema(&catalog)).expect("JSON prints");
    let _ = writeln!(std::io::stdout(), "{text}");
    Ok(Status::Success)
}
