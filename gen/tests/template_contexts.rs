//! Every template is rendered from its typed data (`fedigen::template::{ModuleData, ApplicationTest,
//! DeploymentTest, CommonTest, FederationTest, MigrationTest, StorageTest}`), rendering is strict about names (a field its struct lacks is an error, in a
//! helper, `each`, `with`, `if` or `unless` alike), and each template's header comment lists the fields it gets.

use std::path::{Path, PathBuf};

use fedigen::manifest::Manifest;
use fedigen::model::Catalog;
use fedigen::template::{
    APPLICATION_TEST, ApplicationTest, COMMON_TEST, CommonTest, DEPLOYMENT_LIB, DEPLOYMENT_TEST,
    DeploymentTest, DeploymentTestFile, FEDERATION_TEST, FederationTest, MIGRATION_LIB,
    MIGRATION_TEST, MigrationTest, MigrationTestFile, ModuleData, STORAGE_TEST, StorageTest,
    Templates,
};
use serde_json::Value;

mod support;

use support::{repository, scratch_repository as scratch};

/// Every `*.hbs` file under `templates/`, relative to the repository.
fn template_files(repo: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, repo: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, repo, out);
            } else if path.to_string_lossy().ends_with(".hbs") {
                out.push(path.strip_prefix(repo).unwrap().to_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo.join("templates"), repo, &mut out);
    out.sort();
    out
}

/// Which struct a template is rendered from, by its place.
fn data_of(file: &Path) -> &'static str {
    let text = file.to_string_lossy();
    match text.as_ref() {
        APPLICATION_TEST => "ApplicationTest",
        DEPLOYMENT_TEST => "DeploymentTestFile",
        DEPLOYMENT_LIB => "CommonTest",
        COMMON_TEST => "CommonTest",
        FEDERATION_TEST => "FederationTest",
        MIGRATION_TEST => "MigrationTestFile",
        MIGRATION_LIB => "CommonTest",
        STORAGE_TEST => "StorageTest",
        _ if text.starts_with("templates/_partials/") => "ModuleData",
        _ if text.ends_with("/module.nix.hbs") && !text.starts_with("templates/_") => "ModuleData",
        _ => panic!(
            "{text}: a template that no typed data renders; give it a struct in gen/src/template/context.rs"
        ),
    }
}

struct Loaded {
    manifests: Vec<Manifest>,
    templates: Templates,
}

fn load(repo: &Path) -> Loaded {
    let manifests = Manifest::load_all(&repo.join("templates")).unwrap();
    let mut templates = Templates::load(repo, &manifests).unwrap();
    templates.load_tests(repo).unwrap();
    Loaded {
        manifests,
        templates,
    }
}

/// Renders every template of `repo` from its struct; each error once with the template it came from.
fn render_all(repo: &Path) -> Vec<String> {
    let Loaded {
        manifests,
        templates,
    } = load(repo);
    let mut errors = Vec::new();
    for manifest in &manifests {
        if let Err(e) = templates.render_module(manifest, None) {
            errors.push(e.to_string());
        }
        if let Err(e) = templates.render_application_test(manifest) {
            errors.push(e.to_string());
        }
        if let Err(e) = templates.render_federation_test(manifest) {
            errors.push(e.to_string());
        }
    }
    let catalog = Catalog::from_manifests(manifests.iter().cloned());
    let spec = fedigen::model::load(&repo.join("examples/provider.toml"), &catalog).unwrap();
    assert!(!spec.operators.is_empty());
    for operator in &spec.operators {
        let test = DeploymentTest::new(&spec, &catalog, operator);
        if let Err(e) = templates.render_deployment_test(&test, "deployment-x.json") {
            errors.push(e.to_string());
        }
        let migration = MigrationTest::new(&spec, &catalog, operator);
        if let Err(e) = templates.render_migration_test(&migration, "migrate-x.json") {
            errors.push(e.to_string());
        }
    }
    let storage = StorageTest::new(&spec, &catalog).expect("the example has a storage test");
    if let Err(e) = templates.render_storage_test(&storage) {
        errors.push(e.to_string());
    }
    if let Err(e) = templates.render_common_test() {
        errors.push(e.to_string());
    }
    if let Err(e) = templates.render_migration_lib() {
        errors.push(e.to_string());
    }
    if let Err(e) = templates.render_deployment_lib() {
        errors.push(e.to_string());
    }
    errors
}

