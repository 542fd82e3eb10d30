//! The applications' values read the way their consumers read them (issue #15 Build 1–2, issue #14 Build 4):
//! the generated modules evaluated with nixpkgs' `lib` (`gen/tests/nix/eval-apps.nix`, stand-ins for the upstream
//! option trees) and then
//! - Pixelfed's `.env`, produced exactly as upstream writes it (`lib.generators.toKeyValue { }`), read back by a
//!   port of vlucas/phpdotenv's parser (below: the dotenv library Laravel uses), for arbitrary instance names;
//! - the shell the modules add (Pixelfed's joined secret file, Synapse's `email` section) run here with bash,
//!   and its output read by phpdotenv's rules and by PyYAML (the YAML library Synapse itself loads its
//!   configuration with);
//! - the object-storage values of every application, the SMTP TLS mode from the port, and the administrator
//!   units.
//!
//! They need nixpkgs' `lib` (`FEDIGEN_NIXPKGS`, a nixpkgs or nixpkgs.lib checkout); without it each trial is
//! reported ignored with the reason. A libtest-mimic harness, so that is decided when the tests run.

use std::path::{Path, PathBuf};
use std::process::Command;

use libtest_mimic::Failed;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

mod support;

fn nixpkgs() -> Option<PathBuf> {
    std::env::var_os("FEDIGEN_NIXPKGS").map(PathBuf::from)
}

/// The shared settings every case starts from, as a provider's machine has them.
fn shared() -> Value {
    json!({
        "domain": "uu.example",
        "acme": { "email": "hostmaster@provider.example" },
        "smtp": { "host": "smtp.provider.example", "fromAddress": "noreply@uu.example" },
        "s3": { "endpoint": "https://s3.provider.example", "region": "garage", "publicUrl": "https://media.provider.example" },
    })
}

/// Merges `b` into `a`, recursively (objects only).
fn merge(a: &mut Value, b: &Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b.clone(),
    }
}

/// One case: the shared settings with `over` merged in.
fn case(over: Value) -> Value {
    let mut c = shared();
    merge(&mut c, &over);
    c
}

