//! What the runtime backend gives every machine (`deployments/base.nix`) and each machine's own base: imports,
//! names, SSH, a bare-metal host's hardware configuration and boot loader.

use super::*;

/// What every machine has: the generated modules, the runtime backend's base and the provider modules it needs
/// (`provider_modules`, files of `deployments/`), its runtime backend's per-machine settings, its names, its
/// network (`network`, see [`super::network`]), SSH, the
/// NixOS release it started with. `spec_dir` is the specification's folder relative to the repository, which a
/// bare-metal host's `hardware_config` is relative to.
pub(super) fn machine_base(
    spec: &Spec,
    spec_dir: &Path,
    capacity: model::Resources,
    bare_metal_host: Option<&str>,
    (host_name, domain): (&str, &str),
    network: Option<&model::Network>,
    provider_modules: &[&str],
) -> Result<Vec<Entry>, DeployError> {
    let mut imports = vec![
        Expr::SourcePath(SourcePath::new("../../modules")?),
        Expr::SourcePath(SourcePath::new(&format!("../{BASE_MODULE}"))?),
    ];
    for module in provider_modules {
        imports.push(Expr::SourcePath(SourcePath::new(&format!("../{module}"))?));
    }
    let mut entries = Vec::new();
    let disk_mib = u64::from(capacity.disk_gib) * 1024;
    match &spec.provider.runtime {
        Runtime::Qemu(_) => {
            // `nixos-rebuild build-vm` and the VM tests use this variant; it needs no extra module.
            entries.push(Entry::dotted(
                "virtualisation.vmVariant.virtualisation",
                data(&serde_json::json!({
                    "cores": capacity.cores,
                    "memorySize": capacity.memory_mib,
                    "diskSize": disk_mib,
                }))?,
            )?);
        }
        Runtime::Proxmox(_) => {
            // proxmox-image.nix (imported by the base) builds the VM image with these; MiB throughout.
            entries.push(Entry::dotted(
                "proxmox.qemuConf",
                Expr::attrs(vec![
                    Entry::dotted("name", Expr::string(host_name)?)?,
                    Entry::dotted("cores", Expr::Int(i64::from(capacity.cores)))?,
                    Entry::dotted("memory", Expr::Int(i64::from(capacity.memory_mib)))?,
                ]),
            )?);
            // The disk's size is not set here: `virtualisation.diskSize` stays "auto", so the image holds what the
            // system needs (a full-size image would be written and packed whole into the VMA: 2 TB for a Garage
            // node), and the root file system grows to the disk at first boot (proxmox-image.nix's growPartition
            // and autoResize). The disk itself gets its size where the VM is made (`deployments/tofu/main.tf.json`).
        }
        Runtime::BareMetal(bare) => {
            if let Some(host) = bare_metal_host.and_then(|h| bare.hosts.get(h)) {
                imports.push(Expr::SourcePath(hardware_source(
                    spec_dir,
                    &host.hardware_config,
                )?));
                entries.extend(boot_loader(&host.boot_loader)?);
            }
        }
    }
    entries.insert(0, Entry::dotted("imports", Expr::List(imports))?);
    entries.push(Entry::dotted(
        "networking.hostName",
        Expr::string(host_name)?,
    )?);
    entries.push(Entry::dotted("networking.domain", Expr::string(domain)?)?);
    entries.extend(super::network::network_entries(
        network,
        spec.provider.network.as_ref(),
    )?);
    entries.push(Entry::dotted("services.openssh.enable", Expr::Bool(true))?);
    entries.push(Entry::dotted(
        "system.stateVersion",
        Expr::string(STATE_VERSION)?,
    )?);
    Ok(entries)
}

/// The path literal, from a machine file (`deployments/<folder>/<machine>.nix`), of a hardware configuration
/// given relative to the specification's folder (`spec_dir`, relative to the repository). A path literal, not a
/// string: pure flake evaluation reads only files of the repository, and copies this one with it.
pub(crate) fn hardware_source(spec_dir: &Path, file: &str) -> Result<SourcePath, DeployError> {
    let path = repository_path(spec_dir, file, "the hardware configuration")?;
    Ok(SourcePath::new(&format!("../../{path}"))?)
}

/// The path, relative to the repository, of a file the specification names relative to its folder (`spec_dir`,
/// relative to the repository); `what` names the file in errors. Refused when absolute or outside the repository:
/// pure flake evaluation reads only the repository's files.
pub(crate) fn repository_path(
    spec_dir: &Path,
    file: &str,
    what: &str,
) -> Result<String, DeployError> {
    if file.starts_with('/') {
        return Err(DeployError::Data(format!(
            "{what} `{file}` is an absolute path; give it relative to the specification file"
        )));
    }
    let mut parts: Vec<&str> = Vec::new();
    let joined = spec_dir.join(file);
    for component in joined.components() {
        match component {
            std::path::Component::Normal(part) => {
                parts.push(part.to_str().unwrap_or_default());
            }
            std::path::Component::ParentDir => {
                parts.pop().ok_or_else(|| {
                    DeployError::Data(format!(
                        "{what} `{file}` lies outside the repository; pure flake evaluation \
                         reads only the repository's files: commit it in the repository and give its path \
                         relative to the specification file"
                    ))
                })?;
            }
            _ => {}
        }
    }
    Ok(parts.join("/"))
}

/// The `boot.loader` settings of a bare-metal host's boot loader.
pub(super) fn boot_loader(loader: &model::BootLoader) -> Result<Vec<Entry>, DeployError> {
    Ok(match loader {
        model::BootLoader::SystemdBoot => vec![
            Entry::dotted("boot.loader.systemd-boot.enable", Expr::Bool(true))?,
            Entry::dotted("boot.loader.efi.canTouchEfiVariables", Expr::Bool(true))?,
        ],
        model::BootLoader::Grub { device } => vec![Entry::dotted(
            "boot.loader.grub.device",
            Expr::string(device)?,
        )?],
    })
}

