//! The structure of a specification, written once: it checks a document (every problem, each with its path)
//! and prints the JSON Schema, so the validator and the schema the panel and editors use cannot disagree.
//!
//! What the structure covers: which fields exist (unknown ones get a "did you mean"), which are required, their
//! types, the formats of strings (RFC 1123 domain names, e-mail addresses, URLs, SSH targets, absolute paths),
//! integer ranges, secret references (a literal where a reference belongs is refused with how to reference it),
//! and, from the manifests, which applications exist and what their settings and secrets are. What needs the
//! whole model (uniqueness, collisions, limits, references between parts) is in [`super::check`].

use serde_json::{Map, Value, json};

use super::Catalog;
use super::path::FieldPath;
use super::report::Diagnostic;
use crate::manifest::{EMAIL_PATTERN, Manifest, OptionType, SecretSource, is_email};

/// The formats strings can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrFormat {
    /// Any non-empty string.
    Text,
    /// A short identifier: `[a-z]`, then `[a-z0-9-]`, not ending in `-`, at most this many characters.
    Name(usize),
    /// A fully qualified domain name (RFC 1123, at least two labels, lower case).
    Domain,
    /// One or more domain labels, put in front of a domain.
    Subdomain,
    /// An e-mail address.
    Email,
    /// An `https://` URL.
    HttpsUrl,
    /// `[user@]host[:port]`.
    SshTarget,
    /// An absolute path outside the Nix store.
    AbsolutePath,
    /// The name of a secret in the provider's store.
    SecretName,
    /// An account name valid in every application.
    Username,
    /// A token such as a Proxmox node, storage or bridge name, or a Garage region or zone.
    Token,
}

const LABEL: &str = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?";
/// The last label of a domain name: a label that is not a number (decimal, or hexadecimal as `inet_aton` reads
/// `0x…`), so that no spelling of an IPv4 address is a domain name (RFC 1123 §2.1, RFC 3696 §2).
const LAST_LABEL: &str = "(?!(0x[0-9a-f]*|[0-9]+)$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?";
/// A path on a target machine: absolute, no empty, `.` or `..` component, and not in the Nix store.
const RUNTIME_PATH: &str = r"^(?!/nix/store(/|$))(/(?!\.\.?(/|$))[^/]+)+$";
const HTTPS_URL: &str = r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\s]*)?$";
const SSH_TARGET: &str = super::ssh::PATTERN;
const SECRET_NAME: &str = r"^[A-Za-z0-9][A-Za-z0-9._-]*$";
const USERNAME: &str = r"^[a-z][a-z0-9_]*$";
const TOKEN: &str = r"^[A-Za-z0-9][A-Za-z0-9._-]*$";

/// A problem with one string: what, a short label, and how to fix it.
struct Problem {
    message: String,
    label: &'static str,
    hint: Option<String>,
}

fn problem(message: impl Into<String>, label: &'static str, hint: Option<String>) -> Problem {
    Problem {
        message: message.into(),
        label,
        hint,
    }
}

fn matches(pattern: &str, s: &str) -> bool {
    regex_lite::Regex::new(pattern)
        .expect("valid pattern")
        .is_match(s)
}

impl StrFormat {
    fn check(self, s: &str) -> Result<(), Problem> {
        match self {
            Self::Text if s.is_empty() => Err(problem("must not be empty", "empty", None)),
            Self::Text => Ok(()),
            Self::Name(max) => {
                if s.chars().count() > max {
                    Err(problem(
                        format!("`{s}` is longer than {max} characters"),
                        "too long",
                        Some("names become parts of machine and host names; shorten it".into()),
                    ))
                } else if !matches(r"^[a-z]([a-z0-9-]*[a-z0-9])?$", s) {
                    Err(problem(
                        format!("`{s}` is not a valid name"),
                        "not a name",
                        Some("names start with a lower-case letter and contain only a-z, 0-9 and `-` (not at the end)".into()),
                    ))
                } else {
                    Ok(())
                }
            }
            Self::Domain => check_domain(s, 2),
            Self::Subdomain => check_domain(s, 1),
            Self::Email if is_email(s) => Ok(()),
            Self::Email => Err(problem(
                format!("`{s}` is not an e-mail address"),
                "not an e-mail address",
                Some("write a full address such as `admin@example.org`".into()),
            )),
            Self::HttpsUrl if matches(HTTPS_URL, s) => Ok(()),
            Self::HttpsUrl => Err(problem(
                format!("`{s}` is not an https URL"),
                "not an https URL",
                Some("write it as `https://host[:port]/path`; plain http is not accepted".into()),
            )),
            Self::SshTarget => {
                if super::ssh::SshTarget::parse(s).is_some() {
                    Ok(())
                } else {
                    Err(problem(
                        format!("`{s}` is not an SSH target"),
                        "not an SSH target",
                        Some("write `[user@]host[:port]`, e.g. `root@10.0.0.5` or `deploy@mastodon.example.org:2222`".into()),
                    ))
                }
            }
            Self::AbsolutePath => check_runtime_path(s),
            Self::SecretName if matches(SECRET_NAME, s) && s.len() <= 128 => Ok(()),
            Self::SecretName => Err(problem(
                format!("`{s}` is not a secret name"),
                "not a secret name",
                Some("secret names use letters, digits, `.`, `_` and `-`, e.g. `smtp-password`".into()),
            )),
            Self::Username if matches(USERNAME, s) && s.len() <= 30 => Ok(()),
            Self::Username => Err(problem(
                format!("`{s}` is not a valid user name"),
                "not a user name",
                Some("user names start with a lower-case letter and contain only a-z, 0-9 and `_`, at most 30 characters, so that every application accepts them".into()),
            )),
            Self::Token if matches(TOKEN, s) => Ok(()),
            Self::Token => Err(problem(
                format!("`{s}` is not a valid identifier"),
                "not an identifier",
                Some("use letters, digits, `.`, `_` and `-`".into()),
            )),
        }
    }

