//! The Linux build sandbox, as Nix's (`linux-derivation-builder.cc`,
//! `chroot-derivation-builder.cc`).
//!
//! The builder runs as PID 1 of new user, mount, PID, IPC and UTS namespaces (and
//! a network namespace with only `lo` up, except for fixed-output derivations),
//! as uid 1000 / gid 100 inside ([`ids`] says who that is outside). As root on a
//! kernel that refuses user namespaces, the other namespaces are made without one
//! and the builder runs as its build uid itself, as Nix 2.8 does. What it sees:
//!
//! | inside | what |
//! | --- | --- |
//! | `/` | a template (below), bind-mounted and made the root with `pivot_root` |
//! | `/nix/store` (the logical store directory) | `<real store dir>/<drv>.chroot` (mode 1775, group nixbld), where the builder creates its outputs; each path of the input closure is in it: directories bind-mounted read-only, files and symlinks hard-linked when rix is root (the builder cannot write root's 0444 files), else bind-mounted read-only |
//! | `/build` | the build directory (NIX_BUILD_TOP, TMPDIR, ...), bind-mounted |
//! | `/tmp`, `/dev/shm` | fresh tmpfs mounts (`/dev/shm` of `sandbox-dev-shm-size`, 50% by default) |
//! | `/dev` | null, zero, full, random, urandom, tty (and kvm) bound from the host; fd, stdin, stdout, stderr symlinks; a new devpts on `/dev/pts` with `/dev/ptmx` |
//! | `/proc` | a new procfs of the build's PID namespace |
//! | `/etc` | `passwd` and `group` with `nixbld` (1000:100), `hosts` with localhost, byte for byte as Nix 2.8; fixed-output builds get the host's `resolv.conf`, `services` and `hosts` and Nix's `nsswitch.conf` instead |
//! | `sandbox-paths` | bind-mounted as Nix does (recursively, not read-only: the files' owners and modes decide; `target=source`, `?` = optional when missing, a source `/proc` is skipped; store paths there come with their closures) |
//!
//! The template is the part of `/` that is the same for many builds (its
//! directories, mount points and `/etc` files), made once in
//! `<state>/sandbox/<hash of its contents>`; builders never write to it. So a
//! build writes to disk only its store directory (one directory, the input
//! closure's mount points or hard links, and its outputs), which is on the store's
//! file system: after the build the outputs are renamed into the real store.
//!
//! The store directory appears at its logical path whatever its real location,
//! so builds in a store rooted elsewhere (`--store /some/root`) produce exactly
//! the outputs they would in `/nix/store`; [`enter`] does the same for `rix run`
//! and `rix shell`.
//!
//! The child is set up between `clone` and `execve` by [`child`], which only makes
//! system calls on data prepared here; its first step installs the system call
//! filter of [`seccomp`] (Nix's `filter-syscalls`), which unsandboxed builders get
//! too. When the builder exits, the kernel kills
//! every other process of its PID namespace, so nothing it started survives it.

pub mod child;
pub mod enter;
pub mod ids;
pub mod seccomp;

use std::collections::BTreeSet;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use rix_formats::StorePath;
use rix_store::canonicalise::delete_path;
use rix_store::local_store::LocalStore;

use child::{ChildSpec, Op};
pub use ids::{SANDBOX_GID, SANDBOX_UID};

/// The build directory as builders in the sandbox see it (Nix's `sandbox-build-dir`).
pub const SANDBOX_BUILD_DIR: &str = "/build";

/// The `sandbox` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SandboxMode {
    /// Builders see the whole host (`sandbox = false`).
    #[default]
    Off,
    /// Sandboxed, except fixed-output derivations and those with `__noChroot`.
    Relaxed,
    /// Every build sandboxed (`sandbox = true`).
    On,
}

impl SandboxMode {
    /// Parses the setting's value as Nix does (`true`, `false`, `relaxed`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "true" | "1" | "yes" => Some(Self::On),
            "false" | "0" | "no" | "" => Some(Self::Off),
            "relaxed" => Some(Self::Relaxed),
            _ => None,
        }
    }
}

