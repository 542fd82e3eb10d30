//! `fedigen migrate plan`: the plan of the example operators between `examples/provider.toml` and
//! `examples/provider-b.toml` names every state item of every enabled application, its jobs pass the engine's
//! own validation, `--json` round-trips, and conflicts are found and located — also for random pairs of
//! specifications with a planted conflict (proptest).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use fedigen::migrate::job::Job;
use fedigen::migrate::plan::{self, Kind, Plan, Planned, Request};
use fedigen::model::{Catalog, Machine, SpecDocument};
use proptest::prelude::*;

fn catalog() -> Catalog {
    Catalog::load(&support::repository().join("templates")).expect("the templates load")
}

fn document(path: &str) -> SpecDocument {
    let text = std::fs::read_to_string(support::repository().join(path)).unwrap();
    SpecDocument::toml(path, &text)
}

fn example_machines() -> BTreeMap<String, Machine> {
    let path = support::repository().join("examples/provider-b.amstelland-machines.toml");
    toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn request<'a>(
    operator: &'a str,
    from: &'a SpecDocument,
    to: &'a SpecDocument,
    catalog: &'a Catalog,
    to_catalog: &'a Catalog,
) -> Request<'a> {
    Request {
        operator,
        from,
        to,
        from_catalog: catalog,
        to_catalog,
        machines: None,
        throughput: None,
        change_permille: 10,
        dns_command: None,
        replicate: false,
    }
}

/// Every (application, kind, name) the manifests' `[state]` declares for the operator's enabled applications.
fn declared(catalog: &Catalog, apps: &[String]) -> BTreeSet<(String, Kind, String)> {
    let mut out = BTreeSet::new();
    for app in apps {
        let state = &catalog.manifests[app].state;
        for name in state.databases.keys() {
            out.insert((app.clone(), Kind::Database, name.clone()));
        }
        for name in &state.buckets {
            out.insert((app.clone(), Kind::Bucket, name.clone()));
        }
        for name in state.directories.keys() {
            out.insert((app.clone(), Kind::Directory, name.clone()));
        }
        for name in state.identity.keys() {
            out.insert((app.clone(), Kind::Identity, name.clone()));
        }
    }
    out
}

/// The moves of the manifests' `[state]`: every move but the certificates' (see [`certificates`]).
fn moved(plan: &Plan) -> BTreeSet<(String, Kind, String)> {
    plan.moves
        .iter()
        .filter(|m| !m.name.starts_with("tls-"))
        .map(|m| (m.application.clone(), m.kind, m.name.clone()))
        .collect()
}

/// For each application, the host whose ACME certificate its moves carry: exactly one folder of NixOS's ACME
/// module, `/var/lib/acme/<host>`, read at A over ssh, placed at the same path; never lego's `.lego/<host>`
/// (B renewing A's order with its own account is refused: review 25, B2).
fn certificates(plan: &Plan) -> BTreeMap<String, String> {
    let mut targets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in plan.moves.iter().filter(|m| m.name.starts_with("tls-")) {
        assert_eq!(m.kind, Kind::Directory, "{m:?}");
        assert!(m.source.starts_with("ssh://") && m.automatic, "{m:?}");
        let path = m.target.split(' ').next().unwrap().to_owned();
        assert!(m.source.ends_with(&path), "{m:?}");
        assert!(!path.contains("/.lego"), "{m:?}");
        targets
            .entry(m.application.clone())
            .or_default()
            .insert(path);
    }
    targets
        .into_iter()
        .map(|(app, paths)| {
            assert_eq!(paths.len(), 1, "{app}: {paths:?}");
            let host = paths
                .iter()
                .find_map(|p| p.strip_prefix("/var/lib/acme/"))
                .unwrap_or_else(|| panic!("{app}: {paths:?}"))
                .to_owned();
            (app, host)
        })
        .collect()
}