/// Evaluates every case (a `fediversity` set) with `eval-apps.nix`, in one Nix process.
fn eval_cases(cases: &[Value]) -> Result<Vec<Value>, Failed> {
    let nixpkgs = nixpkgs().ok_or("FEDIGEN_NIXPKGS is not set")?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("cases.json");
    std::fs::write(&file, serde_json::to_vec(cases)?)?;
    let repo = support::repository();
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(repo.join("gen/tests/nix/eval-apps.nix"))
        .arg("--arg")
        .arg("nixpkgs")
        .arg(&nixpkgs)
        .arg("--arg")
        .arg("modules")
        .arg(repo.join("modules"))
        .arg("--arg")
        .arg("cases")
        .arg(&file)
        .output()?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

// ---------------------------------------------------------------------------------------------------------------
// vlucas/phpdotenv 5 (src/Parser/Lines.php, Lexer.php, EntryParser.php, src/Loader/Resolver.php), ported: the
// rules, not the code. Laravel (and so Pixelfed) loads `.env` with it.

/// The tokens of phpdotenv's lexer: runs of line breaks, runs of other white space, and each of `\`, `'`, `"`,
/// `#`, `$` alone; everything else in runs.
fn lex(value: &str) -> Vec<String> {
    let class = |c: char| -> u8 {
        match c {
            '\r' | '\n' => 0,
            ' ' | '\t' | '\u{b}' | '\u{c}' => 1,
            '\\' | '\'' | '"' | '#' | '$' => 2,
            _ => 3,
        }
    };
    let mut tokens: Vec<String> = Vec::new();
    let mut last: Option<u8> = None;
    for c in value.chars() {
        let k = class(c);
        match (last, tokens.last_mut()) {
            (Some(l), Some(t)) if l == k && k != 2 => t.push(c),
            _ => tokens.push(c.to_string()),
        }
        last = Some(k);
    }
    tokens
}

/// phpdotenv's `ctype_space` on a token.
fn is_space(token: &str) -> bool {
    token
        .chars()
        .all(|c| matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{b}' | '\u{c}'))
}

/// The value of one entry as phpdotenv reads it, or its error. A `$` outside single quotes and not escaped marks a
/// variable: followed by `{NAME}` it would be substituted, which this reports as an error (the value would change).
fn parse_value(raw: &str) -> Result<String, String> {
    #[derive(PartialEq)]
    enum S {
        Initial,
        Unquoted,
        Single,
        Double,
        Escape,
        Whitespace,
        Comment,
    }
    let mut state = S::Initial;
    let mut out = String::new();
    let mut variables = Vec::new();
    for token in lex(raw) {
        let t = token.as_str();
        state = match state {
            S::Initial | S::Unquoted => match t {
                "'" if state == S::Initial => S::Single,
                "\"" if state == S::Initial => S::Double,
                "#" => S::Comment,
                _ if state == S::Unquoted && is_space(t) => S::Whitespace,
                "$" => {
                    variables.push(out.len());
                    out.push('$');
                    S::Unquoted
                }
                _ => {
                    out.push_str(t);
                    S::Unquoted
                }
            },
            S::Single => {
                if t == "'" {
                    S::Whitespace
                } else {
                    out.push_str(t);
                    S::Single
                }
            }
            S::Double => match t {
                "\"" => S::Whitespace,
                "\\" => S::Escape,
                "$" => {
                    variables.push(out.len());
                    out.push('$');
                    S::Double
                }
                _ => {
                    out.push_str(t);
                    S::Double
                }
            },
            S::Escape => match t {
                "\"" | "\\" | "$" => {
                    out.push_str(t);
                    S::Double
                }
                _ => {
                    let mut chars = t.chars();
                    let first = chars.next();
                    let escaped = match first {
                        Some('f') => '\u{c}',
                        Some('n') => '\n',
                        Some('r') => '\r',
                        Some('t') => '\t',
                        Some('v') => '\u{b}',
                        _ => return Err(format!("an unexpected escape sequence at [{raw}]")),
                    };
                    out.push(escaped);
                    out.push_str(chars.as_str());
                    S::Double
                }
            },
            S::Whitespace => {
                if t == "#" {
                    S::Comment
                } else if is_space(t) {
                    S::Whitespace
                } else {
                    return Err(format!("unexpected whitespace at [{raw}]"));
                }
            }
            S::Comment => S::Comment,
        };
    }
    if matches!(state, S::Single | S::Double | S::Escape) {
        return Err(format!("a missing closing quote at [{raw}]"));
    }
    for at in variables {
        let rest = &out[at + 1..];
        if let Some(name) = rest
            .strip_prefix('{')
            .and_then(|r| r.split_once('}'))
            .map(|(n, _)| n)
            && !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(format!("`${{{name}}}` would be substituted in [{raw}]"));
        }
    }
    Ok(out)
}

/// A whole `.env` text as phpdotenv reads it: every entry by name, or the first error. Entries are one line each
/// (a double-quoted value left open at the end of a line would continue on the next: refused here, since nothing
/// fedigen writes may span lines).
fn parse_dotenv(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut entries = Vec::new();
    for line in text.split(['\n', '\r']) {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (name, value) = trimmed
            .split_once('=')
            .map(|(n, v)| (n.trim(), Some(v.trim())))
            .unwrap_or((trimmed, None));
        if name.is_empty() {
            return Err(format!("an unexpected equals at [{line}]"));
        }
        let name = name.strip_prefix("export ").map_or(name, str::trim_start);
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(format!("an invalid name at [{name}]"));
        }
        let value = match value {
            None | Some("") => String::new(),
            Some(v) => parse_value(v)?,
        };
        entries.push((name.to_owned(), value));
    }
    Ok(entries)
}

fn lookup<'a>(entries: &'a [(String, String)], name: &str) -> Option<&'a str> {
    entries
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

// ---------------------------------------------------------------------------------------------------------------

/// The parser port can fail, and fails where phpdotenv does: the line upstream wrote before the fix is refused,
/// comments and substitutions are seen. (Runs without nixpkgs.)
fn phpdotenv_port_refuses_what_laravel_refuses() -> Result<(), Failed> {
    let refused = [
        "APP_NAME=Amstelland Pixels",
        "APP_NAME=\"open",
        "APP_NAME=\"a\\q\"",
        "APP_NAME=\"a\" b",
        "APP_NAME=\"${HOME}\"",
        "APP_NAME=${HOME}",
    ];
    for line in refused {
        if parse_dotenv(line).is_ok() {
            return Err(
                format!("phpdotenv refuses or changes `{line}`, the port accepted it").into(),
            );
        }
    }
    let read = [
        ("APP_NAME=Pixelfed", "Pixelfed"),
        ("APP_NAME=Pixel#fed", "Pixel"),
        ("APP_NAME=\"Amstelland Pixels\"", "Amstelland Pixels"),
        ("APP_NAME=\"a\\\"b\\\\c\\$d\\ne\"", "a\"b\\c$d\ne"),
        ("APP_NAME='x $y \\ \"'", "x $y \\ \""),
        ("APP_NAME=\"cost: $5\"", "cost: $5"),
    ];
    for (line, want) in read {
        let got = parse_dotenv(line)?;
        if lookup(&got, "APP_NAME") != Some(want) {
            return Err(format!("`{line}` reads as {got:?}, phpdotenv reads {want:?}").into());
        }
    }
    Ok(())
}

