//! Filesystem failures said for people: what fedigen tried, on which path, and what the system answered, without
//! Rust's `(os error 13)` tails — "cannot read deployments/x.nix: permission denied".
//!
//! Why one place: every part of fedigen that reads or writes files reports such failures, and every one of them
//! is the environment's fault (exit status 3) rather than the input's. One type carries that class, and one
//! function (`describe`) words the system's answer, so the messages read alike everywhere.

use std::fmt;
use std::path::{Path, PathBuf};

/// A filesystem operation that failed: the action (`"read"`, `"write"`, `"create"`, …), the path, and the error.
#[derive(Debug, thiserror::Error)]
pub struct IoError {
    /// What fedigen tried, as a verb that reads after "cannot": `read`, `write`, `create`, `remove`, `lock`, …
    pub action: &'static str,
    /// The path it tried it on.
    pub path: PathBuf,
    /// What the system answered.
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    /// An error of `action` on `path`.
    pub fn new(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self {
            action,
            path: path.into(),
            source,
        }
    }

    /// A `map_err` adapter: `std::fs::read(&p).map_err(IoError::on("read", &p))`.
    pub fn on<'a>(
        action: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> Self + 'a {
        move |source| Self::new(action, path, source)
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} {}: {}",
            self.action,
            self.path.display(),
            describe(&self.source)
        )
    }
}

/// The system's answer in an `io::Error`, for people: lower-case, without the `(os error N)` tail Rust appends
/// (`"Permission denied (os error 13)"` → `"permission denied"`).
pub(crate) fn describe(error: &std::io::Error) -> String {
    let text = error.to_string();
    let text = match text.rsplit_once(" (os error ") {
        Some((message, tail)) if tail.ends_with(')') => message.to_owned(),
        _ => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        // "Permission denied" → "permission denied", but an acronym ("EOF while …") keeps its case.
        Some(first) if chars.next().is_some_and(char::is_lowercase) => first
            .to_lowercase()
            .chain(text[first.len_utf8()..].chars())
            .collect(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_lose_their_number_and_capital() {
        let denied = std::io::Error::from_raw_os_error(libc::EACCES);
        assert!(denied.to_string().contains("(os error"), "{denied}");
        assert_eq!(describe(&denied), "permission denied");
        let error = IoError::new("read", "deployments/x.nix", denied);
        assert_eq!(
            error.to_string(),
            "cannot read deployments/x.nix: permission denied"
        );
        assert_eq!(
            describe(&std::io::Error::from_raw_os_error(libc::ENOTDIR)),
            "not a directory"
        );
    }

    #[test]
    fn other_errors_keep_their_text() {
        assert_eq!(
            describe(&std::io::Error::other("EOF while parsing")),
            "EOF while parsing"
        );
        assert_eq!(
            describe(&std::io::Error::other("nul byte found in path")),
            "nul byte found in path"
        );
    }
}
