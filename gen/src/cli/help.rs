//! The examples and exit statuses shown after each subcommand's `--help`.
//!
//! Why here and not beside each subcommand's arguments: the texts are the manual's most-read part, and one file
//! keeps them consistent with each other and with README.md; the argument structs stay about arguments.
//! A test (`every_subcommand_help_has_examples_and_exit_status` in `gen/tests/cli.rs`) holds every
//! subcommand to having both.

/// `fedigen generate`.
pub const GENERATE: &str = "\
Examples:
  fedigen generate                               # the repository around the current directory
  fedigen generate --check                       # CI: exit 1 with a diff when committed output is stale
  fedigen generate --check --json                # the same verdict as JSON, for a CI job to read
  fedigen generate --spec providers/acme.toml    # another provider's specification

Exit status: 0 written or up to date; 1 (--check) something is stale, missing or left over; 2 invalid specification, template or manifest (nothing written); 3 the environment lacks something (a folder unreadable).";

/// `fedigen validate`.
pub const VALIDATE: &str = "\
Examples:
  fedigen validate                               # examples/provider.toml
  fedigen validate providers/acme.toml
  fedigen validate panel-export.json --print     # the specification with defaults filled in, as JSON
  fedigen validate providers/acme.toml --json    # the verdict and every problem (file, line, column, field)

Exit status: 0 valid; 2 invalid (every problem printed with file:line:column and field); 3 the environment lacks something (Nix, for a .nix specification).";

/// `fedigen schema`.
pub const SCHEMA: &str = "\
Examples:
  fedigen schema > spec.schema.json
  fedigen schema --templates ../templates

Exit status: 0 printed; 2 a manifest is invalid; 3 the templates folder cannot be read.";

/// `fedigen template new`.
pub const TEMPLATE_NEW: &str = "\
Examples:
  fedigen template new lemmy
  fedigen template new lemmy --repo ~/src/fedigen

Exit status: 0 created (finish its TODOs, then `fedigen template check`); 2 the name is not allowed (reserved, a Nix keyword, not lower-case) or the template exists (nothing written); 3 a file could not be written.";

/// `fedigen template check`.
pub const TEMPLATE_CHECK: &str = "\
Examples:
  fedigen template check                         # every application
  fedigen template check mastodon
  fedigen template check lemmy --allow-drafts    # a scaffold still holding TODOs
  fedigen template check --json                  # the verdict as JSON, for a CI job to read

Exit status: 0 every rendering proven; 1 a rendering failed a check, or a TODO is left (without --allow-drafts); 2 a manifest is invalid (every problem at once); 3 Nix is not installed.";

/// `fedigen template import`.
pub const TEMPLATE_IMPORT: &str = "\
Examples:
  fedigen template import nixpkgs/nixos/modules/services/web-apps/lemmy.nix
  fedigen template import ./akkoma.nix --name akkoma --stdout

Exit status: 0 written (warnings name what needs review); 2 the module does not parse, declares nothing, or the manifest exists (without --force); 3 a file could not be written.";

/// `fedigen repro check`.
pub const REPRO_CHECK: &str = "\
Examples:
  fedigen repro check release.nix --lock repro.lock.json
  fedigen repro check default.nix -A packages.fedigen --no-build --json
  fedigen repro check release.nix --closure --option substitute false";

/// `fedigen repro lock`.
pub const REPRO_LOCK: &str = "\
Examples:
  fedigen repro lock release.nix -o repro.lock.json
  fedigen repro lock default.nix -A packages.fedigen --no-build";

/// `fedigen closure diff`.
pub const CLOSURE_DIFF: &str = "\
Examples:
  fedigen closure diff old.lock.json new.lock.json
  fedigen closure diff /nix/store/…-system.drv release.nix --json

  fedigen closure diff old.drv new.drv --build-time    # derivation closures instead of what is deployed

Exit status: 0 compared (differences are not an error); 1 a --build failed; 2 invalid input (an argument is neither a derivation, an output, a lock nor a Nix file that evaluates); 3 the outputs are not built (the message says how, or pass --build) or Nix is missing.";

/// `fedigen nix from-json`.
pub const NIX_FROM_JSON: &str = "\
Examples:
  fedigen nix from-json examples/panel-settings.json
  echo '{\"port\": 8080}' | fedigen nix from-json
  fedigen nix from-json settings.json --verify canonical

Exit status: 0 printed; 2 the input is unreadable, not JSON, or cannot be represented in Nix (every problem named by its JSON path); 1 the printed text failed its own verification (a bug in fedigen: please report it).";

/// `fedigen nix to-json`.
pub const NIX_TO_JSON: &str = "\
Examples:
  fedigen nix to-json settings.nix
  fedigen nix to-json settings.nix --timeout 30

Exit status: 0 printed; 2 the file is missing or does not evaluate; 3 Nix is not installed.";

/// `fedigen nix check`.
pub const NIX_CHECK: &str = "\
Examples:
  fedigen nix check modules/*.nix
  fedigen nix check --syntax-only hosts/*.nix    # parse only, no layout check

Exit status: 0 every file proven; 1 a file is unreadable or failed a check (each reported with file:line:column); 3 Nix is not installed.";

/// `fedigen completions`.
pub const COMPLETIONS: &str = "\
Examples:
  fedigen completions bash > ~/.local/share/bash-completion/completions/fedigen
  fedigen completions zsh > \"${fpath[1]}/_fedigen\"
  fedigen completions fish > ~/.config/fish/completions/fedigen.fish

Exit status: 0 printed.";

/// `fedigen provision`.
pub const PROVISION: &str = "\
Examples:
  fedigen provision                              # against the committed deployments/tofu/main.tf.json
  fedigen provision --previous old.tf.json       # against another generation
  fedigen provision --previous <(git show main:deployments/tofu/main.tf.json)
  fedigen provision --json                       # the comparison as JSON, for a CI job to read

Not `tofu plan`: nothing is asked of Proxmox. The configuration the specification generates now is compared with the previous generation, resource by resource and field by field; `tofu plan` then compares with the cluster itself.

Exit status: 0 nothing would change; 1 something would be created, changed or destroyed (each printed); 2 invalid specification, a previous file that is not JSON, or a backend other than proxmox; 3 the environment lacks something (a file unreadable).";