/// Instance names with every hazard for dotenv (spaces, `#`, quotes, backslashes, `$` and `${…}`, line breaks,
/// tabs, non-ASCII), and random ones: each becomes `APP_NAME` and `MAIL_FROM_NAME` in the `.env` that upstream
/// writes with `lib.generators.toKeyValue { }`, and phpdotenv reads each back exactly; every other line parses too.
fn pixelfed_env_reads_back_through_phpdotenv() -> Result<(), Failed> {
    let mut names: Vec<String> = [
        "Amstelland Pixels",
        "Pixelfed",
        "#1 photos",
        "a # b",
        "say \"cheese\"",
        "it's",
        "back\\slash\\",
        "\\n is not a line break",
        "cost $5",
        "${APP_KEY}",
        "$HOME and ${HOME}",
        "two\nlines",
        "cr\rhere",
        "tab\there",
        "  spaced  ",
        "Ünïcødé 📷",
        "",
        "=",
        "'single'",
        "\"",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let mut runner = TestRunner::new(Config::default());
    let strategy = proptest::string::string_regex("[ -~\\t\\n\\r\u{e9}\u{1F4F7}]{0,64}").unwrap();
    for _ in 0..300 {
        names.push(strategy.new_tree(&mut runner).unwrap().current());
    }
    let cases: Vec<Value> = names
        .iter()
        .map(|name| case(json!({ "pixelfed": { "enable": true, "appName": name, "appSecretsFile": "/run/secrets/pixelfed" } })))
        .collect();
    let results = eval_cases(&cases)?;
    for (name, result) in names.iter().zip(&results) {
        let env = result["pixelfedEnv"]
            .as_str()
            .ok_or("no .env for an enabled Pixelfed")?;
        let entries = parse_dotenv(env)
            .map_err(|e| format!("phpdotenv refuses the .env for appName {name:?}: {e}\n{env}"))?;
        for key in ["APP_NAME", "MAIL_FROM_NAME"] {
            if lookup(&entries, key) != Some(name.as_str()) {
                return Err(format!(
                    "{key} reads back as {:?}, not {name:?}:\n{env}",
                    lookup(&entries, key)
                )
                .into());
            }
        }
        if lookup(&entries, "MAIL_PORT") != Some("587")
            || lookup(&entries, "OPEN_REGISTRATION") != Some("false")
        {
            return Err(format!("integers and booleans must stay bare:\n{env}").into());
        }
    }
    eprintln!(
        "{} instance names: each .env line read back by phpdotenv's rules",
        names.len()
    );
    Ok(())
}

/// A password with every hazard for the files the modules write with it.
const HAZARDOUS_PASSWORD: &str = "p'a\"s$s\\w`o{r}d #1 ${HOME}";

/// Runs a unit's script text (as NixOS would, with bash and `set -e`) after replacing absolute paths, so it runs
/// in a scratch folder; `systemctl` is a stub that records its arguments.
fn run_script(script: &str, replace: &[(&str, &Path)], dir: &Path) -> Result<(), Failed> {
    let mut text = script.to_owned();
    for (from, to) in replace {
        text = text.replace(from, &to.display().to_string());
    }
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::write(
        bin.join("systemctl"),
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\n",
            dir.join("systemctl.log").display()
        ),
    )?;
    Command::new("chmod")
        .arg("+x")
        .arg(bin.join("systemctl"))
        .status()?;
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-e")
        .arg("-c")
        .arg(&text)
        .env("PATH", path)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "the script failed: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

/// Pixelfed's one secret file, joined by `pixelfed-secrets.service` from the operator's APP_KEY file, the SMTP
/// password and the S3 key file: run here, read back by phpdotenv's rules (the password exactly, whatever it
/// holds); a second run with the same inputs restarts nothing, a changed password restarts pixelfed-data-setup.
fn pixelfed_secret_file_reads_back() -> Result<(), Failed> {
    let results = eval_cases(&[case(json!({
        "smtp": { "user": "fediversity", "passwordFile": "/run/secrets/smtp" },
        "pixelfed": {
            "enable": true,
            "appSecretsFile": "/run/secrets/app",
            "objectStorage": { "buckets": { "media": "uu-pixelfed" }, "keyFile": "/run/secrets/s3" },
        },
    }))])?;
    let unit = &results[0]["units"]["pixelfed-secrets"];
    let script = unit["script"]
        .as_str()
        .ok_or("no pixelfed-secrets script")?;
    let watched = &results[0]["paths"]["pixelfed-secrets"]["pathConfig"]["PathChanged"];
    if watched != &json!(["/run/secrets/app", "/run/secrets/smtp", "/run/secrets/s3"]) {
        return Err(format!("the path unit must watch every input: {watched}").into());
    }
    let dir = tempfile::tempdir()?;
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run)?;
    let (app, smtp, s3) = (
        dir.path().join("app"),
        dir.path().join("smtp"),
        dir.path().join("s3"),
    );
    std::fs::write(&app, "APP_KEY=base64:ZmVkaWdlbg==\n")?;
    std::fs::write(&smtp, format!("{HAZARDOUS_PASSWORD}\n"))?;
    std::fs::write(
        &s3,
        "AWS_ACCESS_KEY_ID=GK123\nAWS_SECRET_ACCESS_KEY=abc123\n",
    )?;
    let replace = [
        ("/run/pixelfed-secrets", run.as_path()),
        ("/run/secrets/app", app.as_path()),
        ("/run/secrets/smtp", smtp.as_path()),
        ("/run/secrets/s3", s3.as_path()),
    ];
    for _ in 0..2 {
        run_script(script, &replace, dir.path())?;
    }
    let env = std::fs::read_to_string(run.join("env"))?;
    let entries = parse_dotenv(&env).map_err(|e| format!("{e}\n{env}"))?;
    for (key, want) in [
        ("APP_KEY", "base64:ZmVkaWdlbg=="),
        ("MAIL_PASSWORD", HAZARDOUS_PASSWORD),
        ("AWS_ACCESS_KEY_ID", "GK123"),
        ("AWS_SECRET_ACCESS_KEY", "abc123"),
    ] {
        if lookup(&entries, key) != Some(want) {
            return Err(format!("{key} reads back as {:?}:\n{env}", lookup(&entries, key)).into());
        }
    }
    if dir.path().join("systemctl.log").exists() {
        return Err("an unchanged secret file must restart nothing".into());
    }
    std::fs::write(&smtp, "another\n")?;
    run_script(script, &replace, dir.path())?;
    let log = std::fs::read_to_string(dir.path().join("systemctl.log"))?;
    if !log.contains("restart pixelfed-data-setup.service") {
        return Err(format!("a changed secret must run pixelfed-data-setup again: {log}").into());
    }
    Ok(())
}

