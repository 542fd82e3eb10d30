//! The subcommands of the `fedigen` binary, one file per group. Each is a thin layer over the library: it parses
//! arguments (clap), calls the library, prints, and maps outcomes to the exit statuses documented in `--help`.

pub mod edit;
pub mod error;
pub mod generate;
pub mod help;
pub mod migrate;
pub mod migrate_plan;
pub mod model;
pub mod nix;
pub mod output;
pub mod provision;
pub mod repro;
pub mod storage;
pub mod template;
