//! The machines' SSH host keys, which NixOps4 checks strictly (nixops4-nixos writes a one-line `known_hosts` of
//! `ssh.host` and `ssh.hostPublicKey` and connects with `StrictHostKeyChecking=yes`).
//!
//! Why a file of its own: a host key exists only once the machine does, so it is a fact the provider learns after
//! provisioning (`ssh-keyscan`), not part of the specification, and never generated. It lives beside the
//! specification as `<spec stem>.host-keys.toml` (`examples/provider.host-keys.toml` for
//! `examples/provider.toml`), one `machine = "ssh-ed25519 AAAA…"` line per machine. `fedigen validate` and
//! `fedigen generate` read it; a malformed key or a machine the specification does not have is an error naming the
//! file, line and column, and the keys are written into the deployment as literal strings, so evaluating the
//! deployment never throws. Machines without a key are left out of the deployment until theirs is there; when the
//! file exists, `validate` reports each of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::PlannedMachine;

/// The end of a host-key file's name: `<spec stem>` followed by this.
pub(crate) const HOST_KEYS_SUFFIX: &str = ".host-keys.toml";

/// The key types an SSH server offers as host keys, as `ssh-keyscan` prints them.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// The host keys of a specification's machines, by machine name, each as `<type> <base64>` (a comment after
/// the key is dropped: only the key goes into `known_hosts`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostKeys {
    /// Where they were read from, relative as given (for messages); `None` when there is no file.
    pub file: Option<PathBuf>,
    /// Machine name → `<type> <base64>`.
    pub keys: BTreeMap<String, String>,
    /// Warnings about lines for machines the specification no longer has (`file:line:column`, the machine, and to
    /// delete the line): an operator removing a machine is not blocked by its key; the key is not used.
    pub stale: Vec<String>,
}

/// The host-key file of the specification at `spec`: `<folder>/<stem>.host-keys.toml`.
pub fn host_keys_path(spec: &Path) -> PathBuf {
    let stem = spec
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    spec.with_file_name(format!("{stem}{HOST_KEYS_SUFFIX}"))
}

impl HostKeys {
    /// The machines of `machines` that have no key, in plan order.
    pub fn missing<'a>(&self, machines: &'a [PlannedMachine]) -> Vec<&'a str> {
        machines
            .iter()
            .filter(|m| !self.keys.contains_key(&m.name))
            .map(|m| m.name.as_str())
            .collect()
    }

    /// Reads the host keys of the specification at `spec` for its `machines`. No file is no keys; a file that
    /// cannot be read or parsed, or a malformed key, is a problem, each message naming the file, line and column,
    /// and the machine. A key of a machine the specification does not have is left out, with a warning in
    /// [`HostKeys::stale`].
    pub fn load(spec: &Path, machines: &[PlannedMachine]) -> Result<Self, Vec<String>> {
        Self::load_shown(spec, spec, machines)
    }

    /// [`HostKeys::load`], with messages naming the file beside `shown` (the specification as the user knows
    /// it, e.g. relative to the repository) rather than beside `spec` (where it is read).
    pub fn load_shown(
        spec: &Path,
        shown: &Path,
        machines: &[PlannedMachine],
    ) -> Result<Self, Vec<String>> {
        let read = host_keys_path(spec);
        let path = host_keys_path(shown);
        let text = match std::fs::read_to_string(&read) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(vec![format!(
                    "{}: cannot read the SSH host keys: {}",
                    path.display(),
                    crate::io_error::describe(&e)
                )]);
            }
        };
        Self::parse(&path, &text, machines)
    }

    /// Reads host keys from `text`, the contents of `path` (see [`HostKeys::load`]).
    pub fn parse(
        path: &Path,
        text: &str,
        machines: &[PlannedMachine],
    ) -> Result<Self, Vec<String>> {
        let at = |offset: usize| {
            let (line, column) = line_column(text, offset);
            format!("{}:{line}:{column}", path.display())
        };
        let table: BTreeMap<String, toml::Spanned<toml::Value>> = match toml::from_str(text) {
            Ok(table) => table,
            Err(e) => {
                let offset = e.span().map_or(0, |s| s.start);
                return Err(vec![format!(
                    "{}: not a TOML table of `machine = \"<key>\"` lines: {}",
                    at(offset),
                    e.message()
                )]);
            }
        };
        let mut problems = Vec::new();
        let mut stale = Vec::new();
        let mut keys = BTreeMap::new();
        for (machine, value) in &table {
            let where_ = at(value.span().start);
            if !machines.iter().any(|m| &m.name == machine) {
                let known: Vec<&str> = machines.iter().map(|m| m.name.as_str()).collect();
                stale.push(format!(
                    "{where_}: the specification has no machine `{machine}`, so its host key is not used: delete \
                     the line `{machine} = …` (of a machine that is gone), or correct the name; its machines are {}",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ));
                continue;
            }
            let Some(text) = value.get_ref().as_str() else {
                problems.push(format!(
                    "{where_}: the host key of machine `{machine}` must be a string, \
                     `{machine} = \"ssh-ed25519 AAAA…\"`"
                ));
                continue;
            };
            match parse_key(text) {
                Ok(key) => {
                    keys.insert(machine.clone(), key);
                }
                Err(why) => problems.push(format!(
                    "{where_}: the host key of machine `{machine}` is not an SSH public key: {why}"
                )),
            }
        }
        if problems.is_empty() {
            Ok(Self {
                file: Some(path.to_owned()),
                keys,
                stale,
            })
        } else {
            Err(problems)
        }
    }
}

