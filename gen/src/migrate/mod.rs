//! Migration of an operator between providers (`fedigen migrate run|verify|rollback|manifest`): the code that
//! moves databases, buckets, directories and identity secrets, journals every step and proves the result.
//!
//! It runs on the machines (called by generated units or over ssh) and, in the tests, against real PostgreSQL,
//! Garage and rclone on loopback, so both exercise the same code. Its one input is a [`job::Job`] (JSON, no
//! secrets: files named in it are read when a step runs).
//!
//! - `job.rs` — the job, validated with JSON paths;
//! - `journal.rs` — which steps are done, replaced atomically;
//! - `run.rs` — the steps in order (bulk copy, freeze, delta, dump/restore, identity, verify, start, health,
//!   DNS), resumable, and the rollback;
//! - `verify.rs` — the comparison of target and source;
//! - `replicate.rs` — a database moved by logical replication while the source serves (the freeze waits only
//!   for its last changes), with the fall-back to dump and restore when the source does not allow it;
//! - `tree.rs` (folders: exact incremental copy, checksum manifests), `pg.rs` (pg_dump/pg_restore/psql), `s3.rs`
//!   (rclone configured through its environment), `remote.rs` (a file here or over ssh), `exec.rs` (children
//!   that die with fedigen).

pub(crate) mod exec;
pub mod job;
pub mod journal;
pub(crate) mod mysql;
pub(crate) mod pg;
pub mod plan;
pub mod remote;
pub(crate) mod replicate;
pub mod run;
pub mod s3;
pub mod tree;
pub(crate) mod urls;
pub mod verify;
