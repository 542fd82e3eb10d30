//! `fedigen template new|check|import`: scaffold an application template (empty, or from an upstream NixOS
//! module's option declarations), and prove templates by rendering them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use crate::{EXIT_CHECK_FAILED, EXIT_ENVIRONMENT, EXIT_INVALID_INPUT, fail};
use fedigen::eval::{Nix, Source};
use fedigen::generate::find_repository;
use fedigen::manifest::Manifest;
use fedigen::nix::verify;
use fedigen::template::Templates;

/// Work on application templates (`templates/<app>/`).
#[derive(Subcommand)]
pub enum TemplateCommand {
    /// Scaffold `templates/<app>/` with a manifest and a module template that pass `template check`.
    #[command(after_long_help = crate::cli::help::TEMPLATE_NEW)]
    New {
        /// The application's name: a Nix identifier such as `lemmy`; also its folder and `fediversity.<app>`.
        app: String,
        /// The repository (default: the current directory or the nearest parent with `templates/`).
        #[arg(long)]
        repo: Option<PathBuf>,
    },
    /// Render templates with their defaults and with edge values of every option (bounds, every enum value,
    /// adversarial strings), and prove each rendering: rnix, nixfmt and Nix's own parser.
    #[command(after_long_help = crate::cli::help::TEMPLATE_CHECK)]
    Check {
        /// The application to check; all when omitted.
        app: Option<String>,
        /// The repository (default: the current directory or the nearest parent with `templates/`).
        #[arg(long)]
        repo: Option<PathBuf>,
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
pub fn run(command: TemplateCommand) -> ExitCode {
    match command {
        TemplateCommand::New { app, repo } => new(&app, repo),
        TemplateCommand::Check { app, repo } => check(app.as_deref(), repo),
        TemplateCommand::Import {
            module,
            name,
            repo,
            stdout,
            force,
        } => import(&module, name.as_deref(), repo, stdout, force),
    }
}

fn repository(repo: Option<PathBuf>) -> Result<PathBuf, ExitCode> {
    let start =
        repo.unwrap_or_else(|| std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")));
    find_repository(&start).map_err(|e| fail(EXIT_INVALID_INPUT, e))
}

fn new(app: &str, repo: Option<PathBuf>) -> ExitCode {
    let repo = match repository(repo) {
        Ok(repo) => repo,
        Err(code) => return code,
    };
    if fedigen::nix::Ident::new(app).is_err() || app.starts_with('_') {
        return fail(
            EXIT_INVALID_INPUT,
            format_args!(
                "`{app}` cannot name an application: use letters, digits and `-`, starting with a letter"
            ),
        );
    }
    let dir = repo.join("templates").join(app);
    if dir.exists() {
        return fail(
            EXIT_INVALID_INPUT,
            format_args!("{}: exists already; pick another name", dir.display()),
        );
    }
    let title = fedigen::import::title_case(app);
    let manifest = format!(
        r#"# The manifest of {title}: its typed options, what it needs, its secrets, resources, ports and health checks.
# Option types: bool, int (min, max), float, str (pattern, max_length), enum (values), port, email,
# list and attrs (of = "<type>"). Read the upstream NixOS module for the names you map these onto.

[application]
name = "{app}"
title = "{title}"
description = "TODO: one sentence about {title}."
upstream = "services.{app}"
subdomain = "{app}"

[options.openRegistration]
type = "bool"
default = false
description = "Whether anyone may create an account."

[needs]
postgresql = false
redis = false
smtp = false
s3_buckets = []

[resources]
cores = 1
memory_mib = 1024
disk_gib = 10

[[ports]]
name = "https"
port = 443
public = true

[health]
units = ["{app}.service", "nginx.service"]
tcp_ports = [443]

[[health.http]]
path = "/"
status = 200
"#
    );
    let module = module_template(app, &format!("services.{app}"));
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("manifest.toml"), manifest))
        .and_then(|()| std::fs::write(dir.join("module.nix.hbs"), module));
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&dir);
        return fail(EXIT_ENVIRONMENT, format_args!("{}: {e}", dir.display()));
    }
    eprintln!(
        "created templates/{app}/manifest.toml and templates/{app}/module.nix.hbs;\n\
         fill them in, then run `fedigen template check {app}` and `fedigen generate`"
    );
    ExitCode::SUCCESS
}

