//! `fedigen template new|check|import`: scaffold an application template (empty, or from an upstream NixOS
//! module's option declarations), and prove templates by rendering them.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::Value;

use crate::cli::error::{Class, CliError, CliResult, Status};
use fedigen::eval::{Evaluator, Source};
use fedigen::generate::find_repository;
use fedigen::manifest::Manifest;
use fedigen::nix::verify;
use fedigen::template::Templates;
use fedigen::template::scaffold;

/// Work on application templates (`templates/<app>/`).
#[derive(Subcommand)]
pub enum TemplateCommand {
    /// Scaffold `templates/<app>/` with a manifest and a module template that render, marked `TODO` where they
    /// must be finished: `template check --allow-drafts` passes them, `template check` once the TODOs are gone.
    #[command(after_long_help = crate::cli::help::TEMPLATE_NEW)]
    New {
        /// The application's name, such as `lemmy`: lower-case letters, digits and `-`, starting with a letter (it
        /// becomes its folder, `modules/<app>.nix`, `fediversity.<app>`, and part of host and bucket names). Names of
        /// what `fedigen generate` writes itself (`fediversity`, `default`, `lib`, `deployment-…`, the shared
        /// options such as `domain`) and Nix keywords are reserved.
        app: String,
        /// The repository (default: the current directory or the nearest parent with `templates/`).
        #[arg(long)]
        repo: Option<PathBuf>,
    },
    /// Render templates with their defaults and with edge values of every option (bounds, every enum value,
    /// adversarial strings), and prove each rendering: rnix, nixfmt and Nix's own parser.
    ///
    /// A template or manifest still holding a `TODO` (as `template new` and `template import` write them) is a
    /// draft: reported at each TODO's line and column, and the check fails unless `--allow-drafts`. `fedigen
    /// schema` and `fedigen generate` refuse to publish a manifest whose texts say TODO. Exit status: 0 proven,
    /// 1 a template does not render or its result is not valid Nix (or a TODO is left), 2 a manifest is invalid.
    #[command(after_long_help = crate::cli::help::TEMPLATE_CHECK)]
    Check {
        /// The application to check; all when omitted.
        app: Option<String>,
        /// Accept TODO markers (reported as notes): for checking a template while it is being written.
        #[arg(long)]
        allow_drafts: bool,
        /// The repository (default: the current directory or the nearest parent with `templates/`).
        #[arg(long)]
        repo: Option<PathBuf>,
        /// Print the verdict as JSON on standard output, for CI jobs: `{"ok", "templates", "renderings",
        /// "drafts", "problems": [{"message"}]}`, or for invalid manifests `{"ok": false, "problems": [{"file",
        /// "line", "column", "message"}]}`. Each message starts with its file:line:column. Same exit status.
        #[arg(long)]
        json: bool,
        /// A nixpkgs checkout (full or partial; default: FEDIGEN_NIXPKGS) in which each manifest's
        /// `[state] upstream_module` is read statically: a directory the upstream module keeps
        /// (`StateDirectory=`, a `dataDir` default) that no `[state.directories]` entry holds is a problem.
        #[arg(long, value_name = "DIR")]
        nixpkgs: Option<PathBuf>,
    },
    /// Write `templates/<app>/manifest.toml` from the option declarations of an existing NixOS module (such
    /// as nixpkgs' `nixos/modules/services/web-apps/foo.nix`), read statically: the module is never evaluated.
    ///
    /// Options are translated where the manifest's types can say the same thing; everything else is printed
    /// as `file:line:col: warning: …` and listed in the skeleton as a TODO. Names below the shared prefix
    /// are joined in camelCase (`services.foo.database.host` → `databaseHost`). Also writes a module.nix.hbs
    /// to fill in, when there is none. Exit status 2 when the module does not parse or declares nothing.
    #[command(after_long_help = crate::cli::help::TEMPLATE_IMPORT)]
    Import {
        /// The NixOS module to read.
        module: PathBuf,
        /// The application's name (default: the last component of the option prefix, `services.foo` → `foo`).
        #[arg(long)]
        name: Option<String>,
        /// The repository (default: the current directory or the nearest parent with `templates/`).
        #[arg(long)]
        repo: Option<PathBuf>,
        /// Print the manifest to standard output instead of writing files.
        #[arg(long)]
        stdout: bool,
        /// Replace an existing manifest.toml.
        #[arg(long)]
        force: bool,
    },
}

