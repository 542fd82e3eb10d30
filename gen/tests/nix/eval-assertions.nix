# The assertions the generated modules make of a configuration (`config.assertions`, as NixOS checks them before
# it builds anything): returns the messages of those that fail, and the shared options declared without a default.
#
# With `nixpkgs` (a checkout of nixpkgs or of its lib/ alone), by `lib.evalModules` over every generated module,
# with stand-ins for the upstream option trees: the module system's own `isDefined`, priorities and `mkIf`.
# Without it, by calling modules/fediversity.nix with a stand-in `lib` and with `config` and `options` built from
# `fediversity` the way the module system builds them (an option is defined when it has a default or a
# definition): this checks the generated conditions and messages, not the module system.
{
  nixpkgs ? null,
  modules,
  # The configuration's `fediversity` set, e.g. `{ domain = "uu.example"; mastodon.enable = true; }`.
  fediversity,
}:
let
  shared = import (modules + "/fediversity.nix");

  stubLib = {
    mkOption = declaration: declaration // { _isOption = true; };
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };
    mkMerge = contents: {
      _type = "merge";
      inherit contents;
    };
    types = {
      str = "str";
      port = "port";
      nullOr = type: "nullOr ${type}";
    };
  };
  declared =
    (shared {
      lib = stubLib;
      config = { };
      options = { };
    }).options.fediversity;
  hasPath =
    path: set:
    path == [ ]
    || (
      builtins.isAttrs set
      && set ? ${builtins.head path}
      && hasPath (builtins.tail path) set.${builtins.head path}
    );
  # Every declared option as the module system presents it in `options`, reduced to `isDefined`.
  optionsAt =
    path: declaration:
    if declaration._isOption or false then
      { isDefined = declaration ? default || hasPath path fediversity; }
    else
      builtins.mapAttrs (name: inner: optionsAt (path ++ [ name ]) inner) declaration;
  # The shared options that have no default, as dotted paths: the ones whose `isDefined` says something.
  withoutDefault =
    prefix: declaration:
    if declaration._isOption or false then
      (if declaration ? default then [ ] else [ prefix ])
    else
      builtins.concatLists (
        map (
          name: withoutDefault (if prefix == "" then name else "${prefix}.${name}") declaration.${name}
        ) (builtins.attrNames declaration)
      );
  # `fediversity` with the declared defaults filled in, as the module system presents `config`.
  withDefaults =
    declaration: set:
    set
    // builtins.listToAttrs (
      builtins.concatMap (
        name:
        let
          inner = declaration.${name};
        in
        if inner._isOption or false then
          (
            if set ? ${name} || !(inner ? default) then
              [ ]
            else
              [
                {
                  inherit name;
                  value = inner.default;
                }
              ]
          )
        else
          [
            {
              inherit name;
              value = withDefaults inner (set.${name} or { });
            }
          ]
      ) (builtins.attrNames declaration)
    );
  resolve =
    value:
    if (value._type or null) == "merge" then
      builtins.concatMap resolve value.contents
    else if (value._type or null) == "if" then
      (if value.condition then resolve value.content else [ ])
    else
      [ value ];
  stubAssertions =
    let
      module = shared {
        lib = stubLib;
        config.fediversity = withDefaults declared fediversity;
        options.fediversity = optionsAt [ ] declared;
      };
    in
    builtins.concatMap (definition: definition.assertions or [ ]) (resolve (module.config or { }));

  realAssertions =
    let
      lib = import (nixpkgs + "/lib");
      freeform = lib.mkOption {
        type = lib.types.attrsOf lib.types.anything;
        default = { };
      };
      stubs = {
        # The packages the modules name (garage.nix: its package, its settings' format, its scripts), as
        # stand-ins: only the assertions are evaluated, nothing is built.
        config._module.args.pkgs = {
          garage_2 = { };
          formats.toml = _: { type = lib.types.attrsOf lib.types.anything; };
          writeText = name: _: "/nix/store/00000000000000000000000000000000-${name}";
          writeShellScript = name: _: "/nix/store/00000000000000000000000000000000-${name}";
          callPackage = _: _: { };
        };
        options =
          lib.genAttrs [
            "environment"
            "networking"
            "security"
            "services"
            "systemd"
            "users"
          ] (_: freeform)
          // {
            # As NixOS declares it (nixos/modules/misc/assertions.nix).
            assertions = lib.mkOption {
              type = lib.types.listOf lib.types.unspecified;
              internal = true;
              default = [ ];
            };
          };
      };
    in
    (lib.evalModules {
      modules = [
        stubs
        (modules + "/default.nix")
        { inherit fediversity; }
      ];
    }).config.assertions;

  assertions = if nixpkgs == null then stubAssertions else realAssertions;
in
{
  failed = map (assertion: assertion.message) (builtins.filter (a: !a.assertion) assertions);
  withoutDefault = withoutDefault "" declared;
}
