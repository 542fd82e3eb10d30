# fedigen as a package: the flake's `packages.<system>.default`, and the default of the Garage module's
# `fediversity.garage.provision.package` (modules/garage.nix calls it with the machine's own nixpkgs), so the
# node that runs `fedigen storage apply` builds the same fedigen from the same source with no extra wiring.
{ lib, rustPlatform }:
rustPlatform.buildRustPackage {
  pname = "fedigen";
  version = "0.1.0";
  src = lib.cleanSource ./.;
  cargoLock.lockFile = ./Cargo.lock;
  cargoBuildFlags = [
    "-p"
    "fedigen"
  ];
  # The tests run Nix itself against throwaway stores, which a build sandbox does not allow.
  doCheck = false;
  meta = {
    description = "Generate, prove and test NixOS modules and deployments for Fediversity";
    license = lib.licenses.eupl12;
    mainProgram = "fedigen";
  };
}