/// Runs one `fedigen template` subcommand.
pub fn run(command: TemplateCommand) -> CliResult {
    match command {
        TemplateCommand::New { app, repo } => new(&app, repo),
        TemplateCommand::Check {
            app,
            repo,
            allow_drafts,
            json,
            nixpkgs,
        } => check(app.as_deref(), repo, allow_drafts, json, nixpkgs),
        TemplateCommand::Import {
            module,
            name,
            repo,
            stdout,
            force,
        } => import(&module, name.as_deref(), repo, stdout, force),
    }
}

fn repository(repo: Option<PathBuf>) -> Result<PathBuf, CliError> {
    let start =
        repo.unwrap_or_else(|| std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")));
    Ok(find_repository(&start)?)
}

fn new(app: &str, repo: Option<PathBuf>) -> CliResult {
    let repo = repository(repo)?;
    scaffold::create(&repo, app)?;
    crate::cli::output::info!(
        "created templates/{app}/manifest.toml and templates/{app}/module.nix.hbs;\n\
         fill them in (`fedigen template check --allow-drafts {app}` while you do), finish every TODO, then run \
         `fedigen template check {app}` and `fedigen generate`"
    );
    Ok(Status::Success)
}

fn check(
    app: Option<&str>,
    repo: Option<PathBuf>,
    allow_drafts: bool,
    json: bool,
    nixpkgs: Option<PathBuf>,
) -> CliResult {
    let repo = repository(repo)?;
    let manifests = match Manifest::load_all(&repo.join("templates")) {
        Ok(all) => all
            .into_iter()
            .filter(|m| app.is_none_or(|a| m.application.name == a))
            .collect::<Vec<_>>(),
        Err(e) => {
            if json {
                let problems: Vec<Value> = e
                    .problems
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "file": p.file.display().to_string(),
                            "line": p.location.map(|l| l.line),
                            "column": p.location.map(|l| l.column),
                            "message": p.message,
                        })
                    })
                    .collect();
                crate::cli::output::outln!(
                    "{}",
                    serde_json::json!({ "ok": false, "problems": problems })
                );
            }
            for problem in &e.problems {
                eprintln!("error: {problem}");
            }
            return Err(CliError::reported(Class::InvalidInput));
        }
    };
    if manifests.is_empty() {
        return Err(CliError::invalid(format_args!(
            "no template named `{}`",
            app.unwrap_or("*")
        )));
    }
    let templates = Templates::load(&repo, &manifests).map_err(CliError::invalid)?;
    // Each problem once, however many renderings show it (a syntax error in the template's text is in all).
    let mut problems: Vec<String> = Vec::new();
    let mut report = |problem: String| {
        if !problems.contains(&problem) {
            problems.push(problem);
        }
    };
    let mut drafts = 0usize;
    for manifest in &manifests {
        let app = &manifest.application.name;
        for name in ["manifest.toml", "module.nix.hbs"] {
            let relative = Path::new("templates").join(app).join(name);
            let text = std::fs::read_to_string(repo.join(&relative)).unwrap_or_default();
            for (todo, _) in fedigen::manifest::todo_markers(&relative, &text) {
                drafts += 1;
                if allow_drafts {
                    crate::cli::output::info!("note: {todo} (allowed by --allow-drafts)");
                } else {
                    report(format!(
                        "{todo}: the template is a draft; finish it, or pass --allow-drafts while writing it"
                    ));
                }
            }
        }
    }
    let nixpkgs = nixpkgs.or_else(|| {
        std::env::var_os("FEDIGEN_NIXPKGS")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    for manifest in &manifests {
        for problem in upstream_state(&repo, manifest, nixpkgs.as_deref()) {
            report(problem);
        }
    }
    let mut sources = Vec::new();
    let mut renderings = 0usize;
    for manifest in &manifests {
        let app = &manifest.application.name;
        for (i, variant) in variants(manifest).iter().enumerate() {
            renderings += 1;
            let what = if i == 0 {
                "defaults".to_owned()
            } else {
                format!("edge values, round {i}")
            };
            match templates.render_module(variant, None) {
                Ok(text) => {
                    let name = format!("templates/{app}/module.nix.hbs rendered with {what}");
                    if let Err(e) = verify::check_canonical(&name, &text) {
                        report(e.to_string());
                    }
                    sources.push(Source { name, text });
                }
                Err(e) => report(e.to_string()),
            }
        }
    }
    let nix = Evaluator::locate().map_err(CliError::environment)?;
    for (source, result) in sources.iter().zip(nix.parse(&sources)) {
        if let Err(e) = result {
            report(format!("{}: Nix does not parse it: {e}", source.name));
        }
    }
    if json {
        let names: Vec<&str> = manifests
            .iter()
            .map(|m| m.application.name.as_str())
            .collect();
        let listed: Vec<Value> = problems
            .iter()
            .map(|p| serde_json::json!({ "message": p }))
            .collect();
        crate::cli::output::outln!(
            "{}",
            serde_json::json!({
                "ok": problems.is_empty(),
                "templates": names,
                "renderings": renderings,
                "drafts": drafts,
                "problems": listed,
            })
        );
    }
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    if !problems.is_empty() {
        eprintln!(
            "{} problem(s) in {} template(s) ({} rendering(s))",
            problems.len(),
            manifests.len(),
            renderings
        );
        Ok(Status::Problems)
    } else {
        crate::cli::output::info!(
            "{} template(s) proven in {renderings} renderings (defaults and edge values){}",
            manifests.len(),
            if drafts > 0 {
                format!("; {drafts} TODO(s) left")
            } else {
                String::new()
            }
        );
        Ok(Status::Success)
    }
}

/// The state `manifest`'s upstream module keeps that its `[state]` does not declare, read from the nixpkgs
/// checkout when there is one (a note says what was not checked otherwise).
fn upstream_state(repo: &Path, manifest: &Manifest, nixpkgs: Option<&Path>) -> Vec<String> {
    let app = &manifest.application.name;
    let relative = Path::new("templates").join(app).join("manifest.toml");
    // Without a checkout (or an upstream module named), nothing is compared: `--nixpkgs` says so in --help.
    let (Some(module), Some(nixpkgs)) = (&manifest.state.upstream_module, nixpkgs) else {
        return Vec::new();
    };
    let path = nixpkgs.join(module);
    let Ok(text) = std::fs::read_to_string(&path) else {
        crate::cli::output::info!(
            "note: {}: {} is not in the nixpkgs checkout: its state is not compared",
            relative.display(),
            path.display()
        );
        return Vec::new();
    };
    let manifest_text = std::fs::read_to_string(repo.join(&relative)).unwrap_or_default();
    fedigen::state::undeclared(
        &manifest.state,
        &relative.display().to_string(),
        &manifest_text,
        &path.display().to_string(),
        &text,
    )
}

/// The manifest as written, then with its options' defaults replaced by edge values, round-robin.
fn variants(manifest: &Manifest) -> Vec<Manifest> {
    let samples: Vec<(String, Vec<Value>)> = manifest
        .options
        .iter()
        .map(|(name, spec)| (name.clone(), spec.ty.samples()))
        .collect();
    let rounds = samples.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
    let mut variants = vec![manifest.clone()];
    for round in 0..rounds {
        let mut variant = manifest.clone();
        for (name, values) in &samples {
            if !values.is_empty() {
                variant.options.get_mut(name).expect("same names").default =
                    Some(values[round % values.len()].clone());
            }
        }
        variants.push(variant);
    }
    variants
}

fn import(
    module: &Path,
    name: Option<&str>,
    repo: Option<PathBuf>,
    stdout: bool,
    force: bool,
) -> CliResult {
    let text = std::fs::read_to_string(module).map_err(|e| CliError::io("read", module, e))?;
    let file = module.display().to_string();
    let imported = fedigen::import::import_module(&file, &text, name).map_err(CliError::invalid)?;
    eprint!("{}", imported.report());
    if stdout {
        crate::cli::output::out!("{}", imported.manifest_text);
        crate::cli::output::info!("{}", imported.summary());
        return Ok(Status::Success);
    }
    let repo = repository(repo)?;
    match scaffold::write_imported(&repo, &imported, force) {
        Ok(written) => {
            crate::cli::output::info!("{}", imported.summary());
            crate::cli::output::info!(
                "wrote {}{}; review its TODOs, then run `fedigen template check {}`",
                written.manifest.display(),
                written
                    .module
                    .map(|hbs| format!(" and {}", hbs.display()))
                    .unwrap_or_default(),
                imported.name
            );
            Ok(Status::Success)
        }
        Err(e) => Err(e.into()),
    }
}
