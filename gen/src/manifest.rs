//! Application manifests (`templates/<app>/manifest.toml`): what an application offers and needs.
//!
//! One manifest feeds everything that must agree about an application: the generated NixOS module's options,
//! the validation of operators' settings, the JSON Schema for the panel, the VM tests' health checks and the
//! documentation. So the model never hard-codes an application: adding a template adds its manifest.
//!
//! A manifest is read strictly (unknown keys are errors, with line and column) and then checked as a whole
//! (defaults and examples must have their option's type), so a template that loads is consistent.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::nix::{Expr, LexicalError};
use crate::position::Position;

pub mod test_plan;
pub use test_plan::TestPlan;

/// An application's manifest, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Who the application is.
    pub application: Application,
    /// The typed settings an operator may choose, by name (a Nix identifier).
    pub options: BTreeMap<String, OptionSpec>,
    /// Services the application needs on its machine or from the provider.
    pub needs: Needs,
    /// Secrets the application needs, always passed as files on the target machine.
    pub secrets: BTreeMap<String, SecretSpec>,
    /// What one instance needs by default; operators may request more.
    pub resources: Resources,
    /// Ports the application listens on.
    pub ports: Vec<Port>,
    /// How a VM test (or a monitoring probe) knows the application is up.
    pub health: Health,
    /// One real action through the application's own admin tool, for the VM test.
    pub admin_action: Option<AdminAction>,
    /// How the operator's administrator (`operators[].admin`) gets an account on first deploy.
    pub admin_account: Option<AdminAccount>,
    /// What the VM tests do with the application as people do (`[test]`).
    pub test: TestPlan,
    /// What the application keeps (databases, buckets, directories, identity): what a migration moves.
    pub state: crate::state::State,
}

/// The application's identity.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// The template's folder name and the attribute under `fediversity.` (e.g. `mastodon`).
    pub name: String,
    /// The name people know (e.g. `Mastodon`).
    pub title: String,
    /// One sentence for the documentation and the panel.
    pub description: String,
    /// The upstream NixOS option set it maps onto (e.g. `services.mastodon`).
    pub upstream: String,
    /// The default subdomain under the operator's domain (e.g. `mastodon` → `mastodon.example.org`).
    pub subdomain: String,
}

/// One typed setting.
#[derive(Debug, Clone, PartialEq)]
pub struct OptionSpec {
    /// Its type, which decides validation, the JSON Schema and the Nix option type.
    pub ty: OptionType,
    /// The default; `None` makes the option required.
    pub default: Option<Value>,
    /// What it means, for the documentation and the generated `description`.
    pub description: String,
    /// An example value, for the documentation and the generated `example`.
    pub example: Option<Value>,
}

/// The types a setting can have. Each maps to a `lib.types` type, a JSON Schema and a validation rule.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionType {
    /// `true` / `false`.
    Bool,
    /// An integer, optionally bounded (inclusive).
    Int {
        /// The smallest allowed value.
        min: Option<i64>,
        /// The largest allowed value.
        max: Option<i64>,
    },
    /// A float.
    Float,
    /// A string, optionally matching a regular expression (whole string) or bounded in length.
    Str {
        /// A regular expression the whole string must match.
        pattern: Option<String>,
        /// The most characters allowed.
        max_length: Option<usize>,
    },
    /// One of fixed strings.
    Enum(Vec<String>),
    /// A TCP/UDP port, 1–65535.
    Port,
    /// An e-mail address.
    Email,
    /// A list of values of one scalar type.
    List(Box<OptionType>),
    /// An attribute set of values of one scalar type.
    Attrs(Box<OptionType>),
}

/// Services an application needs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Needs {
    /// A PostgreSQL database on the application's machine.
    #[serde(default)]
    pub postgresql: bool,
    /// A Redis instance on the application's machine.
    #[serde(default)]
    pub redis: bool,
    /// The provider's SMTP relay for outgoing mail.
    #[serde(default)]
    pub smtp: bool,
    /// The kinds of S3 bucket the application keeps media in (snake_case, e.g. `media`, or PeerTube's
    /// `web_videos`): each operator's application gets one bucket per kind on the provider's Garage cluster,
    /// named `<operator>-<application>[-<kind>]` (see `crate::deploy::storage`).
    #[serde(default)]
    pub s3_buckets: Vec<String>,
    /// Who reads the application's S3 key file (an environment file with `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`, `fediversity.<app>.objectStorage.keyFile`); required with `s3_buckets`.
    #[serde(default)]
    pub s3_key: Option<ProviderSecretUse>,
    /// Whether the application's buckets are public through Garage's web endpoint
    /// (`https://media.<provider domain>/<bucket>/…`): true for media the application links to directly
    /// (Mastodon, Pixelfed, PeerTube), false for one that serves its media itself (Synapse).
    #[serde(default = "public_buckets")]
    pub s3_website: bool,
    /// The kinds of `s3_buckets` that stay private although `s3_website` is true: objects the application hands
    /// out only through presigned URLs on the S3 host (PeerTube's `user_exports` and `original_video_files`,
    /// stored with `isPrivate: true`). Their buckets get no website access, so `https://media.<provider
    /// domain>/<bucket>/…` never serves them; [`Needs::website`] is the one place the two fields combine.
    #[serde(default)]
    pub s3_private: Vec<String>,
    /// Whether the application addresses its buckets virtual-host style only (`https://<bucket>.s3.<provider
    /// domain>`; PeerTube: "PeerTube doesn't support path style requests"): its bucket names then go on the S3
    /// host's certificate. Others use path style (`https://s3.<provider domain>/<bucket>`).
    #[serde(default)]
    pub s3_virtual_host: bool,
    /// Who reads the provider's SMTP password file (`fediversity.smtp.passwordFile`), when the application's
    /// module passes it to upstream; each such application gets a file of its own, owned by its reader.
    #[serde(default)]
    pub smtp_password: Option<ProviderSecretUse>,
}

fn public_buckets() -> bool {
    true
}

/// A secret the application needs. Values never appear in a specification or in the Nix store: the module
/// receives a path on the target machine (`…File` options).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSpec {
    /// What it is for.
    pub description: String,
    /// Where it comes from.
    pub source: SecretSource,
    /// The file's contents in VM tests only (where a secret in the store is harmless); a real deployment
    /// never sees it.
    #[serde(default)]
    pub test_value: Option<String>,
    /// Whether the application runs without it (upstream's `nullOr path` file options with default `null`):
    /// specifications may leave it out, and the generated `<name>File` option then defaults to `null`, which
    /// the template must handle. Only a provided secret can be optional.
    #[serde(default)]
    pub optional: bool,
    /// The service user that reads the file itself (its owner on the machine), when the service's own code or
    /// script reads it. Exactly one of `reader` and `credential` is given: a manifest without either is invalid.
    #[serde(default)]
    pub reader: Option<Reader>,
    /// The unit (e.g. `garage.service`) whose systemd (PID 1, root) reads the file before dropping privileges,
    /// as `EnvironmentFile=` or `LoadCredential=`: the file stays `root:root 0400`.
    #[serde(default)]
    pub credential: Option<String>,
}

/// Who reads a secret file as a service user: the file's owner and group on the machine, and the unit that reads
/// it (the secrets check runs before it). The user is the upstream module's (`User=` of that unit, e.g.
/// `services.peertube.user`'s default), which fedigen's modules leave at their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reader {
    /// The user the unit runs as (`User=`).
    pub user: String,
    /// Its group (`Group=`).
    pub group: String,
    /// The unit that reads the file, e.g. `matrix-synapse.service`.
    pub unit: String,
}

/// How a secret reaches its service, from a manifest's `reader` or `credential` (exactly one of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretAccess<'a> {
    /// Read by the service user: the file is owned by it.
    Reader(&'a Reader),
    /// Read by systemd as root for the named unit: the file is `root:root`.
    Credential(&'a str),
}

impl SecretAccess<'_> {
    /// The file's owner on the machine.
    pub fn owner(&self) -> &str {
        match self {
            Self::Reader(r) => &r.user,
            Self::Credential(_) => "root",
        }
    }

    /// The file's group on the machine.
    pub fn group(&self) -> &str {
        match self {
            Self::Reader(r) => &r.group,
            Self::Credential(_) => "root",
        }
    }

    /// The unit that reads it, which must not start before the file is in place.
    pub fn unit(&self) -> &str {
        match self {
            Self::Reader(r) => &r.unit,
            Self::Credential(unit) => unit,
        }
    }
}

/// Who reads a provider secret an application uses (`[needs.smtp_password]`): a `reader` or a `credential`,
/// as for the application's own secrets.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSecretUse {
    /// The service user that reads the file.
    #[serde(default)]
    pub reader: Option<Reader>,
    /// The unit whose systemd reads the file as root.
    #[serde(default)]
    pub credential: Option<String>,
}

/// The access a `reader`/`credential` pair describes, or why it describes none (for the manifest's message).
fn access_of<'a>(
    reader: Option<&'a Reader>,
    credential: Option<&'a str>,
) -> Result<SecretAccess<'a>, &'static str> {
    match (reader, credential) {
        (Some(r), None) => Ok(SecretAccess::Reader(r)),
        (None, Some(unit)) => Ok(SecretAccess::Credential(unit)),
        (None, None) => Err(
            "say who reads the file: `reader = { user = \"…\", group = \"…\", unit = \"….service\" }` (the service user of the upstream unit that reads it) or `credential = \"….service\"` (systemd reads it as root, for `EnvironmentFile=`/`LoadCredential=`)",
        ),
        (Some(_), Some(_)) => Err("give either `reader` or `credential`, not both"),
    }
}

impl SecretSpec {
    /// Who reads the file. A loaded manifest has exactly one of `reader` and `credential` for every secret.
    pub fn access(&self) -> SecretAccess<'_> {
        access_of(self.reader.as_ref(), self.credential.as_deref())
            .expect("a loaded manifest names a reader or a credential for every secret")
    }
}

