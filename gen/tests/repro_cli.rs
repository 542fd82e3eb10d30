//! `fedigen repro` and `fedigen closure diff` as a provider runs them, with the real Nix in throwaway stores:
//! the user's Nix settings reach every Nix call, a missing build-users group is an environment error with the
//! fix, an unknown `-A` lists what exists, exit statuses never collide with fedigen's global 2 and 3, `--closure`
//! rebuilds inputs, and `--help` is the manual for all of it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

mod support;

const DRVS: &str = r#"let
  bbDir = builtins.path { name = "busybox-static"; path = /usr/bin; filter = p: t: baseNameOf p == "busybox"; };
  mk = name: script: attrs: derivation ({
    inherit name;
    system = builtins.currentSystem;
    builder = "${bbDir}/busybox";
    args = [ "sh" "-c" script ];
    PATH = "${bbDir}";
  } // attrs);
  bb = "${bbDir}/busybox";
  noisyInput = mk "noisy-input" "${bb} head -c 16 /dev/urandom > $out" { };
in {
  steady = mk "steady" "${bb} mkdir -p $out && echo same > $out/file" { };
  noisy = mk "noisy" "${bb} mkdir -p $out && ${bb} head -c 16 /dev/urandom > $out/file" { };
  # Deterministic itself, but built from an unreproducible input.
  onNoisy = mk "on-noisy" "echo fixed > $out" { dep = noisyInput; };
  stamp = mk "stamp" "echo $when > $out" { when = toString builtins.currentTime; };
  group = { inner = mk "inner" "echo inner > $out" { }; };
  text = "not a derivation";
}
"#;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("drvs.nix"), DRVS).unwrap();
        Env { dir }
    }
    fn path(&self, p: &str) -> String {
        self.dir.path().join(p).to_str().unwrap().to_owned()
    }
    /// Runs fedigen with `NIX_CONFIG` = `config` (the user's settings).
    fn run(&self, config: &str, path: Option<&Path>, args: &[&str]) -> Output {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_fedigen"));
        c.args(args).env("NIX_CONFIG", config);
        if let Some(p) = path {
            let old = std::env::var_os("PATH").unwrap_or_default();
            let mut dirs = vec![p.to_owned()];
            dirs.extend(std::env::split_paths(&old));
            c.env("PATH", std::env::join_paths(dirs).unwrap());
        }
        c.output().unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Wrappers for Nix's programs that record each call (arguments and `NIX_CONFIG`), then run the real one.
fn recording_nix(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    let calls = dir.join("calls");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&calls).unwrap();
    for program in ["nix", "nix-build", "nix-instantiate", "nix-store"] {
        let real = which(program);
        let script = format!(
            "#!/bin/sh\nf=$(mktemp {calls}/call-XXXXXX)\nprintf '%s' \"$NIX_CONFIG\" > \"$f.config\"\nprintf '%s\\n%s' \"{program}\" \"$*\" > \"$f\"\nexec {real} \"$@\"\n",
            calls = calls.display(),
            real = real.display()
        );
        let p = bin.join(program);
        std::fs::write(&p, script).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

fn which(program: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} on PATH (scripts/install-test-deps)"))
}

/// The user's NIX_CONFIG — here a sandbox path that the build needs — reaches every Nix call that `repro lock`,
/// `repro check --closure` and `closure diff` (runtime and build-time) make, unchanged: fedigen adds its own
/// settings as `--option` arguments and never replaces the user's.
#[test]
fn the_users_nix_settings_reach_every_nix_call() {
    let e = Env::new();
    let data = e.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("input"), "from the user's sandbox path\n").unwrap();
    std::fs::write(
        e.dir.path().join("needs.nix"),
        r#"let
  bbDir = builtins.path { name = "busybox-static"; path = /usr/bin; filter = p: t: baseNameOf p == "busybox"; };
in {
  needs = derivation { name = "needs"; system = builtins.currentSystem; builder = "${bbDir}/busybox";
    args = [ "sh" "-c" "${bbDir}/busybox cat /fedigen-user-data/input > $out" ]; };
}
"#,
    )
    .unwrap();
    let user = format!(
        "{}\nextra-sandbox-paths = /fedigen-user-data={}",
        support::nix_config(),
        data.display()
    );
    let bin = recording_nix(e.dir.path());
    let (file, store, lock) = (e.path("needs.nix"), e.path("store"), e.path("lock.json"));
    let runs: [&[&str]; 4] = [
        &["repro", "lock", &file, "--store", &store, "-o", &lock],
        &[
            "repro",
            "check",
            &file,
            "--store",
            &store,
            "--lock",
            &lock,
            "--closure",
        ],
        &["closure", "diff", &lock, &file, "--store", &store],
        &[
            "closure",
            "diff",
            "--build-time",
            &lock,
            &file,
            "--store",
            &store,
        ],
    ];
    for args in runs {
        let o = e.run(&user, Some(&bin), args);
        assert_eq!(o.status.code(), Some(0), "{args:?}\n{}", text(&o));
    }
    let mut programs = std::collections::BTreeSet::new();
    let calls = std::fs::read_dir(e.dir.path().join("calls")).unwrap();
    let mut n = 0;
    for c in calls {
        let path = c.unwrap().path();
        if path.extension().is_some() {
            continue;
        }
        let call = std::fs::read_to_string(&path).unwrap();
        let config = std::fs::read_to_string(path.with_extension("config")).unwrap();
        let (program, args) = call.split_once('\n').unwrap();
        assert_eq!(config, user, "NIX_CONFIG of `{program} {args}`");
        assert!(
            args.contains("--option sandbox true") && !args.contains("sandbox-paths"),
            "fedigen's own settings are options, the user's stay theirs: {program} {args}"
        );
        programs.insert(program.to_owned());
        n += 1;
    }
    assert_eq!(
        programs.into_iter().collect::<Vec<_>>(),
        ["nix", "nix-build", "nix-instantiate"],
        "{n} calls"
    );
    let lock_text = std::fs::read_to_string(&lock).unwrap();
    assert!(lock_text.contains("\"runtime_closure\""), "{lock_text}");
}