/// The warnings `fedigen validate` gives about the host keys of the specification at `spec`: each key of a machine
/// the specification does not have ([`HostKeys::stale`]). Empty when the file cannot be read or has problems
/// (those are [`deployment_problems`]).
pub fn stale_keys(spec: &Path, machines: &[PlannedMachine]) -> Vec<String> {
    HostKeys::load(spec, machines)
        .map(|keys| keys.stale)
        .unwrap_or_default()
}

/// What `fedigen validate` says about the host keys of the specification at `spec`: the problems (a file that
/// cannot be read, a malformed key, and, once the file exists, each machine without a key,
/// with the `ssh-keyscan` line that finds it), or `Ok(None)` when all is well, or `Ok(Some(note))` when there is
/// no file yet (before the first deployment: the machines do not exist, so their keys cannot be known).
pub fn deployment_problems(
    spec: &Path,
    machines: &[PlannedMachine],
) -> Result<Option<String>, Vec<String>> {
    let keys = HostKeys::load(spec, machines)?;
    let path = host_keys_path(spec);
    if keys.file.is_none() {
        if machines.is_empty() {
            return Ok(None);
        }
        return Ok(Some(format!(
            "no SSH host keys yet ({} does not exist): the NixOps4 deployment has no machines until it does; once \
             the machines run, write each one's `ssh-keyscan -t ed25519 <host>` key there (README, \
             \"Deploying with NixOps4\")",
            path.display()
        )));
    }
    let problems: Vec<String> = machines
        .iter()
        .filter(|m| !keys.keys.contains_key(&m.name))
        .map(|m| {
            let host = m.deploy_target().host;
            format!(
                "{}: no SSH host key for machine `{}`, so NixOps4 cannot deploy it: add the line `{} = \
                 \"ssh-ed25519 AAAA…\"` with the key `ssh-keyscan -t ed25519 {host}` prints (after the host name)",
                path.display(),
                m.name,
                m.name
            )
        })
        .collect();
    if problems.is_empty() {
        Ok(None)
    } else {
        Err(problems)
    }
}

