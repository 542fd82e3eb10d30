//! The plan of a generation: every file `fedigen generate` writes, computed from the repository's templates
//! (and, as deployments land, its specification), proven before it is returned.
//!
//! Planning is pure: it reads templates and returns contents. Writing, comparing and the atomic swap are
//! [`crate::write`]'s. Every planned file carries the generated-file marker naming its source, parses with rnix
//! and is nixfmt-canonical.

use std::path::{Path, PathBuf};

use crate::emit::{Verification, emit_file};
use crate::manifest::{Manifest, ManifestError};
use crate::nix::print::print_expr_at;
use crate::nix::verify::VerifyError;
use crate::nix::{AttrName, AttrPath, Entry, Expr, Ident, LexicalError, Param, SourcePath};
use crate::region::{self, Content};
use crate::shared::{
    ALL_MODULES, DEPLOYMENT_TEST_PREFIX, FEDERATION_TEST_PREFIX, MODULES, SHARED_MODULE, VM_TESTS,
    VM_TESTS_LIB, shared_module,
};
use crate::template::{APPLICATION_TEST, COMMON_TEST, FEDERATION_TEST, TemplateError, Templates};
use crate::write::{Plan, WriteError, Writer, marker_line, marker_text};

/// Why a generation could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// A manifest is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A template is invalid or did not render.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// Emitted text failed verification (a bug in fedigen).
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A name cannot be written in Nix.
    #[error(transparent)]
    Lexical(#[from] LexicalError),
    /// A file or folder the generation reads could not be read: the environment's fault, not the input's.
    #[error(transparent)]
    Io(#[from] crate::io_error::IoError),
    /// The specification could not be loaded: invalid (its report holds every problem), unreadable, or Nix
    /// could not be run. Kept whole so the command line can print the report as it is and choose the exit
    /// status (2 for bad input, 3 for the environment).
    #[error("{0}")]
    InvalidSpec(Box<crate::model::LoadError>),
    /// A deployment could not be planned.
    #[error(transparent)]
    Deploy(#[from] crate::deploy::DeployError),
    /// The committed Proxmox VM id allocation (`deployments/tofu/vm-ids.json`) is invalid.
    #[error(transparent)]
    VmIds(#[from] crate::deploy::tofu::VmIdsError),
    /// A hand-written file has malformed regions, or a region the generator does not fill.
    #[error(transparent)]
    Region(Box<region::RegionError>),
    /// A planned file could not be written or compared (streaming into [`Writer`]): a hand-written file in
    /// the way, or the filesystem refused.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// No repository was found.
    #[error(
        "{0}: not a fedigen repository (no `templates/` folder here or above); run inside the repository or pass --repo"
    )]
    NoRepository(PathBuf),
}

impl From<region::RegionError> for GenerateError {
    fn from(error: region::RegionError) -> Self {
        Self::Region(Box::new(error))
    }
}

/// Finds the repository: `start` or the nearest parent with a `templates/` folder.
pub fn find_repository(start: &Path) -> Result<PathBuf, GenerateError> {
    start
        .ancestors()
        .find(|dir| dir.join("templates").is_dir())
        .map(Path::to_owned)
        .ok_or_else(|| GenerateError::NoRepository(start.to_owned()))
}

/// The specification used when none is given: the repository's example.
pub const DEFAULT_SPEC: &str = "examples/provider.toml";

/// Plans every generated file of the repository at `repo`, with the deployments of its example specification
/// when there is one.
pub fn plan(repo: &Path) -> Result<Plan, GenerateError> {
    let spec = repo.join(DEFAULT_SPEC);
    plan_with_spec(repo, spec.is_file().then_some(spec.as_path()))
}

/// Plans every generated file: modules and VM tests from the templates, and deployments from `spec`.
pub fn plan_with_spec(repo: &Path, spec: Option<&Path>) -> Result<Plan, GenerateError> {
    let files = Collect::default();
    let regions = stream(repo, spec, &files)?;
    Ok(Plan {
        roots: roots(spec.is_some()),
        files: files.0.into_inner().expect("no panic holds it"),
        regions,
    })
}

/// The folders a generation owns: `modules/` and `vm-tests/generated/`, and `deployments/` with a
/// specification.
pub fn roots(with_spec: bool) -> Vec<PathBuf> {
    let mut roots = vec![PathBuf::from(MODULES), PathBuf::from(VM_TESTS)];
    if with_spec {
        roots.push(PathBuf::from(crate::deploy::DEPLOYMENTS));
    }
    roots
}

/// Where a generation's files go as they are produced, from many threads at once: a [`Writer`] (compared and
/// staged at once, so that no file's text outlives its write: issue #18) or a [`Plan`] being collected.
pub trait Sink: Sync {
    /// One generated file, `path` relative to the repository, `contents` with its marker.
    fn file(&self, path: &Path, contents: &str) -> Result<(), WriteError>;
}

impl Sink for Writer {
    fn file(&self, path: &Path, contents: &str) -> Result<(), WriteError> {
        Writer::file(self, path, contents)
    }
}

/// A [`Sink`] keeping every file, for [`plan_with_spec`].
#[derive(Default)]
struct Collect(std::sync::Mutex<std::collections::BTreeMap<PathBuf, String>>);

impl Sink for Collect {
    fn file(&self, path: &Path, contents: &str) -> Result<(), WriteError> {
        self.0
            .lock()
            .expect("no panic holds it")
            .insert(path.to_owned(), contents.to_owned());
        Ok(())
    }
}

/// A sink that also remembers the paths given (the `vm-tests` region lists the generated tests).
struct Recording<'a> {
    sink: &'a dyn Sink,
    paths: std::sync::Mutex<std::collections::BTreeSet<PathBuf>>,
}

