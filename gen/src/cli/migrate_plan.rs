//! `fedigen migrate plan`: a thin layer over [`fedigen::migrate::plan`]: read both specifications and the
//! machines file, plan, optionally measure, print the table or JSON, write the jobs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::error::{Class, CliError, CliResult, Status};
use crate::cli::output::{info, out, outln};
use fedigen::io_error::IoError;
use fedigen::migrate::plan::{self, PlanError, Request};
use fedigen::model::{LoadError, Machine, SpecDocument};

/// The examples and exit statuses after `fedigen migrate plan --help`.
pub const PLAN_HELP: &str = "\
Examples:
  fedigen migrate plan amstelland --from examples/provider.toml --to examples/provider-b.toml \\
      --machines examples/provider-b.amstelland-machines.toml
  fedigen migrate plan amstelland --from a.toml --to b.toml --json | jq .conflicts
  fedigen migrate plan amstelland --from a.toml --to b.toml --machines m.toml --job-out jobs/ --measure --throughput 80

What it says: the operator as it will run at B (same domain, applications, settings and secret references; B's
runtime, storage and limits; its machines from --machines), validated like any specification, every conflict
located (A's file for the operator's own fields, the machines file, B's file); what moves (each database,
bucket, directory and identity secret of the manifests' [state]) with sizes (--measure asks the source:
pg_database_size, rclone size, du); the engine's steps per machine; the downtime (the freeze window: the delta
of buckets and folders, the databases in full, the verification, a fixed minute; from the sizes and the
throughput); the DNS records that change from A's addresses to B's, and the TTL to lower ahead (to 60 s, at
least one old TTL before the switch); and rollback.

The jobs (--job-out DIR, one DIR/<operator>-<application>.json per application machine): each runs as root on
that machine at B (`fedigen migrate run --job …`), reaches A over ssh as root@<A's deploy target>, and names,
never holds, the files B's provider places first under /run/secrets/fedigen-migrate: <database>-source-password
and <bucket>-source.env / <bucket>-target.env (AWS_ACCESS_KEY_ID=, AWS_SECRET_ACCESS_KEY=). Buckets are
<operator>-<bucket> at both providers. B's PostgreSQL is reached over /run/postgresql by peer authentication:
the tools run as the role's OS user (os_user, the application's service user).

--replicate: A's provider has set up logical replication (wal_level = logical; the role fedigen_replicator with
REPLICATION and SELECT on the tables, reachable from B; its password at B in <database>-replicator-password):
each job names the replication roles (publisher: that role at A; subscriber: B's postgres superuser, by peer),
the databases are copied in the bulk phase while A serves, and the freeze window counts only their catch-up.
The run checks A read-only before anything and dumps and restores a database A cannot replicate.

--json prints the plan (schema 1): {schema, operator, domain, from, to: {file, provider, runtime, s3_endpoint},
conflicts: [{at, field, message}], manual: [text], moves: [{application, kind (database|bucket|directory|
identity), name, source, target, bytes (null: unknown), automatic, replicated (only when true)}],
steps: [{machine, steps}], downtime: {throughput_bytes_per_second, throughput_source (flag|assumed),
change_permille, bulk_seconds, freeze_seconds (null: unknown), parts: [{what, bytes, seconds}], method}, dns: {zone, ttl, lowered_ttl, lower_before_seconds,
name_servers: {from, to}, changes: [{name, type (A|AAAA), from, to}], note}, rollback: [text]}.

Exit status: 0 B can take the operator (the plan printed, the jobs written); 1 conflicts (each named; no job is written); 2 invalid input (a specification, the machines file, an unknown operator); 3 the environment lacks something (the templates, a folder to write the jobs to).";

/// Arguments of `fedigen migrate plan`.
#[derive(Args)]
pub struct PlanArgs {
    /// The operator to move (its `name` in A's specification).
    operator: String,
    /// Provider A's specification, where the operator runs now.
    #[arg(long, value_name = "A.toml")]
    from: PathBuf,
    /// Provider B's specification, where it moves to (without the operator).
    #[arg(long, value_name = "B.toml")]
    to: PathBuf,
    /// The operator's machines at B, a TOML file of `[<application>]` tables as in a specification's
    /// `operators.machines` (`ssh`, `host`, `network`); without it the machines have no static address at B.
    #[arg(long, value_name = "FILE")]
    machines: Option<PathBuf>,
    /// The templates folder of A (default: `templates/` of the repository around A's specification).
    #[arg(long)]
    templates: Option<PathBuf>,
    /// The templates folder of B, when B runs other templates (default: A's).
    #[arg(long)]
    to_templates: Option<PathBuf>,
    /// The throughput of the copies between the providers, in MB/s (default: 100 MB/s, assumed and said).
    #[arg(long, value_name = "MB/s")]
    throughput: Option<f64>,
    /// How much of the buckets and folders changes between the bulk copy and the freeze, in percent.
    #[arg(long, value_name = "PERCENT", default_value_t = 1.0)]
    change_percent: f64,
    /// Measure the sizes at the source (psql, rclone, du, through the jobs' connections and files).
    #[arg(long)]
    measure: bool,
    /// A program that publishes B's zone of the operator's domain, called as `PROGRAM <zone> <zone file>` by
    /// each job's `dns` step; without it the DNS switch is a step for people.
    #[arg(long, value_name = "PROGRAM")]
    dns_command: Option<String>,
    /// A's PostgreSQL is set up for logical replication (wal_level = logical, the role fedigen_replicator): the
    /// jobs replicate each database while A serves, so the freeze waits only for its catch-up.
    #[arg(long)]
    replicate: bool,
    /// Print the plan as JSON (the schema is in --help).
    #[arg(long)]
    json: bool,
    /// Write the engine's jobs into this folder, one `<operator>-<application>.json` per machine.
    #[arg(long, value_name = "DIR")]
    job_out: Option<PathBuf>,
}

fn read(path: &Path) -> Result<SpecDocument, CliError> {
    let document = SpecDocument::read(path).map_err(CliError::from)?;
    if document.diagnostics.is_empty() {
        Ok(document)
    } else {
        Err(CliError::from(LoadError::Invalid(Box::new(
            fedigen::model::SpecReport::new(&document, document.diagnostics.clone()),
        ))))
    }
}

fn machines(path: &Path) -> Result<BTreeMap<String, Machine>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::from(IoError::new("read the machines file", path, e)))?;
    toml::from_str(&text).map_err(|e| {
        let at = e
            .span()
            .map(|s| fedigen::position::Position::of_offset(&text, s.start))
            .map_or_else(String::new, |p| format!(":{}:{}", p.line, p.column));
        CliError::invalid(format_args!(
            "{}{at}: {}; the file holds one `[<application>]` table per machine, with `ssh`, `host` or `network` as in a specification",
            path.display(),
            e.message()
        ))
    })
}

