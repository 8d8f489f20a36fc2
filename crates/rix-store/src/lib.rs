//! rix's store layer.
