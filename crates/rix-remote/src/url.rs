//! Store URLs that mean a daemon, and Nix's `auto` rule. Mirrors
//! `UDSRemoteStoreConfig` (`uds-remote-store.cc`), `settings.nixDaemonSocketFile`
//! (`globals.cc`) and the `auto` case of `openStore` (`store-api.cc`).
//!
//! - `daemon`: the daemon at [`default_socket_path`];
//! - `unix:///path/to/socket`: the daemon at that socket (`unix://` alone: the
//!   default socket).
//!
//! Parameters (`?key=value&...`) are Nix's store settings: `store` names the
//! store directory the daemon uses (paths travel in full, so the client must
//! print and parse them with the daemon's directory; the protocol never says
//! it). The other settings Nix knows for this store type change nothing in
//! the client and are ignored; a setting Nix does not know is ignored with
//! Nix's warning, `unknown setting 'NAME'`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rix_formats::store_path::StoreDir;
use rix_store::layout::{parse_query, percent_decode};
use rix_store::local_store::StoreError;

/// Nix's state directory: `NIX_STATE_DIR`, or `/nix/var/nix`.
pub fn default_state_dir() -> PathBuf {
    std::env::var_os("NIX_STATE_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/nix/var/nix"))
}

/// The daemon's socket as Nix finds it: `NIX_DAEMON_SOCKET_PATH` when set and
/// not empty, else `<state dir>/daemon-socket/socket`.
pub fn default_socket_path() -> PathBuf {
    std::env::var_os("NIX_DAEMON_SOCKET_PATH")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| default_state_dir().join("daemon-socket/socket"))
}

/// Nix's store directory: `NIX_STORE_DIR` (or the older `NIX_STORE`), else
/// `/nix/store`.
pub fn default_store_dir() -> Result<StoreDir, StoreError> {
    let dir = ["NIX_STORE_DIR", "NIX_STORE"]
        .iter()
        .filter_map(std::env::var_os)
        .find(|v| !v.is_empty())
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/nix/store".to_owned());
    Ok(StoreDir::new(dir)?)
}

/// Store settings Nix accepts for a `unix://` store (`StoreConfig`,
/// `LocalFSStoreConfig`, `RemoteStoreConfig`); `store` is the one the client uses.
const KNOWN_SETTINGS: &[&str] = &[
    "store",
    "path-info-cache-size",
    "trusted",
    "priority",
    "want-mass-query",
    "system-features",
    "root",
    "state",
    "log",
    "real",
    "max-connections",
    "max-connection-age",
];

/// A parsed daemon store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonUrl {
    /// The daemon's socket.
    pub socket: PathBuf,
    /// The store directory paths are printed and parsed with.
    pub store_dir: StoreDir,
    /// The URL as Nix prints it: `daemon` for the default socket, else
    /// `unix://<socket>`.
    pub display: String,
    /// Every parameter as given.
    pub params: BTreeMap<String, String>,
    /// Warnings Nix would print for these parameters (`unknown setting 'foo'`).
    pub warnings: Vec<String>,
}

impl DaemonUrl {
    /// Parses `daemon[?...]` or `unix://[path][?...]`; `Ok(None)` for any other
    /// URL (not a daemon's).
    pub fn parse(url: &str) -> Result<Option<DaemonUrl>, StoreError> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let socket = if base == "daemon" {
            default_socket_path()
        } else if let Some(path) = base.strip_prefix("unix://") {
            if path.is_empty() {
                default_socket_path()
            } else {
                let path = percent_decode(path);
                if !path.starts_with('/') {
                    return Err(StoreError::Protocol(format!(
                        "store URL '{url}': the socket path '{path}' is not absolute"
                    )));
                }
                PathBuf::from(path)
            }
        } else {
            return Ok(None);
        };
        let params = parse_query(query);
        let mut warnings = Vec::new();
        for key in params.keys() {
            if !KNOWN_SETTINGS.contains(&key.as_str()) {
                warnings.push(format!("unknown setting '{key}'"));
            }
        }
        let store_dir = match params.get("store") {
            Some(dir) => StoreDir::new(dir.clone())?,
            None => default_store_dir()?,
        };
        let display = if socket == default_socket_path() {
            "daemon".to_owned()
        } else {
            format!("unix://{}", socket.display())
        };
        Ok(Some(DaemonUrl {
            socket,
            store_dir,
            display,
            params,
            warnings,
        }))
    }
}

