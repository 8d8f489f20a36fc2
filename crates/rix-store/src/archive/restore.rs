//! Restoring a NAR into a new file system object, as `nix-store --restore` does.
//!
//! The target must not exist. Everything is created relative to the directory
//! just created for it (`mkdirat`, then `openat` with `O_DIRECTORY|O_NOFOLLOW`;
//! files with `O_CREAT|O_EXCL|O_NOFOLLOW`; `symlinkat`), and names come from the
//! validating [`NarReader`] (no `/`, `.`, `..`, no duplicates), so nothing can be
//! written outside the target, not even through a symlink the archive contains
//! or one swapped in while restoring.
//!
//! Permissions are Nix's: directories `0777`, files `0666`, minus the umask, and
//! executable files get `+x` for everyone on top (`fchmod(st_mode | 0111)`);
//! `nix-store` runs with umask 022, giving 0755/0644/0755. Mirrors `restorePath`
//! and `RestoreSink` in Nix's `archive.cc` / `fs-sink.cc`.
//!
//! On any error the partially restored target is removed.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rix_formats::nar::{Event, NarReadError, NarReader};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as rfs, Mode, OFlags, CWD};
use rustix::io::Errno;

use super::ArchiveError;

const COPY_BUF_LEN: usize = 64 * 1024;

/// Directories held open at once: the root and the innermost ones. A deeper
/// archive (Nix restores up to about 2,040 levels) would otherwise need a file
/// descriptor per level; ancestors are reopened by name when the restore climbs
/// back out of the window.
const MAX_OPEN_DIRS: usize = 128;
const IN_BUF_LEN: usize = 64 * 1024;

/// Restores the archive read from `nar` at `target`, which must not exist. The
/// input must end with the archive ([`NarReadError::TrailingData`] otherwise);
/// it is read through a buffer, so use [`restore_from`] for an archive embedded in
/// a longer stream. On error nothing is left at `target`.
pub fn restore(nar: impl Read, target: &Path) -> Result<(), ArchiveError> {
    let mut reader = NarReader::new(BufReader::with_capacity(IN_BUF_LEN, nar));
    restore_from(&mut reader, target)?;
    if let Err(source) = reader.finish_at_eof() {
        remove_partial(target);
        return Err(ArchiveError::Nar {
            path: target.to_owned(),
            source,
        });
    }
    Ok(())
}

/// Restores the rest of the archive from `reader` (normally fresh) at `target`,
/// which must not exist, reading nothing past the archive's end. On error nothing
/// is left at `target` (unless it existed before: that is the error).
pub fn restore_from<R: Read>(reader: &mut NarReader<R>, target: &Path) -> Result<(), ArchiveError> {
    let mut r = Restorer {
        path: target.to_owned(),
        name: Vec::new(),
        dirs: Vec::new(),
        dir_names: Vec::new(),
        buf: vec![0; COPY_BUF_LEN],
        created: false,
    };
    let result = r.run(reader);
    if result.is_err() && r.created {
        drop(r.dirs);
        remove_partial(target);
    }
    result
}

fn remove_partial(target: &Path) {
    let _ = match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(target),
        Ok(_) => std::fs::remove_file(target),
        Err(_) => Ok(()),
    };
}

struct Restorer {
    /// The object being created, for error messages.
    path: PathBuf,
    /// The current entry's name.
    name: Vec<u8>,
    /// The directories entered, outermost first: the root and the innermost
    /// [`MAX_OPEN_DIRS`] are open, the others closed (`None`) until needed again.
    dirs: Vec<Option<OwnedFd>>,
    /// Each entered directory's name in its parent (the root's is unused).
    dir_names: Vec<Vec<u8>>,
    buf: Vec<u8>,
    /// Whether the target was created (and so must be removed on error).
    created: bool,
}

impl Restorer {
    fn io(&self, op: &'static str, e: impl Into<io::Error>) -> ArchiveError {
        ArchiveError::Io {
            op,
            path: self.path.clone(),
            source: e.into(),
        }
    }

    fn nar(&self, source: NarReadError) -> ArchiveError {
        ArchiveError::Nar {
            path: self.path.clone(),
            source,
        }
    }

    /// Where to create the current node: its parent directory and name (for the
    /// root, the target path relative to the working directory).
    fn place(&self) -> (BorrowedFd<'_>, &OsStr) {
        match self.dirs.last() {
            Some(Some(fd)) => (fd.as_fd(), OsStr::from_bytes(&self.name)),
            // The innermost directory is always open (see `leave_dir`).
            Some(None) | None => (CWD, self.path.as_os_str()),
        }
    }

    /// Enters a directory just opened; closes the one that falls out of the window.
    fn enter_dir(&mut self, fd: OwnedFd) {
        self.dirs.push(Some(fd));
        self.dir_names.push(self.name.clone());
        let n = self.dirs.len();
        if n > MAX_OPEN_DIRS + 1 {
            self.dirs[n - 1 - MAX_OPEN_DIRS] = None;
        }
    }