impl ProviderSecretUse {
    /// Who reads the file (checked when the manifest is loaded).
    pub fn access(&self) -> SecretAccess<'_> {
        access_of(self.reader.as_ref(), self.credential.as_deref())
            .expect("a loaded manifest names a reader or a credential for every provider secret")
    }
}

/// Where a secret comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecretSource {
    /// Generated on the target machine on first boot (random), never leaving it.
    Generated,
    /// Provided by the operator or the provider (a path or a named secret in the specification).
    Provided,
}

/// An amount of compute resources: a manifest's default (and minimum) for one instance, a machine's resolved
/// resources, and the provider's limits per machine and per operator. One type for the three, so that they are
/// compared field by field without conversions; a specification's request, where each field may be left out, is
/// [`crate::model::ResourceRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU cores.
    pub cores: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Disk in GiB.
    pub disk_gib: u32,
}

/// A port the application listens on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// What listens there (e.g. `web`, `streaming`).
    pub name: String,
    /// The port number.
    pub port: u16,
    /// Whether it is reachable from outside the machine (otherwise only nginx on the machine uses it).
    #[serde(default)]
    pub public: bool,
}

/// Health checks, which the VM tests perform and monitoring can reuse.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// systemd units that must become active.
    #[serde(default)]
    pub units: Vec<String>,
    /// TCP ports that must be open on the machine.
    #[serde(default)]
    pub tcp_ports: Vec<u16>,
    /// HTTP requests to the application's virtual host.
    #[serde(default)]
    pub http: Vec<HttpCheck>,
}

/// An HTTP request and what must come back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    /// The path, starting with `/`.
    pub path: String,
    /// The expected status code.
    #[serde(default = "ok_status")]
    pub status: u16,
    /// Text the body must contain.
    #[serde(default)]
    pub contains: Option<String>,
    /// Ask a local port directly over plain HTTP (an admin API) instead of the application's virtual host.
    #[serde(default)]
    pub port: Option<u16>,
}

fn ok_status() -> u16 {
    200
}

/// An action performed with the application's own admin tool in the VM test, e.g. creating an account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminAction {
    /// What it shows.
    pub description: String,
    /// The shell command run on the application's machine.
    pub command: String,
    /// Text the command's output must contain.
    #[serde(default)]
    pub expect: Option<String>,
}

/// How the operator's administrator gets an account: a shell script the generated module runs once, as root, in a
/// oneshot unit after the service is up (`<app>-admin-account.service`). The script is the application's own (its
/// admin tool or API), so no Rust code names an application; the unit gives it `FEDIVERSITY_ADMIN_USERNAME`,
/// `FEDIVERSITY_ADMIN_EMAIL` and `FEDIVERSITY_ADMIN_PASSWORD_FILE` (the file of `password_secret`), and marks
/// success with a stamp, so a second run is a no-op.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminAccount {
    /// What the script does, for the unit's description.
    pub description: String,
    /// The units that must be up first (ordered after and required).
    pub after: Vec<String>,
    /// The secret (of `[secrets]`: provided and optional) holding the initial password; without it, or without
    /// an administrator in the specification, no account is made.
    pub password_secret: String,
    /// The script, run by bash with `set -e`, as root.
    pub script: String,
    /// Packages (attribute names of nixpkgs' `pkgs`, e.g. `curl`) the script needs on its `PATH`.
    #[serde(default)]
    pub packages: Vec<String>,
}

/// One problem in a manifest: where (file, line and column), which field, and what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", location.map(|p| format!(":{p}")).unwrap_or_default())]
pub struct ManifestProblem {
    /// The manifest file (or templates folder).
    pub file: PathBuf,
    /// Line and column (1-based), when known.
    pub location: Option<Position>,
    /// What is wrong, naming the field, and how to fix it.
    pub message: String,
}

/// Why manifests cannot be used: every problem found, all at once, so a contributor fixes them in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The problems, in file and position order; never empty.
    pub problems: Vec<ManifestProblem>,
}