/// Synapse merges configuration files at the top level only: with an SMTP password, the whole `email` section is
/// written at start (settings carry none), and PyYAML, which Synapse loads its files with, reads the section
/// whole with the password exact.
fn synapse_email_section_is_whole() -> Result<(), Failed> {
    let results = eval_cases(&[
        case(json!({
            "smtp": { "user": "fediversity", "passwordFile": "/run/secrets/smtp" },
            "matrix-synapse": { "enable": true, "synapseSecretsFile": "/run/secrets/registration" },
        })),
        case(json!({
            "smtp": { "port": 465 },
            "matrix-synapse": { "enable": true, "synapseSecretsFile": "/run/secrets/registration" },
        })),
    ])?;
    let synapse = &results[0]["services"]["matrix-synapse"];
    if synapse["settings"].get("email").is_some() {
        return Err(format!("a partial `email` must not be in settings: {synapse}").into());
    }
    if synapse["extraConfigFiles"] != json!(["/run/matrix-synapse/fediversity-email.yaml"]) {
        return Err(format!("the email file must be an extra config file: {synapse}").into());
    }
    if synapse["settings"]["registration_shared_secret_path"] != "/run/secrets/registration" {
        return Err("the registration secret is read by path".into());
    }
    let script = results[0]["units"]["matrix-synapse"]["preStart"]
        .as_str()
        .ok_or("no preStart writing the email section")?;
    let dir = tempfile::tempdir()?;
    let smtp = dir.path().join("smtp");
    std::fs::write(&smtp, format!("{HAZARDOUS_PASSWORD}\n"))?;
    let out = dir.path().join("email.yaml");
    run_script(
        script,
        &[
            ("/run/matrix-synapse/fediversity-email.yaml", out.as_path()),
            ("/run/secrets/smtp", smtp.as_path()),
        ],
        dir.path(),
    )?;
    let read = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&out)
        .output()?;
    if !read.status.success() {
        return Err(format!(
            "PyYAML refuses the email file: {}\n{}",
            String::from_utf8_lossy(&read.stderr),
            std::fs::read_to_string(&out)?
        )
        .into());
    }
    let yaml: Value = serde_json::from_slice(&read.stdout)?;
    let want = json!({ "email": {
        "smtp_host": "smtp.provider.example", "smtp_port": 587, "notif_from": "noreply@uu.example",
        "smtp_user": "fediversity", "smtp_pass": HAZARDOUS_PASSWORD,
        "force_tls": false, "require_transport_security": true,
    }});
    if yaml != want {
        return Err(format!("the email section reads back as {yaml}, not {want}").into());
    }
    // Without a password the section stays in settings; on port 465, TLS from the first byte.
    let email = &results[1]["services"]["matrix-synapse"]["settings"]["email"];
    if email["force_tls"] != true || email["require_transport_security"] != false {
        return Err(format!("port 465 is TLS from the first byte: {email}").into());
    }
    // The federation files and the body limit.
    let vhost = &results[0]["services"]["nginx"]["virtualHosts"]["matrix.uu.example"];
    let server = vhost["locations"]["= /.well-known/matrix/server"]["extraConfig"]
        .as_str()
        .unwrap_or_default();
    if !server.contains(r#"{"m.server":"matrix.uu.example:443"}"#) {
        return Err(format!("federation must be delegated to 443: {vhost}").into());
    }
    if vhost["extraConfig"] != "client_max_body_size 50M;" {
        return Err(format!("nginx must accept max_upload_size: {vhost}").into());
    }
    Ok(())
}

