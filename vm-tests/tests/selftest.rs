//! Self-tests of the harness: the `vm-tests` binary is run as a subprocess on the fixture
//! directories, with the real Nix (throwaway stores, no nixpkgs), and what it reports — exit code,
//! libtest output, logs, JUnit XML, JSON events, the process table — is checked.
//!
//! Needs what `scripts/install-test-deps` and `vm-tests/install-deps` install (Nix, busybox, QEMU,
//! Debian's cloud kernel); a missing one makes these tests fail with the command to run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The Nix settings of this crate's tests, from one place: `scripts/test-nix.conf` (the settings every test
/// that runs Nix uses), appended to the inherited `NIX_CONFIG`, never replacing it.
fn nix_config() -> String {
    let ours = include_str!("../../scripts/test-nix.conf")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    match std::env::var("NIX_CONFIG") {
        Ok(inherited) if !inherited.trim().is_empty() => {
            format!("{}\n{ours}", inherited.trim_end())
        }
        _ => ours,
    }
}

/// Settings from the environment of whoever runs the self-tests that would change what a harness
/// run does; every run starts without them.
const OUTSIDE_SETTINGS: [&str; 12] = [
    "FEDIGEN_NIXPKGS",
    "FEDIGEN_STORE",
    "FEDIGEN_TIMEOUT",
    "FEDIGEN_VM_TESTS_DIR",
    "FEDIGEN_BUILDERS",
    "FEDIGEN_KVM",
    "FEDIGEN_REPO",
    "FEDIGEN_VM_TESTS_OUT",
    "FEDIGEN_LOG_DIR",
    "FEDIGEN_JUNIT",
    "FEDIGEN_JSON_EVENTS",
    "FEDIGEN_REQUIRE_TESTS",
];

fn fixtures(dir: &str) -> String {
    format!("{}/fixtures/{dir}", env!("CARGO_MANIFEST_DIR"))
}

/// A harness run's inputs and outputs, in a temporary directory of its own.
struct Run {
    dir: tempfile::TempDir,
    token: String,
}

/// What a finished run printed and wrote.
struct Finished {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    junit: Option<String>,
    events: Option<String>,
}

impl Finished {
    fn all(&self) -> String {
        let code = self
            .code
            .map_or_else(|| "none (killed by a signal)".to_owned(), |c| c.to_string());
        format!(
            "exit code {code}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        )
    }

    /// libtest's summary counts: passed, failed, ignored, filtered out.
    fn summary(&self) -> [u64; 4] {
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with("test result:"))
            .unwrap_or_else(|| panic!("no summary line\n{}", self.all()));
        let num = |word: &str| -> u64 {
            let before = line.split(&format!(" {word}")).next().unwrap();
            before
                .rsplit([' ', '.'])
                .next()
                .unwrap()
                .parse()
                .unwrap_or_else(|_| panic!("cannot read `{word}` in {line}"))
        };
        [
            num("passed"),
            num("failed"),
            num("ignored"),
            num("filtered out"),
        ]
    }
}

