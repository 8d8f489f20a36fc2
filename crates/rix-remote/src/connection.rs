//! One connection to a daemon: the client's handshake, `SetOptions`, the
//! stderr stream that precedes every reply, and framed uploads. Mirrors
//! `RemoteStore::initConnection` / `setOptions` (`remote-store.cc`) and
//! `BasicClientConnection` (`worker-protocol-connection.cc`).
//!
//! A connection is *in sync* when nothing of a request or its reply is left
//! on the wire. Every operation marks it out of sync before it writes and in
//! sync once the whole reply is read (or the daemon answered with
//! `STDERR_ERROR`, after which nothing follows). The pool keeps only
//! connections in sync: a connection whose operation stopped half-way (bytes
//! the client did not expect, a closed socket, a local error while uploading)
//! is dropped, never reused.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::Shutdown;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rix_formats::worker_protocol::handshake::{
    write_client_magic, write_raw_version, ClientHandshakeInfo, ClientOptions, Features,
    ServerHello, TrustedFlag,
};
use rix_formats::worker_protocol::wire::{read_strings, write_bytes, write_strings};
use rix_formats::worker_protocol::{
    ClientSettings, Ctx, FramedWriter, Limits, ProtocolVersion, Request, Serialise, StderrMsg,
    WireError,
};
use rix_formats::StoreDir;
use rix_store::local_store::{Result, StoreError};

use crate::logger::{decode_activity, decode_result, DaemonLogger};
use crate::transport::{Connector, Control};

/// The most bytes answered to one `STDERR_READ` (the daemon asks for what it
/// wants; Nix's client allocates the whole length, rix bounds it).
const MAX_READ_REPLY: u64 = 1 << 20;

/// How long the stderr reader waits for an upload to finish after the daemon
/// reported an error, before it cuts the connection.
const DRAIN_WAIT: Duration = Duration::from_secs(10);

/// Nix's words for a daemon that went away in the middle of a conversation.
pub(crate) const DISCONNECTED: &str = "Nix daemon disconnected unexpectedly (maybe it crashed?)";

/// An open, initialised connection.
pub struct Connection {
    pub(crate) reader: BufReader<Box<dyn Read + Send>>,
    pub(crate) writer: BufWriter<Box<dyn Write + Send>>,
    /// Cuts the transport (an upload that failed half-way).
    pub(crate) control: Arc<dyn Control>,
    pub(crate) ctx: Ctx,
    /// The daemon's Nix version (`nix-daemon --version`'s number).
    pub daemon_nix_version: String,
    /// Whether the daemon trusts us (sent from 1.35 on).
    pub trusted: Option<TrustedFlag>,
    /// The features both sides named (1.38 on).
    pub features: Features,
    pub(crate) in_sync: bool,
}

/// Turns a codec error into the protocol error of this connection.
pub(crate) fn wire_error(e: WireError) -> StoreError {
    if let WireError::Io { source, .. } = e.root() {
        if source.kind() == io::ErrorKind::UnexpectedEof {
            return StoreError::Protocol(DISCONNECTED.to_owned());
        }
    }
    StoreError::Protocol(format!("protocol error talking to the Nix daemon: {e}"))
}

/// Turns a write error into the protocol error of this connection.
pub(crate) fn io_error(e: io::Error) -> StoreError {
    match e.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
            StoreError::Protocol(DISCONNECTED.to_owned())
        }
        _ => StoreError::Protocol(format!("talking to the Nix daemon: {e}")),
    }
}

/// An OS error as Nix words it (`strerror`, without Rust's "(os error N)").
pub(crate) fn os_error_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_owned(),
        None => e.to_string(),
    }
}

/// Removes ANSI escape sequences (Nix colours the arguments of its messages).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, then one final byte.
                for c in chars.by_ref() {
                    if ('\x40'..='\x7e').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
            continue;
        }
        out.push(c);
    }
    out
}

impl Connection {
    /// Connects through `connector` (the store `url` in messages) and runs the handshake (offering at most
    /// `max_version`), then `SetOptions` with `settings`.
    pub fn open(
        connector: &dyn Connector,
        url: &str,
        store_dir: &StoreDir,
        max_version: ProtocolVersion,
        settings: &ClientSettings,
        logger: &dyn DaemonLogger,
    ) -> Result<Connection> {
        let opened = connector.connect()?;
        let mut conn = Connection {
            reader: BufReader::with_capacity(64 << 10, opened.reader),
            writer: BufWriter::with_capacity(64 << 10, opened.writer),
            control: opened.control,
            ctx: Ctx {
                version: max_version,
                store_dir: store_dir.clone(),
                limits: Limits::default(),
            },
            daemon_nix_version: String::new(),
            trusted: None,
            features: Features::new(),
            in_sync: false,
        };
        conn.handshake(max_version, logger).map_err(|e| {
            StoreError::Protocol(format!(
                "cannot open connection to remote store '{url}': {e}"
            ))
        })?;
        conn.set_options(settings, logger)?;
        Ok(conn)
    }

