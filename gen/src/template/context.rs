//! The data each template sees, one typed struct per template (as crate2nix's `BuildInfo` for `Cargo.nix.tera`):
//! [`ModuleData`] for `templates/<app>/module.nix.hbs`, [`ApplicationTest`] for `templates/_tests/application.nix.hbs`,
//! [`DeploymentTest`] for `templates/_tests/deployment.nix.hbs`, and [`CommonTest`] for
//! `templates/_tests/common.nix.hbs`. Each template starts with a comment listing the fields it gets; rendering
//! is strict, so a template naming a field its struct lacks fails (`gen/tests/template_contexts.rs`).
//!
//! Values are precomputed here rather than in templates: booleans (`has_secrets`, `https`), optional values
//! (`Option`, absent as `null`), shell commands, and relative source paths (rendered by `nix-source-path`).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::test_data::{DataNode, data_file};

use super::options::manifest_options_value;
use super::shell::{http_command, mailbox_check, step_command, until_expected};
use super::test_keys::{
    TEST_ENVIRONMENT, printf_octal, test_node_key, test_s3_key, with_test_node_ids,
};
use crate::deploy::secrets::{Holds, MachineSecret, application_secrets};
use crate::deploy::storage;
use crate::deploy::{DEPLOYMENTS, application_machine, python_name};
use crate::manifest::Manifest;
use crate::manifest::test_plan::{FederationStep, Instance, StepNode};
use crate::model::{self, Catalog, Operator, Spec};

/// Who an application is: `application.*` in module and test templates.
#[derive(Debug, Clone, Serialize)]
pub struct ApplicationInfo {
    /// Its name (`mastodon`): folder, module file, `fediversity.<name>`.
    pub name: String,
    /// Its title, for people.
    pub title: String,
    /// One sentence about it.
    pub description: String,
    /// The upstream NixOS module it maps onto (`services.mastodon`).
    pub upstream: String,
    /// Its default host name under the operator's domain.
    pub subdomain: String,
}

/// One manifest option as a module template sees it (`options.<name>.*`).
#[derive(Debug, Clone, Serialize)]
pub struct OptionData {
    /// Its description.
    pub description: String,
    /// The manifest's default (`null` when none).
    pub default: Option<Value>,
    /// The value rendered: the given setting, else the default (`null` when neither).
    pub value: Value,
    /// Its manifest type, as written (`int`, `enum`, …).
    #[serde(rename = "type")]
    pub ty: String,
}

/// One manifest secret as a module template sees it (`secrets.<name>.*`).
#[derive(Debug, Clone, Serialize)]
pub struct SecretData {
    /// Its description.
    pub description: String,
    /// The generated option holding its file (`<name>File`).
    pub option: String,
}

/// What an application needs (`needs.*`). The buckets are a list: a template that needs one names it by index
/// (`needs.s3_buckets.[0]`), which fails to render when the manifest lists fewer.
#[derive(Debug, Clone, Serialize)]
pub struct NeedsData {
    /// A PostgreSQL database.
    pub postgresql: bool,
    /// A Redis server.
    pub redis: bool,
    /// The provider's SMTP relay.
    pub smtp: bool,
    /// S3 buckets on the provider's Garage, by name.
    pub s3_buckets: Vec<String>,
    /// Whether `s3_buckets` is not empty.
    pub has_s3_buckets: bool,
    /// The kinds whose buckets get no website access (`needs.s3_private`, or all with `s3_website = false`):
    /// the template gives them no public URL.
    pub s3_private: Vec<String>,
}

/// The manifest's default resources (`resources.*`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ResourcesData {
    /// CPU cores.
    pub cores: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Disk in GiB.
    pub disk_gib: u32,
}

/// The data of `templates/<app>/module.nix.hbs`: the manifest, with the option declarations already emitted for
/// `{{nix-options}}`.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleData {
    /// Who the application is.
    pub application: ApplicationInfo,
    /// Its options by name.
    pub options: BTreeMap<String, OptionData>,
    /// Its secrets by name.
    pub secrets: BTreeMap<String, SecretData>,
    /// What it needs.
    pub needs: NeedsData,
    /// Its ports by name.
    pub ports: BTreeMap<String, u16>,
    /// Its default resources.
    pub resources: ResourcesData,
    /// How the operator's administrator gets an account (`templates/_partials/admin-account.nix.hbs`), or `null`.
    pub admin_account: Option<AdminAccountData>,
    /// The option declarations as Nix text, or `{ "error": … }` (read by the `nix-options` helper only).
    #[serde(rename = "__manifest_options")]
    pub manifest_options: Value,
}

/// The manifest's `[admin_account]` as the module's partial renders it (`admin_account.*`): the unit's name and
/// the option holding the password file are derived here, once.
#[derive(Debug, Clone, Serialize)]
pub struct AdminAccountData {
    /// The oneshot unit's name without `.service` (`<app>-admin-account`).
    pub unit: String,
    /// What it does.
    pub description: String,
    /// The units it waits for and requires.
    pub after: Vec<String>,
    /// The generated option holding the initial password's file (`<secret>File`).
    pub password_option: String,
    /// The stamp whose presence makes a later run a no-op.
    pub stamp: String,
    /// The manifest's script.
    pub script: String,
    /// The packages on its `PATH`, by attribute name of `pkgs` (the module then takes `pkgs`).
    pub packages: Vec<String>,
}

