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

/// The shipped administrator scripts never put the password on a command line (`/proc/<pid>/cmdline` is readable
/// by every user): each runs in bash with every command it calls replaced by a stub that logs its arguments and
/// answers as the real one would (curl with JSON, the admin tools with success), and no logged argument may hold
/// the password. jq is the real one where installed, so PeerTube's request body is checked to carry the password.
#[test]
fn admin_passwords_stay_off_command_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
    let all = Manifest::load_all(&root).unwrap();
    let dir = std::env::temp_dir().join(format!("fedigen-admin-argv-{}", std::process::id()));
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join("argv.log");
    let body = dir.join("body.json");
    let password = "S3cret-fedigen-pw";
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    // A stub: log argv (one line per call), swallow stdin, answer like the tool.
    let stub = |name: &str, answer: &str| {
        let path = bin.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/bash\nprintf '%s\\0' \"$(basename \"$0\")\" \"$@\" >> {log}\necho >> {log}\n{answer}\n",
                log = log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let curl = format!(
        "case \"$*\" in\n*/accounts/*) exit 22;;\n*--data\\ @-*) cat > {body};;\n*) cat > /dev/null 2>&1 || true; echo '{{\"client_id\":\"c\",\"client_secret\":\"s\",\"access_token\":\"t\"}}';;\nesac",
        body = body.display()
    );
    stub("curl", &curl);
    // The admin tools succeed (Pixelfed's prints what the script checks); Mastodon's rails runner says "absent".
    // Pixelfed's wrapper as upstream has it: as any user but `pixelfed` it goes through sudo, whose env_reset drops
    // XDG_CONFIG_HOME and sets HOME=/var/empty, where tinker's PsySH cannot write (laravel/tinker#77: exit 1); as
    // `pixelfed` without a config home it fails the same way.
    stub(
        "pixelfed-manage",
        "if [ \"${USER:-}\" != pixelfed ] || [ -z \"${XDG_CONFIG_HOME:-}\" ]; then echo 'PsySH: Writing to directory /var/empty/.config/psysh is not allowed.' >&2; exit 1; fi\ncat > /dev/null; echo 'fedigen: administrator exists'",
    );
    // runuser: the command after `--`, as the user (USER set, as util-linux's runuser does).
    stub(
        "runuser",
        "user=; while [ \"$1\" != -- ]; do [ \"$1\" = -u ] && user=$2; shift; done; shift; USER=$user exec \"$@\"",
    );
    stub("rails", "case \"$*\" in *nil?*) exit 1;; esac");
    stub("tootctl", "exit 0");
    stub("matrix-synapse-register_new_matrix_user", "exit 0");
    stub("sleep", "exit 0");
    // jq logs its arguments too, then runs the real one where installed.
    let real_jq = Path::new("/usr/bin/jq").is_file();
    if real_jq {
        stub("jq", "exec /usr/bin/jq \"$@\"");
    } else {
        stub("jq", "cat > /dev/null; echo x");
    }
    for m in &all {
        let Some(account) = &m.admin_account else {
            continue;
        };
        let name = &m.application.name;
        let _ = std::fs::remove_file(&log);
        let _ = std::fs::remove_file(&body);
        let script = account.script.replace("/run/current-system/sw/bin/", "");
        let status = std::process::Command::new("bash")
            .arg("-e")
            .arg("-c")
            .arg(&script)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("FEDIVERSITY_ADMIN_USERNAME", "uu_admin")
            .env("FEDIVERSITY_ADMIN_EMAIL", "admin@uu.example")
            .env("FEDIVERSITY_ADMIN_PASSWORD_FILE", &password_file)
            .env("FEDIVERSITY_APP_HOST", "app.uu.example")
            .env("USER", "root")
            .env_remove("XDG_CONFIG_HOME")
            .stdin(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{name}: the script fails with stubs");
        let calls = std::fs::read(&log).unwrap_or_default();
        let calls = String::from_utf8_lossy(&calls);
        assert!(!calls.trim().is_empty(), "{name}: no command was called");
        for call in calls.lines() {
            assert!(
                !call.contains(password),
                "{name}: the password is on a command line: {}",
                call.replace('\0', " ")
            );
        }
        if name == "peertube" && real_jq {
            let sent = std::fs::read_to_string(&body).unwrap_or_default();
            let sent: serde_json::Value = serde_json::from_str(&sent)
                .unwrap_or_else(|e| panic!("peertube: the request body is JSON: {e}: {sent}"));
            assert_eq!(sent["password"], password, "peertube: {sent}");
            assert_eq!(sent["username"], "uu_admin", "peertube: {sent}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
