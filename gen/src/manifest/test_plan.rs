//! A manifest's `[test]` section: what the VM tests do with the application as its users do — post, upload,
//! read back, federate, receive mail — and the setting an upgrade step changes. Data only: the commands are
//! shell text run on a test node by the test driver (`set -euo pipefail`, as `machine.succeed` runs them), the
//! Rust code names no application, and the templates in `templates/_tests/` decide where each step goes.
//!
//! Every command runs with `FEDIGEN_HOST` exported: the host name of the application under test (in a
//! federation step, of the node it runs on), and in a federation step `FEDIGEN_PEER`, the other instance's.

use serde::Deserialize;
use serde_json::Value;

/// The `[test]` section of a manifest (all parts optional).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestPlan {
    /// Packages of nixpkgs (attribute names, such as `jq`) the steps use, installed on every test node.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Settings of the application's own options that every test of it needs (a table of option name to value),
    /// such as allowing the test's mail domain; given as plain definitions, so attribute sets merge with an
    /// operator's.
    #[serde(default)]
    pub settings: Option<Value>,
    /// Upstream NixOS settings every test node of the application needs and a deployment does not (nested
    /// tables, emitted as Nix data), such as an initial password a test logs in with.
    #[serde(default)]
    pub config: Option<Value>,
    /// What a user does, in order (`[[test.steps]]`): create data, then read it back.
    #[serde(default)]
    pub steps: Vec<TestStep>,
    /// What proves the application's files land in object storage (`[[test.object_storage]]`): run in a
    /// deployment test after the steps, only when the application stores that kind of file in a bucket there.
    #[serde(default)]
    pub object_storage: Vec<StoredStep>,
    /// One setting changed for the deployment test's upgrade step (`[test.upgrade]`).
    #[serde(default)]
    pub upgrade: Option<Upgrade>,
    /// Two instances talking to each other (`[test.federation]`).
    #[serde(default)]
    pub federation: Option<Federation>,
    /// Mail the application sends, received by a mail node (`[test.mail]`).
    #[serde(default)]
    pub mail: Option<MailTest>,
    /// What the rest of the Fediverse knows the instance by (`[[test.identity]]`): an actor's public key, a
    /// server's signing keys. A migration test prints each at A before the move and at B after it, and they must
    /// be equal: a changed key breaks every follower's and peer's trust, though the instance looks fine locally.
    #[serde(default)]
    pub identity: Vec<IdentityStep>,
    /// Where the module serves the application's nginx virtual host, as a dotted NixOS option path (such as
    /// `services.pixelfed.nginx`, which upstream merges whole into the virtual host); the test certificate goes
    /// there. Without it, `services.nginx.virtualHosts.<host>`.
    #[serde(default)]
    pub tls_virtual_host: Option<String>,
    /// A setting of `[test] settings` listing the mail domains the application accepts without looking them up
    /// (the test network has no DNS): a deployment test adds its administrator's domain to it.
    #[serde(default)]
    pub admin_mail_allowlist: Option<MailAllowlist>,
}

/// A setting holding mail domains, one string joined by a separator (`[test.admin_mail_allowlist]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailAllowlist {
    /// Its dotted path inside `[test] settings` (such as `extraConfig.EMAIL_DOMAIN_ALLOWLIST`).
    pub setting: String,
    /// What joins two domains (Mastodon's UserEmailValidator splits on `|`).
    pub separator: String,
}

/// Where a step runs in an application or deployment test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepNode {
    /// The application's own machine (its admin tools are there).
    Server,
    /// A separate client machine, which reaches the application through its host name over HTTPS.
    Client,
}

/// One thing a user does (`[[test.steps]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestStep {
    /// What it shows, for the test's log (a `subtest`).
    pub description: String,
    /// Where it runs.
    pub on: StepNode,
    /// The shell command; `FEDIGEN_HOST` holds the application's host name.
    pub run: String,
    /// Text its output must contain.
    #[serde(default)]
    pub expect: Option<String>,
    /// Run it again after the upgrade round trip: it reads data created before, which must survive.
    #[serde(default)]
    pub recheck: bool,
    /// Retry until it succeeds (for work the application finishes in the background).
    #[serde(default)]
    pub wait: bool,
}

