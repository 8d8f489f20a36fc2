//! Seeing a store at its logical path from outside a build (`rix run`,
//! `rix shell`): for a store rooted elsewhere (`--store /some/root`), the calling
//! process moves into a new mount namespace (and a user namespace when it is not
//! root) whose root is a tmpfs holding bind mounts of every entry of the host's
//! `/`, except that the logical store directory (`/nix/store`) is the store's
//! real directory. As Nix's `runProgramInStore`, but the tmpfs is mounted on a
//! directory kept for this in the store's state directory
//! (`<state>/sandbox/run-root`), so nothing is left behind in `/tmp`. The
//! process must be single-threaded (`unshare(CLONE_NEWUSER)` refuses
//! otherwise); it then usually `exec`s.

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use rix_store::layout::StoreLayout;

fn err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(1, |d| d.count())
}

/// Moves the calling process into a mount namespace where `layout`'s store is
/// at its logical directory. Does nothing for a store that already is.
pub fn enter_store_namespace(layout: &StoreLayout) -> Result<(), String> {
    if !layout.needs_remap() {
        return Ok(());
    }
    let logical = PathBuf::from(layout.store_dir.as_str());
    let real = layout.real_store_dir.clone();
    let cwd = std::env::current_dir().ok();
    let uid = nix::unistd::geteuid();
    let gid = nix::unistd::getegid();
    let mut flags = CloneFlags::CLONE_NEWNS;
    if !uid.is_root() {
        if threads() > 1 {
            return Err("cannot enter a user namespace from a multi-threaded process".into());
        }
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    unshare(flags).map_err(|e| err("cannot create a mount namespace for the store", e))?;
    if !uid.is_root() {
        let w = |f: &str, text: String| {
            std::fs::write(Path::new("/proc/self").join(f), text).map_err(|e| err(f, e))
        };
        w("uid_map", format!("{uid} {uid} 1"))?;
        w("setgroups", "deny".into())?;
        w("gid_map", format!("{gid} {gid} 1"))?;
    }
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| err("making mounts private", e))?;

    // A mount point that every such namespace shares (mounts are private to
    // each), made once.
    // (or, when the state directory is not ours, one per user in the temporary
    // directory).
    let mut tmp = layout.state_dir.join("sandbox/run-root");
    if std::fs::create_dir_all(&tmp).is_err() {
        tmp = std::env::temp_dir().join(format!("rix-run-root-{uid}"));
        std::fs::create_dir_all(&tmp).map_err(|e| err(tmp.display(), e))?;
    }
    build_root(&tmp, &logical, &real).and_then(|()| pivot(&tmp))?;
    let _ = std::env::set_current_dir(cwd.as_deref().unwrap_or(Path::new("/")))
        .or_else(|_| std::env::set_current_dir("/"));
    Ok(())
}

/// Replicates the host's `/` in a tmpfs at `tmp` with the store at `logical`.
fn build_root(tmp: &Path, logical: &Path, real: &Path) -> Result<(), String> {
    mount(
        Some("tmpfs"),
        tmp,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .map_err(|e| err(format!("mounting a tmpfs on {}", tmp.display()), e))?;
    // Walk down the logical store directory: at each level, every host entry but
    // the next component is bound as it is.
    let comps: Vec<&OsStr> = logical
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut host = PathBuf::from("/");
    let mut new = tmp.to_path_buf();
    for next in &comps {
        if let Ok(entries) = std::fs::read_dir(&host) {
            for e in entries.flatten() {
                if e.file_name() == *next {
                    continue;
                }
                replicate(&e.path(), &new.join(e.file_name()))?;
            }
        }
        host.push(next);
        new.push(next);
        std::fs::create_dir(&new).map_err(|e| err(new.display(), e))?;
    }
    mount(
        Some(real),
        &new,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| {
        err(
            format!("bind-mounting {} on {}", real.display(), logical.display()),
            e,
        )
    })
}

fn replicate(src: &Path, dst: &Path) -> Result<(), String> {
    let Ok(meta) = std::fs::symlink_metadata(src) else {
        return Ok(());
    };
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(src).map_err(|e| err(src.display(), e))?;
        return std::os::unix::fs::symlink(target, dst).map_err(|e| err(dst.display(), e));
    }
    if ft.is_dir() {
        std::fs::create_dir(dst).map_err(|e| err(dst.display(), e))?;
    } else {
        std::fs::File::create(dst).map_err(|e| err(dst.display(), e))?;
    }
    // Unbindable or otherwise refused mounts just stay empty.
    let _ = mount(
        Some(src),
        dst,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    );
    Ok(())
}

fn pivot(tmp: &Path) -> Result<(), String> {
    let old = tmp.join(".old-root");
    std::fs::create_dir(&old).map_err(|e| err(old.display(), e))?;
    nix::unistd::pivot_root(tmp, &old).map_err(|e| err("pivot_root", e))?;
    std::env::set_current_dir("/").map_err(|e| err("/", e))?;
    umount2("/.old-root", MntFlags::MNT_DETACH).map_err(|e| err("unmounting the old root", e))?;
    let _ = std::fs::remove_dir("/.old-root");
    Ok(())
}
