//! `fedigen migrate …`: moving an operator between providers. On this branch only `plan`; the engine's
//! subcommands (`run`, `verify`, `rollback`, `manifest`) are another branch's, merged beside it.

use clap::Subcommand;

use crate::cli::error::CliResult;

/// Move an operator between providers.
#[derive(Subcommand)]
pub enum MigrateCommand {
    /// Plan moving an operator from provider A to provider B: conflicts, what moves, steps, downtime, DNS,
    /// rollback; writes the engine's jobs.
    #[command(after_long_help = crate::cli::migrate_plan::PLAN_HELP)]
    Plan(crate::cli::migrate_plan::PlanArgs),
}

/// Runs a `fedigen migrate` subcommand.
pub fn run(command: MigrateCommand) -> CliResult {
    match command {
        MigrateCommand::Plan(args) => crate::cli::migrate_plan::run(args),
    }
}