impl Recording<'_> {
    fn put(&self, path: PathBuf, contents: &str) -> Result<(), GenerateError> {
        self.sink.file(&path, contents)?;
        self.paths.lock().expect("no panic holds it").insert(path);
        Ok(())
    }
}

/// Plans every generated file as [`plan_with_spec`] does, giving each to `sink` as soon as it is made (the VM
/// tests and machines from rayon's threads, in no particular order) instead of holding them; the files of
/// [`roots`]`(spec.is_some())`. Returns the hand-written files holding regions, with their new contents.
pub fn stream(
    repo: &Path,
    spec: Option<&Path>,
    sink: &dyn Sink,
) -> Result<std::collections::BTreeMap<PathBuf, String>, GenerateError> {
    let sink = Recording {
        sink,
        paths: std::sync::Mutex::default(),
    };
    // Drafts (texts still saying TODO) are not published.
    let manifests = Manifest::load_published(&repo.join("templates"))?;
    let mut templates = Templates::load(repo, &manifests)?;
    templates.load_tests(repo)?;
    sink.put(
        Path::new(VM_TESTS).join(VM_TESTS_LIB).join("common.nix"),
        &format!(
            "{}\n{}",
            marker_line(COMMON_TEST),
            templates.render_common_test()?
        ),
    )?;
    sink.put(
        Path::new(VM_TESTS)
            .join(VM_TESTS_LIB)
            .join("deployment.nix"),
        &format!(
            "{}\n{}",
            marker_line(crate::template::DEPLOYMENT_LIB),
            templates.render_deployment_lib()?
        ),
    )?;
    sink.put(
        Path::new(VM_TESTS).join(VM_TESTS_LIB).join("migration.nix"),
        &format!(
            "{}\n{}",
            marker_line(crate::template::MIGRATION_LIB),
            templates.render_migration_lib()?
        ),
    )?;
    for manifest in &manifests {
        let app = &manifest.application.name;
        let body = templates.render_application_test(manifest)?;
        let source = format!("templates/{app}/manifest.toml and {APPLICATION_TEST}");
        sink.put(
            Path::new(VM_TESTS).join(format!("{app}.nix")),
            &format!("{}\n{body}", marker_line(&source)),
        )?;
        if let Some(body) = templates.render_federation_test(manifest)? {
            let source = format!("templates/{app}/manifest.toml and {FEDERATION_TEST}");
            sink.put(
                Path::new(VM_TESTS).join(format!("{FEDERATION_TEST_PREFIX}{app}.nix")),
                &format!("{}\n{body}", marker_line(&source)),
            )?;
        }
    }
    let modules = Path::new(MODULES);
    for manifest in &manifests {
        let app = &manifest.application.name;
        let source = templates
            .file(app)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let body = templates.render_module(manifest, None)?;
        sink.put(
            modules.join(format!("{app}.nix")),
            &format!("{}\n{body}", marker_line(&source)),
        )?;
    }
    let shared = shared_module_with_needs(&manifests)?;
    let text = emit_file(
        &format!("{MODULES}/{SHARED_MODULE}.nix"),
        &[marker_text(
            "gen/src/generate.rs (the options every application shares)",
        )],
        &shared,
        Verification::Syntax,
    )?;
    sink.put(modules.join(format!("{SHARED_MODULE}.nix")), &text)?;
    let mut imports = vec![Expr::SourcePath(SourcePath::new(&format!(
        "./{SHARED_MODULE}.nix"
    ))?)];
    for manifest in &manifests {
        imports.push(Expr::SourcePath(SourcePath::new(&format!(
            "./{}.nix",
            manifest.application.name
        ))?));
    }
    let default = Expr::attrs(vec![Entry::binding(
        AttrPath::dotted("imports")?,
        Expr::List(imports),
    )]);
    let text = emit_file(
        &format!("{MODULES}/{ALL_MODULES}.nix"),
        &[
            marker_text("templates/ (one import per application)"),
            "All Fediversity application modules; import this file or the flake's `nixosModules.default`.".into(),
        ],
        &default,
        Verification::Syntax,
    )?;
    sink.put(modules.join(format!("{ALL_MODULES}.nix")), &text)?;
    if let Some(spec_path) = spec {
        // The manifests already loaded (drafts refused) are the catalog the specification is checked against.
        let catalog = crate::model::Catalog::from_manifests(manifests.iter().cloned());
        let spec = crate::model::load(spec_path, &catalog)
            .map_err(|e| GenerateError::InvalidSpec(Box::new(e)))?;
        let name = source_name(repo, spec_path);
        // Bare-metal hosts' hardware configurations are found relative to the specification's path in the
        // repository (`name`), which a specification outside it does not have.
        let inside = std::fs::canonicalize(spec_path)
            .ok()
            .zip(std::fs::canonicalize(repo).ok())
            .is_some_and(|(spec, repo)| spec.starts_with(repo));
        if !inside && matches!(spec.provider.runtime, crate::model::Runtime::BareMetal(_)) {
            return Err(crate::deploy::DeployError::Data(format!(
                "{name} lies outside the repository, so its hosts' hardware configurations would too; pure \
                 flake evaluation reads only the repository's files: move the specification and its hardware \
                 configurations into the repository"
            ))
            .into());
        }
        if !inside && crate::deploy::sops::sops(&spec).is_some() {
            return Err(crate::deploy::DeployError::Data(format!(
                "{name} lies outside the repository, so its sops file would too; pure flake evaluation reads \
                 only the repository's files: move the specification and its sops file into the repository"
            ))
            .into());
        }
        // What generations keep: the committed Proxmox VM ids (read, and extended) and the provider's SSH host
        // keys beside the specification (a malformed one stops generation, a missing one leaves its machine out
        // of the NixOps4 deployment, whose header lists it).
        let machines = crate::deploy::machines(&spec, &catalog);
        let kept = crate::deploy::Kept {
            vm_ids: crate::deploy::tofu::VmIds::read(repo)?.unwrap_or_default(),
            host_keys: crate::deploy::host_keys::HostKeys::load_shown(
                spec_path,
                Path::new(&name),
                &machines,
            )
            .map_err(|problems| crate::deploy::DeployError::Data(problems.join("\n")))?,
        };
        // The deployments and the VM tests per operator, planned side by side (rayon::join): neither reads the
        // other, and each alone leaves a core idle part of the time. Each file goes to the sink from the task
        // that makes it.
        use rayon::prelude::*;
        let (deployments, tests) = rayon::join(
            || {
                crate::deploy::plan_streaming(&spec, &catalog, &name, &kept, &|path, text| {
                    sink.put(path.to_owned(), text)
                })
            },
            || {
                // One deployment test and one migration test (`fedigen migrate` run between two providers'
                // machines) per operator, in parallel: each a data file, then the test file calling the shared
                // test (`lib`) with it.
                let put_test =
                    |stem: String,
                     test_template: &str,
                     data: Result<String, String>,
                     body: &dyn Fn(&str) -> Result<String, crate::template::TemplateError>|
                     -> Result<(), GenerateError> {
                        let data_file = format!("{stem}.json");
                        let data = data.map_err(crate::deploy::DeployError::Data)?;
                        sink.put(Path::new(VM_TESTS).join(&data_file), &data)?;
                        sink.put(
                            Path::new(VM_TESTS).join(format!("{stem}.nix")),
                            &format!(
                                "{}\n{}",
                                marker_line(&format!("{name} and {test_template}")),
                                body(&data_file)?
                            ),
                        )?;
                        Ok(())
                    };
                spec.operators.par_iter().try_for_each(|operator| {
                    let test = crate::template::DeploymentTest::new(&spec, &catalog, operator);
                    let stem = format!("{DEPLOYMENT_TEST_PREFIX}{}", operator.name);
                    let marker = marker_text(&format!(
                        "{name} (one operator's deployment test, the data of {})",
                        crate::template::DEPLOYMENT_LIB
                    ));
                    put_test(
                        stem,
                        crate::template::DEPLOYMENT_TEST,
                        test.data_json(&marker),
                        &|data_file| templates.render_deployment_test(&test, data_file),
                    )?;
                    let test = crate::template::MigrationTest::new(&spec, &catalog, operator);
                    let stem = format!("{}{}", crate::shared::MIGRATION_TEST_PREFIX, operator.name);
                    let marker = marker_text(&format!(
                        "{name} (one operator's migration test, the data of {})",
                        crate::template::MIGRATION_LIB
                    ));
                    put_test(
                        stem,
                        crate::template::MIGRATION_TEST,
                        test.data_json(&marker),
                        &|data_file| templates.render_migration_test(&test, data_file),
                    )
                })
            },
        );
        deployments?;
        tests?;
        // The provider's object-storage test (its Garage cluster, one operator's Mastodon media in it).
        if let Some(test) = crate::template::StorageTest::new(&spec, &catalog) {
            let source = format!("{name} and {}", crate::template::STORAGE_TEST);
            let body = templates.render_storage_test(&test)?;
            sink.put(
                Path::new(VM_TESTS).join(crate::template::STORAGE_TEST_FILE),
                &format!("{}\n{body}", marker_line(&source)),
            )?;
        }
    }
    let paths = sink.paths.into_inner().expect("no panic holds it");
    fill_regions(repo, &roots(spec.is_some()), &paths, &manifests)
}

