//! Unpacking a downloaded archive into a directory, as Nix's
//! `unpackTarfileToSink` (`libutil/tarfile.cc`) with libarchive's format and
//! filter detection: tar, plain or compressed with gzip, xz, bzip2 or zstd
//! (recognised by their magic bytes, not by the URL); an empty input is an
//! empty tree. Entry names are made canonical as Nix's `CanonPath` makes them
//! (`.` dropped, `..` going no higher than the top), so nothing is ever
//! written outside the destination: parents are created as real directories
//! (a symbolic link or file in the way is an error, never followed), hard
//! links must name a regular file inside the tree, and devices and FIFOs are
//! refused. Regular files get mode 0644, or 0755 when the owner could execute
//! them. The result's `lastModified` is the newest modification time of the
//! entries, and a tree made of a single directory is that directory (Nix's
//! `dereferenceSingletonDirectory`).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
// `create_new` (O_CREAT | O_EXCL) never follows a symbolic link at the path.
use std::path::{Path, PathBuf};

use crate::error::{FetchError, Result};

/// The tree an archive unpacked to.
#[derive(Debug, Clone)]
pub struct Unpacked {
    /// The top of the tree: the destination, or its single directory.
    pub root: PathBuf,
    /// The newest modification time of the entries (0 when none).
    pub last_modified: u64,
}

/// How many bytes are looked at to recognise a filter or a format.
const MAGIC_LEN: usize = 512;

/// Reads up to `n` bytes (fewer only at the end of the input).
fn read_up_to(r: &mut dyn Read, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// The input decompressed according to its magic bytes (libarchive's
/// `archive_read_support_filter_all`, for the filters Nix's tarballs use).
pub fn decompress<'a>(
    mut input: Box<dyn Read + Send + 'a>,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    let head = read_up_to(&mut input, 6)?;
    let whole: Box<dyn Read + Send + 'a> = Box::new(io::Cursor::new(head.clone()).chain(input));
    const BUF: usize = 256 * 1024;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(BUF, whole),
        ))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(liblzma::read::XzDecoder::new_multi_decoder(
            io::BufReader::with_capacity(BUF, whole),
        ))
    } else if head.starts_with(b"BZh") {
        Box::new(bzip2::read::MultiBzDecoder::new(
            io::BufReader::with_capacity(BUF, whole),
        ))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::new(whole)?)
    } else {
        whole
    })
}

/// Whether `block` is a tar header: its checksum (the bytes summed with the
/// checksum field as spaces) matches the octal number in that field.
fn is_tar_header(block: &[u8]) -> bool {
    if block.len() < 512 {
        return false;
    }
    let field = &block[148..156];
    let digits: String = field
        .iter()
        .map(|&b| b as char)
        .take_while(|c| *c != '\0')
        .collect();
    let Ok(want) = u32::from_str_radix(digits.trim(), 8) else {
        return false;
    };
    let sum: u32 = block[..512]
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    sum == want
}

fn archive_error(msg: impl std::fmt::Display) -> FetchError {
    FetchError::msg(format!("Failed to open archive ({msg})"))
}

/// Unpacks the archive read from `input` into `dest` (an empty directory
/// that exists). See the module docs.
pub fn unpack(input: Box<dyn Read + Send + '_>, dest: &Path) -> Result<Unpacked> {
    let mut data = decompress(input).map_err(archive_error)?;
    let head = read_up_to(&mut data, MAGIC_LEN).map_err(archive_error)?;
    if head.is_empty() || head.iter().all(|&b| b == 0) {
        // libarchive's "empty" format, or a tar of no entries.
        return finish(dest, 0);
    }
    if !is_tar_header(&head) {
        return Err(archive_error("Unrecognized archive format"));
    }
    let whole = io::Cursor::new(head).chain(data);
    let mut archive = tar::Archive::new(whole);
    let mut writer = TreeWriter::new(dest);
    let mut last_modified = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| FetchError::msg(format!("failed to read archive: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| FetchError::msg(format!("failed to read archive: {e}")))?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let rel = canon_path(&raw);
        let mut mtime = entry.header().mtime().unwrap_or(0);
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                if ext.key_bytes() == b"mtime" {
                    let v = String::from_utf8_lossy(ext.value_bytes()).into_owned();
                    if let Some(secs) = v.split('.').next().and_then(|s| s.parse::<i64>().ok()) {
                        mtime = secs.max(0) as u64;
                    }
                }
            }
        }
        last_modified = last_modified.max(mtime);
        let io_err = |e: io::Error| {
            if e.kind() == io::ErrorKind::Other {
                FetchError::msg(e.to_string())
            } else {
                FetchError::msg(format!("cannot unpack '{shown}' from the archive: {e}"))
            }
        };
        if kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|t| canon_path(&t))
                .unwrap_or_default();
            writer.hard_link(&rel, &target, &shown).map_err(io_err)?;
            continue;
        }
        if kind.is_dir() {
            writer.dir(&rel).map_err(io_err)?;
        } else if kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse() {
            if kind.is_gnu_sparse() {
                return Err(FetchError::msg(format!(
                    "file '{shown}' in tarball is a sparse file, which is not supported"
                )));
            }
            let mode = entry.header().mode().unwrap_or(0o644);
            writer
                .file(&rel, mode & 0o100 != 0, &mut entry)
                .map_err(io_err)?;
        } else if kind.is_symlink() {
            let target = entry.link_name_bytes().unwrap_or_default().into_owned();
            writer.symlink(&rel, &target).map_err(io_err)?;
        } else {
            // libarchive's `AE_IF*` numbers, as Nix prints them.
            let code = match kind {
                tar::EntryType::Fifo => 4096,
                tar::EntryType::Char => 8192,
                tar::EntryType::Block => 24576,
                _ => 0,
            };
            return Err(FetchError::msg(format!(
                "file '{shown}' in tarball has unsupported file type {code}"
            )));
        }
    }
    finish(dest, last_modified)
}

