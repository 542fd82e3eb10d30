//! Garage object storage: the provisioning engine that runs on the Garage nodes (`fedigen storage apply`
//! called by the generated NixOS unit) and in the tests against the real Garage, so both run the same code.
//!
//! - [`description`]: the generated JSON of the cluster, its buckets and keys (no secrets).
//! - [`client`]: a small blocking client of Garage's admin API v2.
//! - [`apply`]: layout, buckets, keys and permissions made to match a description, idempotently.
//! - [`node_key`]: node key pairs made by the provider, so the nodes' ids are known before they start.
//! - [`s3_key`]: applications' S3 keys made by the provider, so the secret never travels from Garage.
//! - [`config`]: a node's `garage.toml` from the settings the NixOS module gets.
//!
//! Public (not `pub(crate)`) because the component tests in `gen/tests/storage_garage.rs` start Garage with
//! these settings and descriptions.

pub mod apply;
pub mod client;
pub mod config;
pub mod description;
#[cfg(test)]
mod fake;
mod inventory;
pub mod node_key;
mod parallel;
pub mod s3_key;
