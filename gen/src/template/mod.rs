//! Application templates: `templates/<app>/module.nix.hbs` and the shared partials in `templates/_partials/`,
//! and the VM test templates in `templates/_tests/`, rendered with handlebars into Nix.
//!
//! Templates must not be an escape hatch for data to become code (ARCHITECTURE.md, "Emitting Nix: the rules", rule 10). So: strict mode (a
//! missing value is an error, not an empty string, in `if` and `unless` too), no HTML escaping, and values reach
//! the output only through typed helpers that emit Nix with the emitter — `nix-str`, `nix-value`, `nix-attr`,
//! `nix-path` (a runtime path, as a string), `nix-source-path` (a repository file, as a relative path literal),
//! `nix-options`. A linter rejects everything else before rendering: triple-stash `{{{ }}}`, a bare `{{name}}`,
//! unknown helpers and decorators, each with the template's file, line and column. The rendered text is laid out
//! by nixfmt and parsed by rnix before it is returned.
//!
//! Parts: this file holds the registry and rendering; `context` the typed data of each template; `helpers` the
//! typed helpers; `lint` the linter; `locate` maps an error in rendered text back to its template line;
//! `layout` nixfmt and rnix; `options` the option declarations of a module; `shell` the shell text of health
//! checks; `scaffold` the files a new application starts from.

mod context;
mod helpers;
mod layout;
mod lint;
mod locate;
mod migration;
mod options;
pub mod scaffold;
mod shell;
mod storage_test;
mod test_data;
mod test_keys;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use handlebars::{Handlebars, RenderError};
use serde::Serialize;
use serde_json::Value;

use crate::manifest::Manifest;
use crate::position::Position;
use layout::finish_layout;
use locate::{MARK_CLOSE, MARK_OPEN, map_column, mark_lines, snippet, strip_markers};

pub use context::{
    AdminActionData, ApplicationInfo, ApplicationTest, CommonTest, DeploymentTest,
    DeploymentTestFile, FederationInstance, FederationStepData, FederationTest, Health,
    HttpCommand, MailData, ModuleData, NeedsData, OptionData, ResourcesData, SecretData, StepData,
    TestNode, TestResources, TestSecretFile, TestSecretOption, UpgradeData,
};
pub use helpers::VALUE_HELPERS;
pub use layout::canonical;
pub use lint::{BLOCK_HELPERS, PARAMETER_HELPERS};
pub use migration::{
    IdentityData, MigrationMachine, MigrationPeer, MigrationTest, MigrationTestFile, SourceAccess,
};
pub use options::option_declarations;
pub use shell::{shell_quote, until_expected};
pub use storage_test::{StorageNode, StorageTest};
pub use test_data::SCRIPT_NAMES;

/// How rendered text gets its layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// nixfmt lays it out (the application modules: five files, written by hand in any layout).
    Nixfmt,
    /// The templates write nixfmt's layout and the helpers print values in place, so the text stands as rendered
    /// (the deployment and migration VM tests, two per operator: nixfmt was a fifth of generation's time and
    /// the largest part of rendering them, issue #18); rnix parses it, and a
    /// line too wide outside a string still goes to nixfmt. `tests/layout_fixpoint.rs` (property-generated
    /// specifications) and `tests/generate.rs` (every generated file) prove nixfmt would change nothing.
    AsRendered,
}

