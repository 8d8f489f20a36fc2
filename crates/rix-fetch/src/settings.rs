//! The settings fetchers read (Nix's `fetchers::Settings` and the download
//! settings), with Nix's names and defaults.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// `tarball-ttl`: seconds a cached download or ref lookup stays fresh (3600).
    pub tarball_ttl: u64,
    /// `allow-dirty`: whether a dirty Git tree may be fetched (true).
    pub allow_dirty: bool,
    /// `warn-dirty`: whether fetching a dirty Git tree warns (true).
    pub warn_dirty: bool,
    /// `allow-dirty-locks`: a `narHash` alone counts as locked (false).
    pub allow_dirty_locks: bool,
    /// `netrc-file`: credentials for downloads.
    pub netrc_file: Option<PathBuf>,
    /// Where the fetcher cache lives (`$XDG_CACHE_HOME/rix`); `None` keeps it
    /// in memory (tests, or no home directory).
    pub cache_dir: Option<PathBuf>,
    /// `connect-timeout` in seconds (0: the client's default).
    pub connect_timeout: u64,
}

impl Default for FetchSettings {
    fn default() -> Self {
        FetchSettings {
            tarball_ttl: 3600,
            allow_dirty: true,
            warn_dirty: true,
            allow_dirty_locks: false,
            netrc_file: None,
            cache_dir: default_cache_dir(),
            connect_timeout: 0,
        }
    }
}

/// `$XDG_CACHE_HOME/rix`, else `~/.cache/rix`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("rix"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".cache/rix"))
}
