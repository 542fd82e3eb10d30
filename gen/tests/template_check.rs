//! The contributors' side of fedigen as they use it: `template new`, `template check`, `validate`, `schema` and
//! `generate` on a copy of the project's templates with one thing broken at a time. Each test names the defect
//! of issue #12 it guards against.

use std::path::Path;
use std::process::{Command, Output};

mod support;

use support::{copy_dir, repository};

/// A repository holding a copy of the project's templates.
fn repo_with_templates() -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    copy_dir(
        &repository().join("templates"),
        &repo.path().join("templates"),
    );
    repo
}

fn run(repo: &Path, args: &[&str]) -> (Option<i32>, String) {
    let Output { status, stderr, .. } = Command::new(env!("CARGO_BIN_EXE_fedigen"))
        .args(args)
        .current_dir(repo)
        .output()
        .unwrap();
    (status.code(), String::from_utf8_lossy(&stderr).into_owned())
}

fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{} holds {from:?}", file.display());
    std::fs::write(file, text.replacen(from, to, 1)).unwrap();
}

/// Item 5: names that collide with generated files or cannot be written are refused, with why and what instead.
#[test]
fn application_names_that_collide_or_cannot_be_written_are_refused_everywhere() {
    let repo = repo_with_templates();
    for (name, why) in [
        (
            "fediversity",
            "`modules/fediversity.nix` is the shared module",
        ),
        (
            "default",
            "`modules/default.nix` is the module importing all others",
        ),
        (
            "lib",
            "`vm-tests/generated/lib/` holds what the VM tests share",
        ),
        ("deployment-x", "deployment-<operator>.nix"),
        ("federation-x", "federation-<application>.nix"),
        (
            "domain",
            "`fediversity.domain` is an option of the shared module",
        ),
        ("Foo-Bar", "lower-case letters"),
        ("let", "`let` is a Nix keyword"),
    ] {
        let (code, stderr) = run(repo.path(), &["template", "new", name]);
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert!(stderr.contains(why), "{name}: {stderr}");
        assert!(
            stderr.contains("pick another name") || stderr.contains("e.g. `foo-bar`"),
            "{name}: says what to pick instead: {stderr}"
        );
        assert!(
            !repo.path().join("templates").join(name).exists(),
            "{name}: nothing written"
        );
    }
    // A folder that cannot name an application is an error when the catalog loads, in every command.
    copy_dir(
        &repo.path().join("templates/garage"),
        &repo.path().join("templates/Foo-Bar"),
    );
    for args in [
        &["template", "check"][..],
        &["schema"][..],
        &["generate", "--check"][..],
    ] {
        let (code, stderr) = run(repo.path(), args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("templates/Foo-Bar")
                && stderr.contains("`Foo-Bar` is not an application name")
                && stderr.contains("e.g. `foo-bar`"),
            "{args:?}: {stderr}"
        );
    }
}

/// Item 12: a helper's parameter naming nothing is an error at the template's line and column, not `null`.
#[test]
fn a_missing_value_in_any_typed_helper_is_an_error_at_its_place() {
    let repo = repo_with_templates();
    let template = repo.path().join("templates/garage/module.nix.hbs");
    let original = std::fs::read_to_string(&template).unwrap();
    let (line, _) = original
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("enable = true;"))
        .unwrap();
    for helper in ["nix-value", "nix-str", "nix-attr", "nix-path", "toml-value"] {
        let broken = original.replacen(
            "enable = true;",
            &format!("enable = true;\n      x = {{{{{helper} options.nope.default}}}};"),
            1,
        );
        std::fs::write(&template, broken).unwrap();
        let (code, stderr) = run(repo.path(), &["template", "check", "garage"]);
        assert_eq!(code, Some(1), "{helper}: {stderr}");
        let place = format!("templates/garage/module.nix.hbs:{}:11: {helper}:", line + 2);
        assert!(
            stderr.contains(&place) && stderr.contains("`options.nope.default` names no value"),
            "{helper}: expected {place}: {stderr}"
        );
    }
}

/// Item 13: one syntax error is reported once, at the template's own line and column, with the lines around it.
#[test]
fn a_syntax_error_is_reported_once_at_the_templates_line() {
    let repo = repo_with_templates();
    let template = repo.path().join("templates/pixelfed/module.nix.hbs");
    let text = std::fs::read_to_string(&template).unwrap();
    let (line, content) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.trim() == "enable = true;")
        .unwrap();
    // nixfmt stops at the value the `;` should have followed.
    let column = content.find("true").unwrap() + 1;
    edit(&template, content, &content.replace(';', ""));
    let (code, stderr) = run(repo.path(), &["template", "check", "pixelfed"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr.matches("error: ").count(),
        1,
        "reported once, not once per rendering: {stderr}"
    );
    assert!(
        stderr.starts_with(&format!(
            "error: templates/pixelfed/module.nix.hbs:{}:{column}: the rendered template is not valid Nix: expected ';'",
            line + 1
        )),
        "at the template's line and column: {stderr}"
    );
    assert!(
        stderr.contains(&format!("{} | {}", line + 1, content.replace(';', ""))),
        "shows the template's line: {stderr}"
    );
    assert!(
        stderr.lines().count() < 15,
        "a few lines, not the rendered file: {stderr}"
    );
    let summary = stderr.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("1 problem(s) in 1 template(s) (") && !summary.contains("(0 rendering"),
        "renderings are counted, failed ones too: {stderr}"
    );

    // In a partial: reported at the partial's line, once for all the templates that include it.
    std::fs::write(&template, &text).unwrap();
    let partial = repo.path().join("templates/_partials/nginx-acme.nix.hbs");
    let partial_text = std::fs::read_to_string(&partial).unwrap();
    let (line, content) = partial_text
        .lines()
        .enumerate()
        .find(|(_, l)| l.trim() == "acceptTerms = true;")
        .unwrap();
    edit(&partial, content, &content.replace(';', ""));
    let (code, stderr) = run(repo.path(), &["template", "check"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.matches("error: ").count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: templates/_partials/nginx-acme.nix.hbs:{}:",
            line + 1
        )),
        "{stderr}"
    );
}

