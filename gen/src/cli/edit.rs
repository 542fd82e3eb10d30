//! `fedigen edit FILE set|unset|get|add|remove PATH`: change or read one attribute of a hand-written Nix file,
//! or add or remove one item of a list, keeping every other byte (comments, blank lines, formatting) as it is.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::cli::error::{Class, CliError, CliResult, Status};
use fedigen::edit::{Edit, EditPath, NewValue, NixFile};
use fedigen::nix::value::{DataPolicy, from_json};
use fedigen::write::{replace_file, unified_diff};

/// Shown after `fedigen edit --help` and after each action's `--help`.
pub const EXAMPLES: &str = "Examples:
  fedigen edit hosts/web.nix set 'services.nginx.virtualHosts.\"example.org\".root' '\"/srv/www\"'
  fedigen edit hosts/web.nix set services.nginx.package --nix pkgs.nginxMainline
  fedigen edit hosts/web.nix unset services.nginx.recommendedTlsSettings --diff
  fedigen edit hosts/web.nix add networking.firewall.allowedTCPPorts 8448
  fedigen edit hosts/web.nix remove networking.firewall.allowedTCPPorts 80
  fedigen edit hosts/web.nix add environment.systemPackages --nix pkgs.htop
  fedigen edit flake.nix get inputs.nixpkgs.url --json

Exit status: 0 done (or already so); 1 the path (get, unset) or the item (remove) is not there; 2 refused: the file does not parse, the path needs evaluation (computed name, inherit, a value that is not a set literal), is defined in several places, or the file is generated (without --force); nothing written; 3 the file cannot be read or written.";

/// The arguments of `fedigen edit`; the manual is the subcommand's doc comment in `main.rs`.
#[derive(Args)]
pub struct EditArgs {
    /// The Nix file to edit; `-` reads standard input and prints the result.
    file: PathBuf,
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Make PATH hold VALUE: the old value is replaced where it stands, or a new binding is added to the
    /// deepest set that the path already reaches, after its closest sibling.
    #[command(after_long_help = EXAMPLES)]
    Set {
        /// The attribute path.
        path: String,
        #[command(flatten)]
        value: Value,
        #[command(flatten)]
        output: Output,
    },
    /// Add VALUE as the last item of the list literal PATH holds, laid out like the items already there (one per
    /// line, or inline), keeping the others and their comments; nothing changes when the list already holds
    /// an item of the same value. An undefined PATH gets `PATH = [ VALUE ];`. A list built with `++` or a value
    /// that is not a list literal is refused with the reason.
    #[command(after_long_help = EXAMPLES)]
    Add {
        /// The attribute path of the list.
        path: String,
        #[command(flatten)]
        value: Value,
        #[command(flatten)]
        output: Output,
    },
    /// Remove the item of the list literal PATH holds that has VALUE's value (`443` finds `443` however it is
    /// written; with `--nix`, an item such as `pkgs.git` is found by its text), with its line and comments.
    /// An item the list does not hold exits with status 1.
    #[command(after_long_help = EXAMPLES)]
    Remove {
        /// The attribute path of the list.
        path: String,
        #[command(flatten)]
        value: Value,
        #[command(flatten)]
        output: Output,
    },
    /// Remove the definition of PATH (and a set it leaves empty with nothing else inside, not even a comment).
    #[command(after_long_help = EXAMPLES)]
    Unset {
        /// The attribute path.
        path: String,
        #[command(flatten)]
        output: Output,
    },
    /// Print the value of PATH exactly as written in the file.
    #[command(after_long_help = EXAMPLES)]
    Get {
        /// The attribute path.
        path: String,
        /// Print the value as JSON instead, when the text fixes it (plain data); a value that needs evaluation
        /// (a variable, a function call, an interpolation) is refused with where it is (exit status 2).
        #[arg(long)]
        json: bool,
    },
}

/// The value to set, add or remove.
#[derive(Args)]
struct Value {
    /// The value as JSON (`true`, `8080`, `-1`, `"text"`, `[1, 2]`, `{"a": 1}`), printed by fedigen's emitter;
    /// with `--nix`, a Nix expression inserted as written. `-` reads it from standard input.
    #[arg(allow_negative_numbers = true)]
    value: String,
    /// VALUE is a Nix expression (such as `pkgs.hello` or `lib.mkForce true`), checked to parse.
    #[arg(long)]
    nix: bool,
    /// Let keys such as `_type` or `outPath` through as plain data (refused by default: they turn data into
    /// code for Nix or the module system).
    #[arg(long)]
    allow_special_attributes: bool,
}

/// Where an edit goes.
#[derive(Args)]
struct Output {
    /// Print the change as a unified diff and write nothing.
    #[arg(long, conflicts_with = "stdout")]
    diff: bool,
    /// Print the edited file instead of writing it.
    #[arg(long)]
    stdout: bool,
    /// Edit a file that fedigen generated (refused by default: the next `fedigen generate` undoes it).
    #[arg(long)]
    force: bool,
}