impl Run {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token = format!(
            "fedigen{}x{}",
            std::process::id(),
            dir.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .replace(['.', '_', '-'], "")
        );
        Run { dir, token }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, dirs: &[&str], args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vm-tests"));
        for d in dirs {
            cmd.arg("--tests-dir").arg(fixtures(d));
        }
        cmd.arg("--store")
            .arg(format!("throwaway:{}", self.path("stores").display()))
            .arg("--log-dir")
            .arg(self.path("logs"))
            .arg("--junit")
            .arg(self.path("junit.xml"))
            .arg("--json-events")
            .arg(self.path("events.json"))
            .arg("--no-progress")
            .args(args)
            .env("NIX_CONFIG", nix_config())
            .env("FEDIGEN_SELFTEST_TOKEN", &self.token);
        for var in OUTSIDE_SETTINGS {
            cmd.env_remove(var);
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    fn finish(&self, out: Output) -> Finished {
        Finished {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            junit: std::fs::read_to_string(self.path("junit.xml")).ok(),
            events: std::fs::read_to_string(self.path("events.json")).ok(),
        }
    }

    /// Runs the harness to completion; the reports read back are this run's (stale ones removed).
    fn run(&self, dirs: &[&str], args: &[&str]) -> Finished {
        let _ = std::fs::remove_file(self.path("junit.xml"));
        let _ = std::fs::remove_file(self.path("events.json"));
        self.finish(self.command(dirs, args).output().unwrap())
    }

    fn log(&self, trial: &str) -> String {
        std::fs::read_to_string(self.path("logs").join(format!("{trial}.log")))
            .unwrap_or_else(|e| panic!("log of {trial}: {e}"))
    }

    /// Live processes whose command line mentions `needle`.
    fn processes_mentioning(needle: &str) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == std::process::id() {
                continue;
            }
            let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            let state = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let zombie = state
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            if cmdline.contains(needle) && !zombie {
                found.push(format!("{pid}: {cmdline}"));
            }
        }
        found
    }

    /// Asserts that nothing this run started is still running: no process carries its token and
    /// no Nix process uses one of its stores.
    fn assert_nothing_left(&self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let mut left = Self::processes_mentioning(&self.token);
            left.extend(Self::processes_mentioning(
                &self.path("stores").display().to_string(),
            ));
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processes left running: {left:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One `<testcase>` of a JUnit report.
#[derive(Debug)]
struct Case {
    classname: String,
    failure: Option<(String, String)>,
    skipped: Option<String>,
}

/// Parses a JUnit report with a real XML parser and checks its structure and totals; returns the
/// test cases by name.
fn junit(f: &Finished) -> BTreeMap<String, Case> {
    let text = f
        .junit
        .as_deref()
        .unwrap_or_else(|| panic!("no JUnit report\n{}", f.all()));
    let doc = roxmltree::Document::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let suites: Vec<_> = root
        .children()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    assert_eq!(suites.len(), 1, "{text}");
    let suite = suites[0];
    let attr = |n: roxmltree::Node, a: &str| -> u64 {
        n.attribute(a)
            .unwrap_or_else(|| panic!("no {a}"))
            .parse()
            .unwrap()
    };
    let mut cases = BTreeMap::new();
    for case in suite.children().filter(|n| n.is_element()) {
        assert_eq!(case.tag_name().name(), "testcase");
        let failure = case
            .children()
            .find(|n| n.has_tag_name("failure"))
            .map(|n| {
                (
                    n.attribute("message").unwrap().to_owned(),
                    n.descendants().filter_map(|t| t.text()).collect::<String>(),
                )
            });
        let skipped = case
            .children()
            .find(|n| n.has_tag_name("skipped"))
            .map(|n| n.attribute("message").unwrap().to_owned());
        assert!(case.attribute("time").unwrap().parse::<f64>().is_ok());
        let name = case.attribute("name").unwrap().to_owned();
        let c = Case {
            classname: case.attribute("classname").unwrap().to_owned(),
            failure,
            skipped,
        };
        assert!(cases.insert(name, c).is_none(), "duplicate testcase");
    }
    let [passed, failed, ignored, _] = f.summary();
    for node in [root, suite] {
        assert_eq!(attr(node, "tests"), passed + failed + ignored, "{text}");
        assert_eq!(attr(node, "failures"), failed, "{text}");
        assert_eq!(attr(node, "skipped"), ignored, "{text}");
        assert_eq!(attr(node, "errors"), 0);
    }
    assert_eq!(cases.len() as u64, passed + failed + ignored);
    assert_eq!(
        cases.values().filter(|c| c.failure.is_some()).count() as u64,
        failed
    );
    assert_eq!(
        cases.values().filter(|c| c.skipped.is_some()).count() as u64,
        ignored
    );
    cases
}

/// The JSON events file: every line is JSON; returns the final event of each test by name.
fn events(f: &Finished) -> BTreeMap<String, serde_json::Value> {
    let text = f.events.as_deref().expect("no events file");
    let mut last = BTreeMap::new();
    let mut suite_end = None;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        match (v["type"].as_str(), v["event"].as_str()) {
            (Some("test"), Some("started")) => {}
            (Some("test"), Some(_)) => {
                last.insert(v["name"].as_str().unwrap().to_owned(), v);
            }
            (Some("suite"), Some("ok" | "failed")) => suite_end = Some(v),
            _ => {}
        }
    }
    let end = suite_end.expect("no suite end event");
    let [passed, failed, ignored, filtered] = f.summary();
    assert_eq!(end["passed"], passed);
    assert_eq!(end["failed"], failed);
    assert_eq!(end["ignored"], ignored);
    assert_eq!(end["filtered_out"], filtered);
    last
}

#[test]
fn pass_fail_hang_and_missing_prerequisite() {
    let run = Run::new();
    let f = run.run(&["basic"], &["--test-threads", "2"]);
    let all = f.all();
    assert_eq!(f.code, Some(101), "{all}");
    assert_eq!(f.summary(), [1, 2, 2, 0], "{all}");
    assert!(f.stdout.contains("test [vm] pass          ... ok"), "{all}");
    assert!(
        f.stdout.contains("test [vm] fail          ... FAILED"),
        "{all}"
    );
    assert!(
        f.stdout.contains("test [vm] hang          ... FAILED"),
        "{all}"
    );
    assert!(
        f.stdout
            .contains("test [vm] nixos-minimal ... ignored (needs nixpkgs)"),
        "{all}"
    );
    assert!(
        f.stdout.contains("test [vm] ignored       ... ignored"),
        "{all}"
    );

    // The failure is shown with its log, in libtest's failures section.
    let failures = f
        .stdout
        .split("failures:")
        .nth(1)
        .expect("failures section");
    assert!(
        failures.contains("---- fail ----\nbuild failed")
            && failures.contains("FIXTURE-FAIL-MARKER: this fixture fails on purpose"),
        "{all}"
    );
    // The hang timed out, and its whole tree was killed: nothing with its token is running.
    assert!(
        failures.contains("timed out after 3s during build; killed its process tree")
            && failures.contains("none left running"),
        "{all}"
    );
    run.assert_nothing_left();

    // Live lines carry the trial's name; every trial that ran has a log file.
    assert!(
        f.stderr
            .contains("[pass] pass: building in the sandbox as 1000 on localhost"),
        "{all}"
    );
    assert!(
        f.stderr
            .contains(&format!("[hang] HANG-STARTED {}", run.token)),
        "{all}"
    );
    assert!(
        run.log("hang")
            .contains(&format!("HANG-STARTED {}", run.token))
    );
    assert!(run.log("pass").contains("vm-tests: running nix-build"));

    let cases = junit(&f);
    assert!(cases["pass"].failure.is_none() && cases["pass"].skipped.is_none());
    assert_eq!(cases["pass"].classname, "vm-tests.vm");
    let (msg, text) = cases["fail"].failure.as_ref().unwrap();
    assert!(msg.starts_with("build failed"), "{msg}");
    assert!(text.contains("FIXTURE-FAIL-MARKER"), "{text}");
    let (msg, _) = cases["hang"].failure.as_ref().unwrap();
    assert!(msg.starts_with("timed out after 3s"), "{msg}");
    assert!(
        cases["nixos-minimal"]
            .skipped
            .as_ref()
            .unwrap()
            .contains("FEDIGEN_NIXPKGS")
    );
    assert!(
        cases["ignored"]
            .skipped
            .as_ref()
            .unwrap()
            .contains("only runs on request")
    );

    let ev = events(&f);
    assert_eq!(ev["pass"]["event"], "ok");
    assert_eq!(ev["fail"]["event"], "failed");
    assert_eq!(ev["hang"]["event"], "failed");
    assert_eq!(ev["nixos-minimal"]["event"], "ignored");
    assert!(
        ev["nixos-minimal"]["message"]
            .as_str()
            .unwrap()
            .contains("nixpkgs")
    );
}

#[test]
fn standard_libtest_flags() {
    let run = Run::new();
    // --list: every trial with its kind, nothing run, no report.
    let f = run.run(&["basic"], &["--list"]);
    assert_eq!(f.code, Some(0), "{}", f.all());
    let listed: Vec<&str> = f.stdout.lines().collect();
    assert_eq!(
        listed,
        [
            "[vm] fail: test",
            "[vm] hang: test",
            "[vm] ignored: test",
            "[vm] nixos-minimal: test",
            "[vm] pass: test"
        ],
        "{}",
        f.all()
    );
    let f = run.run(&["basic"], &["--list", "--ignored"]);
    assert_eq!(f.stdout.trim(), "[vm] ignored: test", "{}", f.all());

    // A filter is a substring; --exact needs the whole name; --skip removes.
    let f = run.run(&["basic"], &["--exact", "pass", "--test-threads", "1"]);
    assert_eq!(f.code, Some(0), "{}", f.all());
    assert_eq!(f.summary(), [1, 0, 0, 4], "{}", f.all());
    assert_eq!(junit(&f).len(), 1);
    let f = run.run(&["basic"], &["a", "--skip", "hang", "--skip", "fail"]);
    // `a` matches pass, nixos-minimal (and hang, fail: skipped).
    assert_eq!(f.summary(), [1, 0, 1, 3], "{}", f.all());
    // The kind is part of the name for filters, as libtest-mimic shows it.
    let f = run.run(&["basic"], &["--exact", "[vm] pass"]);
    assert_eq!(f.summary(), [1, 0, 0, 4], "{}", f.all());

    // --ignored runs only the header-ignored trial; --include-ignored runs it with the others.
    let f = run.run(&["basic"], &["--ignored"]);
    assert_eq!(f.code, Some(0), "{}", f.all());
    assert_eq!(f.summary(), [1, 0, 0, 4], "{}", f.all());
    assert!(run.log("ignored").contains("ignored fixture ran"));
    let f = run.run(
        &["basic"],
        &["--include-ignored", "--skip", "hang", "--skip", "fail"],
    );
    assert_eq!(f.summary(), [2, 0, 1, 2], "{}", f.all());
    let cases = junit(&f);
    assert!(cases["ignored"].skipped.is_none() && cases["ignored"].failure.is_none());

    // libtest's JSON format on stdout.
    let f = run.run(
        &["basic"],
        &[
            "--format",
            "json",
            "-Z",
            "unstable-options",
            "--exact",
            "pass",
        ],
    );
    let lines: Vec<serde_json::Value> = f
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|v| v["type"] == "test" && v["event"] == "ok" && v["name"] == "pass")
    );
    assert!(
        lines
            .iter()
            .any(|v| v["type"] == "suite" && v["passed"] == 1)
    );
}