/// SMTP on 587 is STARTTLS and on 465 TLS from the first byte, in every application, from the port alone.
fn smtp_tls_follows_the_port() -> Result<(), Failed> {
    let apps = json!({
        "mastodon": { "enable": true },
        "peertube": { "enable": true, "peertubeSecretFile": "/run/secrets/pt" },
        "pixelfed": { "enable": true, "appSecretsFile": "/run/secrets/app" },
    });
    let results = eval_cases(&[
        case(apps.clone()),
        case({
            let mut a = apps.clone();
            merge(&mut a, &json!({ "smtp": { "port": 465 } }));
            a
        }),
    ])?;
    for (i, port) in [587, 465].into_iter().enumerate() {
        let s = &results[i]["services"];
        let implicit = port == 465;
        if s["peertube"]["settings"]["smtp"]["tls"] != implicit
            || s["peertube"]["settings"]["smtp"]["disable_starttls"] != false
        {
            return Err(
                format!("PeerTube on {port}: {}", s["peertube"]["settings"]["smtp"]).into(),
            );
        }
        let smtp_tls = s["mastodon"]["extraConfig"].get("SMTP_TLS").cloned();
        if smtp_tls != implicit.then(|| json!("true")) {
            return Err(format!("Mastodon on {port}: {}", s["mastodon"]["extraConfig"]).into());
        }
        let env = results[i]["pixelfedEnv"].as_str().unwrap_or_default();
        let entries = parse_dotenv(env)?;
        if lookup(&entries, "MAIL_ENCRYPTION") != Some("tls")
            || lookup(&entries, "MAIL_PORT") != Some(&port.to_string())
        {
            return Err(format!("Pixelfed on {port}:\n{env}").into());
        }
    }
    Ok(())
}

