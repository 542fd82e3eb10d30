//! `fedigen provision`: what provisioning on Proxmox would create, change or destroy, found by comparing the
//! OpenTofu configuration a generation would write (`deployments/tofu/main.tf.json`) with the previous one.
//!
//! Why not `tofu plan`: that needs the cluster and its token; this needs neither and runs in CI on a pull
//! request, so a reviewer sees "garage-ams1: cores 2 → 4" before anyone applies. It says nothing about what the
//! cluster really holds (a VM changed by hand, one never applied): `tofu plan` does.

use std::path::PathBuf;

use clap::Args;
use serde_json::{Value, json};

use crate::cli::error::{CliError, CliResult, Status};
use fedigen::deploy::tofu::{self, Change, show};

/// Arguments of `fedigen provision`.
#[derive(Args)]
pub struct ProvisionArgs {
    /// The previous generation's OpenTofu configuration to compare with (default: the repository's committed
    /// `deployments/tofu/main.tf.json`; when there is none, every VM is new).
    #[arg(long, value_name = "FILE")]
    previous: Option<PathBuf>,
    /// Print the comparison as JSON on standard output, for CI jobs: `{"previous", "changed", "create":
    /// [{"resource", "fields": {field: value}}], "change": [{"resource", "fields": [{"field", "from",
    /// "to"}]}], "destroy": [resource], "settings": [{"path", "from", "to"}]}`. Same exit status.
    #[arg(long)]
    json: bool,
    /// The repository (default: the current directory or the nearest parent with a `templates/` folder).
    #[arg(long)]
    repo: Option<PathBuf>,
    /// The specification to provision (default: the repository's `examples/provider.toml`).
    #[arg(long)]
    spec: Option<PathBuf>,
}

/// Runs `fedigen provision`.
pub fn run(args: ProvisionArgs) -> CliResult {
    let (repo, planned) = crate::cli::generate::plan_repository(args.repo, args.spec.as_deref())?;
    let main = tofu::main_path();
    let Some(next) = planned.files.get(&main) else {
        return Err(CliError::invalid(
            "the specification does not provision on Proxmox (provider.runtime.backend is not \"proxmox\"), so \
             there is no OpenTofu configuration to compare",
        ));
    };
    let next: Value = serde_json::from_str(next).expect("fedigen writes JSON");
    let (previous_name, previous_path) = match &args.previous {
        Some(file) => (file.display().to_string(), file.clone()),
        None => (main.display().to_string(), repo.join(&main)),
    };
    let previous = match std::fs::read_to_string(&previous_path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            let message = e.to_string();
            // serde_json ends its message with the place, which is said first here.
            let message = message
                .rfind(" at line ")
                .map_or(message.as_str(), |at| &message[..at]);
            CliError::invalid(format_args!(
                "{previous_name}:{}:{}: not an OpenTofu JSON configuration: {message}; pass the main.tf.json \
                 of a previous generation",
                e.line(),
                e.column()
            ))
        })?,
        // No previous generation in the repository: everything is new. A file asked for must exist.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && args.previous.is_none() => {
            json!({})
        }
        Err(e) => return Err(CliError::io("read", previous_path, e)),
    };
    let changes = tofu::diff(&previous, &next);
    if args.json {
        crate::cli::output::outln!("{}", verdict_json(&previous_name, &changes));
    } else {
        crate::cli::output::info!(
            "Compared with {previous_name}, without asking Proxmox (this is not `tofu plan`):"
        );
        for change in &changes {
            crate::cli::output::outln!("{}", describe(change));
        }
        let count = |f: fn(&Change) -> bool| changes.iter().filter(|c| f(c)).count();
        let summary = format!(
            "{} to create, {} to change, {} to destroy, {} other settings changed",
            count(|c| matches!(c, Change::Create { .. })),
            count(|c| matches!(c, Change::Change { .. })),
            count(|c| matches!(c, Change::Destroy { .. })),
            count(|c| matches!(c, Change::Setting { .. })),
        );
        if changes.is_empty() {
            crate::cli::output::info!("No changes: provisioning is as in {previous_name}.");
        } else {
            crate::cli::output::info!(
                "{summary}. Review, commit the regenerated deployments/, then `tofu plan` and `tofu apply`."
            );
        }
    }
    Ok(if changes.is_empty() {
        Status::Success
    } else {
        Status::Problems
    })
}

/// One change as a line for people: `create proxmox_virtual_environment_vm.a: vm_id 103, cpu.cores 2, …`,
/// `change …: cpu.cores 2 → 4`, `destroy …`.
fn describe(change: &Change) -> String {
    match change {
        Change::Create { resource, fields } => {
            let fields: Vec<String> = fields
                .iter()
                .map(|(f, v)| format!("{f} {}", show(Some(v))))
                .collect();
            format!("create  {resource}: {}", fields.join(", "))
        }
        Change::Change { resource, fields } => {
            let fields: Vec<String> = fields
                .iter()
                .map(|(f, from, to)| format!("{f} {} → {}", show(from.as_ref()), show(to.as_ref())))
                .collect();
            format!("change  {resource}: {}", fields.join(", "))
        }
        Change::Destroy { resource } => format!("destroy {resource}"),
        Change::Setting { path, from, to } => format!(
            "setting {path}: {} → {}",
            show(from.as_ref()),
            show(to.as_ref())
        ),
    }
}

/// The `--json` verdict.
fn verdict_json(previous: &str, changes: &[Change]) -> Value {
    let mut create = Vec::new();
    let mut change = Vec::new();
    let mut destroy = Vec::new();
    let mut settings = Vec::new();
    for c in changes {
        match c {
            Change::Create { resource, fields } => {
                let fields: serde_json::Map<String, Value> =
                    fields.iter().map(|(f, v)| (f.clone(), v.clone())).collect();
                create.push(json!({ "resource": resource, "fields": fields }));
            }
            Change::Change { resource, fields } => {
                let fields: Vec<Value> = fields
                    .iter()
                    .map(|(f, from, to)| json!({ "field": f, "from": from, "to": to }))
                    .collect();
                change.push(json!({ "resource": resource, "fields": fields }));
            }
            Change::Destroy { resource } => destroy.push(json!(resource)),
            Change::Setting { path, from, to } => {
                settings.push(json!({ "path": path, "from": from, "to": to }))
            }
        }
    }
    json!({
        "previous": previous,
        "changed": !changes.is_empty(),
        "create": create,
        "change": change,
        "destroy": destroy,
        "settings": settings,
    })
}