impl ModuleData {
    /// The data of a manifest's module, with `settings` overriding its options' defaults (for `template check`).
    pub fn new(manifest: &Manifest, settings: Option<&Value>) -> Self {
        let options = manifest
            .options
            .iter()
            .map(|(name, spec)| {
                let value = settings
                    .and_then(|s| s.get(name))
                    .or(spec.default.as_ref())
                    .cloned()
                    .unwrap_or(Value::Null);
                let data = OptionData {
                    description: spec.description.clone(),
                    default: spec.default.clone(),
                    value,
                    ty: spec.ty.to_string(),
                };
                (name.clone(), data)
            })
            .collect();
        let secrets = manifest
            .secrets
            .iter()
            .map(|(name, s)| {
                let data = SecretData {
                    description: s.description.clone(),
                    option: format!("{name}File"),
                };
                (name.clone(), data)
            })
            .collect();
        Self {
            application: application_info(manifest),
            options,
            secrets,
            needs: NeedsData {
                postgresql: manifest.needs.postgresql,
                redis: manifest.needs.redis,
                smtp: manifest.needs.smtp,
                s3_buckets: manifest.needs.s3_buckets.clone(),
                has_s3_buckets: !manifest.needs.s3_buckets.is_empty(),
                s3_private: manifest
                    .needs
                    .s3_buckets
                    .iter()
                    .filter(|k| !manifest.needs.website(k))
                    .cloned()
                    .collect(),
            },
            ports: manifest
                .ports
                .iter()
                .map(|p| (p.name.clone(), p.port))
                .collect(),
            resources: ResourcesData {
                cores: manifest.resources.cores,
                memory_mib: manifest.resources.memory_mib,
                disk_gib: manifest.resources.disk_gib,
            },
            admin_account: manifest.admin_account.as_ref().map(|a| AdminAccountData {
                unit: format!("{}-admin-account", manifest.application.name),
                description: a.description.clone(),
                after: a.after.clone(),
                password_option: format!("{}File", a.password_secret),
                stamp: format!(
                    "/var/lib/fediversity-admin/{}.created",
                    manifest.application.name
                ),
                script: a.script.clone(),
                packages: a.packages.clone(),
            }),
            manifest_options: manifest_options_value(manifest),
        }
    }
}

fn application_info(manifest: &Manifest) -> ApplicationInfo {
    let a = &manifest.application;
    ApplicationInfo {
        name: a.name.clone(),
        title: a.title.clone(),
        description: a.description.clone(),
        upstream: a.upstream.clone(),
        subdomain: a.subdomain.clone(),
    }
}

/// A manifest's health checks for a VM test (`health.*`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Health {
    /// systemd units that must be active.
    pub units: Vec<String>,
    /// TCP ports that must be open.
    pub tcp_ports: Vec<u16>,
    /// HTTP checks.
    pub http: Vec<HttpCommand>,
}

/// One HTTP health check as a shell command.
#[derive(Debug, Clone, Serialize)]
pub struct HttpCommand {
    /// Whether it runs on the application's machine (an admin port) rather than on the client.
    pub local: bool,
    /// The whole command.
    pub command: String,
}

impl Health {
    /// A manifest's health checks, the HTTP ones addressing `host`.
    pub fn new(manifest: &Manifest, host: &str) -> Self {
        Self {
            units: manifest.health.units.clone(),
            tcp_ports: manifest.health.tcp_ports.clone(),
            http: manifest
                .health
                .http
                .iter()
                .map(|check| {
                    let (local, command) = http_command(check, host);
                    HttpCommand { local, command }
                })
                .collect(),
        }
    }
}

/// One `[[test.steps]]` of a manifest, its command whole (`steps.[i].*`).
#[derive(Debug, Clone, Serialize)]
pub struct StepData {
    /// What it shows (the subtest's name).
    pub description: String,
    /// Whether it runs on the client (else on the application's machine).
    pub on_client: bool,
    /// The shell command, `FEDIGEN_HOST` exported first.
    pub command: String,
    /// Text its output must contain.
    pub expect: Option<String>,
    /// Retried until it succeeds.
    pub wait: bool,
    /// Run again after the upgrade round trip.
    pub recheck: bool,
}

impl StepData {
    /// The steps of a manifest, addressing `host`; with the test's administrator (its account name and test
    /// password), exported as `FEDIGEN_ADMIN` and `FEDIGEN_ADMIN_PASSWORD` for steps that act as it.
    fn all(manifest: &Manifest, host: &str, admin: Option<(&str, &str)>) -> Vec<Self> {
        let mut variables = vec![("FEDIGEN_HOST", host)];
        if let Some((username, password)) = admin {
            variables.push(("FEDIGEN_ADMIN", username));
            variables.push(("FEDIGEN_ADMIN_PASSWORD", password));
        }
        manifest
            .test
            .steps
            .iter()
            .map(|step| Self {
                description: step.description.clone(),
                on_client: step.on == StepNode::Client,
                command: until_expected(
                    step_command(&variables, &step.run),
                    step.wait,
                    step.expect.as_deref(),
                ),
                expect: step.expect.clone(),
                wait: step.wait,
                recheck: step.recheck,
            })
            .collect()
    }
}

/// The mail step of an application test (`mail.*`).
#[derive(Debug, Clone, Serialize)]
pub struct MailData {
    /// Which mail it is.
    pub description: String,
    /// The command on the application's machine that sends it.
    pub command: String,
    /// The recipient.
    pub to: String,
    /// The mail node's command that succeeds once the mailbox holds it.
    pub check: String,
    /// The mail node's host name (the application's SMTP relay in the test).
    pub host: String,
}

/// The manifest's `[test] settings`, an empty set when it has none.
fn test_settings(manifest: &Manifest) -> Value {
    manifest
        .test
        .settings
        .clone()
        .unwrap_or_else(|| Value::Object(serde_json::Map::new()))
}

/// The manifest's `[test] settings` for a test whose administrator has an address at `admin_domain`: that domain
/// added to the manifest's `admin_mail_allowlist` setting (joined by its separator), so the application accepts
/// the address without a DNS look-up the test network cannot answer.
fn test_settings_for(manifest: &Manifest, admin_domain: Option<&str>) -> Value {
    let mut settings = test_settings(manifest);
    if let (Some(list), Some(domain)) = (&manifest.test.admin_mail_allowlist, admin_domain)
        && let Some(Value::String(domains)) = list
            .setting
            .split('.')
            .try_fold(&mut settings, |value, key| value.get_mut(key))
        && !domains.split(list.separator.as_str()).any(|d| d == domain)
    {
        if !domains.is_empty() {
            domains.push_str(&list.separator);
        }
        domains.push_str(domain);
    }
    settings
}

/// The nginx virtual host the module serves the application through, as an option path (the manifest's
/// `[test] tls_virtual_host`, else `services.nginx.virtualHosts.<host>`): where a test puts its certificate.
fn virtual_host(manifest: &Manifest, host: &str) -> Vec<String> {
    match &manifest.test.tls_virtual_host {
        Some(path) => path.split('.').map(str::to_owned).collect(),
        None => ["services", "nginx", "virtualHosts", host]
            .map(str::to_owned)
            .to_vec(),
    }
}