    fn schema(self) -> Value {
        let domain = |repeat: &str| json!({"type": "string", "maxLength": 253, "pattern": format!("^{LABEL}(\\.{LABEL}){repeat}$")});
        match self {
            Self::Text => json!({"type": "string", "minLength": 1}),
            Self::Name(max) => {
                json!({"type": "string", "maxLength": max, "pattern": "^[a-z]([a-z0-9-]*[a-z0-9])?$"})
            }
            Self::Domain => {
                json!({"type": "string", "maxLength": 253, "pattern": format!("^{LABEL}(\\.{LABEL})*\\.{LAST_LABEL}$")})
            }
            Self::Subdomain => domain("*"),
            Self::Email => json!({"type": "string", "format": "email", "pattern": EMAIL_PATTERN}),
            Self::HttpsUrl => json!({"type": "string", "format": "uri", "pattern": HTTPS_URL}),
            Self::SshTarget => json!({"type": "string", "pattern": SSH_TARGET}),
            Self::AbsolutePath => json!({"type": "string", "pattern": RUNTIME_PATH}),
            Self::SecretName => json!({"type": "string", "maxLength": 128, "pattern": SECRET_NAME}),
            Self::Username => json!({"type": "string", "maxLength": 30, "pattern": USERNAME}),
            Self::Token => json!({"type": "string", "pattern": TOKEN}),
        }
    }
}

/// A path on a target machine (a secret file, a `…File` setting): absolute, written without empty (`//`), `.` or
/// `..` components, so that what is checked is what the machine opens, and outside the world-readable Nix store.
fn check_runtime_path(s: &str) -> Result<(), Problem> {
    const EXAMPLE: &str = "e.g. `/run/secrets/smtp-password`";
    if !s.starts_with('/') {
        return Err(problem(
            format!("`{s}` is not an absolute path"),
            "not an absolute path",
            Some(format!(
                "files on the machine are absolute paths, {EXAMPLE}"
            )),
        ));
    }
    let components: Vec<&str> = s[1..].split('/').collect();
    if let Some(bad) = components
        .iter()
        .find(|c| c.is_empty() || **c == "." || **c == "..")
    {
        let what = if bad.is_empty() {
            "an empty component (`//` or a final `/`)".to_owned()
        } else {
            format!("a `{bad}` component")
        };
        return Err(problem(
            format!("`{s}` has {what}"),
            "not a plain path",
            Some(format!(
                "write the path without `.`, `..` or empty components, {EXAMPLE}"
            )),
        ));
    }
    if components.len() >= 2 && components[0] == "nix" && components[1] == "store" {
        return Err(problem(
            "a secret file cannot be in the Nix store",
            "in the Nix store",
            Some("the Nix store is world-readable; keep secrets outside it, e.g. under `/run/secrets/`".into()),
        ));
    }
    Ok(())
}

/// Whether a label is a number as `inet_aton` reads one: decimal, octal (`0…`) or hexadecimal (`0x…`).
fn is_number_label(label: &str) -> bool {
    let label = label.to_ascii_lowercase();
    match label.strip_prefix("0x") {
        Some(hex) => hex.chars().all(|c| c.is_ascii_hexdigit()),
        None => !label.is_empty() && label.chars().all(|c| c.is_ascii_digit()),
    }
}

/// Whether `s` is an IP address in any spelling: IPv6 (bracketed or not, with a zone), or IPv4 as `inet_aton`
/// reads it (one to four numbers, decimal, octal or hexadecimal: `192.0.2.10`, `127.1`, `0x7f.1`), with or without
/// a final dot.
pub fn is_ip_address(s: &str) -> bool {
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    let bare = bare.split_once('%').map_or(bare, |(address, _)| address);
    if bare.parse::<std::net::Ipv6Addr>().is_ok() {
        return true;
    }
    let v4 = s.strip_suffix('.').unwrap_or(s);
    let labels: Vec<&str> = v4.split('.').collect();
    (1..=4).contains(&labels.len()) && labels.iter().all(|l| is_number_label(l))
}

/// RFC 1123 host names, lower case, with at least `min_labels` labels; the message names the first fault.
fn check_domain(s: &str, min_labels: usize) -> Result<(), Problem> {
    let what = if min_labels > 1 {
        "domain name"
    } else {
        "subdomain"
    };
    let bad = |message: String, hint: &str| Err(problem(message, "invalid", Some(hint.to_owned())));
    if s.is_empty() {
        return bad(
            format!("a {what} cannot be empty"),
            "write a host name such as `social.example.org`",
        );
    }
    if min_labels > 1 && is_ip_address(s) {
        return bad(
            format!("`{s}` is an IP address, not a {what}"),
            "a domain names the operator or provider in DNS, and applications live at `<subdomain>.<domain>`: use a domain name such as `example.org`, with its DNS records pointing to the address",
        );
    }
    if s.chars().any(|c| c.is_ascii_uppercase()) {
        return bad(
            format!("`{s}` is not a valid {what}: it has upper-case letters"),
            &format!("write it in lower case: `{}`", s.to_ascii_lowercase()),
        );
    }
    if s.ends_with('.') && s.len() > 1 {
        return bad(
            format!("`{s}` is not a valid {what}: it ends with a dot"),
            &format!(
                "write it without the final dot: `{}`",
                s.trim_end_matches('.')
            ),
        );
    }
    if s.len() > 253 {
        return bad(
            format!("`{s}` is not a valid {what}: longer than 253 characters"),
            "shorten it",
        );
    }
    let labels: Vec<&str> = s.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return bad(
                format!("`{s}` is not a valid {what}: it has an empty label"),
                "labels are separated by single dots",
            );
        }
        if label.len() > 63 {
            return bad(
                format!(
                    "`{s}` is not a valid {what}: the label `{label}` is longer than 63 characters"
                ),
                "each label between dots has at most 63 characters (RFC 1123)",
            );
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return bad(
                format!("`{s}` is not a valid {what}: the label `{label}` contains `{c}`"),
                "labels contain only a-z, 0-9 and `-` (RFC 1123)",
            );
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad(
                format!("`{s}` is not a valid {what}: the label `{label}` starts or ends with `-`"),
                "labels start and end with a letter or digit (RFC 1123)",
            );
        }
    }
    if labels.len() < min_labels {
        return bad(
            format!("`{s}` is not a fully qualified domain name"),
            &format!("write the whole name, e.g. `{s}.example.org`"),
        );
    }
    if let Some(last) = labels
        .last()
        .filter(|l| min_labels > 1 && is_number_label(l))
    {
        return bad(
            format!("`{s}` is not a valid {what}: its last label `{last}` is a number"),
            "a top-level domain is never a number (RFC 3696), and such a name reads as an IP address: use a domain name such as `example.org`",
        );
    }
    Ok(())
}

