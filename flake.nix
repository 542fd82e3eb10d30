{
  description = "fedigen: generate, prove and test NixOS modules and deployments for the Fediversity project";

  inputs = {
    # A supported NixOS release (26.05 "Yarara", supported until the end of December 2026); new machines start
    # with its `system.stateVersion`.
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
    # NixOps4 and its NixOS component, for the `nixops4` output (README, "Deploying with NixOps4"). There is no
    # flake.lock in the repository yet: `nix flake lock` writes it on first use.
    nixops4.url = "github:nixops4/nixops4";
    nixops4.inputs.nixpkgs.follows = "nixpkgs";
    nixops4-nixos.url = "github:nixops4/nixops4-nixos";
    nixops4-nixos.inputs.nixpkgs.follows = "nixpkgs";
    # sops-nix, for a specification whose secrets come through it (`[provider.secrets] backend = "sops"`): the
    # generated deployments/inputs.nix then lists its NixOS module for every machine (README, "Placing secrets").
    sops-nix.url = "github:Mic92/sops-nix";
    sops-nix.inputs.nixpkgs.follows = "nixpkgs";
  };

  outputs =
    inputs@{ self, nixpkgs, ... }:
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
      # `system`: each machine sets nixpkgs.hostPlatform, and NixOps4 evaluates it the same way. Beside its own
      # module, each imports the modules of the flake's inputs the specification needs (deployments/inputs.nix,
      # generated: sops-nix's when secrets come through it), the same list the NixOps4 members import.
      nixosConfigurations = builtins.mapAttrs (
        name: module:
        nixpkgs.lib.nixosSystem {
          modules = [ module ] ++ import ./deployments/inputs.nix inputs;
        }
      ) (import ./deployments);

      # The NixOps4 deployment: `nixops4 apply` (every machine) or `nixops4 apply <machine>`. The deployment
      # module takes the flake's inputs as a module argument, passed here.
      nixops4 = inputs.nixops4.lib.mkRoot {
        specialArgs = { inherit inputs; };
        modules = [ ./deployments/nixops4.nix ];
      };

      # The generated NixOS VM tests (`nix flake check`, or `cargo test -p vm-tests` for the harness), and
      # fedigen itself, which must build with the release's Rust.
      checks = nixpkgs.lib.genAttrs [ "x86_64-linux" ] (
        system:
        nixpkgs.lib.genAttrs (nixFiles ./vm-tests/generated) (
          test:
          import (./vm-tests/generated + "/${test}.nix") {
            inherit nixpkgs;
            pkgs = nixpkgs.legacyPackages.${system};
          }
        )
        // {
          fedigen = self.packages.${system}.default;
        }
      );

      packages = forAllSystems (pkgs: {
        # package.nix: also what the Garage module builds for `fedigen storage apply` (one definition).
        default = pkgs.callPackage ./package.nix { };
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
