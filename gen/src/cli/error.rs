//! How a subcommand ends, and the one mapping from that to fedigen's exit statuses.
//!
//! Why: every subcommand used to pick its own exit status at each failure, and the same failure (a folder that
//! cannot be read) got different statuses in different places. Now a subcommand returns a [`CliResult`]: a
//! [`Status`] when it did its job, a [`CliError`] when it could not. Library errors turn into a `CliError`
//! through `From`, keeping their class (invalid input, environment, a problem found), and `main` alone prints
//! the error and turns the class into the status README.md documents: 1 a check found a problem, 2 invalid
//! input, 3 the environment lacks something.

use std::fmt::Display;

use fedigen::edit::EditError;
use fedigen::generate::GenerateError;
use fedigen::io_error::IoError;
use fedigen::model::LoadError;
use fedigen::template::scaffold::ScaffoldError;
use fedigen::write::WriteError;

/// How a subcommand that did its job ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Everything as asked (exit status 0).
    Success,
    /// A check ran and found problems, already reported (exit status 1).
    Problems,
    /// `repro check`'s own status: 1 plus a bit per kind of finding (odd, at least 5), already reported.
    Findings(u8),
}

/// What kind of failure ended a subcommand: which exit status it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// A check found a problem in otherwise valid input (exit status 1).
    Problem,
    /// fedigen refuses the input: nothing was written (exit status 2).
    InvalidInput,
    /// The environment lacks something: a tool, a permission, a readable or writable folder (exit status 3).
    Environment,
}

impl Class {
    /// The environment's fault when `environment`, else the input's: for library errors that say which.
    fn environment_if(environment: bool) -> Self {
        if environment {
            Class::Environment
        } else {
            Class::InvalidInput
        }
    }

    /// The exit status of this class, as README.md documents it.
    pub(crate) fn exit_status(self) -> u8 {
        match self {
            Class::Problem => 1,
            Class::InvalidInput => 2,
            Class::Environment => 3,
        }
    }
}

/// Why a subcommand could not do its job: its class, and the message for people (printed once, by `main`, after
/// `error: `), or none when the subcommand reported the details itself (a rendered report, one line per problem).
#[derive(Debug)]
pub(crate) struct CliError {
    /// Which exit status it gets.
    pub(crate) class: Class,
    /// What to print after `error: `; `None` when already reported.
    pub(crate) message: Option<String>,
}

impl CliError {
    /// A failure of `class` with a message.
    pub(crate) fn new(class: Class, message: impl Display) -> Self {
        Self {
            class,
            message: Some(message.to_string()),
        }
    }

    /// Input fedigen refuses (exit status 2).
    pub(crate) fn invalid(message: impl Display) -> Self {
        Self::new(Class::InvalidInput, message)
    }

    /// Something the environment lacks (exit status 3).
    pub(crate) fn environment(message: impl Display) -> Self {
        Self::new(Class::Environment, message)
    }

    /// A problem a check found (exit status 1).
    pub(crate) fn problem(message: impl Display) -> Self {
        Self::new(Class::Problem, message)
    }

    /// A failure whose details the subcommand has printed already.
    pub(crate) fn reported(class: Class) -> Self {
        Self {
            class,
            message: None,
        }
    }

    /// A filesystem failure: always the environment's. The message says what failed and where, without the
    /// `(os error N)` tail (see [`fedigen::io_error`]).
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<std::path::PathBuf>,
        error: std::io::Error,
    ) -> Self {
        Self::from(IoError::new(action, path, error))
    }
}

/// What a subcommand returns; `main` turns it into the exit status.
pub(crate) type CliResult = Result<Status, CliError>;

impl From<ScaffoldError> for CliError {
    fn from(e: ScaffoldError) -> Self {
        match e {
            ScaffoldError::Name(_) | ScaffoldError::Exists { .. } => Self::invalid(e),
            ScaffoldError::Io { path, error } => Self::io("write", path, error),
        }
    }
}

impl From<IoError> for CliError {
    fn from(error: IoError) -> Self {
        Self::environment(error)
    }
}

impl From<WriteError> for CliError {
    fn from(error: WriteError) -> Self {
        Self::new(Class::environment_if(error.is_io()), error)
    }
}

impl From<LoadError> for CliError {
    fn from(error: LoadError) -> Self {
        Self::new(Class::environment_if(!error.is_invalid_input()), error)
    }
}

impl From<GenerateError> for CliError {
    fn from(error: GenerateError) -> Self {
        match error {
            GenerateError::InvalidSpec(load) => Self::from(*load),
            GenerateError::Write(write) => Self::from(write),
            GenerateError::Io(io)
            | GenerateError::VmIds(fedigen::deploy::tofu::VmIdsError::Io(io)) => Self::from(io),
            other => Self::invalid(other),
        }
    }
}

impl From<EditError> for CliError {
    fn from(error: EditError) -> Self {
        let class = match error {
            EditError::NotDefined { .. } | EditError::NoSuchItem { .. } => Class::Problem,
            _ => Class::InvalidInput,
        };
        Self::new(class, error)
    }
}

impl From<fedigen::repro::Error> for CliError {
    fn from(error: fedigen::repro::Error) -> Self {
        let class = match error.exit_code() {
            1 => Class::Problem,
            3 => Class::Environment,
            _ => Class::InvalidInput,
        };
        Self::new(class, error)
    }
}

/// Prints the error, if it has a message, and returns the exit status of the result: the one place where a
/// subcommand's outcome becomes fedigen's exit status.
pub(crate) fn exit_status(result: CliResult) -> u8 {
    match result {
        Ok(Status::Success) => 0,
        Ok(Status::Problems) => Class::Problem.exit_status(),
        Ok(Status::Findings(status)) => status,
        Err(error) => {
            if let Some(message) = error.message {
                eprintln!("error: {message}");
            }
            error.class.exit_status()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statuses README.md documents, class by class; and a filesystem failure is the environment's
    /// wherever it comes from (writing, comparing, planning).
    #[test]
    fn classes_keep_their_statuses() {
        assert_eq!(exit_status(Ok(Status::Success)), 0);
        assert_eq!(exit_status(Ok(Status::Problems)), 1);
        assert_eq!(exit_status(Ok(Status::Findings(9))), 9);
        assert_eq!(exit_status(Err(CliError::reported(Class::InvalidInput))), 2);
        let denied = || std::io::Error::from_raw_os_error(libc::EACCES);
        let write = WriteError::Io(IoError::new("write", "modules", denied()));
        assert_eq!(CliError::from(write).class, Class::Environment);
        let plan = GenerateError::Io(IoError::new("read", "deployments", denied()));
        assert_eq!(CliError::from(plan).class, Class::Environment);
        let hand = WriteError::HandWritten("modules/a.nix".into());
        assert_eq!(CliError::from(hand).class, Class::InvalidInput);
    }
}
