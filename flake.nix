{
  description = "fedigen: generate, prove and test NixOS modules and deployments for the Fediversity project";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      # The generated files, found by name so that a new template needs no edit here.
      nixFiles =
        dir:
        map (nixpkgs.lib.removeSuffix ".nix") (
          builtins.filter (nixpkgs.lib.hasSuffix ".nix") (builtins.attrNames (builtins.readDir dir))
        );
      # The applications with a template: a region that `fedigen generate` keeps current.
      applications = [
        # fedigen:begin applications
        "garage"
        "mastodon"
        "matrix-synapse"
        "peertube"
        "pixelfed"
        # fedigen:end applications
      ];
    in
    {
      # Every application at once, or one application with the options they all share.
      nixosModules = {
        default = ./modules;
      }
      // nixpkgs.lib.genAttrs applications (app: {
        imports = [
          ./modules/fediversity.nix
          (./modules + "/${app}.nix")
        ];
      });

      # One NixOS configuration per generated machine of the example specification (deployments/). No
      # `system`: each machine sets nixpkgs.hostPlatform, and NixOps4 evaluates it the same way.
      nixosConfigurations = builtins.mapAttrs (
        name: module:
        nixpkgs.lib.nixosSystem {
          modules = [ module ];
        }
      ) (import ./deployments);

      # The generated NixOS VM tests (`nix flake check`, or `cargo test -p vm-tests` for the harness).
      checks = nixpkgs.lib.genAttrs [ "x86_64-linux" ] (
        system:
        nixpkgs.lib.genAttrs (nixFiles ./vm-tests/generated) (
          test:
          import (./vm-tests/generated + "/${test}.nix") {
            inherit nixpkgs;
            pkgs = nixpkgs.legacyPackages.${system};
          }
        )
      );

      packages = forAllSystems (pkgs: {
        default = pkgs.rustPlatform.buildRustPackage {
          pname = "fedigen";
          version = "0.1.0";
          src = ./.;
          cargoLock.lockFile = ./Cargo.lock;
          cargoBuildFlags = [
            "-p"
            "fedigen"
          ];
          # The tests run Nix itself against throwaway stores, which a build sandbox does not allow.
          doCheck = false;
          meta = {
            description = "Generate, prove and test NixOS modules and deployments for Fediversity";
            license = pkgs.lib.licenses.eupl12;
            mainProgram = "fedigen";
          };
        };
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.default ];
          packages = [
            pkgs.busybox
            pkgs.clippy
            pkgs.nix
            pkgs.nixfmt-rfc-style
            pkgs.qemu
            pkgs.rustfmt
          ];
          # Tests that evaluate generated modules with nixpkgs run when this is set.
          FEDIGEN_NIXPKGS = "${nixpkgs}";
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt-rfc-style);
    };
}