/// Runs `fedigen edit`.
pub fn run(args: EditArgs) -> CliResult {
    let from_stdin = args.file.as_os_str() == "-";
    let name = if from_stdin {
        "<stdin>".to_owned()
    } else {
        args.file.display().to_string()
    };
    let text = if from_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::io("read", "standard input", e))?;
        text
    } else {
        std::fs::read_to_string(&args.file).map_err(|e| CliError::io("read", &args.file, e))?
    };
    // The file is parsed for the one path this command edits (see `NixFile::for_path`).
    let prepare = |path: &str| -> Result<(EditPath, NixFile), CliError> {
        let path = EditPath::parse(path).map_err(CliError::invalid)?;
        let nix_file = NixFile::for_path(&name, &text, &path)?;
        Ok((path, nix_file))
    };
    let (op, path, value, output) = match args.action {
        Action::Get { path, json } => {
            let (path, nix_file) = prepare(&path)?;
            let definition = nix_file.get(&path)?;
            if json {
                let data = definition.data.map_err(|why| {
                    CliError::invalid(format_args!(
                        "{name}:{why}; print it as written without --json"
                    ))
                })?;
                crate::cli::output::outln!("{data}");
            } else {
                crate::cli::output::outln!("{}", definition.value);
            }
            return Ok(Status::Success);
        }
        Action::Set {
            path,
            value,
            output,
        } => (ValueEdit::Set, path, value, output),
        Action::Add {
            path,
            value,
            output,
        } => (ValueEdit::Add, path, value, output),
        Action::Remove {
            path,
            value,
            output,
        } => (ValueEdit::Remove, path, value, output),
        Action::Unset { path, output } => {
            let (path, nix_file) = prepare(&path)?;
            let edit = nix_file.unset(&path)?;
            let what = format!("unset `{path}`");
            return finish(&args.file, &name, &text, &edit, &output, from_stdin, &what);
        }
    };
    let shown = value.value.clone();
    let value = new_value(&value)?;
    let (path, nix_file) = prepare(&path)?;
    let (edit, what) = match op {
        ValueEdit::Set => (nix_file.set(&path, &value), format!("set `{path}`")),
        ValueEdit::Add => (
            nix_file.add_item(&path, &value),
            format!("added `{shown}` to `{path}`"),
        ),
        ValueEdit::Remove => (
            nix_file.remove_item(&path, &value),
            format!("removed `{shown}` from `{path}`"),
        ),
    };
    finish(&args.file, &name, &text, &edit?, &output, from_stdin, &what)
}

/// The actions that take a VALUE: one path through parsing the value and the file, three edits.
enum ValueEdit {
    Set,
    Add,
    Remove,
}

fn new_value(args: &Value) -> Result<NewValue, CliError> {
    let Value {
        value,
        nix,
        allow_special_attributes,
    } = args;
    let (nix, allow_special_attributes) = (*nix, *allow_special_attributes);
    let value = if value == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::io("read", "standard input", e))?;
        text
    } else {
        value.to_owned()
    };
    if nix {
        return Ok(NewValue::Text(value));
    }
    let json: serde_json::Value = serde_json::from_str(&value).map_err(|e| {
        CliError::invalid(format_args!(
                "the value is not JSON ({e}); quote strings as JSON (`'\"text\"'`), or pass --nix for a Nix expression"
        ))
    })?;
    let policy = DataPolicy {
        allow_special_attributes,
    };
    from_json(&json, policy)
        .map(NewValue::Expr)
        .map_err(|errors| {
            for error in &errors {
                eprintln!("error: the value at {error}");
            }
            CliError::reported(Class::InvalidInput)
        })
}

fn finish(
    file: &Path,
    name: &str,
    old: &str,
    edit: &Edit,
    output: &Output,
    from_stdin: bool,
    what: &str,
) -> CliResult {
    let new = edit.apply(old);
    if output.diff {
        crate::cli::output::out!("{}", unified_diff(file, old, &new));
        return Ok(Status::Success);
    }
    if output.stdout || from_stdin {
        crate::cli::output::out!("{new}");
        return Ok(Status::Success);
    }
    if new == old {
        eprintln!("{name}: {what}: already so; nothing written");
        return Ok(Status::Success);
    }
    if old.starts_with(fedigen::write::MARKER) && !output.force {
        return Err(CliError::invalid(format_args!(
            "{name} is generated by fedigen (see its first line): `fedigen generate` would undo this edit; change its source instead, or pass --force"
        )));
    }
    replace_file(file, &new)?;
    let position = fedigen::position::Position::of_offset(old, edit.range.start);
    eprintln!("{name}:{position}: {what}");
    Ok(Status::Success)
}