#[test]
fn every_example_operator_moves_all_its_state_and_its_jobs_are_valid() {
    let catalog = catalog();
    let from = document("examples/provider.toml");
    let to = document("examples/provider-b.toml");
    for (operator, apps) in [
        ("amstelland", vec!["mastodon", "pixelfed"]),
        ("zeeinstituut", vec!["peertube"]),
        ("digitalevrijheid", vec!["mastodon", "matrix-synapse"]),
    ] {
        let mut r = request(operator, &from, &to, &catalog, &catalog);
        if operator == "amstelland" {
            r.machines = Some((
                "examples/provider-b.amstelland-machines.toml",
                example_machines(),
            ));
        }
        let Planned { plan, jobs } = plan::plan(&r).unwrap();
        assert!(
            plan.conflicts.is_empty(),
            "{operator}: {:#?}",
            plan.conflicts
        );
        let apps: Vec<String> = apps.into_iter().map(String::from).collect();
        let expected = declared(&catalog, &apps);
        assert!(!expected.is_empty());
        assert_eq!(moved(&plan), expected, "{operator}");
        // Each application's certificate moves: its host is one whose DNS record changes from A to B.
        let certified = certificates(&plan);
        assert_eq!(
            certified.keys().collect::<Vec<_>>(),
            expected
                .iter()
                .map(|(a, _, _)| a)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>(),
            "{operator}"
        );
        if operator == "amstelland" {
            for host in certified.values() {
                assert!(
                    plan.dns.changes.iter().any(|c| &c.name == host),
                    "{operator}: {host} is not among the DNS changes"
                );
            }
        }
        // One job per application machine, each valid by the engine's own rules, and the plan's steps are the
        // engine's steps of exactly those jobs.
        assert_eq!(jobs.len(), apps.len());
        for ((machine, job), steps) in jobs.iter().zip(&plan.steps) {
            assert_eq!(&steps.machine, machine);
            assert_eq!(steps.steps, fedigen::migrate::run::steps(job));
            let parsed = Job::parse(&job.to_json(), machine).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&parsed, job);
            // Every automatic move of this application is in its job, under its name.
            let app = machine.strip_prefix(&format!("{operator}-")).unwrap();
            for m in plan
                .moves
                .iter()
                .filter(|m| m.application == app && m.automatic)
            {
                let names: Vec<&str> = match m.kind {
                    Kind::Database => job.databases.iter().map(|d| d.name.as_str()).collect(),
                    Kind::Bucket => job.buckets.iter().map(|d| d.name.as_str()).collect(),
                    Kind::Directory => job.directories.iter().map(|d| d.name.as_str()).collect(),
                    Kind::Identity => job.identity.iter().map(|d| d.name.as_str()).collect(),
                };
                assert!(
                    names.contains(&m.name.as_str()),
                    "{machine}: {} {}",
                    m.kind,
                    m.name
                );
            }
            assert!(!job.commands.freeze.is_empty() && !job.commands.source_start.is_empty());
            // B's PostgreSQL authenticates its socket by peer (NixOS's default): the tools at B run as the OS
            // user named like the role, and that user is one the application's module makes at B (it owns the
            // application's folders or identity files there). The source is reached over TCP with a password.
            let service_users: BTreeSet<&str> = catalog.manifests[app]
                .state
                .directories
                .values()
                .map(|d| d.owner.as_str())
                .chain(
                    catalog.manifests[app]
                        .state
                        .identity
                        .values()
                        .map(|i| i.owner.as_str()),
                )
                .collect();
            for d in &job.databases {
                // nixpkgs' sockets: PostgreSQL's folder, MySQL's (MariaDB's) socket file.
                let socket = match d.engine {
                    fedigen::migrate::job::Engine::Postgresql => "/run/postgresql",
                    fedigen::migrate::job::Engine::Mysql => "/run/mysqld/mysqld.sock",
                };
                assert_eq!(d.target.host, socket, "{machine}: {}", d.name);
                assert_eq!(
                    d.target.os_user.as_deref(),
                    Some(d.target.user.as_str()),
                    "{machine}: {}: the tools at B must run as the role's OS user",
                    d.name
                );
                assert!(
                    service_users.contains(d.target.user.as_str()),
                    "{machine}: role {} is no user of {app}'s service ({service_users:?})",
                    d.target.user
                );
                assert_eq!(d.source.os_user, None);
                assert!(d.source.password_file.is_some());
            }
            // The units deriving state from what moved run again at B, before the application starts
            // (Pixelfed's pixelfed-data-setup ran at B's boot, before the move replaced its data folder).
            let manifest = &catalog.manifests[app];
            let started = |unit: &str| {
                job.commands
                    .start
                    .iter()
                    .position(|argv| argv.iter().skip(2).any(|u| u == unit))
            };
            for unit in &manifest.state.setup_units {
                let setup = started(unit)
                    .unwrap_or_else(|| panic!("{machine}: the job's start never runs {unit}"));
                assert_eq!(job.commands.start[setup][1], "restart", "{machine}: {unit}");
                for app_unit in &manifest.health.units {
                    assert!(
                        started(app_unit).is_some_and(|i| i > setup),
                        "{machine}: {app_unit} starts after {unit}"
                    );
                }
            }
        }
        assert!(
            apps.iter()
                .any(|app| !catalog.manifests[app].state.setup_units.is_empty())
                || operator != "amstelland",
            "Pixelfed declares its setup unit"
        );
        // The JSON form reads back to the same plan.
        let back: Plan = serde_json::from_str(&plan.to_json()).unwrap();
        assert_eq!(back, plan);
    }
}

#[test]
fn the_dns_changes_are_every_record_of_the_zone_from_a_to_b() {
    let catalog = catalog();
    let from = document("examples/provider.toml");
    let to = document("examples/provider-b.toml");
    let mut r = request("amstelland", &from, &to, &catalog, &catalog);
    r.machines = Some(("m.toml", example_machines()));
    let plan = plan::plan(&r).unwrap().plan;
    let changes: BTreeMap<(String, String), (Vec<String>, Vec<String>)> = plan
        .dns
        .changes
        .iter()
        .map(|c| {
            (
                (c.name.clone(), c.kind.clone()),
                (c.from.clone(), c.to.clone()),
            )
        })
        .collect();
    let z = "amstelland-university.example";
    let a = |s: &str| vec![s.to_owned()];
    assert_eq!(
        changes[&(format!("social.{z}"), "A".into())],
        (a("192.0.2.11"), a("203.0.113.11"))
    );
    // B gives the machine no IPv6 address: the AAAA record goes away, and the plan says so.
    assert_eq!(
        changes[&(format!("social.{z}"), "AAAA".into())],
        (a("2001:db8:0:1::11"), vec![])
    );
    assert_eq!(
        changes[&(format!("pixelfed.{z}"), "A".into())],
        (a("192.0.2.12"), a("203.0.113.12"))
    );
    assert_eq!(changes.len(), 6, "{changes:#?}");
    assert_eq!(plan.dns.ttl, 3600);
    assert_eq!(plan.dns.lowered_ttl, 60);
    assert!(plan.dns.lower_before_seconds >= plan.dns.ttl);
    assert_ne!(plan.dns.name_servers.from, plan.dns.name_servers.to);
    // The table says what the records alone do not: the delegation needs days, not the lowered TTL, and the
    // names whose AAAA record goes away lose IPv6 (operator review S7 a, c).
    let table = plan::render_table(&plan);
    let line = |needle: &str| -> &str {
        table
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{table}"))
    };
    assert!(line("parent zone's NS records").contains("two days before the switch"));
    let v6 = line("no IPv6 address");
    assert!(v6.contains(&format!("social.{z}")), "{v6}");
    assert!(!v6.contains(&format!("pixelfed.{z}")), "{v6}");
}