    /// Leaves the innermost directory; reopens its parent (and the window above
    /// the nearest open ancestor) if it was closed.
    fn leave_dir(&mut self) -> Result<(), ArchiveError> {
        self.dirs.pop();
        self.dir_names.pop();
        let Some(last) = self.dirs.len().checked_sub(1) else {
            return Ok(());
        };
        if self.dirs[last].is_some() {
            return Ok(());
        }
        let open = (0..last)
            .rev()
            .find(|&i| self.dirs[i].is_some())
            .unwrap_or(0);
        let keep_from = (last + 1).saturating_sub(MAX_OPEN_DIRS).max(open + 1);
        let mut cur: Option<OwnedFd> = None;
        for i in open + 1..=last {
            // The nearest open ancestor is open, and each level walked is kept in `cur`.
            let Some(parent) = cur.as_ref().or(self.dirs[i - 1].as_ref()) else {
                return Err(self.io("reopening directory", io::Error::other("no open parent")));
            };
            let fd = rfs::openat(
                parent.as_fd(),
                OsStr::from_bytes(&self.dir_names[i]),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| self.io("reopening directory", e))?;
            if i >= keep_from {
                // Duplicated: one stays in the window, one walks on.
                let kept = rustix::io::fcntl_dupfd_cloexec(&fd, 0)
                    .map_err(|e| self.io("reopening directory", e))?;
                self.dirs[i] = Some(kept);
            }
            cur = Some(fd);
        }
        Ok(())
    }

    /// Maps a creation error; `EEXIST` on the target itself means it existed.
    fn create_error(&self, op: &'static str, e: Errno) -> ArchiveError {
        if e == Errno::EXIST && self.dirs.is_empty() {
            ArchiveError::TargetExists {
                path: self.path.clone(),
            }
        } else {
            self.io(op, e)
        }
    }

    /// After a node is complete: back to its parent's path.
    fn leave(&mut self) {
        if !self.dirs.is_empty() {
            self.path.pop();
        }
    }

    fn run<R: Read>(&mut self, reader: &mut NarReader<R>) -> Result<(), ArchiveError> {
        loop {
            let event = match reader.next() {
                Ok(Some(e)) => e,
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.nar(e)),
            };
            match event {
                Event::Entry { name } => {
                    self.path.push(OsStr::from_bytes(name));
                    self.name.clear();
                    self.name.extend_from_slice(name);
                }
                Event::Directory => {
                    let fd = {
                        let (dir, name) = self.place();
                        rfs::mkdirat(dir, name, Mode::from_raw_mode(0o777))
                            .map_err(|e| self.create_error("creating directory", e))?;
                        rfs::openat(
                            dir,
                            name,
                            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                            Mode::empty(),
                        )
                    };
                    self.created = true;
                    let fd = fd.map_err(|e| self.io("opening directory", e))?;
                    self.enter_dir(fd);
                }
                Event::EndDirectory => {
                    self.leave_dir()?;
                    self.leave();
                }
                Event::Symlink { target } => {
                    let (dir, name) = self.place();
                    rfs::symlinkat(target, dir, name)
                        .map_err(|e| self.create_error("creating symlink", e))?;
                    self.created = true;
                    self.leave();
                }
                Event::Regular {
                    executable, size, ..
                } => {
                    let fd = {
                        let (dir, name) = self.place();
                        rfs::openat(
                            dir,
                            name,
                            OFlags::WRONLY
                                | OFlags::CREATE
                                | OFlags::EXCL
                                | OFlags::NOFOLLOW
                                | OFlags::CLOEXEC,
                            Mode::from_raw_mode(0o666),
                        )
                        .map_err(|e| self.create_error("creating file", e))?
                    };
                    self.created = true;
                    if executable {
                        let st = rfs::fstat(&fd).map_err(|e| self.io("getting status of", e))?;
                        rfs::fchmod(&fd, Mode::from_raw_mode(st.st_mode | 0o111))
                            .map_err(|e| self.io("making executable", e))?;
                    }
                    self.contents(File::from(fd), reader, size)?;
                    self.leave();
                }
            }
        }
    }

    fn contents<R: Read>(
        &mut self,
        mut file: File,
        reader: &mut NarReader<R>,
        size: u64,
    ) -> Result<(), ArchiveError> {
        let mut left = size;
        while left > 0 {
            let n = match reader.contents().read(&mut self.buf) {
                Ok(0) => break, // cannot happen: the reader reports truncation
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.nar(NarReadError::from_io(e, reader.offset()))),
            };
            if let Err(e) = file.write_all(&self.buf[..n]) {
                return Err(self.io("writing file", e));
            }
            left -= n as u64;
        }
        Ok(())
    }
}
