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
    /// `download-attempts`: tries of a download that fails transiently (5).
    pub download_attempts: u32,
    /// `fsync-store-paths`: flush fetched paths to disk before registering
    /// them (false, as Nix: a fetched input can be fetched again).
    pub fsync_store_paths: bool,
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
            download_attempts: 5,
            fsync_store_paths: false,
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

impl FetchSettings {
    /// The download settings of a configuration (Nix's names): `tarball-ttl`,
    /// `netrc-file`, `download-attempts`, `connect-timeout`; the others keep
    /// their defaults.
    pub fn from_settings(s: &rix_store::settings::Settings) -> FetchSettings {
        let mut f = FetchSettings::default();
        let num = |name: &str| s.get(name).trim().parse::<u64>().ok();
        if let Some(v) = num("tarball-ttl") {
            f.tarball_ttl = v;
        }
        if let Some(v) = num("download-attempts") {
            f.download_attempts = v.clamp(1, u64::from(u32::MAX)) as u32;
        }
        if let Some(v) = num("connect-timeout") {
            f.connect_timeout = v;
        }
        let netrc = s.get("netrc-file");
        if !netrc.is_empty() {
            f.netrc_file = Some(PathBuf::from(netrc));
        }
        let flag = |name: &str, default: bool| s.get_bool(name).unwrap_or(default);
        f.allow_dirty = flag("allow-dirty", f.allow_dirty);
        f.warn_dirty = flag("warn-dirty", f.warn_dirty);
        f.allow_dirty_locks = flag("allow-dirty-locks", f.allow_dirty_locks);
        f.fsync_store_paths = flag("fsync-store-paths", f.fsync_store_paths);
        f
    }
}
