# Evaluates a generated NixOS VM test with stand-ins for the few packages it names and runNixOSTest as the
# identity: its name, node names and the Python test script, for checks that need nixpkgs' lib only.
{ nixpkgs, file }:
let
  lib = import (nixpkgs + "/lib");
  pkgs = {
    inherit lib;
    testers.runNixOSTest = test: test;
    runCommand =
      name: env: script:
      "/nix/store/00000000000000000000000000000000-${name}";
    writeText = name: text: "/nix/store/00000000000000000000000000000000-${name}";
  };
  test = import file {
    inherit pkgs;
    nixpkgs = null;
  };
  nodes = lib.mapAttrs (_: _: { networking.primaryIPAddress = "192.168.1.2"; }) test.nodes;
in
{
  inherit (test) name;
  nodes = builtins.attrNames test.nodes;
  # A plain script, or a function of the nodes (runNixOSTest accepts both).
  script =
    if builtins.isFunction test.testScript then test.testScript { inherit nodes; } else test.testScript;
}
