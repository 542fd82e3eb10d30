//! The nginx configuration the generated Garage module writes, checked as nixpkgs and nginx check it.
//!
//! **gixy.** nixpkgs builds every `nginx.conf`
//! with `pkgs.writers.writeNginxConfig`, which runs gixy and fails the machine's build on any finding (nginx
//! module option `validateConfigFile`, default true). Nothing here builds a NixOS system, so without this a
//! finding (review-17 F1: `proxy_set_header Host $http_host`, gixy's host_spoofing) is first seen by the provider.
//!
//! The fragments are read from `modules/garage.nix` (what the machines get): the `appendHttpConfig` text at the
//! `http` level, each location's `extraConfig` inside `location <its path>`, Nix interpolations replaced by a host
//! name. gixy 0.1.20 with pyparsing 2.4.7 is what nixpkgs packages; `scripts/install-test-deps` installs it into
//! `~/.cache/fedigen/gixy-0.1.20` (or set FEDIGEN_GIXY to a gixy). Ignored, with the reason, where it is absent.
//!
//! **nginx -t.** nixpkgs' nginx unit runs `nginx -t` before it starts; the S3 host's server names (its bucket
//! aliases, PeerTube's up to 70 characters) must fit the module's `serverNamesHashBucketSize`, or nginx refuses the
//! whole configuration (review-16 P1). The names are read from `deployments/garage-cluster.nix`, the size from
//! `modules/garage.nix`, and Debian's nginx binary checks them (`scripts/install-test-deps` unpacks it into
//! `~/.cache/fedigen/nginx`, or set FEDIGEN_NGINX). The longest name `fedigen validate` allows (253 characters)
//! must fit too (review-18 R2).
//!
//! **The media location, run.** The same nginx serves the module's media location (its maps, its `if`, its
//! rewrite and Host) in front of a stand-in for Garage's web endpoint: a preflight gets its CORS headers, a GET
//! reaches the bucket's web host with the key's path (review-18 R4).

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

/// gixy finds what nixpkgs' build would refuse: the S3 location with the old `Host $http_host` (so the check above
/// can fail, and the fragments reach gixy as it reads them). An `add_header` inside an `if` is not planted: gixy
/// 0.1.20 does not look for it (Gixy-Next's if_is_evil does); the module keeps its `if` to a bare `return`.
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

/// The nginx binary to check with: FEDIGEN_NGINX, else the one `scripts/install-test-deps` unpacks.
fn nginx() -> PathBuf {
    if let Some(path) = std::env::var_os("FEDIGEN_NGINX") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/root/.cache"));
    cache.join("fedigen/nginx/usr/sbin/nginx")
}

