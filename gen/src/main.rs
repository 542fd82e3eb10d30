//! The `fedigen` command line. Each subcommand is a thin shell over the library; `--help` is the manual.

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

mod cli;

/// Generate, prove and test NixOS modules and deployments for the Fediversity project.
///
/// Exit status: 0 success; 1 a check found a problem; 2 invalid input (nothing was written); 3 the environment
/// lacks something (for example Nix is not installed).
#[derive(Parser)]
#[command(name = "fedigen", version, about, long_about, after_long_help = EXIT_STATUS)]
struct Cli {
    /// Print only errors and the output asked for: no progress notes, no progress bars.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// When to colour diagnostics and help: `auto` (on a terminal, unless `NO_COLOR` is set), `always`,
    /// `never`.
    #[arg(long, global = true, value_enum, default_value_t = cli::output::ColorChoice::Auto)]
    color: cli::output::ColorChoice,
    #[command(subcommand)]
    command: Command,
}

/// The exit statuses every subcommand shares, shown after `fedigen --help`.
const EXIT_STATUS: &str = "\
Exit status: 0 success; 1 a check found a problem; 2 invalid input (nothing was written); 3 the environment lacks something (for example Nix is not installed). `fedigen repro check` adds its own findings, see `fedigen repro --help`. Every subcommand's --help shows examples and its exit statuses.

Environment: NO_COLOR (set and not empty) turns colour off, as --color never does.";

#[derive(Subcommand)]
enum Command {
    /// Regenerate modules, deployments and VM tests from the templates and the specification; `--check` diffs.
    #[command(after_long_help = cli::help::GENERATE)]
    Generate(cli::generate::GenerateArgs),
    /// Change or read one attribute of a hand-written Nix file, or add or remove one list item, keeping every
    /// other byte as it is.
    ///
    /// The path is looked up statically through attribute sets at any depth (`a.b = …;` and `a = { b = …; };`
    /// alike), function bodies (`{ config, lib, ... }: { … }`, a flake's `outputs = { self, … }: …`), `let …
    /// in`, `with`, `lib.mkIf`, `mkDefault`, `mkForce`, `mkOverride`, `mkBefore`, `mkAfter`, `mkOrder` bodies
    /// and the sets of a `lib.mkMerge` list, and the set-literal argument of other calls (`nixosSystem { … }`).
    /// Paths are written as in Nix:
    /// `services.nginx.virtualHosts."example.org".root`. New values are JSON, printed by fedigen's emitter at
    /// the indentation of the place they land (or, with `--nix`, a Nix expression as written).
    ///
    /// Refused, with the reason and line:column, and nothing written (exit status 2): a computed name on the
    /// way (`${x}`), an inherited attribute, a value on the way that is not a set literal (`import ./x.nix`,
    /// `a // b`), a list that is not a list literal (`a ++ b`), a path defined in several places (but `get`
    /// merges plain data), a new attribute that could go into several sets, a file fedigen generated (unless
    /// --force: the next `fedigen generate` would undo the edit). A path that is not defined (get, unset) or an
    /// item that is not in the list (remove) exits with 1. The file is replaced atomically, keeping its
    /// permissions.
    #[command(after_long_help = cli::edit::EXAMPLES)]
    Edit(cli::edit::EditArgs),
    /// Scaffold and check application templates.
    #[command(subcommand)]
    Template(cli::template::TemplateCommand),
    /// Reproducibility before a rollout: evaluate twice, compare with a lock, build twice, compare hashes.
    #[command(subcommand)]
    Repro(cli::repro::ReproCommand),
    /// Compare two closures: packages added, removed, changed and rebuilt, with versions and sizes.
    #[command(subcommand)]
    Closure(ClosureCommand),
    /// Convert between Nix and JSON, and prove Nix files.
    #[command(subcommand)]
    Nix(cli::nix::NixCommand),
    /// Check a specification (provider and operators) against the model and the templates' manifests.
    #[command(after_long_help = cli::help::VALIDATE)]
    Validate(cli::model::ValidateArgs),
    /// Show what provisioning on Proxmox would create, change or destroy against the previous generation
    /// (`deployments/tofu/main.tf.json`), field by field; not `tofu plan`: Proxmox is not asked.
    #[command(after_long_help = cli::help::PROVISION)]
    Provision(cli::provision::ProvisionArgs),
    /// Print the JSON Schema (draft 2020-12) of specifications, with every application's settings.
    #[command(after_long_help = cli::help::SCHEMA)]
    Schema(cli::model::SchemaArgs),
    /// Provision Garage object storage: a cluster's layout, buckets and keys (`apply`), node keys (`node-key`).
    #[command(subcommand)]
    Storage(cli::storage::StorageCommand),
    /// Move an operator between providers: run a migration job (resumable), verify it, roll it back.
    #[command(subcommand)]
    Migrate(cli::migrate::MigrateCommand),
    /// Print a shell completion script for fedigen (bash, zsh, fish, elvish, powershell) to standard output.
    #[command(after_long_help = cli::help::COMPLETIONS)]
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum ClosureCommand {
    Diff(cli::repro::ClosureDiffArgs),
}

fn main() -> ExitCode {
    // The colour of clap's own messages must be known before parsing: read `--color` and NO_COLOR first.
    let color = color_from_args(std::env::args_os());
    let matches = Cli::command()
        .color(cli::output::clap_color(color))
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    cli::output::init(cli.quiet, cli.color);
    let result = match cli.command {
        Command::Generate(args) => cli::generate::run(args),
        Command::Edit(args) => cli::edit::run(args),
        Command::Template(command) => cli::template::run(command),
        Command::Nix(command) => cli::nix::run(command),
        Command::Repro(command) => cli::repro::run(command),
        Command::Closure(ClosureCommand::Diff(args)) => cli::repro::run_closure_diff(args),
        Command::Validate(args) => cli::model::validate(args),
        Command::Schema(args) => cli::model::schema(args),
        Command::Provision(args) => cli::provision::run(args),
        Command::Storage(command) => cli::storage::run(command),
        Command::Migrate(command) => cli::migrate::run(command),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "fedigen", &mut script);
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
            Ok(cli::error::Status::Success)
        }
    };
    // The one exit point: the outcome's class decides the status (see `cli::error`).
    ExitCode::from(cli::error::exit_status(result))
}

/// The `--color` value among the raw arguments (the last one wins, as clap decides), for clap's own output.
fn color_from_args(args: impl Iterator<Item = std::ffi::OsString>) -> cli::output::ColorChoice {
    use clap::ValueEnum as _;
    let args: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
    let mut choice = cli::output::ColorChoice::Auto;
    for (i, arg) in args.iter().enumerate() {
        let value = match arg.strip_prefix("--color") {
            Some("") => args.get(i + 1).map(String::as_str),
            Some(rest) => rest.strip_prefix('='),
            None => None,
        };
        if let Some(parsed) = value.and_then(|v| cli::output::ColorChoice::from_str(v, true).ok()) {
            choice = parsed;
        }
    }
    choice
}