impl ManifestError {
    /// One problem.
    pub fn single(file: &Path, location: Option<Position>, message: String) -> Self {
        Self {
            problems: vec![ManifestProblem {
                file: file.to_owned(),
                location,
                message,
            }],
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "{one}"),
            all => {
                write!(f, "{} problems in application manifests:", all.len())?;
                for problem in all {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ManifestError {}

/// The manifest's sections. Only its field names are used ([`sections`]): each section is read on its own so
/// that every problem is reported at once.
#[derive(Deserialize)]
#[allow(dead_code)]
struct RawManifest {
    application: Application,
    #[serde(default)]
    options: BTreeMap<String, RawOption>,
    #[serde(default)]
    needs: Needs,
    #[serde(default)]
    secrets: BTreeMap<String, SecretSpec>,
    resources: Resources,
    #[serde(default)]
    ports: Vec<Port>,
    #[serde(default)]
    health: Health,
    #[serde(default)]
    admin_action: Option<AdminAction>,
    #[serde(default)]
    admin_account: Option<AdminAccount>,
    test: TestPlan,
    state: crate::state::State,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOption {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    of: Option<String>,
    #[serde(default)]
    values: Option<Vec<String>>,
    #[serde(default)]
    min: Option<i64>,
    #[serde(default)]
    max: Option<i64>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    max_length: Option<usize>,
    #[serde(default)]
    default: Option<toml::Value>,
    description: String,
    #[serde(default)]
    example: Option<toml::Value>,
}

/// The field names a struct deserializes, asked of serde itself, so that unknown keys are found (all of them,
/// with a "did you mean") from the same declaration that reads the known ones.
fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe(&'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for &mut Probe {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("probe"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = fields;
            Err(serde::de::Error::custom("probe"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut probe = Probe(&[]);
    let _ = T::deserialize(&mut probe);
    probe.0
}

/// The sections a manifest may have, in the order people write them.
fn sections() -> &'static [&'static str] {
    field_names::<RawManifest>()
}

/// The closest of `known` to `name`, for "did you mean" hints.
fn did_you_mean<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(name, k), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// Where each key and value of a TOML document is (byte offsets), by dotted path (`options.port.type`,
/// `ports.0.name`), from `toml`'s own spanned parser.
#[derive(Default)]
struct Spans {
    keys: BTreeMap<String, usize>,
    values: BTreeMap<String, usize>,
}

impl Spans {
    fn of(text: &str) -> Result<Self, toml::de::Error> {
        let table = toml::de::DeTable::parse(text)?;
        let mut spans = Self::default();
        for (k, v) in table.get_ref().iter() {
            spans.add(k.get_ref(), k.span().start, v);
        }
        Ok(spans)
    }

    fn add(&mut self, path: &str, key: usize, value: &toml::Spanned<toml::de::DeValue<'_>>) {
        self.keys.insert(path.to_owned(), key);
        self.values.insert(path.to_owned(), value.span().start);
        match value.get_ref() {
            toml::de::DeValue::Table(table) => {
                for (k, v) in table.iter() {
                    self.add(&format!("{path}.{}", k.get_ref()), k.span().start, v);
                }
            }
            toml::de::DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let start = item.span().start;
                    self.add(&format!("{path}.{i}"), start, item);
                }
            }
            _ => {}
        }
    }
}

/// Collects a manifest's problems, each located at the key or value it is about.
struct Problems<'a> {
    file: &'a Path,
    text: &'a str,
    spans: Spans,
    found: Vec<ManifestProblem>,
}

impl Problems<'_> {
    /// A problem at the key of `path` (or the nearest enclosing key that is written).
    fn at_key(&mut self, path: &str, message: String) {
        let location = self.locate(path, &self.spans.keys);
        self.push(location, message);
    }

    /// A problem at the value of `path` (or the nearest enclosing one).
    fn at_value(&mut self, path: &str, message: String) {
        let location = self.locate(path, &self.spans.values);
        self.push(location, message);
    }

    fn locate(&self, path: &str, index: &BTreeMap<String, usize>) -> Option<Position> {
        let mut path = path;
        loop {
            if let Some(offset) = index.get(path) {
                return Some(line_column(self.text, *offset));
            }
            path = path.rsplit_once('.')?.0;
        }
    }

    fn push(&mut self, location: Option<Position>, message: String) {
        self.found.push(ManifestProblem {
            file: self.file.to_owned(),
            location,
            message,
        });
    }

    /// Reads `value` (at `path`) as `T`: every unknown key reported with the closest known one, then serde's
    /// first type error located at the field it is about.
    fn read<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        what: &str,
        value: toml::Value,
    ) -> Option<T> {
        let fields = field_names::<T>();
        let mut value = value;
        let mut unknown = false;
        if let (false, toml::Value::Table(table)) = (fields.is_empty(), &mut value) {
            let keys: Vec<String> = table.keys().cloned().collect();
            for key in keys.iter().filter(|k| !fields.contains(&k.as_str())) {
                let hint = did_you_mean(key, fields.iter().copied())
                    .map(|k| format!("did you mean `{k}`? "))
                    .unwrap_or_default();
                self.at_key(
                    &format!("{path}.{key}"),
                    format!(
                        "{what}: unknown field `{key}`; {hint}the fields are {}",
                        fields
                            .iter()
                            .map(|f| format!("`{f}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                table.remove(key);
                unknown = true;
            }
        }
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) if !unknown => Some(v),
            Ok(_) => None,
            Err(e) => {
                let inner = e.path().to_string();
                let full = if inner == "." || inner.is_empty() {
                    path.to_owned()
                } else {
                    format!("{path}.{inner}")
                };
                let field = full.strip_prefix(&format!("{path}.")).unwrap_or(&full);
                let message = e.into_inner().message().trim_end().to_owned();
                if let Some(missing) = message
                    .strip_prefix("missing field `")
                    .and_then(|m| m.strip_suffix('`'))
                {
                    self.at_key(path, format!("{what}: missing field `{missing}`"));
                } else {
                    self.at_value(&full, format!("{what}: `{field}`: {message}"));
                }
                None
            }
        }
    }
}

impl Manifest {
    /// Reads and checks `templates/<app>/manifest.toml`.
    pub fn load(file: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            let message = if e.kind() == std::io::ErrorKind::InvalidData {
                "not UTF-8 text; save the manifest as UTF-8".to_owned()
            } else {
                e.to_string()
            };
            ManifestError::single(file, None, message)
        })?;
        Self::parse(file, &text)
    }

    /// Parses and checks manifest text; `file` names it in errors. Every problem is reported at once (a TOML
    /// syntax error alone stops the reading).
    pub fn parse(file: &Path, text: &str) -> Result<Self, ManifestError> {
        let syntax = |e: toml::de::Error| {
            let location = e.span().map(|span| line_column(text, span.start));
            ManifestError::single(file, location, e.message().trim_end().to_owned())
        };
        let spans = Spans::of(text).map_err(syntax)?;
        let table: toml::Table = toml::from_str(text).map_err(syntax)?;
        let mut p = Problems {
            file,
            text,
            spans,
            found: Vec::new(),
        };
        for key in table.keys().filter(|k| !sections().contains(&k.as_str())) {
            let hint = did_you_mean(key, sections().iter().copied())
                .map(|k| format!("did you mean `{k}`? "))
                .unwrap_or_default();
            p.at_key(
                key,
                format!(
                    "unknown section `{key}`; {hint}the sections are {}",
                    sections()
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        let mut table = table;
        let mut take = |name: &str| table.remove(name);
        let application: Option<Application> = match take("application") {
            Some(v) => p.read("application", "[application]", v),
            None => {
                p.push(
                    Some(Position::new(1, 1)),
                    "missing section `[application]` (name, title, description, upstream, subdomain)".into(),
                );
                None
            }
        };
        let resources: Option<Resources> = match take("resources") {
            Some(v) => p.read("resources", "[resources]", v),
            None => {
                p.push(
                    Some(Position::new(1, 1)),
                    "missing section `[resources]` (cores, memory_mib, disk_gib)".into(),
                );
                None
            }
        };
        let needs: Option<Needs> =
            take("needs").map_or(Some(Needs::default()), |v| p.read("needs", "[needs]", v));
        let health: Option<Health> =
            take("health").map_or(Some(Health::default()), |v| p.read("health", "[health]", v));
        let admin_action: Option<Option<AdminAction>> = take("admin_action")
            .map_or(Some(None), |v| {
                p.read("admin_action", "[admin_action]", v).map(Some)
            });
        let admin_account: Option<Option<AdminAccount>> = take("admin_account")
            .map_or(Some(None), |v| {
                p.read("admin_account", "[admin_account]", v).map(Some)
            });
        let test: Option<TestPlan> =
            take("test").map_or(Some(TestPlan::default()), |v| p.read("test", "[test]", v));
        // A manifest without `[state]` declares nothing yet (older or frozen manifests): only a declared state is
        // checked against the rest of the manifest.
        let state_value = take("state");
        let state_declared = state_value.is_some();
        let state: Option<crate::state::State> =
            state_value.map_or(Some(Default::default()), |v| p.read("state", "[state]", v));
        let mut ports = Some(Vec::new());
        match take("ports") {
            Some(toml::Value::Array(items)) => {
                for (i, item) in items.into_iter().enumerate() {
                    let port: Option<Port> = p.read(&format!("ports.{i}"), "[[ports]]", item);
                    match (port, &mut ports) {
                        (Some(port), Some(all)) => all.push(port),
                        _ => ports = None,
                    }
                }
            }
            Some(_) => {
                p.at_value(
                    "ports",
                    "`ports` must be a list of `[[ports]]` tables".into(),
                );
                ports = None;
            }
            None => {}
        }
        let mut secrets = BTreeMap::new();
        let mut secrets_ok = true;
        match take("secrets") {
            Some(toml::Value::Table(all)) => {
                for (name, value) in all {
                    let path = format!("secrets.{name}");
                    if crate::nix::Ident::new(&name).is_err() {
                        p.at_key(
                            &path,
                            format!("secret `{name}`: names must be Nix identifiers (letters, digits, `_`, `-`)"),
                        );
                        secrets_ok = false;
                    }
                    match p.read::<SecretSpec>(&path, &format!("secret `{name}`"), value) {
                        Some(secret) => {
                            if secret.optional && secret.source == SecretSource::Generated {
                                p.at_value(
                                    &format!("{path}.optional"),
                                    format!("secret `{name}`: a generated secret always exists; only a `provided` one can be `optional`"),
                                );
                                secrets_ok = false;
                            }
                            if let Err(reason) =
                                access_of(secret.reader.as_ref(), secret.credential.as_deref())
                            {
                                p.at_key(&path, format!("secret `{name}`: {reason}"));
                                secrets_ok = false;
                            }
                            for (field, unit) in [
                                (
                                    "reader.unit",
                                    secret.reader.as_ref().map(|r| r.unit.as_str()),
                                ),
                                ("credential", secret.credential.as_deref()),
                            ] {
                                if let Some(Err(reason)) = unit.map(check_unit_name) {
                                    p.at_value(
                                        &format!("{path}.{field}"),
                                        format!("secret `{name}`: {reason}"),
                                    );
                                    secrets_ok = false;
                                }
                            }
                            secrets.insert(name, secret);
                        }
                        None => secrets_ok = false,
                    }
                }
            }
            Some(_) => {
                p.at_value(
                    "secrets",
                    "`secrets` must be a table of `[secrets.<name>]`".into(),
                );
                secrets_ok = false;
            }
            None => {}
        }
        let mut options = BTreeMap::new();
        let mut options_ok = true;
        match take("options") {
            Some(toml::Value::Table(all)) => {
                for (name, value) in all {
                    let path = format!("options.{name}");
                    let what = format!("option `{name}`");
                    if crate::nix::Ident::new(&name).is_err() {
                        p.at_key(
                            &path,
                            format!("{what}: option names must be Nix identifiers (letters, digits, `_`, `-`)"),
                        );
                        options_ok = false;
                    }
                    if let Some(reason) = generated_option(&name, secrets.keys()) {
                        p.at_key(&path, format!("{what}: {reason}; pick another name"));
                        options_ok = false;
                    }
                    let Some(raw) = p.read::<RawOption>(&path, &what, value) else {
                        options_ok = false;
                        continue;
                    };
                    match raw.check() {
                        Ok(option) => {
                            options.insert(name, option);
                        }
                        Err(messages) => {
                            options_ok = false;
                            for (field, message) in messages {
                                let at = format!("{path}.{field}");
                                p.at_value(&at, format!("{what}: {message}"));
                            }
                        }
                    }
                }
            }
            Some(_) => {
                p.at_value(
                    "options",
                    "`options` must be a table of `[options.<name>]`".into(),
                );
                options_ok = false;
            }
            None => {}
        }
        if let Some(app) = &application {
            if let Err(reason) = check_application_name(&app.name) {
                p.at_value(
                    "application.name",
                    format!("[application]: `name`: {reason}"),
                );
            }
            if crate::nix::AttrPath::dotted(&app.upstream).is_err() {
                p.at_value(
                    "application.upstream",
                    format!(
                        "[application]: `upstream`: `{}` must be a dotted option path such as `services.{}`",
                        app.upstream, app.name
                    ),
                );
            }
        }
        if let Some(ProviderSecretUse { reader, credential }) =
            needs.as_ref().and_then(|n| n.smtp_password.as_ref())
        {
            let path = "needs.smtp_password";
            if let Err(reason) = access_of(reader.as_ref(), credential.as_deref()) {
                p.at_key(path, format!("[needs.smtp_password]: {reason}"));
            }
            for (field, unit) in [
                ("reader.unit", reader.as_ref().map(|r| r.unit.as_str())),
                ("credential", credential.as_deref()),
            ] {
                if let Some(Err(reason)) = unit.map(check_unit_name) {
                    p.at_value(
                        &format!("{path}.{field}"),
                        format!("[needs.smtp_password]: {reason}"),
                    );
                }
            }
            if !needs.as_ref().is_some_and(|n| n.smtp) {
                p.at_key(path, "[needs.smtp_password]: only an application with `smtp = true` reads the SMTP password".into());
            }
        }
        if let (Some(Some(account)), true) = (&admin_account, secrets_ok) {
            match secrets.get(&account.password_secret) {
                Some(secret) if secret.source == SecretSource::Provided && secret.optional => {}
                Some(_) => p.at_value(
                    "admin_account.password_secret",
                    format!(
                        "[admin_account]: `password_secret`: the secret `{}` must be `source = \"provided\"` and `optional = true` (a specification without it makes no account)",
                        account.password_secret
                    ),
                ),
                None => p.at_value(
                    "admin_account.password_secret",
                    format!(
                        "[admin_account]: `password_secret`: `{}` is no secret of this manifest; declare it under `[secrets.{}]`",
                        account.password_secret, account.password_secret
                    ),
                ),
            }
            for (i, unit) in account.after.iter().enumerate() {
                if let Err(reason) = check_unit_name(unit) {
                    p.at_value(
                        &format!("admin_account.after.{i}"),
                        format!("[admin_account]: `after`: {reason}"),
                    );
                }
            }
            if account.after.is_empty() {
                p.at_key(
                    "admin_account",
                    "[admin_account]: `after` must name the units that serve the application (the account is made once they are up)".into(),
                );
            }
            for (i, package) in account.packages.iter().enumerate() {
                if crate::nix::Ident::new(package).is_err() {
                    p.at_value(
                        &format!("admin_account.packages.{i}"),
                        format!("[admin_account]: `packages`: `{package}` is not an attribute name of nixpkgs (letters, digits, `_`, `-`)"),
                    );
                }
            }
            if account.script.trim().is_empty() {
                p.at_value(
                    "admin_account.script",
                    "[admin_account]: `script` is empty; give the commands that create the account"
                        .into(),
                );
            }
        }
        if let (Some(state), Some(needs), true, true) = (&state, &needs, secrets_ok, state_declared)
        {
            let names: Vec<&str> = secrets.keys().map(String::as_str).collect();
            for (path, message) in state.problems(&names, &needs.s3_buckets) {
                p.at_value(&format!("state.{path}"), format!("[state]: {message}"));
            }
        }
        check_s3_needs(needs.as_ref(), &mut p);
        if let Some(health) = &health {
            for (i, check) in health.http.iter().enumerate() {
                if !check.path.starts_with('/') {
                    p.at_value(
                        &format!("health.http.{i}.path"),
                        format!(
                            "[[health.http]]: `path`: `{}` must start with `/`",
                            check.path
                        ),
                    );
                }
            }
        }
        if let (Some(test), true) = (&test, options_ok) {
            for (path, message) in test_plan::check(test, &options, check_unit_name) {
                p.at_value(&path, message);
            }
        }
        if let (Some(test), Some(needs)) = (&test, &needs) {
            for (i, step) in test.object_storage.iter().enumerate() {
                if !needs.s3_buckets.contains(&step.kind) {
                    p.at_value(
                        &format!("test.object_storage.{i}.kind"),
                        format!(
                            "[[test.object_storage]]: `kind`: `{}` is none of this manifest's bucket kinds ({}); name one of `needs.s3_buckets`",
                            step.kind,
                            if needs.s3_buckets.is_empty() {
                                "it has none".to_owned()
                            } else {
                                needs.s3_buckets.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                            }
                        ),
                    );
                }
            }
        }
        match (
            application,
            resources,
            needs,
            health,
            (admin_action, admin_account),
            ports,
            test,
            state,
            p.found.is_empty() && secrets_ok && options_ok,
        ) {
            (
                Some(application),
                Some(resources),
                Some(needs),
                Some(health),
                (Some(admin_action), Some(admin_account)),
                Some(ports),
                Some(test),
                Some(state),
                true,
            ) => Ok(Self {
                application,
                options,
                needs,
                secrets,
                resources,
                ports,
                health,
                admin_action,
                admin_account,
                test,
                state,
            }),
            _ => {
                let mut problems = p.found;
                problems.sort_by_key(|problem| problem.location);
                Err(ManifestError { problems })
            }
        }
    }

    /// Loads every `templates/*/manifest.toml`, sorted by application name. Every folder not starting with `_`
    /// is an application: its name must follow `check_application_name`, it must hold a manifest, and that
    /// manifest must carry the folder's name. Every problem of every manifest is reported at once.
    pub fn load_all(templates: &Path) -> Result<Vec<Self>, ManifestError> {
        let read_dir = std::fs::read_dir(templates)
            .map_err(|e| ManifestError::single(templates, None, e.to_string()))?;
        let mut entries: Vec<_> = read_dir.flatten().map(|e| e.path()).collect();
        entries.sort();
        let mut manifests = Vec::new();
        let mut problems = Vec::new();
        for dir in entries.iter().filter(|p| p.is_dir()) {
            let Some(folder) = dir.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if folder.starts_with('_') || folder.starts_with('.') {
                continue;
            }
            if let Err(reason) = check_application_name(folder) {
                problems.push(ManifestProblem {
                    file: dir.clone(),
                    location: None,
                    message: format!("the folder cannot name an application: {reason}"),
                });
                continue;
            }
            let file = dir.join("manifest.toml");
            if !file.is_file() {
                problems.push(ManifestProblem {
                    file,
                    location: None,
                    message: format!(
                        "missing: every application folder holds a manifest.toml (start one with `fedigen template new {folder}`), and folders that are not applications start with `_`"
                    ),
                });
                continue;
            }
            match Self::load(&file) {
                Ok(manifest) if manifest.application.name != folder => {
                    problems.push(ManifestProblem {
                        file,
                        location: None,
                        message: format!(
                            "[application]: `name` is `{}`, but the folder is `{folder}`: the folder must be named after the application",
                            manifest.application.name
                        ),
                    });
                }
                Ok(manifest) => manifests.push(manifest),
                Err(e) => problems.extend(e.problems),
            }
        }
        if !problems.is_empty() {
            return Err(ManifestError { problems });
        }
        manifests.sort_by(|a, b| a.application.name.cmp(&b.application.name));
        Ok(manifests)
    }

    /// [`Manifest::load_all`], refusing manifests that are not finished: a text (title, description, …) that
    /// still says `TODO` is not published (`fedigen schema`, `fedigen generate`).
    pub fn load_published(templates: &Path) -> Result<Vec<Self>, ManifestError> {
        let manifests = Self::load_all(templates)?;
        let mut problems = Vec::new();
        for manifest in &manifests {
            let file = templates
                .join(&manifest.application.name)
                .join("manifest.toml");
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            problems.extend(
                todo_markers(&file, &text)
                    .into_iter()
                    .filter(|(_, in_comment)| !in_comment)
                    .map(|(mut problem, _)| {
                        problem.message = format!(
                            "{}; a manifest with a TODO is a draft and is not published: finish it (`fedigen template check {}` lists every TODO)",
                            problem.message, manifest.application.name
                        );
                        problem
                    }),
            );
        }
        if problems.is_empty() {
            Ok(manifests)
        } else {
            Err(ManifestError { problems })
        }
    }
}

/// The marker of unfinished work in a template or manifest.
pub const TODO: &str = "TODO";

/// Every `TODO` in a manifest or template text: the problem (at its line and column, naming the key of its line
/// when there is one) and whether it is in a `#` comment (TOML and Nix) rather than in a value.
pub fn todo_markers(file: &Path, text: &str) -> Vec<(ManifestProblem, bool)> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        for (at, _) in line.match_indices(TODO) {
            let before = &line[..at];
            let in_comment = comment_start(before).is_some();
            let key = before
                .split_once('=')
                .map(|(k, _)| k.trim())
                .filter(|k| !k.is_empty() && !k.contains(['"', '#', '{']));
            let message = match key {
                Some(key) if !in_comment => format!("`{key}` still says TODO"),
                _ => "a TODO is left".to_owned(),
            };
            found.push((
                ManifestProblem {
                    file: file.to_owned(),
                    location: Some(Position::new(i + 1, before.chars().count() + 1)),
                    message,
                },
                in_comment,
            ));
        }
    }
    found
}

/// Where a `#` comment starts in `line`, outside `"…"` and `'…'` strings (TOML; good enough for Nix lines too).
fn comment_start(line: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' => return Some(i),
            None => {}
        }
    }
    None
}

