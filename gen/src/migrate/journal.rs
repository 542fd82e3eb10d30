//! The journal of a migration run: which steps are done, kept in a folder (`--journal DIR`) beside the
//! database dumps. Every change is an atomic replacement of `journal.json` (written beside it, synced,
//! renamed, the folder synced), so a run killed at any moment leaves either the old or the new journal, never
//! half of one; a step is recorded only after it completed, so a killed step is simply done again (each step is
//! idempotent).
//!
//! The journal remembers the job it belongs to (a SHA-256 of its JSON): resuming with another job is refused,
//! since the steps done would not be the steps of that job.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::io_error::IoError;

/// What `journal.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    /// SHA-256 (hex) of the job's canonical JSON.
    job: String,
    /// The steps completed, by name.
    done: BTreeSet<String>,
}

/// An open journal.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    record: Record,
}

/// Why a journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading or writing it failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// It belongs to another job, or is not a journal.
    #[error("{0}")]
    Mismatch(String),
}

/// The SHA-256 (hex) of a job's canonical JSON: what a journal is tied to.
pub fn job_digest(job_json: &str) -> String {
    Sha256::digest(job_json.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Journal {
    /// Opens the journal in `dir` for the job whose digest is `job`, creating the folder (mode 0700: it holds
    /// database dumps) and an empty journal when there is none.
    pub fn open(dir: &Path, job: &str) -> Result<Journal, JournalError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| IoError::new("create the journal folder", dir, e))?;
        let file = dir.join("journal.json");
        let record = match fs::read_to_string(&file) {
            Ok(text) => {
                let record: Record = serde_json::from_str(&text).map_err(|e| {
                    JournalError::Mismatch(format!(
                        "{} is not a migration journal ({e}); give another --journal folder",
                        file.display()
                    ))
                })?;
                if record.job != job {
                    return Err(JournalError::Mismatch(format!(
                        "{} belongs to another job (its steps would not be this job's): finish or roll back that one, or give another --journal folder",
                        file.display()
                    )));
                }
                record
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Record {
                job: job.to_owned(),
                done: BTreeSet::new(),
            },
            Err(e) => return Err(IoError::new("read", &file, e).into()),
        };
        Ok(Journal {
            dir: dir.to_owned(),
            record,
        })
    }

    /// The journal's folder (dumps go into it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `step` is done.
    pub fn is_done(&self, step: &str) -> bool {
        self.record.done.contains(step)
    }

    /// The steps done, sorted.
    pub fn done(&self) -> impl Iterator<Item = &str> {
        self.record.done.iter().map(String::as_str)
    }

    /// Records `step` as done, durably, before returning.
    pub fn mark(&mut self, step: &str) -> Result<(), JournalError> {
        if self.record.done.insert(step.to_owned()) {
            self.save()?;
        }
        Ok(())
    }

    /// Forgets every step (after a rollback: the next run starts from the bulk copy again).
    pub fn reset(&mut self) -> Result<(), JournalError> {
        self.record.done.clear();
        self.save()
    }

    fn save(&self) -> Result<(), JournalError> {
        let text = serde_json::to_string_pretty(&self.record).expect("a journal serialises") + "\n";
        write_atomic(&self.dir.join("journal.json"), text.as_bytes(), 0o600)?;
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically: a new file beside it (mode `mode` from the start), synced, renamed over
/// `path`, and the folder synced. A reader sees the old content or the new, never part of it.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), IoError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.fedigen-tmp"));
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| IoError::new("create", &tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| IoError::new("write", &tmp, e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| IoError::new("replace", path, e))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_survive_reopening_and_another_job_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("j");
        let mut journal = Journal::open(&j, "aaa").unwrap();
        assert!(!journal.is_done("bulk"));
        journal.mark("bulk").unwrap();
        journal.mark("freeze").unwrap();
        let again = Journal::open(&j, "aaa").unwrap();
        assert_eq!(again.done().collect::<Vec<_>>(), ["bulk", "freeze"]);
        let err = Journal::open(&j, "bbb").unwrap_err();
        assert!(err.to_string().contains("belongs to another job"), "{err}");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            fs::metadata(&j).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let mut again = again;
        again.reset().unwrap();
        assert_eq!(Journal::open(&j, "aaa").unwrap().done().count(), 0);
    }

    #[test]
    fn a_leftover_temporary_file_does_not_stop_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(dir.path().join(".f.fedigen-tmp"), "half").unwrap();
        write_atomic(&path, b"whole", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "whole");
        assert!(!dir.path().join(".f.fedigen-tmp").exists());
    }
}
