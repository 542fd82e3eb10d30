# Evaluates every generated machine (deployments/default.nix) with nixpkgs' module system and stand-ins for
# the upstream option trees where the checkout lacks the upstream module (nixos-options.nix): each machine's
# configuration evaluates, and reports which upstream services it enables, which of its assertions fail, and
# what it needs to build and boot (root file system, boot loader, platform).
{
  nixpkgs,
  repository,
  # A further module for every machine, e.g. a planted mistake that must fail evaluation.
  extra ? { },
}:
let
  lib = import (nixpkgs + "/lib");
  nixos = import ./nixos-options.nix { inherit nixpkgs; };
  machine =
    module:
    (lib.evalModules {
      # A string, as nixpkgs' eval-config.nix passes it (`builtins.toString ../modules`), so that
      # "${modulesPath}/…" names the file in place rather than copying the folder into the store.
      specialArgs.modulesPath = nixos.modulesPath;
      modules = nixos.modules ++ [
        module
        extra
      ];
    }).config;
  # What NixOS needs of every machine to build and boot, as the evaluated configuration says it.
  bootLoader =
    config:
    if config.boot.loader.systemd-boot.enable or false then
      "systemd-boot"
    else if (config.boot.loader.grub.enable or true) then
      (
        let
          grub = config.boot.loader.grub or { };
        in
        if (grub.device or "") != "" then
          "grub ${grub.device}"
        else if (grub.devices or [ ]) != [ ] then
          "grub ${builtins.concatStringsSep " " grub.devices}"
        else
          null
      )
    else
      null;
in
{
  upstream = nixos.upstream;
  machines = lib.mapAttrs (
    name: module:
    let
      config = machine module;
    in
    {
      hostName = config.networking.hostName;
      domain = config.networking.domain or null;
      services = builtins.attrNames (lib.filterAttrs (_: s: s.enable or false) config.services);
      failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
      rootFileSystem = config.fileSystems."/".device or null;
      bootLoader = bootLoader config;
      hostPlatform = config.nixpkgs.hostPlatform or null;
      addresses = config.systemd.network.networks."10-uplink".address or [ ];
      # Object storage: whether the machine runs the provisioning unit, and each application's S3 key file.
      storageApply = config.systemd.services ? fedigen-storage-apply;
      s3KeyFiles = lib.filter (f: f != null) (
        lib.mapAttrsToList (_: v: if builtins.isAttrs v then v.objectStorage.keyFile or null else null) (
          config.fediversity
        )
      );
      # Each declared secret, with whether its owner and group exist on the machine: a user or group the
      # machine's modules (upstream's, where the checkout has them) declare, or root.
      secrets = lib.mapAttrs (name: secret: {
        inherit (secret) owner group unit;
        ownerExists = secret.owner == "root" || (config.users.users or { }) ? ${secret.owner};
        groupExists = secret.group == "root" || (config.users.groups or { }) ? ${secret.group};
      }) config.fediversity.secrets;
      secretsCheck =
        let
          unit = config.systemd.services.fediversity-secrets-check or null;
        in
        if unit == null then
          null
        else
          {
            before = unit.before or [ ];
            requiredBy = unit.requiredBy or [ ];
          };
    }
  ) (import (repository + "/deployments"));
}
