//! SSH targets as specifications write them: `[user@]host[:port]` (`root@10.0.0.5`,
//! `deploy@mastodon.example.org:2222`, `[2001:db8::1]:22`).
//!
//! Why one place: the model checks the text (and the JSON Schema carries its pattern), and the deployment splits it
//! into NixOps4's `ssh.user`, `ssh.host` and port. Two readings of the same text would disagree on some input (an
//! IPv6 address, a port out of range); one parser cannot.

use std::sync::LazyLock;

/// The pattern of an SSH target, also the JSON Schema's `pattern`: an optional user (`[a-z_][a-z0-9_.-]*@`), a host
/// name or a bracketed IP address, an optional port of up to five digits (the range is checked by [`SshTarget::parse`]).
pub(crate) const PATTERN: &str = r"^([a-z_][a-z0-9_.-]*@)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$";

static REGEX: LazyLock<regex_lite::Regex> =
    LazyLock::new(|| regex_lite::Regex::new(PATTERN).expect("a valid pattern"));

/// An SSH target, split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SshTarget<'a> {
    /// The user to log in as, when given.
    pub user: Option<&'a str>,
    /// The host as written: a name, or an IP address in brackets (`[2001:db8::1]`).
    pub host: &'a str,
    /// The port, when given (1–65535).
    pub port: Option<u16>,
}

impl<'a> SshTarget<'a> {
    /// Reads `text` as `[user@]host[:port]`; `None` when it is not one (see [`PATTERN`]; port 0 and ports above
    /// 65535 are not ports).
    pub fn parse(text: &'a str) -> Option<Self> {
        let captures = REGEX.captures(text)?;
        let user = captures
            .get(1)
            .map(|user| user.as_str().trim_end_matches('@'));
        let host = captures.get(2)?.as_str();
        let port = match captures.get(6) {
            Some(port) => Some(port.as_str()[1..].parse::<u16>().ok().filter(|&p| p > 0)?),
            None => None,
        };
        Some(Self { user, host, port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_into_user_host_and_port() {
        let parse = |s| SshTarget::parse(s).map(|t| (t.user, t.host, t.port));
        assert_eq!(
            parse("root@10.0.0.5"),
            Some((Some("root"), "10.0.0.5", None))
        );
        assert_eq!(
            parse("deploy@host.example:2222"),
            Some((Some("deploy"), "host.example", Some(2222)))
        );
        assert_eq!(parse("host"), Some((None, "host", None)));
        assert_eq!(
            parse("[2001:db8::1]:22"),
            Some((None, "[2001:db8::1]", Some(22)))
        );
        assert_eq!(
            parse("root@[2001:db8::1]"),
            Some((Some("root"), "[2001:db8::1]", None))
        );
        for bad in [
            "root@",
            "host:0",
            "host:99999",
            "a b",
            "@host",
            "root@host:",
            "2001:db8::1",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
