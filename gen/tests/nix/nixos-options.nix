# The NixOS option trees the generated modules and machines are evaluated against with `lib.evalModules`:
# the real upstream module wherever the nixpkgs checkout (`nixpkgs`, full or partial) has its file, so option
# names, types, defaults and assertions are upstream's; a declared stand-in only where the file is missing.
#
# Stand-ins are declared by name, never as one free-form `services` (or `boot`, …) tree: a definition of an
# option nobody declares — `services.ngnix` — fails here as it fails in NixOS. A stand-in is free-form below
# its name (`services.nginx.<anything>`), because what nginx, PostgreSQL or systemd accept is not checked here.
#
# Returns `{ modules; modulesPath; pkgs; upstream; }`: the modules to evaluate with, the `modulesPath` the
# runtime backend's base imports from (nixpkgs' own when the checkout has every file it names, else stand-ins
# that define nothing), the stand-in `pkgs`, and which upstream files were loaded (for the test's report).
{ nixpkgs }:
let
  lib = import (nixpkgs + "/lib");
  have = file: builtins.pathExists (nixpkgs + "/${file}");
  freeform = lib.mkOption {
    type = lib.types.attrsOf lib.types.anything;
    default = { };
  };
  # Option path → the nixpkgs file that declares it.
  applications = {
    garage = "nixos/modules/services/web-servers/garage.nix";
    mastodon = "nixos/modules/services/web-apps/mastodon.nix";
    matrix-synapse = "nixos/modules/services/matrix/synapse.nix";
    peertube = "nixos/modules/services/web-apps/peertube.nix";
    pixelfed = "nixos/modules/services/web-apps/pixelfed.nix";
  };
  # What `deployments/base.nix` imports through `modulesPath`, and what those files import in turn.
  baseFiles = [
    "nixos/modules/virtualisation/proxmox-image.nix"
    "nixos/modules/virtualisation/disk-size-option.nix"
    "nixos/modules/image/file-options.nix"
    "nixos/modules/profiles/qemu-guest.nix"
  ];
  realBase = builtins.all have baseFiles;
  loaded = lib.filterAttrs (_: have) applications;
  # Services no file of the checkout declares: the generated modules' and the upstream modules' neighbours.
  serviceStandIns = [
    "cloud-init"
    "elasticsearch"
    "mysql"
    "nginx"
    "openssh"
    "opensearch"
    "phpfpm"
    "postgresql"
    "qemuGuest"
    "redis"
    "sshd"
  ]
  ++ builtins.attrNames (lib.filterAttrs (_: file: !have file) applications);
  standIns =
    { lib, ... }:
    {
      options = {
        services = lib.genAttrs serviceStandIns (_: freeform);
        # As NixOS declares them (nixos/modules/misc/assertions.nix).
        assertions = lib.mkOption {
          type = lib.types.listOf lib.types.unspecified;
          internal = true;
          default = [ ];
        };
        warnings = lib.mkOption {
          type = lib.types.listOf lib.types.str;
          internal = true;
          default = [ ];
        };
        # Lists merge by concatenation in NixOS; several applications open ports.
        networking = lib.mkOption {
          type = lib.types.submodule {
            freeformType = lib.types.attrsOf lib.types.anything;
            options.firewall.allowedTCPPorts = lib.mkOption {
              type = lib.types.listOf lib.types.port;
              default = [ ];
            };
          };
          default = { };
        };
      }
      // lib.genAttrs [
        "boot"
        "documentation"
        "environment"
        "fileSystems"
        "hardware"
        "meta"
        "nixpkgs"
        "security"
        "system"
        "systemd"
        "users"
      ] (_: freeform)
      # proxmox-image.nix and disk-size-option.nix declare parts of these when the checkout has them.
      // lib.optionalAttrs (!realBase) {
        image = freeform;
        proxmox = freeform;
        virtualisation = freeform;
      }
      // lib.optionalAttrs realBase {
        virtualisation = lib.genAttrs [
          "vmVariant"
          "memorySize"
          "cores"
        ] (_: freeform);
      };
      config._module.args.pkgs = pkgs;
    };
  # Packages are names: nothing here builds, and what reads a package's contents is not evaluated.
  pkgs = {
    writeText = name: text: "/nix/store/00000000000000000000000000000000-${name}";
    garage = "garage-package";
    garage_2 = "garage-package";
    formats =
      if have "pkgs/pkgs-lib/formats.nix" then
        import (nixpkgs + "/pkgs/pkgs-lib/formats.nix") { inherit lib pkgs; }
      else
        lib.genAttrs [ "json" "yaml" "toml" "ini" "keyValue" ] (
          _: _: {
            type = lib.types.attrsOf lib.types.anything;
            generate = name: value: "/nix/store/00000000000000000000000000000000-${name}";
          }
        );
  };
in
{
  modules = [ standIns ] ++ map (file: nixpkgs + "/${file}") (builtins.attrValues loaded);
  modulesPath =
    if realBase then
      builtins.toString (nixpkgs + "/nixos/modules")
    else
      builtins.toString ./modules-path;
  inherit pkgs;
  upstream = builtins.attrNames loaded ++ lib.optional realBase "proxmox-image";
}
