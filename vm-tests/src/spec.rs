//! Discovery: which trials exist, read from the files themselves.
//!
//! A trial is a `.nix` file in a tests directory whose first lines are a header of `#:` comment lines
//! holding TOML (see README.md, "Discovery format"). The header is data, so the generator can emit it
//! and the harness never needs a hand-written list of tests.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// What a trial checks, which decides how the harness runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A (NixOS) VM test: building the derivation runs the test; success of the build is success.
    Vm,
    /// A reproducibility check: build, then rebuild with `--check`; outputs must be bit-identical
    /// (and equal to the recorded NAR hash, when the header gives one).
    Repro,
}

impl Kind {
    /// The label libtest shows in brackets (`test [vm] name ... ok`) and that filters can match.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Vm => "vm",
            Kind::Repro => "repro",
        }
    }

    /// Default time limit when the header sets none: NixOS VM tests take minutes even with KVM.
    pub fn default_timeout(self) -> Duration {
        Duration::from_secs(30 * 60)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A prerequisite a trial declares; a missing one makes the trial ignored, with the reason printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Requirement {
    /// Nix's `nix-build` on `PATH` (implied by every trial; listing it is allowed).
    Nix,
    /// A nixpkgs checkout (`FEDIGEN_NIXPKGS` or `--nixpkgs`): every NixOS test needs one.
    Nixpkgs,
    /// A KVM that really boots a guest. Without it the trial is ignored (NixOS tests ask Nix for the
    /// `kvm` system feature, and a broken `/dev/kvm` makes QEMU abort).
    Kvm,
    /// The host's QEMU (`qemu-system-x86_64`): used with KVM when it works, else with software
    /// emulation (TCG) and a longer time limit. Passed to the expression as `qemu` and `accel`.
    Qemu,
    /// Debian's cloud kernel, unpacked by `vm-tests/install-deps`; passed as `kernelDir`.
    Kernel,
}

impl Requirement {
    /// The spelling used in headers and messages.
    pub fn name(self) -> &'static str {
        match self {
            Requirement::Nix => "nix",
            Requirement::Nixpkgs => "nixpkgs",
            Requirement::Kvm => "kvm",
            Requirement::Qemu => "qemu",
            Requirement::Kernel => "kernel",
        }
    }
}

/// The `#:` header of a trial file, as written (all fields but `kind` optional).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    kind: Kind,
    #[serde(default)]
    requires: Vec<Requirement>,
    timeout: Option<u64>,
    tcg_timeout_factor: Option<u32>,
    attr: Option<String>,
    interactive_attr: Option<String>,
    #[serde(default)]
    sandbox_paths: Vec<String>,
    ignore: Option<String>,
    cores: Option<usize>,
    nar_hash: Option<String>,
    #[serde(default)]
    evaluate_twice: bool,
    #[serde(default)]
    rebuild: Vec<String>,
    #[serde(default)]
    args: BTreeMap<String, String>,
    description: Option<String>,
}

/// One discovered trial: everything the runner needs, resolved from the file's header.
#[derive(Debug, Clone)]
pub struct TrialSpec {
    /// The trial's name: the file name without `.nix` (unique within a run).
    pub name: String,
    /// The `.nix` file that `nix-build` is given.
    pub path: PathBuf,
    /// How the trial is run.
    pub kind: Kind,
    /// What must be present for the trial to run at all.
    pub requires: Vec<Requirement>,
    /// Time limit with KVM or without QEMU.
    pub timeout: Duration,
    /// Multiplier on `timeout` when QEMU must use software emulation (default 4).
    pub tcg_timeout_factor: u32,
    /// Attribute to build (`nix-build -A`), if not the whole file.
    pub attr: Option<String>,
    /// Attribute of the interactive driver (`--interactive`), default `driverInteractive`.
    pub interactive_attr: String,
    /// Host paths made visible inside the build sandbox: a non-empty list makes the trial impure.
    pub sandbox_paths: Vec<String>,
    /// Like `#[ignore = "…"]`: not run unless `--ignored` or `--include-ignored`.
    pub ignore: Option<String>,
    /// Concurrency slots the trial takes (a test booting two VMs may want two).
    pub cores: usize,
    /// For `repro`: the NAR hash (`sha256:<base32>`, as `nix-store --query --hash` prints) expected.
    pub nar_hash: Option<String>,
    /// Evaluate the trial twice before building it, in two `nix-instantiate` processes, the second started in a
    /// later wall-clock second than the first ended: a different derivation fails the trial as *not repeatable*.
    /// Why: one evaluation cannot differ from itself, so only a second, separate one shows an evaluation that
    /// depends on the time or the environment (`builtins.currentTime`, `getEnv`, an unpinned fetch).
    pub evaluate_twice: bool,
    /// Attribute paths of the file's value (not of `attr`) built, then rebuilt with `nix-build --check` before the
    /// trial itself is built: an output that differs fails the trial as *not reproducible*. Why: a deployment
    /// test names its machines' toplevels here, so each is built twice, independently, and must be the same bytes.
    pub rebuild: Vec<String>,
    /// Extra `--argstr NAME VALUE` given to the expression.
    pub args: BTreeMap<String, String>,
    /// Free text shown in `--list`-adjacent output and the JUnit report.
    pub description: Option<String>,
}