    /// The negotiated protocol version.
    pub fn version(&self) -> ProtocolVersion {
        self.ctx.version
    }

    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    fn handshake(&mut self, ours: ProtocolVersion, logger: &dyn DaemonLogger) -> Result<()> {
        // Magic and version together, as Nix 2.26's client does (a 2.8
        // daemon reads the version only after it has answered).
        write_client_magic(&mut self.writer).map_err(io_error)?;
        write_raw_version(&mut self.writer, ours.raw()).map_err(io_error)?;
        self.writer.flush().map_err(io_error)?;
        let hello = ServerHello::read(&mut self.reader).map_err(wire_error)?;
        self.ctx.version = ProtocolVersion::negotiate(ours, hello.version).map_err(|_| {
            StoreError::Protocol(format!(
                "Nix daemon protocol version {} not supported (rix speaks 1.34 to 1.38)",
                hello.version
            ))
        })?;
        if self.ctx.version.has_feature_exchange() {
            // rix, like Nix 2.26, knows no features yet.
            let ours = Features::new();
            write_strings(&mut self.writer, ours.iter()).map_err(io_error)?;
            self.writer.flush().map_err(io_error)?;
            let theirs: Features = read_strings(&mut self.reader, &self.ctx.limits, "features")
                .map_err(wire_error)?
                .into_iter()
                .collect();
            self.features = ours.intersection(&theirs).cloned().collect();
        }
        ClientOptions::default()
            .write(&mut self.writer, &self.ctx)
            .map_err(io_error)?;
        self.writer.flush().map_err(io_error)?;
        let info = ClientHandshakeInfo::read(&mut self.reader, &self.ctx).map_err(wire_error)?;
        self.daemon_nix_version = info.daemon_nix_version;
        self.trusted = info.remote_trusts_us;
        self.process_stderr(logger, None, None)?;
        self.in_sync = true;
        Ok(())
    }

    /// Sends `SetOptions`.
    pub fn set_options(
        &mut self,
        settings: &ClientSettings,
        logger: &dyn DaemonLogger,
    ) -> Result<()> {
        self.send(&Request::SetOptions(settings.clone()))?;
        self.process_stderr(logger, None, None)?;
        self.in_sync = true;
        Ok(())
    }

    /// Writes a request and flushes it; the connection is out of sync until
    /// its reply has been read.
    pub fn send(&mut self, request: &Request) -> Result<()> {
        self.in_sync = false;
        request
            .write(&mut self.writer, &self.ctx)
            .map_err(io_error)?;
        self.writer.flush().map_err(io_error)
    }

    /// Reads the stderr stream up to `STDERR_LAST`. `STDERR_ERROR` becomes
    /// [`StoreError::Remote`] and leaves the connection in sync (nothing
    /// follows it); `sink` takes `STDERR_WRITE` data, `source` answers
    /// `STDERR_READ`.
    pub fn process_stderr(
        &mut self,
        logger: &dyn DaemonLogger,
        sink: Option<&mut dyn Write>,
        source: Option<&mut dyn Read>,
    ) -> Result<()> {
        let r = read_stderr(
            &mut self.reader,
            Some(&mut self.writer),
            &self.ctx,
            logger,
            sink,
            source,
        );
        if matches!(r, Err(StoreError::Remote { .. })) {
            self.in_sync = true;
        }
        r
    }

    /// Reads the reply once the stderr stream ended.
    pub fn read<T: Serialise>(&mut self) -> Result<T> {
        T::read(&mut self.reader, &self.ctx).map_err(wire_error)
    }

