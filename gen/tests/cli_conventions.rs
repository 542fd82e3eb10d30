//! Command-line conventions every subcommand keeps: `--help` is the manual (examples and exit statuses in each),
//! shell completions, `--quiet`, and colour only where it is wanted (`--color`, `NO_COLOR`, terminals).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn fedigen(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fedigen"));
    c.args(args).current_dir(repo()).env_remove("NO_COLOR");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("fedigen runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The subcommand names listed under `Commands:` of a help text (clap's own `help` excluded).
fn commands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("  "))
        // A name stands two spaces in; wrapped descriptions stand further in.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every leaf subcommand, found by walking the help texts from the top (so a new subcommand is covered
/// without touching this test).
fn leaf_subcommands() -> Vec<Vec<String>> {
    let mut leaves = Vec::new();
    let mut queue: Vec<Vec<String>> = vec![vec![]];
    while let Some(path) = queue.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = fedigen(&args, &[]);
        assert!(
            out.status.success(),
            "fedigen {args:?}: {}",
            text(&out.stderr)
        );
        let subs = commands(&text(&out.stdout));
        if subs.is_empty() {
            leaves.push(path);
        } else {
            for s in subs {
                let mut p = path.clone();
                p.push(s);
                queue.push(p);
            }
        }
    }
    leaves.sort();
    leaves
}