/// The domain of an e-mail address (after its last `@`).
fn mail_domain(address: &str) -> Option<&str> {
    address.rsplit_once('@').map(|(_, domain)| domain)
}

/// The manifest's `[test] config`, an empty set when it has none.
fn test_config(manifest: &Manifest) -> Value {
    manifest
        .test
        .config
        .clone()
        .unwrap_or_else(|| Value::Object(serde_json::Map::new()))
}

/// The test domain of application and federation tests.
pub(crate) const TEST_DOMAIN: &str = "fedi.test";

/// A test secret file: a test value placed at a path on a test machine by `testSecrets` of
/// `vm-tests/generated/lib/common.nix` (the one way VM tests place secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestSecretFile {
    /// Its name in `fediversity.secrets` (`<app>-<secret>`).
    pub name: String,
    /// Where the file goes (an absolute path on the machine).
    pub path: String,
    /// What it holds.
    pub value: String,
    /// Its owner, as the machine's `fediversity.secrets` declares it (the service user reading it, or root).
    pub owner: String,
    /// Its group, likewise.
    pub group: String,
    /// Its mode, likewise.
    pub mode: String,
    /// The unit reading it, likewise.
    pub unit: String,
}

impl TestSecretFile {
    /// The test file of a machine's declared secret, holding `value`: placed exactly as declared, so the
    /// machine's secrets check passes in the test, and would fail it were the declaration wrong for the service.
    fn declared(secret: &MachineSecret, value: String) -> Self {
        Self {
            name: secret.name.clone(),
            path: secret.path.clone(),
            value,
            owner: secret.owner.clone(),
            group: secret.group.clone(),
            mode: secret.mode.to_owned(),
            unit: secret.unit.clone(),
        }
    }
}

/// One secret of the application VM test (`secrets.<name>.*`).
#[derive(Debug, Clone, Serialize)]
pub struct TestSecretOption {
    /// The module option that takes its file (`<name>File`).
    pub option: String,
    /// The file's path on the test machine.
    pub test_path: String,
}

/// The resources of the application VM test's machine (`resources.*`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TestResources {
    /// CPU cores.
    pub cores: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Disk in MiB (the VM's unit).
    pub disk_mib: u64,
}

/// The manifest's admin action, tried in the application VM test (`admin_action.*`).
#[derive(Debug, Clone, Serialize)]
pub struct AdminActionData {
    /// What it shows.
    pub description: String,
    /// The shell command run on the machine.
    pub command: String,
    /// A text its output must contain (`null` when only its success counts).
    pub expect: Option<String>,
}

/// The data of `templates/_tests/application.nix.hbs`: one application on a VM with its generated module, its
/// health checks and its admin action.
#[derive(Debug, Clone, Serialize)]
pub struct ApplicationTest {
    /// Who the application is.
    pub application: ApplicationInfo,
    /// The NixOS test's name (`fedigen-<app>`).
    pub test_name: String,
    /// The harness header's description.
    pub description: String,
    /// The test's domain (`fediversity.domain`).
    pub domain: String,
    /// The application's host name in the test.
    pub host: String,
    /// The machine's resources (the manifest's defaults).
    pub resources: TestResources,
    /// Whether it serves HTTPS (port 443), so the test certificate is needed.
    pub https: bool,
    /// The secret options by secret name, each set to its test file.
    pub secrets: BTreeMap<String, TestSecretOption>,
    /// The test secret files to place.
    pub secret_files: Vec<TestSecretFile>,
    /// The health checks.
    pub health: Health,
    /// The admin action (`null` when the manifest has none).
    pub admin_action: Option<AdminActionData>,
    /// The nixpkgs packages the steps use.
    pub packages: Vec<String>,
    /// The settings of the application every test of it needs (an attribute set, possibly empty).
    pub settings: Value,
    /// The upstream NixOS settings every test node of it needs (an attribute set, possibly empty).
    pub config: Value,
    /// What a user does (the manifest's `[[test.steps]]`).
    pub steps: Vec<StepData>,
    /// The mail the application sends, checked on a mail node (`null` when the manifest has no `[test.mail]`).
    pub mail: Option<MailData>,
    /// The option path of the nginx virtual host that gets the test certificate.
    pub virtual_host: Vec<String>,
    /// The test's administrator (`fediversity.admin`), made by the module's unit; `null` when the manifest
    /// makes none.
    pub admin: Option<TestAdmin>,
}

/// The operator's administrator in a VM test (`admin.*`, `nodes.[i].admin.*`): the account the module's unit
/// makes, which the test waits for.
#[derive(Debug, Clone, Serialize)]
pub struct TestAdmin {
    /// The account name.
    pub username: String,
    /// Its e-mail address.
    pub email: String,
    /// The unit making it, with `.service`.
    pub unit: String,
}

/// The application test's administrator: an account on the test's mail domain.
const TEST_ADMIN: (&str, &str) = ("fedigen_admin", "admin@example.org");

/// A secret's test value as the unit reading it with `$(cat …)` sees it (trailing newlines removed).
fn test_password(value: &str) -> &str {
    value.trim_end_matches('\n')
}

/// Where an application VM test places the test file of a secret.
const APPLICATION_TEST_SECRETS: &str = "/etc/fedigen-test";