/// How a generated file's header names a source file: by its path relative to the repository whatever the
/// current directory and however the path is spelled (`../x`, `/abs/x`, `./a/../x` name one file alike), and
/// by its file name alone when it lies outside the repository, so no absolute path of this machine is written.
/// Symbolic links are resolved on both sides.
pub(crate) fn source_name(repo: &Path, file: &Path) -> String {
    let absolute = |path: &Path| {
        std::fs::canonicalize(path).unwrap_or_else(|_| {
            std::path::absolute(path)
                .map(|p| normalize(&p))
                .unwrap_or_else(|_| path.to_owned())
        })
    };
    let (repo, file) = (absolute(repo), absolute(file));
    let relative = match file.strip_prefix(&repo) {
        Ok(relative) if !relative.as_os_str().is_empty() => relative,
        _ => Path::new(file.file_name().unwrap_or(file.as_os_str())),
    };
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// `path` with `.` and `..` resolved by its text (for paths that do not exist, which cannot be canonicalized).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

/// The shared options an application's needs require, each with what it holds (for the message): for `smtp`
/// the relay's host and sender address, for S3 buckets the endpoint. Each has no default in [`shared_module`],
/// so `options.fediversity.<option>.isDefined` is true exactly when a configuration sets it. PostgreSQL and Redis
/// require nothing here: each application module creates its own on the machine (`createLocally`).
pub(crate) fn need_requirements(manifest: &Manifest) -> Vec<(String, &'static str, &'static str)> {
    let mut required = Vec::new();
    if manifest.needs.smtp {
        let need = "the provider's SMTP relay".to_owned();
        required.push((need.clone(), "smtp.host", "the relay's host name"));
        required.push((need, "smtp.fromAddress", "the sender address of its mail"));
    }
    let buckets = &manifest.needs.s3_buckets;
    if !buckets.is_empty() {
        let need = format!(
            "object storage (bucket{} {})",
            if buckets.len() == 1 { "" } else { "s" },
            buckets.join(", ")
        );
        required.push((need, "s3.endpoint", "the provider's S3 endpoint URL"));
    }
    required
}

/// `modules/fediversity.nix`: [`shared_module`]'s options, and the assertions every application's needs make of
/// them (nixpkgs style: `config.assertions`, a message naming the option to set). One `lib.mkIf` per application
/// with needs, on `config.fediversity.<app>.enable or false`, so the module also evaluates where an
/// application's module is not imported (the flake's `nixosModules.<app>` import one application alone).
pub(crate) fn shared_module_with_needs(manifests: &[Manifest]) -> Result<Expr, LexicalError> {
    let r = Expr::reference;
    let Expr::Lambda(_, body) = shared_module()? else {
        unreachable!("shared_module is a function")
    };
    let Expr::Attrs(mut body) = *body else {
        unreachable!("shared_module's body is a set")
    };
    // Each application with S3 buckets: `objectStorage.buckets` (kind → name) and `objectStorage.keyFile`,
    // which every machine's generated file sets (`crate::deploy::storage`).
    if let Some(Entry::Binding { value, .. }) = body.entries.first_mut()
        && let Expr::Attrs(options) = value
    {
        for manifest in manifests.iter().filter(|m| !m.needs.s3_buckets.is_empty()) {
            options.entries.push(object_storage_options(
                &manifest.application.name,
                &manifest.needs.s3_buckets,
            )?);
        }
    }
    let mut per_application = Vec::new();
    for manifest in manifests {
        let app = &manifest.application.name;
        let required = need_requirements(manifest);
        if required.is_empty() {
            continue;
        }
        let mut assertions = Vec::new();
        for (need, option, what) in required {
            let defined = Expr::Select(
                Box::new(Expr::var("options")?),
                AttrPath::new(
                    ["fediversity"]
                        .into_iter()
                        .chain(option.split('.'))
                        .chain(["isDefined"])
                        .map(AttrName::new)
                        .collect::<Result<_, _>>()?,
                )?,
                None,
            );
            assertions.push(Expr::attrs(vec![
                Entry::dotted("assertion", defined)?,
                Entry::dotted(
                    "message",
                    Expr::string(&format!(
                        "fediversity.{app} needs {need}: set fediversity.{option} ({what})."
                    ))?,
                )?,
            ]));
        }
        let enabled = Expr::Select(
            Box::new(Expr::var("config")?),
            AttrPath::new(vec![
                AttrName::new("fediversity")?,
                AttrName::new(app)?,
                AttrName::new("enable")?,
            ])?,
            Some(Box::new(Expr::Bool(false))),
        );
        per_application.push(Expr::apply(
            r("lib.mkIf")?,
            vec![
                enabled,
                Expr::attrs(vec![Entry::dotted("assertions", Expr::List(assertions))?]),
            ],
        ));
    }
    per_application.push(crate::shared::secrets_check_config()?);
    if !per_application.is_empty() {
        body.entries.push(Entry::dotted(
            "config",
            Expr::apply(r("lib.mkMerge")?, vec![Expr::List(per_application)]),
        )?);
    }
    Ok(Expr::Lambda(
        Param::Formals {
            formals: vec![
                (Ident::new("config")?, None),
                (Ident::new("lib")?, None),
                (Ident::new("options")?, None),
            ],
            ellipsis: true,
            bind: None,
        },
        Box::new(Expr::Attrs(body)),
    ))
}

/// `<app>.objectStorage = { buckets = …; keyFile = …; }` in `options.fediversity`: the interface an
/// application's template reads its buckets and key from (one bucket per kind of `needs.s3_buckets`, one key per
/// operator's application). Empty and `null` by default: an application module imported alone still evaluates,
/// with object storage off.
fn object_storage_options(app: &str, kinds: &[String]) -> Result<Entry, LexicalError> {
    let r = Expr::reference;
    let example = Expr::attrs(
        kinds
            .iter()
            .map(|k| {
                Ok(Entry::binding(
                    AttrPath::from(AttrName::new(k)?),
                    Expr::string(&format!("uni-{app}-{}", k.replace('_', "-")))?,
                ))
            })
            .collect::<Result<Vec<_>, LexicalError>>()?,
    );
    Ok(Entry::binding(
        AttrPath::new(vec![AttrName::new(app)?, AttrName::new("objectStorage")?])?,
        Expr::attrs(vec![
            Entry::dotted(
                "buckets",
                Expr::mk_option(
                    Expr::apply(r("lib.types.attrsOf")?, vec![r("lib.types.str")?]),
                    Some(Expr::attrs(Vec::new())),
                    Some(example),
                    &format!(
                        "The operator's buckets by kind ({}): names on the provider's Garage cluster, set by the machine's generated file.",
                        kinds.join(", ")
                    ),
                )?,
            )?,
            Entry::dotted(
                "keyFile",
                Expr::mk_option(
                    Expr::apply(r("lib.types.nullOr")?, vec![r("lib.types.str")?]),
                    Some(Expr::Null),
                    Some(Expr::string(&format!("/run/secrets/{app}-s3-key"))?),
                    "Path on the machine of the operator's S3 key for these buckets: an environment file with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (never a store path). `null`: no object storage.",
                )?,
            )?,
        ]),
    ))
}

/// The regions `fedigen generate` fills in hand-written files (`# fedigen:begin <name>` … `# fedigen:end <name>`):
/// each one's name, what it holds, and how it is filled. Paths are written relative to the file holding the
/// region. The one table: filling, and the message naming the known regions, both read it.
pub(crate) const REGIONS: [Region; 4] = [
    Region {
        name: "applications",
        holds: "the name of every application with a template, as strings (inside a list)",
        fill: applications_region,
    },
    Region {
        name: "module-imports",
        holds: "the paths of modules/fediversity.nix and of every application's module (inside a list)",
        fill: module_imports_region,
    },
    Region {
        name: "nixos-modules",
        holds: "`default = …/modules;` and one `<app>` module importing the shared options and the application (inside a set)",
        fill: nixos_modules_region,
    },
    Region {
        name: "vm-tests",
        holds: "one `<test> = …/vm-tests/generated/<test>.nix;` per generated VM test (inside a set)",
        fill: vm_tests_region,
    },
];

/// One region `fedigen generate` knows.
pub struct Region {
    /// Its name, as the markers write it.
    pub name: &'static str,
    /// What it holds, for people.
    pub holds: &'static str,
    /// Its content, for one file.
    fill: fn(&RegionInputs) -> Result<(Content, Expr), LexicalError>,
}

/// What a region's content is made from: where the file is, the applications and the plan.
struct RegionInputs<'a> {
    /// How many folders below the repository the file is.
    depth: usize,
    /// The applications with a template, in order.
    apps: Vec<&'a str>,
    /// Every generated file (relative to the repository).
    paths: &'a std::collections::BTreeSet<PathBuf>,
}