/// The quoted strings of the Nix list `name = [ … ];` in `text`.
fn nix_list(text: &str, name: &str) -> Vec<String> {
    let start = text
        .find(&format!("{name} = ["))
        .unwrap_or_else(|| panic!("`{name}` is in the file"));
    let rest = &text[start..];
    let list = &rest[..rest.find("];").expect("the list is closed")];
    list.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The quoted string of `name = "…";` in `text`.
fn nix_string(text: &str, name: &str) -> String {
    nix_list(
        &text.replace(&format!("{name} = \""), &format!("{name} = [\"")),
        name,
    )
    .into_iter()
    .next()
    .unwrap_or_else(|| panic!("`{name}` is in the file"))
}

/// `nginx -t` of the S3 host with its aliases (and `extra` names), the media host and an application's host on one
/// port, with `bucket_size` (None: nginx's default); Ok(()) or nginx's report.
fn nginx_t(bucket_size: Option<&str>, extra: &[String]) -> Result<(), String> {
    let repo = repository();
    let cluster = std::fs::read_to_string(repo.join("deployments/garage-cluster.nix"))
        .map_err(|e| e.to_string())?;
    let s3 = nix_string(&cluster, "s3Host");
    let media = nix_string(&cluster, "mediaHost");
    let mut names = vec![s3.clone()];
    names.extend(
        nix_list(&cluster, "vhostBuckets")
            .iter()
            .map(|b| format!("{b}.{s3}")),
    );
    names.extend_from_slice(extra);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let prefix = dir.path();
    let size = bucket_size
        .map(|n| format!("server_names_hash_bucket_size {n};"))
        .unwrap_or_default();
    let temp = private_paths(prefix);
    let conf = format!(
        "error_log stderr;\npid {pid};\nevents {{ }}\nhttp {{\n  access_log off;\n{temp}  {size}\n  server {{ listen 127.0.0.1:18080; server_name {names}; return 204; }}\n  server {{ listen 127.0.0.1:18080; server_name {media}; return 204; }}\n  server {{ listen 127.0.0.1:18080; server_name video.fedigen.example; return 204; }}\n}}\n",
        pid = prefix.join("nginx.pid").display(),
        names = names.join(" ")
    );
    let file = prefix.join("nginx.conf");
    std::fs::write(&file, &conf).map_err(|e| e.to_string())?;
    let out = Command::new(nginx())
        .arg("-t")
        .arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(&file)
        .arg("-e")
        .arg("stderr")
        .output()
        .map_err(|e| format!("cannot run nginx: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}\n{conf}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// The module's `serverNamesHashBucketSize`.
fn module_bucket_size() -> Result<String, Failed> {
    let module = std::fs::read_to_string(repository().join("modules/garage.nix"))?;
    let marker = "serverNamesHashBucketSize = lib.mkDefault ";
    let at = module
        .find(marker)
        .ok_or("modules/garage.nix sets no serverNamesHashBucketSize")?;
    let size: String = module[at + marker.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Ok(size)
}

/// The module's server-names bucket size holds the S3 host's names: `nginx -t` accepts them.
fn the_storage_server_names_fit_the_module_bucket_size() -> Result<(), Failed> {
    nginx_t(Some(&module_bucket_size()?), &[])
        .map_err(|report| format!("nginx -t refuses the S3 host's names:\n{report}").into())
}

/// `fedigen validate` lets a virtual-host bucket name be as long as DNS allows (253 characters with its S3
/// host, `deploy::storage`): the module's bucket size must hold such a name too, or a specification that validates
/// makes an nginx that does not start (review-18 R2: 256 held names of up to 238 characters).
fn the_longest_name_validate_allows_fits_the_module_bucket_size() -> Result<(), Failed> {
    let label = "a".repeat(63);
    let longest = format!("{label}.{label}.{label}.{}.example", "b".repeat(53));
    assert_eq!(longest.len(), 253);
    nginx_t(Some(&module_bucket_size()?), &[longest]).map_err(|report| {
        format!(
            "nginx -t refuses a 253-character server name with the module's bucket size:\n{report}"
        )
        .into()
    })
}

/// Without the module's setting, nginx's default bucket size refuses the same names (what review-16 P1 found):
/// the check above can fail, and it reads the names nginx chokes on.
fn nginx_default_bucket_size_refuses_the_names() -> Result<(), Failed> {
    match nginx_t(None, &[]) {
        Ok(()) => Err("nginx -t accepted the S3 host's names with its default bucket size".into()),
        Err(report) if report.contains("server_names_hash_bucket_size") => Ok(()),
        Err(report) => Err(format!("nginx -t failed otherwise:\n{report}").into()),
    }
}

/// The media host's location served by the real nginx: the module's maps at `http` level and its media location,
/// proxying to a stand-in for Garage's web endpoint that answers with the Host and path it was asked for. A
/// browser's preflight (OPTIONS) gets 204 with the CORS headers; a GET reaches `<bucket>.web.<s3 host>` with the
/// bucket stripped from the path and carries only `Access-Control-Allow-Origin` (the preflight's headers are
/// empty, so absent). Review-18 R4: nothing ran this location before.
fn the_media_location_answers_preflight_and_proxies_to_the_bucket() -> Result<(), Failed> {
    let module = std::fs::read_to_string(repository().join("modules/garage.nix"))?;
    let mut http = String::new();
    for (at, _) in module.match_indices("appendHttpConfig = ''") {
        http.push_str(&indented_string(
            &module,
            at + "appendHttpConfig = ''".len(),
        ));
    }
    let marker = "locations.\"~ ^/(?<fedigen_bucket>";
    let at = module
        .find(marker)
        .ok_or("modules/garage.nix has no media location")?;
    let path_end = module[at + "locations.\"".len()..]
        .find('"')
        .ok_or("the media location's path is closed")?;
    let path = &module[at + "locations.\"".len()..][..path_end];
    let extra = at
        + module[at..]
            .find("extraConfig = ''")
            .ok_or("the media location has extraConfig")?;
    let body = indented_string(&module, extra + "extraConfig = ''".len());
    // The location's other settings as the module writes them, between its path and its extraConfig: where it
    // proxies, and no recommended proxy headers (nixpkgs would add an include of them, which this test does not
    // stand in for). Review-20 W2: a hand-written copy of them could drift from the module.
    let settings = &module[at..extra];
    let proxy_pass = settings
        .split_once("proxyPass = \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(target, _)| target)
        .ok_or("the media location sets no proxyPass")?;
    if !settings.contains("recommendedProxySettings = false;") {
        return Err("the media location no longer turns recommendedProxySettings off: nixpkgs then includes its proxy headers (Host among them), which this test does not reproduce; extend it".into());
    }
    let dir = tempfile::tempdir()?;
    let prefix = dir.path();
    let port = free_port()?;
    let backend = free_port()?;
    let temp = private_paths(prefix);
    let conf = format!(
        "daemon off;\nmaster_process off;\nerror_log stderr;\npid {pid};\nevents {{ }}\nhttp {{\n  access_log off;\n{temp}{http}  upstream garage_web {{ server 127.0.0.1:{backend}; }}\n  server {{\n    listen 127.0.0.1:{backend};\n    location / {{ return 200 \"$host $uri\"; }}\n  }}\n  server {{\n    listen 127.0.0.1:{port};\n    server_name media.fedigen.example;\n    location {path} {{\n      proxy_pass {proxy_pass};\n{body}    }}\n  }}\n}}\n",
        pid = prefix.join("nginx.pid").display(),
    );
    let file = prefix.join("nginx.conf");
    std::fs::write(&file, &conf)?;
    let mut server = Command::new(nginx())
        .arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(&file)
        .arg("-e")
        .arg("stderr")
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let result = (|| -> Result<(), String> {
        let url = format!("http://127.0.0.1:{port}/uni-mastodon/media/a.png");
        let curl = |method: &str| -> Result<String, String> {
            let mut last = String::new();
            for _ in 0..50 {
                let out = Command::new("curl")
                    .args(["--silent", "--include", "--request", method])
                    .args(["--header", "Host: media.fedigen.example"])
                    .args(["--header", "Origin: https://social.example"])
                    .arg(&url)
                    .output()
                    .map_err(|e| format!("cannot run curl: {e}"))?;
                if out.status.success() {
                    return Ok(String::from_utf8_lossy(&out.stdout).replace("\r", ""));
                }
                last = String::from_utf8_lossy(&out.stderr).into_owned();
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(format!("nginx did not answer: {last}"))
        };
        let preflight = curl("OPTIONS")?;
        for line in [
            "HTTP/1.1 204",
            "Access-Control-Allow-Origin: *",
            "Access-Control-Allow-Methods: GET, HEAD, OPTIONS",
            "Access-Control-Allow-Headers: *",
            "Access-Control-Max-Age: 86400",
        ] {
            if !preflight.contains(line) {
                return Err(format!("the preflight lacks `{line}`:\n{preflight}"));
            }
        }
        let get = curl("GET")?;
        if !get.contains("HTTP/1.1 200") || !get.contains("Access-Control-Allow-Origin: *") {
            return Err(format!(
                "the GET was not proxied with its CORS header:\n{get}"
            ));
        }
        if get.contains("Access-Control-Allow-Methods") || get.contains("Access-Control-Max-Age") {
            return Err(format!("a GET carries the preflight's headers:\n{get}"));
        }
        if !get.ends_with("uni-mastodon.web.fedigen.example /media/a.png") {
            return Err(format!(
                "Garage's web endpoint was not asked for the bucket's host and the key's path:\n{get}"
            ));
        }
        Ok(())
    })();
    let _ = server.kill();
    let _ = server.wait();
    result.map_err(|e| format!("{e}\n{conf}").into())
}

/// The `http`-level lines that keep an unprivileged nginx's temporary folders under `prefix` (Debian's defaults
/// are under /var/lib/nginx, which the unpacked binary has not got).
fn private_paths(prefix: &std::path::Path) -> String {
    ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .iter()
        .map(|t| format!("  {t}_temp_path {}/{t};\n", prefix.display()))
        .collect()
}

/// A TCP port free on 127.0.0.1 now.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn main() {
    let has_nginx = nginx().is_file();
    let nginx_reason = "needs Debian's nginx binary: scripts/install-test-deps unpacks it into \
                        ~/.cache/fedigen/nginx, or set FEDIGEN_NGINX";
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
        (
            "the_storage_server_names_fit_the_module_bucket_size",
            has_nginx,
            the_storage_server_names_fit_the_module_bucket_size,
            nginx_reason,
        ),
        (
            "the_media_location_answers_preflight_and_proxies_to_the_bucket",
            has_nginx,
            the_media_location_answers_preflight_and_proxies_to_the_bucket,
            nginx_reason,
        ),
        (
            "the_longest_name_validate_allows_fits_the_module_bucket_size",
            has_nginx,
            the_longest_name_validate_allows_fits_the_module_bucket_size,
            nginx_reason,
        ),
        (
            "nginx_default_bucket_size_refuses_the_names",
            has_nginx,
            nginx_default_bucket_size_refuses_the_names,
            nginx_reason,
        ),
    ])
}