/// A step that finds the public URLs of files the application put in object storage
/// (`[[test.object_storage]]`). Run with `FEDIGEN_MEDIA_PREFIX` exported as well (`https://media.<provider>/<bucket>/`,
/// the bucket of `kind`), it prints each URL on a line `object: <url>`; the test then asserts that every URL
/// starts with the prefix and that a client fetches from it the bytes Garage holds at that key. Without this,
/// an application that falls back to local files when S3 fails (Pixelfed, PeerTube) passes its other steps.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredStep {
    /// What it shows, for the test's log.
    pub description: String,
    /// The bucket kind (one of `needs.s3_buckets`) whose bucket the URLs must be in.
    pub kind: String,
    /// Where it runs.
    pub on: StepNode,
    /// The shell command; prints `object: <url>` lines.
    pub run: String,
    /// Retry until it succeeds (for files the application moves to the bucket in a background job: exit non-zero
    /// while the URL is not yet under `FEDIGEN_MEDIA_PREFIX`).
    #[serde(default)]
    pub wait: bool,
}

/// The deployment test's upgrade step: this setting changed, only these units restart (`[test.upgrade]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upgrade {
    /// A manifest option.
    pub setting: String,
    /// Its new value (valid for the option's type, and not its default).
    pub value: Value,
    /// The units that may stop, start, restart or reload when it changes (at least one must); `*` matches any
    /// text (`mastodon-*.service`), as Python's `fnmatch` does.
    pub restarts: Vec<String>,
}

/// One public identity of the instance (`[[test.identity]]`), read as other servers read it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityStep {
    /// Which identity it is, for the test's log.
    pub description: String,
    /// Where it runs (the client reads it through the domain, as a remote server does).
    pub on: StepNode,
    /// The shell command; prints the identity (only it: the output is compared whole, trimmed) and fails when it
    /// cannot be read.
    pub run: String,
}

/// Which of the two instances a federation step runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Instance {
    /// The first instance.
    First,
    /// The second instance.
    Second,
}

/// Two instances of the application on two nodes, trusting one test CA (`[test.federation]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Federation {
    /// What crosses from one instance to the other.
    pub description: String,
    /// Upstream NixOS settings both test instances need and a deployment does not (nested tables, emitted
    /// as Nix data), such as allowing the test network's private addresses.
    #[serde(default)]
    pub config: Option<Value>,
    /// The steps, in order (`[[test.federation.steps]]`).
    pub steps: Vec<FederationStep>,
    /// What must still cross after the first instance moved to another provider (`[[test.federation.moved]]`,
    /// the shape of `steps`): the same domain, now at another address, so something new made on the first must
    /// still reach the second. The migration tests run them: the first instance is the operator's machine (at
    /// provider A for `steps`, after the seed and its `[[test.steps]]`; at B for these, with A's `/root`), the
    /// second a peer under another domain. None (the default) adds no peer to the migration tests.
    #[serde(default)]
    pub moved: Vec<FederationStep>,
}

/// One step of the federation test.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationStep {
    /// What it shows.
    pub description: String,
    /// The instance it runs on.
    pub on: Instance,
    /// The shell command; `FEDIGEN_HOST` is this instance's host name, `FEDIGEN_PEER` the other's.
    pub run: String,
    /// Text its output must contain.
    #[serde(default)]
    pub expect: Option<String>,
    /// Retry until it succeeds (federation is delivered in the background).
    #[serde(default)]
    pub wait: bool,
}

/// A mail the application sends (`[test.mail]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailTest {
    /// Which mail it is.
    pub description: String,
    /// The shell command on the application's machine that makes it send the mail.
    pub run: String,
    /// The recipient whose mailbox must receive it.
    pub to: String,
}

/// Whether `path` is a dotted option path: non-empty names of letters, digits, `_` and `-`.
fn is_option_path(path: &str) -> bool {
    path.split('.').all(|name| {
        !name.is_empty()
            && !name.starts_with('-')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    })
}

