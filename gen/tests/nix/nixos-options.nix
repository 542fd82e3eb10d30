# The NixOS option trees the generated modules and machines are evaluated against with `lib.evalModules`:
# the real upstream module wherever the nixpkgs checkout (`nixpkgs`, full or partial) has its file, so option
# names, types, defaults and assertions are upstream's; a declared stand-in only where the file is missing.
#
# Stand-ins are declared by name, never as one free-form `services` (or `boot`, …) tree: a definition of an
# option nobody declares — `services.ngnix` — fails here as it fails in NixOS. A stand-in is free-form below
# its name (`services.nginx.<anything>`), because what nginx, PostgreSQL or systemd accept is not checked here.
#
# Returns `{ modules; modulesPath; pkgs; upstream; }`: the modules to evaluate with, the `modulesPath` the
# runtime backend's base imports from (nixpkgs' own when the checkout has every file it names, else stand-ins
# that define nothing), the stand-in `pkgs`, and which upstream files were loaded (for the test's report).
{
  nixpkgs,
  # Whether to load the upstream modules the checkout has; without them every tree is a stand-in (for
  # evaluations that read whole option trees back as data, which upstream's package defaults would break).
  upstream ? true,
}:
let
  lib = import (nixpkgs + "/lib");
  have = file: upstream && builtins.pathExists (nixpkgs + "/${file}");
  # Lazy, as NixOS's own option trees are: a value nothing reads (a package default) is never evaluated.
  freeform = lib.mkOption {
    type = lib.types.lazyAttrsOf lib.types.anything;
    default = { };
  };
  # Option path → the nixpkgs file that declares it.
  applications = {
    garage = "nixos/modules/services/web-servers/garage.nix";
    mastodon = "nixos/modules/services/web-apps/mastodon.nix";
    matrix-synapse = "nixos/modules/services/matrix/synapse.nix";
    peertube = "nixos/modules/services/web-apps/peertube.nix";
    pixelfed = "nixos/modules/services/web-apps/pixelfed.nix";
  };
  # What `deployments/base.nix` imports through `modulesPath`, and what those files import in turn.
  baseFiles = [
    "nixos/modules/virtualisation/proxmox-image.nix"
    "nixos/modules/virtualisation/disk-size-option.nix"
    "nixos/modules/image/file-options.nix"
    "nixos/modules/profiles/qemu-guest.nix"
  ];
  realBase = builtins.all have baseFiles;
  loaded = lib.filterAttrs (_: have) applications;
  # Services no file of the checkout declares: the generated modules' and the upstream modules' neighbours.
  serviceStandIns = [
    "cloud-init"
    "postfix"
    "elasticsearch"
    "mysql"
    "openssh"
    "opensearch"
    "phpfpm"
    "postgresql"
    "qemuGuest"
    "sshd"
  ]
  ++ builtins.attrNames (lib.filterAttrs (_: file: !have file) applications);
  standIns =
    { lib, ... }:
    {
      options = {
        services = lib.genAttrs serviceStandIns (_: freeform) // {
          # What upstream modules read of nginx, with nginx.nix's defaults.
          nginx = lib.mkOption {
            type = lib.types.submodule {
              freeformType = lib.types.lazyAttrsOf lib.types.anything;
              options.user = lib.mkOption {
                type = lib.types.str;
                default = "nginx";
              };
              options.group = lib.mkOption {
                type = lib.types.str;
                default = "nginx";
              };
            };
            default = { };
          };
          # What upstream modules read of a Redis server, with redis.nix's default.
          redis = lib.mkOption {
            type = lib.types.submodule {
              freeformType = lib.types.lazyAttrsOf lib.types.anything;
              options.servers = lib.mkOption {
                type = lib.types.attrsOf (
                  lib.types.submodule (
                    { name, ... }:
                    {
                      freeformType = lib.types.lazyAttrsOf lib.types.anything;
                      options.unixSocket = lib.mkOption {
                        type = lib.types.nullOr lib.types.str;
                        default = "/run/redis-${name}/redis.sock";
                      };
                    }
                  )
                );
                default = { };
              };
            };
            default = { };
          };
        };
        # As NixOS declares them (nixos/modules/misc/assertions.nix).
        assertions = lib.mkOption {
          type = lib.types.listOf lib.types.unspecified;
          internal = true;
          default = [ ];
        };
        warnings = lib.mkOption {
          type = lib.types.listOf lib.types.str;
          internal = true;
          default = [ ];
        };
        # Lists merge by concatenation in NixOS; several applications open ports.
        networking = lib.mkOption {
          type = lib.types.submodule {
            freeformType = lib.types.attrsOf lib.types.anything;
            options.firewall.allowedTCPPorts = lib.mkOption {
              type = lib.types.listOf lib.types.port;
              default = [ ];
            };
          };
          default = { };
        };
      }
      // {
        # What upstream modules read of the boot loader, with NixOS's defaults (grub.nix, systemd-boot.nix).
        boot = lib.mkOption {
          type = lib.types.submodule {
            freeformType = lib.types.lazyAttrsOf lib.types.anything;
            options.loader = {
              grub.enable = lib.mkOption {
                type = lib.types.bool;
                default = true;
              };
              systemd-boot.enable = lib.mkOption {
                type = lib.types.bool;
                default = false;
              };
            };
          };
          default = { };
        };
      }
      // lib.genAttrs [
        "documentation"
        "environment"
        "fileSystems"
        "hardware"
        "meta"
        "nixpkgs"
        "security"
        "system"
        "systemd"
        "users"
      ] (_: freeform)
      # proxmox-image.nix and disk-size-option.nix declare parts of these when the checkout has them.
      // lib.optionalAttrs (!realBase) {
        image = freeform;
        proxmox = freeform;
        virtualisation = freeform;
      }
      // lib.optionalAttrs realBase {
        virtualisation = lib.genAttrs [
          "vmVariant"
          "memorySize"
          "cores"
        ] (_: freeform);
      };
      config._module.args.pkgs = pkgs;
    };
  # Packages are store paths of nothing: nothing here builds, and what reads a package's contents is not
  # evaluated.
  storePath = name: "/nix/store/00000000000000000000000000000000-${name}";
  # A package as modules use one: a derivation by its attributes, overridable, with no plugins.
  package =
    name:
    let
      self = {
        type = "derivation";
        inherit name;
        outPath = storePath name;
        override = _: self;
        overrideAttrs = _: self;
        # Synapse's plugins (pkgs/servers/matrix-synapse/plugins), as the generated modules name them.
        plugins = {
          matrix-synapse-s3-storage-provider = {
            type = "derivation";
            name = "matrix-synapse-s3-storage-provider";
            outPath = storePath "matrix-synapse-s3-storage-provider";
          };
        };
      };
    in
    self;
  pkgs =
    lib.genAttrs [
      "garage"
      "garage_2"
      "php83"
      "pixelfed"
      "peertube"
      "matrix-synapse"
      "mastodon"
      "curl"
      "jq"
    ] package
    // {
      writeText = name: text: storePath name;
      formats =
        if have "pkgs/pkgs-lib/formats.nix" then
          import (nixpkgs + "/pkgs/pkgs-lib/formats.nix") { inherit lib pkgs; }
        else
          lib.genAttrs [ "json" "yaml" "toml" "ini" "keyValue" ] (
            _: _: {
              type = lib.types.attrsOf lib.types.anything;
              generate = name: value: "/nix/store/00000000000000000000000000000000-${name}";
            }
          );
    };
in
{
  modules = [ standIns ]
  ++ map (file: nixpkgs + "/${file}") (builtins.attrValues loaded);
  modulesPath =
    if realBase then
      builtins.toString (nixpkgs + "/nixos/modules")
    else
      builtins.toString ./modules-path;
  inherit pkgs;
  upstream = builtins.attrNames loaded ++ lib.optional realBase "proxmox-image";
}