impl RegionInputs<'_> {
    /// A repository path, relative to the file.
    fn up(&self, target: &str) -> Result<Expr, LexicalError> {
        let path = if self.depth == 0 {
            format!("./{target}")
        } else {
            format!("{}{target}", "../".repeat(self.depth))
        };
        Ok(Expr::SourcePath(SourcePath::new(&path)?))
    }
}

fn applications_region(inputs: &RegionInputs) -> Result<(Content, Expr), LexicalError> {
    Ok((
        Content::ListItems,
        Expr::List(
            inputs
                .apps
                .iter()
                .map(|app| Expr::string(app))
                .collect::<Result<_, _>>()?,
        ),
    ))
}

fn module_imports_region(inputs: &RegionInputs) -> Result<(Content, Expr), LexicalError> {
    let mut paths = vec![inputs.up("modules/fediversity.nix")?];
    for app in &inputs.apps {
        paths.push(inputs.up(&format!("modules/{app}.nix"))?);
    }
    Ok((Content::ListItems, Expr::List(paths)))
}

fn nixos_modules_region(inputs: &RegionInputs) -> Result<(Content, Expr), LexicalError> {
    let mut entries = vec![Entry::dotted("default", inputs.up(MODULES)?)?];
    for app in &inputs.apps {
        let imports = Expr::List(vec![
            inputs.up("modules/fediversity.nix")?,
            inputs.up(&format!("modules/{app}.nix"))?,
        ]);
        entries.push(Entry::binding(
            AttrPath::dotted(app)?,
            Expr::attrs(vec![Entry::dotted("imports", imports)?]),
        ));
    }
    Ok((Content::Bindings, Expr::attrs(entries)))
}