#[test]
fn the_freeze_window_is_the_delta_and_the_databases() {
    let catalog = catalog();
    let from = document("examples/provider.toml");
    let to = document("examples/provider-b.toml");
    let mut r = request("zeeinstituut", &from, &to, &catalog, &catalog);
    r.throughput = Some(100_000_000);
    let mut plan = plan::plan(&r).unwrap().plan;
    assert_eq!(
        plan.downtime.freeze_seconds, None,
        "sizes unknown: the window is unknown"
    );
    for m in &mut plan.moves {
        m.bytes = Some(match m.kind {
            Kind::Bucket => 50_000_000_000,
            Kind::Directory => 0,
            Kind::Database => 1_000_000_000,
            Kind::Identity => 100,
        });
    }
    plan.estimate();
    // PeerTube keeps one bucket per kind its manifest declares (web videos, streaming playlists, originals).
    let buckets = catalog.manifests["peertube"].needs.s3_buckets.len() as u64;
    assert_eq!(
        plan.moves.iter().filter(|m| m.kind == Kind::Bucket).count() as u64,
        buckets
    );
    let d = &plan.downtime;
    // Each bucket of 50 GB at 100 MB/s takes 500 s of bulk copy while A serves.
    assert_eq!(d.bulk_seconds, Some(500 * buckets));
    // 1 % of the buckets (5 s each), the database dumped and restored (20 s), verification reading the buckets
    // and the 1 GB database twice (1000 s a bucket, 20 s), and the fixed minute.
    assert_eq!(
        d.freeze_seconds,
        Some(5 * buckets + 20 + (1000 * buckets + 20) + 60)
    );
    assert_eq!(d.throughput_source, "flag");
}

fn conflicts_text(plan: &Plan) -> String {
    plan.conflicts
        .iter()
        .map(|c| format!("{} {} {}\n", c.at, c.field, c.message))
        .collect()
}

#[test]
fn conflicts_are_named_where_they_are() {
    let catalog = catalog();
    let from = document("examples/provider.toml");
    let b_text =
        std::fs::read_to_string(support::repository().join("examples/provider-b.toml")).unwrap();
    // B already has an operator `amstelland`, serving the same domain, with Mastodon (so its bucket is taken
    // too), and a per-machine limit below what Mastodon asks.
    let b_text = b_text
        .replace("name = \"havenstad\"", "name = \"amstelland\"")
        .replace("domain = \"havenstad.example\"", "domain = \"amstelland-university.example\"")
        .replace(
            "[operators.applications.matrix-synapse]",
            "[operators.applications.mastodon]\n\n[operators.machines.mastodon]\nnetwork = { dhcp = true }\n\n[operators.applications.matrix-synapse]",
        )
        .replace("per_machine = { cores = 8,", "per_machine = { cores = 2,");
    let to = SpecDocument::toml("b.toml", &b_text);
    let plan = plan::plan(&request("amstelland", &from, &to, &catalog, &catalog))
        .unwrap()
        .plan;
    let text = conflicts_text(&plan);
    let has = |at: &str, needle: &str| {
        plan.conflicts
            .iter()
            .any(|c| c.at.starts_with(at) && c.message.contains(needle))
    };
    assert!(
        has("b.toml:", "already has an operator `amstelland`"),
        "{text}"
    );
    assert!(
        has(
            "b.toml:",
            "already serves the domain `amstelland-university.example`"
        ),
        "{text}"
    );
    assert!(has("b.toml:", "bucket `amstelland-mastodon`"), "{text}");
    // The line of amstelland's Mastodon `resources`, found in the file rather than written here.
    let resources_line = from_text_line(
        "examples/provider.toml",
        "resources = { cores = 4, memory_mib = 8192",
    );
    assert!(
        has(
            &format!("examples/provider.toml:{resources_line}:"),
            "per-machine limit of 2"
        ),
        "{text}"
    );
    // Located: a line and a column, never a bare file.
    for c in &plan.conflicts {
        let mut parts = c.at.rsplitn(3, ':');
        let column: u32 = parts
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("{text}"));
        let line: u32 = parts.next().unwrap().parse().unwrap();
        assert!(line > 0 && column > 0);
    }
    // No job is handed out while B cannot run the operator.
    assert!(
        plan::plan(&request("amstelland", &from, &to, &catalog, &catalog))
            .unwrap()
            .jobs
            .is_empty()
    );

    // An application B's templates lack is named at the operator's application in A's file.
    let mut lacking = catalog.clone();
    lacking.manifests.remove("pixelfed");
    let to = document("examples/provider-b.toml");
    let plan = plan::plan(&request("amstelland", &from, &to, &catalog, &lacking))
        .unwrap()
        .plan;
    assert!(
        plan.conflicts
            .iter()
            .any(|c| c.at.starts_with("examples/provider.toml:")
                && c.field == "operators[0].applications.pixelfed"
                && c.message.contains("no application `pixelfed`")),
        "{}",
        conflicts_text(&plan)
    );
}

#[test]
fn an_unknown_operator_is_refused_with_the_known_ones() {
    let catalog = catalog();
    let from = document("examples/provider.toml");
    let to = document("examples/provider-b.toml");
    let e = plan::plan(&request("nobody", &from, &to, &catalog, &catalog)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "examples/provider.toml: no operator `nobody`; its operators are `amstelland`, `zeeinstituut`, `digitalevrijheid`"
    );
}

