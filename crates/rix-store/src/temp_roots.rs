//! Temporary GC roots: the paths a running process is building, substituting,
//! adding or evaluating, kept alive until it exits. Nix's protocol
//! (`LocalStore::addTempRoot`, `findTempRoots`), so that rix and Nix processes
//! and collectors all respect each other's:
//!
//! - Each process has `<state>/temproots/<pid>`, holding NUL-terminated store
//!   paths, `flock`ed exclusively for as long as the process lives.
//! - To add a root, take the global GC lock shared without waiting and append
//!   the path. If the lock is busy a collector is running: send the path to it
//!   (a line on `<state>/gc-socket/socket`), wait for its `1`, then append.
//! - A collector (holding the GC lock exclusively) reads every file it cannot
//!   lock: those of live processes. A file it *can* lock belongs to a dead
//!   process: it removes it (unlink, then write `d` into it so that a process
//!   that opened it in between sees it is stale and starts over).
//!
//! A root protects the path's closure, and every entry of the store directory
//! with the same hash part (its `.lock` file, rix's temporaries
//! `<hash>-rix-tmp-...`).

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rix_formats::store_path::StoreDir;
use rix_formats::StorePath;

use crate::gc_lock::{annotate, gc_lock_path, gc_socket_path};
use crate::layout::StoreLayout;
use crate::lock::open_lock_file;
use crate::lock::{lock_file, unlock_file, LockKind};

/// This process's temporary roots for one store (one state directory).
#[derive(Debug)]
pub struct TempRoots {
    file_path: PathBuf,
    gc_lock_path: PathBuf,
    socket_path: PathBuf,
    store_dir: StoreDir,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Our roots file, locked exclusively.
    file: Option<File>,
    /// An open `gc.lock`, locked shared only while appending.
    gc_lock: Option<File>,
    /// Connection to a running collector.
    socket: Option<UnixStream>,
    /// Paths already recorded (a root stays until the process exits).
    added: HashSet<String>,
}

/// One `TempRoots` per state directory per process: two files named by the same
/// pid would remove each other.
static REGISTRY: Mutex<Vec<(PathBuf, Weak<TempRoots>)>> = Mutex::new(Vec::new());

impl TempRoots {
    /// The temporary roots of this process in the store `layout` describes.
    pub fn for_store(layout: &StoreLayout) -> Arc<TempRoots> {
        let dir = layout.temproots_dir();
        let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        reg.retain(|(_, w)| w.strong_count() > 0);
        if let Some(existing) = reg
            .iter()
            .find(|(d, _)| *d == dir)
            .and_then(|(_, w)| w.upgrade())
        {
            return existing;
        }
        let roots = Arc::new(TempRoots {
            file_path: dir.join(std::process::id().to_string()),
            gc_lock_path: gc_lock_path(layout),
            socket_path: gc_socket_path(layout),
            store_dir: layout.store_dir.clone(),
            inner: Mutex::new(Inner::default()),
        });
        reg.push((dir, Arc::downgrade(&roots)));
        roots
    }

    /// Makes `path` a temporary root of this process (see the module docs).
    pub fn add(&self, path: &StorePath) -> io::Result<()> {
        self.add_many(std::slice::from_ref(path))
    }

