//! Dumping a file system object to NAR, as `nix-store --dump` does.
//!
//! Entries are sorted by their raw bytes; a regular file is executable when its
//! owner may execute it (`st_mode & S_IXUSR`); symlinks are stored, never followed;
//! sockets, fifos and devices are an error naming the file. Directories are read
//! with `getdents64` into reused buffers and files opened relative to their
//! directory, so the walk costs a handful of system calls per file and no
//! allocation in the steady state. Mirrors `dumpPath` in Nix's `archive.cc`.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rix_formats::nar::{NarWriteError, NarWriter};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RawDir, CWD};

use super::{type_name, ArchiveError};

/// Read buffer for file contents: large enough that big files take few system
/// calls, small enough to stay in cache on its way to the hasher.
const READ_BUF_LEN: usize = 256 * 1024;
/// Buffer for `getdents64`.
const DIRENT_BUF_LEN: usize = 32 * 1024;
/// Output buffer of [`dump`].
const OUT_BUF_LEN: usize = 128 * 1024;

const S_IXUSR: u32 = 0o100;

fn file_flags() -> OFlags {
    // NONBLOCK: should a fifo replace the file after the directory was read,
    // opening it must not hang (it is then rejected by its type).
    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Serialises the file system object at `path` to NAR into `out` (buffered here);
/// returns the archive's size in bytes.
pub fn dump(path: &Path, out: &mut impl Write) -> Result<u64, ArchiveError> {
    let mut out = BufWriter::with_capacity(OUT_BUF_LEN, out);
    let size = dump_to(path, &mut out)?;
    out.flush().map_err(ArchiveError::Write)?;
    Ok(size)
}

/// Like [`dump`] but writes straight into `out`, unbuffered: for sinks that buffer
/// themselves (hashers, `BufWriter`s).
pub fn dump_to<W: Write>(path: &Path, out: W) -> Result<u64, ArchiveError> {
    dump_with(path, Plain(out)).map(|(size, _)| size)
}

/// Dumps into a [`DumpSink`]; returns the archive's size and the sink.
pub(crate) fn dump_with<S: DumpSink>(path: &Path, sink: S) -> Result<(u64, S), ArchiveError> {
    let mut d = Dumper::new(path, sink);
    d.root()?;
    let size = d.w.position();
    let sink = d.w.finish().map_err(|e| encode_error(&d.path, e))?;
    Ok((size, sink))
}

/// Why a file's contents could not be copied into a [`DumpSink`].
pub(crate) enum CopyFail {
    /// Reading the file failed.
    Read(io::Error),
    /// The file ended after `read` bytes, before its size at `fstat` time.
    Short { read: u64 },
    /// The sink failed.
    Sink(io::Error),
}

/// Where the dumper's bytes go. A plain [`Write`] gets the default: file contents
/// copied through the dumper's buffer and files closed at once. The hashing
/// pipeline reads files straight into its blocks and lets the hashing thread
/// close them when it has time.
pub(crate) trait DumpSink: Write {
    /// Copies exactly `size` bytes of `file` into the sink, then disposes of it.
    fn copy_file(&mut self, mut file: File, size: u64, buf: &mut [u8]) -> Result<(), CopyFail> {
        let mut left = size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match file.read(&mut buf[..want]) {
                Ok(0) => return Err(CopyFail::Short { read: size - left }),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyFail::Read(e)),
            };
            self.write_all(&buf[..n]).map_err(CopyFail::Sink)?;
            left -= n as u64;
        }
        Ok(())
    }
}

/// A plain [`Write`] as a [`DumpSink`].
struct Plain<W>(W);

impl<W: Write> Write for Plain<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> DumpSink for Plain<W> {}

/// The names of one directory, NUL-terminated in one buffer, and their types.
#[derive(Default)]
struct DirList {
    names: Vec<u8>,
    /// (start in `names`, length without the NUL, type from `d_type`).
    entries: Vec<(usize, usize, FileType)>,
}

/// Deepest tree dumped. The dump recurses once per directory level (about 1 KiB
/// of stack each, unoptimised) and runs on builder threads, whose stacks are
/// 2 MiB: 1024 levels stay well inside, and past them the dump is a clean
/// "depth limit" error rather than a stack overflow. (Reading and restoring
/// archives are iterative and take up to `nar::MAX_DEPTH` levels.)
const DUMP_MAX_DEPTH: usize = 1024;

struct Dumper<S: DumpSink> {
    w: NarWriter<S>,
    /// The file being worked on, for error messages.
    path: PathBuf,
    buf: Vec<u8>,
    dirent_buf: Vec<u8>,
    link_buf: Vec<u8>,
    /// Entry lists by depth, reused from one directory to the next.
    lists: Vec<DirList>,
}

fn encode_error(path: &Path, e: NarWriteError) -> ArchiveError {
    match e {
        NarWriteError::Io { source, .. } => ArchiveError::Write(source),
        e => ArchiveError::Encode {
            path: path.to_owned(),
            source: e,
        },
    }
}

impl<S: DumpSink> Dumper<S> {
    fn new(path: &Path, out: S) -> Self {
        let limits = rix_formats::nar::Limits {
            max_depth: DUMP_MAX_DEPTH,
            ..Default::default()
        };
        Self {
            w: NarWriter::with_limits(out, limits),
            path: path.to_owned(),
            buf: vec![0; READ_BUF_LEN],
            dirent_buf: Vec::with_capacity(DIRENT_BUF_LEN),
            link_buf: Vec::new(),
            lists: Vec::new(),
        }
    }

