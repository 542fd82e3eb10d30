//! `fedigen storage apply|node-key`: Garage provisioning, as a thin layer over [`fedigen::storage`]. The NixOS
//! unit on the designated Garage node runs `apply`; the provider runs `node-key` once per node.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::cli::error::{Class, CliError, CliResult, Status};
use crate::cli::output::{info, outln};
use fedigen::storage::apply::{self, ApplyError, Waits};
use fedigen::storage::client::HttpAdmin;
use fedigen::storage::description::Description;
use fedigen::storage::node_key::{NodeKey, NodeKeyError, pub_path};
use fedigen::storage::s3_key::S3Key;

const APPLY_HELP: &str = "\
Examples:
  fedigen storage apply --description /etc/fedigen/storage.json                  # token from GARAGE_ADMIN_TOKEN
  fedigen storage apply --description storage.json --admin http://127.0.0.1:3903 --token-file /run/secrets/garage-admin
  fedigen storage apply --description storage.json --json                        # the changes as JSON, for a script

What it does, through Garage's admin API v2 (run it on ONE node: Garage wants a single layout writer):
  1. waits until the admin API answers and every described node is connected (--wait);
  2. stages only the layout roles that differ from the description (zone, capacity, the node's name as tag),
     removes nodes no longer described (their data is drained: stop such a machine only when `garage layout
     history` shows no draining version), reverts staged changes made by someone else, and applies version+1
     once — and not at all when nothing differs;
  3. waits until the cluster is healthy;
  4. reads every key and bucket in bulk (ListKeys, ListBucketsInfo: a call per thousand), then imports each
     missing key (id from the description, secret from its secret_file), refuses a key that exists with another
     secret (rotate: give it a new id), creates each missing bucket, sets website access, and makes each key's
     permissions on each bucket exactly the described ones (other keys' are revoked) — on --parallel
     connections at once (Garage checks every call's admin token with argon2, about 0.1 s of a core each).
A second run with the same description only reads: it prints nothing and its changing_calls is 0.

Exit status: 0 the cluster matches the description (changes printed one per line); 1 a step failed (Garage's error and what to do are printed); 2 the description is invalid (every problem with its JSON path; nothing changed); 3 Garage's admin API is unreachable, or the admin token or a key's secret file is missing.

Environment: GARAGE_ADMIN_TOKEN (or GARAGE_ADMIN_TOKEN_FILE), as the Garage unit's environment file gives it, when --token-file is not given.";

const NODE_KEY_HELP: &str = "\
Examples:
  fedigen storage node-key --out secrets/garage-ams1.key     # prints the node id for the specification
  fedigen storage node-key --out /var/lib/garage/meta/node_key
  fedigen storage node-key --hex --out garage-ams1.key        # paste into sops: provider/garage/nodes/ams1/node_key

Writes FILE (64 bytes: the ed25519 seed followed by the public key, the layout Garage reads as metadata_dir/node_key) with mode 0600, and FILE.pub (the 32-byte public key, Garage's node_key.pub). With --hex, FILE holds the same key as 128 hex digits and a newline (for sops and other text secret stores; the Garage module decodes it). Prints the node id, 64 hex digits, as `garage node id` shows it. Never overwrites: a node's key is its identity.

Exit status: 0 written, id printed; 2 FILE or FILE.pub exists (nothing written); 3 the folder cannot be written.";

/// Provision Garage object storage.
#[derive(Subcommand)]
pub enum StorageCommand {
    /// Bring a Garage cluster to a storage description: layout, buckets, keys and permissions, idempotently.
    #[command(after_long_help = APPLY_HELP)]
    Apply(ApplyArgs),
    /// Make a Garage node key pair and print its node id (for the specification and bootstrap_peers).
    #[command(after_long_help = NODE_KEY_HELP)]
    NodeKey(NodeKeyArgs),
    /// Make an application's S3 key file (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) and print its key id.
    #[command(after_long_help = S3_KEY_HELP)]
    S3Key(S3KeyArgs),
}

const S3_KEY_HELP: &str = "\
Examples:
  fedigen storage s3-key --out secrets/amstelland-mastodon-s3-key    # prints the key id (GK…)

Writes FILE (mode 0600): `AWS_ACCESS_KEY_ID=GK<24 hex>` and `AWS_SECRET_ACCESS_KEY=<64 hex>`, the environment file an
application reads and `fedigen storage apply` imports into Garage. Place it on the application's machine at
/run/secrets/<application>-s3-key and on the first Garage node at /run/secrets/garage-s3-key-<operator>-<application>
(`fedigen validate` and the machines' secrets check name both). Never overwrites: Garage cannot change an imported
key's secret, so a rotated key is a new file with a new id.

Exit status: 0 written, key id printed; 2 FILE exists (nothing written); 3 the folder cannot be written.";

/// `fedigen storage apply`.
#[derive(Args)]
pub struct ApplyArgs {
    /// The storage description (JSON, generated with the deployment).
    #[arg(long, value_name = "FILE")]
    description: PathBuf,
    /// The admin API of the Garage node to drive.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:3903")]
    admin: String,
    /// A file holding the admin token (else GARAGE_ADMIN_TOKEN or GARAGE_ADMIN_TOKEN_FILE).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// How long to wait for the nodes to be up, and then for the cluster to be healthy, in seconds each.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    wait: u64,
    /// Print the outcome as JSON: {"ok", "changes", "changing_calls", "layout_version"} or {"ok": false, "error"}.
    #[arg(long)]
    json: bool,
    /// How many connections provision keys and buckets at once (Garage checks each call's token on one core:
    /// more connections use more of its cores). 1: one call at a time.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    parallel: u16,
}

/// `fedigen storage node-key`.
#[derive(Args)]
pub struct NodeKeyArgs {
    /// Where to write the key (FILE.pub gets the public key).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Write FILE as 128 hex digits (and a newline) instead of 64 bytes: for a text secret store such as sops,
    /// whose values are strings. The Garage module's node-key step takes either form.
    #[arg(long)]
    hex: bool,
}

/// `fedigen storage s3-key` (its file is text already: `AWS_ACCESS_KEY_ID=…` lines).
#[derive(Args)]
pub struct S3KeyArgs {
    /// Where to write the key file.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Runs a `fedigen storage` subcommand.
pub fn run(command: StorageCommand) -> CliResult {
    match command {
        StorageCommand::Apply(args) => run_apply(args),
        StorageCommand::NodeKey(args) => run_node_key(args),
        StorageCommand::S3Key(args) => run_s3_key(args),
    }
}

fn read_token(path: &std::path::Path) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_owned())
        .map_err(|e| CliError::io("read the admin token from", path, e))
}

fn token(args: &ApplyArgs) -> Result<String, CliError> {
    let token = if let Some(path) = &args.token_file {
        read_token(path)?
    } else if let Some(t) = std::env::var_os("GARAGE_ADMIN_TOKEN").filter(|t| !t.is_empty()) {
        t.to_string_lossy().trim().to_owned()
    } else if let Some(path) = std::env::var_os("GARAGE_ADMIN_TOKEN_FILE").filter(|t| !t.is_empty())
    {
        read_token(std::path::Path::new(&path))?
    } else {
        return Err(CliError::environment(
            "no admin token: pass --token-file, or set GARAGE_ADMIN_TOKEN (or GARAGE_ADMIN_TOKEN_FILE) as Garage's environment file does",
        ));
    };
    if token.is_empty() {
        return Err(CliError::environment("the admin token is empty"));
    }
    Ok(token)
}

fn run_apply(args: ApplyArgs) -> CliResult {
    let source = args.description.display().to_string();
    let text = std::fs::read_to_string(&args.description)
        .map_err(|e| CliError::io("read", &args.description, e))?;
    let description = Description::parse(&text, &source).map_err(CliError::invalid)?;
    let token = token(&args)?;
    let mut admin = HttpAdmin::new(&args.admin, &token);
    let mut extra: Vec<HttpAdmin> = if args.parallel > 1 {
        (0..args.parallel)
            .map(|_| HttpAdmin::new(&args.admin, &token))
            .collect()
    } else {
        Vec::new()
    };
    let waits = Waits {
        nodes: Duration::from_secs(args.wait),
        health: Duration::from_secs(args.wait),
        ..Waits::default()
    };
    let mut boxed: Vec<Box<dyn fedigen::storage::client::Admin + Send + '_>> = extra
        .iter_mut()
        .map(|c| Box::new(c) as Box<dyn fedigen::storage::client::Admin + Send + '_>)
        .collect();
    let outcome = apply::apply_with(&mut admin, &mut boxed, &description, waits);
    drop(boxed);
    match outcome {
        Ok(mut report) => {
            // The clients' own count of POSTs: what went over the wire.
            report.changing_calls = admin.posts + extra.iter().map(|c| c.posts).sum::<usize>();
            if args.json {
                let v = serde_json::json!({
                    "ok": true,
                    "changes": report.changes,
                    "changing_calls": report.changing_calls,
                    "layout_version": report.layout_version,
                });
                outln!("{v}");
            } else {
                for line in &report.changes {
                    outln!("{line}");
                }
                if report.changes.is_empty() {
                    info!(
                        "nothing to change: the cluster matches {source} (layout version {})",
                        report.layout_version
                    );
                } else {
                    info!(
                        "{} change(s), layout version {}",
                        report.changes.len(),
                        report.layout_version
                    );
                }
            }
            Ok(Status::Success)
        }
        Err(e) => {
            let class = match e {
                ApplyError::Step { .. } => Class::Problem,
                ApplyError::Unreachable(_) | ApplyError::Secret(_) => Class::Environment,
            };
            if args.json {
                outln!(
                    "{}",
                    serde_json::json!({ "ok": false, "error": e.to_string() })
                );
            }
            Err(CliError::new(class, e))
        }
    }
}

fn run_node_key(args: NodeKeyArgs) -> CliResult {
    let key = NodeKey::generate().map_err(CliError::environment)?;
    let written = if args.hex {
        key.write_new_hex(&args.out)
    } else {
        key.write_new(&args.out)
    };
    match written {
        Ok(()) => {
            outln!("{}", key.id());
            info!(
                "wrote {} (mode 0600) and {}; the node id above goes into the specification",
                args.out.display(),
                pub_path(&args.out).display()
            );
            Ok(Status::Success)
        }
        Err(e @ NodeKeyError::Exists(_)) => Err(CliError::invalid(e)),
        Err(e @ NodeKeyError::Io(_)) => Err(CliError::environment(e)),
    }
}

fn run_s3_key(args: S3KeyArgs) -> CliResult {
    let key = S3Key::generate().map_err(CliError::environment)?;
    match key.write_new(&args.out) {
        Ok(()) => {
            outln!("{}", key.id);
            info!(
                "wrote {} (mode 0600); place it on the application's machine and on the first Garage node",
                args.out.display()
            );
            Ok(Status::Success)
        }
        Err(e @ NodeKeyError::Exists(_)) => Err(CliError::invalid(e)),
        Err(e @ NodeKeyError::Io(_)) => Err(CliError::environment(e)),
    }
}
