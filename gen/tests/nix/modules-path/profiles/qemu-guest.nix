# A stand-in for nixpkgs' nixos/modules/profiles/qemu-guest.nix in eval-deployments.nix: imported, defines nothing.
{ }
