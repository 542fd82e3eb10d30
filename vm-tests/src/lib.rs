//! `vm-tests`: the fedigen test harness. NixOS VM tests and reproducibility checks, discovered from
//! the `.nix` files in `vm-tests/generated/`, run as cargo tests through Nix.
//!
//! Map of the crate (each module's doc says why it exists):
//! - [`spec`]: discovery — which trials exist, from the `#:` headers of the files;
//! - [`prereq`]: prerequisites — Nix, nixpkgs, a KVM that really boots, QEMU, the kernel;
//! - [`runner`]: one trial — `nix-build` with a deadline, live and saved logs;
//! - [`process`]: process trees — nothing a trial started outlives it;
//! - [`report`]: JUnit XML and JSON events for CI;
//! - [`live`]: live output (prefixed lines, or spinners on a terminal);
//! - [`harness`]: the command line, libtest-mimic, Ctrl-C and `--interactive`.

#![warn(missing_docs)]

pub mod harness;
pub mod live;
pub mod prereq;
pub mod process;
pub mod report;
pub mod runner;
pub mod spec;
