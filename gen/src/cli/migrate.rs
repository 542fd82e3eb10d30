//! `fedigen migrate run|verify|rollback|manifest`: moving an operator between providers, as a thin layer over
//! [`fedigen::migrate`]. The same commands run on the machines (called by generated units or over ssh) and in
//! the tests.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::cli::error::{Class, CliError, CliResult, Status};
use crate::cli::output::{info, outln};
use fedigen::migrate::job::Job;
use fedigen::migrate::run::{self, Event, RunError, Scope};
use fedigen::migrate::{tree, verify};

const RUN_HELP: &str = "\
Examples:
  fedigen migrate run --job /etc/fedigen/migrate-op.json --journal /var/lib/fedigen/migrate-op
  fedigen migrate run --job job.json --journal state/ --bulk-only     # pre-copy while the source serves

Steps, each recorded in the journal when it completed (a killed run resumes where it stopped):
  replicate:schema:*, replicate:start:*
                              a database with replication roles in the job, when its source has
                              wal_level = logical: schema at the target, publication and subscription
  bulk:bucket:*, bulk:dir:*   rclone sync between the S3 endpoints, folders copied (the source still runs)
  replicate:sync:*            every replicated table copied once and following the source's changes
  freeze                      the job's freeze commands (the source's data stops changing)
  delta:bucket:*, delta:dir:* the same copies again: only what changed moves
  catchup:*                   a replicated database: its last changes applied, the subscription, slot and
                              publication dropped, sequences and large objects copied
  dump:*, restore:*           the other databases: pg_dump -Fc at the source into the journal folder,
                              pg_restore at the target in one transaction
  identity:*                  each secret written atomically with its owner and mode (never printed)
  verify                      `fedigen migrate verify`: on any difference the run stops here
  start, health               the target's start commands, then its health checks (retried until the timeout)
  dns                         the DNS switch, last
Before `dns` nothing is written at the source but, for a replicated database, a publication, its replication
slot and the replica identity of tables without a primary key: `fedigen migrate rollback` removes them and
starts the source again.

Exit status: 0 done; 1 a step failed or the target differs from the source (resume with the same command once fixed, or roll back); 2 the job is invalid or the journal belongs to another job; 3 a tool is missing (rclone, pg_dump, pg_restore, psql; rsync and ssh for ssh:// folders).

Environment: FEDIGEN_PG_BIN, a folder holding pg_dump, pg_restore and psql (else they are looked up on PATH).";

const VERIFY_HELP: &str = "\
Examples:
  fedigen migrate verify --job job.json
  fedigen migrate verify --job job.json --json | jq .equal

Compares, read-only: per database, computed by each server, the rows and a checksum of them per table, the
sequences, the large objects and a digest of the schema; per bucket both listings and each object's MD5 as its
store keeps it, downloading only objects a store keeps none for (multipart uploads by other clients); per
folder a checksum manifest (SHA-256 of each file, modes, links); per identity secret its content and mode.

Exit status: 0 equal; 1 something differs (each difference is named); 2 the job is invalid; 3 a tool is missing or a side cannot be read.";

const ROLLBACK_HELP: &str = "\
Examples:
  fedigen migrate rollback --job job.json --journal /var/lib/fedigen/migrate-op

Runs the job's source_start commands (undoing the freeze) and forgets the steps done, so the next run starts
over with the bulk copy. Refused once the DNS switch is done: the target is the server then.

Exit status: 0 the source is started again; 1 a command failed, or the DNS switch is done; 2 the job is invalid.";

const MANIFEST_HELP: &str = "\
Examples:
  fedigen migrate manifest /var/lib/mastodon

Prints a folder's checksum manifest as JSON (every entry by relative path: folders and their modes, files with
mode, size and SHA-256, links with their target): what `migrate verify` compares, run over ssh for a folder on
another machine.

Exit status: 0 printed; 3 the folder cannot be read.";

/// Move an operator between providers.
#[derive(Subcommand)]
pub enum MigrateCommand {
    /// Plan moving an operator from provider A to provider B: conflicts, what moves, steps, downtime, DNS,
    /// rollback; writes the engine's jobs.
    #[command(after_long_help = crate::cli::migrate_plan::PLAN_HELP)]
    Plan(crate::cli::migrate_plan::PlanArgs),
    /// Carry out a migration job: bulk copy, freeze, delta copy, databases, identity, verify, start, DNS switch.
    #[command(after_long_help = RUN_HELP)]
    Run(RunArgs),
    /// Check that the target holds what the source holds, and name each difference.
    #[command(after_long_help = VERIFY_HELP)]
    Verify(VerifyArgs),
    /// Start the source again after a failed or abandoned migration (before the DNS switch).
    #[command(after_long_help = ROLLBACK_HELP)]
    Rollback(RollbackArgs),
    /// Print a folder's checksum manifest (JSON), as verification compares it.
    #[command(after_long_help = MANIFEST_HELP)]
    Manifest(ManifestArgs),
}