    /// Makes all of `paths` temporary roots of this process, as [`Self::add`]
    /// each, with one round of the protocol: one shared `gc.lock` and one
    /// append for the paths not yet recorded (a running collector is told
    /// each of them first).
    pub fn add_many(&self, paths: &[StorePath]) -> io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut new: Vec<String> = paths
            .iter()
            .map(|p| self.store_dir.display(p))
            .filter(|p| !inner.added.contains(p))
            .collect();
        new.sort_unstable();
        new.dedup();
        if new.is_empty() {
            return Ok(());
        }
        self.open_file(&mut inner)?;
        if inner.gc_lock.is_none() {
            inner.gc_lock = Some(
                open_lock_file(&self.gc_lock_path).map_err(|e| annotate(e, &self.gc_lock_path))?,
            );
        }
        let mut record = Vec::with_capacity(new.iter().map(|p| p.len() + 1).sum());
        for printed in &new {
            record.extend_from_slice(printed.as_bytes());
            record.push(0);
        }
        // How many of `new` the running collector has acknowledged.
        let mut told = 0;
        loop {
            let gc_lock = inner.gc_lock.as_ref().expect("opened above");
            if lock_file(gc_lock, LockKind::Shared, false)? {
                // No collector is running, and none can start until we unlock.
                inner.socket = None;
                let written = self.append(&mut inner, &record);
                unlock_file(inner.gc_lock.as_ref().expect("opened above"))?;
                written?;
                break;
            }
            // A collector is running: it must know about the roots before we go on.
            let mut listening = true;
            while told < new.len() {
                if !self.tell_collector(&mut inner, &new[told])? {
                    listening = false;
                    break;
                }
                told += 1;
            }
            if listening {
                self.append(&mut inner, &record)?;
                break;
            }
            // The collector has not opened its socket yet, or just exited: a
            // new one must be told everything again.
            told = 0;
            inner.socket = None;
            drop(inner);
            std::thread::sleep(Duration::from_millis(50));
            inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        }
        inner.added.extend(new);
        Ok(())
    }

    fn append(&self, inner: &mut Inner, record: &[u8]) -> io::Result<()> {
        inner
            .file
            .as_mut()
            .expect("opened first")
            .write_all(record)
            .map_err(|e| annotate(e, &self.file_path))
    }

    /// Sends a root to the running collector. `Ok(false)`: no collector
    /// listens (yet, or any more): retry from the lock.
    fn tell_collector(&self, inner: &mut Inner, printed: &str) -> io::Result<bool> {
        if inner.socket.is_none() {
            match UnixStream::connect(&self.socket_path) {
                Ok(s) => inner.socket = Some(s),
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(nix::libc::ECONNREFUSED | nix::libc::ENOENT)
                    ) =>
                {
                    return Ok(false)
                }
                Err(e) => return Err(annotate(e, &self.socket_path)),
            }
        }
        let socket = inner.socket.as_mut().expect("connected above");
        let mut ack = [0u8; 1];
        let exchanged = socket
            .write_all(format!("{printed}\n").as_bytes())
            .and_then(|()| socket.read_exact(&mut ack));
        match exchanged {
            Ok(()) if ack[0] == b'1' => Ok(true),
            Ok(()) => Err(io::Error::other(format!(
                "garbage collector at {} answered {:?} to a root",
                self.socket_path.display(),
                ack[0] as char
            ))),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::UnexpectedEof
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(annotate(e, &self.socket_path)),
        }
    }

    /// Creates and locks `<state>/temproots/<pid>` once.
    fn open_file(&self, inner: &mut Inner) -> io::Result<()> {
        if inner.file.is_some() {
            return Ok(());
        }
        if let Some(dir) = self.file_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| annotate(e, dir))?;
        }
        loop {
            // A file with our pid is a dead process's: no two live processes share a pid.
            match std::fs::remove_file(&self.file_path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(annotate(e, &self.file_path)),
            }
            let file = open_lock_file(&self.file_path).map_err(|e| annotate(e, &self.file_path))?;
            lock_file(&file, LockKind::Exclusive, true)
                .map_err(|e| annotate(e, &self.file_path))?;
            // A collector that removed the file before we locked it wrote `d` into it.
            if file.metadata()?.len() == 0 {
                inner.file = Some(file);
                return Ok(());
            }
        }
    }
}

impl Drop for TempRoots {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        if inner.file.take().is_some() {
            let _ = std::fs::remove_file(&self.file_path);
        }
    }
}

/// The temporary roots of one live process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRoots {
    pub pid: u32,
    /// The paths as recorded (logical store paths).
    pub paths: Vec<String>,
}