fn fedigen(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fedigen"))
        .current_dir(support::repository())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_command_prints_json_writes_jobs_and_exits_by_the_outcome() {
    let out = tempfile::tempdir().unwrap();
    let jobs = out.path().join("jobs");
    let o = fedigen(&[
        "migrate",
        "plan",
        "amstelland",
        "--from",
        "examples/provider.toml",
        "--to",
        "examples/provider-b.toml",
        "--machines",
        "examples/provider-b.amstelland-machines.toml",
        "--throughput",
        "80",
        "--json",
        "--job-out",
        jobs.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let plan: Plan = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(plan.downtime.throughput_bytes_per_second, 80_000_000);
    let written: BTreeSet<String> = std::fs::read_dir(&jobs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        written,
        BTreeSet::from([
            "amstelland-mastodon.json".into(),
            "amstelland-pixelfed.json".into()
        ])
    );
    for name in &written {
        let text = std::fs::read_to_string(jobs.join(name)).unwrap();
        Job::parse(&text, name).unwrap();
    }

    // A conflict: exit 1, the plan still printed, no job written.
    let b = out.path().join("b.toml");
    let text =
        std::fs::read_to_string(support::repository().join("examples/provider-b.toml")).unwrap();
    std::fs::write(
        &b,
        text.replace("name = \"havenstad\"", "name = \"amstelland\""),
    )
    .unwrap();
    let none = out.path().join("none");
    let o = fedigen(&[
        "migrate",
        "plan",
        "amstelland",
        "--from",
        "examples/provider.toml",
        "--to",
        b.to_str().unwrap(),
        "--job-out",
        none.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("Conflicts (1)"), "{stdout}");
    assert!(!none.exists());

    // Invalid input: exit 2, said once, no debug formatting.
    let o = fedigen(&[
        "migrate",
        "plan",
        "nobody",
        "--from",
        "examples/provider.toml",
        "--to",
        "examples/provider-b.toml",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.starts_with("error: examples/provider.toml: no operator `nobody`"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("error: error:") && !stderr.contains("Some("),
        "{stderr}"
    );
}

// ---- random pairs of specifications ----

const APPS: [&str; 4] = ["mastodon", "pixelfed", "peertube", "matrix-synapse"];

/// The example provider without its operators (and without the Garage node that shares one of their machines).
fn provider_a() -> serde_json::Value {
    let mut v = document("examples/provider.toml").value;
    v["operators"] = serde_json::json!([]);
    let storage = &mut v["provider"]["object_storage"];
    storage["nodes"].as_object_mut().unwrap().remove("rtm1");
    storage["replication_factor"] = 2.into();
    v["provider"]["limits"]["per_operator"]["cores"] = 64.into();
    v
}

/// An operator with these applications (index into [`APPS`], enabled), each on a DHCP machine, each asking
/// for `cores` when given.
fn operator(
    name: &str,
    domain: &str,
    apps: &[(usize, bool)],
    cores: Option<u32>,
) -> serde_json::Value {
    let mut applications = serde_json::Map::new();
    let mut machines = serde_json::Map::new();
    for &(i, enable) in apps {
        let app = APPS[i];
        let secret = match app {
            "pixelfed" => Some("appSecrets"),
            "peertube" => Some("peertubeSecret"),
            "matrix-synapse" => Some("synapseSecrets"),
            _ => None,
        };
        let mut a = serde_json::json!({ "enable": enable });
        if let Some(cores) = cores {
            a["resources"] = serde_json::json!({ "cores": cores });
        }
        machines.insert(
            app.to_owned(),
            serde_json::json!({ "network": { "dhcp": true } }),
        );
        if let Some(s) = secret {
            a["secrets"] = serde_json::json!({ s: { "secret": format!("{name}-{app}") } });
        }
        applications.insert(app.to_owned(), a);
    }
    serde_json::json!({
        "name": name,
        "domain": domain,
        "contact": format!("ict@{domain}"),
        "admin": { "username": "admin", "email": format!("admin@{domain}") },
        "applications": applications,
        "machines": machines,
    })
}

#[derive(Debug, Clone)]
enum Planted {
    None,
    OperatorName,
    Domain,
    Limit,
    Catalog(usize),
}

fn json_document(name: &str, value: &serde_json::Value) -> SpecDocument {
    SpecDocument::json(name, &serde_json::to_string_pretty(value).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn random_pairs_move_exactly_the_declared_state_and_name_a_planted_conflict(
        apps in proptest::sample::subsequence(vec![0usize, 1, 2, 3], 1..=4)
            .prop_flat_map(|apps| {
                let n = apps.len();
                (Just(apps), proptest::collection::vec(any::<bool>(), n))
            }),
        others in proptest::sample::subsequence(vec![0usize, 1, 2, 3], 0..=2),
        name in "[a-z]{2,8}",
        planted in prop_oneof![
            Just(Planted::None),
            Just(Planted::OperatorName),
            Just(Planted::Domain),
            Just(Planted::Limit),
            (0usize..4).prop_map(Planted::Catalog),
        ],
    ) {
        let catalog = catalog();
        let (apps, enabled) = apps;
        let mine: Vec<(usize, bool)> = apps.iter().copied().zip(enabled.iter().copied()).collect();
        let domain = format!("{name}.example");
        let mut a = provider_a();
        a["operators"] = serde_json::json!([
            operator("first", "first.example", &[(0, true)], None),
            operator(&name, &domain, &mine, Some(7)),
        ]);
        let mut b = document("examples/provider-b.toml").value;
        b["provider"]["limits"]["per_operator"]["cores"] = 64.into();
        let mut b_name = format!("{name}x");
        let mut b_domain = format!("other-{name}.example");
        match planted {
            Planted::OperatorName => b_name = name.clone(),
            Planted::Domain => b_domain = domain.clone(),
            Planted::Limit => b["provider"]["limits"]["per_machine"]["cores"] = 6.into(),
            _ => {}
        }
        let existing: Vec<(usize, bool)> = others.iter().map(|&i| (i, true)).collect();
        b["operators"].as_array_mut().unwrap().push(operator(&b_name, &b_domain, &existing, None));
        let mut to_catalog = catalog.clone();
        if let Planted::Catalog(i) = planted {
            to_catalog.manifests.remove(APPS[i]);
            // B's own operators use only what B offers.
            let ops = b["operators"].as_array_mut().unwrap();
            for op in ops {
                op["applications"].as_object_mut().unwrap().remove(APPS[i]);
                if let Some(machines) = op["machines"].as_object_mut() {
                    machines.remove(APPS[i]);
                }
            }
        }
        let from = json_document("a.json", &a);
        let to = json_document("b.json", &b);
        let planned = plan::plan(&request(&name, &from, &to, &catalog, &to_catalog)).unwrap();
        let plan = &planned.plan;
        let enabled_apps: Vec<String> =
            mine.iter().filter(|(_, e)| *e).map(|(i, _)| APPS[*i].to_owned()).collect();
        prop_assert_eq!(moved(plan), declared(&catalog, &enabled_apps));
        let certified = certificates(plan);
        prop_assert_eq!(certified.keys().cloned().collect::<Vec<_>>(), {
            let mut apps = enabled_apps.clone();
            apps.sort();
            apps
        });
        for host in certified.values() {
            prop_assert!(host.ends_with(&format!(".{domain}")), "{} outside {}", host, domain);
        }
        let text = conflicts_text(plan);
        let named = |at: &str, needle: &str| {
            plan.conflicts.iter().any(|c| c.at.starts_with(at) && c.message.contains(needle))
        };
        match planted {
            Planted::None => prop_assert!(plan.conflicts.is_empty(), "{}", text),
            Planted::OperatorName => {
                prop_assert!(named("b.json:", &format!("already has an operator `{name}`")), "{}", text);
            }
            Planted::Domain => {
                prop_assert!(named("b.json:", &format!("already serves the domain `{domain}`")), "{}", text);
            }
            Planted::Limit => {
                if enabled_apps.is_empty() {
                    prop_assert!(plan.conflicts.is_empty(), "{}", text);
                } else {
                    prop_assert!(named("a.json:", "per-machine limit of 6"), "{}", text);
                }
            }
            Planted::Catalog(i) => {
                let app = APPS[i];
                // Disabled too: its settings stay in the specification B must read.
                if mine.iter().any(|(j, _)| APPS[*j] == app) {
                    prop_assert!(named("a.json:", &format!("no application `{app}`")), "{}", text);
                } else {
                    prop_assert!(plan.conflicts.is_empty(), "{}", text);
                }
            }
        }
        if plan.conflicts.is_empty() {
            prop_assert_eq!(planned.jobs.len(), enabled_apps.len());
            for (machine, job) in &planned.jobs {
                prop_assert!(job.problems().is_empty(), "{}: {:?}", machine, job.problems());
            }
        } else {
            prop_assert!(planned.jobs.is_empty());
        }
        let back: Plan = serde_json::from_str(&plan.to_json()).unwrap();
        prop_assert_eq!(&back, plan);
    }
}

/// The 1-based line of the first line of a repository file that contains `needle`.
fn from_text_line(file: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(support::repository().join(file)).unwrap();
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{file} has no line with {needle:?}"))
}

/// The freeze stops the application's units at A, and nginx only where it serves nothing else: on a machine that
/// also runs one of A's Garage nodes (zeeinstituut's PeerTube shares rtm1 in the example) nginx serves A's S3 and
/// media endpoints, which the job's delta copy reads after the freeze and other operators use throughout.
#[test]
fn the_freeze_keeps_nginx_where_the_machine_serves_garage() {
    let catalog = catalog();
    let from = document("examples/provider.toml");
    let to = document("examples/provider-b.toml");
    let spec = fedigen::model::from_document(&from, &catalog).unwrap();
    let garage_machines: BTreeSet<String> = spec
        .provider
        .object_storage
        .as_ref()
        .unwrap()
        .nodes
        .values()
        .filter_map(|n| n.machine.clone())
        .collect();
    assert!(garage_machines.contains("zeeinstituut-peertube"));
    let mut seen = BTreeSet::new();
    for operator in ["amstelland", "zeeinstituut", "digitalevrijheid"] {
        let mut r = request(operator, &from, &to, &catalog, &catalog);
        if operator == "amstelland" {
            r.machines = Some((
                "examples/provider-b.amstelland-machines.toml",
                example_machines(),
            ));
        }
        let Planned { jobs, .. } = plan::plan(&r).unwrap();
        for (machine, job) in &jobs {
            let app = machine.strip_prefix(&format!("{operator}-")).unwrap();
            // The units reach A's shell through ssh, each quoted for it (a glob must reach systemctl whole).
            let units = |commands: &[Vec<String>]| -> Vec<String> {
                commands
                    .iter()
                    .flat_map(|argv| argv.iter().skip(4))
                    .map(|w| {
                        w.strip_prefix('\'')
                            .and_then(|w| w.strip_suffix('\''))
                            .unwrap_or_else(|| panic!("{machine}: {w} is not quoted for A's shell"))
                            .to_owned()
                    })
                    .collect()
            };
            let (stopped, started) = (
                units(&job.commands.freeze),
                units(&job.commands.source_start),
            );
            let stopped: Vec<&str> = stopped.iter().map(String::as_str).collect();
            // Rollback starts what the freeze stopped, but what a started unit starts itself: the units only a
            // health unit wants (`freeze_also`, Mastodon's streaming processes), and the timers' services.
            let state = &catalog.manifests[app].state;
            let timer_services: Vec<String> = state
                .timers
                .iter()
                .map(|t| t.replace(".timer", ".service"))
                .collect();
            let mut expected_started: Vec<&str> = stopped
                .iter()
                .copied()
                .filter(|u| {
                    !state.freeze_also.iter().any(|f| f == u)
                        && !timer_services.iter().any(|t| t == u)
                })
                .collect();
            // In another order: the stores stop last and start first (checked in the test of B's stop).
            let mut started: Vec<&str> = started.iter().map(String::as_str).collect();
            started.sort_unstable();
            expected_started.sort_unstable();
            assert_eq!(
                started, expected_started,
                "{machine}: rollback starts what the freeze stopped"
            );
            for timer in &state.timers {
                assert!(
                    stopped.contains(&timer.as_str()) && started.contains(&timer.as_str()),
                    "{machine}: {timer}"
                );
            }
            for unit in state.freeze_also.iter().chain(&timer_services) {
                assert!(
                    stopped.contains(&unit.as_str()),
                    "{machine}: {unit} not stopped"
                );
            }
            let serves_garage = garage_machines.contains(machine);
            for unit in &catalog.manifests[app].health.units {
                let kept = serves_garage && unit == "nginx.service";
                assert_eq!(
                    stopped.contains(&unit.as_str()),
                    !kept,
                    "{machine}: {unit} (machine serves Garage: {serves_garage}); freeze {:?}",
                    job.commands.freeze
                );
            }
            seen.insert(serves_garage);
        }
    }
    assert_eq!(seen.len(), 2, "both kinds of machine are in the example");
}

/// `--replicate` (A's provider has set up logical replication): every PostgreSQL database's job names the
/// replication roles (A's replicator over TCP with its password file; B's `postgres` superuser over the socket
/// by peer), the engine's steps replicate it in the bulk phase, the JSON marks the move, and the estimate puts its
/// copy in the bulk phase and only its catch-up in the freeze window. Without it: no roles, dump and restore.
#[test]
fn replicate_names_the_replication_roles_and_the_estimate_counts_only_the_catch_up() {
    let catalog = catalog();
    let from = document("examples/provider.toml");
    let to = document("examples/provider-b.toml");
    let planned = |replicate: bool| {
        let mut r = request("digitalevrijheid", &from, &to, &catalog, &catalog);
        r.replicate = replicate;
        let mut planned = plan::plan(&r).unwrap();
        assert!(
            planned.plan.conflicts.is_empty(),
            "{:#?}",
            planned.plan.conflicts
        );
        // As --measure would: 1 GB per database and bucket, 100 MB per folder, 1 kB per secret.
        for m in &mut planned.plan.moves {
            m.bytes = Some(match m.kind {
                Kind::Database | Kind::Bucket => 1_000_000_000,
                Kind::Directory => 100_000_000,
                Kind::Identity => 1_000,
            });
        }
        planned.plan.estimate();
        planned
    };
    let (dumped, replicated) = (planned(false), planned(true));
    let json =
        |p: &Planned| -> serde_json::Value { serde_json::from_str(&p.plan.to_json()).unwrap() };
    let (dj, rj) = (json(&dumped), json(&replicated));
    let databases = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v["moves"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["kind"] == "database")
            .cloned()
            .collect()
    };
    assert_eq!(databases(&dj).len(), 2, "mastodon's and matrix-synapse's");
    for m in databases(&dj) {
        assert!(m.get("replicated").is_none(), "{m}");
    }
    for m in databases(&rj) {
        assert_eq!(m["replicated"], true, "{m}");
    }
    for (machine, job) in &dumped.jobs {
        assert!(
            job.databases.iter().all(|d| d.replication.is_none()),
            "{machine}"
        );
    }
    let mut seen = 0;
    for ((machine, job), steps) in replicated.jobs.iter().zip(&replicated.plan.steps) {
        assert_eq!(Job::parse(&job.to_json(), machine).unwrap(), *job);
        for d in &job.databases {
            seen += 1;
            let r = d.replication.as_ref().expect("replication roles");
            assert_eq!(r.publisher.user, plan::REPLICATOR_ROLE);
            assert_eq!(
                r.publisher.host, d.source.host,
                "B's server reaches A's machine"
            );
            assert_eq!(r.publisher.database, d.source.database);
            assert_eq!(
                r.publisher.password_file.as_deref(),
                Some(std::path::Path::new(&format!(
                    "{}/{}-replicator-password",
                    plan::MIGRATE_SECRETS,
                    d.name
                )))
            );
            assert_eq!(r.publisher.os_user, None);
            assert_eq!(
                (r.subscriber.host.as_str(), r.subscriber.user.as_str()),
                ("/run/postgresql", "postgres")
            );
            assert_eq!(r.subscriber.os_user.as_deref(), Some("postgres"));
            assert_eq!(r.subscriber.password_file, None);
            let at = |s: &str| steps.steps.iter().position(|x| x == s);
            let (start, freeze, catchup) = (
                at(&format!("replicate:start:{}", d.name)).unwrap(),
                at("freeze").unwrap(),
                at(&format!("catchup:{}", d.name)).unwrap(),
            );
            assert!(start < freeze && freeze < catchup, "{:?}", steps.steps);
            assert!(at(&format!("dump:{}", d.name)).is_none());
        }
    }
    assert_eq!(seen, 2);
    assert!(
        replicated
            .plan
            .manual
            .iter()
            .any(|m| m.contains("fedigen_replicator") && m.contains("wal_level = logical")),
        "{:#?}",
        replicated.plan.manual
    );
    // The estimate: 2 GB of databases move in the bulk phase instead of twice (dump, restore) in the window.
    let (d, r) = (&dumped.plan.downtime, &replicated.plan.downtime);
    let (df, rf) = (d.freeze_seconds.unwrap(), r.freeze_seconds.unwrap());
    let (db, rb) = (d.bulk_seconds.unwrap(), r.bulk_seconds.unwrap());
    assert_eq!(
        rb - db,
        20,
        "the databases' first copy (2 GB at 100 MB/s) is in the bulk phase"
    );
    // Window: dump+restore 2 × 2 GB = 40 s, against the catch-up of 1 % of 2 GB = 20 MB → 1 s.
    assert_eq!(df - rf, 39, "{d:#?}\n{r:#?}");
    let part = |p: &plan::Downtime, what: &str| {
        p.parts
            .iter()
            .find(|x| x.what.starts_with(what))
            .map(|x| (x.bytes, x.seconds))
    };
    assert_eq!(part(r, "databases: dumped at A"), Some((Some(0), Some(0))));
    assert_eq!(
        part(r, "replicated databases: catch-up"),
        Some((Some(20_000_000), Some(1)))
    );
    assert_eq!(part(d, "replicated databases"), None);
    assert!(r.method.contains("catch-up") && !d.method.contains("catch-up"));
}

/// Pixelfed's MySQL database is in the job (no manual step): dumped at A over TCP, restored at B through the
/// socket nixpkgs' pixelfed.nix uses, as the `pixelfed` OS user (its `unix_socket` account), and the four URL
/// columns its manifest declares are rewritten from A's media prefix of the bucket to B's, after the restore and
/// before the verification.
#[test]
fn pixelfeds_mysql_database_moves_and_its_media_urls_follow() {
    use fedigen::migrate::job::Engine;
    let catalog = catalog();
    let from = document("examples/provider.toml");
    let to = document("examples/provider-b.toml");
    let mut r = request("amstelland", &from, &to, &catalog, &catalog);
    r.machines = Some((
        "examples/provider-b.amstelland-machines.toml",
        example_machines(),
    ));
    let Planned { plan, jobs } = plan::plan(&r).unwrap();
    assert!(
        !plan.manual.iter().any(|m| m.contains("not moved")),
        "{:#?}",
        plan.manual
    );
    let (machine, job) = jobs
        .iter()
        .find(|(m, _)| m.ends_with("-pixelfed"))
        .expect("a Pixelfed job");
    let db = &job.databases[0];
    assert_eq!(db.engine, Engine::Mysql);
    assert_eq!(
        (db.source.port, db.target.port, db.target.host.as_str()),
        (3306, 3306, "/run/mysqld/mysqld.sock")
    );
    assert_eq!(db.target.os_user.as_deref(), Some("pixelfed"));
    assert!(db.target.password_file.is_none() && db.source.password_file.is_some());
    // What A must provide for B to reach it: NixOS's `pixelfed` account is socket-only (review-21 F3).
    assert!(
        plan.manual
            .iter()
            .any(|m| m.starts_with("pixelfed: A's mysql database `pixelfed`")
                && m.contains("over TCP on port 3306 as `pixelfed` with a password")
                && m.contains("pixelfed-source-password")),
        "{:#?}",
        plan.manual
    );
    let columns: Vec<String> = db
        .url_rewrites
        .iter()
        .map(|u| format!("{}.{}", u.table, u.column))
        .collect();
    assert_eq!(
        columns,
        [
            "media.cdn_url",
            "media.thumbnail_url",
            "media.optimized_url",
            "avatars.cdn_url"
        ]
    );
    for u in &db.url_rewrites {
        assert!(
            u.from
                .starts_with("https://media.nordwind-hosting.example/")
                && u.from.ends_with("/"),
            "{u:?}"
        );
        assert!(
            u.to.starts_with("https://media.zuidwind-hosting.example/") && u.to.ends_with("/"),
            "{u:?}"
        );
        assert!(
            u.from.contains("amstelland") && u.to.contains("amstelland"),
            "{u:?}"
        );
    }
    let steps = &plan
        .steps
        .iter()
        .find(|s| &s.machine == machine)
        .unwrap()
        .steps;
    let at = |s: &str| {
        steps
            .iter()
            .position(|x| x == s)
            .unwrap_or_else(|| panic!("{s}: {steps:?}"))
    };
    assert!(at("freeze") < at("dump:pixelfed"));
    assert!(at("restore:pixelfed") < at("rewrite:pixelfed"));
    assert!(at("rewrite:pixelfed") < at("verify"));
    // The downtime counts it: an automatic database move.
    assert!(
        plan.moves
            .iter()
            .any(|m| m.application == "pixelfed" && m.kind == Kind::Database && m.automatic)
    );
}

/// B's applications are stopped before anything moves and restarted after (they run on empty state once B is
/// deployed, holding B's databases and secrets), never B's nginx (it serves B's Garage endpoints where B's
/// machine hosts a node); and with several machines no job switches the operator's zone: the plan says to
/// switch once every job is healthy (operator review of the plans, B1 and B5). A one-machine operator's job
/// still switches as its last step.
#[test]
fn b_is_stopped_before_the_move_and_a_zone_of_several_machines_is_switched_once() {
    let catalog = catalog();
    let from = document("examples/provider.toml");
    let to = document("examples/provider-b.toml");
    for operator in ["amstelland", "zeeinstituut", "digitalevrijheid"] {
        let mut r = request(operator, &from, &to, &catalog, &catalog);
        r.dns_command = Some("publish-zone");
        // B's static addresses, one per application machine (else the switch would take the names off the DNS).
        let machines: BTreeMap<String, Machine> = from.value["operators"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == operator)
            .unwrap()["applications"]
            .as_object()
            .unwrap()
            .keys()
            .enumerate()
            .map(|(i, app)| {
                let machine = format!(
                    "network.ipv4 = {{ address = \"203.0.113.{}/24\", gateway = \"203.0.113.1\" }}",
                    11 + i
                );
                (app.clone(), toml::from_str(&machine).unwrap())
            })
            .collect();
        r.machines = Some(("m.toml", machines));
        let Planned { plan, jobs } = plan::plan(&r).unwrap();
        assert!(
            plan.conflicts.is_empty(),
            "{operator}: {:#?}",
            plan.conflicts
        );
        for (machine, job) in &jobs {
            let app = machine.strip_prefix(&format!("{operator}-")).unwrap();
            let units = &catalog.manifests[app].health.units;
            let stopped: Vec<&str> = job
                .commands
                .target_stop
                .iter()
                .flat_map(|argv| {
                    assert_eq!(argv[..2], ["systemctl", "stop"], "{machine}: {argv:?}");
                    argv[2..].iter().map(String::as_str)
                })
                .collect();
            for unit in units {
                assert_eq!(
                    stopped.contains(&unit.as_str()),
                    unit != "nginx.service",
                    "{machine}: {unit} at B; target_stop {:?}",
                    job.commands.target_stop
                );
            }
            let restarted: Vec<&str> = job
                .commands
                .start
                .iter()
                .filter(|argv| argv[1] == "restart")
                .flat_map(|argv| argv[2..].iter().map(String::as_str))
                .collect();
            assert!(
                units.iter().all(|u| restarted.contains(&u.as_str())),
                "{machine}: every unit restarted, {:?}",
                job.commands.start
            );
            // B's timers and the units only a health unit starts are stopped too, and B's timers start again.
            let state = &catalog.manifests[app].state;
            for unit in state.freeze_also.iter().chain(&state.timers) {
                assert!(stopped.contains(&unit.as_str()), "{machine}: {unit} at B");
            }
            for timer in &state.timers {
                assert!(
                    job.commands
                        .start
                        .iter()
                        .any(|argv| argv[1] == "start" && argv.contains(timer)),
                    "{machine}: {timer} not started, {:?}",
                    job.commands.start
                );
            }
            // An application on a local Redis (needs.redis: the template sets redis.createLocally) moves it:
            // its server is stopped after the application at A and at B, started before it at B and on a
            // rollback at A, and its directory (owned by the server's user, redis.nix: redisName) moves.
            let module = std::fs::read_to_string(format!(
                "{}/../templates/{app}/module.nix.hbs",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            // Except Pixelfed's: its cache, in the queue's Redis database, holds A's media URLs, which no
            // clear at B can drop without the queue (review 25, B1; its manifest's [state] says so).
            let moves_redis = module.contains("redis.createLocally = true;") && app != "pixelfed";
            assert_eq!(
                moves_redis,
                !state.stores.is_empty(),
                "{machine}: stores {:?}",
                state.stores
            );
            let position = |commands: &[Vec<String>], unit: &str| {
                commands
                    .iter()
                    .position(|argv| argv.iter().any(|w| w.trim_matches('\'') == unit))
            };
            for store in &state.stores {
                let user = store.strip_suffix(".service").unwrap();
                assert!(
                    state
                        .directories
                        .values()
                        .any(|d| d.owner == user
                            && job.directories.iter().any(|m| m.target == d.path)),
                    "{machine}: no directory of {user} moves"
                );
                let c = &job.commands;
                let unit = units.iter().find(|u| *u != "nginx.service").unwrap();
                for (what, commands, first) in [
                    ("freeze", &c.freeze, false),
                    ("target_stop", &c.target_stop, false),
                    ("start", &c.start, true),
                    ("source_start", &c.source_start, true),
                ] {
                    let (s, u) = (position(commands, store), position(commands, unit));
                    let (Some(s), Some(u)) = (s, u) else {
                        panic!("{machine}: {what} lacks {store} or {unit}: {commands:?}");
                    };
                    assert!(
                        if first { s < u } else { s > u },
                        "{machine}: {what} orders {store} wrongly against {unit}: {commands:?}"
                    );
                }
            }
            assert_eq!(
                fedigen::migrate::run::steps(job)[0],
                "stop-target",
                "{machine}"
            );
            assert_eq!(
                job.commands.dns_switch.is_empty(),
                jobs.len() > 1,
                "{machine}: {} machines",
                jobs.len()
            );
        }
        // A job that switches runs the zone file by a relative path: the plan says where it must be.
        let zone_where = plan
            .manual
            .iter()
            .any(|m| m.contains("relative path") && m.contains("deployments/dns/"));
        assert_eq!(zone_where, jobs.len() == 1, "{operator}: {:?}", plan.manual);
        let switch_by_hand = plan
            .manual
            .iter()
            .any(|m| m.contains("once, after every job") && m.contains("publish-zone"));
        assert_eq!(
            switch_by_hand,
            jobs.len() > 1,
            "{operator}: {:?}",
            plan.manual
        );
    }
}

/// A DNS switch with B's machines on DHCP (no `--machines`) would publish a zone without the applications'
/// addresses: the plan names each such name as a conflict on `--dns-command` and writes no job; with B's
/// addresses given, the same switch is planned (operator review S7 b).
#[test]
fn a_switch_that_would_take_names_off_the_dns_is_a_conflict() {
    let catalog = catalog();
    let from = document("examples/provider.toml");
    let to = document("examples/provider-b.toml");
    let mut r = request("amstelland", &from, &to, &catalog, &catalog);
    r.dns_command = Some("publish-zone");
    let planned = plan::plan(&r).unwrap();
    let conflict = planned
        .plan
        .conflicts
        .iter()
        .find(|c| c.field == "--dns-command")
        .unwrap_or_else(|| panic!("{:#?}", planned.plan.conflicts));
    for name in [
        "social.amstelland-university.example",
        "pixelfed.amstelland-university.example",
    ] {
        assert!(conflict.message.contains(name), "{}", conflict.message);
    }
    assert!(conflict.message.contains("--machines"));
    assert!(planned.jobs.is_empty());
    r.machines = Some(("m.toml", example_machines()));
    let planned = plan::plan(&r).unwrap();
    assert!(
        planned.plan.conflicts.is_empty(),
        "{:#?}",
        planned.plan.conflicts
    );
    assert!(!planned.jobs.is_empty());
}
