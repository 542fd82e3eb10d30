//! fedigen: generate NixOS modules and deployments for the Fediversity project from a typed model, prove every
//! emitted file with rnix and the real Nix evaluator, and check reproducibility before rollout.
//!
//! The crate follows the data flow of `ARCHITECTURE.md`: each top-level module is one box of it. The front is
//! deliberate: the `pub` modules below are what the `fedigen` binary, the `vm-tests` harness, the tests and the
//! benchmarks use, and each exports only what they name; helpers stay `pub(crate)`. Where to start:
//!
//! - [`generate::plan`] → [`write::compare`] / [`write::write`]: the main job.
//! - [`model::load`]: a specification, checked, or a [`model::SpecReport`] of every problem.
//! - [`manifest::Manifest`], [`template::Templates`]: application templates.
//! - [`emit::emit_file`], [`nix::verify`], [`eval::Evaluator`]: emitting and proving Nix.
//! - [`repro::run_check`], [`store`]: reproducibility and Nix's formats.
//! - [`edit::NixFile`], [`import::import_module`]: reading and editing hand-written Nix.

pub mod deploy;
pub mod edit;
pub mod emit;
pub mod eval;
pub mod generate;
pub mod import;
pub mod io_error;
pub mod json_document;
pub mod manifest;
pub mod migrate;
pub mod model;
pub mod nix;
pub mod position;
pub(crate) mod process;
pub(crate) mod region;
pub mod repro;
pub(crate) mod shared;
pub mod state;
pub mod storage;
pub mod store;
pub mod template;
pub mod write;
