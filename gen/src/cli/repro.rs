//! `fedigen repro check|lock` and `fedigen closure diff`: reproducibility before a rollout, as a thin layer over
//! [`fedigen::repro`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::fail;
use fedigen::repro::{self, CheckOptions, ClosureSource, Nix};

/// Exit status when a check could not run at all (Nix missing, a file unreadable, evaluation failed).
const EXIT_NOT_RUN: u8 = 1;

/// Prove that what was built is what the project team built and tested.
///
/// Exit status of `check`, a sum of: 2 impure evaluation; 4 differs from (or missing in) the lock;
/// 8 unreproducible output; 16 a build failed; 32 an output's NAR hash differs from the lock; 64 timed out.
/// 0 means reproducible and matching the lock; 1 means the check could not run.
#[derive(Subcommand)]
pub enum ReproCommand {
    /// Evaluate twice, compare with the lock (explaining differences), build and rebuild, compare NAR hashes.
    #[command(after_long_help = crate::cli::help::REPRO_CHECK)]
    Check(CheckArgs),
    /// Evaluate and build, then write the lock that later checks compare with.
    #[command(after_long_help = crate::cli::help::REPRO_LOCK)]
    Lock {
        #[command(flatten)]
        target: Target,
        /// Where to write the lock.
        #[arg(short, long, default_value = "repro.lock.json")]
        output: PathBuf,
        /// Record derivations only; build nothing (no NAR hashes).
        #[arg(long)]
        no_build: bool,
    },
}

/// What to check: a Nix file and attributes.
#[derive(Args)]
pub struct Target {
    /// The Nix file: an attribute set of derivations, or a function with defaults for all arguments.
    file: PathBuf,
    /// Attribute paths to check (repeatable); every top-level derivation when omitted.
    #[arg(short = 'A', long = "attr")]
    attrs: Vec<String>,
    /// A chroot store (`nix-build --store DIR`) instead of the system store.
    #[arg(long)]
    store: Option<PathBuf>,
    /// Seconds each build, and each rebuild, may take.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
}

/// Arguments of `fedigen repro check`.
#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    target: Target,
    /// The lock to compare with.
    #[arg(long)]
    lock: Option<PathBuf>,
    /// Evaluate and compare only; build nothing.
    #[arg(long)]
    no_build: bool,
    /// Print the report as JSON (for machines) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Compare the closures of two derivations, two locks, or a lock and a Nix file.
#[derive(Args)]
pub struct ClosureDiffArgs {
    /// The old closure: a `.drv` path, a lock file, or a Nix file.
    old: String,
    /// The new closure, likewise.
    new: String,
    /// A chroot store instead of the system store.
    #[arg(long)]
    store: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn options(target: Target) -> CheckOptions {
    let mut opts = CheckOptions::new(target.file);
    opts.attrs = target.attrs;
    opts.store = target.store;
    opts.timeout = Duration::from_secs(target.timeout);
    opts.progress = crate::cli::output::progress();
    opts
}

/// Runs one `fedigen repro` subcommand.
pub fn run(command: ReproCommand) -> ExitCode {
    match command {
        ReproCommand::Check(args) => {
            let mut opts = options(args.target);
            opts.lock = args.lock;
            opts.build = !args.no_build;
            match repro::run_check(&opts) {
                Ok(report) => {
                    print!(
                        "{}",
                        if args.json {
                            report.to_json()
                        } else {
                            report.render()
                        }
                    );
                    ExitCode::from(u8::try_from(report.exit_code()).unwrap_or(u8::MAX))
                }
                Err(e) => fail(EXIT_NOT_RUN, e),
            }
        }
        ReproCommand::Lock {
            target,
            output,
            no_build,
        } => {
            let mut opts = options(target);
            opts.build = !no_build;
            match repro::run_lock(&opts).and_then(|lock| lock.write(&output)) {
                Ok(()) => {
                    crate::cli::output::info!("wrote {}", output.display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(EXIT_NOT_RUN, e),
            }
        }
    }
}

/// Runs `fedigen closure diff`.
pub fn run_closure_diff(args: ClosureDiffArgs) -> ExitCode {
    let nix = Nix::new(args.store);
    match repro::closure_diff(
        &ClosureSource::from_arg(&args.old),
        &ClosureSource::from_arg(&args.new),
        &nix,
    ) {
        Ok(diff) => {
            if args.json {
                match serde_json::to_string_pretty(&diff) {
                    Ok(json) => println!("{json}"),
                    Err(e) => return fail(EXIT_NOT_RUN, e),
                }
            } else {
                print!("{}", diff.render());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_NOT_RUN, e),
    }
}
