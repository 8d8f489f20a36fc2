//! The stderr channel of a connection. Mirrors `TunnelLogger` in Nix's
//! `daemon.cc`: while an operation works (between [`Tunnel::start_work`] and
//! [`Tunnel::stop_work`]) log lines and activities go to the client as they
//! happen; outside that window they are queued and sent when the next
//! operation starts. The operation ends with `STDERR_LAST` (its reply follows)
//! or `STDERR_ERROR` with Nix's error layout.
//!
//! Builds report through [`Tunnel`]'s [`Observer`]: a build is an activity of
//! type `actBuild` ("building '…'") whose log lines are `resBuildLogLine`
//! results, as Nix's clients display them.

use std::collections::HashMap;
use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rix_build::events::{BuildEvent, Observer};
use rix_formats::worker_protocol::stderr::{activity_type, result_type, verbosity};
use rix_formats::worker_protocol::{Field, RemoteError, StartActivity, StderrMsg};
use rix_formats::StoreDir;

struct State<W: Write> {
    out: BufWriter<W>,
    can_send: bool,
    pending: Vec<StderrMsg>,
    /// A write failed: the client is gone. Nothing more is written.
    broken: bool,
}

/// The writing half of a connection, shared by the request loop and the
/// threads of a build.
pub struct Tunnel<W: Write> {
    state: Mutex<State<W>>,
    store_dir: StoreDir,
    next_activity: AtomicU64,
    builds: Mutex<HashMap<String, u64>>,
    /// The client's verbosity (`SetOptions`): messages above it are not sent.
    verbosity: AtomicU64,
}

impl<W: Write> Tunnel<W> {
    pub fn new(out: W, store_dir: StoreDir) -> Self {
        Tunnel {
            state: Mutex::new(State {
                out: BufWriter::with_capacity(64 << 10, out),
                can_send: false,
                pending: Vec::new(),
                broken: false,
            }),
            store_dir,
            // Nix numbers activities `pid << 32 | n`.
            next_activity: AtomicU64::new((u64::from(std::process::id()) << 32) + 1),
            builds: Mutex::new(HashMap::new()),
            verbosity: AtomicU64::new(verbosity::INFO.into()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<W>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The client's verbosity for what follows.
    pub fn set_verbosity(&self, level: u32) {
        self.verbosity.store(level.into(), Ordering::Relaxed);
    }

    /// Sends or queues one message.
    pub fn send(&self, msg: StderrMsg) {
        let mut st = self.lock();
        if st.broken {
            return;
        }
        if st.can_send {
            let ok = msg.write(&mut st.out).and_then(|()| st.out.flush());
            if ok.is_err() {
                st.broken = true;
            }
        } else {
            st.pending.push(msg);
        }
    }

    /// A log line at `level` (Nix's `log`): sent when the client's verbosity
    /// includes it.
    pub fn log(&self, level: u32, text: &str) {
        if u64::from(level) > self.verbosity.load(Ordering::Relaxed) {
            return;
        }
        self.send(StderrMsg::Next(format!("{text}\n").into_bytes()));
    }

    /// A warning, as Nix's `warn` prints it.
    pub fn warn(&self, text: &str) {
        self.log(verbosity::WARN, &format!("warning: {text}"));
    }

    /// An operation starts: queued messages go out, and from now on messages
    /// are sent as they come.
    pub fn start_work(&self) -> io::Result<()> {
        let mut st = self.lock();
        st.can_send = true;
        let pending = std::mem::take(&mut st.pending);
        if pending.is_empty() {
            return Ok(());
        }
        for msg in pending {
            msg.write(&mut st.out)?;
        }
        st.out.flush()
    }

    /// The operation is over: `STDERR_LAST`, or `STDERR_ERROR` with `error`.
    /// The reply (if any) is written next with [`Tunnel::reply`].
    pub fn stop_work(&self, error: Option<&str>) -> io::Result<()> {
        let mut st = self.lock();
        st.can_send = false;
        if st.broken {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        match error {
            None => StderrMsg::Last.write(&mut st.out),
            Some(msg) => StderrMsg::Error(RemoteError {
                level: verbosity::ERROR,
                msg: msg.to_owned(),
                traces: Vec::new(),
            })
            .write(&mut st.out),
        }
    }

    /// Writes a reply (after [`Tunnel::stop_work`]) and flushes it.
    pub fn reply(&self, f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
        self.reply_then(f, true)
    }

    /// Writes a reply (after [`Tunnel::stop_work`]), flushed unless `flush`
    /// is false: then it goes out with what follows (the next reply, or the
    /// first message of the next operation), at the latest when the
    /// connection ends.
    pub fn reply_then(
        &self,
        f: impl FnOnce(&mut dyn Write) -> io::Result<()>,
        flush: bool,
    ) -> io::Result<()> {
        let mut st = self.lock();
        f(&mut st.out)?;
        if flush {
            st.out.flush()?;
        }
        Ok(())
    }

    /// Writes and flushes raw protocol bytes (the handshake).
    pub fn raw(&self, f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
        self.reply(f)
    }

    /// Sends whatever is buffered.
    pub fn flush(&self) -> io::Result<()> {
        self.lock().out.flush()
    }

    fn activity_id(&self) -> u64 {
        self.next_activity.fetch_add(1, Ordering::Relaxed)
    }
}

impl<W: Write + Send> Observer for Tunnel<W> {
    fn event(&self, event: BuildEvent<'_>) {
        match event {
            BuildEvent::Started { drv, .. } => {
                let printed = self.store_dir.display(drv);
                let id = self.activity_id();
                self.builds
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(printed.clone(), id);
                self.send(StderrMsg::StartActivity(StartActivity {
                    id,
                    level: verbosity::INFO,
                    activity_type: activity_type::BUILD,
                    text: format!("building '{printed}'").into_bytes(),
                    fields: vec![
                        Field::String(printed.into_bytes()),
                        Field::String(Vec::new()),
                        Field::Int(1),
                        Field::Int(1),
                    ],
                    parent: 0,
                }));
            }
            BuildEvent::Log { drv, line } => {
                let printed = self.store_dir.display(drv);
                let id = self
                    .builds
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&printed)
                    .copied();
                if let Some(id) = id {
                    self.send(StderrMsg::Result(
                        rix_formats::worker_protocol::ActivityResult {
                            id,
                            result_type: result_type::BUILD_LOG_LINE,
                            fields: vec![Field::String(line.as_bytes().to_vec())],
                        },
                    ));
                }
            }
            BuildEvent::Finished { drv, .. } => {
                let printed = self.store_dir.display(drv);
                let id = self
                    .builds
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&printed);
                if let Some(id) = id {
                    self.send(StderrMsg::StopActivity(id));
                }
            }
            BuildEvent::WaitingForLock { path, .. } => {
                self.log(verbosity::INFO, &format!("waiting for lock on '{path}'"));
            }
            BuildEvent::KeptBuildDir { path, .. } => {
                self.log(
                    verbosity::INFO,
                    &format!("note: keeping build directory '{}'", path.display()),
                );
            }
            BuildEvent::Skipped { drv, failed_dep } => {
                self.log(
                    verbosity::ERROR,
                    &format!(
                        "dependency '{}' of '{}' failed",
                        self.store_dir.display(failed_dep),
                        self.store_dir.display(drv)
                    ),
                );
            }
            BuildEvent::Planned { .. }
            | BuildEvent::Substitution(_)
            | BuildEvent::Resolved { .. }
            | BuildEvent::CutOff { .. } => {}
        }
    }
}
