//! Importing the option declarations of an existing NixOS module into a manifest skeleton (in progress).
