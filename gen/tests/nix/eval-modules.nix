# Evaluates the generated modules with nixpkgs' module system (`lib.evalModules`), with stand-ins for the
# upstream option trees (`services`, `security`, …) as free-form attribute sets: this proves the options are
# declared, defaults evaluate, types check and the enabled configuration evaluates, with nixpkgs' `lib` alone.
# `settings` overrides per application; the result is JSON-able.
{
  nixpkgs,
  modules,
  settings ? { },
  # A further module, e.g. a person's overrides of generated values.
  extra ? { },
}:
let
  lib = import (nixpkgs + "/lib");
  stubs =
    { lib, ... }:
    {
      options =
        lib.genAttrs
          [
            "environment"
            "security"
            "services"
            "systemd"
            "users"
          ]
          (
            _:
            lib.mkOption {
              type = lib.types.attrsOf lib.types.anything;
              default = { };
            }
          )
        // {
          # As NixOS declares it (nixos/modules/misc/assertions.nix): modules/fediversity.nix asserts needs.
          assertions = lib.mkOption {
            type = lib.types.listOf lib.types.unspecified;
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
        };
      config._module.args.pkgs = {
        writeText = name: text: "/nix/store/00000000000000000000000000000000-${name}";
        garage = "garage-package";
      };
    };
  shared = {
    domain = "uu.example";
    acme.email = "hostmaster@provider.example";
    smtp = {
      host = "smtp.provider.example";
      fromAddress = "noreply@uu.example";
    };
    s3.endpoint = "https://s3.provider.example";
  };
  secrets = {
    pixelfed.appSecretsFile = "/run/secrets/pixelfed.env";
    peertube.peertubeSecretFile = "/run/secrets/peertube";
    matrix-synapse.synapseSecretsFile = "/run/secrets/synapse.yaml";
    garage.environmentFile = "/run/secrets/garage.env";
  };
  eval =
    apps:
    (lib.evalModules {
      modules = [
        stubs
        (modules + "/default.nix")
        { fediversity = shared // apps; }
        extra
      ];
    }).config;
  enabled = eval (
    lib.mapAttrs (name: _: { enable = true; } // (secrets.${name} or { }) // (settings.${name} or { }))
      (
        lib.filterAttrs (n: _: n != "domain" && n != "acme" && n != "smtp" && n != "s3")
          (eval { }).fediversity
      )
  );
in
{
  disabled = (eval { }).services;
  enabled = enabled.services;
  networking = enabled.networking;
  security = enabled.security;
}