fn finish(dest: &Path, last_modified: u64) -> Result<Unpacked> {
    let mut entries = std::fs::read_dir(dest)?;
    let root = match (entries.next(), entries.next()) {
        (Some(only), None) => {
            let only = only?;
            if only.file_type()?.is_dir() {
                only.path()
            } else {
                dest.to_path_buf()
            }
        }
        _ => dest.to_path_buf(),
    };
    Ok(Unpacked {
        root,
        last_modified,
    })
}

/// An entry's name as Nix's `CanonPath` makes it: components other than
/// empty ones and `.`, with `..` removing the previous one (never going above
/// the top).
pub fn canon_path(raw: &[u8]) -> PathBuf {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut p = PathBuf::new();
    for c in parts {
        p.push(OsStr::from_bytes(c));
    }
    p
}

/// Writes entries below a root, never through a symbolic link.
struct TreeWriter<'a> {
    root: &'a Path,
    /// Relative paths known to be real directories made by this writer.
    dirs: HashSet<PathBuf>,
}

impl<'a> TreeWriter<'a> {
    fn new(root: &'a Path) -> Self {
        TreeWriter {
            root,
            dirs: HashSet::new(),
        }
    }

    /// Makes `rel` (and its parents) real directories.
    fn dir(&mut self, rel: &Path) -> io::Result<()> {
        let mut prefix = PathBuf::new();
        for c in rel.components() {
            prefix.push(c);
            if self.dirs.contains(&prefix) {
                continue;
            }
            let abs = self.root.join(&prefix);
            match std::fs::symlink_metadata(&abs) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    // A file or symbolic link in the way (never followed),
                    // as Nix's tarball cache refuses it.
                    return Err(io::Error::other(format!(
                        "parent of '{}' is not a directory",
                        prefix.display()
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir(&abs)?,
                Err(e) => return Err(e),
            }
            self.dirs.insert(prefix.clone());
        }
        Ok(())
    }

    /// Prepares a place for a new non-directory at `rel`: its parent is a
    /// real directory and nothing is at `rel` itself. Returns the full path.
    fn place(&mut self, rel: &Path) -> io::Result<PathBuf> {
        if rel.as_os_str().is_empty() {
            return Err(io::Error::other(
                "an entry other than a directory names the top",
            ));
        }
        if let Some(parent) = rel.parent() {
            self.dir(parent)?;
        }
        let abs = self.root.join(rel);
        match std::fs::symlink_metadata(&abs) {
            Ok(m) if m.is_dir() => {
                std::fs::remove_dir_all(&abs)?;
                self.dirs.retain(|d| !d.starts_with(rel));
            }
            Ok(_) => std::fs::remove_file(&abs)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(abs)
    }

    fn file(&mut self, rel: &Path, executable: bool, data: &mut dyn Read) -> io::Result<()> {
        let abs = self.place(rel)?;
        let mode = if executable { 0o755 } else { 0o644 };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&abs)?;
        io::copy(data, &mut f)?;
        // The umask may have taken bits away.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        Ok(())
    }

    fn symlink(&mut self, rel: &Path, target: &[u8]) -> io::Result<()> {
        let abs = self.place(rel)?;
        std::os::unix::fs::symlink(OsStr::from_bytes(target), abs)
    }

    fn hard_link(&mut self, rel: &Path, target: &Path, shown: &str) -> io::Result<()> {
        let not_found = || {
            io::Error::other(format!(
                "hard link target '{}' of '{shown}' is not a regular file in the archive",
                target.display()
            ))
        };
        if target.as_os_str().is_empty() || target == rel {
            return Err(not_found());
        }
        // The target's parents must be directories this writer made (no
        // symbolic link on the way), and the target a regular file.
        let parent_ok = target
            .parent()
            .is_none_or(|p| p.as_os_str().is_empty() || self.dirs.contains(p));
        let src = self.root.join(target);
        if !parent_ok
            || !std::fs::symlink_metadata(&src)
                .map(|m| m.is_file())
                .unwrap_or(false)
        {
            return Err(not_found());
        }
        let abs = self.place(rel)?;
        std::fs::hard_link(&src, &abs).or_else(|_| std::fs::copy(&src, &abs).map(|_| ()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_mtime(1000);
            // Names are written raw: the builder's own checks would refuse `..`.
            let name_field = &mut h.as_old_mut().name;
            name_field[..name.len()].copy_from_slice(name.as_bytes());
            if !link.is_empty() {
                h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn canonical_names() {
        assert_eq!(canon_path(b"./a//b/../c"), PathBuf::from("a/c"));
        assert_eq!(canon_path(b"../../etc/passwd"), PathBuf::from("etc/passwd"));
        assert_eq!(canon_path(b"/abs/x"), PathBuf::from("abs/x"));
    }

    #[test]
    fn hostile_entries_stay_inside() {
        let outer = tempfile::tempdir().unwrap();
        let dest = outer.path().join("tree");
        std::fs::create_dir(&dest).unwrap();
        let t = tar_of(&[
            ("../escape", tar::EntryType::Regular, b"x", ""),
            ("link", tar::EntryType::Symlink, b"", ".."),
            ("link/through", tar::EntryType::Regular, b"y", ""),
            ("abs", tar::EntryType::Symlink, b"", "/tmp"),
            ("abs/z", tar::EntryType::Regular, b"z", ""),
        ]);
        let e = unpack(Box::new(io::Cursor::new(t)), &dest).unwrap_err();
        assert_eq!(e.message, "parent of 'link' is not a directory");
        assert!(!outer.path().join("escape").exists());
        assert!(!outer.path().join("through").exists());
        assert_eq!(std::fs::read(dest.join("escape")).unwrap(), b"x");
        let names: Vec<_> = std::fs::read_dir(outer.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn hard_links_outside_are_refused() {
        let outer = tempfile::tempdir().unwrap();
        std::fs::write(outer.path().join("secret"), "s").unwrap();
        let dest = outer.path().join("tree");
        std::fs::create_dir(&dest).unwrap();
        let t = tar_of(&[
            ("l", tar::EntryType::Symlink, b"", ".."),
            ("h", tar::EntryType::Link, b"", "l/secret"),
        ]);
        let e = unpack(Box::new(io::Cursor::new(t)), &dest).unwrap_err();
        assert!(e.message.contains("hard link target"), "{}", e.message);
    }

    #[test]
    fn single_directory_and_compression() {
        let outer = tempfile::tempdir().unwrap();
        let t = tar_of(&[
            ("top/", tar::EntryType::Directory, b"", ""),
            ("top/a", tar::EntryType::Regular, b"hello", ""),
            ("top/b", tar::EntryType::Link, b"", "top/a"),
        ]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &t).unwrap();
        let gz = gz.finish().unwrap();
        let dest = outer.path().join("tree");
        std::fs::create_dir(&dest).unwrap();
        let u = unpack(Box::new(io::Cursor::new(gz)), &dest).unwrap();
        assert_eq!(u.root, dest.join("top"));
        assert_eq!(std::fs::read(u.root.join("b")).unwrap(), b"hello");
        let mode = std::fs::metadata(u.root.join("a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn not_an_archive() {
        let outer = tempfile::tempdir().unwrap();
        let e = unpack(Box::new(io::Cursor::new(b"plain\n".to_vec())), outer.path()).unwrap_err();
        assert_eq!(
            e.message,
            "Failed to open archive (Unrecognized archive format)"
        );
        let empty = unpack(Box::new(io::Cursor::new(Vec::new())), outer.path()).unwrap();
        assert_eq!(empty.last_modified, 0);
    }

    #[test]
    fn devices_are_refused() {
        let outer = tempfile::tempdir().unwrap();
        let t = tar_of(&[("fifo", tar::EntryType::Fifo, b"", "")]);
        let e = unpack(Box::new(io::Cursor::new(t)), outer.path()).unwrap_err();
        assert_eq!(
            e.message,
            "file 'fifo' in tarball has unsupported file type 4096"
        );
    }
}