fn check(app: Option<&str>, repo: Option<PathBuf>) -> ExitCode {
    let repo = match repository(repo) {
        Ok(repo) => repo,
        Err(code) => return code,
    };
    let manifests = match Manifest::load_all(&repo.join("templates")) {
        Ok(all) => all
            .into_iter()
            .filter(|m| app.is_none_or(|a| m.application.name == a))
            .collect::<Vec<_>>(),
        Err(e) => return fail(EXIT_INVALID_INPUT, e),
    };
    if manifests.is_empty() {
        return fail(
            EXIT_INVALID_INPUT,
            format_args!("no template named `{}`", app.unwrap_or("*")),
        );
    }
    let templates = match Templates::load(&repo, &manifests) {
        Ok(t) => t,
        Err(e) => return fail(EXIT_INVALID_INPUT, e),
    };
    let mut sources = Vec::new();
    let mut failed = 0usize;
    for manifest in &manifests {
        let app = &manifest.application.name;
        for (i, variant) in variants(manifest).iter().enumerate() {
            match templates.render_module(variant, None) {
                Ok(text) => {
                    let name = format!("templates/{app}/module.nix.hbs (rendering {i})");
                    if let Err(e) = verify::check_canonical(&name, &text) {
                        eprintln!("error: {e}");
                        failed += 1;
                    }
                    sources.push(Source { name, text });
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    failed += 1;
                }
            }
        }
    }
    let nix = match Nix::locate() {
        Ok(nix) => nix,
        Err(e) => return fail(EXIT_ENVIRONMENT, e),
    };
    for (source, result) in sources.iter().zip(nix.parse(&sources)) {
        if let Err(e) = result {
            eprintln!("error: {}: Nix does not parse it: {e}", source.name);
            failed += 1;
        }
    }
    if failed > 0 {
        eprintln!("{failed} problem(s) in {} rendering(s)", sources.len());
        ExitCode::from(EXIT_CHECK_FAILED)
    } else {
        eprintln!(
            "{} template(s) proven in {} renderings (defaults and edge values)",
            manifests.len(),
            sources.len()
        );
        ExitCode::SUCCESS
    }
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

/// The module template a new application starts from: it renders and passes `template check` as it is.
fn module_template(app: &str, upstream: &str) -> String {
    format!(
        r#"{{{{! Map fediversity.{app} onto the upstream module {{{upstream}}}. Values reach the output only through
    typed helpers: nix-str, nix-value, nix-attr, nix-path, nix-options. }}}}
{{ config, lib, ... }}:
let
  cfg = config.fediversity.{app};
  host = "${{cfg.subdomain}}.${{config.fediversity.domain}}";
in
{{
  options.fediversity.{app} = {{{{nix-options}}}};

  config = lib.mkIf cfg.enable {{
    {{{{> nginx-acme}}}}
    {upstream} = {{
      enable = true;
      # TODO: map the options onto the upstream module, e.g. `domain = host;`.
    }};
    services.nginx.virtualHosts.${{host}} = {{
      enableACME = true;
      forceSSL = true;
    }};
  }};
}}
"#
    )
}

fn import(
    module: &Path,
    name: Option<&str>,
    repo: Option<PathBuf>,
    stdout: bool,
    force: bool,
) -> ExitCode {
    let text = match std::fs::read_to_string(module) {
        Ok(text) => text,
        Err(e) => return fail(EXIT_ENVIRONMENT, format_args!("{}: {e}", module.display())),
    };
    let file = module.display().to_string();
    let imported = match fedigen::import::import_module(&file, &text, name) {
        Ok(imported) => imported,
        Err(e) => return fail(EXIT_INVALID_INPUT, e),
    };
    eprint!("{}", imported.report());
    if stdout {
        print!("{}", imported.manifest_text);
        eprintln!("{}", imported.summary());
        return ExitCode::SUCCESS;
    }
    let repo = match repository(repo) {
        Ok(repo) => repo,
        Err(code) => return code,
    };
    let dir = repo.join("templates").join(&imported.name);
    let manifest = dir.join("manifest.toml");
    if manifest.exists() && !force {
        return fail(
            EXIT_INVALID_INPUT,
            format_args!(
                "{}: exists already; pass --force to replace it, or --stdout to compare",
                manifest.display()
            ),
        );
    }
    let hbs = dir.join("module.nix.hbs");
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| write_atomically(&manifest, &imported.manifest_text))
        .and_then(|()| {
            if hbs.exists() {
                Ok(false)
            } else {
                write_atomically(&hbs, &module_template(&imported.name, &imported.upstream))
                    .map(|()| true)
            }
        });
    match written {
        Ok(scaffolded) => {
            eprintln!("{}", imported.summary());
            eprintln!(
                "wrote {}{}; review its TODOs, then run `fedigen template check {}`",
                manifest.display(),
                if scaffolded {
                    format!(" and {}", hbs.display())
                } else {
                    String::new()
                },
                imported.name
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_ENVIRONMENT, format_args!("{}: {e}", dir.display())),
    }
}

/// Writes a file whole or not at all: a temporary file in the same folder, renamed over the target.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(text.as_bytes())?;
    temp.as_file().sync_all()?;
    temp.persist(path).map(drop).map_err(|e| e.error)
}