impl ApplicationTest {
    /// The VM test of a manifest.
    pub fn new(manifest: &Manifest) -> Self {
        let app = &manifest.application.name;
        let secrets = manifest
            .secrets
            .keys()
            .map(|name| {
                let data = TestSecretOption {
                    option: format!("{name}File"),
                    test_path: format!("{APPLICATION_TEST_SECRETS}/{name}"),
                };
                (name.clone(), data)
            })
            .collect();
        let secret_files: Vec<TestSecretFile> = manifest
            .secrets
            .iter()
            .map(|(name, secret)| {
                let access = secret.access();
                TestSecretFile {
                    name: format!("{app}-{name}"),
                    path: format!("{APPLICATION_TEST_SECRETS}/{name}"),
                    value: secret
                        .test_value
                        .clone()
                        .unwrap_or_else(|| format!("fedigen-test-{name}")),
                    owner: access.owner().to_owned(),
                    group: access.group().to_owned(),
                    mode: crate::deploy::secrets::SECRET_MODE.to_owned(),
                    unit: access.unit().to_owned(),
                }
            })
            .collect();
        let host = format!("{}.{TEST_DOMAIN}", manifest.application.subdomain);
        // The administrator's unit runs in every application test (its password file is among the secrets).
        let admin = manifest.admin_account.as_ref().map(|_| TestAdmin {
            username: TEST_ADMIN.0.to_owned(),
            email: TEST_ADMIN.1.to_owned(),
            unit: format!("{app}-admin-account.service"),
        });
        let admin_password = manifest.admin_account.as_ref().and_then(|a| {
            secret_files
                .iter()
                .find(|f: &&TestSecretFile| f.name == format!("{app}-{}", a.password_secret))
                .map(|f| test_password(&f.value).to_owned())
        });
        let admin_login = admin
            .as_ref()
            .zip(admin_password.as_deref())
            .map(|(a, password)| (a.username.as_str(), password));
        let mail_host = format!("mail.{TEST_DOMAIN}");
        let mut does = vec!["its health checks"];
        if manifest.admin_action.is_some() {
            does.push("an admin action");
        }
        if !manifest.test.steps.is_empty() {
            does.push("what a user does");
        }
        if manifest.test.mail.is_some() {
            does.push("its mail received");
        }
        let does = match does.split_last() {
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        };
        Self {
            application: application_info(manifest),
            test_name: format!("fedigen-{app}"),
            description: format!(
                "{}: {does} on a VM with the generated module",
                manifest.application.title,
            ),
            domain: TEST_DOMAIN.to_owned(),
            resources: TestResources {
                cores: manifest.resources.cores,
                memory_mib: manifest.resources.memory_mib,
                disk_mib: u64::from(manifest.resources.disk_gib) * 1024,
            },
            https: serves_https(manifest),
            secrets,
            secret_files,
            health: Health::new(manifest, &host),
            admin_action: manifest.admin_action.as_ref().map(|a| AdminActionData {
                description: a.description.clone(),
                command: a.command.clone(),
                expect: a.expect.clone(),
            }),
            packages: manifest.test.packages.clone(),
            settings: test_settings_for(
                manifest,
                admin.as_ref().and_then(|a| mail_domain(&a.email)),
            ),
            config: test_config(manifest),
            steps: StepData::all(manifest, &host, admin_login),
            mail: manifest.test.mail.as_ref().map(|mail| MailData {
                description: mail.description.clone(),
                command: step_command(&[("FEDIGEN_HOST", &host)], &mail.run),
                to: mail.to.clone(),
                check: mailbox_check(&mail.to),
                host: mail_host.clone(),
            }),
            virtual_host: virtual_host(manifest, &host),
            admin,
            host,
        }
    }
}

fn serves_https(manifest: &Manifest) -> bool {
    manifest.ports.iter().any(|p| p.port == 443)
}

/// One machine of a deployment VM test (`nodes.[i].*`).
#[derive(Debug, Clone, Serialize)]
pub struct TestNode {
    /// The machine's name (`<operator>-<app>`).
    pub name: String,
    /// Its name in the test script (the test driver's `pythonize_name`).
    pub python: String,
    /// Its generated module, relative to `vm-tests/generated/` (rendered by `nix-source-path`).
    pub module: String,
    /// The host name a client reaches it by.
    pub host: String,
    /// Whether it serves HTTPS (port 443).
    pub https: bool,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// CPU cores.
    pub cores: u32,
    /// The test secret files to place.
    pub secrets: Vec<TestSecretFile>,
    /// What must be up on it.
    pub health: Health,
    /// The application it runs (`fediversity.<application>`).
    pub application: String,
    /// The nixpkgs packages its steps use.
    pub packages: Vec<String>,
    /// The settings of the application its tests need (an attribute set, possibly empty).
    pub settings: Value,
    /// The upstream NixOS settings its tests need (an attribute set, possibly empty).
    pub config: Value,
    /// What a user does on it.
    pub steps: Vec<StepData>,
    /// The steps that read data back, run again after the upgrade round trip.
    pub rechecks: Vec<StepData>,
    /// The repeatability subtest's name.
    pub repeat_description: String,
    /// The upgrade step (`null` when the manifest has no `[test.upgrade]`).
    pub upgrade: Option<UpgradeData>,
    /// The option path of the nginx virtual host that gets the test certificate.
    pub virtual_host: Vec<String>,
    /// The operator's administrator, when the module makes it (the password's file given).
    pub admin: Option<TestAdmin>,
    /// Whether the test's Garage node runs on this machine (it hosts one of the provider's nodes).
    pub garage: bool,
    /// Its `[[test.object_storage]]` steps, when its application stores files in the test's Garage node.
    pub stored: Vec<StoredStepData>,
}

/// The upgrade step of a deployment test's machine (`nodes.[i].upgrade.*`).
#[derive(Debug, Clone, Serialize)]
pub struct UpgradeData {
    /// The manifest option changed.
    pub setting: String,
    /// Its new value.
    pub value: Value,
    /// The units that may change (stop, start, restart, reload), and at least one must.
    pub restarts: Vec<String>,
    /// The subtest's name.
    pub description: String,
}

/// The data of `templates/_tests/deployment.nix.hbs`: one operator's deployment test file, which calls the test
/// every operator shares (`vm-tests/generated/lib/deployment.nix`) with the operator's data file.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentTestFile {
    /// The cores the test needs (the harness header).
    pub cores: u32,
    /// The harness header's description.
    pub description: String,
    /// The operator's data file ([`DeploymentTest::data_json`]), beside the test file, as a source path.
    pub data_file: String,
    /// The attribute path of each machine's toplevel (`nodes.<machine>.system.build.toplevel`), which the harness
    /// builds and rebuilds with `--check` before the test (the header's `rebuild`): each machine's system built a
    /// second time, independently, must be the same bytes.
    pub rebuild: Vec<String>,
}

