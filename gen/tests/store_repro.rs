//! `fedigen::repro` against the real Nix, without nixpkgs: derivations built from Debian's static busybox that
//! are deterministic, non-deterministic (`/dev/urandom`), impure at evaluation (`builtins.currentTime`),
//! failing, failing only on the rebuild, and too slow. Each test uses its own throwaway store.

use fedigen::repro::explain::Change;
use fedigen::repro::files::DifferenceKind;
use fedigen::repro::report::{BuildPhase, Evaluation, LockStatus, NarStatus};
use fedigen::repro::{
    CheckOptions, Classification, ClosureDiffOptions, ClosureSource, Lock, NixTools, closure_diff,
    exit_code, run_check, run_lock,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod support;

/// `closure diff --build-time`: the derivation closures, as the lock comparison shows them.
fn build_time() -> ClosureDiffOptions {
    ClosureDiffOptions {
        build_time: true,
        ..Default::default()
    }
}

const PRELUDE: &str = r#"
let
  bbDir = builtins.path { name = "busybox-static"; path = /usr/bin; filter = p: t: baseNameOf p == "busybox"; };
  busybox = derivation { name = "busybox"; system = builtins.currentSystem;
    builder = "${bbDir}/busybox";
    args = [ "sh" "-c" "${bbDir}/busybox mkdir -p $out/bin && ${bbDir}/busybox cp ${bbDir}/busybox $out/bin/ && $out/bin/busybox --install -s $out/bin" ]; };
  mk = name: script: attrs: derivation ({ inherit name; system = builtins.currentSystem; builder = "${busybox}/bin/sh";
    args = [ "-c" script ]; PATH = "${busybox}/bin"; } // attrs);
in
"#;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }
    /// Writes `<name>.nix` = prelude + `body` (an attribute set).
    fn file(&self, name: &str, body: &str) -> PathBuf {
        let p = self.dir.path().join(format!("{name}.nix"));
        std::fs::write(&p, format!("{PRELUDE}{body}\n")).unwrap();
        p
    }
    fn opts(&self, file: &Path) -> CheckOptions {
        let mut o = CheckOptions::new(file);
        o.store = Some(self.store());
        o.timeout = Duration::from_secs(120);
        o.settings = support::nix_settings();
        o
    }
    fn nix(&self) -> NixTools {
        let mut n = NixTools::new(Some(self.store()));
        n.settings = support::nix_settings();
        n
    }
}

fn nix_query_hash(store: &Path, path: &str) -> String {
    let out = support::nix_command("nix-store")
        .args(["--store"])
        .arg(store)
        .args(["--query", "--hash", path])
        .output()
        .expect("nix-store on PATH");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

const DET: &str = r#"{ det = mk "det-1.0" "mkdir -p $out/share; echo hello > $out/share/greeting; ln -s share/greeting $out/link" { };
  multi = mk "multi-2" "echo a > $out; echo b > $dev" { outputs = [ "out" "dev" ]; }; }"#;

#[test]
fn deterministic_builds_are_reproducible_and_match_their_lock() {
    let f = Fixture::new();
    let file = f.file("det", DET);
    let lock = run_lock(&f.opts(&file)).unwrap();
    assert_eq!(
        lock.derivations.keys().collect::<Vec<_>>(),
        ["det", "multi"]
    );
    // Every locked NAR hash is the one Nix itself registered for the path.
    for l in lock.derivations.values() {
        for o in l.outputs.values() {
            assert_eq!(
                o.nar_hash.as_ref().unwrap().to_string(),
                nix_query_hash(&f.store(), &o.path),
                "{}",
                o.path
            );
        }
        assert!(
            l.closure.contains(&l.drv_path)
                && l.closure.iter().any(|p| p.ends_with("-busybox.drv"))
        );
    }
    let lock_file = f.dir.path().join("repro.lock.json");
    lock.write(&lock_file).unwrap();
    let first_bytes = std::fs::read(&lock_file).unwrap();
    // Locking again gives the same bytes (deterministic file), and the file reads back equal.
    run_lock(&f.opts(&file)).unwrap().write(&lock_file).unwrap();
    assert_eq!(std::fs::read(&lock_file).unwrap(), first_bytes);
    assert_eq!(Lock::read(&lock_file).unwrap(), lock);

    let mut opts = f.opts(&file);
    opts.lock = Some(lock_file);
    let report = run_check(&opts).unwrap();
    assert_eq!(report.derivations.len(), 2);
    for d in &report.derivations {
        assert_eq!(d.evaluation, Evaluation::Pure, "{}", d.attr);
        assert_eq!(d.lock, LockStatus::Matches, "{}", d.attr);
        assert_eq!(d.build, Classification::Reproducible, "{}", d.attr);
        for o in d.outputs.values() {
            assert_eq!(o.lock, NarStatus::Matches);
            assert!(o.differences.is_empty());
        }
    }
    assert_eq!(
        report.derivations[1].outputs.keys().collect::<Vec<_>>(),
        ["dev", "out"]
    );
    assert_eq!(report.exit_code(), exit_code::OK);
    let table = report.render();
    assert!(table.starts_with("ATTRIBUTE"), "{table}");
    assert!(
        table.contains("reproducible") && table.contains("exit code 0"),
        "{table}"
    );
    // JSON round trip.
    let back: fedigen::repro::Report = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(back, report);
}

#[test]
fn urandom_output_is_unreproducible_with_the_differing_file_named() {
    let f = Fixture::new();
    let file = f.file("rnd", r#"{ rnd = mk "rnd-1.0" "mkdir $out; echo same > $out/same; head -c 64 /dev/urandom > $out/random; echo 0123456789 > $out/tail; head -c 4 /dev/urandom >> $out/tail" { }; }"#);
    let report = run_check(&f.opts(&file)).unwrap();
    let d = &report.derivations[0];
    assert_eq!(d.build, Classification::Unreproducible);
    let out = &d.outputs["out"];
    let paths: Vec<&str> = out.differences.iter().map(|x| x.path.as_str()).collect();
    assert_eq!(paths, ["random", "tail"], "{:?}", out.differences);
    // `tail` has 11 identical bytes before the random ones (a 1/2^32 chance of a later first difference).
    match &out.differences[1].kind {
        DifferenceKind::Contents {
            old_size: 15,
            new_size: 15,
            first_difference,
        } => assert!((11..15).contains(first_difference)),
        k => panic!("unexpected {k:?}"),
    }
    // The kept second build exists where Nix put it.
    let check = out.check_path.as_ref().unwrap();
    assert!(
        f.store()
            .join(check.trim_start_matches('/'))
            .join("random")
            .exists()
    );
    assert_eq!(
        report.exit_code(),
        exit_code::FINDINGS | exit_code::UNREPRODUCIBLE
    );
    eprintln!("{}", report.render());
    assert!(
        report
            .render()
            .contains("random: contents differ (64 vs 64 bytes"),
        "{}",
        report.render()
    );
}

#[test]
fn current_time_makes_evaluation_impure() {
    let f = Fixture::new();
    let file = f.file("impure", r#"{ stamp = mk "stamp" "echo $when > $out" { when = toString builtins.currentTime; }; det = mk "det" "touch $out" { }; }"#);
    let mut opts = f.opts(&file);
    opts.build = false;
    let report = run_check(&opts).unwrap();
    let by: std::collections::BTreeMap<_, _> = report
        .derivations
        .iter()
        .map(|d| (d.attr.as_str(), d))
        .collect();
    assert_eq!(by["det"].evaluation, Evaluation::Pure);
    let Evaluation::Impure {
        second_drv_path,
        explanation,
    } = &by["stamp"].evaluation
    else {
        panic!("{:?}", by["stamp"].evaluation)
    };
    assert_ne!(second_drv_path, &by["stamp"].drv_path);
    let e = explanation.as_ref().unwrap();
    assert!(
        e.changes.iter().any(
            |c| matches!(c, Change::Env { name, only_input_paths: false, .. } if name == "when")
        ),
        "{e:?}"
    );
    assert_eq!(e.root_causes().len(), 1);
    assert_eq!(by["stamp"].build, Classification::NotBuilt);
    assert_eq!(report.exit_code(), exit_code::FINDINGS | exit_code::IMPURE);
}

#[test]
fn failing_build_is_first_build_failed() {
    let f = Fixture::new();
    let file = f.file(
        "fail",
        r#"{ fail = mk "fail" "echo this-build-fails >&2; exit 3" { }; }"#,
    );
    let report = run_check(&f.opts(&file)).unwrap();
    match &report.derivations[0].build {
        Classification::FirstBuildFailed {
            exit_code: Some(100),
            log_tail,
        } => assert!(log_tail.contains("this-build-fails"), "{log_tail}"),
        other => panic!("{other:?}"),
    }
    assert!(report.derivations[0].outputs["out"].nar_hash.is_none());
    assert_eq!(
        report.exit_code(),
        exit_code::FINDINGS | exit_code::BUILD_FAILED
    );
}

#[test]
fn build_that_fails_only_the_second_time_is_second_build_failed() {
    let f = Fixture::new();
    // A host directory shared into the sandbox remembers the first build.
    let state = f.dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let file = f.file("once", r#"{ once = mk "once" "if [ -e /state/built ]; then echo already-built >&2; exit 1; fi; touch /state/built; echo x > $out" { }; }"#);
    let mut opts = f.opts(&file);
    // The sandbox path comes from the user's NIX_CONFIG, which fedigen keeps.
    opts.settings.config = Some(format!(
        "{}\nextra-sandbox-paths = /state={}",
        support::nix_config(),
        state.display()
    ));
    let report = run_check(&opts).unwrap();
    match &report.derivations[0].build {
        Classification::SecondBuildFailed {
            exit_code: Some(100),
            log_tail,
        } => assert!(log_tail.contains("already-built"), "{log_tail}"),
        other => panic!("{other:?}"),
    }
    assert!(
        report.derivations[0].outputs["out"].nar_hash.is_some(),
        "first build was hashed"
    );
    assert_eq!(
        report.exit_code(),
        exit_code::FINDINGS | exit_code::BUILD_FAILED
    );
}

fn processes_with(marker: &str) -> Vec<String> {
    let mut found = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

#[test]
fn slow_build_times_out_and_its_builder_is_killed() {
    let f = Fixture::new();
    let file = f.file(
        "slow",
        r#"{ slow = mk "slow" "sleep 3171; touch $out" { }; }"#,
    );
    let mut opts = f.opts(&file);
    opts.timeout = Duration::from_secs(3);
    let started = Instant::now();
    let report = run_check(&opts).unwrap();
    let took = started.elapsed();
    match &report.derivations[0].build {
        Classification::TimedOut {
            phase: BuildPhase::First,
            timeout_secs: 3,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(
        report.exit_code(),
        exit_code::FINDINGS | exit_code::TIMED_OUT
    );
    assert!(
        processes_with("sleep 3171").is_empty(),
        "builder survived: {:?}",
        processes_with("sleep 3171")
    );
}

const V1: &str = r#"{ app = let lib = mk "lib-1.0" "echo $flag > $out" { flag = "a"; }; in mk "app-2" "echo uses ${lib} > $out" { }; }"#;
const V2: &str = r#"{ app = let lib = mk "lib-1.1" "echo $flag > $out" { flag = "b"; }; in mk "app-2" "echo uses ${lib} > $out" { }; }"#;

#[test]
fn changed_input_is_explained_down_to_the_root_cause() {
    let f = Fixture::new();
    let lock = run_lock(&f.opts(&f.file("v1", V1))).unwrap();
    let lock_file = f.dir.path().join("lock.json");
    lock.write(&lock_file).unwrap();
    let mut opts = f.opts(&f.file("v2", V2));
    opts.lock = Some(lock_file.clone());
    let report = run_check(&opts).unwrap();
    let d = &report.derivations[0];
    let LockStatus::Differs {
        locked_drv_path,
        explanation,
        root_causes,
        closure,
    } = &d.lock
    else {
        panic!("{:?}", d.lock)
    };
    assert_eq!(locked_drv_path, &lock.derivations["app"].drv_path);
    assert_eq!(root_causes, &["lib-1.1"]);
    let e = explanation.as_ref().unwrap();
    assert_eq!(e.name, "app-2");
    assert!(
        e.changes.iter().all(|c| !c.is_cause()),
        "app changed only through lib: {:?}",
        e.changes
    );
    assert_eq!(e.inputs.len(), 1);
    let lib = &e.inputs[0];
    assert!(
        lib.changes.contains(&Change::Env {
            name: "flag".into(),
            old: Some("a".into()),
            new: Some("b".into()),
            only_input_paths: false
        }),
        "{lib:?}"
    );
    assert!(
        lib.changes
            .iter()
            .any(|c| matches!(c, Change::Env { name, .. } if name == "name"))
    );
    assert_eq!(closure.changed.len(), 1);
    assert_eq!(
        (
            closure.changed[0].name.as_str(),
            closure.changed[0].old.as_slice(),
            closure.changed[0].new.as_slice()
        ),
        ("lib", &["1.0".to_owned()][..], &["1.1".to_owned()][..])
    );
    assert_eq!(
        closure
            .rebuilt
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["app"]
    );
    assert!(
        matches!(d.outputs["out"].lock, NarStatus::Differs { .. }),
        "app's output names another lib"
    );
    assert_eq!(
        report.exit_code(),
        exit_code::FINDINGS | exit_code::LOCK_MISMATCH | exit_code::NAR_MISMATCH
    );
    let table = report.render();
    eprintln!("{table}");
    assert!(
        table.contains("root cause(s): lib-1.1") && table.contains("[C] lib: 1.0 → 1.1"),
        "{table}"
    );

    // closure diff: lock against the deployment, and drv against drv.
    let nix = f.nix();
    let cd = closure_diff(
        &ClosureSource::Lock {
            path: lock_file,
            attrs: vec![],
        },
        &ClosureSource::Eval {
            file: f.dir.path().join("v2.nix"),
            attrs: vec![],
        },
        &nix,
        &build_time(),
    )
    .unwrap();
    assert_eq!(&cd, &**closure);
    let cd2 = closure_diff(
        &ClosureSource::Drv(locked_drv_path.clone()),
        &ClosureSource::Drv(d.drv_path.clone()),
        &nix,
        &build_time(),
    )
    .unwrap();
    assert_eq!(&cd2, &**closure);
    assert!(
        closure_diff(
            &ClosureSource::Drv(d.drv_path.clone()),
            &ClosureSource::Drv(d.drv_path.clone()),
            &nix,
            &build_time()
        )
        .unwrap()
        .is_empty()
    );
}

#[test]
fn lock_from_another_machine_still_gets_a_closure_diff() {
    let ci = Fixture::new();
    let lock = run_lock(&ci.opts(&ci.file("v1", V1))).unwrap();
    let provider = Fixture::new();
    let lock_file = provider.dir.path().join("lock.json");
    lock.write(&lock_file).unwrap();
    let mut opts = provider.opts(&provider.file("v2", V2));
    opts.lock = Some(lock_file);
    opts.build = false;
    let report = run_check(&opts).unwrap();
    let LockStatus::Differs {
        explanation,
        closure,
        ..
    } = &report.derivations[0].lock
    else {
        panic!()
    };
    assert!(
        matches!(
            explanation.as_ref().unwrap().changes[..],
            [Change::Unavailable { .. }]
        ),
        "{explanation:?}"
    );
    assert_eq!(closure.changed[0].name, "lib");
}

#[test]
fn nar_hash_differs_from_the_lock_when_another_store_builds_differently() {
    let rnd = r#"{ rnd = mk "rnd" "head -c 32 /dev/urandom > $out" { }; det = mk "det" "echo same > $out" { }; }"#;
    let ci = Fixture::new();
    let lock = run_lock(&ci.opts(&ci.file("r", rnd))).unwrap();
    let provider = Fixture::new();
    let lock_file = provider.dir.path().join("lock.json");
    lock.write(&lock_file).unwrap();
    let mut opts = provider.opts(&provider.file("r", rnd));
    opts.lock = Some(lock_file);
    let report = run_check(&opts).unwrap();
    let (det, rnd) = (&report.derivations[0], &report.derivations[1]);
    assert_eq!((det.attr.as_str(), rnd.attr.as_str()), ("det", "rnd"));
    assert_eq!(det.lock, LockStatus::Matches);
    assert_eq!(det.outputs["out"].lock, NarStatus::Matches);
    assert_eq!(rnd.lock, LockStatus::Matches, "same derivation");
    assert_eq!(
        rnd.outputs["out"].lock,
        NarStatus::Differs {
            locked: lock.derivations["rnd"].outputs["out"]
                .nar_hash
                .clone()
                .unwrap()
        }
    );
    // And our hash is the one Nix registered in the provider's store.
    assert_eq!(
        rnd.outputs["out"].nar_hash.as_ref().unwrap().to_string(),
        nix_query_hash(&provider.store(), &rnd.outputs["out"].path)
    );
    assert_eq!(
        report.exit_code(),
        exit_code::FINDINGS | exit_code::NAR_MISMATCH | exit_code::UNREPRODUCIBLE
    );
}

#[test]
fn lock_refuses_impure_and_failing_derivations() {
    let f = Fixture::new();
    let err = run_lock(&f.opts(&f.file(
        "i",
        r#"{ t = mk "t" "touch $out" { t = toString builtins.currentTime; }; }"#,
    )))
    .unwrap_err();
    assert!(err.to_string().contains("impure evaluation"), "{err}");
    let err = run_lock(&f.opts(&f.file("f", r#"{ f = mk "f" "exit 1" { }; }"#))).unwrap_err();
    // Nix's exit status as people read it, never Rust's `Some(100)`.
    assert!(
        err.to_string().contains("build failed (exit 100)") && !err.to_string().contains("Some("),
        "{err}"
    );
}

#[test]
fn endless_evaluation_is_killed() {
    let f = Fixture::new();
    let file = f.file("loop", r#"{ x = let l = builtins.genList (j: j) 100000; in mk "x" (toString (builtins.foldl' (a: i: builtins.foldl' (b: j: b + j) a l) 0 l)) { }; }"#);
    let mut opts = f.opts(&file);
    opts.eval_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let err = run_check(&opts).unwrap_err();
    assert!(err.to_string().contains("timed out after 2 s"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn evaluation_errors_are_errors_not_findings() {
    let f = Fixture::new();
    let err = run_check(&f.opts(&f.file("bad", r#"{ x = throw "no such thing"; }"#))).unwrap_err();
    assert!(err.to_string().contains("no such thing"), "{err}");
}

#[test]
fn diffoscope_is_suggested_only_when_installed() {
    use fedigen::repro::files::diffoscope_in;
    let bin = tempfile::tempdir().unwrap();
    let (a, b) = (
        Path::new("/nix/store/x-a"),
        Path::new("/nix/store/x-a.check"),
    );
    let empty = tempfile::tempdir().unwrap();
    let search = std::env::join_paths([empty.path(), bin.path()]).unwrap();
    assert_eq!(diffoscope_in(Some(&search), a, b), None);
    std::fs::write(bin.path().join("diffoscope"), "#!/bin/sh\n").unwrap();
    assert_eq!(
        diffoscope_in(Some(&search), a, b).as_deref(),
        Some("diffoscope /nix/store/x-a /nix/store/x-a.check")
    );
    assert_eq!(diffoscope_in(None, a, b), None);
}

#[test]
fn lock_without_build_pins_derivations_only() {
    let f = Fixture::new();
    let file = f.file("det", DET);
    let mut opts = f.opts(&file);
    opts.build = false;
    let lock = run_lock(&opts).unwrap();
    assert!(
        lock.derivations
            .values()
            .flat_map(|d| d.outputs.values())
            .all(|o| o.nar_hash.is_none())
    );
    let lock_file = f.dir.path().join("lock.json");
    lock.write(&lock_file).unwrap();
    assert!(
        !std::fs::read_to_string(&lock_file)
            .unwrap()
            .contains("nar_hash")
    );
    let mut opts = f.opts(&file);
    opts.lock = Some(lock_file);
    let report = run_check(&opts).unwrap();
    for d in &report.derivations {
        assert_eq!(d.lock, LockStatus::Matches);
        assert_eq!(d.build, Classification::Reproducible);
        assert!(d.outputs.values().all(|o| o.lock == NarStatus::NotLocked));
    }
    assert_eq!(report.exit_code(), exit_code::OK);
    assert!(report.render().contains("not locked"));
}

/// Version 1 and 2 of a deployment: a build-only tool changes (same name and version, other contents; nothing
/// at run time refers to it), and the runtime dependency `rt` grows by 4,000 bytes.
const RT1: &str = r#"{ app = let tool = mk "tool-1.0" "echo tool-one > $out" { }; rt = mk "rt-1.0" "head -c 1000 /dev/zero > $out" { };
  in mk "app-2" "cat ${tool} > /dev/null; echo ${rt} > $out" { }; }"#;
const RT2: &str = r#"{ app = let tool = mk "tool-1.0" "echo tool-two > $out" { }; rt = mk "rt-1.0" "head -c 5000 /dev/zero > $out" { };
  in mk "app-2" "cat ${tool} > /dev/null; echo ${rt} > $out" { }; }"#;

/// NAR size of a store path as Nix registered it.
fn nix_query_size(store: &Path, path: &str) -> u64 {
    let out = support::nix_command("nix-store")
        .arg("--store")
        .arg(store)
        .args(["--query", "--size", path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// `closure diff` compares what is deployed by default: the runtime closures of the built outputs, with
/// per-package and total NAR sizes (Nix's own), so a build-only input that changed does not show and a runtime
/// dependency's growth does; `--build-time` shows the build-only change. Derivations, locks and Nix files
/// give the same answer; outputs not built are an error that says how to build them, or are built with `build`.
#[test]
fn closure_diff_compares_runtime_closures_with_sizes() {
    let f = Fixture::new();
    let nix = f.nix();
    let (v1, v2) = (f.file("rt1", RT1), f.file("rt2", RT2));
    let lock1 = run_lock(&f.opts(&v1)).unwrap();
    let lock_file = f.dir.path().join("lock1.json");
    lock1.write(&lock_file).unwrap();
    let eval = |file: &Path| ClosureSource::Eval {
        file: file.to_owned(),
        attrs: vec![],
    };
    // Version 2 is not built yet: said, with the command that builds it.
    let err = closure_diff(&eval(&v1), &eval(&v2), &nix, &Default::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("not in the store")
            && msg.contains(&format!(
                "nix-build --store {} {}",
                f.store().display(),
                v2.display()
            ))
            && msg.contains("--build"),
        "{msg}"
    );
    assert_eq!(err.exit_code(), 3);
    let with_build = ClosureDiffOptions {
        build: true,
        ..Default::default()
    };
    let d = closure_diff(&eval(&v1), &eval(&v2), &nix, &with_build).unwrap();
    eprintln!("{}", d.render());
    assert!(
        d.added.is_empty() && d.removed.is_empty() && d.changed.is_empty(),
        "{d:?}"
    );
    let rebuilt: Vec<&str> = d.rebuilt.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        rebuilt,
        ["app", "rt"],
        "the build-only tool is not deployed"
    );
    // Sizes are Nix's NAR sizes.
    let lock2 = run_lock(&f.opts(&v2)).unwrap();
    let rt_path = |l: &Lock| {
        l.derivations["app"]
            .runtime_closure
            .as_ref()
            .unwrap()
            .keys()
            .find(|p| p.ends_with("-rt-1.0"))
            .unwrap()
            .clone()
    };
    let (rt1, rt2) = (rt_path(&lock1), rt_path(&lock2));
    let rt = &d.rebuilt[1];
    assert_eq!(rt.old_size, Some(nix_query_size(&f.store(), &rt1)));
    assert_eq!(rt.new_size, Some(nix_query_size(&f.store(), &rt2)));
    assert_eq!(rt.new_size.unwrap() - rt.old_size.unwrap(), 4000);
    let total = d.size.unwrap();
    assert_eq!(total.new - total.old, 4000, "app's size is the same");
    assert!(
        d.render().contains("[B] rt: 1.0 (rebuilt), +3.9 KiB"),
        "{}",
        d.render()
    );
    // A lock (with its recorded runtime closure) and the .drv files give the same answer.
    let from_lock = closure_diff(
        &ClosureSource::Lock {
            path: lock_file.clone(),
            attrs: vec![],
        },
        &eval(&v2),
        &nix,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(from_lock, d);
    let drvs = closure_diff(
        &ClosureSource::Drv(lock1.derivations["app"].drv_path.clone()),
        &ClosureSource::Drv(lock2.derivations["app"].drv_path.clone()),
        &nix,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(drvs, d);
    // Build time: the tool shows, without sizes.
    let b = closure_diff(&eval(&v1), &eval(&v2), &nix, &build_time()).unwrap();
    let rebuilt: Vec<&str> = b.rebuilt.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(rebuilt, ["app", "rt", "tool"]);
    assert_eq!(b.size, None);
    // A lock written without building has no runtime closure: said, with what to do.
    let mut no_build = f.opts(&v1);
    no_build.build = false;
    let bare = f.dir.path().join("bare.json");
    run_lock(&no_build).unwrap().write(&bare).unwrap();
    let err = closure_diff(
        &ClosureSource::Lock {
            path: bare,
            attrs: vec![],
        },
        &eval(&v2),
        &nix,
        &Default::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("records no runtime closure")
            && err.to_string().contains("--build-time"),
        "{err}"
    );
}