/// Every application keeps its media in its own bucket, addressed as it expects, with the key from its key file;
/// and without a key file nothing of S3 is set.
fn object_storage_is_wired() -> Result<(), Failed> {
    let storage = |buckets: Value| json!({ "buckets": buckets, "keyFile": "/run/secrets/s3" });
    let with = case(json!({
        "s3": { "publicUrl": "https://media.provider.example" },
        "mastodon": { "enable": true, "objectStorage": storage(json!({ "media": "uu-mastodon" })) },
        "pixelfed": { "enable": true, "appSecretsFile": "/run/secrets/app",
                      "objectStorage": storage(json!({ "media": "uu-pixelfed" })) },
        "peertube": { "enable": true, "peertubeSecretFile": "/run/secrets/pt",
                      "objectStorage": storage(json!({ "web_videos": "uu-pt-videos",
                          "streaming_playlists": "uu-pt-playlists", "original_video_files": "uu-pt-originals",
                          "user_exports": "uu-pt-exports", "captions": "uu-pt-captions" })) },
        "matrix-synapse": { "enable": true, "synapseSecretsFile": "/run/secrets/reg",
                            "objectStorage": storage(json!({ "media": "uu-synapse" })) },
    }));
    let without = case(json!({
        "mastodon": { "enable": true },
        "pixelfed": { "enable": true, "appSecretsFile": "/run/secrets/app" },
        "peertube": { "enable": true, "peertubeSecretFile": "/run/secrets/pt" },
        "matrix-synapse": { "enable": true, "synapseSecretsFile": "/run/secrets/reg" },
    }));
    let results = eval_cases(&[with, without])?;
    let s = &results[0]["services"];
    let m = &s["mastodon"];
    let want = json!({ "S3_ENABLED": "true", "S3_BUCKET": "uu-mastodon", "S3_REGION": "garage",
        "S3_ENDPOINT": "https://s3.provider.example", "S3_PROTOCOL": "https",
        "S3_ALIAS_HOST": "media.provider.example/uu-mastodon", "SINGLE_USER_MODE": "false" });
    if m["extraConfig"] != want || m["extraEnvFiles"] != json!(["/run/secrets/s3"]) {
        return Err(format!("Mastodon: {m}").into());
    }
    let env = results[0]["pixelfedEnv"].as_str().unwrap_or_default();
    let entries = parse_dotenv(env)?;
    for (key, value) in [
        ("PF_ENABLE_CLOUD", "true"),
        ("FILESYSTEM_CLOUD", "s3"),
        ("AWS_BUCKET", "uu-pixelfed"),
        ("AWS_DEFAULT_REGION", "garage"),
        ("AWS_ENDPOINT", "https://s3.provider.example"),
        ("AWS_USE_PATH_STYLE_ENDPOINT", "true"),
        ("AWS_URL", "https://media.provider.example/uu-pixelfed"),
    ] {
        if lookup(&entries, key) != Some(value) {
            return Err(format!("Pixelfed {key}:\n{env}").into());
        }
    }
    let pt = &s["peertube"];
    let os = &pt["settings"]["object_storage"];
    let kind = |bucket: &str| {
        json!({ "bucket_name": bucket, "prefix": "",
        "base_url": format!("https://media.provider.example/{bucket}") })
    };
    // Private kinds (stored isPrivate, served by presigned URLs on the S3 host): no base_url, so PeerTube
    // leaves the signed URL on the host it was signed for.
    let private = |bucket: &str| json!({ "bucket_name": bucket, "prefix": "", "base_url": "" });
    let want = json!({ "enabled": true, "endpoint": "https://s3.provider.example", "region": "garage",
        "upload_acl": { "public": null, "private": null },
        "web_videos": kind("uu-pt-videos"), "streaming_playlists": kind("uu-pt-playlists"),
        "captions": kind("uu-pt-captions"),
        "original_video_files": private("uu-pt-originals"), "user_exports": private("uu-pt-exports") });
    if os != &want || pt["serviceEnvironmentFile"] != "/run/peertube-env/env" {
        return Err(format!("PeerTube: {pt}").into());
    }
    let env_script = results[0]["units"]["peertube-env"]["script"]
        .as_str()
        .unwrap_or_default();
    if !env_script.contains("cat /run/secrets/s3") {
        return Err(
            format!("PeerTube's environment file must hold the S3 keys: {env_script}").into(),
        );
    }
    let synapse = &s["matrix-synapse"];
    let provider = &synapse["settings"]["media_storage_providers"][0];
    if provider["module"] != "s3_storage_provider.S3StorageProviderBackend"
        || provider["config"]
            != json!({ "bucket": "uu-synapse", "region_name": "garage",
                                        "endpoint_url": "https://s3.provider.example" })
        || provider["store_synchronous"] != true
        || synapse["plugins"].as_array().map(Vec::len) != Some(1)
        || results[0]["units"]["matrix-synapse"]["serviceConfig"]["EnvironmentFile"]
            != "/run/secrets/s3"
    {
        return Err(format!(
            "Synapse: {synapse} {}",
            results[0]["units"]["matrix-synapse"]
        )
        .into());
    }
    // Without a key file: no S3 anywhere.
    let s = &results[1]["services"];
    let env = results[1]["pixelfedEnv"].as_str().unwrap_or_default();
    if s["mastodon"]["extraConfig"].get("S3_ENABLED").is_some()
        || s["mastodon"]["extraEnvFiles"] != json!([])
        || env.contains("AWS_")
        || s["peertube"]["settings"].get("object_storage").is_some()
        || s["peertube"]["serviceEnvironmentFile"] != Value::Null
        || s["matrix-synapse"]["settings"]
            .get("media_storage_providers")
            .is_some()
        || s["matrix-synapse"]["plugins"] != json!([])
    {
        return Err(format!("without a key file nothing of S3 may be set: {s}").into());
    }
    Ok(())
}

