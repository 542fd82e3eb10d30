# A stand-in for nixpkgs' nixos/modules/virtualisation/proxmox-image.nix in eval-deployments.nix: imported, defines nothing.
{ }
