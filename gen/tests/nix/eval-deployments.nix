# Evaluates every generated machine (deployments/default.nix) with nixpkgs' module system and stand-ins for
# the upstream option trees, as eval-modules.nix does for the modules alone: each machine's configuration
# evaluates, and reports which upstream services it enables and which of its assertions fail.
{
  nixpkgs,
  repository,
}:
let
  lib = import (nixpkgs + "/lib");
  freeform = lib.mkOption {
    type = lib.types.attrsOf lib.types.anything;
    default = { };
  };
  stubs =
    { lib, ... }:
    {
      options = {
        boot = freeform;
        environment = freeform;
        fileSystems = freeform;
        nixpkgs = freeform;
        proxmox = freeform;
        security = freeform;
        services = freeform;
        system = freeform;
        systemd = freeform;
        users = freeform;
        virtualisation = freeform;
        # As NixOS declares it (nixos/modules/misc/assertions.nix): modules/fediversity.nix asserts needs.
        assertions = lib.mkOption {
          type = lib.types.listOf lib.types.unspecified;
          internal = true;
          default = [ ];
        };
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
      };
      config._module.args.pkgs = {
        writeText = name: text: "/nix/store/00000000000000000000000000000000-${name}";
        garage = "garage-package";
      };
    };
  machine =
    module:
    (lib.evalModules {
      # The upstream modules the runtime backend's base imports (deployments/base.nix), as empty stand-ins:
      # what they set is checked by the contract tests (gen/tests/contract), not here.
      # A string, as nixpkgs' eval-config.nix passes it (`builtins.toString ../modules`), so that
      # "${modulesPath}/…" names the file in place rather than copying the folder into the store.
      specialArgs.modulesPath = builtins.toString ./modules-path;
      modules = [
        stubs
        module
      ];
    }).config;
in
lib.mapAttrs (
  name: module:
  let
    config = machine module;
  in
  {
    hostName = config.networking.hostName;
    services = builtins.attrNames (lib.filterAttrs (_: s: s.enable or false) config.services);
    failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
  }
) (import (repository + "/deployments"))