/// Every application with accounts gets its administrator's unit from its manifest, enabled exactly when the
/// specification names an administrator and gives the password's file, after the units the manifest names.
fn admin_accounts_are_made_once() -> Result<(), Failed> {
    let manifests = fedigen::manifest::Manifest::load_all(&support::repository().join("templates"))
        .map_err(|e| e.to_string())?;
    let apps: Vec<_> = manifests
        .iter()
        .filter_map(|m| m.admin_account.as_ref().map(|a| (m, a)))
        .collect();
    let names: Vec<&str> = apps
        .iter()
        .map(|(m, _)| m.application.name.as_str())
        .collect();
    if names != ["mastodon", "matrix-synapse", "peertube", "pixelfed"] {
        return Err(
            format!("every application with accounts makes its administrator: {names:?}").into(),
        );
    }
    let required = json!({
        "pixelfed": { "appSecretsFile": "/run/secrets/app" },
        "peertube": { "peertubeSecretFile": "/run/secrets/pt" },
        "matrix-synapse": { "synapseSecretsFile": "/run/secrets/reg" },
    });
    let settings = |password: bool, admin: bool| {
        let mut c = json!({});
        for (m, a) in &apps {
            let name = &m.application.name;
            let mut app = json!({ "enable": true });
            if let Some(more) = required.get(name.as_str()) {
                merge(&mut app, more);
            }
            if password {
                merge(
                    &mut app,
                    &json!({ format!("{}File", a.password_secret): "/run/secrets/admin" }),
                );
            }
            merge(&mut c, &json!({ name.as_str(): app }));
        }
        if admin {
            merge(
                &mut c,
                &json!({ "admin": { "username": "uu_admin", "email": "admin@uu.example" } }),
            );
        }
        case(c)
    };
    let results = eval_cases(&[
        settings(true, true),
        settings(false, true),
        settings(true, false),
    ])?;
    for (m, a) in &apps {
        let unit_name = format!("{}-admin-account", m.application.name);
        let unit = &results[0]["units"][&unit_name];
        let env = &unit["environment"];
        if unit["enable"] != true
            || unit["after"] != json!(a.after)
            || unit["requires"] != json!(a.after)
            || env["FEDIVERSITY_ADMIN_USERNAME"] != "uu_admin"
            || env["FEDIVERSITY_ADMIN_EMAIL"] != "admin@uu.example"
            || env["FEDIVERSITY_ADMIN_PASSWORD_FILE"] != "/run/secrets/admin"
            || unit["serviceConfig"]["Type"] != "oneshot"
        {
            return Err(format!("{unit_name}: {unit}").into());
        }
        let stamp = format!("/var/lib/fediversity-admin/{}.created", m.application.name);
        let script = unit["script"].as_str().unwrap_or_default();
        if unit["unitConfig"]["ConditionPathExists"] != format!("!{stamp}")
            || !script.starts_with(a.script.as_str())
            || !script.contains(&format!("touch {stamp}"))
        {
            return Err(format!("{unit_name} must run once, marked by its stamp: {unit}").into());
        }
        for (i, why) in [(1, "no password file"), (2, "no administrator")] {
            if results[i]["units"][&unit_name]["enable"] != false {
                return Err(format!("{unit_name} must not run with {why}").into());
            }
        }
    }
    // Mastodon's runs in upstream's Rails environment (mastodon-web's, here its stand-in), without its PATH or port.
    let mastodon = &results[0]["units"]["mastodon-admin-account"];
    if mastodon["serviceConfig"]["User"] != "mastodon"
        || mastodon["environment"]["RAILS_ENV"] != "production"
        || mastodon["environment"].get("PATH").is_some()
        || mastodon["environment"].get("PORT").is_some()
    {
        return Err(format!(
            "Mastodon's administrator unit runs as upstream's Rails units do: {mastodon}"
        )
        .into());
    }
    // PeerTube's root gets the administrator's password as its initial one, and the administrator's address.
    let pt_env = results[0]["units"]["peertube-env"]["script"]
        .as_str()
        .unwrap_or_default();
    if !pt_env.contains("PT_INITIAL_ROOT_PASSWORD")
        || results[0]["services"]["peertube"]["settings"]["admin"]["email"] != "admin@uu.example"
    {
        return Err(format!("PeerTube's root: {pt_env}").into());
    }
    Ok(())
}

/// A changed Pixelfed setting reaches the running system (review F2): upstream writes `.env` and the config cache
/// in `pixelfed-data-setup`, a oneshot that switch-to-configuration restarts only while active, so it stays active
/// (RemainAfterExit), and the units that read `.env` and the cache restart with it.
fn pixelfed_settings_reach_the_running_system() -> Result<(), Failed> {
    let results = eval_cases(&[case(
        json!({ "pixelfed": { "enable": true, "appSecretsFile": "/run/secrets/app" } }),
    )])?;
    let units = &results[0]["units"];
    if units["pixelfed-data-setup"]["serviceConfig"]["RemainAfterExit"] != true {
        return Err(format!(
            "pixelfed-data-setup must stay active: {}",
            units["pixelfed-data-setup"]
        )
        .into());
    }
    for reader in ["phpfpm-pixelfed", "pixelfed-horizon"] {
        let part_of = &units[reader]["partOf"];
        if !part_of
            .as_array()
            .is_some_and(|a| a.contains(&json!("pixelfed-data-setup.service")))
        {
            return Err(format!(
                "{reader} must restart with pixelfed-data-setup: {}",
                units[reader]
            )
            .into());
        }
    }
    Ok(())
}