#[test]
fn every_template_renders_from_its_typed_data() {
    let repo = repository();
    let files = template_files(&repo);
    assert!(files.len() >= 9, "{files:?}");
    for file in &files {
        data_of(file);
    }
    assert_eq!(render_all(&repo), Vec::<String>::new());
}

/// A name its struct lacks fails the rendering at the template's line, in every kind of template and every
/// place a name can stand. Handlebars' own `if`/`unless` took a missing name as false, even in strict mode.
#[test]
fn a_field_the_data_lacks_is_an_error_wherever_it_is_named() {
    let uses = [
        ("{{nix-str no_such_field}}", "no_such_field"),
        ("{{#if no_such_field}}x{{/if}}", "no_such_field"),
        ("{{#unless no_such_field}}{{/unless}}", "no_such_field"),
        ("{{#each no_such_field}}{{/each}}", "no_such_field"),
        ("{{#with no_such_field}}{{/with}}", "no_such_field"),
    ];
    let base = scratch();
    for file in template_files(base.path()) {
        for (text, name) in uses {
            let repo = scratch();
            let path = repo.path().join(&file);
            let source = std::fs::read_to_string(&path).unwrap();
            // After the header comment, on a line of its own: every template is rendered with it.
            let end = source.find("}}\n").expect("a header comment") + 3;
            let end = if source[end..].starts_with("{{!--") {
                end + source[end..].find("--}}\n").unwrap() + 5
            } else {
                end
            };
            let line = source[..end].lines().count() + 1;
            std::fs::write(
                &path,
                format!("{}{text}\n{}", &source[..end], &source[end..]),
            )
            .unwrap();
            let errors = render_all(repo.path());
            assert!(
                !errors.is_empty(),
                "{} with {text}: rendered",
                file.display()
            );
            let located = if file.starts_with("templates/_partials") {
                // A partial's line is reported through the template that includes it.
                format!("{}", file.display())
            } else {
                format!("{}:{line}:", file.display())
            };
            assert!(
                errors
                    .iter()
                    .all(|e| e.contains(name) && e.contains(&located)),
                "{} with {text}: {errors:#?}",
                file.display()
            );
        }
    }
}

/// The header comment of each template lists the fields of its data: every field of the struct (and of the
/// structs inside it) is named there, so the comment cannot fall behind the struct.
#[test]
fn each_template_header_lists_the_fields_of_its_data() {
    check_headers(&repository());
}

/// A new application's scaffold (`template new`) is a template like the others: it renders from its data and
/// its header lists the fields.
#[test]
fn a_scaffolded_application_renders_from_its_data_and_lists_its_fields() {
    let repo = scratch();
    let dir = fedigen::template::scaffold::create(repo.path(), "lemmy").unwrap();
    assert!(dir.join("module.nix.hbs").is_file());
    assert_eq!(render_all(repo.path()), Vec::<String>::new());
    check_headers(repo.path());
}