/// One entry of `sandbox-paths`: `target=source`, or `path` (same inside and
/// out); a trailing `?` makes it optional (skipped when the source is missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxPath {
    pub target: PathBuf,
    pub source: PathBuf,
    pub optional: bool,
}

/// Parses the words of `sandbox-paths` / `extra-sandbox-paths`.
pub fn parse_sandbox_paths<S: AsRef<str>>(words: &[S]) -> Result<Vec<SandboxPath>, InvalidSetting> {
    words
        .iter()
        .filter_map(|w| {
            let mut w = w.as_ref();
            if w.is_empty() {
                return None;
            }
            if let Err(e) = no_nul("sandbox-paths", w) {
                return Some(Err(e));
            }
            let optional = w.ends_with('?');
            if optional {
                w = &w[..w.len() - 1];
            }
            let (target, source) = w.split_once('=').unwrap_or((w, w));
            Some(Ok(SandboxPath {
                target: PathBuf::from(target),
                source: PathBuf::from(source),
                optional,
            }))
        })
        .collect()
}

/// Checks `sandbox-dev-shm-size` (the `size=` of the sandbox's `/dev/shm` tmpfs)
/// where the settings are read; the kernel judges the size itself.
pub fn check_shm_size(size: &str) -> Result<(), InvalidSetting> {
    no_nul("sandbox-dev-shm-size", size)
}

/// A sandbox setting that cannot be handed to the kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting '{setting}': {value:?} contains a NUL byte, which no path or mount option can hold")]
pub struct InvalidSetting {
    pub setting: &'static str,
    pub value: String,
}