#[test]
fn boots_a_real_kernel_under_software_emulation() {
    let run = Run::new();
    let f = run.run(&["boot"], &[]);
    let all = f.all();
    assert_eq!(f.code, Some(0), "{all}");
    assert_eq!(f.summary(), [1, 0, 0, 0], "{all}");
    assert!(f.stdout.contains("test [vm] kernel-boot ... ok"), "{all}");
    // It says that it is impure, and which accelerator it used and why.
    assert!(
        f.stderr
            .contains("[kernel-boot] impure: the build sees host paths /usr /lib /lib64"),
        "{all}"
    );
    let log = run.log("kernel-boot");
    assert!(
        log.contains("QEMU uses software emulation (TCG) because") || log.contains("-accel kvm"),
        "{log}"
    );
    // What the guest printed on its serial console.
    let guest = log
        .lines()
        .find(|l| l.contains("GUEST-SAYS: kernel "))
        .unwrap_or_else(|| panic!("the guest said nothing\n{log}"));
    assert!(
        guest.contains("-cloud-amd64 computed 42 on 1 cpu"),
        "{guest}"
    );
    assert!(log.contains("reboot: Power down"), "{log}");
    junit(&f);
    run.assert_nothing_left();
}

#[test]
fn reproducibility_checks() {
    let run = Run::new();
    let f = run.run(&["repro"], &[]);
    let all = f.all();
    assert_eq!(f.code, Some(101), "{all}");
    assert_eq!(f.summary(), [1, 2, 0, 0], "{all}");
    assert!(f.stdout.contains("test [repro] same       ... ok"), "{all}");
    let cases = junit(&f);
    let (msg, text) = cases["random"].failure.as_ref().unwrap();
    assert!(msg.starts_with("not reproducible"), "{msg}");
    assert!(text.contains("may not be deterministic"), "{text}");
    let (msg, _) = cases["wrong-hash"].failure.as_ref().unwrap();
    assert!(
        msg.contains(
            "differs from the recorded sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"
        ),
        "{msg}"
    );
    assert!(run.log("same").contains("as recorded"));
    assert_eq!(cases["same"].classname, "vm-tests.repro");
}

