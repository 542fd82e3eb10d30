//! Benchmark: one `fedigen edit` of a 10,000-line hand-written-style Nix file (a host configuration with
//! hundreds of service blocks, comments, nested and dotted bindings). Run with
//! `cargo bench -p fedigen --bench edit`; prints a Markdown table for BENCHMARKS.md with the same file through
//! the real tools: rnix's parser alone and Nix's own parser (`nix-instantiate --parse`).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use fedigen::edit::{EditPath, NewValue, NixFile};

/// A configuration of `blocks` virtual hosts and services, about 20 lines each.
fn configuration(blocks: usize) -> String {
    let mut text = String::from(
        "# A large host configuration, maintained by hand.\n{ config, lib, pkgs, ... }:\nlet\n  domain = \"example.org\";\nin\n{\n",
    );
    for i in 0..blocks {
        let _ = write!(
            text,
            r#"
  # Site {i}: a web application with its database.
  services.nginx.virtualHosts."site{i}.${{domain}}" = {{
    enableACME = true; # certificates from Let's Encrypt
    forceSSL = true;
    locations."/" = {{
      proxyPass = "http://127.0.0.1:{port}";
      extraConfig = ''
        client_max_body_size 64m; # uploads
      '';
    }};
  }};
  systemd.services."app{i}" = {{
    wantedBy = [ "multi-user.target" ];
    serviceConfig = {{
      ExecStart = "${{pkgs.hello}}/bin/hello --port {port}";
      DynamicUser = true;
      Restart = "on-failure";
    }};
  }};
"#,
            port = 8000 + i
        );
    }
    text.push_str("  networking.firewall.allowedTCPPorts = [\n    80\n    443\n  ];\n}\n");
    text
}

fn median(mut runs: Vec<Duration>) -> f64 {
    runs.sort();
    runs[runs.len() / 2].as_secs_f64() * 1e3
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("edit benchmark: skipped (run `cargo bench -p fedigen --bench edit`)");
        return;
    }
    let text = configuration(500);
    let lines = text.lines().count();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("host.nix");
    std::fs::write(&file, &text).unwrap();
    let runs = 31;

    // The whole edit as the command does it: read, parse, find, emit, check, write atomically.
    let path = EditPath::parse(r#"systemd.services."app250".serviceConfig.Restart"#).unwrap();
    let value = NewValue::Expr(
        fedigen::nix::value::from_json(&serde_json::json!("always"), Default::default()).unwrap(),
    );
    let mut compute_runs = Vec::new();
    let edit_runs: Vec<Duration> = (0..runs)
        .map(|_| {
            std::fs::write(&file, &text).unwrap();
            let start = Instant::now();
            let old = std::fs::read_to_string(&file).unwrap();
            let document = NixFile::for_path("host.nix", &old, &path).unwrap();
            let edit = document.set(&path, &value).unwrap();
            let new = edit.apply(&old);
            compute_runs.push(start.elapsed());
            fedigen::write::replace_file(&file, &new).unwrap();
            start.elapsed()
        })
        .collect();
    let edited = std::fs::read_to_string(&file).unwrap();
    assert_eq!(edited.matches("Restart = \"always\";").count(), 1);
    assert_eq!(edited.len() + 4, text.len());

    // One list item added and removed (the firewall list at the end of the file), without the write.
    let ports = EditPath::parse("networking.firewall.allowedTCPPorts").unwrap();
    let port = NewValue::Expr(
        fedigen::nix::value::from_json(&serde_json::json!(8448), Default::default()).unwrap(),
    );
    let item_runs: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let document = NixFile::for_path("host.nix", &text, &ports).unwrap();
            let added = document.add_item(&ports, &port).unwrap().apply(&text);
            let document = NixFile::for_path("host.nix", &added, &ports).unwrap();
            let removed = document.remove_item(&ports, &port).unwrap().apply(&added);
            let elapsed = start.elapsed();
            assert_eq!(removed, text);
            elapsed / 2
        })
        .collect();

    let rnix_runs: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            assert!(rnix::Root::parse(&text).errors().is_empty());
            start.elapsed()
        })
        .collect();
    let nix_runs: Vec<Duration> = (0..runs.min(11))
        .map(|_| {
            let start = Instant::now();
            let out = std::process::Command::new("nix-instantiate")
                .arg("--parse")
                .arg(&file)
                .output()
                .expect("nix-instantiate: run scripts/install-test-deps");
            assert!(out.status.success());
            start.elapsed()
        })
        .collect();
    let tokenize_runs: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            assert!(rnix::tokenize(&text).count() > lines);
            start.elapsed()
        })
        .collect();
    let compute = median(compute_runs);
    let item = median(item_runs);
    let tokenize = median(tokenize_runs);
    let edit = median(edit_runs);
    let rnix = median(rnix_runs);
    let nix = median(nix_runs);
    println!(
        "{lines} lines, {:.0} KB; medians of {runs} runs (11 for Nix)\n",
        text.len() as f64 / 1e3
    );
    println!("| step, {lines}-line file | milliseconds | ratio to fedigen edit |");
    println!("|---|---|---|");
    println!(
        "| fedigen edit: read, parse, find, emit, check, write atomically | {edit:.2} | 1.00× |"
    );
    println!(
        "| … the same without the write (temporary file, fsync, rename) | {compute:.2} | {:.2}× |",
        compute / edit
    );
    println!(
        "| … a list item added or removed (parse, find, emit, check; no write) | {item:.2} | {:.2}× |",
        item / edit
    );
    println!(
        "| rnix's tokenizer alone over the same file | {tokenize:.2} | {:.2}× |",
        tokenize / edit
    );
    println!(
        "| rnix parse of the same file alone | {rnix:.2} | {:.2}× |",
        rnix / edit
    );
    println!(
        "| `nix-instantiate --parse` of the same file (process included) | {nix:.2} | {:.2}× |",
        nix / edit
    );
}
