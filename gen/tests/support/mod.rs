//! The Nix settings of every test of this crate that runs Nix, from one place: `scripts/test-nix.conf`,
//! appended to the `NIX_CONFIG` the test inherits, never replacing it — a person's or CI's own settings (remote
//! builders, sandbox paths) stay, and the lines here win where they must for a test run as root on a fresh
//! machine (`build-users-group =`: there may be no `nixbld` group).
//!
//! Used by the integration tests with `mod support;` and by `examples/store_bench.rs`.
#![allow(dead_code)]

use std::process::Command;

/// `scripts/test-nix.conf` without its comment lines.
pub fn test_settings() -> String {
    include_str!("../../../scripts/test-nix.conf")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The inherited `NIX_CONFIG` with [`test_settings`] appended.
pub fn nix_config() -> String {
    match std::env::var("NIX_CONFIG") {
        Ok(inherited) if !inherited.trim().is_empty() => {
            format!("{}\n{}", inherited.trim_end(), test_settings())
        }
        _ => test_settings(),
    }
}

/// A Nix tool (or fedigen itself) to run with [`nix_config`].
pub fn nix_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    c.env("NIX_CONFIG", nix_config());
    c
}

/// fedigen's Nix settings for a test: [`nix_config`] as the environment's, fedigen's own options unchanged.
pub fn nix_settings() -> fedigen::repro::NixSettings {
    fedigen::repro::NixSettings {
        config: Some(nix_config()),
        ..Default::default()
    }
}
