//! `[admin_account]` in application manifests: how the operator's administrator gets an account, read strictly.
//! The unit the generated module makes of it is tested against its evaluation in `apps_nixpkgs.rs`.

use std::path::Path;

use fedigen::manifest::Manifest;

const MINIMAL: &str = r#"
[application]
name = "demo"
title = "Demo"
description = "A demonstration."
upstream = "services.demo"
subdomain = "demo"

[resources]
cores = 1
memory_mib = 512
disk_gib = 1

[secrets.adminPassword]
description = "the administrator's initial password"
source = "provided"
optional = true
credential = "demo-admin-account.service"
"#;

fn parse(extra: &str) -> Result<Manifest, String> {
    Manifest::parse(
        Path::new("templates/demo/manifest.toml"),
        &format!("{MINIMAL}{extra}"),
    )
    .map_err(|e| e.to_string())
}

const ACCOUNT: &str = r#"
[admin_account]
description = "the administrator"
after = ["demo.service"]
password_secret = "adminPassword"
packages = ["curl"]
script = "demo-admin create \"$FEDIVERSITY_ADMIN_USERNAME\""
"#;

#[test]
fn an_admin_account_is_read() {
    let m = parse(ACCOUNT).unwrap();
    let account = m.admin_account.unwrap();
    assert_eq!(account.after, ["demo.service"]);
    assert_eq!(account.password_secret, "adminPassword");
    assert_eq!(account.packages, ["curl"]);
    assert!(parse("").unwrap().admin_account.is_none());
}

#[test]
fn the_password_is_an_optional_provided_secret_of_the_manifest() {
    let err = parse(&ACCOUNT.replace("\"adminPassword\"", "\"adminPasword\"")).unwrap_err();
    assert!(
        err.contains(
            "[admin_account]: `password_secret`: `adminPasword` is no secret of this manifest"
        ),
        "{err}"
    );
    assert!(err.starts_with("templates/demo/manifest.toml:"), "{err}");
    let text = MINIMAL.replace("optional = true\n", "") + ACCOUNT;
    let err = Manifest::parse(Path::new("templates/demo/manifest.toml"), &text)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("must be `source = \"provided\"` and `optional = true`"),
        "{err}"
    );
}

#[test]
fn units_packages_and_script_are_checked() {
    for (from, to, expected) in [
        (
            "after = [\"demo.service\"]",
            "after = []",
            "`after` must name the units",
        ),
        (
            "after = [\"demo.service\"]",
            "after = [\"demo\"]",
            "[admin_account]: `after`:",
        ),
        (
            "packages = [\"curl\"]",
            "packages = [\"a b\"]",
            "`a b` is not an attribute name",
        ),
        (
            "script = \"demo-admin create \\\"$FEDIVERSITY_ADMIN_USERNAME\\\"\"",
            "script = \" \"",
            "`script` is empty",
        ),
        (
            "password_secret",
            "password_secrets",
            "unknown field `password_secrets`; did you mean `password_secret`?",
        ),
    ] {
        let text = ACCOUNT.replace(from, to);
        assert_ne!(text, ACCOUNT, "{from}");
        let err = parse(&text).unwrap_err();
        assert!(err.contains(expected), "{to}: {err}");
    }
}

/// The shipped manifests: every application with accounts makes its administrator, with a password secret no
/// specification must give (so existing specifications stay valid).
#[test]
fn shipped_manifests_make_administrators() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
    let all = Manifest::load_all(&root).unwrap();
    for m in &all {
        let name = &m.application.name;
        if name == "garage" {
            assert!(m.admin_account.is_none(), "Garage has no accounts");
            continue;
        }
        let account = m
            .admin_account
            .as_ref()
            .unwrap_or_else(|| panic!("{name} has accounts: it must make the administrator"));
        assert!(m.secrets[&account.password_secret].optional, "{name}");
        assert!(
            account.script.contains("FEDIVERSITY_ADMIN_USERNAME")
                && account.script.contains("FEDIVERSITY_ADMIN_PASSWORD_FILE"),
            "{name}: the account is the specification's administrator, with the password from the file"
        );
    }
}