#[test]
fn every_subcommand_help_has_examples_and_exit_status() {
    let leaves = leaf_subcommands();
    // The walk itself must find the tree (a broken walk would make the loop below vacuous).
    for expected in [
        vec!["generate"],
        vec!["template", "check"],
        vec!["repro", "check"],
        vec!["nix", "from-json"],
        vec!["completions"],
    ] {
        assert!(
            leaves.iter().any(|l| l == &expected),
            "subcommand {expected:?} not found by walking --help: {leaves:?}"
        );
    }
    let mut missing = Vec::new();
    for path in &leaves {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = text(&fedigen(&args, &[]).stdout);
        let has_example = help.lines().any(|l| l.trim_start().starts_with("fedigen "))
            && help.contains("Examples:");
        if !has_example || !help.contains("Exit status") {
            missing.push(path.join(" "));
        }
    }
    assert!(
        missing.is_empty(),
        "--help without examples or exit statuses: {missing:?}"
    );
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef fedigen"),
        ("fish", "complete -c fedigen"),
    ] {
        let out = fedigen(&["completions", shell], &[]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(
            script.contains(marker),
            "{shell} completion lacks {marker:?}"
        );
        // Subcommands of every level are completed.
        assert!(
            script.contains("from-json"),
            "{shell} completion lacks nested subcommands"
        );
    }
    let out = fedigen(&["completions", "tcsh"], &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn quiet_leaves_only_errors_and_requested_output() {
    let loud = fedigen(&["validate", "examples/provider.toml"], &[]);
    assert!(loud.status.success(), "{}", text(&loud.stderr));
    assert!(
        text(&loud.stderr).contains("valid"),
        "without --quiet, validate says the specification is valid"
    );
    for flag in ["--quiet", "-q"] {
        let quiet = fedigen(&[flag, "validate", "examples/provider.toml"], &[]);
        assert!(quiet.status.success());
        assert_eq!(text(&quiet.stderr), "", "{flag} prints nothing on success");
        // Global: accepted after the subcommand too.
        let after = fedigen(&["validate", "examples/provider.toml", flag], &[]);
        assert!(after.status.success());
        assert_eq!(text(&after.stderr), "");
    }
    // Errors are still printed.
    let invalid = "gen/tests/fixtures/spec/invalid/03-domain-upper-case.toml";
    let out = fedigen(&["--quiet", "validate", invalid], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("error"), "{}", text(&out.stderr));
}

const ESC: char = '\u{1b}';

#[test]
fn colour_follows_the_flag_and_no_color() {
    let invalid = "gen/tests/fixtures/spec/invalid/03-domain-upper-case.toml";
    let always = fedigen(&["--color", "always", "validate", invalid], &[]);
    assert!(text(&always.stderr).contains(ESC), "--color always colours");
    let never = fedigen(&["--color=never", "validate", invalid], &[]);
    assert!(!text(&never.stderr).contains(ESC), "--color never does not");
    // Not a terminal: no colour by default.
    let piped = fedigen(&["validate", invalid], &[]);
    assert!(!text(&piped.stderr).contains(ESC), "no colour into a pipe");
}

/// Runs `fedigen ARGS` on a pseudo-terminal (util-linux `script`), returning what it printed there.
fn on_terminal(args: &str, no_color: Option<&str>) -> String {
    let mut c = Command::new("script");
    c.args(["-qec", &format!("{} {args}", env!("CARGO_BIN_EXE_fedigen"))])
        .arg("/dev/null")
        .current_dir(repo())
        .env_remove("NO_COLOR");
    if let Some(v) = no_color {
        c.env("NO_COLOR", v);
    }
    // `script` is util-linux's (Debian's essential bsdutils), on every machine of this project.
    let out = c.output().expect("util-linux `script` runs");
    text(&out.stdout)
}

#[test]
fn no_color_is_respected_on_a_terminal() {
    let invalid = "gen/tests/fixtures/spec/invalid/03-domain-upper-case.toml";
    let args = format!("validate {invalid}");
    let coloured = on_terminal(&args, None);
    assert!(
        coloured.contains(ESC),
        "a terminal gets colour: {coloured:?}"
    );
    let plain = on_terminal(&args, Some("1"));
    assert!(plain.contains("error"), "{plain:?}");
    assert!(
        !plain.contains(ESC),
        "NO_COLOR=1 turns colour off: {plain:?}"
    );
    // An empty NO_COLOR does not count (no-color.org).
    let empty = on_terminal(&args, Some(""));
    assert!(empty.contains(ESC), "an empty NO_COLOR leaves colour on");
    // clap's own messages follow NO_COLOR too.
    let usage = on_terminal("--no-such-flag", Some("1"));
    assert!(usage.contains("error"), "{usage:?}");
    assert!(
        !usage.contains(ESC),
        "clap's usage error is plain under NO_COLOR: {usage:?}"
    );
}

/// `generate` prints an invalid specification's report with the colour `--color` and `NO_COLOR` choose, as
/// `validate` does (it used to ask only whether standard error is a terminal).
#[test]
fn generate_colours_a_specifications_report_as_validate_does() {
    let invalid = "gen/tests/fixtures/spec/invalid/03-domain-upper-case.toml";
    let always = fedigen(&["--color", "always", "generate", "--spec", invalid], &[]);
    assert_eq!(always.status.code(), Some(2), "{}", text(&always.stderr));
    assert!(text(&always.stderr).contains(ESC), "--color always colours");
    let never = on_terminal(&format!("--color never generate --spec {invalid}"), None);
    assert!(never.contains("error"), "{never:?}");
    assert!(
        !never.contains(ESC),
        "--color never on a terminal: {never:?}"
    );
}

#[test]
fn a_closed_pipe_is_not_a_panic() {
    use std::process::Stdio;
    // Commands whose output is long enough to outlast a reader that closes at once.
    for args in [
        vec!["schema"],
        vec!["completions", "bash"],
        vec!["validate", "examples/provider.toml", "--print"],
        vec!["nix", "from-json", "examples/panel-settings.json"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fedigen"))
            .args(&args)
            .current_dir(repo())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fedigen runs");
        // The reader goes away before fedigen writes: every write meets a closed pipe.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("fedigen ends");
        let stderr = text(&out.stderr);
        assert!(
            !stderr.contains("panicked"),
            "fedigen {args:?} panicked on a closed pipe: {stderr}"
        );
        assert!(
            out.status.code().is_some(),
            "fedigen {args:?} was killed instead of ending: {:?}",
            out.status
        );
    }
}

fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON value ({e}): {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

#[test]
fn validate_json_says_valid_or_lists_every_problem_with_its_place() {
    let ok = fedigen(&["validate", "examples/provider.toml", "--json"], &[]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let v = json_of(&ok);
    assert_eq!(v["valid"], true);
    assert!(v["operators"].as_u64().unwrap() >= 1, "{v}");

    let invalid = "gen/tests/fixtures/spec/invalid/03-domain-upper-case.toml";
    let bad = fedigen(&["validate", invalid, "--json"], &[]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "same exit status as without --json"
    );
    let v = json_of(&bad);
    assert_eq!(v["valid"], false);
    let problems = v["problems"].as_array().expect("problems");
    assert!(!problems.is_empty(), "{v}");
    // The same problems, at the same places, as the report for people says.
    let human = text(&fedigen(&["validate", invalid], &[]).stderr);
    for p in problems {
        let (line, column) = (p["line"].as_u64().unwrap(), p["column"].as_u64().unwrap());
        assert!(line >= 1 && column >= 1, "{p}");
        assert!(
            human.contains(&format!("{invalid}:{line}:{column}")),
            "{p} is not at a place the report names:\n{human}"
        );
        assert!(!p["field"].as_str().unwrap().is_empty(), "{p}");
    }

    let missing = fedigen(&["validate", "no/such/spec.toml", "--json"], &[]);
    assert_eq!(missing.status.code(), Some(2));
    let v = json_of(&missing);
    assert_eq!(v["valid"], false);
    assert!(v["error"].as_str().is_some(), "{v}");
}

#[test]
fn generate_check_json_is_the_verdict_without_diffs_for_people() {
    let out = fedigen(&["generate", "--check", "--json"], &[]);
    let v = json_of(&out);
    assert_eq!(out.status.success(), v["up_to_date"] == true, "{v}");
    assert!(v["files"].as_u64().unwrap() > 10, "{v}");
    // A stale copy: one generated file changed, one missing.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("repo");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(repo()).unwrap() {
        let entry = entry.unwrap();
        if ["target", ".git"].contains(&entry.file_name().to_str().unwrap_or("")) {
            continue;
        }
        let status = Command::new("cp")
            .arg("-a")
            .arg(entry.path())
            .arg(&copy)
            .status()
            .unwrap();
        assert!(status.success());
    }
    std::fs::write(copy.join("modules/mastodon.nix"), "# hand-edited\n").unwrap();
    std::fs::remove_file(copy.join("modules/garage.nix")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fedigen"))
        .args(["generate", "--check", "--json", "--repo"])
        .arg(&copy)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v = json_of(&out);
    assert_eq!(v["up_to_date"], false);
    let kinds: Vec<(String, String)> = v["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap().to_owned(),
                d["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("modules/mastodon.nix".into(), "changed".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("modules/garage.nix".into(), "missing".into())),
        "{kinds:?}"
    );
    // Nothing was written by --check.
    assert_eq!(
        std::fs::read_to_string(copy.join("modules/mastodon.nix")).unwrap(),
        "# hand-edited\n"
    );
}

#[test]
fn template_check_json_reports_the_verdict() {
    let out = fedigen(&["template", "check", "garage", "--json"], &[]);
    let v = json_of(&out);
    assert_eq!(out.status.success(), v["ok"] == true, "{v}");
    assert_eq!(v["templates"], serde_json::json!(["garage"]));
    assert!(v["renderings"].as_u64().unwrap() >= 1, "{v}");
}

/// The library knows nothing of the command line: only `main.rs` and `cli/` name clap (an argument type in the
/// library, such as a `clap::ValueEnum` derive, would tie every library user to clap's conventions).
#[test]
fn only_the_command_line_uses_clap() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut pending = vec![src.clone()];
    let mut offenders = Vec::new();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(&src).unwrap().to_owned();
            if path.is_dir() {
                if relative != Path::new("cli") {
                    pending.push(path);
                }
            } else if relative != Path::new("main.rs")
                && path.extension().is_some_and(|e| e == "rs")
            {
                let code = std::fs::read_to_string(&path).unwrap();
                let uses = code
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .any(|l| l.contains("clap::") || l.contains("use clap"));
                if uses {
                    offenders.push(relative.display().to_string());
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "clap used outside main.rs and cli/: {offenders:?}"
    );
}
