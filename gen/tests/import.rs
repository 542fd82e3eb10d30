//! `fedigen template import`: the fixtures as a spec, the project's own generated modules imported back into
//! their manifests, and the static readers (`literal_value`, `string_literal`) against the emitter and the
//! real Nix evaluator.
//!
//! Fixtures: every `fixtures/import/*.nix` must give exactly the manifest and report in its sibling
//! `.expected`. `FEDIGEN_BLESS=1 cargo test -p fedigen --test import` rewrites them; review the diff, those
//! files are the specification reviewers read.

use std::path::{Path, PathBuf};
use std::process::Command;

use fedigen::eval::{Evaluator, Source};
use fedigen::import::{Import, import_module, show_path};
use fedigen::manifest::{Manifest, OptionType};
use fedigen::nix::lexical::{escape_double_quoted, escape_indented};
use fedigen::nix::literal::{literal_value, string_literal};
use fedigen::nix::print::print_expr;
use fedigen::nix::value::{DataPolicy, from_json};
use fedigen::template::option_declarations;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Number, Value};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import")
}

fn diff(expected: &str, actual: &str) -> String {
    similar::TextDiff::from_lines(expected, actual)
        .unified_diff()
        .header("expected", "actual")
        .to_string()
}

/// What a reviewer reads for a case: the manifest written and the report printed, or the refusal.
fn outcome(name: &str, text: &str) -> String {
    match import_module(name, text, None) {
        Ok(import) => format!(
            "## manifest.toml\n{}## report\n{}{}\n",
            import.manifest_text,
            import.report(),
            import.summary()
        ),
        Err(e) => format!("## refused (exit status 2)\n{e}\n"),
    }
}

