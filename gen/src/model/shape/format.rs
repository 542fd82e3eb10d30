//! The formats strings can have, each checked by code with a message that says how to fix it, and printed as a
//! JSON Schema pattern.

use std::sync::LazyLock;

use regex_lite::Regex;
use serde_json::{Value, json};

use crate::manifest::{EMAIL_PATTERN, is_email};

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
    /// A file of the repository, relative to the specification file, in characters a Nix path literal holds.
    SourceFile,
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
const SSH_TARGET: &str = crate::model::ssh::PATTERN;
/// A short identifier (the length is checked apart).
const NAME: &str = r"^[a-z]([a-z0-9-]*[a-z0-9])?$";
const SECRET_NAME: &str = r"^[A-Za-z0-9][A-Za-z0-9._-]*$";
const USERNAME: &str = r"^[a-z][a-z0-9_]*$";
const TOKEN: &str = r"^[A-Za-z0-9][A-Za-z0-9._-]*$";
/// A relative path whose every component a Nix path literal can hold (`./a/b.nix`).
const SOURCE_FILE: &str = r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$";

/// A problem with one string: what, a short label, and how to fix it.
pub(super) struct Problem {
    pub(super) message: String,
    pub(super) label: &'static str,
    pub(super) hint: Option<String>,
}

fn problem(message: impl Into<String>, label: &'static str, hint: Option<String>) -> Problem {
    Problem {
        message: message.into(),
        label,
        hint,
    }
}

/// The patterns strings are matched against, each compiled once, on first use: a specification with many
/// operators checks thousands of strings, and compiling a pattern costs far more than matching it.
static NAME_RE: LazyLock<Regex> = LazyLock::new(|| compile(NAME));
static HTTPS_URL_RE: LazyLock<Regex> = LazyLock::new(|| compile(HTTPS_URL));
static SECRET_NAME_RE: LazyLock<Regex> = LazyLock::new(|| compile(SECRET_NAME));
static USERNAME_RE: LazyLock<Regex> = LazyLock::new(|| compile(USERNAME));
static TOKEN_RE: LazyLock<Regex> = LazyLock::new(|| compile(TOKEN));
static SOURCE_FILE_RE: LazyLock<Regex> = LazyLock::new(|| compile(SOURCE_FILE));

fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("valid pattern")
}

impl StrFormat {
    pub(super) fn check(self, s: &str) -> Result<(), Problem> {
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
                } else if !NAME_RE.is_match(s) {
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
            Self::HttpsUrl if HTTPS_URL_RE.is_match(s) => Ok(()),
            Self::HttpsUrl => Err(problem(
                format!("`{s}` is not an https URL"),
                "not an https URL",
                Some("write it as `https://host[:port]/path`; plain http is not accepted".into()),
            )),
            Self::SshTarget => {
                if crate::model::ssh::SshTarget::parse(s).is_some() {
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
            Self::SourceFile if s.starts_with('/') => Err(problem(
                format!("`{s}` is an absolute path"),
                "absolute path",
                Some("pure flake evaluation reads no file outside the repository: commit the file in the repository and give its path relative to the specification file, e.g. `hardware/host1.nix`".into()),
            )),
            Self::SourceFile if SOURCE_FILE_RE.is_match(s) => Ok(()),
            Self::SourceFile => Err(problem(
                format!("`{s}` cannot be written as a Nix path"),
                "not a plain relative path",
                Some("use letters, digits, `.`, `_` and `-` in file and folder names, separated by single `/`".into()),
            )),
            Self::SecretName if SECRET_NAME_RE.is_match(s) && s.len() <= 128 => Ok(()),
            Self::SecretName => Err(problem(
                format!("`{s}` is not a secret name"),
                "not a secret name",
                Some("secret names use letters, digits, `.`, `_` and `-`, e.g. `smtp-password`".into()),
            )),
            Self::Username if USERNAME_RE.is_match(s) && s.len() <= 30 => Ok(()),
            Self::Username => Err(problem(
                format!("`{s}` is not a valid user name"),
                "not a user name",
                Some("user names start with a lower-case letter and contain only a-z, 0-9 and `_`, at most 30 characters, so that every application accepts them".into()),
            )),
            Self::Token if TOKEN_RE.is_match(s) => Ok(()),
            Self::Token => Err(problem(
                format!("`{s}` is not a valid identifier"),
                "not an identifier",
                Some("use letters, digits, `.`, `_` and `-`".into()),
            )),
        }
    }

    pub(super) fn schema(self) -> Value {
        let domain = |repeat: &str| json!({"type": "string", "maxLength": 253, "pattern": format!("^{LABEL}(\\.{LABEL}){repeat}$")});
        match self {
            Self::Text => json!({"type": "string", "minLength": 1}),
            Self::Name(max) => {
                json!({"type": "string", "maxLength": max, "pattern": NAME})
            }
            Self::Domain => {
                json!({"type": "string", "maxLength": 253, "pattern": format!("^{LABEL}(\\.{LABEL})*\\.{LAST_LABEL}$")})
            }
            Self::Subdomain => domain("*"),
            Self::Email => json!({"type": "string", "format": "email", "pattern": EMAIL_PATTERN}),
            Self::HttpsUrl => json!({"type": "string", "format": "uri", "pattern": HTTPS_URL}),
            Self::SshTarget => json!({"type": "string", "pattern": SSH_TARGET}),
            Self::AbsolutePath => json!({"type": "string", "pattern": RUNTIME_PATH}),
            Self::SourceFile => json!({"type": "string", "pattern": SOURCE_FILE}),
            Self::SecretName => json!({"type": "string", "maxLength": 128, "pattern": SECRET_NAME}),
            Self::Username => json!({"type": "string", "maxLength": 30, "pattern": USERNAME}),
            Self::Token => json!({"type": "string", "pattern": TOKEN}),
        }
    }
}

/// A path on a target machine (a secret file, a `…File` setting): absolute, written without empty (`//`), `.` or
/// `..` components, so that what is checked is what the machine opens, and outside the world-readable Nix store.
pub(super) fn check_runtime_path(s: &str) -> Result<(), Problem> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn every_pattern_compiles_and_matches_what_it_names() {
        for (re, good, bad) in [
            (&NAME_RE, "uu-social", "Uu"),
            (
                &HTTPS_URL_RE,
                "https://pve.example:8006/api2/json",
                "http://pve.example",
            ),
            (&SECRET_NAME_RE, "smtp-password", "-x"),
            (&USERNAME_RE, "admin_1", "1admin"),
            (&TOKEN_RE, "local-zfs", "a b"),
        ] {
            assert!(re.is_match(good), "{good}");
            assert!(!re.is_match(bad), "{bad}");
        }
    }
}