fn no_nul(setting: &'static str, value: &str) -> Result<(), InvalidSetting> {
    if value.contains('\0') {
        return Err(InvalidSetting {
            setting,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// Whether this kernel lets rix create the sandbox's namespaces (checked once
/// per process by starting a child in them that mounts a fresh `/proc`).
/// `Err` says why not.
pub fn available() -> Result<(), String> {
    probe_once().map(drop)
}

/// Whether builders get a user namespace. As root, when the kernel refuses one
/// (`EPERM`/`EINVAL`: disabled user namespaces), the sandbox is made without it,
/// as Nix 2.8 does: the builder then runs as its build uid itself (see [`ids`]).
fn user_namespace() -> bool {
    probe_once().unwrap_or(true)
}

fn probe_once() -> Result<bool, String> {
    static PROBE: OnceLock<Result<bool, String>> = OnceLock::new();
    PROBE
        .get_or_init(|| match probe(true) {
            Ok(()) => Ok(true),
            Err(e) if nix::unistd::geteuid().is_root() => match probe(false) {
                Ok(()) => Ok(false),
                Err(_) => Err(format!("{e}{}", namespace_hints())),
            },
            Err(e) => Err(format!("{e}{}", namespace_hints())),
        })
        .clone()
}

/// Why the kernel may refuse namespaces, as Nix's notices say: the settings that
/// disable (unprivileged) user namespaces, or a kernel without them.
fn namespace_hints() -> String {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    let root = nix::unistd::geteuid().is_root();
    let mut hints = Vec::new();
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        hints.push("/proc/sys/user/max_user_namespaces is 0");
    }
    if !root && read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        hints.push("/proc/sys/kernel/unprivileged_userns_clone is 0");
    }
    if !root
        && read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1")
    {
        hints.push("/proc/sys/kernel/apparmor_restrict_unprivileged_userns is 1");
    }
    if !Path::new("/proc/self/ns/user").exists() {
        hints.push("/proc/self/ns/user is missing (a kernel without CONFIG_USER_NS)");
    }
    if hints.is_empty() {
        String::new()
    } else {
        format!(
            "; user namespaces appear to be disabled: {}",
            hints.join(", ")
        )
    }
}

fn probe(user_ns: bool) -> Result<(), String> {
    let ops = vec![
        Op::Mount {
            src: None,
            target: c"/".into(),
            fstype: None,
            flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            data: None,
        },
        Op::Mount {
            src: Some(c"proc".into()),
            target: c"/proc".into(),
            fstype: Some(c"proc".into()),
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            data: None,
        },
    ];
    let mut spec = ChildSpec::new(ops, c"/".into(), vec![], vec![], 0, 1, -1, -1, vec![]);
    spec.probe_only = true;
    let child = start(spec, true, None, user_ns)?;
    match waitpid(child.pid, None) {
        Ok(WaitStatus::Exited(_, 0)) => Ok(()),
        other => Err(format!("test child failed: {other:?}")),
    }
}

/// Where a build's sandbox is and who its builder is.
pub struct Sandbox {
    /// `<real store dir>/<drv>.chroot`: the builder's store directory, where it
    /// creates its outputs and where the input closure is mounted.
    store_in_root: PathBuf,
    ids: ids::BuildIds,
    ops: Vec<Op>,
    private_network: bool,
    /// Whether the builder has its own user namespace ([`user_namespace`]).
    user_ns: bool,
}

/// What a sandbox is made of.
pub struct SandboxSetup<'a> {
    pub store: &'a LocalStore,
    pub drv_path: &'a StorePath,
    /// The closure of the inputs.
    pub inputs: &'a BTreeSet<StorePath>,
    pub build_dir: &'a Path,
    /// Fixed-output: network access and the host's name resolution files.
    pub network: bool,
    pub paths: &'a [SandboxPath],
    /// The size of `/dev/shm` (`sandbox-dev-shm-size`, tmpfs's `size=`).
    pub shm_size: &'a str,
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths contain no NUL")
}

fn bind(src: &Path, target: &Path, recursive: bool) -> Op {
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    Op::Mount {
        src: Some(cstr(src)),
        target: cstr(target),
        fstype: None,
        flags,
        data: None,
    }
}

fn remount_ro(target: &Path) -> Op {
    Op::Mount {
        src: None,
        target: cstr(target),
        fstype: None,
        flags: MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV,
        data: None,
    }
}

fn fs_mount(fstype: &CStr, target: &Path, flags: MsFlags, data: Option<&str>) -> Op {
    Op::Mount {
        src: Some(fstype.into()),
        target: cstr(target),
        fstype: Some(fstype.into()),
        flags,
        data: data.map(|d| CString::new(d).expect("no NUL")),
    }
}

/// `/etc/passwd` and `/etc/group` inside, byte for byte as Nix 2.8 writes them
/// (`uid`/`gid`: the builder's ids inside).
fn etc_passwd(uid: u32, gid: u32) -> String {
    format!(
        "root:x:0:0:Nix build user:{SANDBOX_BUILD_DIR}:/noshell\n\
         nixbld:x:{uid}:{gid}:Nix build user:{SANDBOX_BUILD_DIR}:/noshell\n\
         nobody:x:65534:65534:Nobody:/:/noshell\n"
    )
}

fn etc_group(gid: u32) -> String {
    format!("root:x:0:\nnixbld:!:{gid}:\nnogroup:x:65534:\n")
}

/// The absolute path `p` under `root`.
fn under(root: &Path, p: &Path) -> PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
}

pub type IoResult<T> = Result<T, (PathBuf, std::io::Error)>;

fn at(p: &Path) -> impl FnOnce(std::io::Error) -> (PathBuf, std::io::Error) + '_ {
    move |e| (p.to_path_buf(), e)
}

fn mkdir(p: &Path, mode: u32) -> IoResult<()> {
    std::fs::DirBuilder::new()
        .mode(mode)
        .create(p)
        .map_err(at(p))?;
    // The umask may have taken bits away.
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(at(p))
}

fn touch(p: &Path) -> IoResult<()> {
    std::fs::File::create(p).map(drop).map_err(at(p))
}

/// The devices bound from the host.
fn devices() -> Vec<&'static str> {
    let mut devs = vec!["full", "null", "random", "tty", "urandom", "zero"];
    if Path::new("/dev/kvm").exists() {
        devs.push("kvm");
    }
    devs
}

/// The host's name resolution files a fixed-output build gets.
fn host_etc() -> Vec<PathBuf> {
    ["resolv.conf", "services", "hosts"]
        .iter()
        .map(|f| Path::new("/etc").join(f))
        .filter(|p| p.exists())
        .collect()
}

