//! `fedigen nix …`: convert between Nix and JSON with the emitter and the real evaluator, and prove Nix files.

use std::io::Read as _;
use std::path::PathBuf;

use clap::Subcommand;

use crate::cli::error::{Class, CliError, CliResult, Status};
use fedigen::emit::{Verification, emit_file};
use fedigen::eval::Evaluator;
use fedigen::io_error::IoError;
use fedigen::nix::value::{DataPolicy, from_json};
use fedigen::nix::verify;

#[derive(Subcommand)]
pub enum NixCommand {
    /// Print a nixfmt-formatted Nix expression that evaluates to exactly the given JSON value.
    ///
    /// Object keys are sorted the way Nix sorts attribute names; strings are escaped exactly; integers must fit
    /// in 64 bits. Keys that would turn data into code for Nix or the NixOS module system (`_type`,
    /// `__functor`, `__toString`, `__functionArgs`, `outPath`, `type = "derivation"`) are refused unless
    /// `--allow-special-attributes` is given. Every problem is reported with its JSON path; exit status 2.
    #[command(after_long_help = crate::cli::help::NIX_FROM_JSON)]
    FromJson {
        /// The JSON file to read; `-` or nothing reads standard input.
        file: Option<PathBuf>,
        /// Let special attribute names through as plain data.
        #[arg(long)]
        allow_special_attributes: bool,
        /// How much to prove about the output before printing it.
        #[arg(long, value_enum, default_value_t = VerifyArg::Syntax)]
        verify: VerifyArg,
    },
    /// Evaluate a Nix file strictly with the real Nix evaluator and print the value as JSON.
    ///
    /// Needs `nix-instantiate` on PATH. Nix 2.8 prints floats with six significant digits.
    #[command(after_long_help = crate::cli::help::NIX_TO_JSON)]
    ToJson {
        /// The Nix file to evaluate.
        file: PathBuf,
        /// Stop Nix after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Prove Nix files: rnix parses them, Nix's own parser accepts them, and they are nixfmt-canonical.
    ///
    /// Every file is checked and every problem reported (file:line:column); exit status 1 if any failed.
    #[command(after_long_help = crate::cli::help::NIX_CHECK)]
    Check {
        /// The files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Skip the nixfmt layout check (only parse).
        #[arg(long)]
        syntax_only: bool,
    },
}

/// The values of `nix from-json --verify`: the command line's face of [`Verification`], so that the library
/// needs no clap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyArg {
    /// Parse it with rnix (always done; about as fast as printing).
    Syntax,
    /// Also require it to be exactly what nixfmt makes of it (about ten times slower).
    Canonical,
}

impl From<VerifyArg> for Verification {
    fn from(arg: VerifyArg) -> Self {
        match arg {
            VerifyArg::Syntax => Verification::Syntax,
            VerifyArg::Canonical => Verification::Canonical,
        }
    }
}

/// Runs one `fedigen nix` subcommand.
pub fn run(command: NixCommand) -> CliResult {
    match command {
        NixCommand::FromJson {
            file,
            allow_special_attributes,
            verify,
        } => nix_from_json(file, allow_special_attributes, verify.into()),
        NixCommand::ToJson { file, timeout } => nix_to_json(&file, timeout),
        NixCommand::Check { files, syntax_only } => nix_check(&files, syntax_only),
    }
}

fn nix_from_json(
    file: Option<PathBuf>,
    allow_special: bool,
    verification: Verification,
) -> CliResult {
    let (name, text) = match file.filter(|f| f.as_os_str() != "-") {
        // An unreadable input file is invalid input here (exit status 2, as `--help` says).
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(text) => (path.display().to_string(), text),
            Err(e) => return Err(CliError::invalid(IoError::new("read", path, e))),
        },
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::io("read", "standard input", e))?;
            ("<stdin>".to_owned(), text)
        }
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        CliError::invalid(format_args!(
            "{name}:{}:{}: invalid JSON: {e}",
            e.line(),
            e.column()
        ))
    })?;
    let policy = DataPolicy {
        allow_special_attributes: allow_special,
    };
    let expr = match from_json(&value, policy) {
        Ok(expr) => expr,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {name}: {e}");
            }
            eprintln!(
                "{} value(s) cannot be written as Nix; nothing was printed",
                errors.len()
            );
            return Err(CliError::reported(Class::InvalidInput));
        }
    };
    // Printed text that fails its own verification is a bug in fedigen, reported as a problem found (1).
    let text = emit_file("<output>", &[], &expr, verification).map_err(CliError::problem)?;
    crate::cli::output::out!("{text}");
    Ok(Status::Success)
}

fn nix_to_json(file: &std::path::Path, timeout: u64) -> CliResult {
    let nix = Evaluator::locate()
        .map_err(CliError::environment)?
        .with_timeout(std::time::Duration::from_secs(timeout));
    // A missing file is invalid input (exit status 2, as `--help` says).
    let file = std::fs::canonicalize(file)
        .map_err(|e| CliError::invalid(IoError::new("find", file, e)))?;
    let value = nix.eval_file_json(&file).map_err(CliError::invalid)?;
    crate::cli::output::outln!("{value}");
    Ok(Status::Success)
}

fn nix_check(files: &[PathBuf], syntax_only: bool) -> CliResult {
    let mut sources = Vec::new();
    let mut failed = 0usize;
    for path in files {
        match std::fs::read_to_string(path) {
            Ok(text) => sources.push(fedigen::eval::Source {
                name: path.display().to_string(),
                text,
            }),
            Err(e) => {
                eprintln!("error: {}", IoError::new("read", path, e));
                failed += 1;
            }
        }
    }
    for source in &sources {
        let checked = verify::check_syntax(&source.name, &source.text).and_then(|()| {
            if syntax_only {
                Ok(())
            } else {
                verify::check_canonical(&source.name, &source.text)
            }
        });
        if let Err(e) = checked {
            eprintln!("error: {e}");
            failed += 1;
        }
    }
    let nix = Evaluator::locate().map_err(CliError::environment)?;
    for (source, result) in sources.iter().zip(nix.parse(&sources)) {
        if let Err(e) = result {
            eprintln!("error: {}: Nix does not parse it: {e}", source.name);
            failed += 1;
        }
    }
    if failed > 0 {
        eprintln!("{failed} problem(s) in {} file(s)", files.len());
        Ok(Status::Problems)
    } else {
        crate::cli::output::info!("{} file(s) parse and are canonical", files.len());
        Ok(Status::Success)
    }
}
