//! Reading a file where a job says it is: on this machine, or on another over ssh (`ssh host cat -- path`).
//! Used by the identity step and by verification; the bytes are secrets, so they are returned, never logged.

use std::process::Command;

use super::exec::{self, ExecError};
use super::job::Location;
use crate::io_error::IoError;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The location is not an absolute path or `ssh://host/path`.
    #[error("{0}")]
    Location(String),
    /// Reading it here failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// ssh failed or is missing.
    #[error(transparent)]
    Exec(#[from] ExecError),
}

/// The bytes of the file at `location`.
pub fn read(location: &str) -> Result<Vec<u8>, RemoteError> {
    match Location::parse(location).map_err(RemoteError::Location)? {
        Location::Local(p) => std::fs::read(&p).map_err(|e| IoError::new("read", &p, e).into()),
        Location::Ssh { host, path } => {
            let mut c = Command::new("ssh");
            c.args([host.as_str(), "--", "cat", "--", path.as_str()]);
            Ok(exec::checked(c, &format!("read {location}"))?.stdout)
        }
    }
}
