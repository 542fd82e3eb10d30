//! The NixOps4 deployment (`deployments/nixops4.nix`), in the form nixops4 and nixops4-nixos take since their
//! unified component model (January 2026): a root module whose `members.<machine>` are `local.exec` resources
//! importing `nixops4-nixos.modules.nixops4Component.nixos`.
//!
//! The root's shape: one member per machine directly at the root, so `nixops4 apply` deploys every machine and
//! `nixops4 apply <machine>` one of them, with the names of `nixosConfigurations` (a member path is the machine
//! name). Grouping by operator (`members.<operator>.members.<app>`) would let one operator be applied at once, but
//! Garage nodes belong to no operator and machine names are already unique and prefixed by the operator.

use super::host_keys::HostKeys;
use super::*;

/// The NixOps4 root module: `providers.local`, and for every machine with a host key in `host_keys` a member
/// deploying its module over SSH. `inputs` (the flake's) is a module argument the flake passes through `mkRoot`'s
/// `specialArgs`. Machines without a key are left out (their names are listed by [`HostKeys::missing`]), so
/// evaluation never throws. `input_modules` are the flake inputs' modules every machine imports besides its own
/// file (sops-nix's, see [`super::sops::input_modules`]): with any, a member's module imports them beside its file.
pub(super) fn nixops4(
    machines: &[PlannedMachine],
    host_keys: &HostKeys,
    input_modules: &[Expr],
) -> Result<Expr, DeployError> {
    let r = Expr::reference;
    let mut members = Vec::new();
    for machine in machines {
        let Some(key) = host_keys.keys.get(&machine.name) else {
            continue;
        };
        let target = machine.deploy_target();
        let mut fields = vec![
            Entry::dotted("type", r("providers.local.exec")?)?,
            Entry::dotted(
                "imports",
                Expr::List(vec![r(
                    "inputs.nixops4-nixos.modules.nixops4Component.nixos",
                )?]),
            )?,
            Entry::dotted("nixpkgs", r("inputs.nixpkgs")?)?,
            Entry::dotted("nixos.module", {
                let file = Expr::SourcePath(SourcePath::new(&format!("./{}", machine.file))?);
                if input_modules.is_empty() {
                    file
                } else {
                    // nixops4-nixos' `nixos.module` is a deferred module: one importing the file and the inputs'.
                    Expr::attrs(vec![Entry::dotted(
                        "imports",
                        Expr::List(
                            std::iter::once(file)
                                .chain(input_modules.iter().cloned())
                                .collect(),
                        ),
                    )?])
                }
            })?,
            Entry::dotted("ssh.host", Expr::string(&target.host)?)?,
            Entry::dotted(
                "ssh.user",
                Expr::string(target.user.as_deref().unwrap_or("root"))?,
            )?,
        ];
        if let Some(port) = target.port {
            fields.push(Entry::dotted(
                "ssh.opts",
                Expr::string(&format!("-o Port={port}"))?,
            )?);
        }
        fields.push(Entry::dotted("ssh.hostPublicKey", Expr::string(key)?)?);
        members.push(Entry::binding(
            AttrPath::from(AttrName::new(&machine.name)?),
            Expr::attrs(fields),
        ));
    }
    let module = Expr::attrs(vec![
        Entry::dotted(
            "providers.local",
            r("inputs.nixops4.modules.nixops4Provider.local")?,
        )?,
        Entry::dotted("members", Expr::attrs(members))?,
    ]);
    Ok(Expr::Lambda(
        Param::Formals {
            formals: vec![
                (Ident::new("inputs")?, None),
                (Ident::new("providers")?, None),
            ],
            ellipsis: true,
            bind: None,
        },
        Box::new(module),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nix::print::print_expr;
    use proptest::prelude::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPssoi5CP6Eb7yxEd85YqLz5HwfrNLg/8NvVrU0erYM5";

    fn machine(name: &str, ssh: Option<&str>) -> PlannedMachine {
        PlannedMachine {
            name: name.to_owned(),
            file: format!("op/{name}.nix"),
            domain: "op.example".to_owned(),
            role: MachineRole::GarageNode(name.to_owned()),
            ssh: ssh.map(str::to_owned),
            network: None,
        }
    }

    fn keys(names: &[&str]) -> HostKeys {
        HostKeys {
            file: Some("spec.host-keys.toml".into()),
            keys: names
                .iter()
                .map(|n| (n.to_string(), KEY.to_owned()))
                .collect(),
            stale: Vec::new(),
        }
    }

    /// The members' `ssh.*` lines, in order, as printed.
    fn ssh_lines(machines: &[PlannedMachine], host_keys: &HostKeys) -> Vec<String> {
        print_expr(&nixops4(machines, host_keys, &[]).unwrap())
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("ssh."))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn targets_split_into_user_host_and_port_option() {
        let cases = [
            (
                Some("deploy@host.example:2222"),
                vec![
                    r#"ssh.host = "host.example";"#,
                    r#"ssh.user = "deploy";"#,
                    r#"ssh.opts = "-o Port=2222";"#,
                ],
            ),
            (
                Some("root@10.0.0.5:22"),
                vec![r#"ssh.host = "10.0.0.5";"#, r#"ssh.user = "root";"#],
            ),
            (
                Some("[2001:db8::1]"),
                vec![r#"ssh.host = "2001:db8::1";"#, r#"ssh.user = "root";"#],
            ),
            (
                None,
                vec![r#"ssh.host = "m.op.example";"#, r#"ssh.user = "root";"#],
            ),
        ];
        for (ssh, want) in cases {
            let mut lines = ssh_lines(&[machine("m", ssh)], &keys(&["m"]));
            assert_eq!(
                lines.pop().unwrap(),
                format!("ssh.hostPublicKey = \"{KEY}\";")
            );
            assert_eq!(lines, want, "{ssh:?}");
        }
    }

    #[test]
    fn machines_without_a_key_are_left_out_and_nothing_throws() {
        let machines = [machine("a", None), machine("b", None)];
        let text = print_expr(&nixops4(&machines, &keys(&["b"]), &[]).unwrap());
        assert!(
            text.contains("members = {") && text.contains("b = {"),
            "{text}"
        );
        assert!(!text.contains("a = {") && !text.contains("throw"), "{text}");
        assert!(text.contains("inputs.nixops4-nixos.modules.nixops4Component.nixos"));
        assert!(!text.contains("resources") && !text.contains("nixops4Resource"));
    }

    proptest! {
        /// For any machines and any subset of them with keys, the members are exactly the machines with a key, in
        /// plan order, each with its own module file and its key as a literal string.
        #[test]
        fn members_are_the_machines_with_keys(keyed in proptest::collection::vec(any::<bool>(), 0..8)) {
            let machines: Vec<PlannedMachine> =
                (0..keyed.len()).map(|i| machine(&format!("m{i}"), None)).collect();
            let names: Vec<String> = machines
                .iter()
                .zip(&keyed)
                .filter(|(_, k)| **k)
                .map(|(m, _)| m.name.clone())
                .collect();
            let host_keys = HostKeys {
                file: Some("spec.host-keys.toml".into()),
                keys: names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.clone(), format!("{KEY}{i}")))
                    .collect(),
                stale: Vec::new(),
            };
            let text = print_expr(&nixops4(&machines, &host_keys, &[]).unwrap());
            let members: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with("    ") && !l.starts_with("     ") && l.ends_with(" = {"))
                .map(|l| l.trim().trim_end_matches(" = {"))
                .collect();
            prop_assert_eq!(&members, &names);
            for (i, name) in names.iter().enumerate() {
                let module = format!("nixos.module = ./op/{name}.nix;");
                let key = format!("ssh.hostPublicKey = \"{KEY}{i}\";");
                prop_assert!(text.contains(&module), "{}", text);
                prop_assert!(text.contains(&key), "{}", text);
            }
        }

        /// Any target the model accepts becomes `ssh.user`, a bare `ssh.host` and a port option that put together
        /// give the target back (22 being the default, left out).
        #[test]
        fn targets_round_trip(
            user in proptest::option::of("[a-z_][a-z0-9_]{0,8}"),
            host in prop_oneof![
                "[a-z][a-z0-9]{0,10}(\\.[a-z][a-z0-9]{0,10}){1,3}",
                (0u8..=255, 0u8..=255).prop_map(|(a, b)| format!("10.{a}.{b}.1")),
                "[0-9a-f]{1,4}(:[0-9a-f]{1,4}){1,4}::1".prop_map(|h| format!("[{h}]")),
            ],
            port in proptest::option::of(1u16..=65535),
        ) {
            let mut text = host.clone();
            if let Some(user) = &user {
                text = format!("{user}@{text}");
            }
            if let Some(port) = port {
                text = format!("{text}:{port}");
            }
            let m = machine("m", Some(&text));
            let target = m.deploy_target();
            prop_assert_eq!(target.user.as_deref(), user.as_deref());
            prop_assert_eq!(&target.host, host.trim_start_matches('[').trim_end_matches(']'));
            prop_assert_eq!(target.port, port.filter(|&p| p != 22));
            let lines = ssh_lines(std::slice::from_ref(&m), &keys(&["m"]));
            let opts = lines.iter().find(|l| l.starts_with("ssh.opts")).cloned();
            prop_assert_eq!(
                opts,
                port.filter(|&p| p != 22).map(|p| format!("ssh.opts = \"-o Port={p}\";"))
            );
        }
    }
}
