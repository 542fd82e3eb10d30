//! `fedigen generate`: regenerate every generated file from the repository's templates, or (`--check`) say
//! what is stale, with a diff, and write nothing.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::error::{Class, CliError, CliResult, Status};
use fedigen::generate::{DEFAULT_SPEC, GenerateError, find_repository, plan_with_spec};
use fedigen::model::LoadError;
use fedigen::write::{Difference, Mode, Writer};

/// Regenerate `modules/`, `deployments/` and `vm-tests/generated/` from the templates and a specification.
///
/// With no arguments it works on the repository around the current directory. Writes are atomic (each
/// generated folder is rebuilt beside the old one and swapped in), output is byte-identical across runs and
/// machines, stale generated files disappear, and a file without the generated-file marker is never
/// overwritten. Staging left by an interrupted run (`.<folder>.fedigen-new-…`, `.fedigen-edit-…`) is removed
/// by the next run, and `--check` reports it.
#[derive(Args)]
pub struct GenerateArgs {
    /// Write nothing; print a unified diff of every stale file and exit 1 if there is one.
    #[arg(long)]
    check: bool,
    /// With --check: print the verdict as JSON on standard output instead of diffs, for CI jobs:
    /// `{"up_to_date", "files", "differences": [{"path", "kind": "changed"|"missing"|"stale"|"leftover",
    /// "diff"}]}` (paths relative to the repository; `diff` only for changed files). Same exit status.
    #[arg(long, requires = "check")]
    json: bool,
    /// The repository (default: the current directory or the nearest parent with a `templates/` folder).
    #[arg(long)]
    repo: Option<PathBuf>,
    /// The specification whose deployments to generate (TOML, JSON or Nix; default: the repository's
    /// `examples/provider.toml`, when it exists).
    #[arg(long)]
    spec: Option<PathBuf>,
}

/// Runs `fedigen generate`.
///
/// Each file is compared, and written into its folder's staging, as soon as it is planned (a [`Writer`] fed by
/// [`fedigen::generate::stream`]): no file's text outlives its write (issue #18).
pub fn run(args: GenerateArgs) -> CliResult {
    let repo = repository(args.repo)?;
    let spec = spec_or_default(&repo, args.spec.as_deref());
    let mode = if args.check {
        Mode::Check
    } else {
        Mode::Write { diffs: false }
    };
    let run = Writer::begin(&repo, &fedigen::generate::roots(spec.is_some()), mode)?;
    let regions =
        fedigen::generate::stream(&repo, spec.as_deref(), &run).map_err(planning_failed)?;
    let total = run.files() + regions.len();
    let differences = run.finish(&regions)?;
    if args.check {
        if args.json {
            crate::cli::output::outln!("{}", check_json(&repo, total, &differences));
            return Ok(if differences.is_empty() {
                Status::Success
            } else {
                Status::Problems
            });
        }
        for difference in &differences {
            match difference {
                Difference::Missing(path) => {
                    crate::cli::output::outln!(
                        "missing: {} (run `fedigen generate`)",
                        path.display()
                    )
                }
                Difference::Stale(path) => {
                    crate::cli::output::outln!("stale: {} is no longer generated", path.display())
                }
                Difference::Leftover(path) => crate::cli::output::outln!(
                    "stale: {} was left behind by an interrupted fedigen run; the next `fedigen generate` removes it",
                    path.display()
                ),
                Difference::Changed(_, diff) => crate::cli::output::out!("{diff}"),
            }
        }
        if differences.is_empty() {
            crate::cli::output::info!("{total} generated files are up to date");
            Ok(Status::Success)
        } else {
            crate::cli::output::info!(
                "{} of {total} generated files are stale; run `fedigen generate`",
                differences.len(),
            );
            Ok(Status::Problems)
        }
    } else {
        match differences {
            applied if applied.is_empty() => {
                crate::cli::output::info!(
                    "{total} generated files are up to date; nothing written"
                );
                Ok(Status::Success)
            }
            applied => {
                for difference in &applied {
                    let path = difference.path().display();
                    match difference {
                        Difference::Missing(_) => crate::cli::output::info!("created {path}"),
                        Difference::Changed(..) => crate::cli::output::info!("updated {path}"),
                        Difference::Stale(_) => crate::cli::output::info!("removed {path}"),
                        Difference::Leftover(_) => {
                            crate::cli::output::info!(
                                "removed {path} (left behind by an interrupted run)"
                            )
                        }
                    }
                }
                Ok(Status::Success)
            }
        }
    }
}

/// Why a generation could not be planned. An invalid specification's report is printed here as it is (it says
/// `error:` itself, once per problem); every other error keeps its class (see `cli::error`): a specification or
/// folder that cannot be read is the environment's fault, a broken template or manifest the input's.
/// Finds the repository (`--repo`, else the one the current folder is in) and plans everything `generate` writes
/// for it, from `--spec` or the repository's example: what `generate` and `provision` both start from.
pub(crate) fn plan_repository(
    repo: Option<PathBuf>,
    spec: Option<&Path>,
) -> Result<(PathBuf, fedigen::write::Plan), CliError> {
    let repo = repository(repo)?;
    let spec = spec_or_default(&repo, spec);
    let planned = plan_with_spec(&repo, spec.as_deref());
    Ok((repo, planned.map_err(planning_failed)?))
}

/// The repository: `--repo`, else the one the current folder is in.
fn repository(repo: Option<PathBuf>) -> Result<PathBuf, CliError> {
    let start = match repo {
        Some(repo) => repo,
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };
    Ok(find_repository(&start)?)
}

/// The specification: `--spec`, else the repository's example when it has one (as [`fedigen::generate::plan`]).
fn spec_or_default(repo: &Path, spec: Option<&Path>) -> Option<PathBuf> {
    match spec {
        Some(spec) => Some(spec.to_owned()),
        None => Some(repo.join(DEFAULT_SPEC)).filter(|spec| spec.is_file()),
    }
}

pub(crate) fn planning_failed(error: GenerateError) -> CliError {
    match error {
        GenerateError::InvalidSpec(load) => match *load {
            LoadError::Invalid(report) => {
                eprint!("{}", report.render(crate::cli::output::color_stderr()));
                CliError::reported(Class::InvalidInput)
            }
            e => CliError::from(e),
        },
        e => CliError::from(e),
    }
}

/// The `generate --check --json` verdict.
fn check_json(
    repo: &std::path::Path,
    total: usize,
    differences: &[Difference],
) -> serde_json::Value {
    let entries: Vec<serde_json::Value> = differences
        .iter()
        .map(|d| {
            let (kind, diff) = match d {
                Difference::Missing(_) => ("missing", None),
                Difference::Changed(_, diff) => ("changed", Some(diff.as_str())),
                Difference::Stale(_) => ("stale", None),
                Difference::Leftover(_) => ("leftover", None),
            };
            let path = d.path();
            let path = path.strip_prefix(repo).unwrap_or(path);
            serde_json::json!({ "path": path.display().to_string(), "kind": kind, "diff": diff })
        })
        .collect();
    serde_json::json!({
        "up_to_date": differences.is_empty(),
        "files": total,
        "differences": entries,
    })
}