/// The skeleton of the sandbox's `/`, the same for many builds: directories and
/// empty files as mount points, `/etc`'s files, `/dev`'s symlinks. Nothing in it
/// is written by builders: `/tmp` and `/dev/shm` get fresh tmpfs mounts, `/build`
/// and the store directory per-build bind mounts. Kept, once made, in
/// `<state>/sandbox/<hash of its contents>`, so that a build writes nothing but
/// its store directory to disk.
struct Template {
    /// The group of `/` (mode 0750, as Nix's): the build's when rix is root.
    group: Option<u32>,
    /// Directories (relative), with modes; files with contents; symlinks.
    dirs: Vec<(PathBuf, u32)>,
    files: Vec<(PathBuf, String)>,
    links: Vec<(PathBuf, &'static str)>,
}

impl Template {
    fn new(
        store_dir: &Path,
        network: bool,
        paths: &[(PathBuf, PathBuf, bool)],
        group: Option<u32>,
        (uid, gid): (u32, u32),
    ) -> Self {
        let mut t = Template {
            group,
            dirs: Vec::new(),
            files: Vec::new(),
            links: Vec::new(),
        };
        let dir = |t: &mut Template, p: &Path, mode: u32| {
            let mut acc = PathBuf::new();
            for c in p.components() {
                acc.push(c);
                if !t.dirs.iter().any(|(d, _)| *d == acc) {
                    t.dirs
                        .push((acc.clone(), if acc == p { mode } else { 0o755 }));
                }
            }
        };
        for (d, mode) in [
            ("tmp", 0o1777),
            ("etc", 0o755),
            ("dev", 0o755),
            ("dev/shm", 0o755),
            ("dev/pts", 0o755),
            ("proc", 0o755),
            ("build", 0o700),
        ] {
            dir(&mut t, Path::new(d), mode);
        }
        let rel_store = store_dir.strip_prefix("/").unwrap_or(store_dir);
        // A store under /tmp is made inside the build's own /tmp (a tmpfs).
        if !rel_store.starts_with("tmp") {
            dir(&mut t, rel_store, 0o755);
        }
        t.files.push(("etc/passwd".into(), etc_passwd(uid, gid)));
        t.files.push(("etc/group".into(), etc_group(gid)));
        if network {
            t.files.push((
                "etc/nsswitch.conf".into(),
                "hosts: files dns\nservices: files\n".into(),
            ));
            for h in host_etc() {
                t.files.push((under(Path::new(""), &h), String::new()));
            }
        } else {
            t.files.push((
                "etc/hosts".into(),
                "127.0.0.1 localhost\n::1 localhost\n".into(),
            ));
        }
        for d in devices() {
            t.files.push((Path::new("dev").join(d), String::new()));
        }
        for (link, target) in [
            ("dev/fd", "/proc/self/fd"),
            ("dev/stdin", "/proc/self/fd/0"),
            ("dev/stdout", "/proc/self/fd/1"),
            ("dev/stderr", "/proc/self/fd/2"),
            ("dev/ptmx", "/dev/pts/ptmx"),
        ] {
            t.links.push((link.into(), target));
        }
        for (target, _, is_dir) in paths {
            let rel = under(Path::new(""), target);
            if *is_dir {
                dir(&mut t, &rel, 0o755);
            } else {
                if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
                    dir(&mut t, parent, 0o755);
                }
                if !t.files.iter().any(|(f, _)| *f == rel) {
                    t.files.push((rel, String::new()));
                }
            }
        }
        t
    }

    fn key(&self) -> String {
        let text = format!(
            "v1 {:?} {:?} {:?} {:?}",
            self.group, self.dirs, self.files, self.links
        );
        let digest = rix_formats::hash::HashAlgo::Sha256.digest(text.as_bytes());
        rix_formats::nixbase32::encode(&digest.digest()[..16])
    }