/// A problem in a template, located in the template file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", location.map(|p| format!(":{p}")).unwrap_or_default())]
pub struct TemplateError {
    /// The template file.
    pub file: PathBuf,
    /// Line and column (1-based), when known.
    pub location: Option<Position>,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A loaded set of templates: every application's `module.nix.hbs` and the shared partials, linted.
pub struct Templates {
    registry: Handlebars<'static>,
    /// Template name (`mastodon`) → its file, for errors and generated-file markers.
    files: BTreeMap<String, PathBuf>,
    /// Every registered template and partial by its registry name: its file and source, to map a position in
    /// rendered text back to the template line it came from ([`Templates::syntax_error`]).
    sources: BTreeMap<String, (PathBuf, String)>,
}

impl Templates {
    /// Loads `templates/_partials/*.nix.hbs` as partials (named by file stem) and each application's
    /// `templates/<app>/module.nix.hbs`, linting every one. Paths in errors and markers are relative to `root`.
    pub fn load(root: &Path, manifests: &[Manifest]) -> Result<Self, TemplateError> {
        let mut registry = helpers::registry();
        let mut files = BTreeMap::new();
        let mut sources = BTreeMap::new();
        let partials = root.join("templates/_partials");
        if let Ok(entries) = std::fs::read_dir(&partials) {
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            paths.sort();
            for path in paths {
                let Some(name) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".nix.hbs"))
                else {
                    continue;
                };
                let name = name.to_owned();
                let relative = relative(root, &path);
                let source = read(&path, &relative)?;
                register_linted(&mut registry, &name, &relative, &source)?;
                sources.insert(name, (relative, source));
            }
        }
        for manifest in manifests {
            let app = &manifest.application.name;
            let path = root.join("templates").join(app).join("module.nix.hbs");
            let relative = relative(root, &path);
            let source = read(&path, &relative)?;
            register_linted(&mut registry, app, &relative, &source)?;
            files.insert(app.clone(), relative.clone());
            sources.insert(app.clone(), (relative, source));
        }
        Ok(Self {
            registry,
            files,
            sources,
        })
    }

    /// The template file of an application, relative to the repository (for markers and errors).
    pub fn file(&self, app: &str) -> Option<&Path> {
        self.files.get(app).map(PathBuf::as_path)
    }

    /// Renders an application's module with `settings` overriding the manifest's defaults (for `template
    /// check`; generation passes none), then lays it out with nixfmt and parses it. The result has no marker.
    pub fn render_module(
        &self,
        manifest: &Manifest,
        settings: Option<&Value>,
    ) -> Result<String, TemplateError> {
        let app = &manifest.application.name;
        let file = self
            .files
            .get(app)
            .cloned()
            .unwrap_or_else(|| PathBuf::from(app));
        let context = to_value(&file, &ModuleData::new(manifest, settings))?;
        self.render_checked(app, &file, &context, Layout::Nixfmt)
    }

    /// Renders a registered template, then lays it out and parses it. A syntax error in the rendered text is
    /// reported at the template's own line and column, with the template lines around it.
    fn render_checked(
        &self,
        name: &str,
        file: &Path,
        context: &Value,
        layout: Layout,
    ) -> Result<String, TemplateError> {
        let text = helpers::render_in_place(&self.registry, name, context)
            .map_err(|e| render_error(file, &e))?;
        if layout == Layout::AsRendered {
            match layout::as_rendered(file, &text) {
                Ok(Some(text)) => return Ok(text),
                // A line wider than nixfmt's width outside a string: nixfmt decides where it breaks.
                Ok(None) => {}
                Err(_) => {
                    // Not valid Nix: nixfmt's parser says where, mapped back to the template, below.
                }
            }
        }
        match std::panic::catch_unwind(|| nixfmt_rs::format(&text)) {
            Ok(Ok(formatted)) => finish_layout(file, &text, formatted),
            Ok(Err(e)) => Err(self.syntax_error(name, file, context, &text, &e)),
            Err(_) => canonical(file, &text),
        }
    }

    /// A syntax error of rendered text, mapped back to the template: the file (the template or a partial),
    /// the line and column there, the parser's message and help, and the template lines around it.
    fn syntax_error(
        &self,
        name: &str,
        file: &Path,
        context: &Value,
        text: &str,
        error: &nixfmt_rs::ParseError,
    ) -> TemplateError {
        let report = nixfmt_rs::format_error(text, Some("<rendered>"), error);
        let rendered = report.split("<rendered>:").nth(1).and_then(|rest| {
            let mut numbers = rest.splitn(3, |c: char| !c.is_ascii_digit());
            let line = numbers.next()?.parse::<usize>().ok()?;
            let column = numbers.next()?.parse::<usize>().ok()?;
            Some((line, column))
        });
        let mut message = format!(
            "the rendered template is not valid Nix: {}",
            error.message()
        );
        let help = error
            .help()
            .map(|h| format!("\n  help: {h}"))
            .unwrap_or_default();
        let mapped = rendered.and_then(|(line, column)| {
            let (file, template_line) = self.map_line(name, context, text, line)?;
            let source = self
                .sources
                .values()
                .find(|(f, _)| *f == file)
                .map(|(_, s)| s.as_str())?;
            let rendered_line = text.lines().nth(line - 1).unwrap_or_default();
            let template_text = source.lines().nth(template_line - 1).unwrap_or_default();
            let column = map_column(rendered_line, template_text, column);
            Some((file, template_line, column, source))
        });
        match mapped {
            Some((file, line, column, source)) => {
                message.push_str(&snippet(source, line, column));
                message.push_str(&help);
                TemplateError {
                    file,
                    location: Some(Position::new(line, column)),
                    message,
                }
            }
            None => {
                if let Some((line, column)) = rendered {
                    message.push_str(&format!(
                        " (at line {line}, column {column} of the rendered text){}",
                        snippet(text, line, column)
                    ));
                }
                message.push_str(&help);
                TemplateError {
                    file: file.to_owned(),
                    location: None,
                    message,
                }
            }
        }
    }

    /// The template file and line that rendered line `line` of `text` comes from: the template and its partials
    /// are rendered again with a marker before each line break of their raw text, so every rendered line ends
    /// at a marker naming its template line (a line broken by a helper's output belongs to the template line
    /// holding the helper, whose marker follows). `None` when the marked rendering differs from `text` once
    /// the markers are removed.
    fn map_line(
        &self,
        name: &str,
        context: &Value,
        text: &str,
        line: usize,
    ) -> Option<(PathBuf, usize)> {
        let mut registry = helpers::registry();
        let files: Vec<&PathBuf> = self.sources.values().map(|(f, _)| f).collect();
        for (id, (registered, (_, source))) in self.sources.iter().enumerate() {
            let marked = mark_lines(source, id);
            let partial = !self.files.contains_key(registered) && !registered.ends_with(".nix.hbs");
            if partial {
                registry.register_partial(registered, marked).ok()?;
            } else {
                registry.register_template_string(registered, marked).ok()?;
            }
        }
        let marked = helpers::render_in_place(&registry, name, context).ok()?;
        if strip_markers(&marked) != text {
            return None;
        }
        let start: usize = marked
            .split_inclusive('\n')
            .take(line - 1)
            .map(str::len)
            .sum();
        let rest = &marked[start..];
        let at = rest.find(MARK_OPEN)?;
        let inner = &rest[at + MARK_OPEN.len_utf8()..];
        let (id, template_line) = inner[..inner.find(MARK_CLOSE)?].split_once(':')?;
        let file = files.get(id.parse::<usize>().ok()?)?;
        Some(((*file).clone(), template_line.parse().ok()?))
    }
}