/// One field of an object.
#[derive(Debug, Clone)]
pub struct Field {
    /// Its name.
    pub name: &'static str,
    /// What it holds.
    pub shape: Shape,
    /// Whether it must be present.
    pub required: bool,
    /// What it means (for hints and the schema's `description`).
    pub doc: &'static str,
}

/// What a value must look like.
#[derive(Debug, Clone)]
pub enum Shape {
    /// `true` or `false`.
    Bool,
    /// Exactly `true`, with why.
    True(&'static str),
    /// An integer in a range (inclusive).
    Int(i64, i64),
    /// A string of a format.
    Str(StrFormat),
    /// An object with known fields; others are refused.
    Object(Vec<Field>),
    /// An object with keys of a format, each holding the same shape, with at least `min` entries.
    Map(StrFormat, Box<Shape>, usize),
    /// A list of one shape.
    List(Box<Shape>),
    /// An object whose field `tag` chooses the other fields.
    Tagged(&'static str, Vec<(&'static str, Vec<Field>)>),
    /// A secret reference: `{ file = "…" }` or `{ secret = "…" }`.
    Secret,
    /// An operator's applications, keyed by manifest name.
    Applications,
    /// The settings of an application, from its manifest.
    Settings(String),
    /// The provided secrets of an application, from its manifest.
    AppSecrets(String),
}

fn req(name: &'static str, shape: Shape, doc: &'static str) -> Field {
    Field {
        name,
        shape,
        required: true,
        doc,
    }
}

fn opt(name: &'static str, shape: Shape, doc: &'static str) -> Field {
    Field {
        name,
        shape,
        required: false,
        doc,
    }
}

const U32_MAX: i64 = u32::MAX as i64;

fn capacity(required: bool) -> Shape {
    let field = if required { req } else { opt };
    Shape::Object(vec![
        field("cores", Shape::Int(1, U32_MAX), "CPU cores"),
        field("memory_mib", Shape::Int(1, U32_MAX), "memory in MiB"),
        field("disk_gib", Shape::Int(1, U32_MAX), "disk in GiB"),
    ])
}

/// The structure of a whole specification.
pub fn spec_shape() -> Shape {
    use Shape::*;
    use StrFormat as F;
    let host = Object(vec![
        req(
            "ssh",
            Str(F::SshTarget),
            "how to reach the host: `[user@]host[:port]`",
        ),
        req(
            "hardware_config",
            Str(F::Text),
            "its hardware-configuration.nix, relative to the specification or absolute",
        ),
    ]);
    let runtime = Tagged(
        "backend",
        vec![
            ("qemu", vec![]),
            (
                "proxmox",
                vec![
                    req(
                        "api_url",
                        Str(F::HttpsUrl),
                        "the API endpoint, `https://…/api2/json`",
                    ),
                    req(
                        "node",
                        Str(F::Token),
                        "the cluster node machines are created on",
                    ),
                    req(
                        "storage",
                        Str(F::Token),
                        "the storage for machine disks, e.g. `local-zfs`",
                    ),
                    req("bridge", Str(F::Token), "the network bridge, e.g. `vmbr0`"),
                    req("api_token", Secret, "the API token, as a secret reference"),
                ],
            ),
            (
                "bare-metal",
                vec![req(
                    "hosts",
                    Map(F::Name(63), Box::new(host), 1),
                    "the physical hosts by name",
                )],
            ),
        ],
    );
    let acme = Object(vec![
        req("email", Str(F::Email), "the ACME account's contact address"),
        opt(
            "server",
            Str(F::HttpsUrl),
            "the ACME directory URL (default: Let's Encrypt)",
        ),
        req(
            "accept_terms",
            True(
                "NixOS requests certificates only when the CA's terms are accepted (`security.acme.acceptTerms`)",
            ),
            "the CA's terms of service are accepted; must be `true`",
        ),
    ]);
    let smtp = Object(vec![
        req("host", Str(F::Domain), "the relay's host name"),
        opt("port", Int(1, 65535), "the submission port (default 587)"),
        req("user", Str(F::Text), "the login"),
        req("password", Secret, "the password, as a secret reference"),
        req("from", Str(F::Email), "the sender address of outgoing mail"),
    ]);
    let node = Object(vec![
        req(
            "zone",
            Str(F::Token),
            "the failure domain (Garage layout zone)",
        ),
        req(
            "capacity_gib",
            Int(1, U32_MAX),
            "the storage the node offers, in GiB",
        ),
        opt(
            "machine",
            Str(F::Name(63)),
            "share this application machine (`<operator>-<application>`)",
        ),
        opt(
            "ssh",
            Str(F::SshTarget),
            "how to reach the node's own machine",
        ),
        opt(
            "host",
            Str(F::Name(63)),
            "the bare-metal host of the node's own machine",
        ),
    ]);
    let object_storage = Object(vec![
        req(
            "replication_factor",
            Int(1, 7),
            "copies Garage keeps of each object",
        ),
        req("region", Str(F::Token), "the S3 region name"),
        req(
            "nodes",
            Map(F::Name(32), Box::new(node), 1),
            "the Garage nodes by name",
        ),
        opt(
            "secrets",
            AppSecrets(super::OBJECT_STORAGE_APPLICATION.to_owned()),
            "the secrets the Garage manifest says are provided",
        ),
    ]);
    let limits = Object(vec![
        req(
            "per_machine",
            capacity(true),
            "the most one machine may have",
        ),
        req(
            "per_operator",
            capacity(true),
            "the most one operator's machines may have together",
        ),
    ]);
    let provider = Object(vec![
        req(
            "name",
            Str(F::Name(32)),
            "a short identifier of the provider",
        ),
        req("domain", Str(F::Domain), "the provider's base domain"),
        req(
            "runtime",
            runtime,
            "where machines run: `backend` is qemu, proxmox or bare-metal",
        ),
        req("acme", acme, "the ACME account for TLS certificates"),
        opt("smtp", smtp, "the SMTP relay for outgoing mail"),
        opt(
            "object_storage",
            object_storage,
            "the provider's Garage cluster",
        ),
        opt(
            "limits",
            limits,
            "resource limits per machine and per operator",
        ),
    ]);
    let machine = Object(vec![
        opt(
            "ssh",
            Str(F::SshTarget),
            "how to reach the machine: `[user@]host[:port]`",
        ),
        opt("host", Str(F::Name(63)), "the bare-metal host it runs on"),
    ]);
    let operator = Object(vec![
        req(
            "name",
            Str(F::Name(32)),
            "a short identifier, used in machine names",
        ),
        req(
            "domain",
            Str(F::Domain),
            "the operator's domain; applications live under it",
        ),
        req("contact", Str(F::Email), "the operator's contact address"),
        req(
            "admin",
            Object(vec![
                req(
                    "username",
                    Str(F::Username),
                    "the first administrator's account name",
                ),
                req(
                    "email",
                    Str(F::Email),
                    "the first administrator's e-mail address",
                ),
            ]),
            "the first administrator account",
        ),
        opt(
            "applications",
            Applications,
            "the applications, by manifest name",
        ),
        opt(
            "machines",
            Map(F::Text, Box::new(machine), 0),
            "where each application's machine is deployed, by application name",
        ),
    ]);
    Object(vec![
        req("provider", provider, "the hosting provider"),
        opt(
            "operators",
            List(Box::new(operator)),
            "the operators the provider hosts",
        ),
    ])
}