/// Reads the roots files of live processes and removes those of dead ones
/// (mirrors `findTempRoots`). `on_stale` is told about each removed file.
pub fn read_temp_roots(
    layout: &StoreLayout,
    mut on_stale: impl FnMut(&Path),
) -> io::Result<Vec<ProcessRoots>> {
    let dir = layout.temproots_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(annotate(e, &dir)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| annotate(e, &dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Hidden files keep the directory alive for some package managers.
        if name.starts_with('.') {
            continue;
        }
        let Ok(pid) = name.parse::<u32>() else {
            continue;
        };
        let path = entry.path();
        let mut file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(annotate(e, &path)),
        };
        // Lockable only when its owner has died.
        if lock_file(&file, LockKind::Exclusive, false).map_err(|e| annotate(e, &path))? {
            on_stale(&path);
            let _ = std::fs::remove_file(&path);
            let _ = file.write_all(b"d");
            continue;
        }
        let mut contents = Vec::new();
        file.read_to_end(&mut contents)
            .map_err(|e| annotate(e, &path))?;
        // Only complete (NUL-terminated) records count.
        let mut paths = Vec::new();
        let mut rest = &contents[..];
        while let Some(end) = rest.iter().position(|&b| b == 0) {
            paths.push(String::from_utf8_lossy(&rest[..end]).into_owned());
            rest = &rest[end + 1..];
        }
        out.push(ProcessRoots { pid, paths });
    }
    out.sort_by_key(|p| p.pid);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(dir: &Path) -> StoreLayout {
        let l = StoreLayout::from_url(&format!(
            "local?store={0}/store&state={0}/state",
            dir.display()
        ))
        .unwrap();
        std::fs::create_dir_all(&l.state_dir).unwrap();
        l
    }

    #[test]
    fn roots_are_recorded_once_and_removed_with_the_last_handle() {
        let dir = tempfile::tempdir().unwrap();
        let l = layout(dir.path());
        let p = l
            .store_dir
            .parse(&format!("{}/{}-x", l.store_dir, "0".repeat(32)));
        let p = p.unwrap();
        let roots = TempRoots::for_store(&l);
        let again = TempRoots::for_store(&l);
        assert!(Arc::ptr_eq(&roots, &again));
        roots.add(&p).unwrap();
        again.add(&p).unwrap();
        let file = l.temproots_dir().join(std::process::id().to_string());
        let text = std::fs::read(&file).unwrap();
        assert_eq!(text, format!("{}\0", l.store_dir.display(&p)).as_bytes());
        // Our own file is locked, so it reads as a live process's.
        let read = read_temp_roots(&l, |_| panic!("not stale")).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].paths, [l.store_dir.display(&p)]);
        drop(roots);
        drop(again);
        assert!(!file.exists());
    }

    /// Many roots at once while a collector runs: it is told every one
    /// before they are appended (one append for all).
    #[test]
    fn many_roots_reach_a_running_collector() {
        let dir = tempfile::tempdir().unwrap();
        let l = layout(dir.path());
        let paths: Vec<StorePath> = ["0", "1", "2"]
            .iter()
            .map(|c| {
                l.store_dir
                    .parse(&format!("{}/{}-x", l.store_dir, c.repeat(32)))
                    .unwrap()
            })
            .collect();
        // The collector: the GC lock held, its socket listening.
        let gc_lock = open_lock_file(&gc_lock_path(&l)).unwrap();
        assert!(lock_file(&gc_lock, LockKind::Exclusive, false).unwrap());
        let server =
            crate::gc::server::RootsServer::start(gc_socket_path(&l), l.store_dir.clone()).unwrap();
        let roots = TempRoots::for_store(&l);
        roots.add_many(&paths).unwrap();
        roots.add_many(&paths).unwrap(); // recorded once
        let told = server.lock().temp_roots.clone();
        for p in &paths {
            assert!(told.contains(p.hash_part()), "{p} not told");
        }
        let file = l.temproots_dir().join(std::process::id().to_string());
        let expected: Vec<u8> = paths
            .iter()
            .flat_map(|p| format!("{}\0", l.store_dir.display(p)).into_bytes())
            .collect();
        assert_eq!(std::fs::read(&file).unwrap(), expected);
    }

    #[test]
    fn stale_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let l = layout(dir.path());
        std::fs::create_dir_all(l.temproots_dir()).unwrap();
        let stale = l.temproots_dir().join("999999999");
        std::fs::write(&stale, b"/x/store/abc\0").unwrap();
        std::fs::write(l.temproots_dir().join(".keep"), b"").unwrap();
        let mut removed = Vec::new();
        let read = read_temp_roots(&l, |p| removed.push(p.to_path_buf())).unwrap();
        assert!(read.is_empty());
        assert_eq!(removed, std::slice::from_ref(&stale));
        assert!(!stale.exists());
    }
}
