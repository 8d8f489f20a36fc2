//! narinfo.