fn application_fields(app: &str) -> Vec<Field> {
    vec![
        opt(
            "enable",
            Shape::Bool,
            "whether it is deployed (default true)",
        ),
        opt(
            "subdomain",
            Shape::Str(StrFormat::Subdomain),
            "the host name's first labels (default: the manifest's)",
        ),
        opt(
            "resources",
            capacity(false),
            "resources requested beyond the manifest's defaults",
        ),
        opt(
            "settings",
            Shape::Settings(app.to_owned()),
            "typed settings from the application's manifest",
        ),
        opt(
            "secrets",
            Shape::AppSecrets(app.to_owned()),
            "the secrets the manifest says are provided",
        ),
    ]
}

/// Checks a document against the structure, with application settings against their manifests.
pub fn check(value: &Value, catalog: &Catalog) -> Vec<Diagnostic> {
    let mut checker = Checker {
        catalog,
        out: Vec::new(),
    };
    checker.no_nul(value, &FieldPath::root());
    if checker.out.is_empty() {
        checker.value(value, &spec_shape(), &FieldPath::root());
    }
    checker.out
}

struct Checker<'a> {
    catalog: &'a Catalog,
    out: Vec<Diagnostic>,
}

/// How a value is called in messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The closest candidate to a misspelt name: equal apart from case, `_` and `-`, or within a small edit
/// distance (a third of its length).
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let wanted = norm(name);
    let limit = (wanted.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&wanted, &norm(c)), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An unknown key: "did you mean" when a known one is close, else the list of known ones.
fn unknown(path: FieldPath, what: &str, name: &str, known: &[&str]) -> Diagnostic {
    let d = Diagnostic::new(
        path,
        format!("unknown {what} `{name}`"),
        format!("unknown {what}"),
    )
    .at_key();
    match suggest(name, known.iter().copied()) {
        Some(s) => d.hint(format!("did you mean `{s}`?")),
        None if known.is_empty() => d.hint(format!("no {what}s are allowed here")),
        None => d.hint(format!("expected one of {}", list(known))),
    }
}

/// Words that mark a key as holding a secret.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "key",
    "apikey",
    "credential",
    "credentials",
];

/// Whether a key names a secret: one of its words (split at `_`, `-`, `.` and camelCase) is a secret word.
pub fn is_secret_like(key: &str) -> bool {
    words(key)
        .iter()
        .any(|w| SECRET_WORDS.contains(&w.as_str()))
}

