//! The nginx configuration the generated Garage module writes, through gixy: nixpkgs builds every `nginx.conf`
//! with `pkgs.writers.writeNginxConfig`, which runs gixy and fails the machine's build on any finding (nginx
//! module option `validateConfigFile`, default true). Nothing here builds a NixOS system, so without this a
//! finding (review-17 F1: `proxy_set_header Host $http_host`, gixy's host_spoofing) is first seen by the provider.
//!
//! The fragments are read from `modules/garage.nix` (what the machines get): the `appendHttpConfig` text at the
//! `http` level, each location's `extraConfig` inside `location <its path>`, Nix interpolations replaced by a host
//! name. gixy 0.1.20 with pyparsing 2.4.7 is what nixpkgs packages; `scripts/install-test-deps` installs it into
//! `~/.cache/fedigen/gixy-0.1.20` (or set FEDIGEN_GIXY to a gixy). Ignored, with the reason, where it is absent.

use std::path::PathBuf;
use std::process::Command;

use libtest_mimic::Failed;

mod support;

use support::repository;

/// The gixy to run: FEDIGEN_GIXY, else the one `scripts/install-test-deps` installs.
fn gixy() -> PathBuf {
    if let Some(path) = std::env::var_os("FEDIGEN_GIXY") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/root/.cache"));
    cache.join("fedigen/gixy-0.1.20/bin/gixy")
}

/// The text of the Nix indented string that starts right after `start` (just past its opening `''`), with its
/// indentation removed and every interpolation replaced by `fedigen.example`.
fn indented_string(text: &str, start: usize) -> String {
    let rest = &text[start..];
    let end = rest.find("'';").expect("the indented string is closed");
    let body = &rest[..end];
    let lines: Vec<&str> = body.lines().skip(1).collect();
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out = String::new();
    for line in lines {
        out.push_str(line.get(indent..).unwrap_or("").trim_end());
        out.push('\n');
    }
    // `${…}` (no nesting in these fragments) → a host name.
    let mut result = String::new();
    let mut rest = out.as_str();
    while let Some(i) = rest.find("${") {
        result.push_str(&rest[..i]);
        let close = rest[i..].find('}').expect("the interpolation is closed");
        result.push_str("fedigen.example");
        rest = &rest[i + close + 1..];
    }
    result.push_str(rest);
    result
}

/// An `nginx.conf` of the Garage module's nginx text: http-level text, then one server with each location.
fn garage_nginx_conf(module: &str) -> String {
    let mut http = String::new();
    let mut locations = String::new();
    for (at, _) in module.match_indices("appendHttpConfig = ''") {
        http.push_str(&indented_string(module, at + "appendHttpConfig = ''".len()));
    }
    for (at, _) in module.match_indices("extraConfig = ''") {
        // The location it belongs to: the nearest `locations."<path>"` before it.
        let before = &module[..at];
        let path = before
            .rfind("locations.\"")
            .map(|i| {
                let quoted = &before[i + "locations.\"".len()..];
                quoted[..quoted.find('"').expect("a closed location path")].to_owned()
            })
            .expect("every extraConfig of the Garage module is a location's");
        let body = indented_string(module, at + "extraConfig = ''".len());
        locations.push_str(&format!("    location {path} {{\n"));
        for line in body.lines() {
            locations.push_str(&format!("      {line}\n"));
        }
        locations.push_str("    }\n");
    }
    format!(
        "events {{ }}\nhttp {{\n{http}  upstream garage_s3 {{ server 127.0.0.1:3900; }}\n  upstream garage_web {{ server 127.0.0.1:3902; }}\n  server {{\n    listen 443 ssl;\n    server_name fedigen.example;\n{locations}  }}\n}}\n"
    )
}

/// Runs gixy on `conf`; Ok(()) when it finds nothing, else its report.
fn run_gixy(conf: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = dir.path().join("nginx.conf");
    std::fs::write(&file, conf).map_err(|e| e.to_string())?;
    let out = Command::new(gixy())
        .arg(&file)
        .output()
        .map_err(|e| format!("cannot run gixy: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The Garage module's nginx text passes gixy, as nixpkgs' build of `nginx.conf` requires.
fn the_garage_nginx_text_passes_gixy() -> Result<(), Failed> {
    let module = std::fs::read_to_string(repository().join("modules/garage.nix"))?;
    let conf = garage_nginx_conf(&module);
    if !conf.contains("proxy_set_header Host") || !conf.contains("map $request_method") {
        return Err(
            format!("the S3 location or the preflight maps were not found:\n{conf}").into(),
        );
    }
    run_gixy(&conf).map_err(|report| {
        format!("gixy refuses the Garage module's nginx text:\n{report}\n{conf}").into()
    })
}

/// gixy finds what nixpkgs' build would refuse: the S3 location with the old `Host $http_host`, and an
/// `add_header` inside an `if` (so the check above can fail, and the fragments reach gixy as it reads them).
fn gixy_refuses_planted_faults() -> Result<(), Failed> {
    let module = std::fs::read_to_string(repository().join("modules/garage.nix"))?;
    let planted = module.replacen(
        "proxy_set_header Host $host;",
        "proxy_set_header Host $http_host;",
        1,
    );
    if planted == module {
        return Err("the S3 location's Host line was not found".into());
    }
    match run_gixy(&garage_nginx_conf(&planted)) {
        Ok(()) => Err("gixy accepted `proxy_set_header Host $http_host`".into()),
        Err(report) if report.contains("host_spoofing") => Ok(()),
        Err(report) => Err(format!("gixy failed otherwise:\n{report}").into()),
    }
}

fn main() {
    let available = gixy().is_file();
    let reason = "needs gixy 0.1.20 (nixpkgs' nginx check): scripts/install-test-deps installs it into \
                  ~/.cache/fedigen/gixy-0.1.20, or set FEDIGEN_GIXY";
    support::run_gated(vec![
        (
            "the_garage_nginx_text_passes_gixy",
            available,
            the_garage_nginx_text_passes_gixy,
            reason,
        ),
        (
            "gixy_refuses_planted_faults",
            available,
            gixy_refuses_planted_faults,
            reason,
        ),
    ])
}