/// One operator's deployment, every machine a test node importing its generated module, reached by a client
/// through its host name: the argument of the function `templates/_tests/deployment-lib.nix.hbs` renders, written
/// as JSON beside the operator's test file ([`DeploymentTest::data_json`]).
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentTest {
    /// The NixOS test's name (`fedigen-deployment-<operator>`).
    pub test_name: String,
    /// The harness header's description.
    pub description: String,
    /// The cores the test needs (at least 1).
    pub cores: u32,
    /// Every host name of the test, by node name (in every node's `/etc/hosts`).
    pub hosts: BTreeMap<String, Vec<String>>,
    /// The machines.
    pub nodes: Vec<TestNode>,
    /// The test's object storage, when an application of the operator stores files in buckets.
    pub storage: Option<DeploymentStorage>,
}

/// The data of `templates/_tests/common.nix.hbs`, `templates/_tests/migration-lib.nix.hbs` and
/// `templates/_tests/deployment-lib.nix.hbs`: none (what the tests share does not depend on the manifests).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CommonTest {}

/// The test value of a secret file: the manifest's `test_value` for the application secret it holds, a
/// placeholder otherwise.
fn test_secret(manifest: Option<&Manifest>, name: &str) -> String {
    manifest
        .and_then(|m| m.secrets.get(name))
        .and_then(|s| s.test_value.clone())
        .unwrap_or_else(|| format!("fedigen-test-{name}\n"))
}

impl DeploymentTest {
    /// The operator's data file: what `lib/deployment.nix` reads of this test, as pretty JSON, the generated-file
    /// marker `marker` its first member (`"//"`, [`crate::write::JSON_MARKER`]). JSON for the reason the
    /// migration tests' data is ([`super::MigrationTest::data_json`], issue #18), and refused for what a rendered
    /// test refused: a module that is no source path, a script name that is no Python identifier, a node name
    /// given twice (`client` included), a value `nix-value` refused (a NUL, an integer outside Nix's, `_type`
    /// and the other names the module system reads as directives).
    pub fn data_json(&self, marker: &str) -> Result<String, String> {
        #[derive(Serialize)]
        struct Data<'a> {
            #[serde(rename = "//")]
            marker: &'a str,
            test_name: &'a str,
            hosts: &'a BTreeMap<String, Vec<String>>,
            nodes: &'a [TestNode],
            storage: Option<&'a DeploymentStorage>,
        }
        let data = Data {
            marker,
            test_name: &self.test_name,
            hosts: &self.hosts,
            nodes: &self.nodes,
            storage: self.storage.as_ref(),
        };
        let extra = self.storage.as_ref().and_then(|s| s.extra.as_ref());
        let nodes: Vec<DataNode<'_>> = self
            .nodes
            .iter()
            .map(|n| DataNode {
                name: &n.name,
                python: &n.python,
                module: Some(&n.module),
            })
            .chain(extra.map(|e| DataNode {
                name: &e.name,
                python: &e.python,
                module: None,
            }))
            .collect();
        let garage: Vec<&str> = self.storage.iter().map(|s| s.python.as_str()).collect();
        data_file(&self.test_name, &nodes, &garage, &data)
    }

    /// The VM test of one operator's deployment: every machine of the operator (as a test node importing its
    /// generated module), what must be up on it (the manifests' health checks), the secrets files to place,
    /// and the host names a client reaches.
    pub fn new(spec: &Spec, catalog: &Catalog, operator: &Operator) -> Self {
        let (mut nodes, mut cores) = Self::machines(spec, catalog, operator);
        let mut hosts: BTreeMap<String, Vec<String>> = nodes
            .iter()
            .map(|n| (n.name.clone(), vec![n.host.clone()]))
            .collect();
        let storage = DeploymentStorage::new(spec, catalog, operator, &mut nodes, &mut hosts);
        if storage.as_ref().is_some_and(|s| s.extra.is_some()) {
            // The Garage-only node's two cores.
            cores += 2;
        }
        Self {
            test_name: format!("fedigen-deployment-{}", operator.name),
            description: format!(
                "the deployment of {} ({} machines): evaluated twice and each system rebuilt to the same bytes; every application through its domain and used, deployed again unchanged, an upgrade and back",
                operator.name,
                nodes.len()
            ),
            cores: cores.max(1),
            hosts,
            nodes,
            storage,
        }
    }

    /// The operator's machines as test nodes, without the test's object storage (which
    /// [`DeploymentStorage::new`] adds), and the cores they need: shared by the deployment test and the migration
    /// test (which adds one object storage per provider).
    pub(crate) fn machines(
        spec: &Spec,
        catalog: &Catalog,
        operator: &Operator,
    ) -> (Vec<TestNode>, u32) {
        let mut nodes = Vec::new();
        let mut cores = 0;
        for (app, application) in operator.applications.iter().filter(|(_, a)| a.enable) {
            let Some(manifest) = catalog.manifests.get(app) else {
                continue;
            };
            let (name, file) = application_machine(operator, app);
            let capacity = application.resources.resolve(manifest.resources);
            cores += capacity.cores;
            let shares_garage = spec
                .provider
                .object_storage
                .as_ref()
                .is_some_and(|storage| {
                    storage
                        .nodes
                        .values()
                        .any(|n| n.machine.as_deref() == Some(name.as_str()))
                });
            // The files the machine's module declares in `fediversity.secrets`, placed as declared.
            let mut declared =
                application_secrets(spec, catalog, app, application, manifest, shares_garage);
            declared.extend(crate::deploy::storage::shared_node_secrets(
                spec, catalog, &name,
            ));
            let secrets: Vec<TestSecretFile> = declared
                .iter()
                .map(|secret| {
                    let value = match &secret.holds {
                        Holds::Manifest { app, secret } => {
                            test_secret(catalog.manifests.get(app), secret)
                        }
                        Holds::SmtpPassword => "fedigen-test-smtp\n".to_owned(),
                        Holds::S3Key { app, .. } => {
                            super::test_keys::test_s3_key(&operator.name, app)
                        }
                        Holds::NodeKey(_) => crate::deploy::storage::test_secret(&secret.holds),
                    };
                    TestSecretFile::declared(secret, value)
                })
                .collect();
            let host = operator.host_name(app, manifest);
            let mut health = Health::new(manifest, &host);
            if let Some(storage) = &spec.provider.object_storage
                && storage
                    .nodes
                    .values()
                    .any(|n| n.machine.as_deref() == Some(name.as_str()))
            {
                let garage = catalog.manifests.get(model::OBJECT_STORAGE_APPLICATION);
                // The Garage node it hosts must run and listen too. Not its HTTP health check: the other nodes
                // have machines of their own, outside this operator's test, so the cluster is never whole here.
                if let Some(garage) = garage {
                    let node = Health::new(garage, &host);
                    // The provisioning unit runs on the cluster's first node only (not a node sharing a machine
                    // unless it is that one).
                    health.units.extend(
                        node.units
                            .into_iter()
                            .filter(|u| u != crate::deploy::storage::APPLY_UNIT),
                    );
                    health.tcp_ports.extend(node.tcp_ports);
                }
            }
            // The operator's administrator, made by the module's unit when the password's file is given.
            let admin = manifest
                .admin_account
                .as_ref()
                .filter(|a| application.secrets.contains_key(&a.password_secret))
                .map(|a| {
                    let password = secrets
                        .iter()
                        .find(|f| f.name == format!("{app}-{}", a.password_secret))
                        .map(|f| test_password(&f.value).to_owned())
                        .unwrap_or_else(|| {
                            test_password(&test_secret(Some(manifest), &a.password_secret))
                                .to_owned()
                        });
                    (
                        TestAdmin {
                            username: operator.admin.username.clone(),
                            email: operator.admin.email.clone(),
                            unit: format!("{app}-admin-account.service"),
                        },
                        password,
                    )
                });
            let admin_login = admin
                .as_ref()
                .map(|(a, password)| (a.username.as_str(), password.as_str()));
            let steps = StepData::all(manifest, &host, admin_login);
            let virtual_host = virtual_host(manifest, &host);
            let upgrade = manifest.test.upgrade.as_ref().map(|u| UpgradeData {
                description: format!(
                    "{name}: changing {} restarts only {}, and switching back keeps the data",
                    u.setting,
                    u.restarts.join(", ")
                ),
                setting: u.setting.clone(),
                value: u.value.clone(),
                restarts: u.restarts.clone(),
            });
            nodes.push(TestNode {
                python: python_name(&name),
                module: format!("../../{DEPLOYMENTS}/{file}"),
                host,
                https: serves_https(manifest),
                memory_mib: capacity.memory_mib,
                cores: capacity.cores,
                secrets,
                health,
                application: app.clone(),
                packages: manifest.test.packages.clone(),
                settings: test_settings_for(
                    manifest,
                    admin.as_ref().and_then(|(a, _)| mail_domain(&a.email)),
                ),
                config: test_config(manifest),
                virtual_host,
                admin: admin.map(|(a, _)| a),
                rechecks: steps.iter().filter(|s| s.recheck).cloned().collect(),
                steps,
                repeat_description: format!(
                    "{name}: deployed again (switched to the system it runs), no unit changes"
                ),
                upgrade,
                garage: false,
                stored: Vec::new(),
                name,
            });
        }
        (nodes, cores)
    }
}

