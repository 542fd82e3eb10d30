//! What the generated output is called and what every application module shares: the folders and file stems
//! `fedigen generate` writes (`modules/`, `modules/fediversity.nix`, `vm-tests/generated/`, …) and the options of
//! the shared module `modules/fediversity.nix`.
//!
//! Why a module of its own: both the manifest checks (an application may not take a name the output already
//! uses, or a shared option's name) and the generator (which writes these files) need these facts; kept here,
//! neither has to reach into the other.

use crate::nix::{AttrPath, Entry, Expr, Ident, LexicalError, NixString, Param};

/// The folder holding the generated NixOS modules.
pub(crate) const MODULES: &str = "modules";

/// The folder holding the generated NixOS VM tests, which the `vm-tests` harness discovers.
pub(crate) const VM_TESTS: &str = "vm-tests/generated";

/// The stem of the shared module, `modules/fediversity.nix` (beside `modules/<app>.nix`).
pub(crate) const SHARED_MODULE: &str = "fediversity";

/// The stem of the module importing all others, `modules/default.nix` (beside `modules/<app>.nix`).
pub(crate) const ALL_MODULES: &str = "default";

/// The folder of what the VM tests share, `vm-tests/generated/lib/` (beside `vm-tests/generated/<app>.nix`).
pub(crate) const VM_TESTS_LIB: &str = "lib";

/// The prefix of the per-operator VM tests, `vm-tests/generated/deployment-<operator>.nix` (beside
/// `vm-tests/generated/<app>.nix`).
pub(crate) const DEPLOYMENT_TEST_PREFIX: &str = "deployment-";

/// The file name prefix of the applications' federation VM tests (`federation-<app>.nix`).
pub(crate) const FEDERATION_TEST_PREFIX: &str = "federation-";
/// The prefix of the per-operator migration VM tests, `vm-tests/generated/migrate-<operator>.nix` (beside
/// `vm-tests/generated/<app>.nix`).
pub(crate) const MIGRATION_TEST_PREFIX: &str = "migrate-";

/// `modules/fediversity.nix`: the options every application reads (the operator's domain, ACME, the provider's
/// SMTP relay and Garage S3 endpoint). Secrets are `…File` options holding paths on the machine.
pub fn shared_module() -> Result<Expr, LexicalError> {
    let r = Expr::reference;
    let s = Expr::string;
    let option = Expr::mk_option;
    let null_or = |ty: Expr| -> Result<Expr, LexicalError> {
        Ok(Expr::apply(r("lib.types.nullOr")?, vec![ty]))
    };
    let str_ty = || r("lib.types.str");
    let options = Expr::attrs(vec![
        Entry::dotted(
            "domain",
            option(
                str_ty()?,
                None,
                Some(s("uu.example")?),
                "The operator's domain; each application lives on a subdomain of it.",
            )?,
        )?,
        Entry::dotted(
            "admin.username",
            option(
                null_or(str_ty()?)?,
                Some(Expr::Null),
                Some(s("uu_admin")?),
                "The operator's first administrator: the account each application makes on first deploy (with the \
                 initial password from its `adminPasswordFile`); `null` for none.",
            )?,
        )?,
        Entry::dotted(
            "admin.email",
            option(
                null_or(str_ty()?)?,
                Some(Expr::Null),
                Some(s("admin@uu.example")?),
                "The first administrator's e-mail address.",
            )?,
        )?,
        Entry::dotted(
            "acme.email",
            option(
                str_ty()?,
                None,
                Some(s("hostmaster@provider.example")?),
                "The e-mail address of the ACME account that requests the TLS certificates.",
            )?,
        )?,
        Entry::dotted(
            "acme.server",
            option(
                str_ty()?,
                Some(s(crate::model::LETS_ENCRYPT)?),
                None,
                "The ACME directory URL (a test CA in VM tests).",
            )?,
        )?,
        Entry::dotted(
            "smtp.host",
            option(
                str_ty()?,
                None,
                Some(s("smtp.provider.example")?),
                "The provider's SMTP relay.",
            )?,
        )?,
        Entry::dotted(
            "smtp.port",
            option(
                r("lib.types.port")?,
                Some(Expr::Int(crate::model::SMTP_SUBMISSION_PORT.into())),
                None,
                "The SMTP relay's port.",
            )?,
        )?,
        Entry::dotted(
            "smtp.user",
            option(
                null_or(str_ty()?)?,
                Some(Expr::Null),
                None,
                "The SMTP login; `null` when the relay needs none.",
            )?,
        )?,
        Entry::dotted(
            "smtp.passwordFile",
            option(
                null_or(str_ty()?)?,
                Some(Expr::Null),
                Some(s("/run/secrets/smtp-password")?),
                "Path on the machine of the file holding the SMTP password (never a store path).",
            )?,
        )?,
        Entry::dotted(
            "smtp.fromAddress",
            option(
                str_ty()?,
                None,
                Some(s("noreply@uu.example")?),
                "The sender address of the applications' mail.",
            )?,
        )?,
        Entry::dotted(
            "s3.endpoint",
            option(
                str_ty()?,
                None,
                Some(s("https://s3.provider.example")?),
                "The provider's Garage S3 endpoint.",
            )?,
        )?,
        Entry::dotted(
            "s3.region",
            option(str_ty()?, Some(s("garage")?), None, "The Garage S3 region.")?,
        )?,
        Entry::dotted(
            "s3.publicUrl",
            option(
                str_ty()?,
                None,
                Some(s("https://media.provider.example")?),
                "The public base URL of the provider's buckets: bucket b's object k is at \
                 `<publicUrl>/<b>/<k>` (Garage's web endpoint behind nginx). Each application's buckets and key are \
                 `fediversity.<application>.objectStorage`.",
            )?,
        )?,
        Entry::dotted("secrets", secrets_option()?)?,
    ]);
    let module = Expr::attrs(vec![Entry::dotted("options.fediversity", options)?]);
    Ok(Expr::Lambda(
        Param::Formals {
            formals: vec![(Ident::new("lib")?, None)],
            ellipsis: true,
            bind: None,
        },
        Box::new(module),
    ))
}

