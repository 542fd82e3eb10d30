//! What the generated output is called and what every application module shares: the folders and file stems
//! `fedigen generate` writes (`modules/`, `modules/fediversity.nix`, `vm-tests/generated/`, …) and the options of
//! the shared module `modules/fediversity.nix`.
//!
//! Why a module of its own: both the manifest checks (an application may not take a name the output already
//! uses, or a shared option's name) and the generator (which writes these files) need these facts; kept here,
//! neither has to reach into the other.

use crate::nix::{Entry, Expr, Ident, LexicalError, Param};

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
            "s3.credentialsFile",
            option(
                null_or(str_ty()?)?,
                Some(Expr::Null),
                Some(s("/run/secrets/s3.env")?),
                "Path on the machine of an environment file with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the \
                 application's buckets (never a store path).",
            )?,
        )?,
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