/// One instance of a federation test (`instances.[i].*`).
#[derive(Debug, Clone, Serialize)]
pub struct FederationInstance {
    /// Its node name (`first`, `second`).
    pub name: String,
    /// Its name in the test script.
    pub python: String,
    /// Its domain (`fediversity.domain`).
    pub domain: String,
    /// The application's host name on it.
    pub host: String,
    /// The option path of its nginx virtual host (the test certificate goes there).
    pub virtual_host: Vec<String>,
    /// Its HTTP health checks, run on itself.
    pub http: Vec<HttpCommand>,
}

/// One federation step (`steps.[i].*`).
#[derive(Debug, Clone, Serialize)]
pub struct FederationStepData {
    /// What it shows.
    pub description: String,
    /// The instance it runs on, as the test script names it.
    pub python: String,
    /// The command, `FEDIGEN_HOST` and `FEDIGEN_PEER` exported first.
    pub command: String,
    /// Text its output must contain.
    pub expect: Option<String>,
    /// Retried until it succeeds.
    pub wait: bool,
}

/// The data of `templates/_tests/federation.nix.hbs`: two instances of one application that must reach each
/// other, from the manifest's `[test.federation]`.
#[derive(Debug, Clone, Serialize)]
pub struct FederationTest {
    /// Who the application is.
    pub application: ApplicationInfo,
    /// The NixOS test's name (`fedigen-federation-<app>`).
    pub test_name: String,
    /// The harness header's description.
    pub description: String,
    /// The cores the test needs (both instances).
    pub cores: u32,
    /// Each instance's resources (the manifest's defaults).
    pub resources: TestResources,
    /// Whether it serves HTTPS.
    pub https: bool,
    /// The secret options, each set to its test file.
    pub secrets: BTreeMap<String, TestSecretOption>,
    /// The test secret files to place.
    pub secret_files: Vec<TestSecretFile>,
    /// The nixpkgs packages the steps use.
    pub packages: Vec<String>,
    /// The upstream settings both instances get in the test (an attribute set): `[test] config`.
    pub config: Value,
    /// More upstream settings for federating in the test network (an attribute set): `[test.federation] config`.
    pub federation_config: Value,
    /// The settings of the application every test of it needs (an attribute set, possibly empty).
    pub settings: Value,
    /// The two instances.
    pub instances: Vec<FederationInstance>,
    /// The units and ports each instance must have up (its HTTP checks are per instance).
    pub health: Health,
    /// The steps.
    pub steps: Vec<FederationStepData>,
}

impl FederationInstance {
    /// The instance `which` of `manifest`'s federation test: its node name (`first`, `second`), a domain of its
    /// own (`<name>.test`) and the application's host under it. A migration test's peer is the second.
    pub(crate) fn of(manifest: &Manifest, which: Instance) -> Self {
        let name = match which {
            Instance::First => "first",
            Instance::Second => "second",
        };
        let domain = format!("{name}.test");
        let host = format!("{}.{domain}", manifest.application.subdomain);
        FederationInstance {
            name: name.to_owned(),
            python: name.to_owned(),
            http: Health::new(manifest, &host).http,
            virtual_host: virtual_host(manifest, &host),
            domain,
            host,
        }
    }
}

