# TEMPORARY stand-in, for the branch that wires the applications to object storage before the branch that declares
# the options it reads is merged: `fediversity.s3.publicUrl` and `fediversity.<app>.objectStorage.{buckets,keyFile}`
# exactly as that branch declares them (issue #14, Build 2 and 4). Declares nothing once `modules/fediversity.nix`
# declares `publicUrl` (the options are then the generated ones); delete this file after the merge.
{ lib, ... }:
let
  declared = lib.hasInfix "publicUrl" (builtins.readFile ../../../modules/fediversity.nix);
  objectStorage = {
    buckets = lib.mkOption {
      type = lib.types.attrsOf lib.types.str;
      default = { };
      description = "Bucket kind → bucket name.";
    };
    keyFile = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      description = "An environment file with AWS_ACCESS_KEY_ID= and AWS_SECRET_ACCESS_KEY=.";
    };
  };
in
{
  options = lib.optionalAttrs (!declared) {
    fediversity = {
      s3.publicUrl = lib.mkOption {
        type = lib.types.str;
        default = "https://media.provider.example";
        description = "Garage's web endpoint: bucket b's object k is public at \${publicUrl}/\${b}/\${k}.";
      };
    }
    // lib.genAttrs [ "mastodon" "pixelfed" "peertube" "matrix-synapse" ] (_: {
      inherit objectStorage;
    });
  };
}