impl TrialSpec {
    /// True when the build sees host paths and so its result depends on the machine.
    pub fn is_impure(&self) -> bool {
        !self.sandbox_paths.is_empty()
    }

    /// Whether the trial needs `req` (Nix is always needed).
    pub fn needs(&self, req: Requirement) -> bool {
        req == Requirement::Nix || self.requires.contains(&req)
    }
}

/// A file that looks like a trial but cannot be read as one; reported as a failing trial so that a
/// broken generated test is never silently dropped.
#[derive(Debug, Clone)]
pub struct BrokenTrial {
    /// Name the failing trial is reported under.
    pub name: String,
    /// The offending file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub error: String,
}

/// Everything found in the tests directories.
#[derive(Debug, Default)]
pub struct Discovered {
    /// Well-formed trials, sorted by name.
    pub trials: Vec<TrialSpec>,
    /// Files that should have been trials but are not well-formed.
    pub broken: Vec<BrokenTrial>,
}

/// Extracts the `#:` header lines at the top of a file (before its first line of code) as TOML text.
pub fn header_text(source: &str) -> Option<String> {
    let mut toml = String::new();
    let mut found = false;
    for line in source.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("#:") {
            found = true;
            toml.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            toml.push('\n');
        } else if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        } else {
            break;
        }
    }
    found.then_some(toml)
}

/// Reads one trial file. `Ok(None)` for helper files (names starting with `_`).
pub fn read_trial(path: &Path) -> Result<Option<TrialSpec>> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("file name is not UTF-8")?;
    let Some(name) = file_name.strip_suffix(".nix") else {
        return Ok(None);
    };
    if name.starts_with('_') {
        return Ok(None);
    }
    let source =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let Some(toml_text) = header_text(&source) else {
        bail!(
            "{} has no `#:` header declaring its kind; add e.g. `#: kind = \"vm\"` \
             (or start the file name with `_` if it is a helper, not a test)",
            path.display()
        );
    };
    let header: Header = toml::from_str(&toml_text)
        .with_context(|| format!("{}: invalid `#:` header", path.display()))?;
    if header.cores == Some(0) {
        bail!("{}: `cores` must be at least 1", path.display());
    }
    if header.tcg_timeout_factor == Some(0) {
        bail!(
            "{}: `tcg_timeout_factor` must be at least 1",
            path.display()
        );
    }
    if let Some(bad) = header.rebuild.iter().find(|a| {
        a.is_empty() || a.split('.').any(str::is_empty) || a.contains(char::is_whitespace)
    }) {
        bail!(
            "{}: `rebuild` entry {bad:?} is not an attribute path (names joined by `.`, as `nix-build -A` takes)",
            path.display()
        );
    }
    let mut requires = header.requires;
    requires.sort();
    requires.dedup();
    Ok(Some(TrialSpec {
        name: name.to_owned(),
        path: path.to_owned(),
        kind: header.kind,
        requires,
        timeout: header
            .timeout
            .map(Duration::from_secs)
            .unwrap_or_else(|| header.kind.default_timeout()),
        tcg_timeout_factor: header.tcg_timeout_factor.unwrap_or(4),
        attr: header.attr,
        interactive_attr: header
            .interactive_attr
            .unwrap_or_else(|| "driverInteractive".to_owned()),
        sandbox_paths: header.sandbox_paths,
        ignore: header.ignore,
        cores: header.cores.unwrap_or(1),
        nar_hash: header.nar_hash,
        evaluate_twice: header.evaluate_twice,
        rebuild: header.rebuild,
        args: header.args,
        description: header.description,
    }))
}