fn check_headers(repo: &Path) {
    let Loaded { manifests, .. } = load(repo);
    let catalog = Catalog::from_manifests(manifests.iter().cloned());
    let spec = fedigen::model::load(&repo.join("examples/provider.toml"), &catalog).unwrap();
    let with_secrets = manifests
        .iter()
        .find(|m| !m.secrets.is_empty() && m.admin_action.is_some())
        .expect("a manifest with secrets and an admin action");
    let data = |name: &str| -> Value {
        match name {
            "ModuleData" => serde_json::to_value(ModuleData::new(with_secrets, None)).unwrap(),
            "ApplicationTest" => serde_json::to_value(ApplicationTest::new(with_secrets)).unwrap(),
            "DeploymentTestFile" => serde_json::to_value(DeploymentTestFile {
                cores: 1,
                description: String::new(),
                data_file: "./deployment-x.json".into(),
                rebuild: vec!["nodes.x.system.build.toplevel".into()],
            })
            .unwrap(),
            "CommonTest" => serde_json::to_value(CommonTest::default()).unwrap(),
            "FederationTest" => serde_json::to_value(
                manifests
                    .iter()
                    .find_map(FederationTest::new)
                    .expect("a manifest with [test.federation]"),
            )
            .unwrap(),
            "MigrationTestFile" => serde_json::to_value(MigrationTestFile {
                cores: 1,
                description: String::new(),
                data_file: "./migrate-x.json".into(),
            })
            .unwrap(),
            "StorageTest" => serde_json::to_value(
                StorageTest::new(&spec, &catalog).expect("the example has a storage test"),
            )
            .unwrap(),
            other => panic!("{other}"),
        }
    };
    for file in template_files(repo) {
        let source = std::fs::read_to_string(repo.join(&file)).unwrap();
        let struct_name = data_of(&file);
        let header: String = source
            .lines()
            .take_while(|l| !l.starts_with('{') || l.starts_with("{{!"))
            .collect::<Vec<_>>()
            .join("\n");
        // A partial uses none of the data, or names the fields of its includer's it uses.
        if file.starts_with("templates/_partials") {
            assert!(
                header.contains("Data: none")
                    || header.contains("Data (gen/src/template/context.rs, ModuleData)"),
                "{}",
                file.display()
            );
            continue;
        }
        // The header names the struct and the file of gen/src/template/ that declares it.
        assert!(
            ["context.rs", "migration.rs", "storage_test.rs"]
                .iter()
                .any(|declared_in| header.contains(&format!(
                    "Data (gen/src/template/{declared_in}, {struct_name})"
                ))),
            "{}: the header names its data:\n{header}",
            file.display()
        );
        let mut fields = Vec::new();
        collect_fields(&data(struct_name), 0, &mut fields);
        for field in fields {
            assert!(
                header.contains(&field),
                "{}: the header does not list `{field}`:\n{header}",
                file.display()
            );
        }
    }
}

/// The field names of a value, two levels deep (maps keyed by data, such as options by name, are not fields:
/// only the first entry's fields are taken).
fn collect_fields(value: &Value, depth: usize, out: &mut Vec<String>) {
    if depth > 2 {
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key.starts_with("__") {
                    continue;
                }
                out.push(key.clone());
                // Values that are data through and through (settings, NixOS configuration, host names by node,
                // an option's value): their keys are no fields.
                if matches!(
                    key.as_str(),
                    "settings"
                        | "config"
                        | "federation_config"
                        | "hosts"
                        | "hosts_a"
                        | "hosts_b"
                        | "hosts_client"
                        | "hosts_peer"
                        | "value"
                        | "job"
                        | "description_json"
                ) {
                    continue;
                }
                let keyed_by_data = matches!(key.as_str(), "options" | "secrets" | "ports");
                match inner {
                    Value::Object(entries) if keyed_by_data => {
                        if let Some(first) = entries.values().next() {
                            collect_fields(first, depth + 1, out);
                        }
                    }
                    _ => collect_fields(inner, depth + 1, out),
                }
            }
        }
        Value::Array(items) => {
            if let Some(first) = items.first() {
                collect_fields(first, depth, out);
            }
        }
        _ => {}
    }
}

/// Relative source paths are path literals Nix resolves against the rendered file's folder; anything else
/// (absolute, `..` inside, odd characters) is refused, as the helper would otherwise write a path into the store.
#[test]
fn source_paths_render_as_path_literals_and_nothing_else() {
    let repo = scratch();
    let file = repo.path().join(DEPLOYMENT_TEST);
    let source = std::fs::read_to_string(&file).unwrap();
    let rendered = |path: &str| {
        let text = source.replace("{{nix-source-path data_file}}", path);
        std::fs::write(&file, text).unwrap();
        render_all(repo.path())
    };
    assert_eq!(
        rendered("{{nix-source-path data_file}}"),
        Vec::<String>::new()
    );
    let plan = fedigen::generate::plan(&repository()).unwrap();
    let test = &plan.files[&PathBuf::from("vm-tests/generated/deployment-amstelland.nix")];
    assert!(
        test.contains("builtins.readFile ./deployment-amstelland.json"),
        "{test}"
    );
    for bad in ["/etc/x.nix", "../a/../b.nix", "a b.nix"] {
        let errors = rendered(&format!(
            "{{{{nix-source-path {}}}}}",
            serde_json::to_string(bad).unwrap()
        ));
        assert!(
            !errors.is_empty()
                && errors
                    .iter()
                    .all(|e| e.contains("nix-source-path") && e.contains("not a source path")),
            "{bad}: {errors:#?}"
        );
    }
}