/// Nix configured with a build-users group the machine lacks (a fresh Debian): every build fails, and fedigen
/// says so, with the fix, as an environment problem (exit 3) — not as a failed build with Nix's raw log. The
/// fix it names works.
#[test]
fn a_missing_build_users_group_is_an_environment_error_with_the_fix() {
    let e = Env::new();
    let user = format!(
        "{}\nbuild-users-group = fedigen-no-such-group",
        support::nix_config()
    );
    let (file, store, lock) = (e.path("drvs.nix"), e.path("store"), e.path("lock.json"));
    for args in [
        &["repro", "check", &file, "-A", "steady", "--store", &store][..],
        &[
            "repro", "lock", &file, "-A", "steady", "--store", &store, "-o", &lock,
        ][..],
        &[
            "closure", "diff", "--build", &file, &file, "--store", &store,
        ][..],
    ] {
        let o = e.run(&user, None, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(3), "{args:?}\n{}", text(&o));
        assert!(
            err.contains("'fedigen-no-such-group', which does not exist")
                && err.contains("--option build-users-group ''")
                && err.contains("nix-setup-systemd")
                && !err.contains("Some("),
            "{}",
            text(&o)
        );
    }
    let o = e.run(
        &user,
        None,
        &[
            "repro",
            "check",
            &file,
            "-A",
            "steady",
            "--store",
            &store,
            "--option",
            "build-users-group",
            "",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// An unknown `-A` (or one that is not a derivation) is invalid input (exit 2), answered with the names that
/// exist where the path stops, never with fedigen's internal Nix expression.
#[test]
fn an_unknown_attribute_lists_the_existing_ones() {
    let e = Env::new();
    let (file, store) = (e.path("drvs.nix"), e.path("store"));
    let cases: [(&str, &str); 3] = [
        (
            "stedy",
            "has no attribute `stedy`: `stedy` does not exist at the top level; the top level has: group, noisy, onNoisy, stamp, steady, text",
        ),
        (
            "group.outer",
            "has no attribute `group.outer`: `outer` does not exist at `group`; `group` has: inner",
        ),
        ("text", "attribute `text` is not a derivation"),
    ];
    for (attr, says) in cases {
        let o = e.run(
            &support::nix_config(),
            None,
            &[
                "repro",
                "check",
                &file,
                "-A",
                attr,
                "--store",
                &store,
                "--no-build",
            ],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(err.contains(says), "{attr}: {}", text(&o));
        assert!(
            !err.contains("attrsJson") && !err.contains("«string»"),
            "{}",
            text(&o)
        );
    }
    // A nested attribute that exists works.
    let o = e.run(
        &support::nix_config(),
        None,
        &[
            "repro",
            "check",
            &file,
            "-A",
            "group.inner",
            "--store",
            &store,
            "--no-build",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// Findings are 1 plus a bit each, all bits multiples of 4: an impure evaluation is 129, never 2 ("invalid
/// input"); an unreproducible output is odd with the 8 bit; a deterministic derivation built from an
/// unreproducible input passes alone and fails with `--closure`, which names the input.
#[test]
fn exit_statuses_never_collide_and_closure_rebuilds_inputs() {
    let e = Env::new();
    let (file, store) = (e.path("drvs.nix"), e.path("store"));
    let cfg = support::nix_config();
    let o = e.run(
        &cfg,
        None,
        &[
            "repro",
            "check",
            &file,
            "-A",
            "stamp",
            "--store",
            &store,
            "--no-build",
        ],
    );
    assert_eq!(o.status.code(), Some(129), "{}", text(&o));
    let o = e.run(
        &cfg,
        None,
        &["repro", "check", &file, "-A", "noisy", "--store", &store],
    );
    assert_eq!(o.status.code(), Some(1 | 8), "{}", text(&o));
    let o = e.run(
        &cfg,
        None,
        &["repro", "check", &file, "-A", "onNoisy", "--store", &store],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = e.run(
        &cfg,
        None,
        &[
            "repro",
            "check",
            &file,
            "-A",
            "onNoisy",
            "--store",
            &store,
            "--closure",
        ],
    );
    assert_eq!(o.status.code(), Some(1 | 8), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("onNoisy ← noisy-input  -           -     UNREPRODUCIBLE"),
        "{}",
        text(&o)
    );
    let o = e.run(
        &cfg,
        None,
        &[
            "repro",
            "check",
            &file,
            "-A",
            "onNoisy",
            "--store",
            &store,
            "--closure",
            "--json",
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let inputs = report["derivations"][0]["inputs"].as_array().unwrap();
    let by_name: std::collections::BTreeMap<&str, &str> = inputs
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap(),
                i["build"]["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_name["noisy-input"], "unreproducible", "{report}");
    // The report's keys are snake_case, like the lock's.
    assert!(report.to_string().contains("\"drv_path\""));
}

/// `--help` is the manual: exit statuses and how they relate to the global ones, the scope of a check and
/// `--closure`, what fedigen forces and how to change it; `closure diff` says what it compares.
#[test]
fn help_is_the_manual() {
    let e = Env::new();
    let o = e.run("", None, &["repro", "check", "--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    for says in [
        "odd, at least 5",
        "128  two evaluations gave different derivations",
        "2    invalid input",
        "3    the environment lacks something",
        "only the named derivations",
        "--closure",
        "--option sandbox true",
        "--option sandbox-fallback false",
        "--option NAME VALUE",
    ] {
        assert!(help.contains(says), "{says}\n{help}");
    }
    let o = e.run("", None, &["closure", "diff", "--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    for says in ["runtime closures", "--build-time", "--build", "NAR size"] {
        assert!(help.contains(says), "{says}\n{help}");
    }
}