/// `deployments/base.nix`: what the runtime backend gives every machine, the same on each. QEMU: nixpkgs' QEMU
/// guest profile (virtio drivers), the root file system by label, GRUB on the virtio disk. Proxmox: nixpkgs'
/// `proxmox-image.nix` (image, root file system, GRUB, guest agent) without cloud-init, which would blank the
/// host name set here. Bare metal: only the platform (the hardware and boot loader are each host's).
pub(super) fn base_module(runtime: &Runtime, deploy_keys: &[String]) -> Result<Expr, DeployError> {
    let module_path = |file: &str| -> Result<Expr, DeployError> {
        let mut path = crate::nix::NixString::default();
        path.push_interpolation(Expr::var("modulesPath")?);
        path.push_literal(file)?;
        Ok(Expr::Str(path))
    };
    let mut entries = Vec::new();
    match runtime {
        Runtime::Qemu(_) => {
            entries.push(Entry::dotted(
                "imports",
                Expr::List(vec![module_path("/profiles/qemu-guest.nix")?]),
            )?);
            entries.push(Entry::binding(
                AttrPath::new(vec![AttrName::new("fileSystems")?, AttrName::new("/")?])?,
                Expr::attrs(vec![
                    Entry::dotted("device", Expr::string("/dev/disk/by-label/nixos")?)?,
                    Entry::dotted("fsType", Expr::string("ext4")?)?,
                    Entry::dotted("autoResize", Expr::Bool(true))?,
                ]),
            ));
            entries.push(Entry::dotted("boot.growPartition", Expr::Bool(true))?);
            entries.push(Entry::dotted(
                "boot.loader.grub.device",
                Expr::string("/dev/vda")?,
            )?);
        }
        Runtime::Proxmox(proxmox) => {
            entries.push(Entry::dotted(
                "imports",
                Expr::List(vec![module_path("/virtualisation/proxmox-image.nix")?]),
            )?);
            entries.push(Entry::dotted(
                "proxmox.cloudInit.enable",
                Expr::Bool(false),
            )?);
            // The storage and bridge the image names: proxmox-image.nix writes them into the VMA's configuration
            // (`virtio0`, `net0`, and the cloud-init drive it adds even when cloud-init is off); its defaults name
            // `local-lvm` and `vmbr0`, which a restore on another storage would look for. `virtio0`, so the guest
            // sees `/dev/vda`, where the image puts GRUB.
            entries.push(Entry::dotted(
                "proxmox.qemuConf.virtio0",
                Expr::string(&format!("{}:vm-9999-disk-0", proxmox.storage))?,
            )?);
            entries.push(Entry::dotted(
                "proxmox.qemuConf.net0",
                Expr::string(&format!(
                    "virtio=00:00:00:00:00:00,bridge={},firewall=1",
                    proxmox.bridge
                ))?,
            )?);
            entries.push(Entry::dotted(
                "proxmox.cloudInit.defaultStorage",
                Expr::string(&proxmox.storage)?,
            )?);
            entries.push(Entry::dotted(
                "services.qemuGuest.enable",
                Expr::Bool(true),
            )?);
        }
        Runtime::BareMetal(_) => {}
    }
    entries.push(Entry::dotted(
        "nixpkgs.hostPlatform",
        Expr::string(runtime.host_platform())?,
    )?);
    // NixOps4 logs in as root with the deployer's key (nixops4-nixos: `PasswordAuthentication=no`); in the image
    // too, so a machine it just started can be deployed.
    if !deploy_keys.is_empty() {
        entries.push(Entry::dotted(
            "users.users.root.openssh.authorizedKeys.keys",
            Expr::List(
                deploy_keys
                    .iter()
                    .map(|key| Expr::string(key))
                    .collect::<Result<_, _>>()?,
            ),
        )?);
    }
    let body = Expr::attrs(entries);
    Ok(match runtime {
        Runtime::BareMetal(_) => body,
        Runtime::Qemu(_) | Runtime::Proxmox(_) => Expr::Lambda(
            Param::Formals {
                formals: vec![(Ident::new("modulesPath")?, None)],
                ellipsis: true,
                bind: None,
            },
            Box::new(body),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hardware configuration is found from the machine file (`deployments/<folder>/<machine>.nix`), two
    /// folders below the repository, whatever `.`/`..` the specification's path holds; leaving the repository
    /// or an absolute path is refused, never written.
    #[test]
    fn a_hardware_configuration_is_a_path_literal_from_the_machine_file() {
        let source = |dir: &str, file: &str| {
            hardware_source(Path::new(dir), file).map(|p| p.as_str().to_owned())
        };
        assert_eq!(
            source("examples", "./hardware/metal1.nix").unwrap(),
            "../../examples/hardware/metal1.nix"
        );
        assert_eq!(
            source("", "hosts/a/hardware-configuration.nix").unwrap(),
            "../../hosts/a/hardware-configuration.nix"
        );
        assert_eq!(
            source("specs/prod", "../hardware/a.nix").unwrap(),
            "../../specs/hardware/a.nix"
        );
        for (dir, file) in [
            ("examples", "../../hw.nix"),
            ("", "../hw.nix"),
            ("examples", "/etc/nixos/hw.nix"),
        ] {
            assert!(
                matches!(source(dir, file), Err(DeployError::Data(_))),
                "{dir} {file}"
            );
        }
    }
}