/// The template of the per-application VM tests, relative to the repository.
pub const APPLICATION_TEST: &str = "templates/_tests/application.nix.hbs";

/// The template of the per-operator deployment VM tests (each a call of [`DEPLOYMENT_LIB`]'s function with the
/// operator's data file), relative to the repository.
pub const DEPLOYMENT_TEST: &str = "templates/_tests/deployment.nix.hbs";
/// The template of the deployment test every operator shares (`vm-tests/generated/lib/deployment.nix`: a function
/// of one operator's [`DeploymentTest`] data), relative to the repository.
pub const DEPLOYMENT_LIB: &str = "templates/_tests/deployment-lib.nix.hbs";

/// The template of the per-application federation VM tests (two instances), relative to the repository.
pub const FEDERATION_TEST: &str = "templates/_tests/federation.nix.hbs";
/// The template of the per-operator migration VM tests (each a call of [`MIGRATION_LIB`]'s function with the
/// operator's data file), relative to the repository.
pub const MIGRATION_TEST: &str = "templates/_tests/migration.nix.hbs";
/// The template of the migration test every operator shares (`vm-tests/generated/lib/migration.nix`: a function
/// of one operator's [`MigrationTest`] data), relative to the repository.
pub const MIGRATION_LIB: &str = "templates/_tests/migration-lib.nix.hbs";
/// The template of the provider's object-storage VM test (a Garage cluster, Mastodon's media in it).
pub const STORAGE_TEST: &str = "templates/_tests/storage.nix.hbs";
/// The provider's object-storage VM test, relative to the repository.
pub const STORAGE_TEST_FILE: &str = "storage.nix";