    /// Sends `request`, then its framed data written by `data`, while another
    /// thread reads the daemon's stderr stream (so neither side waits on the
    /// other however much either writes). Returns once the stream ended with
    /// `STDERR_LAST`; the reply, if any, is the caller's to read.
    ///
    /// When `data` fails, the upload is cut (the write side is shut down, so
    /// the daemon sees the end of its input and gives up) and the connection
    /// is dropped: the daemon must never take a truncated upload for a whole
    /// one.
    pub fn upload(
        &mut self,
        request: &Request,
        logger: &dyn DaemonLogger,
        data: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
    ) -> Result<()> {
        self.send(request)?;
        let writer_done = (Mutex::new(false), Condvar::new());
        let stream = self.control.clone();
        let Connection {
            reader,
            writer,
            ctx,
            ..
        } = self;
        let (written, read) = std::thread::scope(|s| {
            let stream_r = &stream;
            let writer_done = &writer_done;
            let ctx = &*ctx;
            let reading = s.spawn(move || {
                let r = read_stderr(reader, None, ctx, logger, None, None);
                if r.is_err() {
                    // A daemon that fails drains the rest of the upload before
                    // it reports (Nix's `FramedSource` destructor), so the
                    // writer is about to finish. One that stopped reading
                    // would leave it blocked: then the socket is shut down.
                    let (lock, cv) = writer_done;
                    let done = lock.lock().unwrap_or_else(|e| e.into_inner());
                    let (done, _) = cv
                        .wait_timeout_while(done, DRAIN_WAIT, |done| !*done)
                        .unwrap_or_else(|e| e.into_inner());
                    if !*done {
                        stream_r.shutdown(Shutdown::Both);
                    }
                }
                r
            });
            let written = (|| {
                let mut framed = FramedWriter::new(&mut *writer);
                data(&mut framed)?;
                framed.finish().map_err(io_error)?;
                Ok(())
            })();
            {
                let (lock, cv) = &writer_done;
                *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
                cv.notify_all();
            }
            if written.is_err() {
                // Never end the frames after a failure: the daemon must see
                // the end of its input instead.
                stream.shutdown(Shutdown::Write);
            }
            let read = reading
                .join()
                .unwrap_or_else(|_| Err(StoreError::Protocol("stderr reader panicked".into())));
            (written, read)
        });
        match (written, read) {
            (Ok(()), Ok(())) => Ok(()),
            (Ok(()), Err(e @ StoreError::Remote { .. })) => {
                // The daemon took every frame (it drains its input before it
                // reports), so the connection is in step.
                self.in_sync = true;
                Err(e)
            }
            // The daemon's error explains a failed write to it better than
            // EPIPE does.
            (Err(StoreError::Protocol(_)), Err(e @ StoreError::Remote { .. })) => Err(e),
            // A local failure (reading the source) is the cause of whatever
            // the daemon then says about its input ending early.
            (Err(e), _) | (Ok(()), Err(e)) => Err(e),
        }
    }

    /// Writes a string answer (used by the legacy `STDERR_READ` exchange).
    #[allow(dead_code)]
    pub(crate) fn write_bytes(&mut self, b: &[u8]) -> Result<()> {
        write_bytes(&mut self.writer, b).map_err(io_error)
    }
}

/// The stderr loop, on borrowed halves so that it can run on its own thread
/// during an upload (then `writer` is `None` and `STDERR_READ` is refused).
fn read_stderr(
    reader: &mut BufReader<Box<dyn Read + Send>>,
    mut writer: Option<&mut BufWriter<Box<dyn Write + Send>>>,
    ctx: &Ctx,
    logger: &dyn DaemonLogger,
    mut sink: Option<&mut dyn Write>,
    mut source: Option<&mut dyn Read>,
) -> Result<()> {
    loop {
        match StderrMsg::read(reader, ctx).map_err(wire_error)? {
            StderrMsg::Last => return Ok(()),
            StderrMsg::Error(e) => {
                let mut message = strip_ansi(&e.msg);
                for trace in &e.traces {
                    message.push_str("\n… ");
                    message.push_str(&strip_ansi(trace));
                }
                return Err(StoreError::Remote {
                    message,
                    exit_status: 1,
                });
            }
            StderrMsg::Next(mut line) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                logger.log(&line);
            }
            StderrMsg::StartActivity(a) => logger.start_activity(&decode_activity(&a)),
            StderrMsg::StopActivity(id) => logger.stop_activity(id),
            StderrMsg::Result(r) => logger.result(r.id, &decode_result(&r)),
            StderrMsg::Write(data) => match sink.as_mut() {
                Some(sink) => sink.write_all(&data).map_err(|e| {
                    StoreError::Protocol(format!("writing what the Nix daemon sent: {e}"))
                })?,
                None => {
                    return Err(StoreError::Protocol(
                        "the Nix daemon sent data (STDERR_WRITE) where none was expected".into(),
                    ))
                }
            },
            StderrMsg::Read(len) => {
                let (Some(source), Some(writer)) = (source.as_mut(), writer.as_mut()) else {
                    return Err(StoreError::Protocol(
                        "the Nix daemon asked for data (STDERR_READ) where none was expected"
                            .into(),
                    ));
                };
                let mut buf = Vec::new();
                source
                    .take(len.min(MAX_READ_REPLY))
                    .read_to_end(&mut buf)
                    .map_err(|e| {
                        StoreError::Protocol(format!("reading data for the daemon: {e}"))
                    })?;
                write_bytes(&mut **writer, &buf).map_err(io_error)?;
                writer.flush().map_err(io_error)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_is_stripped() {
        assert_eq!(
            strip_ansi("path '\x1b[35;1m/nix/store/x\x1b[0m' is not valid"),
            "path '/nix/store/x' is not valid"
        );
        assert_eq!(strip_ansi("plain"), "plain");
        assert_eq!(strip_ansi("cut \x1b["), "cut ");
    }
}