    fn io(&self, op: &'static str, e: impl Into<io::Error>) -> ArchiveError {
        ArchiveError::Io {
            op,
            path: self.path.clone(),
            source: e.into(),
        }
    }

    fn enc(&self, e: NarWriteError) -> ArchiveError {
        encode_error(&self.path, e)
    }

    fn unsupported(&self, t: FileType) -> ArchiveError {
        ArchiveError::UnsupportedType {
            path: self.path.clone(),
            kind: type_name(t),
        }
    }

    fn root(&mut self) -> Result<(), ArchiveError> {
        let path = CString::new(self.path.as_os_str().as_bytes()).map_err(|e| {
            self.io(
                "getting status of",
                io::Error::new(io::ErrorKind::InvalidInput, e),
            )
        })?;
        let st = rfs::statat(CWD, &path, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.io("getting status of", e))?;
        self.node(CWD, &path, FileType::from_raw_mode(st.st_mode), 0)
    }

    /// Dumps the object `name` in `dir`, of type `t` as the directory listing says.
    fn node(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        t: FileType,
        depth: usize,
    ) -> Result<(), ArchiveError> {
        match t {
            FileType::RegularFile => {
                let fd = rfs::openat(dir, name, file_flags(), Mode::empty())
                    .map_err(|e| self.io("opening file", e))?;
                self.regular(fd)
            }
            FileType::Directory => {
                let fd = rfs::openat(dir, name, dir_flags(), Mode::empty())
                    .map_err(|e| self.io("opening directory", e))?;
                self.directory(fd, depth)
            }
            FileType::Symlink => {
                let target = rfs::readlinkat(dir, name, std::mem::take(&mut self.link_buf))
                    .map_err(|e| self.io("reading symlink", e))?;
                let result = self.w.symlink(target.as_bytes());
                self.link_buf = target.into_bytes();
                result.map_err(|e| self.enc(e))
            }
            // The file system gave no type in the directory listing.
            FileType::Unknown => {
                let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| self.io("getting status of", e))?;
                match FileType::from_raw_mode(st.st_mode) {
                    FileType::Unknown => Err(self.unsupported(FileType::Unknown)),
                    t => self.node(dir, name, t, depth),
                }
            }
            t => Err(self.unsupported(t)),
        }
    }

    fn regular(&mut self, fd: OwnedFd) -> Result<(), ArchiveError> {
        let st = rfs::fstat(&fd).map_err(|e| self.io("getting status of", e))?;
        let t = FileType::from_raw_mode(st.st_mode);
        if t != FileType::RegularFile {
            return Err(self.unsupported(t));
        }
        let size = st.st_size as u64;
        self.w
            .begin_regular(st.st_mode & S_IXUSR != 0, size)
            .map_err(|e| self.enc(e))?;
        let file = File::from(fd);
        let buf = &mut self.buf;
        let copied = self
            .w
            .write_contents_with(size, |sink| sink.copy_file(file, size, buf))
            .map_err(|e| encode_error(&self.path, e))?;
        match copied {
            Ok(()) => {}
            Err(CopyFail::Read(e)) => return Err(self.io("reading file", e)),
            Err(CopyFail::Short { read }) => {
                return Err(ArchiveError::FileChanged {
                    path: self.path.clone(),
                    size,
                    read,
                })
            }
            Err(CopyFail::Sink(e)) => return Err(ArchiveError::Write(e)),
        }
        self.w.end_regular().map_err(|e| self.enc(e))
    }

    fn directory(&mut self, fd: OwnedFd, depth: usize) -> Result<(), ArchiveError> {
        if self.lists.len() <= depth {
            self.lists.resize_with(depth + 1, DirList::default);
        }
        let mut list = std::mem::take(&mut self.lists[depth]);
        let result = self.read_dir(fd.as_fd(), &mut list).and_then(|()| {
            self.w.begin_directory().map_err(|e| self.enc(e))?;
            for &(start, len, t) in &list.entries {
                let name = &list.names[start..start + len];
                let cname = CStr::from_bytes_with_nul(&list.names[start..=start + len])
                    .expect("getdents names are NUL-terminated");
                self.w.entry(name).map_err(|e| self.enc(e))?;
                self.path.push(OsStr::from_bytes(name));
                let r = self.node(fd.as_fd(), cname, t, depth + 1);
                self.path.pop();
                r?;
            }
            self.w.end_directory().map_err(|e| self.enc(e))
        });
        self.lists[depth] = list;
        result
    }

    /// Lists `dir` into `list`, without `.` and `..`, sorted by raw name.
    fn read_dir(&mut self, dir: BorrowedFd<'_>, list: &mut DirList) -> Result<(), ArchiveError> {
        list.names.clear();
        list.entries.clear();
        let mut raw = RawDir::new(dir, self.dirent_buf.spare_capacity_mut());
        while let Some(entry) = raw.next() {
            let entry = entry.map_err(|e| ArchiveError::Io {
                op: "reading directory",
                path: self.path.clone(),
                source: e.into(),
            })?;
            let name = entry.file_name().to_bytes_with_nul();
            if name == b".\0" || name == b"..\0" {
                continue;
            }
            list.entries
                .push((list.names.len(), name.len() - 1, entry.file_type()));
            list.names.extend_from_slice(name);
        }
        let names = &list.names;
        list.entries
            .sort_unstable_by(|a, b| names[a.0..a.0 + a.1].cmp(&names[b.0..b.0 + b.1]));
        Ok(())
    }
}
