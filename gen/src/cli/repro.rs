//! `fedigen repro check|lock` and `fedigen closure diff`: reproducibility before a rollout, as a thin layer over
//! [`fedigen::repro`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::cli::error::{CliError, CliResult, Status};
use fedigen::repro::{
    self, CheckOptions, ClosureDiffOptions, ClosureSource, NixSettings, NixTools,
};

/// The `--help` text on Nix settings, shared by every subcommand that runs Nix.
const SETTINGS_HELP: &str = "\
Nix settings: your own (nix.conf, NIX_CONFIG: build users, remote builders, binary caches, sandbox paths) are \
kept as they are. fedigen adds, for a correct check:
  --option sandbox true            a build outside the sandbox sees this machine, so its result says nothing \
about another machine
  --option sandbox-fallback false  where the sandbox cannot be set up, Nix would build without it and say nothing
Change one with --option NAME VALUE (e.g. --option sandbox relaxed for derivations that need __noChroot); add any \
other Nix setting the same way (--option extra-sandbox-paths /data, --option substitute false). Substitution is \
yours: a first build may come from your binary cache; the rebuild (nix-build --check) never does.";

/// `fedigen repro check --help`, after the options.
const CHECK_HELP: &str = "\
Exit status (fedigen's global 0/2/3, and 1 with a bit per kind of finding, so a script can tell them apart):
  0    everything evaluated purely, matched the lock, rebuilt bit-identically, NAR hashes matched
  2    invalid input: the Nix file does not evaluate, an -A attribute does not exist, the lock is unreadable
  3    the environment lacks something: Nix, its build users, a temporary directory
  odd, at least 5: the check found problems: 1, plus the sum of
       4    a derivation differs from the lock, or is not in it
       8    an output is unreproducible (the rebuild differs)
       16   a build or rebuild failed
       32   an output's NAR hash differs from the lock
       64   a build or rebuild timed out
       128  two evaluations gave different derivations (impure evaluation)
  In a script: `s=$?; [ $s -eq 2 ] || [ $s -eq 3 ]` → could not check; `[ $((s & 1)) -eq 1 ]` → found a problem; \
`[ $((s & 8)) -ne 0 ]` → unreproducible. The values 2 and 3 are never findings: every finding bit is a multiple of 4.

Scope: only the named derivations (-A, or every top-level derivation of the file) are rebuilt; their inputs are \
built or substituted once, not rebuilt. --closure rebuilds every derivation of their closures too (fixed-output \
derivations excepted: Nix checks their hash on every build).";

/// Prove that what was built is what the project team built and tested.
#[derive(Subcommand)]
pub enum ReproCommand {
    /// Evaluate twice, compare with the lock (explaining differences), build and rebuild, compare NAR hashes.
    ///
    /// Evaluates the attributes twice in separate processes (impurity), compares the derivations with the lock
    /// and explains differences down to the root cause, builds, rebuilds with nix-build --check and classifies,
    /// lists the files that differ, and compares NAR hashes with the lock. A table, or --json.
    #[command(after_long_help = format!("{}\n\n{CHECK_HELP}\n\n{SETTINGS_HELP}", crate::cli::help::REPRO_CHECK))]
    Check(CheckArgs),
    /// Evaluate and build, then write the lock that later checks compare with.
    ///
    /// Refuses (exit status 1) an impure evaluation or a failed build: nobody could reproduce such a lock.
    /// Exit status otherwise as for every fedigen command: 0 written, 2 invalid input, 3 the environment lacks
    /// something. The lock records, per attribute, the derivation, each output's path and NAR hash, the
    /// derivation closure and the runtime closure with sizes (for `fedigen closure diff`).
    #[command(after_long_help = format!("{}\n\n{SETTINGS_HELP}", crate::cli::help::REPRO_LOCK))]
    Lock {
        #[command(flatten)]
        target: Target,
        /// Where to write the lock.
        #[arg(short, long, default_value = "repro.lock.json")]
        output: PathBuf,
        /// Record derivations only; build nothing (no NAR hashes, no runtime closure).
        #[arg(long)]
        no_build: bool,
    },
}

/// Nix settings for every Nix call (see `--help`).
#[derive(Args)]
pub struct NixArgs {
    /// Set a Nix setting for every Nix call, as Nix's own --option does (repeatable); replaces fedigen's value of
    /// the same setting.
    #[arg(long = "option", num_args = 2, value_names = ["NAME", "VALUE"], action = clap::ArgAction::Append)]
    options: Vec<String>,
    /// A chroot store (`nix-build --store DIR`) instead of the system store.
    #[arg(long)]
    store: Option<PathBuf>,
}

impl NixArgs {
    fn settings(&self) -> NixSettings {
        let mut s = NixSettings::default();
        for pair in self.options.chunks(2) {
            if let [name, value] = pair {
                s.set(name, value);
            }
        }
        s
    }
}

