//! The collector's side of the temporary roots protocol: while it holds the GC
//! lock, processes that need a new temporary root send it as a line on
//! `<state>/gc-socket/socket` and wait for `1` (see [`crate::temp_roots`]). As
//! in Nix, an answer is delayed while the path is being deleted, so that the
//! client sees it gone (and makes it again) rather than half deleted.

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rix_formats::store_path::StoreDir;

use crate::gc_lock::annotate;

/// What the collector and the connections share.
#[derive(Debug, Default)]
pub struct Shared {
    /// Hash parts of every temporary root (from files and from the socket).
    pub temp_roots: HashSet<String>,
    /// Roots received since the collector last looked.
    pub new_roots: Vec<String>,
    /// Hash parts of the paths being deleted right now.
    pub pending: HashSet<String>,
}

type State = Arc<(Mutex<Shared>, Condvar)>;
/// Open connections (a handle to shut each down) and their threads.
type Clients = Arc<Mutex<Vec<(UnixStream, JoinHandle<()>)>>>;

/// A running roots server; stopped on drop.
pub struct RootsServer {
    state: State,
    stop: Arc<AtomicBool>,
    socket_path: PathBuf,
    acceptor: Option<JoinHandle<()>>,
    clients: Clients,
}

impl RootsServer {
    /// Listens on `socket_path` (replacing a stale socket), as Nix's collector.
    pub fn start(socket_path: PathBuf, store_dir: StoreDir) -> io::Result<Self> {
        if let Some(dir) = socket_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| annotate(e, dir))?;
        }
        match std::fs::remove_file(&socket_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(annotate(e, &socket_path)),
        }
        let listener = UnixListener::bind(&socket_path).map_err(|e| annotate(e, &socket_path))?;
        std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| annotate(e, &socket_path))?;
        let state: State = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Clients = Arc::default();
        let acceptor = {
            let (state, stop, clients) = (state.clone(), stop.clone(), clients.clone());
            std::thread::Builder::new()
                .name("gc-roots-server".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(conn) = conn else { continue };
                        let Ok(handle) = conn.try_clone() else {
                            continue;
                        };
                        let (state, store_dir) = (state.clone(), store_dir.clone());
                        let thread = std::thread::spawn(move || serve(conn, &state, &store_dir));
                        clients
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((handle, thread));
                    }
                })?
        };
        Ok(Self {
            state,
            stop,
            socket_path,
            acceptor: Some(acceptor),
            clients,
        })
    }

    /// Locks the shared state.
    pub fn lock(&self) -> MutexGuard<'_, Shared> {
        self.state.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the paths (hash parts) about to be deleted.
    pub fn set_pending(&self, shared: &mut MutexGuard<'_, Shared>, hashes: HashSet<String>) {
        shared.pending = hashes;
    }

    /// Deletion of the pending paths is finished: release waiting clients.
    pub fn clear_pending(&self) {
        self.lock().pending.clear();
        self.state.1.notify_all();
    }

    fn shutdown(&mut self) {
        if self.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        self.clear_pending();
        // Wake the acceptor with a connection of our own.
        let _ = UnixStream::connect(&self.socket_path);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        let clients = std::mem::take(&mut *self.clients.lock().unwrap_or_else(|e| e.into_inner()));
        for (stream, thread) in clients {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            let _ = thread.join();
        }
    }
}

impl Drop for RootsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One client: a root per line, each answered with `1` once recorded.
fn serve(conn: UnixStream, state: &State, store_dir: &StoreDir) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { break };
        if let Ok(path) = store_dir.parse(&line) {
            let hash = path.hash_part().to_owned();
            let (lock, wakeup) = &**state;
            let mut shared = lock.lock().unwrap_or_else(|e| e.into_inner());
            if shared.temp_roots.insert(hash.clone()) {
                shared.new_roots.push(hash.clone());
            }
            while shared.pending.contains(&hash) {
                shared = wakeup.wait(shared).unwrap_or_else(|e| e.into_inner());
            }
        }
        if out.write_all(b"1").is_err() {
            break;
        }
    }
}
