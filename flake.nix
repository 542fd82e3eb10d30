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
    in
    {
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