impl FederationStepData {
    /// Federation steps, each on its instance; `first` and `second` are the instances' nodes as the test script
    /// names them and their hosts. `FEDIGEN_HOST` is the step's own instance's host, `FEDIGEN_PEER` the other's.
    pub(crate) fn all(
        steps: &[FederationStep],
        first: (&str, &str),
        second: (&str, &str),
    ) -> Vec<Self> {
        steps
            .iter()
            .map(|step| {
                let ((python, own), (_, peer)) = match step.on {
                    Instance::First => (first, second),
                    Instance::Second => (second, first),
                };
                FederationStepData {
                    description: step.description.clone(),
                    python: python.to_owned(),
                    command: until_expected(
                        step_command(&[("FEDIGEN_HOST", own), ("FEDIGEN_PEER", peer)], &step.run),
                        step.wait,
                        step.expect.as_deref(),
                    ),
                    expect: step.expect.clone(),
                    wait: step.wait,
                }
            })
            .collect()
    }
}

impl FederationTest {
    /// The federation test of a manifest, `None` when it has no `[test.federation]`.
    pub fn new(manifest: &Manifest) -> Option<Self> {
        let federation = manifest.test.federation.as_ref()?;
        let single = ApplicationTest::new(manifest);
        let instances = [
            FederationInstance::of(manifest, Instance::First),
            FederationInstance::of(manifest, Instance::Second),
        ];
        let steps = FederationStepData::all(
            &federation.steps,
            (&instances[0].python, &instances[0].host),
            (&instances[1].python, &instances[1].host),
        );
        let mut health = Health::new(manifest, "");
        health.http.clear();
        Some(Self {
            test_name: format!("fedigen-federation-{}", manifest.application.name),
            description: format!(
                "{}: two instances on two nodes trusting one test CA; {}",
                manifest.application.title, federation.description
            ),
            cores: manifest.resources.cores * 2,
            application: single.application,
            resources: single.resources,
            https: single.https,
            secrets: single.secrets,
            secret_files: single.secret_files,
            packages: single.packages,
            settings: single.settings,
            config: single.config,
            federation_config: federation
                .config
                .clone()
                .unwrap_or_else(|| Value::Object(serde_json::Map::new())),
            instances: instances.into(),
            health,
            steps,
        })
    }
}

/// The test's Garage environment file (RPC secret, admin and metrics tokens, [`TEST_ENVIRONMENT`]) as a Garage
/// node declares it: every Garage node of a VM test gets it.
pub(crate) fn garage_environment_secret() -> TestSecretFile {
    TestSecretFile {
        name: "garage-environment".into(),
        path: "/run/secrets/garage-environment".into(),
        value: TEST_ENVIRONMENT.into(),
        owner: "root".into(),
        group: "root".into(),
        mode: "0400".into(),
        unit: "garage.service".into(),
    }
}

/// Which provider's side of a test an object storage serves: the deployment test has one side, the migration
/// test two (provider A's and provider B's clusters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageSide {
    /// Appended to each machine's name (its test node's name) and to the Garage node's: `""` in a deployment
    /// test, `-a` and `-b` in a migration test.
    pub suffix: String,
    /// Distinguishes the side's test S3 keys from another side's (`""`: the deployment test's keys): two
    /// providers' clusters never share a key, so a job reading a side's bucket with the other side's key fails.
    pub keys: String,
}

impl StorageSide {
    /// The one side of a deployment test.
    pub(crate) fn deployment() -> Self {
        StorageSide {
            suffix: String::new(),
            keys: String::new(),
        }
    }

    /// The test S3 key file of an operator's application on this side ([`test_s3_key`], its operator name
    /// marked with the side's `keys`).
    pub(crate) fn s3_key(&self, operator: &str, app: &str) -> String {
        test_s3_key(&format!("{operator}{}", self.keys), app)
    }
}

/// The Garage-only node a deployment test adds when no machine of the operator runs a Garage node
/// (`storage.extra.*` of `templates/_tests/deployment.nix.hbs`).
#[derive(Debug, Clone, Serialize)]
pub struct ExtraGarageNode {
    /// Its test node name (`garage`; in a migration test `garage-a`, `garage-b`).
    pub name: String,
    /// Its name in the test script.
    pub python: String,
    /// The provider's domain (its `fediversity.domain`).
    pub provider_domain: String,
}

/// One `[[test.object_storage]]` step of a deployment test's machine (`nodes.[i].stored.[j].*`).
#[derive(Debug, Clone, Serialize)]
pub struct StoredStepData {
    /// What it shows.
    pub description: String,
    /// Whether it runs on the client (else on the application's machine).
    pub on_client: bool,
    /// Retried until it succeeds.
    pub wait: bool,
    /// The command, `FEDIGEN_HOST` and `FEDIGEN_MEDIA_PREFIX` exported first.
    pub command: String,
    /// What every URL it prints must start with: `https://media.<provider>/<bucket>/`.
    pub prefix: String,
    /// The application's S3 key file on the Garage node, to read the object back through the S3 API.
    pub key_file: String,
}

/// The object storage of a deployment test (`storage.*` of `templates/_tests/deployment.nix.hbs`): one Garage node
/// (the operator's machine hosting one, else a Garage-only node the test adds) with replication factor 1, no
/// peers, and the provisioning unit applying a description of that node and this operator's buckets and keys;
/// nginx serving the S3 host (with its virtual-host bucket aliases) and the media host with the test CA's
/// certificates, and every node resolving those names to it. Without it the applications' S3 endpoint does not
/// exist in the test (review-14 F2) or a lone node of a three-copy cluster never becomes healthy (F4).
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentStorage {
    /// The test node running Garage.
    pub node: String,
    /// Its name in the test script.
    pub python: String,
    /// The node the test adds, when no machine of the operator runs Garage.
    pub extra: Option<ExtraGarageNode>,
    /// The Garage node's test key (seed and public key) as `printf` octal escapes.
    pub node_key_printf: String,
    /// Where the machine reads its node key.
    pub node_key_path: String,
    /// The text secret files the Garage node gets (the operator's key copies; an added node also the
    /// environment file).
    pub secrets: Vec<TestSecretFile>,
    /// The description the node applies, as JSON text: itself and the operator's buckets.
    pub storage_json: String,
    /// The S3 API's host.
    pub s3_host: String,
    /// The public media host.
    pub media_host: String,
    /// The cluster's S3 region.
    pub region: String,
}