#[test]
fn every_fixture_gives_exactly_its_expected_manifest_and_report() {
    let bless = std::env::var_os("FEDIGEN_BLESS").is_some();
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "nix"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "the corpus has {} cases", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let actual = outcome(name, &std::fs::read_to_string(path).unwrap());
        let expected_path = path.with_extension("expected");
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            if bless {
                std::fs::write(&expected_path, &actual).unwrap();
            } else {
                failures.push(format!("{name}:\n{}", diff(&expected, &actual)));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ (FEDIGEN_BLESS=1 rewrites them; review the diff):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// What a manifest type becomes after the trip manifest → generated module (`OptionType::nix_type`) → import.
/// Every loss is listed here, on purpose: validation-only constraints have no NixOS type.
fn after_round_trip(ty: &OptionType) -> OptionType {
    match ty {
        // `lib.types.str`: the e-mail rule is the model's, not NixOS'.
        OptionType::Email => OptionType::Str {
            pattern: None,
            max_length: None,
        },
        // `max_length` is checked by fedigen only; the pattern survives as `strMatching`.
        OptionType::Str { pattern, .. } => OptionType::Str {
            pattern: pattern.clone(),
            max_length: None,
        },
        // One-sided bounds other than `ints.unsigned` (0) and `ints.positive` (1) are declared `int`.
        OptionType::Int {
            min: Some(0 | 1),
            max: None,
        }
        | OptionType::Int {
            min: Some(_),
            max: Some(_),
        } => ty.clone(),
        OptionType::Int { .. } => OptionType::Int {
            min: None,
            max: None,
        },
        OptionType::List(inner) => OptionType::List(Box::new(after_round_trip(inner))),
        OptionType::Attrs(inner) => OptionType::Attrs(Box::new(after_round_trip(inner))),
        other => other.clone(),
    }
}

/// The module fedigen generates declares exactly `option_declarations`; wrap them as a module.
fn declarations_module(manifest: &Manifest) -> String {
    format!(
        "{{ lib, ... }}:\n{{\n  options.fediversity.{} = {};\n}}\n",
        manifest.application.name,
        print_expr(&option_declarations(manifest).unwrap())
    )
}

/// Compares an import with the manifest it came from; returns the options whose type was lossy.
fn compare(manifest: &Manifest, import: &Import, what: &str) -> Vec<String> {
    let got = &import.manifest;
    assert_eq!(got.application.name, manifest.application.name, "{what}");
    assert_eq!(
        got.application.title, manifest.application.title,
        "{what}: the title (from `enable`)"
    );
    assert_eq!(
        got.application.subdomain, manifest.application.subdomain,
        "{what}: the subdomain (from `subdomain`)"
    );
    assert_eq!(
        got.options.keys().collect::<Vec<_>>(),
        manifest.options.keys().collect::<Vec<_>>(),
        "{what}: option names"
    );
    let mut lossy = Vec::new();
    for (name, original) in &manifest.options {
        let imported = &got.options[name];
        assert_eq!(
            imported.ty,
            after_round_trip(&original.ty),
            "{what}: `{name}`'s type"
        );
        if imported.ty != original.ty {
            lossy.push(name.clone());
        }
        assert_eq!(
            imported.default, original.default,
            "{what}: `{name}`'s default"
        );
        assert_eq!(
            imported.example, original.example,
            "{what}: `{name}`'s example"
        );
        assert_eq!(
            imported.description, original.description,
            "{what}: `{name}`'s description"
        );
    }
    assert_eq!(
        got.secrets.keys().collect::<Vec<_>>(),
        manifest.secrets.keys().collect::<Vec<_>>(),
        "{what}: secret names"
    );
    for (name, original) in &manifest.secrets {
        let imported = &got.secrets[name];
        assert_eq!(
            imported.description, original.description,
            "{what}: secret `{name}`"
        );
        assert_eq!(
            imported.source, original.source,
            "{what}: secret `{name}`'s source"
        );
        assert_eq!(
            imported.optional, original.optional,
            "{what}: whether secret `{name}` is optional"
        );
    }
    assert!(
        import
            .skipped
            .iter()
            .all(|(_, _, why)| why.contains(INTERNAL_SKIPPED)),
        "{what}: nothing generated is untranslatable: {:?}",
        import.skipped
    );
    lossy
}

/// Why the importer leaves out an `internal` option: the interface a template declares for the generated
/// deployments (Garage's cluster settings, node key, endpoints, provisioning), which is no operator's setting and
/// so no option of the manifest.
const INTERNAL_SKIPPED: &str = "internal options are not settings for operators";

#[test]
fn the_projects_generated_modules_import_back_into_their_manifests() {
    let manifests = Manifest::load_all(&repository().join("templates")).unwrap();
    assert!(manifests.len() >= 5, "{} templates", manifests.len());
    let mut lossy_everywhere = Vec::new();
    for manifest in &manifests {
        let app = &manifest.application.name;
        let module = repository().join(format!("modules/{app}.nix"));
        let text = std::fs::read_to_string(&module).unwrap();
        let import = import_module(&format!("modules/{app}.nix"), &text, None)
            .unwrap_or_else(|e| panic!("modules/{app}.nix: {e}"));
        assert_eq!(import.upstream, format!("fediversity.{app}"));
        let lossy = compare(manifest, &import, &format!("modules/{app}.nix"));
        lossy_everywhere.extend(lossy.into_iter().map(|o| format!("{app}.{o}")));
        let report = import.report();
        let warnings: Vec<&str> = report
            .lines()
            .filter(|l| {
                l.contains(": warning: ")
                    && !l.contains("`port` allows 0")
                    && !l.contains(INTERNAL_SKIPPED)
            })
            .collect();
        assert!(
            warnings.is_empty(),
            "modules/{app}.nix: a generated module imports without warnings (port's 0 aside):\n{}",
            warnings.join("\n")
        );
    }
    // The templates' lossy spots, by name: `max_length` (validation only) on these strings, nothing else.
    assert_eq!(
        lossy_everywhere,
        ["peertube.instanceName", "pixelfed.appName"],
        "update this list when a template gains a type that NixOS cannot state"
    );
}

const EVERY_TYPE: &str = r#"
[application]
name = "demo"
title = "Demo"
description = "Every option type."
upstream = "services.demo"
subdomain = "demo-app"

[options.flag]
type = "bool"
default = true
example = false
description = "A flag."

[options.count]
type = "int"
default = -3
description = "Any integer."

[options.atLeastFive]
type = "int"
min = 5
default = 5
description = "Bounded below by 5: NixOS has no such type."

[options.atMostTen]
type = "int"
max = 10
description = "Bounded above only, and required."

[options.natural]
type = "int"
min = 0
default = 0
description = "ints.unsigned"

[options.positive]
type = "int"
min = 1
default = 9223372036854775807
description = "ints.positive"

[options.between]
type = "int"
min = -9223372036854775808
max = 3
default = -9223372036854775808
description = "i64::MIN has no literal."

[options.ratio]
type = "float"
default = 1e-310
example = -0.0
description = "A subnormal default and negative zero."

[options.name]
type = "str"
default = "''${x} \"quoted\"\n\ttab"
description = "Multi-line:\n  ''indented'' and ${not interpolated}"

[options.shortName]
type = "str"
max_length = 8
default = "abc"
description = "max_length is validation only."

[options.slug]
type = "str"
pattern = "[a-z]+(-[a-z]+)*"
example = "a-b"
description = "strMatching"

[options.mode]
type = "enum"
values = ["open", "closed", "with space"]
default = "open"
description = "An enum."

[options.listen]
type = "port"
default = 443
description = "A port."

[options.contact]
type = "email"
default = "admin@uu.example"
description = "An e-mail address: str in NixOS."

[options.admins]
type = "list"
of = "email"
default = []
example = ["a@b.example"]
description = "A list of e-mail addresses."

[options.limits]
type = "attrs"
of = "port"
default = { "a.b" = 1, "if" = 65535 }
description = "Quoted keys."

[secrets.signingKey]
description = "the key that signs things"
source = "generated"
reader = { user = "svc", group = "svc", unit = "svc.service" }

[secrets.apiToken]
description = "a token with `quotes` \"inside\""
source = "provided"
reader = { user = "svc", group = "svc", unit = "svc.service" }

[secrets.backupKey]
description = "the key that encrypts backups, when there are any"
source = "provided"
reader = { user = "svc", group = "svc", unit = "svc.service" }
optional = true

[resources]
cores = 1
memory_mib = 512
disk_gib = 1
"#;

#[test]
fn every_manifest_type_survives_the_trip_through_nix_with_exactly_the_listed_losses() {
    let manifest = Manifest::parse(Path::new("every-type.toml"), EVERY_TYPE).unwrap();
    let text = declarations_module(&manifest);
    let import = import_module("every-type.nix", &text, None).unwrap();
    let lossy = compare(&manifest, &import, "every-type.nix");
    assert_eq!(
        lossy,
        ["admins", "atLeastFive", "atMostTen", "contact", "shortName"]
    );
    // And the skeleton, written out, loads as what was imported.
    let reloaded = Manifest::parse(Path::new("again.toml"), &import.manifest_text).unwrap();
    assert_eq!(reloaded, import.manifest);
}

#[test]
fn names_flatten_in_camel_case_and_quoted_paths_show_quoted() {
    let import = import_module(
        "m.nix",
        r#"{ lib, ... }: { options.services.x = { a.b-c.d = lib.mkOption { type = lib.types.int; description = "d"; }; "e.f" = lib.mkOption { type = lib.types.int; description = "d"; }; }; }"#,
        None,
    )
    .unwrap();
    assert_eq!(import.options.keys().collect::<Vec<_>>(), ["aB-cD", "e_f"]);
    assert_eq!(
        show_path(&import.options["e_f"].path),
        r#"services.x."e.f""#
    );
    assert!(import.report().contains("m.nix:1:"), "{}", import.report());
}

#[test]
fn the_command_writes_a_skeleton_that_template_check_accepts_and_refuses_to_overwrite() {
    let repo = tempfile::tempdir().unwrap();
    let templates = repo.path().join("templates");
    // `template check` renders through the shared partials and the VM test template: bring the project's.
    copy_dir(
        &repository().join("templates/_partials"),
        &templates.join("_partials"),
    );
    copy_dir(
        &repository().join("templates/_tests"),
        &templates.join("_tests"),
    );
    let fedigen = env!("CARGO_BIN_EXE_fedigen");
    let module = fixtures().join("webapp.nix");
    let run = |args: &[&str]| {
        Command::new(fedigen)
            .args(args)
            .current_dir(repo.path())
            .output()
            .unwrap()
    };
    let out = run(&["template", "import", module.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("webapp.nix:16:15: warning: `services.webapp.package`"),
        "{stderr}"
    );
    let manifest = templates.join("webapp/manifest.toml");
    let written = std::fs::read_to_string(&manifest).unwrap();
    assert!(templates.join("webapp/module.nix.hbs").is_file());
    let leftovers: Vec<_> = std::fs::read_dir(templates.join("webapp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "no temporary files left: {leftovers:?}");

    let again = run(&["template", "import", module.to_str().unwrap()]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "an existing manifest is not replaced"
    );
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), written);
    std::fs::write(&manifest, "changed").unwrap();
    let forced = run(&["template", "import", "--force", module.to_str().unwrap()]);
    assert!(forced.status.success());
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), written);

    let check = run(&["template", "check", "webapp"]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(
        check.status.code(),
        Some(1),
        "the skeleton is a draft, full of TODOs: {stderr}"
    );
    assert!(
        stderr.contains("error: templates/webapp/manifest.toml:")
            && stderr.contains("`description` still says TODO: the template is a draft"),
        "each TODO is reported at its place: {stderr}"
    );
    let check = run(&["template", "check", "--allow-drafts", "webapp"]);
    assert!(
        check.status.success(),
        "the skeleton passes `template check --allow-drafts`: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let generate = run(&["generate"]);
    assert_eq!(generate.status.code(), Some(2), "a draft is not published");
    assert!(
        String::from_utf8_lossy(&generate.stderr)
            .contains("a manifest with a TODO is a draft and is not published"),
        "{}",
        String::from_utf8_lossy(&generate.stderr)
    );
    assert!(!repo.path().join("modules").exists(), "nothing written");

    let broken = run(&[
        "template",
        "import",
        fixtures().join("broken.nix").to_str().unwrap(),
    ]);
    assert_eq!(broken.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&broken.stderr)
            .contains("broken.nix:5:57: the module does not parse"),
        "{}",
        String::from_utf8_lossy(&broken.stderr)
    );
    let stdout = run(&[
        "template",
        "import",
        "--stdout",
        "--name",
        "other",
        module.to_str().unwrap(),
    ]);
    assert!(stdout.status.success());
    assert!(String::from_utf8_lossy(&stdout.stdout).contains("name = \"other\""));
    assert!(!templates.join("other").exists(), "--stdout writes nothing");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

// ---- The static readers against the emitter and the real evaluator ----

fn text() -> impl Strategy<Value = String> {
    const TRICKY: &[&str] = &[
        "${", "$${", "$", "''", "'", "'''", "''$", "''\\", "\\", "\"", "\r", "\n", "\t", "  ",
        "\r\n", "${x}", "'${", "é", "🦀", "\u{2028}", "\u{7f}",
    ];
    let piece = prop_oneof![
        3 => proptest::sample::select(TRICKY).prop_map(str::to_owned),
        2 => any::<String>(),
        2 => "[a-z ]{0,8}",
    ];
    prop::collection::vec(piece, 0..6).prop_map(|p| p.concat().replace('\0', ""))
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn parse_expr(text: &str) -> rnix::ast::Expr {
    let root = rnix::Root::parse(text);
    assert!(root.errors().is_empty(), "{text}: {:?}", root.errors());
    root.tree().expr().unwrap()
}

#[test]
fn literal_value_reads_back_exactly_what_the_value_emitter_writes() {
    let mut runner = TestRunner::new(Config {
        cases: 1500,
        ..Config::default()
    });
    let everything = DataPolicy {
        allow_special_attributes: true,
    };
    runner
        .run(&json(), |value| {
            let text = print_expr(&from_json(&value, everything).unwrap());
            let read = literal_value(&parse_expr(&text))
                .map_err(|e| TestCaseError::fail(format!("{text}: not read: {e}")))?;
            prop_assert_eq!(&read, &value, "{}", text);
            Ok(())
        })
        .unwrap();
}

/// An indented string with arbitrary indentation around escaped arbitrary text: what Nix makes of it is what
/// `string_literal` must say, stripping and escapes included.
fn indented_source() -> impl Strategy<Value = String> {
    let line = (
        prop_oneof![
            Just(""),
            Just(" "),
            Just("  "),
            Just("    "),
            Just("\t"),
            Just("  \t")
        ],
        text(),
    );
    (
        any::<bool>(),
        prop::collection::vec(line, 0..5),
        prop_oneof![Just(""), Just("  ")],
    )
        .prop_map(|(first_newline, lines, closing)| {
            let mut out = String::from("''");
            if first_newline {
                out.push('\n');
            }
            let body: Vec<String> = lines
                .iter()
                .map(|(indent, text)| {
                    let mut escaped = String::from(*indent);
                    // `'` before `''${` would read as `'''` then an interpolation: not a valid source.
                    escape_indented(&mut escaped, &text.replace("'${", "' ${"), false);
                    escaped
                })
                .collect();
            out.push_str(&body.join("\n"));
            // A newline before the closing quotes, so a text ending in `'` cannot merge with them.
            out.push('\n');
            out.push_str(closing);
            out.push_str("''");
            out
        })
}

#[test]
fn string_literal_agrees_with_nix_on_indented_and_double_quoted_strings() {
    let Ok(nix) = Evaluator::locate() else {
        panic!("this test needs Nix: run scripts/install-test-deps (Debian's nix-bin)");
    };
    let mut runner = TestRunner::new(Config {
        cases: 1,
        ..Config::default()
    });
    let mut sources = Vec::new();
    for _ in 0..400 {
        let tree = indented_source().new_tree(&mut runner).unwrap();
        sources.push(tree.current());
        let tree = text().new_tree(&mut runner).unwrap();
        let mut quoted = String::from("\"");
        escape_double_quoted(&mut quoted, &tree.current(), false);
        quoted.push('"');
        sources.push(quoted);
    }
    let results = nix.eval_json(
        &sources
            .iter()
            .enumerate()
            .map(|(i, text)| Source {
                name: format!("string {i}"),
                text: text.clone(),
            })
            .collect::<Vec<_>>(),
    );
    let mut failures = Vec::new();
    for (source, result) in sources.iter().zip(results) {
        let rnix::ast::Expr::Str(s) = parse_expr(source) else {
            panic!("{source:?} is not a string");
        };
        let ours = string_literal(&s).map(Value::String);
        match result {
            Ok(theirs) if Some(&theirs) == ours.as_ref() => {}
            other => failures.push(format!(
                "{source:?}: Nix {other:?}, string_literal {ours:?}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {}:\n{}",
        failures.len(),
        sources.len(),
        failures.join("\n")
    );
}

/// Mangled modules (a slice of a fixture cut out, or replaced by another slice) never crash the importer, and
/// whatever it accepts gives a manifest that loads: `ImportError::Manifest` would be a bug of the importer.
#[test]
fn mangled_modules_are_imported_or_refused_never_a_broken_manifest() {
    let texts: Vec<String> = ["webapp.nix", "chat.nix", "relay.nix", "tiny.nix"]
        .iter()
        .map(|f| std::fs::read_to_string(fixtures().join(f)).unwrap())
        .collect();
    let mut runner = TestRunner::new(Config {
        cases: 600,
        ..Config::default()
    });
    let case = (
        0..texts.len(),
        any::<prop::sample::Index>(),
        0..40usize,
        any::<prop::sample::Index>(),
        0..40usize,
    );
    runner
        .run(&case, |(which, at, len, from, from_len)| {
            let text = &texts[which];
            let boundary = |i: usize| {
                (0..=i)
                    .rev()
                    .find(|&j| text.is_char_boundary(j))
                    .unwrap_or(0)
            };
            let start = boundary(at.index(text.len()));
            let end = boundary((start + len).min(text.len()));
            let src = boundary(from.index(text.len()));
            let src_end = boundary((src + from_len).min(text.len()));
            let mangled = format!("{}{}{}", &text[..start], &text[src..src_end], &text[end..]);
            match import_module("mangled.nix", &mangled, None) {
                Err(fedigen::import::ImportError::Manifest(e)) => {
                    Err(TestCaseError::fail(format!("{e}\n{mangled}")))
                }
                _ => Ok(()),
            }
        })
        .unwrap();
}

/// `template import` drafts `[state]` from the directories the module keeps (StateDirectory=, a dataDir
/// default), with TODOs where a person decides, and the draft loads as a manifest.
#[test]
fn import_drafts_the_state_the_module_keeps() {
    let text = r#"{ config, lib, ... }:
let cfg = config.services.keeper; in {
  options.services.keeper = {
    enable = lib.mkEnableOption "Keeper";
    dataDir = lib.mkOption { type = lib.types.str; default = "/srv/keeper"; description = "Data."; };
  };
  config = lib.mkIf cfg.enable {
    systemd.services.keeper.serviceConfig.StateDirectory = "keeper";
  };
}
"#;
    let imported = fedigen::import::import_module(
        "nixpkgs/nixos/modules/services/misc/keeper.nix",
        text,
        None,
    )
    .unwrap();
    let state = &imported.manifest.state;
    assert_eq!(
        state.upstream_module.as_deref(),
        Some("nixos/modules/services/misc/keeper.nix")
    );
    let paths: Vec<&str> = state
        .directories
        .values()
        .map(|d| d.path.as_str())
        .collect();
    assert_eq!(paths, ["/srv/keeper", "/var/lib/keeper"]);
    assert!(state.directories.values().all(|d| d.owner == "TODO"));
    assert!(
        imported
            .manifest_text
            .contains("TODO: check — StateDirectory at line 8")
    );
}