/// The template of what the VM tests share (`vm-tests/generated/lib/common.nix`), relative to the repository.
pub const COMMON_TEST: &str = "templates/_tests/common.nix.hbs";

impl Templates {
    /// Loads the VM test templates (linted like every template): one per application, one per deployment.
    pub fn load_tests(&mut self, root: &Path) -> Result<(), TemplateError> {
        for file in [
            APPLICATION_TEST,
            DEPLOYMENT_TEST,
            DEPLOYMENT_LIB,
            COMMON_TEST,
            FEDERATION_TEST,
            MIGRATION_TEST,
            MIGRATION_LIB,
            STORAGE_TEST,
        ] {
            let relative = PathBuf::from(file);
            let source = read(&root.join(&relative), &relative)?;
            register_linted(&mut self.registry, file, &relative, &source)?;
            self.sources.insert(file.to_owned(), (relative, source));
        }
        Ok(())
    }

    /// Renders the NixOS VM test of one application from its manifest's health checks and admin action.
    pub fn render_application_test(&self, manifest: &Manifest) -> Result<String, TemplateError> {
        self.render_test(APPLICATION_TEST, &ApplicationTest::new(manifest))
    }

    /// Renders the federation VM test of one application (`None` when its manifest has no
    /// `[test.federation]`).
    pub fn render_federation_test(
        &self,
        manifest: &Manifest,
    ) -> Result<Option<String>, TemplateError> {
        FederationTest::new(manifest)
            .map(|test| self.render_test(FEDERATION_TEST, &test))
            .transpose()
    }

    /// Renders the VM test of one operator's deployment (one per operator: laid out as rendered, no nixfmt): the
    /// shared test ([`Templates::render_deployment_lib`]) called with the operator's data file, `data_file`
    /// beside it ([`DeploymentTest::data_json`]).
    pub fn render_deployment_test(
        &self,
        test: &DeploymentTest,
        data_file: &str,
    ) -> Result<String, TemplateError> {
        let file = DeploymentTestFile {
            cores: test.cores,
            description: test.description.clone(),
            data_file: format!("./{data_file}"),
            rebuild: test
                .nodes
                .iter()
                .map(|node| format!("nodes.{}.system.build.toplevel", node.name))
                .collect(),
        };
        self.render_test_as(DEPLOYMENT_TEST, &file, Layout::AsRendered)
    }

    /// Renders the deployment test every operator shares (`vm-tests/generated/lib/deployment.nix`), a function of
    /// one operator's data.
    pub fn render_deployment_lib(&self) -> Result<String, TemplateError> {
        self.render_test(DEPLOYMENT_LIB, &CommonTest::default())
    }

