//! The Nix ARchive format.