/// What to check: a Nix file and attributes.
#[derive(Args)]
pub struct Target {
    /// The Nix file: an attribute set of derivations, or a function with defaults for all arguments.
    file: PathBuf,
    /// Attribute paths to check (repeatable); every top-level derivation when omitted. An unknown one is
    /// refused with the names that exist.
    #[arg(short = 'A', long = "attr")]
    attrs: Vec<String>,
    #[command(flatten)]
    nix: NixArgs,
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
    /// Rebuild every derivation of the closures with --check, not only the named ones.
    #[arg(long, conflicts_with = "no_build")]
    closure: bool,
    /// Print the report as JSON (for machines) instead of a table.
    #[arg(long)]
    json: bool,
}

/// Compare what two derivations, outputs, locks or Nix files deploy: packages added, removed, changed and
/// rebuilt, with sizes.
///
/// By default the runtime closures: the built outputs and every store path they refer to (as
/// `nix store diff-closures` and nvd compare them), with per-package and total NAR size changes; a build-only
/// input that changed does not show. Outputs must be in the store: build them first, or pass --build. With
/// --build-time, the derivation closures: everything that is built, build-only inputs included, without sizes.
///
/// OLD and NEW are each a `.drv` path, a built output path (/nix/store/…), a lock file (*.json, *.lock; written
/// by `fedigen repro lock` with a build), or a Nix file (every top-level derivation). Exit status: 0 compared
/// (whatever the differences), 1 a --build failed, 2 invalid input, 3 outputs not built or Nix missing.
#[derive(Args)]
#[command(after_long_help = format!("{}\n\n{SETTINGS_HELP}", crate::cli::help::CLOSURE_DIFF))]
pub struct ClosureDiffArgs {
    /// The old closure: a `.drv` path, an output path, a lock file, or a Nix file.
    old: String,
    /// The new closure, likewise.
    new: String,
    /// Compare derivation closures (what is built, build-only inputs included) instead of runtime closures.
    #[arg(long)]
    build_time: bool,
    /// Build outputs that are not in the store yet (derivations and Nix files).
    #[arg(long, conflicts_with = "build_time")]
    build: bool,
    /// Seconds each --build may take.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
    #[command(flatten)]
    nix: NixArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn options(target: Target) -> CheckOptions {
    let mut opts = CheckOptions::new(target.file);
    opts.attrs = target.attrs;
    opts.settings = target.nix.settings();
    opts.store = target.nix.store;
    opts.timeout = Duration::from_secs(target.timeout);
    opts.progress = crate::cli::output::progress();
    opts
}

/// Runs one `fedigen repro` subcommand.
pub fn run(command: ReproCommand) -> CliResult {
    match command {
        ReproCommand::Check(args) => {
            let mut opts = options(args.target);
            opts.lock = args.lock;
            opts.build = !args.no_build;
            opts.closure = args.closure;
            let report = repro::run_check(&opts)?;
            crate::cli::output::out!(
                "{}",
                if args.json {
                    report.to_json()
                } else {
                    report.render()
                }
            );
            Ok(match u8::try_from(report.exit_code()).unwrap_or(u8::MAX) {
                0 => Status::Success,
                findings => Status::Findings(findings),
            })
        }
        ReproCommand::Lock {
            target,
            output,
            no_build,
        } => {
            let mut opts = options(target);
            opts.build = !no_build;
            repro::run_lock(&opts).and_then(|lock| lock.write(&output))?;
            crate::cli::output::info!("wrote {}", output.display());
            Ok(Status::Success)
        }
    }
}

/// Runs `fedigen closure diff`.
pub fn run_closure_diff(args: ClosureDiffArgs) -> CliResult {
    let mut nix = NixTools::new(args.nix.store.clone());
    nix.settings = args.nix.settings();
    let opts = ClosureDiffOptions {
        build_time: args.build_time,
        build: args.build,
        timeout: Duration::from_secs(args.timeout),
    };
    let diff = repro::closure_diff(
        &ClosureSource::from_arg(&args.old),
        &ClosureSource::from_arg(&args.new),
        &nix,
        &opts,
    )?;
    if args.json {
        let json = serde_json::to_string_pretty(&diff).map_err(CliError::environment)?;
        crate::cli::output::outln!("{json}");
    } else {
        crate::cli::output::out!("{}", diff.render());
    }
    Ok(Status::Success)
}

#[cfg(test)]
mod tests {
    /// fedigen's own settings are all explained in [`super::SETTINGS_HELP`].
    #[test]
    fn every_forced_setting_is_in_the_help() {
        for (name, value, _) in fedigen::repro::FORCED_OPTIONS {
            assert!(
                super::SETTINGS_HELP.contains(&format!("--option {name} {value}")),
                "{name}"
            );
        }
    }
}
