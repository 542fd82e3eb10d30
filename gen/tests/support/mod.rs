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

/// The repository this crate is in (the project's templates, examples and generated files).
pub fn repository() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate is a folder of the repository")
        .to_owned()
}

/// Copies a folder and everything in it.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A scratch repository holding a copy of the project's templates and example specification (with its SSH host
/// keys, which the NixOps4 deployment is generated from), nothing generated.
pub fn scratch_repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &repository().join("templates"),
        &dir.path().join("templates"),
    );
    std::fs::create_dir_all(dir.path().join("examples")).unwrap();
    for file in ["provider.toml", "provider.host-keys.toml"] {
        std::fs::copy(
            repository().join("examples").join(file),
            dir.path().join("examples").join(file),
        )
        .unwrap();
    }
    dir
}

/// A trial that runs only where what it needs is there: its name, whether it can run here, the test, and the
/// reason printed when it cannot.
pub type GatedTrial = (
    &'static str,
    bool,
    fn() -> Result<(), libtest_mimic::Failed>,
    &'static str,
);

/// Runs a libtest-mimic harness of gated trials: one that cannot run here is reported ignored, its reason
/// printed — never passed.
pub fn run_gated(trials: Vec<GatedTrial>) -> ! {
    let args = libtest_mimic::Arguments::from_args();
    let trials = trials
        .into_iter()
        .map(|(name, available, test, reason)| {
            if !available {
                eprintln!("ignored {name}: {reason}");
            }
            libtest_mimic::Trial::test(name, test).with_ignored_flag(!available)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit()
}