    /// The template's directory under `state_dir`, made if missing.
    fn ensure(&self, state_dir: &Path) -> IoResult<PathBuf> {
        let base = state_dir.join("sandbox");
        let dest = base.join(self.key());
        if dest.is_dir() {
            return Ok(dest);
        }
        std::fs::create_dir_all(&base).map_err(at(&base))?;
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = base.join(format!(".tmp-{}-{n}", std::process::id()));
        let _ = delete_path(&tmp);
        mkdir(&tmp, 0o755)?;
        for (d, mode) in &self.dirs {
            mkdir(&tmp.join(d), *mode)?;
        }
        for (f, text) in &self.files {
            let p = tmp.join(f);
            std::fs::write(&p, text).map_err(at(&p))?;
        }
        for (l, target) in &self.links {
            let p = tmp.join(l);
            std::os::unix::fs::symlink(target, &p).map_err(at(&p))?;
        }
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o750)).map_err(at(&tmp))?;
        if let Some(gid) = self.group {
            std::os::unix::fs::chown(&tmp, Some(0), Some(gid)).map_err(at(&tmp))?;
        }
        // Another process may have made the same template meanwhile.
        if std::fs::rename(&tmp, &dest).is_err() && dest.is_dir() {
            let _ = delete_path(&tmp);
        }
        if !dest.is_dir() {
            return Err((
                dest,
                std::io::Error::other("cannot create the sandbox template"),
            ));
        }
        Ok(dest)
    }
}

impl Sandbox {
    /// Prepares the builder's store directory on the host (with the input closure
    /// linked or to be mounted) and the list of mounts the child will make (see
    /// the module docs).
    pub fn prepare(s: &SandboxSetup<'_>) -> IoResult<Self> {
        let layout = s.store.layout();
        let ids = ids::BuildIds::allocate(&layout.state_dir).map_err(at(&layout.state_dir))?;
        let store_in_root = layout.real_store_dir.join(format!("{}.chroot", s.drv_path));
        delete_path(&store_in_root).map_err(at(&store_in_root))?;
        let mut sb = Sandbox {
            store_in_root,
            ids,
            ops: Vec::new(),
            private_network: !s.network,
            user_ns: user_namespace(),
        };
        if !sb.user_ns && !sb.ids.privileged {
            return Err((
                layout.state_dir.clone(),
                std::io::Error::other(
                    "user namespaces are needed to build in the sandbox as a user other than root",
                ),
            ));
        }
        sb.populate(s)?;
        Ok(sb)
    }