/// Finds the trials in `dirs` (top level `*.nix` files; a missing directory holds no trials).
pub fn discover(dirs: &[PathBuf]) -> Result<Discovered> {
    let mut found = Discovered::default();
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        let mut paths: Vec<PathBuf> = entries
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("listing {}", dir.display()))?;
        paths.sort();
        for path in paths {
            if !path.is_file() || path.extension().and_then(|e| e.to_str()) != Some("nix") {
                continue;
            }
            match read_trial(&path) {
                Ok(Some(spec)) => found.trials.push(spec),
                Ok(None) => {}
                Err(e) => found.broken.push(BrokenTrial {
                    name: path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    path: path.clone(),
                    error: format!("{e:#}"),
                }),
            }
        }
    }
    found.trials.sort_by(|a, b| a.name.cmp(&b.name));
    for pair in found.trials.windows(2) {
        if pair[0].name == pair[1].name {
            bail!(
                "two trials are named `{}`: {} and {}",
                pair[0].name,
                pair[0].path.display(),
                pair[1].path.display()
            );
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_stops_at_first_code_line() {
        let src = "# generated\n#: kind = \"vm\"\n\n#: timeout = 5\n{ }: { }\n#: cores = 2\n";
        assert_eq!(
            header_text(src).as_deref(),
            Some("kind = \"vm\"\ntimeout = 5\n")
        );
        assert_eq!(header_text("{ }: {}\n"), None);
    }

    #[test]
    fn reads_defaults_and_rejects_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("a.nix");
        std::fs::write(
            &ok,
            "#: kind = \"repro\"\n#: requires = [\"qemu\", \"nix\", \"qemu\"]\n1\n",
        )
        .unwrap();
        let spec = read_trial(&ok).unwrap().unwrap();
        assert_eq!(spec.kind, Kind::Repro);
        assert_eq!(spec.requires, vec![Requirement::Nix, Requirement::Qemu]);
        assert_eq!(spec.timeout, Kind::Repro.default_timeout());
        assert_eq!(spec.cores, 1);
        assert_eq!(spec.interactive_attr, "driverInteractive");

        let bad = dir.path().join("b.nix");
        std::fs::write(&bad, "#: kind = \"vm\"\n#: tiemout = 3\n1\n").unwrap();
        let err = format!("{:#}", read_trial(&bad).unwrap_err());
        assert!(err.contains("tiemout"), "{err}");

        let helper = dir.path().join("_common.nix");
        std::fs::write(&helper, "{ }\n").unwrap();
        assert!(read_trial(&helper).unwrap().is_none());
    }

    #[test]
    fn discovery_handles_missing_dirs_and_reports_broken_files() {
        let dir = tempfile::tempdir().unwrap();
        let found = discover(&[dir.path().join("absent")]).unwrap();
        assert!(found.trials.is_empty() && found.broken.is_empty());

        std::fs::write(dir.path().join("z.nix"), "#: kind = \"vm\"\n1\n").unwrap();
        std::fs::write(dir.path().join("a.nix"), "#: kind = \"repro\"\n1\n").unwrap();
        std::fs::write(dir.path().join("nohead.nix"), "1\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "#: kind = \"vm\"\n").unwrap();
        let found = discover(&[dir.path().to_owned()]).unwrap();
        let names: Vec<_> = found.trials.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "z"]);
        assert_eq!(found.broken.len(), 1);
        assert_eq!(found.broken[0].name, "nohead");
        assert!(found.broken[0].error.contains("no `#:` header"));
    }
}