/// Why a manifest option cannot have this name: the generated module declares it itself (`enable`,
/// `subdomain` and each secret's `<secret>File`, see [`crate::template::option_declarations`]).
fn generated_option<'a>(
    name: &str,
    mut secrets: impl Iterator<Item = &'a String>,
) -> Option<String> {
    if FIXED_OPTIONS.contains(&name) {
        return Some(format!(
            "`{name}` is an option every generated module declares itself"
        ));
    }
    secrets
        .find(|s| format!("{s}File") == name)
        .map(|s| format!("`{name}` is the option the generated module declares for secret `{s}`"))
}

/// The longest application name: machine names are `<operator>-<application>` host names (63 characters at
/// most), and operator names take up to 32.
pub(crate) const MAX_APPLICATION_NAME: usize = 30;

/// Whether `name` can name an application, and if not why and what to pick instead.
///
/// The rule: lower case `[a-z]`, then `[a-z0-9-]`, not ending in `-`, at most [`MAX_APPLICATION_NAME`]
/// characters — because the name becomes a folder, a file (`modules/<app>.nix`, `vm-tests/generated/<app>.nix`),
/// the attribute `fediversity.<app>` (read in templates as `config.fediversity.<app>`, so not a Nix keyword), part
/// of machine and host names (`<operator>-<app>`), and of S3 bucket names, which are lower case. Reserved: the
/// names of what `fedigen generate` writes beside the applications' files ([`reserved_application_names`]).
/// Checks `[needs]`'s object-storage part: each bucket kind is snake_case (`[a-z][a-z0-9_]*`, at most 24
/// characters: it becomes part of a bucket name, `-` separated, and of `objectStorage.buckets.<kind>`) and given
/// once, and `s3_key` says who reads the key file exactly when there are buckets (like `smtp_password`).
fn check_s3_needs(needs: Option<&Needs>, p: &mut Problems<'_>) {
    let Some(needs) = needs else { return };
    let mut seen = std::collections::BTreeSet::new();
    for (i, kind) in needs.s3_buckets.iter().enumerate() {
        let snake = kind.len() <= 24
            && kind.starts_with(|c: char| c.is_ascii_lowercase())
            && kind
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !snake {
            p.at_value(
                &format!("needs.s3_buckets.{i}"),
                format!("[needs]: `s3_buckets`: `{kind}` is not a bucket kind: write it in snake_case (`[a-z][a-z0-9_]*`, at most 24 characters), e.g. `media`; each operator's bucket name is derived from it"),
            );
        }
        if !seen.insert(kind) {
            p.at_value(
                &format!("needs.s3_buckets.{i}"),
                format!(
                    "[needs]: `s3_buckets`: the kind `{kind}` is listed twice; list each kind once"
                ),
            );
        }
    }
    check_s3_private(needs, p);
    match (&needs.s3_key, needs.s3_buckets.is_empty()) {
        (Some(ProviderSecretUse { reader, credential }), false) => {
            if let Err(reason) = access_of(reader.as_ref(), credential.as_deref()) {
                p.at_key("needs.s3_key", format!("[needs.s3_key]: {reason}"));
            }
            for (field, unit) in [
                ("reader.unit", reader.as_ref().map(|r| r.unit.as_str())),
                ("credential", credential.as_deref()),
            ] {
                if let Some(Err(reason)) = unit.map(check_unit_name) {
                    p.at_value(
                        &format!("needs.s3_key.{field}"),
                        format!("[needs.s3_key]: {reason}"),
                    );
                }
            }
        }
        (Some(_), true) => p.at_key(
            "needs.s3_key",
            "[needs.s3_key]: only an application with `s3_buckets` reads an S3 key; list its bucket kinds, or remove `s3_key`".into(),
        ),
        (None, false) => p.at_key(
            "needs.s3_buckets",
            "[needs]: an application with `s3_buckets` needs `s3_key = { credential = \"<unit>.service\" }` (systemd reads the key file as root, for `EnvironmentFile=`) or `s3_key = { reader = { user, group, unit } }` (the service user reads it)".into(),
        ),
        (None, true) => {}
    }
}

