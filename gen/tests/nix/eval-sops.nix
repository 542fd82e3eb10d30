# Evaluates every generated machine (deployments/default.nix) of a sops-backed specification with nixpkgs' module
# system, sops-nix's real NixOS module (`sopsNix`, a checkout of github:Mic92/sops-nix) and the stand-ins of
# nixos-options.nix for the rest. Reports, per machine, the secrets it declares (`fediversity.secrets`), the
# evaluated `sops.secrets` (what sops-nix's option types and defaults make of them) and the failed assertions,
# sops-nix's own included.
{
  nixpkgs,
  sopsNix,
  repository,
  # A further module for every machine, e.g. a planted mistake that must fail.
  extra ? { },
}:
let
  lib = import (nixpkgs + "/lib");
  nixos = import ./nixos-options.nix { inherit nixpkgs; };
  # What sops-nix reads of NixOS that the stand-ins leave free-form: openssh's host keys, with NixOS's default
  # (nixos/modules/services/networking/ssh/sshd.nix), from which it derives `sops.age.sshKeyPaths`.
  openssh = {
    services.openssh.hostKeys = [
      {
        type = "rsa";
        bits = 4096;
        path = "/etc/ssh/ssh_host_rsa_key";
      }
      {
        type = "ed25519";
        path = "/etc/ssh/ssh_host_ed25519_key";
      }
    ];
  };
  machine =
    module:
    (lib.evalModules {
      specialArgs.modulesPath = nixos.modulesPath;
      modules = nixos.modules ++ [
        (sopsNix + "/modules/sops")
        openssh
        module
        extra
      ];
    }).config;
  sopsFile = repository + "/examples/sops/secrets.yaml";
in
lib.mapAttrs (
  name: module:
  let
    config = machine module;
  in
  {
    declared = lib.mapAttrs (_: s: {
      inherit (s)
        path
        owner
        group
        mode
        unit
        ;
    }) config.fediversity.secrets;
    sops = lib.mapAttrs (_: s: {
      inherit (s)
        key
        path
        owner
        group
        mode
        format
        restartUnits
        neededForUsers
        ;
      # A path (the encrypted file, copied into the store), and the repository's file.
      sopsFileIsTheRepositorys = builtins.isPath s.sopsFile && s.sopsFile == sopsFile;
    }) config.sops.secrets;
    failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
  }
) (import (repository + "/deployments"))