/// `fediversity.secrets`: every secret file of the machine in one place, `<name> = { path; owner; group; mode;
/// unit; }`, which a machine's generated module binds (`crate::deploy::secrets`) and [`secrets_check_config`]
/// checks before the reading units start.
fn secrets_option() -> Result<Expr, LexicalError> {
    let r = Expr::reference;
    let field = |ty: Expr, default: Option<Expr>, example: &str, description: &str| {
        Expr::mk_option(ty, default, Some(Expr::string(example)?), description)
    };
    let submodule = Expr::apply(
        r("lib.types.submodule")?,
        vec![Expr::attrs(vec![Entry::dotted(
            "options",
            Expr::attrs(vec![
                Entry::dotted(
                    "path",
                    field(
                        r("lib.types.str")?,
                        None,
                        "/run/secrets/mastodon-smtp-password",
                        "Where the file is on the machine (never a store path).",
                    )?,
                )?,
                Entry::dotted(
                    "owner",
                    field(
                        r("lib.types.str")?,
                        None,
                        "mastodon",
                        "The user owning the file: the service user that reads it, or root when systemd reads it \
                         (EnvironmentFile=, LoadCredential=).",
                    )?,
                )?,
                Entry::dotted(
                    "group",
                    field(
                        r("lib.types.str")?,
                        None,
                        "mastodon",
                        "The group owning the file.",
                    )?,
                )?,
                Entry::dotted(
                    "mode",
                    field(
                        Expr::apply(
                            r("lib.types.strMatching")?,
                            vec![Expr::string("0[0-7]{3}")?],
                        ),
                        Some(Expr::string(crate::deploy::secrets::SECRET_MODE)?),
                        "0400",
                        "The file's mode, in octal.",
                    )?,
                )?,
                Entry::dotted(
                    "unit",
                    field(
                        r("lib.types.str")?,
                        None,
                        "mastodon-init-dirs.service",
                        "The unit that reads the file; the secrets check runs before it and it requires the check.",
                    )?,
                )?,
            ]),
        )?])],
    );
    Expr::mk_option(
        Expr::apply(r("lib.types.attrsOf")?, vec![submodule]),
        Some(Expr::attrs(Vec::new())),
        None,
        "Every secret file the machine's services read, by name. A unit ordered before the reading units checks \
         that each is a non-empty file with this owner, group and mode, and fails naming the secret otherwise, so \
         no service starts with a missing or unreadable secret.",
    )
}

/// The `fediversity-secrets-check` unit of `modules/fediversity.nix`, present when the machine declares secrets:
/// a oneshot that runs the check of `crate::deploy::secrets::CHECK_SCRIPT` on every `fediversity.secrets` entry,
/// ordered before and required by each entry's unit.
pub(crate) fn secrets_check_config() -> Result<Expr, LexicalError> {
    let r = Expr::reference;
    let secrets = || r("config.fediversity.secrets");
    let any = Expr::apply(
        r("builtins.lessThan")?,
        vec![
            Expr::Int(0),
            Expr::apply(
                r("builtins.length")?,
                vec![Expr::apply(r("builtins.attrNames")?, vec![secrets()?])],
            ),
        ],
    );
    let units = Expr::apply(
        r("lib.unique")?,
        vec![Expr::apply(
            r("lib.catAttrs")?,
            vec![
                Expr::string("unit")?,
                Expr::apply(r("lib.attrValues")?, vec![secrets()?]),
            ],
        )],
    );
    let words = Expr::Lambda(
        Param::Ident(Ident::new("name")?),
        Box::new(Expr::Lambda(
            Param::Ident(Ident::new("secret")?),
            Box::new(Expr::List(vec![
                Expr::var("name")?,
                r("secret.path")?,
                r("secret.owner")?,
                r("secret.group")?,
                r("secret.mode")?,
            ])),
        )),
    );
    let arguments = Expr::apply(
        r("lib.escapeShellArgs")?,
        vec![Expr::apply(
            r("lib.concatLists")?,
            vec![Expr::apply(
                r("lib.mapAttrsToList")?,
                vec![words, secrets()?],
            )],
        )],
    );
    let mut script = NixString::literal("set -- ")?;
    script.push_interpolation(arguments);
    script.push_literal("\n")?;
    script.push_literal(crate::deploy::secrets::CHECK_SCRIPT)?;
    let unit = Expr::Let(
        vec![Entry::dotted("units", units)?],
        Box::new(Expr::attrs(vec![
            Entry::dotted(
                "description",
                Expr::string("Check the secret files of the Fediversity services")?,
            )?,
            Entry::dotted("before", Expr::var("units")?)?,
            Entry::dotted("requiredBy", Expr::var("units")?)?,
            Entry::dotted("serviceConfig.Type", Expr::string("oneshot")?)?,
            Entry::dotted("serviceConfig.RemainAfterExit", Expr::Bool(true))?,
            Entry::dotted("script", Expr::Str(script))?,
        ])),
    );
    Ok(Expr::apply(
        r("lib.mkIf")?,
        vec![
            any,
            Expr::attrs(vec![Entry::binding(
                AttrPath::dotted(&format!(
                    "systemd.services.{}",
                    crate::deploy::secrets::CHECK_UNIT
                ))?,
                unit,
            )]),
        ],
    ))
}