/// Checks `needs.s3_private`: each entry is one of `s3_buckets`, listed once, and only meaningful while
/// `s3_website` is true (otherwise every bucket is private already). A kind misspelt here would silently leave
/// a private bucket public, hence an error rather than a warning.
fn check_s3_private(needs: &Needs, p: &mut Problems<'_>) {
    let mut seen = std::collections::BTreeSet::new();
    for (i, kind) in needs.s3_private.iter().enumerate() {
        let at = format!("needs.s3_private.{i}");
        if !needs.s3_buckets.contains(kind) {
            let kinds = needs
                .s3_buckets
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let kinds = if kinds.is_empty() {
                "none".to_owned()
            } else {
                kinds
            };
            p.at_value(
                &at,
                format!("[needs]: `s3_private`: `{kind}` is not one of `s3_buckets` ({kinds}); list only bucket kinds the application has"),
            );
        }
        if !seen.insert(kind) {
            p.at_value(
                &at,
                format!(
                    "[needs]: `s3_private`: the kind `{kind}` is listed twice; list each kind once"
                ),
            );
        }
    }
    if !needs.s3_website && !needs.s3_private.is_empty() {
        p.at_key(
            "needs.s3_private",
            "[needs]: `s3_private` names kinds to keep off the web endpoint, but `s3_website = false` keeps every bucket off it already; remove `s3_private`".into(),
        );
    }
}

impl Needs {
    /// Whether the bucket of `kind` is public through Garage's web endpoint: `s3_website`, unless the kind is one
    /// of `s3_private`. What the storage description's `website` flag and the templates' public URLs follow.
    pub fn website(&self, kind: &str) -> bool {
        self.s3_website && !self.s3_private.iter().any(|k| k == kind)
    }

    /// Who reads the S3 key file, for an application with buckets (checked when the manifest is loaded).
    pub fn s3_key_access(&self) -> Option<SecretAccess<'_>> {
        self.s3_key.as_ref().map(ProviderSecretUse::access)
    }
}

/// Checks a systemd unit name a manifest gives for a secret's reader: a name with a unit type suffix, made of
/// the characters systemd allows (so it can stand in `before=`/`requiredBy=` and in a shell word unquoted).
fn check_unit_name(unit: &str) -> Result<(), String> {
    let types = [
        ".service", ".socket", ".target", ".timer", ".mount", ".path",
    ];
    let valid_chars = unit
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ':'));
    match types.iter().find(|t| unit.ends_with(*t)) {
        Some(t) if unit.len() > t.len() && valid_chars => Ok(()),
        _ => Err(format!(
            "`{unit}` is not a systemd unit name such as `peertube.service` (letters, digits, `-_.@:` and a type suffix)"
        )),
    }
}

pub(crate) fn check_application_name(name: &str) -> Result<(), String> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    let suggestion = {
        let mut s: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        while s.contains("--") {
            s = s.replace("--", "-");
        }
        s.trim_start_matches(|c: char| c == '-' || c.is_ascii_digit())
            .trim_end_matches('-')
            .to_owned()
    };
    if !valid {
        let hint = if suggestion.is_empty() || suggestion == name {
            String::new()
        } else {
            format!(", e.g. `{suggestion}`")
        };
        return Err(format!(
            "`{name}` is not an application name: use lower-case letters, digits and `-`, starting with a letter and not ending with `-`{hint} (it becomes a file name, the attribute `fediversity.<app>`, part of host names and of S3 bucket names)"
        ));
    }
    if name.chars().count() > MAX_APPLICATION_NAME {
        return Err(format!(
            "`{name}` is longer than {MAX_APPLICATION_NAME} characters: machine names are `<operator>-<application>` host names of at most 63; pick a shorter name"
        ));
    }
    if let Some((_, why)) = reserved_application_names()
        .into_iter()
        .find(|(reserved, _)| match reserved.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => reserved == name,
        })
    {
        return Err(format!(
            "`{name}` is reserved: {why}; pick another name, e.g. `{name}-app`"
        ));
    }
    Ok(())
}

/// The options every generated module declares itself, before the manifest's own (see
/// [`crate::template::option_declarations`]): a manifest option cannot take these names.
pub(crate) const FIXED_OPTIONS: [&str; 2] = ["enable", "subdomain"];

/// The names an application cannot take, each with the reason, derived from what `fedigen generate` writes
/// beside the applications' own files ([`crate::shared`]: the output's names and the shared module's options) and from
/// Nix's keywords. A name ending in `*` is a prefix.
pub(crate) fn reserved_application_names() -> Vec<(String, String)> {
    use crate::shared::{
        ALL_MODULES, DEPLOYMENT_TEST_PREFIX, FEDERATION_TEST_PREFIX, MIGRATION_TEST_PREFIX,
        MODULES, SHARED_MODULE, VM_TESTS, VM_TESTS_LIB,
    };
    let mut reserved = vec![
        (
            SHARED_MODULE.to_owned(),
            format!(
                "`{MODULES}/{SHARED_MODULE}.nix` is the shared module `fedigen generate` writes"
            ),
        ),
        (
            ALL_MODULES.to_owned(),
            format!("`{MODULES}/{ALL_MODULES}.nix` is the module importing all others"),
        ),
        (
            VM_TESTS_LIB.to_owned(),
            format!("`{VM_TESTS}/{VM_TESTS_LIB}/` holds what the VM tests share"),
        ),
        (
            format!("{DEPLOYMENT_TEST_PREFIX}*"),
            format!(
                "`{VM_TESTS}/{DEPLOYMENT_TEST_PREFIX}<operator>.nix` are the deployments' VM tests, so no application name starts with `{DEPLOYMENT_TEST_PREFIX}`"
            ),
        ),
        (
            format!("{FEDERATION_TEST_PREFIX}*"),
            format!(
                "`{VM_TESTS}/{FEDERATION_TEST_PREFIX}<application>.nix` are the federation VM tests, so no application name starts with `{FEDERATION_TEST_PREFIX}`"
            ),
        ),
        (
            format!("{MIGRATION_TEST_PREFIX}*"),
            format!(
                "`{VM_TESTS}/{MIGRATION_TEST_PREFIX}<operator>.nix` are the migrations' VM tests, so no application name starts with `{MIGRATION_TEST_PREFIX}`"
            ),
        ),
    ];
    for option in shared_option_names() {
        reserved.push((
            option.clone(),
            format!("`fediversity.{option}` is an option of the shared module `{MODULES}/{SHARED_MODULE}.nix`"),
        ));
    }
    for keyword in crate::nix::lexical::KEYWORDS {
        reserved.push((
            keyword.to_owned(),
            format!(
                "`{keyword}` is a Nix keyword, so `config.fediversity.{keyword}` would not parse"
            ),
        ));
    }
    reserved
}

/// The first names of the options `modules/fediversity.nix` declares under `fediversity.` (`domain`, `acme`, …),
/// read from the module fedigen generates.
fn shared_option_names() -> Vec<String> {
    use crate::nix::{Entry, Expr};
    let Ok(Expr::Lambda(_, body)) = crate::shared::shared_module() else {
        return Vec::new();
    };
    let mut names = Vec::new();
    let bindings = |e: &Expr| match e {
        Expr::Attrs(set) => set
            .entries
            .iter()
            .filter_map(|entry| match entry {
                Entry::Binding { path, value, .. } => Some((
                    path.names()
                        .iter()
                        .map(|n| n.as_str().to_owned())
                        .collect::<Vec<_>>(),
                    value.clone(),
                )),
                Entry::Inherit { .. } => None,
            })
            .collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    for (path, value) in bindings(&body) {
        if path == ["options", "fediversity"] {
            for (inner, _) in bindings(&value) {
                if let Some(first) = inner.first()
                    && !names.contains(first)
                {
                    names.push(first.clone());
                }
            }
        }
    }
    names
}

/// The option types a manifest may name.
pub(crate) const TYPE_NAMES: [&str; 9] = [
    "bool", "int", "float", "str", "enum", "port", "email", "list", "attrs",
];

/// Names people write for a type, by the manifest's name for it.
const TYPE_ALIASES: [(&str, &str); 10] = [
    ("integer", "int"),
    ("boolean", "bool"),
    ("string", "str"),
    ("number", "float"),
    ("double", "float"),
    ("array", "list"),
    ("listOf", "list"),
    ("attrsOf", "attrs"),
    ("object", "attrs"),
    ("map", "attrs"),
];

/// Why a type name is not one of [`TYPE_NAMES`], with the one probably meant.
fn unknown_type(name: &str) -> String {
    let meant = TYPE_ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(name))
        .map(|(_, t)| *t)
        .or_else(|| did_you_mean(&name.to_ascii_lowercase(), TYPE_NAMES));
    format!(
        "unknown type `{name}`{}; the types are {}",
        meant
            .map(|t| format!(" (did you mean `{t}`?)"))
            .unwrap_or_default(),
        TYPE_NAMES.join(", ")
    )
}