/// `fedigen migrate run`.
#[derive(Args)]
pub struct RunArgs {
    /// The migration job (JSON).
    #[arg(long, value_name = "FILE")]
    job: PathBuf,
    /// The folder keeping the journal and the database dumps (created with mode 0700).
    #[arg(long, value_name = "DIR")]
    journal: PathBuf,
    /// Run only the bulk copies (again each time), leaving the source running.
    #[arg(long)]
    bulk_only: bool,
}

/// `fedigen migrate verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// The migration job (JSON).
    #[arg(long, value_name = "FILE")]
    job: PathBuf,
    /// Print the report as JSON: {"equal", "items": [{"kind", "name", "compared", "differences"}]}.
    #[arg(long)]
    json: bool,
}

/// `fedigen migrate rollback`.
#[derive(Args)]
pub struct RollbackArgs {
    /// The migration job (JSON).
    #[arg(long, value_name = "FILE")]
    job: PathBuf,
    /// The journal folder of the run to roll back.
    #[arg(long, value_name = "DIR")]
    journal: PathBuf,
}

/// `fedigen migrate manifest`.
#[derive(Args)]
pub struct ManifestArgs {
    /// The folder.
    path: PathBuf,
}

/// Runs a `fedigen migrate` subcommand.
pub fn run(command: MigrateCommand) -> CliResult {
    match command {
        MigrateCommand::Plan(args) => crate::cli::migrate_plan::run(args),
        MigrateCommand::Run(args) => run_job(args),
        MigrateCommand::Verify(args) => run_verify(args),
        MigrateCommand::Rollback(args) => run_rollback(args),
        MigrateCommand::Manifest(args) => run_manifest(&args.path),
    }
}

fn load(path: &Path) -> Result<Job, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::io("read", path, e))?;
    Job::parse(&text, &path.display().to_string()).map_err(CliError::invalid)
}

fn class(e: &RunError) -> Class {
    match e {
        RunError::Journal(fedigen::migrate::journal::JournalError::Mismatch(_)) => {
            Class::InvalidInput
        }
        RunError::Journal(_) => Class::Environment,
        RunError::Step {
            environment: true, ..
        } => Class::Environment,
        _ => Class::Problem,
    }
}

fn run_job(args: RunArgs) -> CliResult {
    let job = load(&args.job)?;
    let scope = if args.bulk_only {
        Scope::BulkOnly
    } else {
        Scope::All
    };
    let mut events = |e: Event| match e {
        Event::Skipped(step) => info!("{step}: done by an earlier run"),
        Event::Started(step) => info!("{step}: …"),
        Event::Done(step) => info!("{step}: done"),
        Event::Note(text) => info!("{text}"),
    };
    match run::run(&job, &args.journal, scope, &mut events) {
        Ok(()) => {
            if args.bulk_only {
                info!("bulk copy done; the source still runs. Run without --bulk-only to migrate");
            } else {
                outln!("migrated {}: the target serves it", job.operator);
            }
            Ok(Status::Success)
        }
        Err(e) => {
            let class = class(&e);
            let hint = match e {
                RunError::Switched => String::new(),
                _ => format!(
                    "\nthe source is unchanged: fix the cause and run the same command again to resume, or `fedigen migrate rollback --job {} --journal {}` to start the source again",
                    args.job.display(),
                    args.journal.display()
                ),
            };
            Err(CliError::new(class, format!("{e}{hint}")))
        }
    }
}

fn run_verify(args: VerifyArgs) -> CliResult {
    let job = load(&args.job)?;
    // Verification that cannot read a side (a tool missing, a server down) is the environment's failure.
    let report = verify::verify(&job).map_err(|e| CliError::new(Class::Environment, e))?;
    if args.json {
        outln!("{}", report.to_json());
    } else {
        crate::cli::output::out!("{}", report.render());
    }
    if report.equal() {
        Ok(Status::Success)
    } else {
        Ok(Status::Problems)
    }
}

fn run_rollback(args: RollbackArgs) -> CliResult {
    let job = load(&args.job)?;
    match run::rollback(&job, &args.journal) {
        Ok(()) => {
            outln!(
                "the source of {} is started again; the journal is reset",
                job.operator
            );
            Ok(Status::Success)
        }
        Err(e) => Err(CliError::new(class(&e), e)),
    }
}

fn run_manifest(path: &Path) -> CliResult {
    let manifest = tree::manifest(path)?;
    outln!(
        "{}",
        serde_json::to_string(&manifest).expect("a manifest serialises")
    );
    Ok(Status::Success)
}