/// Item 14: a broken manifest gets every problem at once, each at its place, and exit status 2 everywhere.
#[test]
fn a_broken_manifest_is_invalid_input_with_every_problem() {
    let repo = repo_with_templates();
    let manifest = repo.path().join("templates/pixelfed/manifest.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        format!(
            "{text}\n[options.workers]\ntype = \"integer\"\nmin = 1\ndescription = \"Workers.\"\n\n[options.mode]\ntype = \"str\"\nvalues = [\"a\"]\ndescription = \"Mode.\"\n"
        ),
    )
    .unwrap();
    let base = text.lines().count() + 1;
    let spec = repository().join("examples/provider.toml");
    for args in [
        vec![
            "validate",
            spec.to_str().unwrap(),
            "--templates",
            "templates",
        ],
        vec!["schema"],
        vec!["template", "check", "pixelfed"],
    ] {
        let (code, stderr) = run(repo.path(), &args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        for expected in [
            format!(
                "templates/pixelfed/manifest.toml:{}:8: option `workers`: unknown type `integer` (did you mean `int`?)",
                base + 2
            ),
            format!(
                "templates/pixelfed/manifest.toml:{}:10: option `mode`: `values` does not apply to type `str`",
                base + 8
            ),
        ] {
            assert!(stderr.contains(&expected), "{args:?}: {expected}\n{stderr}");
        }
        assert!(!stderr.contains("`min` does not apply"), "{stderr}");
    }
}

/// Item 15: skeletons are drafts until their TODOs are gone; drafts are not published.
#[test]
fn unfinished_templates_do_not_pass_and_are_not_published() {
    let repo = repo_with_templates();
    let (code, stderr) = run(repo.path(), &["template", "new", "akkoma"]);
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = run(repo.path(), &["template", "check", "akkoma"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("templates/akkoma/manifest.toml:")
            && stderr.contains("`description` still says TODO")
            && stderr.contains("templates/akkoma/module.nix.hbs:"),
        "{stderr}"
    );
    let (code, stderr) = run(
        repo.path(),
        &["template", "check", "--allow-drafts", "akkoma"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    for args in [&["schema"][..], &["generate"][..]] {
        let (code, stderr) = run(repo.path(), args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("templates/akkoma/manifest.toml:")
                && stderr.contains("is a draft and is not published"),
            "{args:?}: {stderr}"
        );
    }
    assert!(!repo.path().join("modules").exists(), "nothing written");
    let (code, stdout_and_err) = {
        let out = Command::new(env!("CARGO_BIN_EXE_fedigen"))
            .arg("schema")
            .current_dir(repo.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(code, Some(2));
    assert!(!stdout_and_err.contains("TODO"), "nothing published");
}

/// Item 15: an optional secret may be left out of a specification, and the module defaults it to `null`.
#[test]
fn optional_secrets_may_be_left_out() {
    let templates = tempfile::tempdir().unwrap();
    copy_dir(
        &repository().join("gen/tests/fixtures/spec/templates"),
        templates.path(),
    );
    let spec = templates.path().join("spec.toml");
    let text = std::fs::read_to_string(
        repository().join("gen/tests/fixtures/spec/valid/minimal.toml"),
    )
    .unwrap()
    .replace(
        "secrets.registrationSharedSecret = { file = \"/run/secrets/uni-synapse-registration\" }",
        "",
    );
    std::fs::write(&spec, text).unwrap();
    let args = [
        "validate",
        spec.to_str().unwrap(),
        "--templates",
        templates.path().to_str().unwrap(),
    ];
    let (code, stderr) = run(templates.path(), &args);
    assert_eq!(code, Some(2), "a required secret must be given: {stderr}");
    assert!(
        stderr.contains("missing secret `registrationSharedSecret`"),
        "{stderr}"
    );
    edit(
        &templates.path().join("matrix-synapse/manifest.toml"),
        "[secrets.registrationSharedSecret]\n",
        "[secrets.registrationSharedSecret]\noptional = true\n",
    );
    let (code, stderr) = run(templates.path(), &args);
    assert_eq!(code, Some(0), "an optional one may be left out: {stderr}");

    let manifest =
        fedigen::manifest::Manifest::load(&templates.path().join("matrix-synapse/manifest.toml"))
            .unwrap();
    let declared = fedigen::nix::print::print_expr(
        &fedigen::template::option_declarations(&manifest).unwrap(),
    );
    assert!(
        declared.contains(
            "registrationSharedSecretFile = lib.mkOption {\n    type = lib.types.nullOr lib.types.str;\n    default = null;"
        ),
        "{declared}"
    );
}