impl RawOption {
    /// The checked option, or every problem with the field it is about (`type`, `min`, `default`, …).
    fn check(self) -> Result<OptionSpec, Vec<(&'static str, String)>> {
        let ty = OptionType::from_parts(
            &self.ty,
            self.of.as_deref(),
            self.values,
            (self.min, self.max),
            self.pattern,
            self.max_length,
        )?;
        let mut problems = Vec::new();
        let mut to_json = |v: toml::Value, what: &'static str| -> Option<Value> {
            let json = match serde_json::to_value(v) {
                Ok(json) => json,
                Err(e) => {
                    problems.push((what, format!("`{what}`: {e}")));
                    return None;
                }
            };
            match ty.check(&json) {
                Ok(()) => Some(json),
                Err(e) => {
                    problems.push((what, format!("`{what}` {json} does not fit the type: {e}")));
                    None
                }
            }
        };
        let default = self.default.and_then(|v| to_json(v, "default"));
        let example = self.example.and_then(|v| to_json(v, "example"));
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(OptionSpec {
            default,
            example,
            description: self.description,
            ty,
        })
    }
}

impl OptionType {
    fn from_parts(
        name: &str,
        of: Option<&str>,
        values: Option<Vec<String>>,
        (min, max): (Option<i64>, Option<i64>),
        pattern: Option<String>,
        max_length: Option<usize>,
    ) -> Result<Self, Vec<(&'static str, String)>> {
        if !TYPE_NAMES.contains(&name) {
            return Err(vec![("type", unknown_type(name))]);
        }
        let mut problems = Vec::new();
        let mut unused = |what: &'static str, present: bool, applies: &str| {
            if present {
                problems.push((
                    what,
                    format!("`{what}` does not apply to type `{name}` (only to {applies})"),
                ));
            }
        };
        if name != "int" {
            unused("min", min.is_some(), "`int`");
            unused("max", max.is_some(), "`int`");
        }
        if name != "str" {
            unused("pattern", pattern.is_some(), "`str`");
            unused("max_length", max_length.is_some(), "`str`");
        }
        if name != "enum" {
            unused("values", values.is_some(), "`enum`");
        }
        if name != "list" && name != "attrs" {
            unused("of", of.is_some(), "`list` and `attrs`");
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let one = |field: &'static str, message: String| Err(vec![(field, message)]);
        Ok(match name {
            "bool" => Self::Bool,
            "int" => {
                if let (Some(a), Some(b)) = (min, max)
                    && a > b
                {
                    return one("min", format!("`min` {a} is larger than `max` {b}"));
                }
                Self::Int { min, max }
            }
            "float" => Self::Float,
            "str" => {
                if let Some(p) = &pattern
                    && let Err(e) = regex_lite::Regex::new(p)
                {
                    return one("pattern", format!("`pattern`: {e}"));
                }
                Self::Str {
                    pattern,
                    max_length,
                }
            }
            "enum" => match values {
                Some(values) if !values.is_empty() => Self::Enum(values),
                _ => return one("type", "type `enum` needs `values = [ … ]`".into()),
            },
            "port" => Self::Port,
            "email" => Self::Email,
            _ => {
                let Some(of) = of else {
                    return one("type", format!("type `{name}` needs `of = \"<type>\"`"));
                };
                if !TYPE_NAMES.contains(&of) {
                    return one("of", format!("`of`: {}", unknown_type(of)));
                }
                let inner =
                    Self::from_parts(of, None, None, (None, None), None, None).map_err(|e| {
                        e.into_iter()
                            .map(|(_, m)| ("of", format!("`of`: {m}")))
                            .collect::<Vec<_>>()
                    })?;
                if matches!(inner, Self::List(_) | Self::Attrs(_)) {
                    return one(
                        "of",
                        "`of`: lists and attribute sets hold scalar values".into(),
                    );
                }
                if name == "list" {
                    Self::List(Box::new(inner))
                } else {
                    Self::Attrs(Box::new(inner))
                }
            }
        })
    }

    /// Checks a value (as JSON) against the type; the error says what was expected.
    pub fn check(&self, value: &Value) -> Result<(), String> {
        match (self, value) {
            (Self::Bool, Value::Bool(_)) | (Self::Float, Value::Number(_)) => Ok(()),
            (Self::Int { min, max }, Value::Number(n)) => {
                let i = n.as_i64().ok_or("expected an integer")?;
                if min.is_some_and(|m| i < m) || max.is_some_and(|m| i > m) {
                    Err(format!("expected an integer {}", self.range_text()))
                } else {
                    Ok(())
                }
            }
            (Self::Port, Value::Number(n)) => match n.as_u64() {
                Some(1..=65535) => Ok(()),
                _ => Err("expected a port number from 1 to 65535".into()),
            },
            (
                Self::Str {
                    pattern,
                    max_length,
                },
                Value::String(s),
            ) => {
                if max_length.is_some_and(|m| s.chars().count() > m) {
                    return Err(format!(
                        "expected at most {} characters",
                        max_length.unwrap_or(0)
                    ));
                }
                if let Some(p) = pattern {
                    let re =
                        regex_lite::Regex::new(&format!("^(?:{p})$")).map_err(|e| e.to_string())?;
                    if !re.is_match(s) {
                        return Err(format!("expected a string matching `{p}`"));
                    }
                }
                Ok(())
            }
            (Self::Enum(values), Value::String(s)) if values.contains(s) => Ok(()),
            (Self::Enum(values), _) => Err(format!("expected one of {}", values.join(", "))),
            (Self::Email, Value::String(s)) => {
                if is_email(s) {
                    Ok(())
                } else {
                    Err("expected an e-mail address such as `admin@example.org`".into())
                }
            }
            (Self::List(inner), Value::Array(items)) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, item)| inner.check(item).map_err(|e| format!("item {i}: {e}"))),
            (Self::Attrs(inner), Value::Object(map)) => map
                .iter()
                .try_for_each(|(k, v)| inner.check(v).map_err(|e| format!("`{k}`: {e}"))),
            _ => Err(format!("expected {self}")),
        }
    }

    fn range_text(&self) -> String {
        match self {
            Self::Int {
                min: Some(a),
                max: Some(b),
            } => format!("from {a} to {b}"),
            Self::Int {
                min: Some(a),
                max: None,
            } => format!("of at least {a}"),
            Self::Int {
                min: None,
                max: Some(b),
            } => format!("of at most {b}"),
            _ => String::new(),
        }
    }

    /// The JSON Schema (draft 2020-12) of values of this type, for the panel and editors.
    pub fn json_schema(&self) -> Value {
        use serde_json::json;
        match self {
            Self::Bool => json!({"type": "boolean"}),
            Self::Int { min, max } => {
                let mut schema = json!({"type": "integer"});
                if let Some(min) = min {
                    schema["minimum"] = json!(min);
                }
                if let Some(max) = max {
                    schema["maximum"] = json!(max);
                }
                schema
            }
            Self::Float => json!({"type": "number"}),
            Self::Str {
                pattern,
                max_length,
            } => {
                let mut schema = json!({"type": "string"});
                if let Some(p) = pattern {
                    schema["pattern"] = json!(format!("^(?:{p})$"));
                }
                if let Some(m) = max_length {
                    schema["maxLength"] = json!(m);
                }
                schema
            }
            Self::Enum(values) => json!({"enum": values}),
            Self::Port => json!({"type": "integer", "minimum": 1, "maximum": 65535}),
            Self::Email => json!({"type": "string", "format": "email", "pattern": EMAIL_PATTERN}),
            Self::List(inner) => json!({"type": "array", "items": inner.json_schema()}),
            Self::Attrs(inner) => {
                json!({"type": "object", "additionalProperties": inner.json_schema()})
            }
        }
    }

    /// The NixOS option type (`lib.types.…`) the generated module declares.
    pub fn nix_type(&self) -> Result<Expr, LexicalError> {
        let types = |path: &str| Expr::reference(&format!("lib.types.{path}"));
        Ok(match self {
            Self::Bool => types("bool")?,
            Self::Int {
                min: Some(a),
                max: Some(b),
            } => Expr::apply(types("ints.between")?, vec![Expr::Int(*a), Expr::Int(*b)]),
            Self::Int {
                min: Some(0),
                max: None,
            } => types("ints.unsigned")?,
            Self::Int {
                min: Some(1),
                max: None,
            } => types("ints.positive")?,
            Self::Int { .. } => types("int")?,
            Self::Float => types("float")?,
            Self::Str {
                pattern: Some(p), ..
            } => Expr::apply(types("strMatching")?, vec![Expr::string(p)?]),
            Self::Str { .. } | Self::Email => types("str")?,
            Self::Enum(values) => Expr::apply(
                types("enum")?,
                vec![Expr::List(
                    values
                        .iter()
                        .map(|v| Expr::string(v))
                        .collect::<Result<_, _>>()?,
                )],
            ),
            Self::Port => types("port")?,
            Self::List(inner) => Expr::apply(types("listOf")?, vec![inner.nix_type()?]),
            Self::Attrs(inner) => Expr::apply(types("attrsOf")?, vec![inner.nix_type()?]),
        })
    }
}

/// Strings that have broken code generators: interpolation, both quote styles, escapes, lines, Unicode.
const TRICKY_STRINGS: [&str; 8] = [
    "",
    "${builtins.abort \"injected\"}",
    "''${x} ''\n'",
    "\"; x = 1; \"",
    "back\\slash $ {",
    "multi\nline\n  text\n",
    "é ✓ 🦀",
    "x",
];