/// The words of a camelCase, snake_case or kebab-case name, lower-cased (`APIKey` is one word, `dbPassword`
/// two): how settings keys are judged secret-like, here and when importing options.
pub fn words(key: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in key.chars() {
        if !c.is_alphanumeric() {
            words.push(std::mem::take(&mut current));
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower {
            words.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        current.extend(c.to_lowercase());
    }
    words.push(current);
    words.retain(|w| !w.is_empty());
    words
}

/// A path to a secret (`passwordFile = "/run/secrets/…"`, the nixpkgs `…File` convention) is a reference, not
/// a value.
fn is_path_reference(key: &str, value: &str) -> bool {
    let last = words(key).pop().unwrap_or_default();
    (last == "file" || last == "path") && value.starts_with('/')
}

const SECRET_HINT: &str = "reference it instead: an object with `file` (a path on the target machine, e.g. `{ file = \"/run/secrets/smtp-password\" }`) or `secret` (a name in the provider's secret store, e.g. `{ secret = \"smtp-password\" }`)";

impl Checker<'_> {
    fn push(&mut self, d: Diagnostic) {
        self.out.push(d);
    }

    fn no_nul(&mut self, value: &Value, path: &FieldPath) {
        match value {
            Value::String(s) if s.contains('\0') => self.push(
                Diagnostic::new(
                    path.clone(),
                    "a NUL character cannot be represented in Nix",
                    "contains NUL",
                )
                .hint("remove the NUL character"),
            ),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .for_each(|(i, v)| self.no_nul(v, &path.index(i))),
            Value::Object(map) => map.iter().for_each(|(k, v)| {
                if k.contains('\0') {
                    self.push(
                        Diagnostic::new(
                            path.key(k),
                            "a NUL character cannot be represented in Nix",
                            "contains NUL",
                        )
                        .at_key()
                        .hint("remove the NUL character"),
                    );
                }
                self.no_nul(v, &path.key(k));
            }),
            _ => {}
        }
    }

    fn mismatch(&mut self, path: &FieldPath, expected: &str, found: &Value) {
        self.push(Diagnostic::new(
            path.clone(),
            format!("expected {expected}, found {}", kind(found)),
            format!("expected {expected}"),
        ));
    }

    fn value(&mut self, value: &Value, shape: &Shape, path: &FieldPath) {
        match (shape, value) {
            (Shape::Bool, Value::Bool(_)) => {}
            (Shape::Bool, v) => self.mismatch(path, "a boolean", v),
            (Shape::True(_), Value::Bool(true)) => {}
            (Shape::True(why), v) => self.push(
                Diagnostic::new(
                    path.clone(),
                    match v {
                        Value::Bool(false) => "must be `true`, found `false`".to_owned(),
                        v => format!("must be `true`, found {}", kind(v)),
                    },
                    "must be `true`",
                )
                .hint(*why),
            ),
            (Shape::Int(min, max), Value::Number(n)) if n.as_i64().is_some() => {
                let i = n.as_i64().unwrap_or_default();
                if i < *min || i > *max {
                    let expected = if *min == 1 && *max == U32_MAX {
                        "a positive integer".to_owned()
                    } else {
                        format!("an integer from {min} to {max}")
                    };
                    self.push(Diagnostic::new(
                        path.clone(),
                        format!("{i} is out of range: expected {expected}"),
                        "out of range",
                    ));
                }
            }
            (Shape::Int(..), v) => self.mismatch(path, "an integer", v),
            (Shape::Str(format), Value::String(s)) => {
                if let Err(p) = format.check(s) {
                    let mut d = Diagnostic::new(path.clone(), p.message, p.label);
                    d.hint = p.hint;
                    self.push(d);
                }
            }
            (Shape::Str(_), v) => self.mismatch(path, "a string", v),
            (Shape::Object(fields), Value::Object(map)) => self.object(map, fields, &[], path),
            (Shape::Map(key_format, inner, min), Value::Object(map)) => {
                if map.len() < *min {
                    self.push(
                        Diagnostic::new(path.clone(), "needs at least one entry", "empty")
                            .at_key()
                            .hint("add an entry or remove the field"),
                    );
                }
                for (k, v) in map {
                    if let Err(p) = key_format.check(k) {
                        let mut d = Diagnostic::new(path.key(k), p.message, p.label).at_key();
                        d.hint = p.hint;
                        self.push(d);
                    }
                    self.value(v, inner, &path.key(k));
                }
            }
            (Shape::List(inner), Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    self.value(item, inner, &path.index(i));
                }
            }
            (Shape::List(_), v) => self.mismatch(path, "a list", v),
            (Shape::Tagged(tag, variants), Value::Object(map)) => {
                self.tagged(map, tag, variants, path)
            }
            (Shape::Secret, v) => self.secret(v, path),
            (Shape::Applications, Value::Object(map)) => {
                let known: Vec<&str> = self.catalog.manifests.keys().map(String::as_str).collect();
                for (name, v) in map {
                    if self.catalog.manifests.contains_key(name) {
                        self.value(v, &Shape::Object(application_fields(name)), &path.key(name));
                    } else {
                        let mut d = unknown(path.key(name), "application", name, &known);
                        let applications = format!(
                            "the applications are the folders of templates/ with a manifest: {}",
                            list(&known)
                        );
                        d.hint = Some(match d.hint.filter(|h| h.starts_with("did")) {
                            Some(suggestion) => format!("{suggestion} ({applications})"),
                            None => applications,
                        });
                        self.push(d);
                    }
                }
            }
            (Shape::Settings(app), Value::Object(map)) => {
                if let Some(manifest) = self.catalog.manifests.get(app) {
                    self.settings(map, manifest, path);
                }
            }
            (Shape::AppSecrets(app), Value::Object(map)) => {
                // Without the manifest (no garage template) the cross-checks say what is missing.
                if let Some(manifest) = self.catalog.manifests.get(app) {
                    self.app_secrets(map, manifest, path);
                }
            }
            (
                Shape::Object(_)
                | Shape::Map(..)
                | Shape::Tagged(..)
                | Shape::Applications
                | Shape::Settings(_)
                | Shape::AppSecrets(_),
                v,
            ) => self.mismatch(path, "an object", v),
        }
    }

    fn object(
        &mut self,
        map: &Map<String, Value>,
        fields: &[Field],
        extra_known: &[&str],
        path: &FieldPath,
    ) {
        let known: Vec<&str> = extra_known
            .iter()
            .copied()
            .chain(fields.iter().map(|f| f.name))
            .collect();
        for (k, v) in map {
            match fields.iter().find(|f| f.name == k) {
                Some(field) => self.value(v, &field.shape, &path.key(k)),
                None if extra_known.contains(&k.as_str()) => {}
                None if !path.is_root() && ["provider", "operators"].contains(&k.as_str()) => {
                    self.push(unknown(path.key(k), "field", k, &known).hint(format!(
                        "`{k}` belongs at the top level: in TOML, keys written after a `[table]` header belong to that table; move it above the first header"
                    )))
                }
                None => self.push(unknown(path.key(k), "field", k, &known)),
            }
        }
        for field in fields.iter().filter(|f| !map.contains_key(f.name)) {
            if field.required {
                self.push(missing(path, field.name, field.doc));
            } else if matches!(field.shape, Shape::Settings(_) | Shape::AppSecrets(_)) {
                // Absent settings or secrets are empty ones: required entries must still be named.
                self.value(
                    &Value::Object(Map::new()),
                    &field.shape,
                    &path.key(field.name),
                );
            }
        }
    }

    fn tagged(
        &mut self,
        map: &Map<String, Value>,
        tag: &str,
        variants: &[(&'static str, Vec<Field>)],
        path: &FieldPath,
    ) {
        let names: Vec<&str> = variants.iter().map(|(n, _)| *n).collect();
        match map.get(tag) {
            None => self.push(
                Diagnostic::new(
                    path.clone(),
                    format!("missing field `{tag}`"),
                    format!("missing `{tag}`"),
                )
                .at_key()
                .hint(format!("add `{tag}`, one of {}", list(&names))),
            ),
            Some(Value::String(name)) => match variants.iter().find(|(n, _)| n == name) {
                Some((_, fields)) => self.object(map, fields, &[tag], path),
                None => {
                    let d = Diagnostic::new(
                        path.key(tag),
                        format!("unknown {tag} `{name}`"),
                        format!("unknown {tag}"),
                    );
                    self.push(match suggest(name, names.iter().copied()) {
                        Some(s) => d.hint(format!("did you mean `{s}`?")),
                        None => d.hint(format!("expected one of {}", list(&names))),
                    });
                }
            },
            Some(v) => self.mismatch(&path.key(tag), "a string", v),
        }
    }

    fn secret(&mut self, value: &Value, path: &FieldPath) {
        match value {
            Value::String(_) => self.push(
                Diagnostic::new(
                    path.clone(),
                    "a secret value cannot be written in a specification",
                    "a literal secret",
                )
                .hint(SECRET_HINT),
            ),
            Value::Object(map) => {
                for k in map.keys().filter(|k| *k != "file" && *k != "secret") {
                    self.push(unknown(path.key(k), "field", k, &["file", "secret"]));
                }
                match (map.get("file"), map.get("secret")) {
                    (Some(_), Some(_)) => self.push(
                        Diagnostic::new(
                            path.clone(),
                            "a secret reference has either `file` or `secret`, not both",
                            "both given",
                        )
                        .hint("keep one of them"),
                    ),
                    (None, None) if map.keys().all(|k| k == "file" || k == "secret") => self.push(
                        Diagnostic::new(
                            path.clone(),
                            "missing field `file` or `secret`",
                            "an empty secret reference",
                        )
                        .hint(SECRET_HINT),
                    ),
                    (Some(file), None) => self.value(
                        file,
                        &Shape::Str(StrFormat::AbsolutePath),
                        &path.key("file"),
                    ),
                    (None, Some(name)) => self.value(
                        name,
                        &Shape::Str(StrFormat::SecretName),
                        &path.key("secret"),
                    ),
                    (None, None) => {}
                }
            }
            v => self.mismatch(path, "a secret reference", v),
        }
    }

    fn settings(&mut self, map: &Map<String, Value>, manifest: &Manifest, path: &FieldPath) {
        let app = &manifest.application.name;
        let known: Vec<&str> = manifest.options.keys().map(String::as_str).collect();
        for (name, value) in map {
            let at = path.key(name);
            let Some(option) = manifest.options.get(name) else {
                let mut d = unknown(at, "setting", name, &known);
                if known.is_empty() {
                    d.hint = Some(format!("`{app}` has no settings"));
                }
                self.push(d);
                continue;
            };
            let before = self.out.len();
            self.secret_literals(name, value, &at);
            self.data_only(value, &at);
            if self.out.len() == before
                && let Err(e) = option.ty.check(value)
            {
                self.push(
                    Diagnostic::new(at.clone(), format!("invalid value for `{name}`: {e}"), e)
                        .hint(format!("{name}: {}", option.description)),
                );
            }
        }
        for (name, option) in &manifest.options {
            if option.default.is_none() && !map.contains_key(name) {
                self.push(missing_setting(path, app, name, &option.description));
            }
        }
    }

    /// A string under a key named like a secret is a secret written in the specification.
    fn secret_literals(&mut self, key: &str, value: &Value, path: &FieldPath) {
        match value {
            Value::String(s) if is_secret_like(key) && !is_path_reference(key, s) => self.push(
                Diagnostic::new(
                    path.clone(),
                    format!("`{key}` looks like a secret, and secret values cannot be written in a specification"),
                    "a literal secret",
                )
                .hint("if the application needs this secret, its manifest declares it under [secrets]: give it in the application's `secrets` as `{ file = \"/run/secrets/…\" }` or `{ secret = \"…\" }`"),
            ),
            // A `…File`/`…Path` setting is a path on the machine: the rule of secret files holds for it (the
            // Nix store is only refused where the key names a secret).
            Value::String(s) if is_path_reference(key, s) => {
                if let Err(p) = check_runtime_path(s)
                    && (p.label != "in the Nix store" || is_secret_like(key))
                {
                    let mut d = Diagnostic::new(path.clone(), p.message, p.label);
                    d.hint = p.hint;
                    self.push(d);
                }
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .for_each(|(i, v)| self.secret_literals(key, v, &path.index(i))),
            Value::Object(map) => map.iter().for_each(|(k, v)| self.secret_literals(k, v, &path.key(k))),
            _ => {}
        }
    }

    /// Keys that would turn data into code for Nix or the module system are refused, as the emitter would.
    fn data_only(&mut self, value: &Value, path: &FieldPath) {
        match value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .for_each(|(i, v)| self.data_only(v, &path.index(i))),
            Value::Object(map) => {
                for (k, v) in map {
                    let special = crate::nix::value::SPECIAL_ATTRIBUTES.contains(&k.as_str())
                        || (k == "type" && v.as_str() == Some("derivation"));
                    if special {
                        self.push(
                            Diagnostic::new(
                                path.key(k),
                                format!("the key `{k}` would make Nix treat this data as code"),
                                "special to Nix",
                            )
                            .at_key()
                            .hint("rename the key"),
                        );
                    }
                    self.data_only(v, &path.key(k));
                }
            }
            _ => {}
        }
    }

    fn app_secrets(&mut self, map: &Map<String, Value>, manifest: &Manifest, path: &FieldPath) {
        let app = &manifest.application.name;
        let provided: Vec<&str> = manifest
            .secrets
            .iter()
            .filter(|(_, s)| s.source == SecretSource::Provided)
            .map(|(n, _)| n.as_str())
            .collect();
        for (name, value) in map {
            match manifest.secrets.get(name) {
                Some(spec) if spec.source == SecretSource::Generated => self.push(
                    Diagnostic::new(
                        path.key(name),
                        format!("`{name}` is generated on the machine and cannot be provided"),
                        "generated secret",
                    )
                    .at_key()
                    .hint(format!("remove it: {app} creates it on first boot")),
                ),
                Some(_) => self.secret(value, &path.key(name)),
                None => {
                    let mut d = unknown(path.key(name), "secret", name, &provided);
                    if provided.is_empty() {
                        d.hint = Some(format!("`{app}` takes no provided secrets"));
                    }
                    self.push(d);
                }
            }
        }
        // Optional secrets may be left out.
        for name in provided
            .iter()
            .filter(|n| !map.contains_key(**n) && !manifest.secrets[**n].optional)
        {
            let description = &manifest.secrets[*name].description;
            self.push(
                Diagnostic::new(path.clone(), format!("missing secret `{name}` of `{app}`"), format!("missing `{name}`"))
                    .at_key()
                    .hint(format!(
                        "{name}: {}. Reference it: `{name} = {{ file = \"/run/secrets/…\" }}` or `{name} = {{ secret = \"…\" }}`",
                        description.trim_end_matches('.')
                    )),
            );
        }
    }
}

fn missing(path: &FieldPath, name: &str, doc: &str) -> Diagnostic {
    Diagnostic::new(
        path.clone(),
        format!("missing field `{name}`"),
        format!("missing `{name}`"),
    )
    .at_key()
    .hint(format!("add `{name}`: {doc}"))
}

fn missing_setting(path: &FieldPath, app: &str, name: &str, description: &str) -> Diagnostic {
    Diagnostic::new(
        path.clone(),
        format!("missing setting `{name}` of `{app}`"),
        format!("missing `{name}`"),
    )
    .at_key()
    .hint(format!("`{name}` has no default: {description}"))
}

/// Makes equal values equal text: a setting of a float type holds a float even when written as an integer
/// (`2` → `2.0`), as Nix and TOML would read it back.
pub fn canonicalize(value: &mut Value, catalog: &Catalog) {
    let Some(operators) = value.get_mut("operators").and_then(Value::as_array_mut) else {
        return;
    };
    for operator in operators {
        let Some(apps) = operator
            .get_mut("applications")
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for (app, application) in apps {
            let (Some(manifest), Some(settings)) = (
                catalog.manifests.get(app),
                application
                    .get_mut("settings")
                    .and_then(Value::as_object_mut),
            ) else {
                continue;
            };
            for (name, v) in settings {
                if let Some(option) = manifest.options.get(name) {
                    float_values(&option.ty, v);
                }
            }
        }
    }
}

fn float_values(ty: &OptionType, value: &mut Value) {
    match (ty, value) {
        (OptionType::Float, Value::Number(n)) => {
            if let Some(f) = n.as_f64().and_then(serde_json::Number::from_f64) {
                *n = f;
            }
        }
        (OptionType::List(inner), Value::Array(items)) => {
            items.iter_mut().for_each(|v| float_values(inner, v))
        }
        (OptionType::Attrs(inner), Value::Object(map)) => {
            map.values_mut().for_each(|v| float_values(inner, v))
        }
        _ => {}
    }
}

/// The JSON Schema (draft 2020-12) of specifications. Keys are sorted (serde_json's map), so the output is
/// deterministic.
pub fn json_schema(catalog: &Catalog) -> Value {
    let mut schema = shape_schema(&spec_shape(), catalog);
    let object = schema.as_object_mut().expect("the root is an object");
    object.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    object.insert(
        "$id".into(),
        json!("https://fediversity.eu/schemas/fedigen-specification.json"),
    );
    object.insert(
        "title".into(),
        json!("fedigen specification: a hosting provider and its operators"),
    );
    object.insert(
        "$defs".into(),
        json!({
            "secret": {
                "description": "a reference to a secret: a file on the target machine or a name in the provider's secret store; never the value",
                "oneOf": [
                    {"type": "object", "properties": {"file": StrFormat::AbsolutePath.schema()}, "required": ["file"], "additionalProperties": false},
                    {"type": "object", "properties": {"secret": StrFormat::SecretName.schema()}, "required": ["secret"], "additionalProperties": false}
                ]
            }
        }),
    );
    schema
}

fn object_schema(fields: &[Field], catalog: &Catalog, extra: Option<(&str, Value)>) -> Value {
    let mut properties = Map::new();
    let mut required: Vec<&str> = Vec::new();
    if let Some((tag, value)) = &extra {
        properties.insert((*tag).to_owned(), value.clone());
        required.push(tag);
    }
    for field in fields {
        let mut s = shape_schema(&field.shape, catalog);
        if let Some(o) = s.as_object_mut()
            && !o.contains_key("$ref")
        {
            o.insert("description".into(), json!(field.doc));
        }
        properties.insert(field.name.to_owned(), s);
        if field.required || has_required_entries(&field.shape, catalog) {
            required.push(field.name);
        }
    }
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

/// Whether settings or secrets have entries without which they are invalid, so the field itself is required.
fn has_required_entries(shape: &Shape, catalog: &Catalog) -> bool {
    match shape {
        Shape::Settings(app) => catalog
            .manifests
            .get(app)
            .is_some_and(|m| m.options.values().any(|o| o.default.is_none())),
        Shape::AppSecrets(app) => catalog.manifests.get(app).is_some_and(|m| {
            m.secrets
                .values()
                .any(|s| s.source == SecretSource::Provided && !s.optional)
        }),
        _ => false,
    }
}

fn shape_schema(shape: &Shape, catalog: &Catalog) -> Value {
    match shape {
        Shape::Bool => json!({"type": "boolean"}),
        Shape::True(_) => json!({"const": true}),
        Shape::Int(min, max) => json!({"type": "integer", "minimum": min, "maximum": max}),
        Shape::Str(format) => format.schema(),
        Shape::Object(fields) => object_schema(fields, catalog, None),
        Shape::Map(key, inner, min) => json!({
            "type": "object",
            "propertyNames": key.schema(),
            "additionalProperties": shape_schema(inner, catalog),
            "minProperties": min,
        }),
        Shape::List(inner) => json!({"type": "array", "items": shape_schema(inner, catalog)}),
        Shape::Tagged(tag, variants) => json!({
            "oneOf": variants
                .iter()
                .map(|(name, fields)| object_schema(fields, catalog, Some((tag, json!({"const": name})))))
                .collect::<Vec<_>>()
        }),
        Shape::Secret => json!({"$ref": "#/$defs/secret"}),
        Shape::Applications => {
            let properties: Map<String, Value> = catalog
                .manifests
                .iter()
                .map(|(name, m)| {
                    let mut s = object_schema(&application_fields(name), catalog, None);
                    s["description"] = json!(format!(
                        "{}: {}",
                        m.application.title, m.application.description
                    ));
                    (name.clone(), s)
                })
                .collect();
            json!({"type": "object", "properties": properties, "additionalProperties": false})
        }
        Shape::Settings(app) => {
            let Some(manifest) = catalog.manifests.get(app) else {
                return json!({"type": "object"});
            };
            let mut properties = Map::new();
            let mut required = Vec::new();
            for (name, option) in &manifest.options {
                let mut s = option.ty.json_schema();
                s["description"] = json!(option.description);
                if let Some(default) = &option.default {
                    s["default"] = default.clone();
                } else {
                    required.push(name.clone());
                }
                properties.insert(name.clone(), s);
            }
            json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
        }
        Shape::AppSecrets(app) => {
            let Some(manifest) = catalog.manifests.get(app) else {
                return json!({"type": "object"});
            };
            let provided: Vec<&String> = manifest
                .secrets
                .iter()
                .filter(|(_, s)| s.source == SecretSource::Provided)
                .map(|(n, _)| n)
                .collect();
            let properties: Map<String, Value> = provided
                .iter()
                .map(|n| ((*n).clone(), json!({"$ref": "#/$defs/secret"})))
                .collect();
            // Optional secrets may be left out.
            let required: Vec<&&String> = provided
                .iter()
                .filter(|n| !manifest.secrets[n.as_str()].optional)
                .collect();
            json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_find_close_names() {
        assert_eq!(suggest("domian", ["domain", "name"]), Some("domain"));
        assert_eq!(
            suggest("memoryMib", ["memory_mib", "cores"]),
            Some("memory_mib")
        );
        assert_eq!(suggest("zzz", ["domain", "name"]), None);
    }

    #[test]
    fn secret_like_keys() {
        for key in [
            "password",
            "SECRET_KEY_BASE",
            "apiToken",
            "smtp-pass-key",
            "signingKey",
        ] {
            assert!(is_secret_like(key), "{key}");
        }
        for key in ["maxKeys", "keyboard", "monkey", "singleUserMode", "tokens"] {
            assert!(
                !is_secret_like(key),
                "{key}: counts and words containing `key` are not secrets"
            );
        }
        assert!(is_path_reference("passwordFile", "/run/secrets/x"));
        assert!(!is_path_reference("passwordFile", "hunter2"));
    }

    #[test]
    fn domains_follow_rfc_1123() {
        assert!(check_domain("social.uu.example", 2).is_ok());
        assert!(check_domain("xn--bcher-kva.example", 2).is_ok());
        for bad in [
            "uu",
            "-a.example",
            "a-.example",
            "a..example",
            "A.example",
            "a_b.example",
            "a.example.",
        ] {
            assert!(check_domain(bad, 2).is_err(), "{bad}");
        }
        assert!(check_domain(&format!("{}.example", "a".repeat(64)), 2).is_err());
        assert!(check_domain(&format!("{}.example", "a".repeat(63)), 2).is_ok());
    }

    #[test]
    fn runtime_paths_are_plain_and_outside_the_store() {
        for good in [
            "/run/secrets/smtp",
            "/var/lib/x/.env",
            "/run/secrets/a..b",
            "/nixos/store/x",
        ] {
            assert!(check_runtime_path(good).is_ok(), "{good}");
        }
        for bad in [
            "run/secrets/x",
            "/run/secrets/../../nix/store/abc-secret",
            "//nix/store/abc-secret",
            "/nix//store/abc",
            "/./nix/store/abc",
            "/run/secrets/",
            "/run/./secrets/x",
            "/",
            "/nix/store",
            "/nix/store/abc-secret",
        ] {
            assert!(check_runtime_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ip_addresses_are_not_domains() {
        for ip in [
            "192.0.2.10",
            "192.0.2.10.",
            "127.1",
            "0x7f.0.0.1",
            "0X7F.1",
            "0177.0.0.1",
            "2130706433",
            "::1",
            "[2001:db8::1]",
            "2001:DB8::1",
            "fe80::1%eth0",
            "::ffff:192.0.2.1",
        ] {
            assert!(is_ip_address(ip), "{ip}");
            let err = check_domain(ip, 2).map(|_| ()).map_err(|p| p.message);
            assert!(
                err.as_ref().is_err_and(|m| m.contains("IP address")),
                "{ip}: {err:?}"
            );
        }
        for bad in ["social.10", "example.0x1f", "a.b.123"] {
            assert!(check_domain(bad, 2).is_err(), "{bad}");
        }
        for good in [
            "10.example",
            "192.0.2.example",
            "example.0x1g",
            "0x.example",
        ] {
            assert!(!is_ip_address(good), "{good}");
            assert!(check_domain(good, 2).is_ok(), "{good}");
        }
        // A subdomain may be numeric: it is followed by the operator's domain.
        assert!(check_domain("192.0.2", 1).is_ok());
    }

    #[test]
    fn ssh_targets() {
        for good in [
            "root@10.0.0.5",
            "deploy@host.example:2222",
            "host",
            "[2001:db8::1]:22",
            "root@[2001:db8::1]",
        ] {
            assert!(StrFormat::SshTarget.check(good).is_ok(), "{good}");
        }
        for bad in [
            "root@",
            "host:0",
            "host:99999",
            "a b",
            "@host",
            "root@host:",
        ] {
            assert!(StrFormat::SshTarget.check(bad).is_err(), "{bad}");
        }
    }
}
