//! `ssh://[user@]host?…` (the serve protocol, [`ServeStore`]) and
//! `ssh-ng://[user@]host?…` (the worker protocol over `nix-daemon --stdio`,
//! a [`DaemonStore`] whose connections are commands) store URLs, with Nix's
//! parameters: `remote-program`, `remote-store`, `ssh-key`,
//! `base64-ssh-public-host-key`, `compress`, `max-connections`, `store`.
//! Mirrors `LegacySSHStoreConfig`, `SSHStoreConfig` and
//! `CommonSSHStoreConfig`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use rix_formats::StoreDir;
use rix_store::local_store::{Result, StoreError};
use rix_store::store_api::Store;

use crate::logger::DaemonLogger;
use crate::serve_store::{ServeStore, ServeStoreConfig};
use crate::ssh::{CommandConnector, SshMaster};
use crate::store::{DaemonOptions, DaemonStore};

/// Which protocol an SSH store URL speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshScheme {
    /// `ssh://`: `nix-store --serve --write`.
    Serve,
    /// `ssh-ng://`: `nix-daemon --stdio`.
    Daemon,
}

/// A parsed SSH store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshUrl {
    pub scheme: SshScheme,
    /// `[user@]host`.
    pub host: String,
    pub params: BTreeMap<String, String>,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(n) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(n);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl SshUrl {
    /// `None` when `url` is not an SSH store's.
    pub fn parse(url: &str) -> Option<SshUrl> {
        let (scheme, rest) = if let Some(r) = url.strip_prefix("ssh://") {
            (SshScheme::Serve, r)
        } else if let Some(r) = url.strip_prefix("ssh-ng://") {
            (SshScheme::Daemon, r)
        } else {
            return None;
        };
        let (host, query) = rest.split_once('?').unwrap_or((rest, ""));
        let params = query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        Some(SshUrl {
            scheme,
            host: percent_decode(host.trim_end_matches('/')),
            params,
        })
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// `remote-program`, split on whitespace as Nix's `Strings` setting.
    pub fn remote_program(&self) -> Vec<String> {
        let default = match self.scheme {
            SshScheme::Serve => "nix-store",
            SshScheme::Daemon => "nix-daemon",
        };
        self.param("remote-program")
            .unwrap_or(default)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    /// The store directory of the remote store (`store`, default `/nix/store`).
    pub fn store_dir(&self) -> Result<StoreDir> {
        match self.param("store") {
            Some(d) => Ok(StoreDir::new(d)?),
            None => crate::url::default_store_dir(),
        }
    }

    fn master(&self) -> Result<SshMaster> {
        SshMaster::new(
            &self.host,
            self.param("ssh-key"),
            self.param("base64-ssh-public-host-key"),
            self.param("compress") == Some("true"),
        )
    }

    /// The printed URL (without parameters), as Nix's `getUri`.
    pub fn display(&self) -> String {
        match self.scheme {
            SshScheme::Serve => format!("ssh://{}", self.host),
            SshScheme::Daemon => format!("ssh-ng://{}", self.host),
        }
    }
}

/// Opens the SSH store `url`, or `None` when `url` is not one. Connects at
/// once.
pub fn open_ssh_store(
    url: &str,
    options: DaemonOptions,
    logger: Arc<dyn DaemonLogger>,
) -> Result<Option<Arc<dyn Store>>> {
    let Some(parsed) = SshUrl::parse(url) else {
        return Ok(None);
    };
    let store_dir = parsed.store_dir()?;
    let remote_store = parsed
        .param("remote-store")
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    match parsed.scheme {
        SshScheme::Serve => {
            let config = ServeStoreConfig {
                remote_program: parsed.remote_program(),
                remote_store,
                ssh_key: parsed.param("ssh-key").map(str::to_owned),
                host_key: parsed
                    .param("base64-ssh-public-host-key")
                    .map(str::to_owned),
                compress: parsed.param("compress") == Some("true"),
                max_connections: parsed
                    .param("max-connections")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1),
            };
            Ok(Some(Arc::new(ServeStore::open(
                &parsed.host,
                config,
                store_dir,
            )?)))
        }
        SshScheme::Daemon => Ok(Some(Arc::new(open_ssh_ng(&parsed, options, logger)?))),
    }
}

/// An `ssh-ng://` store: the daemon protocol with `<remote-program> --stdio
/// [--store S]` on the host.
pub fn open_ssh_ng(
    url: &SshUrl,
    options: DaemonOptions,
    logger: Arc<dyn DaemonLogger>,
) -> Result<DaemonStore> {
    if url.scheme != SshScheme::Daemon {
        return Err(StoreError::Protocol(format!(
            "'{}' is not an ssh-ng:// store",
            url.display()
        )));
    }
    let mut command = url.remote_program();
    command.push("--stdio".to_owned());
    if let Some(s) = url.param("remote-store").filter(|s| !s.is_empty()) {
        command.extend(["--store".to_owned(), s.to_owned()]);
    }
    let connector = Arc::new(CommandConnector {
        master: url.master()?,
        command,
    });
    DaemonStore::open_with(
        connector,
        PathBuf::new(),
        url.store_dir()?,
        url.display(),
        options,
        logger,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = SshUrl::parse(
            "ssh-ng://me@host?remote-store=local%3Froot%3D/r&remote-program=rix%20daemon",
        )
        .unwrap();
        assert_eq!(u.scheme, SshScheme::Daemon);
        assert_eq!(u.host, "me@host");
        assert_eq!(u.param("remote-store"), Some("local?root=/r"));
        assert_eq!(u.remote_program(), ["rix", "daemon"]);
        let u = SshUrl::parse("ssh://host").unwrap();
        assert_eq!(u.scheme, SshScheme::Serve);
        assert_eq!(u.remote_program(), ["nix-store"]);
        assert!(SshUrl::parse("daemon").is_none());
    }
}