/// Plans the move, prints it, writes the jobs.
pub fn run(args: PlanArgs) -> CliResult {
    if !(args.change_percent.is_finite() && (0.0..=100.0).contains(&args.change_percent)) {
        return Err(CliError::invalid(format_args!(
            "--change-percent {}: give a percentage from 0 to 100",
            args.change_percent
        )));
    }
    let throughput = match args.throughput {
        None => None,
        Some(t) if t.is_finite() && t > 0.0 && t < 1e9 => Some((t * 1e6).round() as u64),
        Some(t) => {
            return Err(CliError::invalid(format_args!(
                "--throughput {t}: give MB/s as a positive number"
            )));
        }
    };
    let templates = crate::cli::model::templates_dir(args.templates, args.from.parent());
    let from_catalog = crate::cli::model::catalog(&templates, false)?;
    let to_catalog = match &args.to_templates {
        Some(dir) => crate::cli::model::catalog(dir, false)?,
        None => from_catalog.clone(),
    };
    let from = read(&args.from)?;
    let to = read(&args.to)?;
    let machines_name = args.machines.as_ref().map(|p| p.display().to_string());
    let machines = match &args.machines {
        Some(path) => Some(machines(path)?),
        None => None,
    };
    let request = Request {
        operator: &args.operator,
        from: &from,
        to: &to,
        from_catalog: &from_catalog,
        to_catalog: &to_catalog,
        machines: machines_name.as_deref().zip(machines),
        throughput,
        change_permille: (args.change_percent * 10.0).round() as u32,
        dns_command: args.dns_command.as_deref(),
        replicate: args.replicate,
    };
    let mut planned = match plan::plan(&request) {
        Ok(p) => p,
        Err(PlanError::FromInvalid(report) | PlanError::ToInvalid(report)) => {
            eprint!("{}", report.render(crate::cli::output::color_stderr()));
            return Err(CliError::reported(Class::InvalidInput));
        }
        Err(e) => return Err(CliError::invalid(e)),
    };
    if args.measure {
        for problem in plan::measure(&mut planned.plan, &planned.jobs) {
            info!("warning: not measured: {problem}");
        }
    }
    if args.json {
        out!("{}", planned.plan.to_json());
    } else {
        out!("{}", plan::render_table(&planned.plan));
    }
    if !planned.plan.conflicts.is_empty() {
        if args.job_out.is_some() {
            info!(
                "no job written: B cannot take the operator until the conflicts above are resolved"
            );
        }
        return Ok(Status::Problems);
    }
    if let Some(dir) = &args.job_out {
        write_jobs(dir, &planned.jobs)?;
        for (machine, _) in &planned.jobs {
            info!("wrote {}", dir.join(format!("{machine}.json")).display());
        }
    }
    if !args.json && args.job_out.is_none() {
        outln!("\nWrite the jobs with --job-out DIR.");
    }
    Ok(Status::Success)
}

/// Every job written beside its place and renamed into it, after all were written: all or none.
fn write_jobs(dir: &Path, jobs: &[(String, fedigen::migrate::job::Job)]) -> Result<(), CliError> {
    let env = |what: &'static str, path: &Path, e: std::io::Error| {
        CliError::from(IoError::new(what, path, e))
    };
    std::fs::create_dir_all(dir).map_err(|e| env("create the folder", dir, e))?;
    let mut pending = Vec::new();
    for (machine, job) in jobs {
        let path = dir.join(format!("{machine}.json"));
        let temporary = dir.join(format!(".{machine}.json.tmp"));
        std::fs::write(&temporary, job.to_json()).map_err(|e| env("write", &temporary, e))?;
        pending.push((temporary, path));
    }
    for (temporary, path) in pending {
        std::fs::rename(&temporary, &path).map_err(|e| env("write", &path, e))?;
    }
    Ok(())
}