/// Whether federation steps run on both instances (something can cross from one to the other).
fn on_both(steps: &[FederationStep]) -> bool {
    steps.iter().any(|s| s.on == Instance::First) && steps.iter().any(|s| s.on == Instance::Second)
}

/// A problem in `[test]`: the field's path under the manifest (for its location) and the message.
pub(crate) type Problem = (String, String);

/// Checks what serde cannot: non-empty commands, package attribute names, the upgrade's option and value
/// against the manifest's options, unit names, the mail recipient.
pub(crate) fn check(
    plan: &TestPlan,
    options: &std::collections::BTreeMap<String, super::OptionSpec>,
    check_unit: impl Fn(&str) -> Result<(), String>,
) -> Vec<Problem> {
    let mut found = Vec::new();
    for (i, package) in plan.packages.iter().enumerate() {
        let plain = !package.is_empty()
            && package
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && !package.starts_with('-');
        if !plain {
            found.push((
                format!("test.packages.{i}"),
                format!("[test]: `packages`: `{package}` must be a top-level nixpkgs attribute name (letters, digits, `-`, `_`), such as `jq`"),
            ));
        }
    }
    match &plan.settings {
        Some(Value::Object(settings)) => {
            for (name, value) in settings {
                match options.get(name) {
                    None => found.push((
                        format!("test.settings.{name}"),
                        format!(
                            "[test]: `settings`: `{name}` is no option of this manifest; the options are {}",
                            options.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                        ),
                    )),
                    Some(option) => {
                        if let Err(reason) = option.ty.check(value) {
                            found.push((
                                format!("test.settings.{name}"),
                                format!("[test]: `settings`: `{name}`: {reason}"),
                            ));
                        }
                    }
                }
            }
        }
        Some(_) => found.push((
            "test.settings".into(),
            "[test]: `settings` must be a table of option name to value".into(),
        )),
        None => {}
    }
    if let Some(path) = &plan.tls_virtual_host
        && !is_option_path(path)
    {
        found.push((
            "test.tls_virtual_host".into(),
            format!("[test]: `tls_virtual_host`: `{path}` must be a dotted NixOS option path, such as `services.pixelfed.nginx`"),
        ));
    }
    if let Some(list) = &plan.admin_mail_allowlist {
        let holds_string = list
            .setting
            .split('.')
            .try_fold(plan.settings.as_ref(), |value, key| Some(value?.get(key)));
        if !is_option_path(&list.setting) || !matches!(holds_string, Some(Some(Value::String(_)))) {
            found.push((
                "test.admin_mail_allowlist.setting".into(),
                format!("[test]: `admin_mail_allowlist`: `{}` must name a string in `[test] settings` (a dotted path)", list.setting),
            ));
        }
        if list.separator.is_empty() {
            found.push((
                "test.admin_mail_allowlist.separator".into(),
                "[test]: `admin_mail_allowlist`: `separator` is empty".into(),
            ));
        }
    }
    if plan.config.as_ref().is_some_and(|c| !c.is_object()) {
        found.push((
            "test.config".into(),
            "[test]: `config` must be a table of NixOS settings".into(),
        ));
    }
    let commands = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("test.steps.{i}"), &s.description, &s.run))
        .chain(
            plan.federation
                .iter()
                .flat_map(|f| f.steps.iter().enumerate())
                .map(|(i, s)| (format!("test.federation.steps.{i}"), &s.description, &s.run)),
        )
        .chain(
            plan.federation
                .iter()
                .flat_map(|f| f.moved.iter().enumerate())
                .map(|(i, s)| (format!("test.federation.moved.{i}"), &s.description, &s.run)),
        )
        .chain(
            plan.mail
                .iter()
                .map(|m| ("test.mail".to_owned(), &m.description, &m.run)),
        )
        .chain(
            plan.object_storage
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("test.object_storage.{i}"), &s.description, &s.run)),
        )
        .chain(
            plan.identity
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("test.identity.{i}"), &s.description, &s.run)),
        );
    for (path, description, run) in commands {
        if description.trim().is_empty() {
            found.push((
                format!("{path}.description"),
                "[test]: `description` is empty; say what the step shows".into(),
            ));
        }
        if run.trim().is_empty() {
            found.push((
                format!("{path}.run"),
                "[test]: `run` is empty; give the shell command of the step".into(),
            ));
        }
    }
    if let Some(upgrade) = &plan.upgrade {
        match options.get(&upgrade.setting) {
            None => found.push((
                "test.upgrade.setting".into(),
                format!(
                    "[test.upgrade]: `setting`: `{}` is no option of this manifest; the options are {}",
                    upgrade.setting,
                    options.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                ),
            )),
            Some(option) => {
                if let Err(reason) = option.ty.check(&upgrade.value) {
                    found.push((
                        "test.upgrade.value".into(),
                        format!("[test.upgrade]: `value`: {reason} (the type of option `{}`)", upgrade.setting),
                    ));
                } else if option.default.as_ref() == Some(&upgrade.value) {
                    found.push((
                        "test.upgrade.value".into(),
                        format!("[test.upgrade]: `value`: it is the default of `{}`, so the upgrade would change nothing; pick another value", upgrade.setting),
                    ));
                }
            }
        }
        if upgrade.restarts.is_empty() {
            found.push((
                "test.upgrade.restarts".into(),
                "[test.upgrade]: `restarts` is empty; name the units the setting reaches".into(),
            ));
        }
        for (i, unit) in upgrade.restarts.iter().enumerate() {
            if let Err(reason) = check_unit(&unit.replace('*', "x")) {
                found.push((
                    format!("test.upgrade.restarts.{i}"),
                    format!("[test.upgrade]: `restarts`: {reason}"),
                ));
            }
        }
    }
    if let Some(federation) = &plan.federation {
        if federation.steps.is_empty() {
            found.push((
                "test.federation.steps".into(),
                "[test.federation]: no `[[test.federation.steps]]`; give the steps that cross from one instance to the other".into(),
            ));
        } else if !on_both(&federation.steps) {
            found.push((
                "test.federation.steps".into(),
                "[test.federation]: every step runs on one instance; federation needs steps on `first` and on `second`".into(),
            ));
        }
        if !federation.moved.is_empty() && !on_both(&federation.moved) {
            found.push((
                "test.federation.moved".into(),
                "[test.federation]: every `[[test.federation.moved]]` step runs on one instance; after the move something must cross again, so give steps on `first` and on `second`".into(),
            ));
        }
        if let Some(config) = &federation.config
            && !config.is_object()
        {
            found.push((
                "test.federation.config".into(),
                "[test.federation]: `config` must be a table of NixOS settings".into(),
            ));
        }
    }
    if let Some(mail) = &plan.mail {
        let valid = mail.to.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !mail.to.contains(char::is_whitespace)
        });
        if !valid {
            found.push((
                "test.mail.to".into(),
                format!(
                    "[test.mail]: `to`: `{}` is no mail address (local@domain.tld)",
                    mail.to
                ),
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Manifest, ManifestError};

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

[options.workers]
type = "int"
min = 1
max = 8
default = 2
description = "Workers."

[options.extra]
type = "attrs"
of = "str"
default = {}
description = "More."
"#;

    fn parse(extra: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(
            Path::new("templates/demo/manifest.toml"),
            &format!("{MINIMAL}{extra}"),
        )
    }

    /// Every problem of the section, each at its line and naming the field, all at once.
    fn problems(extra: &str) -> Vec<String> {
        parse(extra)
            .unwrap_err()
            .problems
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_full_section_is_read() {
        let m = parse(
            r#"
[test]
packages = ["jq", "ffmpeg-headless"]
settings = { extra = { A = "b" } }
config = { services = { demo = { debug = true } } }

[[test.steps]]
description = "post"
on = "server"
run = "curl https://$FEDIGEN_HOST/"

[[test.steps]]
description = "read"
on = "client"
run = "curl https://$FEDIGEN_HOST/x"
expect = "x"
recheck = true
wait = true

[test.upgrade]
setting = "workers"
value = 3
restarts = ["demo-*.service"]

[test.federation]
description = "a follow"
[[test.federation.steps]]
description = "one"
on = "first"
run = "true"
[[test.federation.steps]]
description = "two"
on = "second"
run = "true"
[[test.federation.moved]]
description = "again"
on = "first"
run = "true"
[[test.federation.moved]]
description = "read again"
on = "second"
run = "true"
expect = "x"
wait = true

[test.mail]
description = "a mail"
run = "true"
to = "a@example.org"
"#,
        )
        .unwrap();
        assert_eq!(m.test.steps.len(), 2);
        assert!(m.test.steps[1].recheck && m.test.steps[1].wait);
        assert_eq!(m.test.upgrade.unwrap().value, serde_json::json!(3));
        let federation = m.test.federation.unwrap();
        assert_eq!(federation.steps.len(), 2);
        assert_eq!(federation.moved.len(), 2);
        assert!(federation.moved[1].wait && federation.moved[1].expect.is_some());
        assert_eq!(m.test.mail.unwrap().to, "a@example.org");
    }

    #[test]
    fn identity_steps_are_read_and_an_empty_command_is_refused_at_its_field() {
        let m = parse(
            "\n[[test.identity]]\ndescription = \"the actor's key\"\non = \"client\"\nrun = \"curl https://$FEDIGEN_HOST/actor\"\n",
        )
        .unwrap();
        assert_eq!(m.test.identity.len(), 1);
        assert_eq!(m.test.identity[0].on, super::StepNode::Client);
        let found =
            problems("\n[[test.identity]]\ndescription = \"k\"\non = \"server\"\nrun = \"\"\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("`run` is empty"), "{found:?}");
        assert!(found[0].contains("manifest.toml:"), "{found:?}");
    }

    #[test]
    fn no_section_is_an_empty_plan() {
        assert_eq!(parse("").unwrap().test, super::TestPlan::default());
    }

    #[test]
    fn an_unknown_key_is_located_with_a_hint() {
        let found = problems("\n[test]\npackagez = [\"jq\"]\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("manifest.toml:28:1:"), "{found:?}");
        assert!(found[0].contains("did you mean `packages`?"), "{found:?}");
    }

    #[test]
    fn each_wrong_value_is_reported_at_once() {
        let found = problems(
            r#"
[test]
packages = ["jq; rm -rf /"]
settings = { nosuch = 1, workers = "many" }

[[test.steps]]
description = ""
on = "server"
run = " "

[test.upgrade]
setting = "workers"
value = 2
restarts = ["not a unit"]

[test.federation]
description = "x"
[[test.federation.steps]]
description = "only one side"
on = "first"
run = "true"
[[test.federation.moved]]
description = "only the second after the move"
on = "second"
run = "true"

[test.mail]
description = "m"
run = "true"
to = "nobody"
"#,
        );
        let all = found.join("\n");
        for expected in [
            "`packages`: `jq; rm -rf /` must be a top-level nixpkgs attribute name",
            "`settings`: `nosuch` is no option of this manifest",
            "`settings`: `workers`:",
            "`description` is empty",
            "`run` is empty",
            "it is the default of `workers`",
            "`restarts`: `not a unit` is not a systemd unit name",
            "federation needs steps on `first` and on `second`",
            "every `[[test.federation.moved]]` step runs on one instance",
            "`to`: `nobody` is no mail address",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
        assert_eq!(found.len(), 10, "{all}");
        // Each at a line of the [test] section (it starts at line 25).
        for problem in &found {
            let line: usize = problem
                .split(':')
                .nth(1)
                .and_then(|l| l.parse().ok())
                .unwrap_or_else(|| panic!("no line: {problem}"));
            assert!(line >= 25, "{problem}");
        }
    }

    #[test]
    fn an_upgrade_of_no_option_or_of_the_wrong_type_is_refused() {
        let found = problems(
            "\n[test.upgrade]\nsetting = \"wokers\"\nvalue = 3\nrestarts = [\"demo.service\"]\n",
        );
        assert!(
            found[0].contains(
                "`wokers` is no option of this manifest; the options are `extra`, `workers`"
            ),
            "{found:?}"
        );
        let found = problems(
            "\n[test.upgrade]\nsetting = \"workers\"\nvalue = 99\nrestarts = [\"demo.service\"]\n",
        );
        assert!(found[0].contains("[test.upgrade]: `value`:"), "{found:?}");
    }
}
