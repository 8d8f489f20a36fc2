//! Canonical metadata for store objects, as Nix's `canonicalisePathMetaData`:
//! modification time 1 (the epoch + 1 s), mode 0444 or 0555 (0555 when the owner
//! could execute, and for directories), no setuid/setgid/sticky bits, no write bits.
//! Symlinks keep their (meaningless) mode but get the same mtime.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

/// Canonicalises `path` and everything below it, never following symlinks.
pub fn canonicalise(path: &Path) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    let ft = meta.file_type();
    if ft.is_dir() {
        // Children first: the directory must stay writable while we work in it.
        for entry in fs::read_dir(path)? {
            canonicalise(&entry?.path())?;
        }
    }
    if !ft.is_symlink() {
        let exec = ft.is_dir() || meta.permissions().mode() & 0o100 != 0;
        let mode = if exec { 0o555 } else { 0o444 };
        if meta.permissions().mode() & 0o7777 != mode {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        }
    }
    let one = TimeSpec::new(1, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &one,
        &one,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(std::io::Error::from)
}

/// Makes a tree writable again (store objects are read-only) so it can be deleted.
pub fn make_writable(path: &Path) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_dir() {
        fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
        for entry in fs::read_dir(path)? {
            make_writable(&entry?.path())?;
        }
    }
    Ok(())
}

/// Deletes a file or tree, read-only or not; a missing path is not an error.
pub fn delete_path(path: &Path) -> std::io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.file_type().is_dir() {
        make_writable(path)?;
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn canonical_modes_and_times() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("sub/f"), "x").unwrap();
        fs::write(root.join("exe"), "x").unwrap();
        fs::set_permissions(root.join("exe"), fs::Permissions::from_mode(0o4711)).unwrap();
        std::os::unix::fs::symlink("sub/f", root.join("link")).unwrap();
        canonicalise(&root).unwrap();
        let mode = |p: &str| fs::symlink_metadata(root.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode(""), 0o555);
        assert_eq!(mode("sub"), 0o555);
        assert_eq!(mode("sub/f"), 0o444);
        assert_eq!(mode("exe"), 0o555);
        for p in ["", "sub", "sub/f", "exe", "link"] {
            assert_eq!(
                fs::symlink_metadata(root.join(p)).unwrap().mtime(),
                1,
                "{p}"
            );
        }
        delete_path(&root).unwrap();
        assert!(!root.exists());
    }
}