impl OptionType {
    /// Edge values of the type, for rendering templates with more than their defaults (`fedigen template
    /// check`): bounds, every enum value, and adversarial strings that fit the type. Deterministic.
    pub fn samples(&self) -> Vec<Value> {
        let candidates: Vec<Value> = match self {
            Self::Bool => vec![Value::Bool(false), Value::Bool(true)],
            Self::Int { min, max } => {
                let lo = min.unwrap_or(i64::MIN);
                let hi = max.unwrap_or(i64::MAX);
                vec![lo.into(), hi.into(), (lo / 2 + hi / 2).into()]
            }
            Self::Float => vec![0.0.into(), (-1.5).into(), 1e300.into(), 5e-324.into()],
            Self::Port => vec![1.into(), 65535.into()],
            Self::Enum(values) => values.iter().map(|v| Value::from(v.as_str())).collect(),
            Self::Email => vec![
                "admin@uu.example".into(),
                "o'brien+fedi@sub.domain.example".into(),
            ],
            Self::Str { .. } => TRICKY_STRINGS.iter().map(|s| Value::from(*s)).collect(),
            Self::List(inner) => {
                let mut values = vec![Value::Array(vec![])];
                values.push(Value::Array(inner.samples()));
                values
            }
            Self::Attrs(inner) => {
                let mut values = vec![Value::Object(serde_json::Map::new())];
                let map = TRICKY_STRINGS
                    .iter()
                    .zip(inner.samples())
                    .map(|(k, v)| ((*k).to_owned(), v))
                    .collect();
                values.push(Value::Object(map));
                values
            }
        };
        candidates
            .into_iter()
            .filter(|v| self.check(v).is_ok())
            .collect()
    }
}

impl fmt::Display for OptionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool => f.write_str("a boolean"),
            Self::Int { .. } => write!(f, "an integer {}", self.range_text()),
            Self::Float => f.write_str("a number"),
            Self::Str { .. } => f.write_str("a string"),
            Self::Enum(values) => write!(f, "one of {}", values.join(", ")),
            Self::Port => f.write_str("a port number"),
            Self::Email => f.write_str("an e-mail address"),
            Self::List(inner) => write!(f, "a list of {inner}"),
            Self::Attrs(inner) => write!(f, "an attribute set of {inner}"),
        }
    }
}

/// The e-mail rule used by validation and by the JSON Schema, so both agree: a local part, `@`, and a domain
/// with at least one dot.
pub(crate) const EMAIL_PATTERN: &str = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$";

