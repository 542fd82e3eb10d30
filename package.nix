# fedigen as a package: the flake's `packages.<system>.default`, and the default of the Garage module's
# `fediversity.garage.provision.package` (modules/garage.nix calls it with the machine's own nixpkgs), so the
# node that runs `fedigen storage apply` builds the same fedigen from the same source with no extra wiring.
{ lib, rustPlatform }:
let
  # What building the crate reads, and nothing else: a checkout's `target/` (gigabytes) stays out of the store,
  # and regenerating deployments, modules or VM tests does not change the source, so fedigen is not rebuilt.
  # Cargo loads every workspace member's manifest and declared targets; `gen` embeds templates/_scaffold.
  kept = [
    "Cargo.toml"
    "Cargo.lock"
    "gen"
    "vm-tests/Cargo.toml"
    "vm-tests/src"
    "vm-tests/tests"
    "templates/_scaffold"
  ];
  relative = path: lib.removePrefix "${toString ./.}/" (toString path);
  isKept =
    path: type:
    let
      rel = relative path;
    in
    builtins.any (
      keep:
      rel == keep || lib.hasPrefix "${keep}/" rel || (type == "directory" && lib.hasPrefix "${rel}/" keep)
    ) kept;
in
rustPlatform.buildRustPackage {
  pname = "fedigen";
  version = "0.1.0";
  src = lib.cleanSourceWith {
    src = lib.cleanSource ./.;
    filter = isKept;
  };
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