/// The object-storage, SMTP and administrator values go through the real upstream modules where the checkout has
/// them (`eval-modules.nix`'s `upstream.checked`: every value the generated modules give an upstream option is
/// read through that option, so upstream's types judge it: PeerTube's JSON settings keep `null`, Synapse's
/// `plugins` are packages, Mastodon's `extraEnvFiles` paths).
fn upstream_types_accept_the_values() -> Result<(), Failed> {
    let nixpkgs = nixpkgs().ok_or("FEDIGEN_NIXPKGS is not set")?;
    let repo = support::repository();
    let extra = r#"{ lib, ... }: {
      fediversity = {
        s3.publicUrl = "https://media.provider.example";
        smtp = { user = "fediversity"; passwordFile = "/run/secrets/smtp"; };
        admin = { username = "uu_admin"; email = "admin@uu.example"; };
        mastodon = { objectStorage = { buckets.media = "uu-mastodon"; keyFile = "/run/secrets/s3"; };
                     adminPasswordFile = "/run/secrets/admin"; };
        pixelfed = { objectStorage = { buckets.media = "uu-pixelfed"; keyFile = "/run/secrets/s3"; };
                     adminPasswordFile = "/run/secrets/admin"; };
        peertube = { objectStorage = { keyFile = "/run/secrets/s3"; buckets = {
                       web_videos = "v"; streaming_playlists = "p"; original_video_files = "o";
                       user_exports = "e"; captions = "c"; }; };
                     adminPasswordFile = "/run/secrets/admin"; };
        matrix-synapse = { objectStorage = { buckets.media = "uu-synapse"; keyFile = "/run/secrets/s3"; };
                           adminPasswordFile = "/run/secrets/admin"; };
      };
    }"#;
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(repo.join("gen/tests/nix/eval-modules.nix"))
        .arg("--arg")
        .arg("nixpkgs")
        .arg(&nixpkgs)
        .arg("--arg")
        .arg("modules")
        .arg(repo.join("modules"))
        .args(["--arg", "extra", extra])
        .args(["-A", "upstream"])
        .output()?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
    }
    let upstream: Value = serde_json::from_slice(&out.stdout)?;
    let loaded: Vec<&str> = upstream["loaded"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for (app, path) in [
        ("mastodon", "services.mastodon.extraConfig.S3_ALIAS_HOST"),
        ("mastodon", "services.mastodon.extraEnvFiles"),
        ("pixelfed", "services.pixelfed.settings.AWS_URL"),
        ("pixelfed", "services.pixelfed.settings.PF_ENABLE_CLOUD"),
        (
            "peertube",
            "services.peertube.settings.object_storage.upload_acl.public",
        ),
        (
            "peertube",
            "services.peertube.settings.object_storage.web_videos.base_url",
        ),
        (
            "peertube",
            "services.peertube.settings.object_storage.user_exports.base_url",
        ),
        (
            "peertube",
            "services.peertube.settings.object_storage.captions.bucket_name",
        ),
        ("peertube", "services.peertube.settings.admin.email"),
        ("peertube", "services.peertube.serviceEnvironmentFile"),
        ("matrix-synapse", "services.matrix-synapse.plugins"),
        (
            "matrix-synapse",
            "services.matrix-synapse.settings.media_storage_providers",
        ),
        ("matrix-synapse", "services.matrix-synapse.extraConfigFiles"),
    ] {
        if !loaded.contains(&app) {
            eprintln!("{app}: the checkout has no upstream module; {path} not checked");
            continue;
        }
        let checked = upstream["checked"][app]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !checked.contains(&Value::from(path)) {
            return Err(
                format!("{path} was not read through upstream's option: {checked:?}").into(),
            );
        }
    }
    Ok(())
}

fn main() {
    let has_lib = nixpkgs().is_some_and(|p| p.join("lib/default.nix").is_file());
    let reason = "needs nixpkgs' lib: set FEDIGEN_NIXPKGS to a nixpkgs (or nixpkgs.lib) checkout";
    let trials: Vec<support::GatedTrial> = vec![
        (
            "phpdotenv_port_refuses_what_laravel_refuses",
            true,
            phpdotenv_port_refuses_what_laravel_refuses as fn() -> Result<(), Failed>,
            "",
        ),
        (
            "pixelfed_env_reads_back_through_phpdotenv",
            has_lib,
            pixelfed_env_reads_back_through_phpdotenv,
            reason,
        ),
        (
            "pixelfed_secret_file_reads_back",
            has_lib,
            pixelfed_secret_file_reads_back,
            reason,
        ),
        (
            "synapse_email_section_is_whole",
            has_lib,
            synapse_email_section_is_whole,
            reason,
        ),
        (
            "smtp_tls_follows_the_port",
            has_lib,
            smtp_tls_follows_the_port,
            reason,
        ),
        (
            "object_storage_is_wired",
            has_lib,
            object_storage_is_wired,
            reason,
        ),
        (
            "admin_accounts_are_made_once",
            has_lib,
            admin_accounts_are_made_once,
            reason,
        ),
        (
            "pixelfed_settings_reach_the_running_system",
            has_lib,
            pixelfed_settings_reach_the_running_system,
            reason,
        ),
        (
            "upstream_types_accept_the_values",
            has_lib,
            upstream_types_accept_the_values,
            reason,
        ),
    ];
    support::run_gated(trials);
}
