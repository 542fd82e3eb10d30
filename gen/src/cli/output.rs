//! How the binary talks to people: whether informational messages are printed (`--quiet`), and whether colour
//! and progress bars are used (`--color`, `NO_COLOR`, whether the stream is a terminal).
//!
//! Why one place: every subcommand prints progress notes, diagnostics and progress bars; a provider running
//! fedigen in CI wants none of the decoration and only the errors, and a person at a terminal wants colour.
//! The decision is made once, from the global flags, and every subcommand asks here.

use std::io::IsTerminal as _;
use std::sync::OnceLock;

/// When to use colour, as the global `--color` flag says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour on a terminal, unless `NO_COLOR` is set to a non-empty value (<https://no-color.org>).
    #[default]
    Auto,
    /// Always colour (for a pager that understands it).
    Always,
    /// Never colour.
    Never,
}

/// The output settings of this run.
#[derive(Clone, Copy, Debug)]
struct Settings {
    quiet: bool,
    color: ColorChoice,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Records the global flags; called once by `main` before any subcommand runs.
pub fn init(quiet: bool, color: ColorChoice) {
    let _ = SETTINGS.set(Settings { quiet, color });
}

fn settings() -> Settings {
    SETTINGS.get().copied().unwrap_or(Settings {
        quiet: false,
        color: ColorChoice::Auto,
    })
}

/// Whether `--quiet` was given: informational messages are not printed (errors and requested output are).
pub fn quiet() -> bool {
    settings().quiet
}

/// Whether `NO_COLOR` asks for no colour: set and not empty.
fn no_color_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Whether diagnostics written to standard error may carry colour.
pub fn color_stderr() -> bool {
    match settings().color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => !no_color_env() && std::io::stderr().is_terminal(),
    }
}

/// The colour choice to hand to clap for its own help and error messages.
pub fn clap_color(choice: ColorChoice) -> clap::ColorChoice {
    match choice {
        ColorChoice::Auto if no_color_env() => clap::ColorChoice::Never,
        ColorChoice::Auto => clap::ColorChoice::Auto,
        ColorChoice::Always => clap::ColorChoice::Always,
        ColorChoice::Never => clap::ColorChoice::Never,
    }
}

/// Whether progress bars may be drawn: on a terminal, not `--quiet`, and not in CI-style plain output.
pub fn progress() -> bool {
    !quiet() && std::io::stderr().is_terminal()
}

/// Prints an informational message to standard error unless `--quiet` was given.
macro_rules! info {
    ($($arg:tt)*) => {
        if !$crate::cli::output::quiet() {
            eprintln!($($arg)*);
        }
    };
}
pub(crate) use info;

/// Writes to standard output like `print!`, but a closed pipe (`fedigen generate --check | head`) ends the
/// writing quietly instead of panicking; the exit status stays the command's own.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}
pub(crate) use out;

/// [`out!`] with a line break, like `println!`.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
pub(crate) use outln;
