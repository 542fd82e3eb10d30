//! fedigen: generate NixOS modules and deployments for the Fediversity project from a typed model, prove every
//! emitted file with rnix and the real Nix evaluator, and check reproducibility before rollout.
//!
//! The crate follows the data flow of `ARCHITECTURE.md`: each top-level module is one box of it.

pub mod deploy;
pub mod edit;
pub mod emit;
pub mod eval;
pub mod generate;
pub mod import;
pub mod io_error;
pub mod manifest;
pub mod model;
pub mod nix;
pub mod position;
pub mod process;
pub mod region;
pub mod repro;
pub mod store;
pub mod template;
pub mod write;
