# Evaluates the generated modules with nixpkgs' module system (`lib.evalModules`): with stand-ins for the
# upstream option trees (nixos-options.nix, declared by name), the configuration read back as data — the
# options are declared, defaults evaluate, types check, the enabled configuration evaluates —; and with the
# upstream modules the checkout has (`upstream`), every value given to an upstream option read through it, so
# upstream's names and types judge it. `settings` overrides per application; the result is JSON-able.
{
  nixpkgs,
  modules,
  settings ? { },
  # A further module, e.g. a person's overrides of generated values.
  extra ? { },
}:
let
  lib = import (nixpkgs + "/lib");
  standIns = import ./nixos-options.nix {
    inherit nixpkgs;
    upstream = false;
  };
  real = import ./nixos-options.nix { inherit nixpkgs; };
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
  evalWith =
    nixos: apps:
    lib.evalModules {
      modules = nixos.modules ++ [
        (modules + "/default.nix")
        { fediversity = shared // apps; }
        extra
      ];
    };
  eval = apps: (evalWith standIns apps).config;
  every =
    lib.mapAttrs (name: _: { enable = true; } // (secrets.${name} or { }) // (settings.${name} or { }))
      (
        lib.filterAttrs (
          n: _:
          !builtins.elem n [
            "domain"
            "admin"
            "acme"
            "smtp"
            "s3"
          ]
        )
          (eval { }).fediversity
      );
  # With the upstream modules the checkout has: every value the generated modules give an upstream option,
  # read through that option, so upstream's type checks and merges it. Only the attribute paths the generated
  # modules set are read, never an upstream default (those name packages, which are not here).
  upstream =
    let
      evaluated = evalWith real every;
      # Definitions not made by upstream's own modules: the generated modules' and `extra`'s.
      ours = definition: !lib.hasPrefix (toString nixpkgs) (toString definition.file);
      # The attribute paths a definition sets, through mkIf, mkMerge, mkDefault and mkOrder.
      paths =
        prefix: value:
        if builtins.isAttrs value && value ? _type then
          (
            if value._type == "merge" then
              builtins.concatMap (paths prefix) value.contents
            else if value._type == "if" || value._type == "override" || value._type == "order" then
              paths prefix value.content
            else
              [ prefix ]
          )
        else if builtins.isAttrs value && value != { } && !lib.isDerivation value then
          builtins.concatLists (lib.mapAttrsToList (name: paths (prefix ++ [ name ])) value)
        else
          [ prefix ];
      read =
        option:
        let
          definitions = builtins.filter ours option.definitionsWithLocations;
          leaves = builtins.concatMap (d: paths [ ] d.value) definitions;
        in
        map (
          path: builtins.deepSeq (lib.attrByPath path null option.value) (lib.showOption (option.loc ++ path))
        ) leaves;
    in
    {
      loaded = real.upstream;
      checked = lib.mapAttrs (
        app: _:
        lib.sort (a: b: a < b) (
          builtins.concatMap read (lib.collect lib.isOption evaluated.options.services.${app})
        )
      ) (lib.filterAttrs (app: _: builtins.elem app real.upstream) every);
    };
  enabled = eval every;
in
{
  # What the generated modules set with every application disabled: the services differing from the
  # stand-ins' own defaults.
  disabled =
    let
      before = (lib.evalModules { modules = standIns.modules; }).config.services;
    in
    lib.filterAttrs (name: value: value != before.${name} or null) (eval { }).services;
  enabled = enabled.services;
  networking = enabled.networking;
  security = enabled.security;
  inherit upstream;
}
