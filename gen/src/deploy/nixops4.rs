//! The NixOps4 deployment (`deployments/nixops4.nix`).

use super::*;

/// The NixOps4 deployment (nixops4-nixos): one member per machine, deployed over SSH. Host keys are the
/// provider's to write in `deployments/host-keys.nix` (not generated, so never overwritten).
pub(super) fn nixops4(machines: &[PlannedMachine]) -> Result<Expr, DeployError> {
    let r = Expr::reference;
    let mut members = Vec::new();
    for machine in machines {
        let mut fields = vec![
            Entry::dotted("type", r("providers.local.exec")?)?,
            Entry::dotted(
                "imports",
                Expr::List(vec![r(
                    "inputs.nixops4-nixos.modules.nixops4Resource.nixos",
                )?]),
            )?,
            Entry::dotted("nixpkgs", r("inputs.nixpkgs")?)?,
            Entry::dotted(
                "nixos.module",
                Expr::SourcePath(SourcePath::new(&format!("./{}", machine.file))?),
            )?,
        ];
        let key = Expr::Select(
            Box::new(Expr::var("hostKeys")?),
            AttrPath::from(AttrName::new(&machine.name)?),
            Some(Box::new(Expr::apply(
                Expr::var("missing")?,
                vec![Expr::string(&machine.name)?],
            ))),
        );
        let DeployTarget { user, host, port } = machine.deploy_target();
        fields.push(Entry::dotted("ssh.host", Expr::string(&host)?)?);
        if let Some(user) = user {
            fields.push(Entry::dotted("ssh.user", Expr::string(&user)?)?);
        }
        if let Some(port) = port {
            fields.push(Entry::dotted(
                "ssh.opts",
                Expr::string(&format!("-p {port}"))?,
            )?);
        }
        fields.push(Entry::dotted("ssh.hostPublicKey", key)?);
        members.push(Entry::binding(
            AttrPath::from(AttrName::new(&machine.name)?),
            Expr::attrs(fields),
        ));
    }
    let host_keys = Expr::apply(
        Expr::var("import")?,
        vec![Expr::SourcePath(SourcePath::new("./host-keys.nix")?)],
    );
    let mut message = crate::nix::NixString::literal("add the SSH host key of ")?;
    message.push_interpolation(Expr::var("name")?);
    message.push_literal(" to deployments/host-keys.nix")?;
    let missing = Expr::Lambda(
        Param::Ident(Ident::new("name")?),
        Box::new(Expr::apply(Expr::var("throw")?, vec![Expr::Str(message)])),
    );
    let module = Expr::Let(
        vec![
            Entry::dotted("missing", missing)?,
            Entry::dotted(
                "hostKeys",
                Expr::apply(
                    r("lib.optionalAttrs")?,
                    vec![
                        Expr::apply(
                            r("builtins.pathExists")?,
                            vec![Expr::SourcePath(SourcePath::new("./host-keys.nix")?)],
                        ),
                        host_keys,
                    ],
                ),
            )?,
        ],
        Box::new(Expr::attrs(vec![
            Entry::dotted(
                "providers.local",
                r("inputs.nixops4.modules.nixops4Provider.local")?,
            )?,
            Entry::dotted("resources", Expr::attrs(members))?,
        ])),
    );
    Ok(Expr::Lambda(
        Param::Formals {
            formals: vec![
                (Ident::new("inputs")?, None),
                (Ident::new("lib")?, None),
                (Ident::new("providers")?, None),
            ],
            ellipsis: true,
            bind: None,
        },
        Box::new(module),
    ))
}
