//! How a connection reaches its peer: two byte streams and a way to cut them.
//! A daemon's Unix socket ([`UnixConnector`]) or the stdin and stdout of a
//! command, such as `ssh host nix-daemon --stdio` ([`crate::ssh`]). Nix has
//! this split as `RemoteStore::openConnection` of `UDSRemoteStore` and
//! `SSHStore`.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;

use rix_store::local_store::{Result, StoreError};

use crate::connection::os_error_text;

/// Cuts a transport: the peer sees the end of its input (`Write`), or
/// everything stops (`Both`).
pub trait Control: Send + Sync {
    fn shutdown(&self, how: Shutdown);
}

/// A freshly opened transport.
pub struct Opened {
    pub reader: Box<dyn Read + Send>,
    pub writer: Box<dyn Write + Send>,
    pub control: Arc<dyn Control>,
}

/// Opens transports to one peer, one per connection.
pub trait Connector: Send + Sync {
    fn connect(&self) -> Result<Opened>;
}

impl Control for UnixStream {
    fn shutdown(&self, how: Shutdown) {
        let _ = UnixStream::shutdown(self, how);
    }
}

/// A daemon's Unix socket.
pub struct UnixConnector {
    pub socket: PathBuf,
}

impl Connector for UnixConnector {
    fn connect(&self) -> Result<Opened> {
        let stream = UnixStream::connect(&self.socket).map_err(|e| {
            StoreError::Protocol(format!(
                "cannot connect to socket at '{}': {}",
                self.socket.display(),
                os_error_text(&e)
            ))
        })?;
        let read_half = stream
            .try_clone()
            .map_err(|e| StoreError::Protocol(format!("cannot use the socket: {e}")))?;
        let write_half = stream
            .try_clone()
            .map_err(|e| StoreError::Protocol(format!("cannot use the socket: {e}")))?;
        Ok(Opened {
            reader: Box::new(read_half),
            writer: Box::new(write_half),
            control: Arc::new(stream),
        })
    }
}