/// 1-based line and column (in characters) of a byte offset of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Checks one host key, `<type> <base64> [comment]`, and returns `<type> <base64>`. The base64 must decode to
/// the SSH wire form of a key of that type (a length-prefixed type name first, and for Ed25519 exactly one
/// 32-byte key), so a truncated or mistyped paste is caught here and not by ssh at deployment time.
pub(crate) fn parse_key(text: &str) -> Result<String, String> {
    if text.contains(['\n', '\r']) {
        return Err("it spans several lines; a key is one line, `<type> <base64>`".to_owned());
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let (kind, data) = match words.as_slice() {
        [] => {
            return Err(
                "it is empty; paste the line `ssh-keyscan` prints, without the host name"
                    .to_owned(),
            );
        }
        [kind, data, ..] if KEY_TYPES.contains(kind) => (*kind, *data),
        [_, kind, ..] if KEY_TYPES.contains(kind) => {
            return Err(format!(
                "it starts with `{}`, not a key type; `ssh-keyscan` prints the host name first: keep only \
                 `{kind} AAAA…`",
                shorten(words[0])
            ));
        }
        [kind] if KEY_TYPES.contains(kind) => {
            return Err(format!("`{kind}` is followed by no key (`{kind} AAAA…`)"));
        }
        [kind, ..] => {
            return Err(format!(
                "`{}` is not a host key type; one of {}",
                shorten(kind),
                KEY_TYPES.join(", ")
            ));
        }
    };
    let blob = decode_base64(data).ok_or_else(|| {
        format!(
            "`{}` is not base64 (A–Z, a–z, 0–9, `+`, `/`, `=` padding); copy the whole key",
            shorten(data)
        )
    })?;
    let named = read_string(&blob, 0);
    match named {
        Some((name, _)) if name == kind.as_bytes() => {}
        Some((name, _)) => {
            return Err(format!(
                "the key says it is `{}`, not `{kind}`; keep the type `ssh-keyscan` printed with it",
                shorten(&String::from_utf8_lossy(name))
            ));
        }
        None => {
            return Err(
                "the base64 is not an SSH key (cut short or mistyped?); copy the whole key"
                    .to_owned(),
            );
        }
    }
    if kind == "ssh-ed25519" {
        let rest = 4 + kind.len();
        match read_string(&blob, rest) {
            Some((key, end)) if key.len() == 32 && end == blob.len() => {}
            _ => {
                return Err(
                    "an Ed25519 key holds one 32-byte key (68 base64 characters after `AAAAC3NzaC1lZDI1NTE5`); \
                     this one is cut short or too long"
                        .to_owned(),
                );
            }
        }
    }
    Ok(format!("{kind} {data}"))
}

/// A value quoted in a message, cut to a readable length.
fn shorten(text: &str) -> String {
    let limit = crate::model::diagnostic::MAX_QUOTED;
    if text.chars().count() > limit {
        format!("{}…", text.chars().take(limit).collect::<String>())
    } else {
        text.to_owned()
    }
}

/// An SSH wire-format string at `at` of `blob`: a big-endian `u32` length and that many bytes; with where it ends.
fn read_string(blob: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let len = u32::from_be_bytes(blob.get(at..at + 4)?.try_into().ok()?) as usize;
    let end = (at + 4).checked_add(len)?;
    Some((blob.get(at + 4..end)?, end))
}

/// Standard base64 with its `=` padding (what OpenSSH writes); `None` for anything else.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return None;
    }
    let padding = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    if padding > 2 {
        return None;
    }
    let value = |b: u8| -> Option<u32> {
        Some(match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let data = &bytes[..bytes.len() - padding];
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in data.chunks(4) {
        let mut acc = 0u32;
        for &b in chunk {
            acc = acc << 6 | value(b)?;
        }
        match chunk.len() {
            4 => out.extend_from_slice(&acc.to_be_bytes()[1..]),
            // Two characters carry one byte and three carry two; the unused low bits must be zero.
            3 if acc & 0b11 == 0 => out.extend_from_slice(&(acc >> 2).to_be_bytes()[2..]),
            2 if acc & 0b1111 == 0 => out.push((acc >> 4) as u8),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::MachineRole;

    /// A real Ed25519 host key (`ssh-keygen -t ed25519`; the private half was thrown away).
    pub(crate) const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPssoi5CP6Eb7yxEd85YqLz5HwfrNLg/8NvVrU0erYM5";

    fn machine(name: &str) -> PlannedMachine {
        PlannedMachine {
            name: name.to_owned(),
            file: format!("{name}.nix"),
            domain: "example.org".to_owned(),
            role: MachineRole::GarageNode(name.to_owned()),
            ssh: None,
            network: None,
        }
    }

    #[test]
    fn real_keys_are_accepted_and_comments_dropped() {
        assert_eq!(parse_key(KEY).as_deref(), Ok(KEY));
        assert_eq!(
            parse_key(&format!("  {KEY} root@host ")).as_deref(),
            Ok(KEY)
        );
    }

    #[test]
    fn malformed_keys_are_refused_with_the_reason() {
        let data = KEY.split_once(' ').unwrap().1;
        let cases = [
            ("", "empty"),
            (&format!("host.example {KEY}") as &str, "host name first"),
            ("ssh-ed25519", "followed by no key"),
            (&format!("ssh-dss {data}"), "not a host key type"),
            (
                &format!("ssh-ed25519 {}", &data[..data.len() - 4]),
                "cut short",
            ),
            (&format!("ssh-ed25519 {data}AAAA"), "too long"),
            (&format!("ssh-rsa {data}"), "says it is `ssh-ed25519`"),
            ("ssh-ed25519 AAAA!AAA", "not base64"),
            (&format!("{KEY}\nssh-ed25519 {data}"), "several lines"),
        ];
        for (text, why) in cases {
            let error = parse_key(text).expect_err(text);
            assert!(error.contains(why), "{text:?}: {error}");
        }
    }

    #[test]
    fn problems_name_the_file_line_column_and_machine() {
        let machines = [machine("garage-a"), machine("garage-b")];
        let path = Path::new("specs/p.host-keys.toml");
        let text = format!(
            "garage-a = \"{KEY}\"\ngarage-b = \"ssh-ed25519 AAAA\"\ngarage-c = \"{KEY}\"\n"
        );
        let problems = HostKeys::parse(path, &text, &machines).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0]
                .starts_with("specs/p.host-keys.toml:2:12: the host key of machine `garage-b`")
        );
        let keys = HostKeys::parse(path, &format!("garage-a = \"{KEY}\"\n"), &machines).unwrap();
        assert_eq!(keys.missing(&machines), ["garage-b"]);
        let syntax = HostKeys::parse(path, "garage-a = \n", &machines).unwrap_err();
        assert!(
            syntax[0].starts_with("specs/p.host-keys.toml:1:"),
            "{syntax:?}"
        );
    }

    /// A key left for a machine the specification no longer has (an operator removed it) does not block: the
    /// keys of the other machines are read, and a warning names the line, the machine and what to do.
    #[test]
    fn a_key_of_a_machine_that_is_gone_is_a_warning() {
        let machines = [machine("garage-a")];
        let path = Path::new("specs/p.host-keys.toml");
        let text = format!("garage-a = \"{KEY}\"\ngarage-gone = \"{KEY}\"\n");
        let keys = HostKeys::parse(path, &text, &machines).expect("a stale key is no error");
        assert_eq!(keys.keys.keys().collect::<Vec<_>>(), ["garage-a"]);
        assert_eq!(
            keys.stale,
            [
                "specs/p.host-keys.toml:2:15: the specification has no machine `garage-gone`, so its host key is not used: delete the line `garage-gone = …` (of a machine that is gone), or correct the name; its machines are garage-a"
            ]
        );
        assert!(keys.missing(&machines).is_empty());
    }

    #[test]
    fn the_file_is_named_after_the_specification() {
        assert_eq!(
            host_keys_path(Path::new("examples/provider.toml")),
            Path::new("examples/provider.host-keys.toml")
        );
    }

    proptest::proptest! {
        /// Base64 round trip: what is encoded decodes to the same bytes, and one changed character of a key is
        /// either caught or decodes to different bytes (never silently the same key).
        #[test]
        fn base64_decodes_what_openssh_encodes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            let encoded = encode(&bytes);
            if bytes.is_empty() {
                proptest::prop_assert_eq!(decode_base64(&encoded), None);
            } else {
                proptest::prop_assert_eq!(decode_base64(&encoded), Some(bytes));
            }
        }
    }

    /// A plain reference encoder for the property above.
    fn encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