/// Whether `s` is an e-mail address by [`EMAIL_PATTERN`].
pub(crate) fn is_email(s: &str) -> bool {
    static RE: std::sync::OnceLock<regex_lite::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| regex_lite::Regex::new(EMAIL_PATTERN).expect("valid pattern"))
        .is_match(s)
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> Position {
    Position::of_offset(text, offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nix::print::print_expr;

    const MINIMAL: &str = r#"
[application]
name = "demo"
title = "Demo"
description = "A demonstration."
upstream = "services.demo"
subdomain = "demo"

[resources]
cores = 1
memory_mib = 512
disk_gib = 1
"#;

    fn parse(extra: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(
            Path::new("templates/demo/manifest.toml"),
            &format!("{MINIMAL}{extra}"),
        )
    }

    #[test]
    fn options_are_typed_and_defaults_checked() {
        let m = parse(
            r#"
[options.maxChars]
type = "int"
min = 1
max = 10000
default = 500
description = "Longest post."

[options.mode]
type = "enum"
values = ["open", "closed"]
default = "open"
description = "Who may register."
"#,
        )
        .unwrap();
        assert_eq!(
            m.options["maxChars"].ty,
            OptionType::Int {
                min: Some(1),
                max: Some(10000)
            }
        );
        assert_eq!(
            print_expr(&m.options["maxChars"].ty.nix_type().unwrap()),
            "lib.types.ints.between 1 10000"
        );
        assert_eq!(
            print_expr(&m.options["mode"].ty.nix_type().unwrap()),
            "lib.types.enum [\n  \"open\"\n  \"closed\"\n]"
        );
        let bad = parse("[options.x]\ntype = \"int\"\nmax = 3\ndefault = 4\ndescription = \"d\"\n")
            .unwrap_err();
        let [bad] = bad.problems.as_slice() else {
            panic!("one problem: {bad}")
        };
        assert_eq!(
            bad.location,
            Some(Position::new(16, 11)),
            "the default's value: {bad}"
        );
        assert!(
            bad.message.contains(
                "option `x`: `default` 4 does not fit the type: expected an integer of at most 3"
            ),
            "{bad}"
        );
    }

    #[test]
    fn unknown_keys_are_errors_with_their_position() {
        let err = parse("[needs]\npostgres = true\n").unwrap_err();
        let err = &err.problems[0];
        assert_eq!(err.location, Some(Position::new(14, 1)), "{err}");
        assert!(err.message.contains("unknown field `postgres`"), "{err}");
        assert!(
            err.message.contains("did you mean `postgresql`?"),
            "the message names the closest field: {err}"
        );
    }

    #[test]
    fn types_check_values() {
        let email = OptionType::Email;
        assert!(email.check(&Value::from("admin@uu.example")).is_ok());
        assert!(email.check(&Value::from("admin@localhost")).is_err());
        assert!(email.check(&Value::from("not an address")).is_err());
        let list = OptionType::List(Box::new(OptionType::Port));
        assert!(list.check(&serde_json::json!([80, 443])).is_ok());
        assert_eq!(
            list.check(&serde_json::json!([80, 0])).unwrap_err(),
            "item 1: expected a port number from 1 to 65535"
        );
        let s = OptionType::Str {
            pattern: Some("[a-z]+".into()),
            max_length: Some(5),
        };
        assert!(s.check(&Value::from("abc")).is_ok());
        assert!(
            s.check(&Value::from("abc1")).is_err(),
            "the pattern covers the whole string"
        );
        assert!(s.check(&Value::from("abcdef")).is_err());
    }

    #[test]
    fn every_problem_is_reported_at_once_each_at_its_place() {
        let err = parse(
            r#"
[needs]
postgres = true
redis = "yes"

[options.a]
type = "integer"
min = 1
description = "a"

[options.b]
type = "str"
min = 1
max = 2
description = "b"

[options.c]
type = "bool"
default = 3
description = "c"

[secrets.s]
description = "s"
source = "generated"
optional = true
credential = "s.service"

[helth]
units = []
"#,
        )
        .unwrap_err();
        let shown: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
        let expected = [
            "templates/demo/manifest.toml:15:1: [needs]: unknown field `postgres`; did you mean `postgresql`?",
            "templates/demo/manifest.toml:16:9: [needs]: `redis`: invalid type: string \"yes\", expected a boolean",
            "templates/demo/manifest.toml:19:8: option `a`: unknown type `integer` (did you mean `int`?)",
            "templates/demo/manifest.toml:25:7: option `b`: `min` does not apply to type `str` (only to `int`)",
            "templates/demo/manifest.toml:26:7: option `b`: `max` does not apply to type `str` (only to `int`)",
            "templates/demo/manifest.toml:31:11: option `c`: `default` 3 does not fit the type: expected a boolean",
            "templates/demo/manifest.toml:37:12: secret `s`: a generated secret always exists; only a `provided` one can be `optional`",
            "templates/demo/manifest.toml:40:2: unknown section `helth`; did you mean `health`?",
        ];
        for line in expected {
            assert!(
                shown.iter().any(|s| s.starts_with(line)),
                "missing {line:?} in:\n{}",
                shown.join("\n")
            );
        }
        assert_eq!(shown.len(), expected.len(), "nothing else: {shown:#?}");
        assert!(
            !shown
                .iter()
                .any(|s| s.contains("`min` does not apply to type `integer`")),
            "an unknown type is named as such, not as a misplaced bound"
        );
    }

    #[test]
    fn a_type_error_names_its_field_and_place() {
        let err = parse("[needs]\nredis = \"yes\"\n").unwrap_err();
        let [problem] = err.problems.as_slice() else {
            panic!("{err}")
        };
        assert_eq!(problem.location, Some(Position::new(14, 9)), "{problem}");
        assert!(
            problem
                .message
                .starts_with("[needs]: `redis`: invalid type: string \"yes\", expected a boolean"),
            "{problem}"
        );
    }

    #[test]
    fn application_names_follow_one_rule_and_avoid_what_generate_writes() {
        for good in ["mastodon", "matrix-synapse", "app2", "garage"] {
            assert_eq!(check_application_name(good), Ok(()), "{good}");
        }
        let why = |name: &str| check_application_name(name).unwrap_err();
        assert!(
            why("Foo-Bar").contains("lower-case letters")
                && why("Foo-Bar").contains("e.g. `foo-bar`"),
            "{}",
            why("Foo-Bar")
        );
        assert!(
            why("foo_bar").contains("e.g. `foo-bar`"),
            "{}",
            why("foo_bar")
        );
        assert!(why("foo-").contains("not ending with `-`"));
        assert!(why("9lives").contains("starting with a letter"));
        assert!(
            why("let").contains("`let` is a Nix keyword"),
            "{}",
            why("let")
        );
        assert!(
            why("fediversity").contains("modules/fediversity.nix"),
            "{}",
            why("fediversity")
        );
        assert!(
            why("default").contains("modules/default.nix"),
            "{}",
            why("default")
        );
        assert!(
            why("lib").contains("vm-tests/generated/lib/"),
            "{}",
            why("lib")
        );
        assert!(
            why("deployment-x").contains("deployment-<operator>.nix"),
            "{}",
            why("deployment-x")
        );
        assert!(
            why("federation-x").contains("federation-<application>.nix"),
            "{}",
            why("federation-x")
        );
        assert!(
            why("migrate-x").contains("migrate-<operator>.nix"),
            "{}",
            why("migrate-x")
        );
        for shared in ["domain", "acme", "smtp", "s3"] {
            assert!(
                why(shared).contains(&format!(
                    "`fediversity.{shared}` is an option of the shared module"
                )),
                "{}",
                why(shared)
            );
        }
        assert!(why(&"a".repeat(31)).contains("longer than 30"));
        for name in ["fediversity", "let"] {
            assert!(why(name).contains("pick another name"), "{}", why(name));
        }
        let err = Manifest::parse(
            Path::new("templates/let/manifest.toml"),
            &MINIMAL.replace("name = \"demo\"", "name = \"let\""),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("templates/let/manifest.toml:3:8: [application]: `name`: `let` is reserved: `let` is a Nix keyword"),
            "{err}"
        );
    }

    #[test]
    fn manifest_options_cannot_shadow_generated_ones() {
        let err = parse(
            "[options.enable]\ntype = \"bool\"\ndescription = \"d\"\n\n[options.tokenFile]\ntype = \"str\"\ndescription = \"d\"\n\n[secrets.token]\ndescription = \"t\"\nsource = \"provided\"\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(
                "option `enable`: `enable` is an option every generated module declares itself"
            ),
            "{text}"
        );
        assert!(text.contains("option `tokenFile`: `tokenFile` is the option the generated module declares for secret `token`"), "{text}");
    }

    #[test]
    fn todo_markers_are_found_in_values_and_comments() {
        let text = "# TODO: ports\n[application]\ndescription = \"TODO: one sentence.\"\ntitle = \"x\" # TODO later\n";
        let found = todo_markers(Path::new("m.toml"), text);
        let shown: Vec<(String, bool)> = found.iter().map(|(p, c)| (p.to_string(), *c)).collect();
        assert_eq!(
            shown,
            [
                ("m.toml:1:3: a TODO is left".to_owned(), true),
                (
                    "m.toml:3:16: `description` still says TODO".to_owned(),
                    false
                ),
                ("m.toml:4:15: a TODO is left".to_owned(), true),
            ]
        );
    }

    #[test]
    fn every_secret_says_who_reads_it() {
        // The line of each secret's table, so a provider knows which secret of a long manifest to complete.
        let err = parse(
            "[secrets.a]\ndescription = \"a\"\nsource = \"provided\"\n\n[secrets.b]\ndescription = \"b\"\nsource = \"provided\"\nreader = { user = \"u\", group = \"g\", unit = \"u.service\" }\ncredential = \"u.service\"\n\n[secrets.c]\ndescription = \"c\"\nsource = \"provided\"\ncredential = \"not a unit\"\n",
        )
        .unwrap_err();
        let shown: Vec<String> = err.problems.iter().map(ToString::to_string).collect();
        let line = MINIMAL.lines().count();
        let expected = [
            format!(
                "templates/demo/manifest.toml:{}:10: secret `a`: say who reads the file: `reader = {{",
                line + 1
            ),
            format!(
                "templates/demo/manifest.toml:{}:10: secret `b`: give either `reader` or `credential`, not both",
                line + 5
            ),
            format!(
                "templates/demo/manifest.toml:{}:14: secret `c`: `not a unit` is not a systemd unit name",
                line + 14
            ),
        ];
        for want in &expected {
            assert!(
                shown.iter().any(|s| s.starts_with(want.as_str())),
                "missing {want:?} in:\n{}",
                shown.join("\n")
            );
        }
        assert_eq!(shown.len(), 3, "{}", shown.join("\n"));
    }

    #[test]
    fn a_secret_reader_gives_the_owner_and_a_credential_root() {
        let m = parse(
            "[secrets.a]\ndescription = \"a\"\nsource = \"provided\"\nreader = { user = \"peertube\", group = \"video\", unit = \"peertube.service\" }\n\n[secrets.b]\ndescription = \"b\"\nsource = \"provided\"\ncredential = \"garage.service\"\n",
        )
        .unwrap();
        let a = m.secrets["a"].access();
        assert_eq!(
            (a.owner(), a.group(), a.unit()),
            ("peertube", "video", "peertube.service")
        );
        let b = m.secrets["b"].access();
        assert_eq!(
            (b.owner(), b.group(), b.unit()),
            ("root", "root", "garage.service")
        );
    }

    #[test]
    fn the_smtp_password_reader_is_checked_like_a_secret() {
        let err = parse("[needs]\nsmtp_password = {}\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("[needs.smtp_password]: say who reads the file"),
            "{text}"
        );
        assert!(text.contains("[needs.smtp_password]: only an application with `smtp = true` reads the SMTP password"), "{text}");
        let m = parse("[needs]\nsmtp = true\nsmtp_password = { credential = \"x.service\" }\n")
            .unwrap();
        assert_eq!(m.needs.smtp_password.unwrap().access().unit(), "x.service");
    }

    #[test]
    fn the_shipped_templates_name_a_reader_for_every_secret() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
        for app in [
            "garage",
            "mastodon",
            "matrix-synapse",
            "peertube",
            "pixelfed",
        ] {
            let m = Manifest::load(&root.join(app).join("manifest.toml")).unwrap();
            for secret in m.secrets.values() {
                // Loading succeeded, so access() cannot panic; the unit is a service of the application.
                assert!(secret.access().unit().ends_with(".service"), "{app}");
            }
        }
    }

    #[test]
    fn private_bucket_kinds_are_checked_and_located() {
        let base = MINIMAL.lines().count();
        // A kind that is not a bucket, one listed twice, and the list beside `s3_website = false`.
        let err = parse(
            "[needs]\ns3_buckets = [\"media\", \"exports\"]\ns3_key = { credential = \"x.service\" }\ns3_private = [\"export\", \"exports\", \"exports\"]\n",
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "`s3_private`: `export` is not one of `s3_buckets` (`media`, `exports`)",
            "`s3_private`: the kind `exports` is listed twice",
        ] {
            assert!(
                err.contains(&format!("manifest.toml:{}:", base + 4)) && err.contains(needle),
                "{needle}:\n{err}"
            );
        }
        assert!(!err.contains("Some("), "{err}");
        let err = parse(
            "[needs]\ns3_buckets = [\"media\"]\ns3_key = { credential = \"x.service\" }\ns3_website = false\ns3_private = [\"media\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&format!("manifest.toml:{}:", base + 5))
                && err.contains("`s3_website = false` keeps every bucket off it already"),
            "{err}"
        );
        // A valid list: website access per kind.
        let m = parse(
            "[needs]\ns3_buckets = [\"media\", \"exports\"]\ns3_key = { credential = \"x.service\" }\ns3_private = [\"exports\"]\n",
        )
        .unwrap();
        assert!(m.needs.website("media"));
        assert!(!m.needs.website("exports"));
    }

    #[test]
    fn the_shipped_peertube_keeps_exports_and_originals_private() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
        let m = Manifest::load(&root.join("peertube/manifest.toml")).unwrap();
        // Every object_storage kind PeerTube 8 reads (server/core/initializers/config.ts), so none falls back
        // to a default bucket name the cluster does not have.
        for kind in [
            "web_videos",
            "streaming_playlists",
            "original_video_files",
            "user_exports",
            "captions",
        ] {
            assert!(m.needs.s3_buckets.iter().any(|k| k == kind), "{kind}");
        }
        // PeerTube stores these with isPrivate: true and hands them out by presigned URL only.
        for (kind, public) in [
            ("web_videos", true),
            ("streaming_playlists", true),
            ("captions", true),
            ("user_exports", false),
            ("original_video_files", false),
        ] {
            assert_eq!(m.needs.website(kind), public, "{kind}");
        }
    }

    #[test]
    fn state_is_read_strictly_and_located() {
        let err = parse(
            "[needs]\ns3_buckets = [\"media\"]\n[state]\nbuckets = []\n[state.directories.data]\npath = \"var/lib/x\"\nowner = \"x\"\ngroup = \"x\"\nsource = \"s\"\n[state.identity.key]\ndescription = \"d\"\nfile = \"/var/lib/x/k\"\nowner = \"x\"\ngroup = \"x\"\nmode = \"0644\"\n",
        )
        .unwrap_err();
        let text = err.to_string();
        let base = MINIMAL.lines().count();
        for (line, needle) in [
            (base + 4, "[state]: `needs.s3_buckets` has `media`"),
            (base + 6, "[state]: `var/lib/x` must be an absolute path"),
            (base + 15, "[state]: `0644` lets every user"),
        ] {
            assert!(
                text.contains(&format!("manifest.toml:{line}:")) && text.contains(needle),
                "{needle} at line {line}:\n{text}"
            );
        }
    }

    #[test]
    fn a_manifest_without_state_declares_nothing_and_is_not_held_to_it() {
        let m =
            parse("[needs]\ns3_buckets = [\"media\"]\ns3_key = { credential = \"x.service\" }\n")
                .unwrap();
        assert_eq!(m.state, crate::state::State::default());
    }

    #[test]
    fn state_refuses_unknown_fields_at_their_place() {
        let err = parse("[state.identity.key]\ndescription = \"d\"\nsize = 3\n").unwrap_err();
        let line = MINIMAL.lines().count() + 3;
        let text = err.to_string();
        assert!(
            text.contains(&format!("manifest.toml:{line}:"))
                && text.contains("`identity.key.size`: unknown field `size`"),
            "{text}"
        );
    }

    #[test]
    fn the_shipped_templates_declare_their_state() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
        for app in ["mastodon", "matrix-synapse", "peertube", "pixelfed"] {
            let m = Manifest::load(&root.join(app).join("manifest.toml")).unwrap();
            assert!(!m.state.directories.is_empty(), "{app}: no directory");
            assert!(!m.state.databases.is_empty(), "{app}: no database");
            assert!(!m.state.identity.is_empty(), "{app}: no identity");
            assert!(
                m.state.upstream_module.is_some(),
                "{app}: no upstream module"
            );
        }
    }
}