    /// Renders the VM test of one operator's migration between providers (one per operator: laid out as
    /// rendered, no nixfmt): the shared test ([`Templates::render_migration_lib`]) called with the operator's
    /// data file, `data_file` beside it ([`MigrationTest::data_json`]).
    pub fn render_migration_test(
        &self,
        test: &MigrationTest,
        data_file: &str,
    ) -> Result<String, TemplateError> {
        let file = MigrationTestFile {
            cores: test.cores,
            description: test.description.clone(),
            data_file: format!("./{data_file}"),
        };
        self.render_test_as(MIGRATION_TEST, &file, Layout::AsRendered)
    }

    /// Renders the migration test every operator shares (`vm-tests/generated/lib/migration.nix`), a function of
    /// one operator's data.
    pub fn render_migration_lib(&self) -> Result<String, TemplateError> {
        self.render_test(MIGRATION_LIB, &CommonTest::default())
    }

    /// Renders the VM test of the provider's object storage.
    pub fn render_storage_test(&self, test: &StorageTest) -> Result<String, TemplateError> {
        self.render_test(STORAGE_TEST, test)
    }

    /// Renders what the VM tests share: the certificate, test-secret and test-node helpers they import.
    pub fn render_common_test(&self) -> Result<String, TemplateError> {
        self.render_test(COMMON_TEST, &CommonTest::default())
    }

    /// Renders a VM test template (registered under its file name) and lays the result out.
    fn render_test(&self, file: &str, data: &impl Serialize) -> Result<String, TemplateError> {
        self.render_test_as(file, data, Layout::Nixfmt)
    }

    /// [`Templates::render_test`] with the layout given: the per-operator tests stand as rendered.
    fn render_test_as(
        &self,
        file: &str,
        data: &impl Serialize,
        layout: Layout,
    ) -> Result<String, TemplateError> {
        let path = PathBuf::from(file);
        let context = to_value(&path, data)?;
        self.render_checked(file, &path, &context, layout)
    }
}

/// A template's typed data as the JSON value handlebars renders (and the error mapping renders again).
fn to_value(file: &Path, data: &impl Serialize) -> Result<Value, TemplateError> {
    serde_json::to_value(data).map_err(|e| TemplateError {
        file: file.to_owned(),
        location: None,
        message: format!("its data cannot be serialized: {e}"),
    })
}

fn relative(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_owned()
}

fn read(path: &Path, relative: &Path) -> Result<String, TemplateError> {
    std::fs::read_to_string(path).map_err(|e| TemplateError {
        file: relative.to_owned(),
        location: None,
        message: e.to_string(),
    })
}

/// Compiles a template (or partial: handlebars keeps both alike) into the registry under `name`, then lints what was
/// compiled: one compilation, which is most of the cost of loading the templates.
fn register_linted(
    registry: &mut Handlebars<'_>,
    name: &str,
    file: &Path,
    source: &str,
) -> Result<(), TemplateError> {
    registry
        .register_template_string(name, source)
        .map_err(|e| handlebars_error(file, &e))?;
    let template = registry
        .get_template(name)
        .expect("a template is in the registry once registered");
    lint::lint_compiled(file, source, template)
}

fn handlebars_error(file: &Path, e: &handlebars::TemplateError) -> TemplateError {
    TemplateError {
        file: file.to_owned(),
        location: e.pos().map(Position::from),
        message: e.reason().to_string(),
    }
}

fn render_error(file: &Path, e: &RenderError) -> TemplateError {
    let template = e.template_name.clone();
    let file = match &template {
        // Application templates are named after their folder, VM test templates after their file; any other
        // name is a partial's.
        Some(name)
            if Path::new(name) != file
                && !file.ends_with(format!("{name}.nix.hbs"))
                && file.iter().all(|c| c != name.as_str()) =>
        {
            PathBuf::from(format!("templates/_partials/{name}.nix.hbs"))
        }
        _ => file.to_owned(),
    };
    TemplateError {
        file,
        location: e.line_no.zip(e.column_no).map(Position::from),
        message: e.reason().to_string(),
    }
}