#[test]
fn ctrl_c_kills_every_trial_process_tree() {
    let run = Run::new();
    let child = run
        .command(&["basic"], &["--exact", "hang", "--timeout", "600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = run.path("logs").join("hang.log");
    let started = format!("HANG-STARTED {}", run.token);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains(&started)) {
        assert!(Instant::now() < deadline, "the hang fixture never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!Run::processes_mentioning(&run.token).is_empty());
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let t = Instant::now();
    let out = child.wait_with_output().unwrap();
    let f = run.finish(out);
    assert!(t.elapsed() < Duration::from_secs(20), "{}", f.all());
    assert_eq!(f.code, Some(130), "{}", f.all());
    assert!(
        f.stderr.contains("interrupted; killing the process trees"),
        "{}",
        f.all()
    );
    assert!(f.stderr.contains("0 still running"), "{}", f.all());
    run.assert_nothing_left();
}

#[test]
fn interactive_driver() {
    let run = Run::new();
    // Without nixpkgs it refuses, saying why.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vm-tests"));
    cmd.arg("--tests-dir")
        .arg(fixtures("interactive"))
        .args(["--interactive", "driver"])
        .env("NIX_CONFIG", nix_config())
        .env_remove("FEDIGEN_NIXPKGS")
        .env_remove("FEDIGEN_STORE");
    let f = run.finish(cmd.output().unwrap());
    assert_eq!(f.code, Some(2), "{}", f.all());
    assert!(
        f.stderr.contains(
            "cannot start the interactive driver of `driver`: needs nixpkgs: \
             set FEDIGEN_NIXPKGS=/path/to/nixpkgs"
        ),
        "{}",
        f.all()
    );
    // An unknown test is named as such.
    let f = run.finish(
        Command::new(env!("CARGO_BIN_EXE_vm-tests"))
            .arg("--tests-dir")
            .arg(fixtures("interactive"))
            .args(["--interactive", "nope"])
            .output()
            .unwrap(),
    );
    assert_eq!(f.code, Some(2));
    assert!(
        f.stderr.contains("no test named `nope`; tests: driver"),
        "{}",
        f.all()
    );

    // With a (stand-in) nixpkgs it builds `driverInteractive` in the local store and starts it.
    let f = run.finish(
        cmd.env("FEDIGEN_NIXPKGS", fixtures("fake-nixpkgs"))
            .output()
            .unwrap(),
    );
    assert_eq!(f.code, Some(0), "{}", f.all());
    assert!(
        f.stdout
            .contains("INTERACTIVE-DRIVER-STARTED with FAKE-NIXPKGS"),
        "{}",
        f.all()
    );
}

#[test]
fn broken_and_missing_test_files() {
    let run = Run::new();
    let dir = run.path("tests");
    std::fs::create_dir_all(&dir).unwrap();
    // No tests at all (the state of vm-tests/generated before the generator fills it).
    let empty = run.finish(
        run.command(
            &[],
            &["--tests-dir", &dir.join("absent").display().to_string()],
        )
        .output()
        .unwrap(),
    );
    assert_eq!(empty.code, Some(0), "{}", empty.all());
    assert!(empty.stdout.contains("running 0 tests"), "{}", empty.all());
    assert_eq!(junit(&empty).len(), 0);

    std::fs::write(dir.join("headless.nix"), "{ }\n").unwrap();
    std::fs::write(dir.join("_helper.nix"), "{ }\n").unwrap();
    std::fs::write(
        dir.join("typo.nix"),
        "#: kind = \"vm\"\n#: requries = []\n{ }\n",
    )
    .unwrap();
    let f = run.finish(
        run.command(&[], &["--tests-dir", &dir.display().to_string()])
            .output()
            .unwrap(),
    );
    assert_eq!(f.code, Some(101), "{}", f.all());
    assert_eq!(f.summary(), [0, 2, 0, 0], "{}", f.all());
    let cases = junit(&f);
    assert_eq!(cases.keys().collect::<Vec<_>>(), ["headless", "typo"]);
    assert!(
        cases["headless"]
            .failure
            .as_ref()
            .unwrap()
            .0
            .contains("no `#:` header")
    );
    assert!(
        cases["typo"]
            .failure
            .as_ref()
            .unwrap()
            .1
            .contains("requries")
    );
}

#[test]
fn kvm_is_probed_not_assumed() {
    // The probe is honest both ways: when it says KVM works, a guest booted with it; when it says
    // it does not, the reason names what failed. On this project's machines /dev/kvm exists but
    // cannot boot a guest, and the probe must not take long to find out.
    let t = Instant::now();
    let qemu = Path::new("/usr/bin/qemu-system-x86_64");
    assert!(
        qemu.exists(),
        "QEMU is not installed: run vm-tests/install-deps"
    );
    match vm_tests::prereq::probe_kvm(qemu, Duration::from_secs(20)) {
        Ok(()) => eprintln!("KVM works here"),
        Err(why) => {
            assert!(why.contains("/dev/kvm"), "{why}");
            eprintln!("KVM is unusable here: {why}");
        }
    }
    assert!(t.elapsed() < Duration::from_secs(25));
}

/// A fedigen repository of one trial, `only-here`, in a temporary folder: as a second clone would be.
fn other_clone(root: &Path) -> PathBuf {
    let clone = root.join("clone");
    std::fs::create_dir_all(clone.join("vm-tests/generated")).unwrap();
    std::fs::create_dir_all(clone.join("some/sub")).unwrap();
    std::fs::write(
        clone.join("vm-tests/generated/only-here.nix"),
        "#: kind = \"vm\"\n#: requires = [\"nixpkgs\"]\n{ nixpkgs ? <nixpkgs> }: throw \"not built\"\n",
    )
    .unwrap();
    clone
}

/// The harness binary started in `cwd` with no paths given: everything comes from the repository.
fn bare_command(cwd: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vm-tests"));
    cmd.current_dir(cwd)
        .args(args)
        .env("NIX_CONFIG", nix_config())
        .env_remove("CARGO_TARGET_DIR")
        .stdin(Stdio::null());
    for var in OUTSIDE_SETTINGS {
        cmd.env_remove(var);
    }
    cmd
}

#[test]
fn runs_on_the_repository_it_is_started_in() {
    let run = Run::new();
    let clone = other_clone(run.dir.path());
    let outside = run.path("outside");
    std::fs::create_dir_all(&outside).unwrap();

    // Started anywhere inside another clone, this binary lists that clone's trials, not those of
    // the tree it was built in.
    let f = run.finish(
        bare_command(&clone.join("some/sub"), &["--list"])
            .output()
            .unwrap(),
    );
    assert_eq!(f.code, Some(0), "{}", f.all());
    assert_eq!(f.stdout.trim(), "[vm] only-here: test", "{}", f.all());

    // A run writes its logs and reports under that clone's target/.
    let f = run.finish(bare_command(&clone, &[]).output().unwrap());
    assert_eq!(f.code, Some(0), "{}", f.all());
    let out = clone.join("target/vm-tests");
    assert!(
        f.stderr
            .contains(&format!("logs in {}", out.join("logs").display())),
        "{}",
        f.all()
    );
    let report = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(report.contains("only-here"), "{report}");
    let events = std::fs::read_to_string(out.join("events.json")).unwrap();
    assert!(events.contains("only-here"), "{events}");

    // Outside any repository it says so, and how to name one; nothing is taken from the build.
    let f = run.finish(
        bare_command(&outside, &["--list"])
            .env_remove("CARGO_MANIFEST_DIR")
            .output()
            .unwrap(),
    );
    assert_eq!(f.code, Some(2), "{}", f.all());
    assert!(
        f.stderr.contains(&format!(
            "{} is not inside a fedigen repository",
            outside.display()
        )) && f.stderr.contains("set FEDIGEN_REPO=/path/to/repository"),
        "{}",
        f.all()
    );
    // FEDIGEN_REPO (or --repo) names it; so does the CARGO_MANIFEST_DIR that `cargo run` sets.
    let mut by_env = bare_command(&outside, &["--list"]);
    by_env
        .env("FEDIGEN_REPO", &clone)
        .env_remove("CARGO_MANIFEST_DIR");
    let mut by_flag = bare_command(&outside, &["--list", "--repo", "../clone"]);
    by_flag.env_remove("CARGO_MANIFEST_DIR");
    let mut by_cargo = bare_command(&outside, &["--list"]);
    by_cargo.env("CARGO_MANIFEST_DIR", clone.join("vm-tests"));
    for mut cmd in [by_env, by_flag, by_cargo] {
        let f = run.finish(cmd.output().unwrap());
        assert_eq!(f.stdout.trim(), "[vm] only-here: test", "{}", f.all());
    }
    // A repository named wrongly is refused, even when nothing else would need it.
    let f = run.finish(
        bare_command(&clone, &["--list", "--tests-dir", "vm-tests/generated"])
            .env("FEDIGEN_REPO", &outside)
            .output()
            .unwrap(),
    );
    assert_eq!(f.code, Some(2), "{}", f.all());
    assert!(
        f.stderr.contains("is not a fedigen repository"),
        "{}",
        f.all()
    );
    // Outside a repository, a run given every path it needs works.
    let f = run.finish(
        bare_command(
            &outside,
            &[
                "--tests-dir",
                &clone.join("vm-tests/generated").display().to_string(),
            ],
        )
        .env_remove("CARGO_MANIFEST_DIR")
        .env("FEDIGEN_VM_TESTS_OUT", run.path("out"))
        .output()
        .unwrap(),
    );
    assert_eq!(f.code, Some(0), "{}", f.all());
    assert!(run.path("out/junit.xml").is_file(), "{}", f.all());
}

#[test]
fn ignored_reasons_are_said_once_and_require_tests_fails_a_run_that_tested_nothing() {
    let run = Run::new();
    let f = run.run(&["needs"], &[]);
    let all = f.all();
    assert_eq!(f.code, Some(0), "{all}");
    assert_eq!(f.summary(), [0, 0, 2, 0], "{all}");
    // libtest's line for each trial says what is missing; how to provide it is said once.
    for name in ["first ", "second"] {
        assert!(
            f.stdout
                .contains(&format!("test [vm] {name} ... ignored (needs nixpkgs)\n")),
            "{all}"
        );
    }
    let how = "needs nixpkgs: set FEDIGEN_NIXPKGS=/path/to/nixpkgs";
    assert_eq!(
        f.stdout.matches("FEDIGEN_NIXPKGS").count() + f.stderr.matches("FEDIGEN_NIXPKGS").count(),
        1,
        "{all}"
    );
    assert!(
        f.stderr
            .contains(&format!("vm-tests: 2 trials were ignored:\n  {how}"))
            && f.stderr.contains("(2 trials: first, second)"),
        "{all}"
    );
    assert!(!all.contains("machine of this project"), "{all}");
    // Each trial's record still carries the whole reason.
    let cases = junit(&f);
    assert!(cases["first"].skipped.as_ref().unwrap().starts_with(how));
    assert!(cases["second"].skipped.as_ref().unwrap().starts_with(how));
    assert_eq!(events(&f)["first"]["event"], "ignored");

    // For CI jobs that must test something: the flag and the variable make such a run fail.
    let f = run.run(&["needs"], &["--require-tests"]);
    assert_eq!(f.code, Some(3), "{}", f.all());
    assert!(
        f.stderr
            .contains("vm-tests: error: no trial ran (2 ignored, 0 filtered out)"),
        "{}",
        f.all()
    );
    assert!(f.events.as_deref().unwrap().contains(r#""event":"failed""#));
    junit(&f);
    let with_env = |value: &str| {
        let _ = std::fs::remove_file(run.path("junit.xml"));
        run.finish(
            run.command(&["needs"], &[])
                .env("FEDIGEN_REQUIRE_TESTS", value)
                .output()
                .unwrap(),
        )
    };
    assert_eq!(with_env("1").code, Some(3));
    assert_eq!(with_env("0").code, Some(0));
    assert_eq!(with_env("").code, Some(0));
    // Nothing selected is nothing tested, too; one trial that ran is enough.
    let f = run.run(
        &["basic"],
        &["--fail-if-all-ignored", "--exact", "no-such-trial"],
    );
    assert_eq!(f.code, Some(3), "{}", f.all());
    let f = run.run(
        &["basic", "needs"],
        &["--require-tests", "--skip", "hang", "--skip", "fail"],
    );
    assert_eq!(f.code, Some(0), "{}", f.all());
    assert_eq!(f.summary(), [1, 0, 4, 2], "{}", f.all());
}

#[test]
fn output_lines_do_not_interleave_in_a_shared_pipe() {
    // stdout and stderr into one file, as `cargo test … 2>&1 | tee log` in CI: libtest's lines and
    // the trials' streamed lines must each stay whole, even when trials run one at a time.
    let run = Run::new();
    let path = run.path("output.txt");
    let file = std::fs::File::create(&path).unwrap();
    let status = run
        .command(&["basic"], &["--skip", "hang", "--test-threads", "1"])
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .status()
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(status.code(), Some(101), "{text}");
    let mut libtest_lines = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("test [vm] ") {
            libtest_lines += 1;
            let outcome = rest
                .split(" ... ")
                .nth(1)
                .unwrap_or_else(|| panic!("{line}\n{text}"));
            assert!(
                ["ok", "FAILED", "ignored"]
                    .iter()
                    .any(|o| outcome == *o || outcome.starts_with(&format!("{o} ("))),
                "a libtest line was split: {line:?}\n{text}"
            );
        }
        for name in ["pass", "fail"] {
            if let Some(at) = line.find(&format!("[{name}] ")) {
                assert_eq!(
                    at, 0,
                    "a trial's line does not start a line: {line:?}\n{text}"
                );
            }
        }
    }
    assert_eq!(libtest_lines, 4, "{text}");
    assert!(
        text.contains("\n[pass] pass: building in the sandbox"),
        "{text}"
    );
}

/// `evaluate_twice` and `rebuild`: a trial whose derivation reads the clock fails on its second evaluation,
/// before anything is built; a trial naming a part that writes random bytes fails on that part's `--check`
/// rebuild, before the trial itself is built; a steady one passes after both parts were rebuilt; one reading HOME
/// fails (the second evaluation has an empty one); a part the trial does not build is refused.
#[test]
fn repeated_evaluations_and_rebuilt_parts() {
    let run = Run::new();
    let f = run.run(&["repeat"], &[]);
    let all = f.all();
    assert_eq!(f.code, Some(101), "{all}");
    assert_eq!(f.summary(), [1, 5, 0, 0], "{all}");
    assert!(f.stdout.contains("test [vm] steady"), "{all}");
    let cases = junit(&f);
    assert!(cases["steady"].failure.is_none(), "{all}");
    let steady = run.log("steady");
    assert!(
        steady.contains(
            "two evaluations, in separate processes, seconds and environments, gave one derivation"
        ),
        "{steady}"
    );
    for part in ["machines.one", "machines.two"] {
        assert!(
            steady.contains(&format!("{part} rebuilt, with the "))
                && steady.contains("built here: the same bytes"),
            "{steady}"
        );
    }

    let (msg, _) = cases["clock"].failure.as_ref().unwrap();
    assert!(
        msg.starts_with("not repeatable: two evaluations gave different derivations"),
        "{msg}"
    );
    // The inputs that differ are listed (the clock's derivation has none, so both lists are empty).
    assert!(msg.contains("Inputs only the first has: "), "{msg}");
    let clock = run.log("clock");
    assert!(
        !clock.contains("running nix-build"),
        "built after a failed evaluation: {clock}"
    );

    let (msg, _) = cases["unsteady-part"].failure.as_ref().unwrap();
    assert!(
        msg.starts_with("not reproducible: machines.noisy (/nix/store/"),
        "{msg}"
    );
    assert!(
        msg.contains("-noisy.drv) rebuilt differs from its first build"),
        "{msg}"
    );
    assert!(msg.contains("may not be deterministic"), "{msg}");
    let unsteady = run.log("unsteady-part");
    let trial_built = unsteady
        .lines()
        .any(|l| l.contains("running nix-build") && !l.contains(" -A "));
    assert!(
        !trial_built,
        "the trial was built after its part failed: {unsteady}"
    );
    // An input of the named part, built here, that does not rebuild alike: found by the rebuild of the closure.
    let (msg, _) = cases["unsteady-input"].failure.as_ref().unwrap();
    assert!(msg.starts_with("not reproducible: machines.top ("), "{msg}");
    assert!(
        msg.contains("-noisy-input.drv"),
        "the input is named: {msg}"
    );
    // The second evaluation has another HOME: an evaluation reading it differs.
    let (msg, _) = cases["home"].failure.as_ref().unwrap();
    assert!(msg.starts_with("not repeatable: "), "{msg}");
    assert!(
        run.log("home").contains("HOME="),
        "the log says what the second evaluation ran with"
    );
    // A `rebuild` of something the trial does not build is refused before it is built.
    let (msg, _) = cases["elsewhere"].failure.as_ref().unwrap();
    assert!(
        msg.starts_with("`rebuild` names unused, whose derivation /nix/store/"),
        "{msg}"
    );
    assert!(
        !run.log("elsewhere").contains("--realise"),
        "built a derivation it refused"
    );
    run.assert_nothing_left();
}

/// The harness run on one fixture directory with one store for every run (a throwaway store per trial would start
/// empty each time), and a Nix command on that store.
struct SharedStore {
    run: Run,
    dir: &'static str,
}

impl SharedStore {
    fn store(&self) -> PathBuf {
        self.run.path("store")
    }

    fn harness(&self) -> Finished {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vm-tests"));
        for var in OUTSIDE_SETTINGS {
            command.env_remove(var);
        }
        let out = command
            .arg("--tests-dir")
            .arg(fixtures(self.dir))
            .arg("--store")
            .arg(self.store())
            .arg("--log-dir")
            .arg(self.run.path("logs"))
            .arg("--junit")
            .arg(self.run.path("junit.xml"))
            .arg("--no-progress")
            .env("NIX_CONFIG", nix_config())
            .env("FEDIGEN_SELFTEST_TOKEN", &self.run.token)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        self.run.finish(out)
    }

    fn nix(&self, program: &str, args: &[&str]) -> Vec<u8> {
        let out = Command::new(program)
            .args(args)
            .arg("--store")
            .arg(self.store())
            .env("NIX_CONFIG", nix_config())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A string the fixture file `file` evaluates `attr` of to.
    fn eval(&self, file: &str, attr: &str) -> String {
        let expression = format!("(import {}/{file}).{attr}", fixtures(self.dir));
        serde_json::from_slice(
            &self.nix("nix-instantiate", &["--eval", "--json", "-E", &expression]),
        )
        .unwrap()
    }
}

/// A derivation of the rebuilt closure that has lost an output since it was built (a garbage collection takes an
/// output nothing uses, as cacert's `unbundled` beside the `out` a system uses) is not a reason to fail: Nix refuses
/// `--check` on it, so the harness realises the closure's derivations first.
#[test]
fn a_rebuilt_closure_missing_an_unused_output_still_passes() {
    let shared = SharedStore {
        run: Run::new(),
        dir: "repeat-gc",
    };
    let f = shared.harness();
    assert_eq!(f.summary(), [1, 0, 0, 0], "{}", f.all());
    let extra = shared.eval("partial.nix", "two.extra.outPath");
    shared.nix("nix-store", &["--delete", &extra]);
    let f = shared.harness();
    assert_eq!(f.summary(), [1, 0, 0, 0], "{}", f.all());
    shared.run.assert_nothing_left();
}

/// An input built here is rebuilt even when this machine signed it (`secret-key-files` signs every local build):
/// the store still marks it built here (`ultimate`), and its random bytes fail the rebuild.
#[test]
fn an_input_built_here_and_signed_is_still_rebuilt() {
    let shared = SharedStore {
        run: Run::new(),
        dir: "repeat-signed",
    };
    let file = format!("{}/signed.nix", fixtures("repeat-signed"));
    let noisy = String::from_utf8(shared.nix("nix-instantiate", &[&file, "-A", "noisy"])).unwrap();
    let out = String::from_utf8(shared.nix("nix-store", &["--realise", noisy.trim()])).unwrap();
    let (secret, public) = (shared.run.path("key.sec"), shared.run.path("key.pub"));
    let out_path = out.trim();
    let status = Command::new("nix-store")
        .args(["--generate-binary-cache-key", "fedigen-selftest"])
        .args([&secret, &public])
        .status()
        .unwrap();
    assert!(status.success());
    shared.nix(
        "nix",
        &[
            "store",
            "sign",
            "--key-file",
            &secret.display().to_string(),
            out_path,
        ],
    );
    let info = String::from_utf8(shared.nix("nix", &["path-info", "--json", out_path])).unwrap();
    assert!(info.contains("fedigen-selftest:"), "not signed: {info}");
    let f = shared.harness();
    assert_eq!(f.summary(), [0, 1, 0, 0], "{}", f.all());
    let cases = junit(&f);
    let (msg, _) = cases["signed"].failure.as_ref().unwrap();
    assert!(
        msg.contains("-noisy-signed.drv' may not be deterministic"),
        "{msg}"
    );
    shared.run.assert_nothing_left();
}
