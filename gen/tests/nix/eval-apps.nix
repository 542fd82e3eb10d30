# Evaluates the generated application modules for several `fediversity` settings at once (`cases`, a JSON file
# holding a list of `fediversity` sets), with stand-ins for the upstream option trees, and returns per case what
# the applications' tests read: the upstream services' values, the units fedigen adds (admin accounts, secret
# files), Pixelfed's .env text exactly as upstream writes it (`lib.generators.toKeyValue { }`, nixpkgs
# pixelfed.nix `configFile`), and the failed assertions.
{
  nixpkgs,
  modules,
  cases,
}:
let
  lib = import (nixpkgs + "/lib");
  standIns = import ./nixos-options.nix {
    inherit nixpkgs;
    upstream = false;
  };
  # What the generated modules read of upstream's own definitions, where the stand-ins have none: the Synapse
  # and Mastodon packages (upstream's defaults: pkgs.matrix-synapse, pkgs.mastodon) and the unit upstream runs
  # Mastodon's Rails in (mastodon-web).
  upstreamDefinitions = {
    services.matrix-synapse.package = standIns.pkgs.matrix-synapse;
    services.mastodon.package = standIns.pkgs.mastodon;
    systemd.services.mastodon-web = {
      environment = {
        RAILS_ENV = "production";
        PATH = "/stand-in/bin";
        PORT = "55001";
      };
      serviceConfig = {
        User = "mastodon";
        Group = "mastodon";
        EnvironmentFile = [ "/var/lib/mastodon/.secrets_env" ];
        WorkingDirectory = "/nix/store/00000000000000000000000000000000-mastodon";
      };
    };
  };
  eval =
    fediversity:
    (lib.evalModules {
      modules = standIns.modules ++ [
        (modules + "/default.nix")
        upstreamDefinitions
        { inherit fediversity; }
      ];
    }).config;
  ours = [
    "mastodon-admin-account"
    "pixelfed-admin-account"
    "peertube-admin-account"
    "matrix-synapse-admin-account"
    "pixelfed-secrets"
    "pixelfed-data-setup"
    "phpfpm-pixelfed"
    "pixelfed-horizon"
    "peertube-env"
    "matrix-synapse"
  ];
  run =
    fediversity:
    let
      config = eval fediversity;
      services = config.services;
    in
    {
      services = lib.filterAttrs (
        name: _:
        builtins.elem name [
          "mastodon"
          "pixelfed"
          "peertube"
          "matrix-synapse"
          "nginx"
        ]
      ) services;
      units = lib.filterAttrs (name: _: builtins.elem name ours) (config.systemd.services or { });
      paths = config.systemd.paths or { };
      pixelfedEnv =
        if services.pixelfed.enable or false then
          lib.generators.toKeyValue { } services.pixelfed.settings
        else
          null;
      failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
    };
in
map run (builtins.fromJSON (builtins.readFile cases))