/// What Nix's `auto` store is on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoStore {
    /// The local store: its state directory is readable and writable by this
    /// user, or there is no daemon socket.
    Local,
    /// The daemon at this socket.
    Daemon(PathBuf),
}

/// Nix's `auto` rule: the local store when `state_dir` is readable and
/// writable by this user (`access(R_OK | W_OK)`), else the daemon when its
/// socket exists, else the local store (whose opening then reports what is
/// wrong). `state_dir` is the `state` parameter or [`default_state_dir`];
/// `socket` is normally [`default_socket_path`]. (Nix on Linux also falls back
/// to a chroot store in `~/.local/share/nix/root` when the state directory does
/// not exist; that choice is the caller's.)
pub fn auto_store(state_dir: &Path, socket: &Path) -> AutoStore {
    use nix::unistd::{access, AccessFlags};
    if access(state_dir, AccessFlags::R_OK | AccessFlags::W_OK).is_ok() {
        AutoStore::Local
    } else if socket.symlink_metadata().is_ok() {
        AutoStore::Daemon(socket.to_path_buf())
    } else {
        AutoStore::Local
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_urls() {
        let u = DaemonUrl::parse("unix:///tmp/x/sock?store=/tmp/x/store")
            .unwrap()
            .unwrap();
        assert_eq!(u.socket, PathBuf::from("/tmp/x/sock"));
        assert_eq!(u.store_dir.as_str(), "/tmp/x/store");
        assert_eq!(u.display, "unix:///tmp/x/sock");
        assert!(u.warnings.is_empty());

        let u = DaemonUrl::parse("unix:///s?foo=bar&max-connections=4")
            .unwrap()
            .unwrap();
        assert_eq!(u.warnings, vec!["unknown setting 'foo'".to_owned()]);

        let u = DaemonUrl::parse("unix:///a%20b").unwrap().unwrap();
        assert_eq!(u.socket, PathBuf::from("/a b"));

        assert!(DaemonUrl::parse("local").unwrap().is_none());
        assert!(DaemonUrl::parse("/some/root").unwrap().is_none());
        assert!(DaemonUrl::parse("ssh://host").unwrap().is_none());
        assert!(DaemonUrl::parse("unix://relative").is_err());
        assert!(DaemonUrl::parse("daemon?store=relative").is_err());
    }

    #[test]
    fn daemon_url_uses_the_default_socket() {
        let u = DaemonUrl::parse("daemon").unwrap().unwrap();
        assert_eq!(u.socket, default_socket_path());
        assert_eq!(u.display, "daemon");
        let u = DaemonUrl::parse("unix://").unwrap().unwrap();
        assert_eq!(u.socket, default_socket_path());
        assert_eq!(u.display, "daemon");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn auto_rule() {
        let tmp = tempfile::tempdir().unwrap();
        let socket = tmp.path().join("socket");
        let missing_state = tmp.path().join("no-such-state");
        // A writable state directory: local, whatever the socket.
        assert_eq!(auto_store(tmp.path(), &socket), AutoStore::Local);
        // Not accessible and no socket: local.
        assert_eq!(auto_store(&missing_state, &socket), AutoStore::Local);
        // Not accessible, and the socket is there: the daemon.
        std::fs::write(&socket, b"").unwrap();
        assert_eq!(
            auto_store(&missing_state, &socket),
            AutoStore::Daemon(socket.clone())
        );
    }
}