fn vm_tests_region(inputs: &RegionInputs) -> Result<(Content, Expr), LexicalError> {
    let mut entries = Vec::new();
    // The tests are the `.nix` files of the folder itself: not what they import from `lib/`, nor a migration
    // test's data (`migrate-<operator>.json`, whose stem is its test's).
    let is_test = |p: &&PathBuf| {
        p.parent() == Some(Path::new(VM_TESTS)) && p.extension().is_some_and(|e| e == "nix")
    };
    for path in inputs.paths.iter().filter(is_test) {
        let Some(test) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        entries.push(Entry::binding(
            AttrPath::dotted(test)?,
            inputs.up(&path.display().to_string())?,
        ));
    }
    Ok((Content::Bindings, Expr::attrs(entries)))
}

/// Every hand-written `.nix` file of the repository holding a region, with its new contents. Generated folders,
/// hidden folders and `target/` are not searched.
fn fill_regions(
    repo: &Path,
    roots: &[PathBuf],
    paths: &std::collections::BTreeSet<PathBuf>,
    manifests: &[Manifest],
) -> Result<std::collections::BTreeMap<PathBuf, String>, GenerateError> {
    let mut filled = std::collections::BTreeMap::new();
    for file in files_with_regions(repo, roots)? {
        let text = std::fs::read_to_string(repo.join(&file))
            .map_err(crate::io_error::IoError::on("read", &file))?;
        let name = file.display().to_string();
        let inputs = RegionInputs {
            depth: file.components().count() - 1,
            apps: manifests
                .iter()
                .map(|m| m.application.name.as_str())
                .collect(),
            paths,
        };
        let new = region::fill(&name, &text, |found| {
            let Some(known) = REGIONS.iter().find(|r| r.name == found.name) else {
                return Err(region::RegionError::Unknown {
                    file: name.clone(),
                    position: found.position,
                    name: found.name.clone(),
                    known: REGIONS.map(|r| r.name).join(", "),
                });
            };
            let (content, expr) =
                (known.fill)(&inputs).map_err(|e| region::RegionError::Marker {
                    file: name.clone(),
                    position: found.position,
                    message: e.to_string(),
                })?;
            Ok((content, inner_lines(&expr)))
        })?;
        filled.insert(file, new);
    }
    Ok(filled)
}

/// The lines inside the brackets of a printed list or set, unindented: the items or bindings alone.
fn inner_lines(expr: &Expr) -> Vec<String> {
    let printed = print_expr_at(expr, 0);
    let lines: Vec<&str> = printed.lines().collect();
    if lines.len() < 2 {
        return Vec::new();
    }
    lines[1..lines.len() - 1]
        .iter()
        .map(|line| line.strip_prefix("  ").unwrap_or(line).to_owned())
        .collect()
}

/// The hand-written `.nix` files (relative, sorted) that contain a region marker.
fn files_with_regions(repo: &Path, roots: &[PathBuf]) -> Result<Vec<PathBuf>, GenerateError> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(repo.join(&dir))
            .map_err(crate::io_error::IoError::on("read", &repo.join(&dir)))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let relative = dir.join(&*name);
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if !name.starts_with('.') && name != "target" && !roots.contains(&relative) {
                    pending.push(relative);
                }
            } else if kind.is_file()
                && name.ends_with(".nix")
                && std::fs::read_to_string(entry.path()).is_ok_and(|t| t.contains(region::BEGIN))
            {
                found.push(relative);
            }
        }
    }
    found.sort();
    Ok(found)
}
