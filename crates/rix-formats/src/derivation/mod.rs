//! Derivations.