impl DeploymentStorage {
    /// The object storage of `operator`'s deployment test, or `None` when none of its applications stores files in
    /// buckets (or the provider has no object storage). Marks the node hosting Garage in `nodes` (dropping the
    /// placeholder node key it would otherwise get), gives each application's `[[test.object_storage]]` steps to
    /// its node, and adds the endpoint names to `hosts`.
    pub(crate) fn new(
        spec: &Spec,
        catalog: &Catalog,
        operator: &Operator,
        nodes: &mut [TestNode],
        hosts: &mut BTreeMap<String, Vec<String>>,
    ) -> Option<Self> {
        Self::on_side(
            spec,
            catalog,
            operator,
            nodes,
            hosts,
            &StorageSide::deployment(),
        )
    }

    /// The object storage of one provider's side of a test: as [`DeploymentStorage::new`], with the side's node
    /// names (`side.suffix` after each machine's and Garage node's name) and its own test S3 keys. The provider's
    /// domain (hence the S3 and media hosts) is `spec`'s: a side at another provider passes a specification with
    /// that provider's domain.
    pub(crate) fn on_side(
        spec: &Spec,
        catalog: &Catalog,
        operator: &Operator,
        nodes: &mut [TestNode],
        hosts: &mut BTreeMap<String, Vec<String>>,
        side: &StorageSide,
    ) -> Option<Self> {
        let storage = spec.provider.object_storage.as_ref()?;
        let index = spec
            .operators
            .iter()
            .position(|o| o.name == operator.name)?;
        // This operator's alone (every operator's, once per operator's test, was quadratic: issue #18).
        let apps = storage::operator_storage(spec, catalog, index);
        if apps.is_empty() {
            return None;
        }
        let mut description = storage::description_of(spec, &apps)?;
        let (s3_host, media_host, _) = storage::endpoint_hosts(spec, catalog)?;
        // The node of an operator's machine, else the cluster's first node (on a node the test adds).
        let hosted = storage.nodes.iter().find_map(|(name, node)| {
            let machine = node.machine.as_deref()?;
            nodes
                .iter()
                .position(|n| n.name == format!("{machine}{}", side.suffix))
                .map(|i| (name.clone(), i))
        });
        let node_name = match &hosted {
            Some((name, _)) => name.clone(),
            None => storage::designated_node(storage)?.to_owned(),
        };
        // The side's Garage node: its own name, hence its own test key (two sides are two clusters).
        let test_node_name = format!("{node_name}{}", side.suffix);
        description.replication_factor = 1;
        description.nodes.retain(|n| n.name == node_name);
        for node in &mut description.nodes {
            node.name = test_node_name.clone();
        }
        let buckets: Vec<&str> = apps
            .iter()
            .flat_map(|a| a.buckets.iter().map(|(_, b, _)| b.as_str()))
            .collect();
        description
            .buckets
            .retain(|b| buckets.contains(&b.name.as_str()));
        with_test_node_ids(&mut description);
        description.comment = Some(format!(
            "The storage description of {}'s deployment test: one node, the operator's buckets (fedigen's deployment test).",
            operator.name
        ));
        let mut secrets: Vec<TestSecretFile> = apps
            .iter()
            .map(|a| {
                let (name, path) = storage::node_key_copy(&a.operator_name, &a.app);
                TestSecretFile {
                    name,
                    path,
                    value: side.s3_key(&a.operator_name, &a.app),
                    owner: "root".into(),
                    group: "root".into(),
                    mode: "0400".into(),
                    unit: storage::APPLY_UNIT.into(),
                }
            })
            .collect();
        let node_key_path = storage::node_key_secret(spec, &node_name)
            .map(|s| s.path)
            .unwrap_or_else(|| format!("/run/secrets/{}", storage::NODE_KEY_SECRET_NAME));
        let mut names = vec![s3_host.clone(), media_host.clone()];
        for app in apps.iter().filter(|a| a.virtual_host) {
            names.extend(app.buckets.iter().map(|(_, b, _)| format!("{b}.{s3_host}")));
        }
        let (node, python, extra) = match hosted {
            Some((_, i)) => {
                // The test key (common.testNodeKey) is the node key: the machine's own placeholder for that file is
                // not placed too (it would be written, then overwritten, on every activation).
                let machine = &mut nodes[i];
                machine.secrets.retain(|s| s.path != node_key_path);
                machine.garage = true;
                machine.secrets.extend(secrets.iter().cloned());
                machine.packages.push("rclone".into());
                (machine.name.clone(), machine.python.clone(), None)
            }
            None => {
                secrets.insert(0, garage_environment_secret());
                let name = format!("garage{}", side.suffix);
                (
                    name.clone(),
                    python_name(&name),
                    Some(ExtraGarageNode {
                        python: python_name(&name),
                        name,
                        provider_domain: spec.provider.domain.clone(),
                    }),
                )
            }
        };
        hosts.entry(node.clone()).or_default().extend(names);
        for machine in nodes.iter_mut() {
            let Some(app) = apps.iter().find(|a| machine.application == a.app) else {
                continue;
            };
            let Some(manifest) = catalog.manifests.get(&app.app) else {
                continue;
            };
            let key_file = storage::node_key_copy(&app.operator_name, &app.app).1;
            machine.stored = manifest
                .test
                .object_storage
                .iter()
                .filter_map(|step| {
                    let bucket = app.buckets.iter().find(|(k, _, _)| *k == step.kind)?;
                    let prefix = format!("https://{media_host}/{}/", bucket.1);
                    Some(StoredStepData {
                        description: format!("{}: {}", machine.name, step.description),
                        on_client: step.on == StepNode::Client,
                        wait: step.wait,
                        command: step_command(
                            &[
                                ("FEDIGEN_HOST", &machine.host),
                                ("FEDIGEN_MEDIA_PREFIX", &prefix),
                            ],
                            &step.run,
                        ),
                        prefix,
                        key_file: key_file.clone(),
                    })
                })
                .collect();
        }
        let key = test_node_key(&test_node_name);
        Some(Self {
            node,
            python,
            extra,
            node_key_printf: printf_octal(&key.secret_bytes()),
            node_key_path,
            secrets,
            storage_json: description.to_json(),
            s3_host,
            media_host,
            region: storage.region.clone(),
        })
    }
}