    fn populate(&mut self, s: &SandboxSetup<'_>) -> IoResult<()> {
        let privileged = self.ids.privileged;
        let store_dir = Path::new(s.store.store_dir().as_str());
        let real_store = s.store.layout().real_store_dir.clone();

        // Settings are checked where they are read; a library caller's too, here,
        // before anything reaches a CString.
        let invalid = |e: InvalidSetting| {
            (
                PathBuf::from(e.setting),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            )
        };
        check_shm_size(s.shm_size).map_err(invalid)?;
        for sp in s.paths {
            for p in [&sp.source, &sp.target] {
                no_nul("sandbox-paths", &p.to_string_lossy()).map_err(invalid)?;
            }
        }
        // sandbox-paths: store paths named there come with their closures.
        let mut inputs: BTreeSet<StorePath> = s.inputs.clone();
        let mut extra_paths = Vec::new();
        for sp in s.paths {
            if sp.source == Path::new("/proc") {
                // As Nix: the sandbox has its own /proc anyway.
                continue;
            }
            let mut source = sp.source.clone();
            if let Ok(rel) = sp.source.strip_prefix(store_dir) {
                if let Some(first) = rel.components().next() {
                    let name = first.as_os_str().to_string_lossy();
                    if let Ok(p) = StorePath::from_base_name(&name) {
                        if s.store.is_valid(&p).unwrap_or(false) {
                            if let Ok(closure) = s.store.closure([p.clone()]) {
                                inputs.extend(closure);
                            }
                        }
                        source = real_store.join(rel);
                    }
                }
            }
            match std::fs::metadata(&source) {
                Ok(meta) => extra_paths.push((sp.target.clone(), source, meta.is_dir())),
                Err(e) if sp.optional && e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err((sp.source.clone(), e)),
            }
        }
        let group = privileged.then_some(self.ids.gid);
        let inside = self.inside_ids();
        let root = Template::new(store_dir, s.network, &extra_paths, group, inside)
            .ensure(&s.store.layout().state_dir)?;
        let r = |p: &str| root.join(p);

        // The builder's store directory, as Nix makes it (1775, group nixbld).
        let sdir = self.store_in_root.clone();
        mkdir(&sdir, 0o1775)?;
        if privileged {
            std::os::unix::fs::chown(&sdir, Some(0), Some(self.ids.gid)).map_err(at(&sdir))?;
        }
        let store_inside = under(&root, store_dir);
        // A read-only view of the real store, mounted for a moment on /proc, from
        // which each input is bound: bind mounts inherit read-only, nosuid, nodev.
        let ro = r("proc");
        let mut ops = vec![
            // The id maps first: files made below belong to mapped ids.
            Op::WaitForParent,
            Op::Mount {
                src: None,
                target: c"/".into(),
                fstype: None,
                flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                data: None,
            },
            // The root must be a mount point for pivot_root.
            bind(&root, &root, false),
            fs_mount(
                c"tmpfs",
                &r("tmp"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some("mode=1777"),
            ),
        ];
        if store_dir.starts_with("/tmp") {
            // The store's directories inside this build's /tmp, made as the
            // build user (the setup identity may have no id inside).
            ops.push(Op::SetFsIds {
                uid: inside.0,
                gid: inside.1,
            });
            let mut acc = r("tmp");
            for c in store_dir
                .strip_prefix("/tmp")
                .expect("under /tmp")
                .components()
            {
                acc.push(c);
                ops.push(Op::Mkdir(cstr(&acc)));
            }
        }
        ops.push(bind(&sdir, &store_inside, false));
        let mut input_mounts = Vec::new();
        for p in &inputs {
            let name = p.to_string();
            let src = real_store.join(&name);
            let dst = sdir.join(&name);
            let meta = std::fs::symlink_metadata(&src).map_err(at(&src))?;
            let mut mount = true;
            if meta.is_dir() {
                mkdir(&dst, 0o555)?;
            } else if privileged || meta.file_type().is_symlink() {
                // The builder cannot write root's 0444 files, and symlinks are
                // immutable: a hard link is cheaper than a mount.
                if std::fs::hard_link(&src, &dst).is_ok() {
                    mount = false;
                } else if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(&src).map_err(at(&src))?;
                    std::os::unix::fs::symlink(target, &dst).map_err(at(&dst))?;
                    mount = false;
                } else {
                    touch(&dst)?;
                }
            } else {
                touch(&dst)?;
            }
            if mount {
                input_mounts.push(bind(&ro.join(&name), &store_inside.join(&name), false));
            }
        }
        // (Only when some input needs a mount: the unmount waits for an RCU
        // grace period.)
        if !input_mounts.is_empty() {
            ops.push(bind(&real_store, &ro, false));
            ops.push(remount_ro(&ro));
            ops.append(&mut input_mounts);
            ops.push(Op::Umount(cstr(&ro)));
        }
        ops.push(bind(s.build_dir, &r("build"), false));
        for d in devices() {
            let dev = Path::new("/dev").join(d);
            ops.push(bind(&dev, &under(&root, &dev), false));
        }
        if s.network {
            for h in host_etc() {
                ops.push(bind(&h, &under(&root, &h), false));
            }
        }
        // Bound as Nix binds them (recursively, keeping the source's flags): what
        // the builder may write there is up to the files' owners and modes.
        for (target, source, _) in extra_paths {
            ops.push(bind(&source, &under(&root, &target), true));
        }
        ops.push(fs_mount(
            c"tmpfs",
            &r("dev/shm"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(&format!("size={}", s.shm_size)),
        ));
        ops.push(fs_mount(
            c"devpts",
            &r("dev/pts"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,mode=0620,ptmxmode=0666"),
        ));
        ops.push(fs_mount(
            c"proc",
            &r("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None,
        ));
        ops.push(Op::Hostname);
        if self.private_network {
            ops.push(Op::LoopbackUp);
        }
        ops.push(Op::Chdir(cstr(&root)));
        ops.push(Op::PivotRoot);
        ops.push(Op::SetIds {
            uid: inside.0,
            gid: inside.1,
            drop_groups: privileged,
        });
        ops.push(Op::Chdir(CString::new(SANDBOX_BUILD_DIR).expect("no NUL")));
        self.ops = ops;
        Ok(())
    }

    /// Gives the build directory, and what rix wrote into it, to the builder.
    pub fn give_to_builder(&self, build_dir: &Path) -> IoResult<()> {
        if self.ids.privileged {
            chown_tree(build_dir, self.ids.uid, self.ids.gid)?;
        }
        Ok(())
    }

    /// Where the builder's output `p` is on the host while the sandbox exists.
    pub fn output_in_root(&self, p: &StorePath) -> PathBuf {
        self.store_in_root.join(p.to_string())
    }

    /// The builder's uid and gid as it sees them: 1000/100 in its user namespace,
    /// its build ids themselves without one (as Nix's `sandboxUid()`).
    fn inside_ids(&self) -> (u32, u32) {
        if self.user_ns {
            (SANDBOX_UID, SANDBOX_GID)
        } else {
            (self.ids.uid, self.ids.gid)
        }
    }

    /// Whether the builder runs as another user than rix (rix is root).
    pub fn privileged(&self) -> bool {
        self.ids.privileged
    }

    /// Starts the builder in the sandbox with its output going to `log`, under
    /// the system call policy `syscalls`.
    pub fn spawn(
        &mut self,
        program: CString,
        argv: Vec<CString>,
        envp: Vec<CString>,
        log: &OwnedFd,
        syscalls: seccomp::Policy,
    ) -> Result<SandboxChild, String> {
        let devnull = std::fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
        let ops = std::mem::take(&mut self.ops);
        let mut spec = ChildSpec::new(
            ops,
            program,
            argv,
            envp,
            devnull.as_raw_fd(),
            log.as_raw_fd(),
            -1,
            -1,
            vec![],
        );
        spec.syscalls = Some(syscalls);
        start(spec, self.private_network, Some(&self.ids), self.user_ns)
    }

    /// Moves a finished output from the sandbox's store into the real one, owned
    /// by rix's user again. `false` when the builder did not create it.
    pub fn take_output(&self, p: &StorePath, dest: &Path) -> std::io::Result<bool> {
        let src = self.output_in_root(p);
        if std::fs::symlink_metadata(&src).is_err() {
            return Ok(false);
        }
        self.reclaim(&src).map_err(|(_, e)| e)?;
        delete_path(dest)?;
        std::fs::rename(&src, dest)?;
        Ok(true)
    }

    /// Makes a tree the builder wrote belong to rix's user (when rix is root).
    pub fn reclaim(&self, p: &Path) -> IoResult<()> {
        if self.ids.privileged {
            let euid = nix::unistd::geteuid().as_raw();
            let egid = nix::unistd::getegid().as_raw();
            chown_tree(p, euid, egid)?;
        }
        Ok(())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = delete_path(&self.store_in_root);
    }
}

/// `lchown` of a whole tree.
fn chown_tree(p: &Path, uid: u32, gid: u32) -> IoResult<()> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).map_err(at(p))?;
    let meta = std::fs::symlink_metadata(p).map_err(at(p))?;
    if meta.is_dir() {
        for e in std::fs::read_dir(p).map_err(at(p))? {
            chown_tree(&e.map_err(at(p))?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// A builder running in a sandbox: PID 1 of its namespace (here seen with its
/// pid outside), also its own process group.
pub struct SandboxChild {
    pub pid: Pid,
    /// Kept open while the builder runs: the child checks it just before exec
    /// to know that rix is still there.
    _sync: Option<OwnedFd>,
}

impl SandboxChild {
    /// Waits for the builder, as `std::process::Child::wait` would.
    pub fn wait(self) -> std::io::Result<std::process::ExitStatus> {
        use std::os::unix::process::ExitStatusExt;
        loop {
            match waitpid(self.pid, None) {
                Ok(WaitStatus::Exited(_, code)) => {
                    return Ok(std::process::ExitStatus::from_raw((code & 0xff) << 8))
                }
                Ok(WaitStatus::Signaled(_, sig, _)) => {
                    return Ok(std::process::ExitStatus::from_raw(sig as i32))
                }
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Clones the child into new namespaces, writes its id maps, lets it go, and
/// waits until it has exec'd (or reports where its setup failed).
fn start(
    mut spec: ChildSpec,
    private_network: bool,
    ids: Option<&ids::BuildIds>,
    user_ns: bool,
) -> Result<SandboxChild, String> {
    let (sync_r, sync_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("creating a pipe: {e}"))?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("creating a pipe: {e}"))?;
    spec.sync_read = sync_r.as_raw_fd();
    spec.err_write = err_w.as_raw_fd();
    spec.parent_fds = vec![sync_w.as_raw_fd(), err_r.as_raw_fd()];
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    if user_ns {
        flags |= CloneFlags::CLONE_NEWUSER;
    }
    if private_network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    let pid = clone_child(&spec, flags)
        .map_err(|e| format!("cannot create the build's namespaces: {e}"))?;
    drop(sync_r);
    drop(err_w);
    let child = SandboxChild {
        pid,
        _sync: Some(sync_w),
    };
    let mut setup_error = None;
    if let Some(ids) = ids {
        let (uid_map, setgroups, gid_map) = ids.maps();
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let w = |f: &str, text: &str| {
            std::fs::write(proc.join(f), text)
                .map_err(|e| format!("writing {f} of the builder: {e}"))
        };
        let maps = || {
            if !user_ns {
                return Ok(());
            }
            w("uid_map", &uid_map)
                .and_then(|()| setgroups.map_or(Ok(()), |s| w("setgroups", s)))
                .and_then(|()| w("gid_map", &gid_map))
        };
        let written = maps().and_then(|()| {
            let sync = child._sync.as_ref().expect("sync pipe");
            nix::unistd::write(sync, b"1")
                .map(drop)
                .map_err(|e| format!("starting the builder: {e}"))
        });
        if let Err(e) = written {
            // The child may have failed already (and said why), or still wait.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            setup_error = Some(e);
        }
    }
    // The error pipe closes when the child execs (close-on-exec) or exits.
    let mut msg = Vec::new();
    let mut f = std::fs::File::from(err_r);
    let _ = std::io::Read::read_to_end(&mut f, &mut msg);
    if let Some((stage, errno)) = child::decode_failure(&msg) {
        let _ = waitpid(pid, None);
        // A builder program missing in the sandbox: say which setting puts
        // it there (a static shell for `/bin/sh`, as Nix's sandbox shell).
        let hint = if child::is_exec_stage(stage) && errno == nix::errno::Errno::ENOENT {
            "; the sandbox has only the store paths the build depends on and what the \
             'sandbox-paths' setting binds: give it the program with e.g. \
             --option extra-sandbox-paths /bin/sh=/bin/busybox (a static shell: \
             apt-get install busybox-static)"
        } else {
            ""
        };
        return Err(format!(
            "while setting up the build environment: {}: {}{hint}",
            spec.describe(stage),
            errno.desc()
        ));
    }
    if let Some(e) = setup_error {
        let _ = waitpid(pid, None);
        return Err(e);
    }
    Ok(child)
}

#[allow(unsafe_code)]
fn clone_child(spec: &ChildSpec, flags: CloneFlags) -> nix::Result<Pid> {
    let mut stack = vec![0u8; 256 * 1024];
    // SAFETY: without CLONE_VM the child gets a copy of this address space, so
    // `spec` (owned by our caller, alive across the call) and the stack buffer
    // are valid in it. In the child, `ChildSpec::run` only makes async-signal-safe
    // system calls on memory prepared here (no allocation, no locks: other threads
    // of rix may have held them at the time of the clone) and ends in execve or
    // _exit, never returning into this function. Its stack use is a few KiB.
    unsafe {
        nix::sched::clone(
            Box::new(|| spec.run()),
            &mut stack,
            flags,
            Some(nix::libc::SIGCHLD),
        )
    }
}
