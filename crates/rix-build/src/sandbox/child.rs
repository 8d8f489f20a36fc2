//! The sandboxed child between `clone` and `execve`.
//!
//! rix is multi-threaded, and `clone` copies only the calling thread: another
//! thread may have held the allocator's lock (or any other lock) at that moment,
//! so the child must not allocate, lock, panic or touch Rust's standard streams.
//! Everything it needs is therefore prepared by the parent as a [`ChildSpec`]: a
//! list of [`Op`]s over C strings, and the builder's `argv`/`envp` as
//! NUL-terminated pointer arrays. The child runs the ops one by one with plain
//! system calls (all async-signal-safe), and on failure writes the index of the
//! failing op and `errno` into the error pipe and exits; the parent turns that
//! into a message with [`ChildSpec::describe`]. A successful `execve` closes the
//! error pipe (it is close-on-exec), which the parent reads as success.

use std::ffi::{c_char, CStr, CString};
use std::os::fd::RawFd;
use std::ptr;

use nix::errno::Errno;
use nix::libc;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chdir, pivot_root, setsid};

/// One step of the child's setup.
#[derive(Debug)]
pub enum Op {
    /// `mount(2)`.
    Mount {
        src: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: MsFlags,
        data: Option<CString>,
    },
    /// Lazy unmount (`MNT_DETACH`).
    Umount(CString),
    /// `mkdir(2)`, mode 0755.
    Mkdir(CString),
    /// Creates files as this (inside) user and group from now on.
    SetFsIds {
        uid: u32,
        gid: u32,
    },
    Chdir(CString),
    /// `pivot_root(".", ".")`, then the old root (stacked on the new one) is
    /// detached; the current directory must be the new root.
    PivotRoot,
    /// Host name `localhost`, NIS domain `(none)` (the kernel's default).
    Hostname,
    /// Brings up the loopback interface of a fresh network namespace.
    LoopbackUp,
    /// Waits until the parent has written the uid/gid maps (one byte on the sync
    /// pipe); exits quietly if the parent died instead.
    WaitForParent,
    /// Leaves the setup identity for the build user (no supplementary groups
    /// when `drop_groups`).
    SetIds {
        uid: u32,
        gid: u32,
        drop_groups: bool,
    },
}

/// What the child does, prepared by the parent.
pub struct ChildSpec {
    pub ops: Vec<Op>,
    pub program: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// Standard input (usually /dev/null) and output/error (the log pipe).
    pub stdin: RawFd,
    pub stdout: RawFd,
    /// The child's ends of the sync and error pipes (close-on-exec).
    pub sync_read: RawFd,
    pub err_write: RawFd,
    /// The parent's ends, which the child closes first.
    pub parent_fds: Vec<RawFd>,
    /// Build-time process settings, as Nix's: no core dumps, no address space
    /// randomisation.
    pub hardening: bool,
    /// The system call filter and `no_new_privs`, installed before the ops.
    pub syscalls: Option<super::seccomp::Policy>,
    /// Start a new session (so that the child's pid is also its process group).
    pub new_session: bool,
    /// Exit with status 0 after the ops (the availability probe).
    pub probe_only: bool,
    argv_ptrs: Vec<*const c_char>,
    envp_ptrs: Vec<*const c_char>,
}

/// Error-pipe stage codes outside the ops.
const STAGE_SECCOMP: u32 = u32::MAX - 4;
const STAGE_FDS: u32 = u32::MAX - 3;
const STAGE_PROCESS: u32 = u32::MAX - 2;
const STAGE_PARENT_GONE: u32 = u32::MAX - 1;
const STAGE_EXEC: u32 = u32::MAX;

/// Whether a failure was at `execve` (the builder's program itself).
pub(crate) fn is_exec_stage(stage: u32) -> bool {
    stage == STAGE_EXEC
}

impl ChildSpec {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ops: Vec<Op>,
        program: CString,
        argv: Vec<CString>,
        envp: Vec<CString>,
        stdin: RawFd,
        stdout: RawFd,
        sync_read: RawFd,
        err_write: RawFd,
        parent_fds: Vec<RawFd>,
    ) -> Self {
        let argv_ptrs = argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(ptr::null()))
            .collect();
        let envp_ptrs = envp
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(ptr::null()))
            .collect();
        Self {
            ops,
            program,
            argv,
            envp,
            stdin,
            stdout,
            sync_read,
            err_write,
            parent_fds,
            hardening: true,
            syscalls: None,
            new_session: true,
            probe_only: false,
            argv_ptrs,
            envp_ptrs,
        }
    }

    /// What the child was doing at `stage` (from the error pipe), for messages.
    pub fn describe(&self, stage: u32) -> String {
        let s = |c: &CStr| c.to_string_lossy().into_owned();
        match stage {
            STAGE_SECCOMP => "installing the system call filter \
                              (setting 'filter-syscalls' to false builds without it)"
                .into(),
            STAGE_FDS => "setting up the builder's standard file descriptors".into(),
            STAGE_PROCESS => "setting up the builder's process attributes".into(),
            STAGE_PARENT_GONE => "waiting for rix (it exited)".into(),
            STAGE_EXEC => format!("executing '{}'", s(&self.program)),
            i => match self.ops.get(i as usize) {
                Some(Op::Mount {
                    src,
                    target,
                    fstype,
                    ..
                }) => match (src, fstype) {
                    (_, Some(t)) if t.as_bytes() != b"none" => {
                        format!("mounting {} on '{}'", s(t), s(target))
                    }
                    (Some(src), _) => format!("bind-mounting '{}' on '{}'", s(src), s(target)),
                    _ => format!("changing the mount '{}'", s(target)),
                },
                Some(Op::Umount(t)) => format!("unmounting '{}'", s(t)),
                Some(Op::Chdir(t)) => format!("changing directory to '{}'", s(t)),
                Some(Op::PivotRoot) => "pivoting to the sandbox's root".into(),
                Some(Op::Mkdir(t)) => format!("creating '{}'", s(t)),
                Some(Op::SetFsIds { uid, gid }) => {
                    format!("switching the file system ids to {uid}:{gid}")
                }
                Some(Op::Hostname) => "setting the host name".into(),
                Some(Op::LoopbackUp) => "bringing up the loopback interface".into(),
                Some(Op::WaitForParent) => "waiting for the user namespace mapping".into(),
                Some(Op::SetIds { uid, gid, .. }) => {
                    format!("switching to uid {uid} and gid {gid}")
                }
                None => format!("stage {i}"),
            },
        }
    }

    /// Runs in the child: the ops, then `execve`. Never returns.
    ///
    /// Async-signal-safe: only system calls on data prepared by the parent.
    pub fn run(&self) -> ! {
        for &fd in &self.parent_fds {
            close(fd);
        }
        if let Some(policy) = &self.syscalls {
            if let Err(e) = policy.apply() {
                self.fail(STAGE_SECCOMP, e);
            }
        }
        for (i, op) in self.ops.iter().enumerate() {
            if let Err(e) = self.run_op(op) {
                self.fail(i as u32, e);
            }
        }
        if self.probe_only {
            exit_now(0);
        }
        if self.new_session {
            let _ = setsid();
        }
        if let Err(e) = self.process_attributes() {
            self.fail(STAGE_PROCESS, e);
        }
        if let Err(e) = self.standard_fds() {
            self.fail(STAGE_FDS, e);
        }
        // The parent keeps its end of the sync pipe open while it waits for us: a
        // hang-up means it died after the maps were written, and nobody would
        // stop this builder.
        if parent_gone(self.sync_read) {
            self.fail(STAGE_PARENT_GONE, Errno::ESRCH);
        }
        let e = exec(&self.program, &self.argv_ptrs, &self.envp_ptrs);
        self.fail(STAGE_EXEC, e)
    }

    fn run_op(&self, op: &Op) -> Result<(), Errno> {
        match op {
            Op::Mount {
                src,
                target,
                fstype,
                flags,
                data,
            } => mount(
                src.as_deref(),
                target.as_c_str(),
                fstype.as_deref(),
                *flags,
                data.as_deref(),
            ),
            Op::Umount(t) => umount2(t.as_c_str(), MntFlags::MNT_DETACH),
            Op::Chdir(t) => chdir(t.as_c_str()),
            Op::PivotRoot => {
                pivot_root(c".", c".")?;
                umount2(c".", MntFlags::MNT_DETACH)?;
                chdir(c"/")
            }
            Op::Mkdir(t) => mkdir(t),
            Op::SetFsIds { uid, gid } => {
                set_fs_ids(*uid, *gid);
                Ok(())
            }
            Op::Hostname => {
                nix::unistd::sethostname("localhost")?;
                set_domainname(b"(none)")
            }
            Op::LoopbackUp => loopback_up(),
            Op::WaitForParent => match read_byte(self.sync_read) {
                Some(_) => Ok(()),
                None => exit_now(1),
            },
            Op::SetIds {
                uid,
                gid,
                drop_groups,
            } => set_ids(*uid, *gid, *drop_groups),
        }
    }

    fn process_attributes(&self) -> Result<(), Errno> {
        // After setuid, which clears the parent-death signal.
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
        // Nix's builders start with umask 0022, whatever rix's is.
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        // And with the kernel's huge-page policy: rix turns huge pages off for
        // itself (see rix-cli's main.rs), which children would inherit.
        let _ = nix::sys::prctl::set_thp_disable(false);
        if self.hardening {
            no_core_dumps_no_aslr();
        }
        Ok(())
    }

    fn standard_fds(&self) -> Result<(), Errno> {
        dup2(self.stdin, 0)?;
        dup2(self.stdout, 1)?;
        dup2(self.stdout, 2)?;
        // Everything else is closed, except the error pipe (close-on-exec) and the
        // sync pipe (polled just before exec, also close-on-exec).
        let keep_hi = self.err_write.max(self.sync_read);
        let keep_lo = self.err_write.min(self.sync_read);
        close_range(3, keep_lo - 1);
        close_range(keep_lo + 1, keep_hi - 1);
        close_range(keep_hi + 1, i32::MAX);
        Ok(())
    }

    fn fail(&self, stage: u32, e: Errno) -> ! {
        let mut msg = [0u8; 8];
        msg[..4].copy_from_slice(&stage.to_le_bytes());
        msg[4..].copy_from_slice(&(e as i32).to_le_bytes());
        write_all(self.err_write, &msg);
        exit_now(127)
    }
}

/// Decodes an error-pipe message: (stage, errno).
pub fn decode_failure(msg: &[u8]) -> Option<(u32, Errno)> {
    let stage = u32::from_le_bytes(msg.get(..4)?.try_into().ok()?);
    let errno = i32::from_le_bytes(msg.get(4..8)?.try_into().ok()?);
    Some((stage, Errno::from_raw(errno)))
}

// --- thin system-call wrappers (no allocation) ---

#[allow(unsafe_code)]
fn close(fd: RawFd) {
    // SAFETY: closing a descriptor number has no memory-safety requirements; the
    // numbers are the parent's pipe ends, which this process no longer needs.
    unsafe {
        libc::close(fd);
    }
}

#[allow(unsafe_code)]
fn close_range(first: RawFd, last: RawFd) {
    if first > last {
        return;
    }
    // SAFETY: close_range(2) takes plain integers. Failure (old kernels) only
    // leaves extra descriptors open until exec closes the close-on-exec ones.
    unsafe {
        libc::syscall(libc::SYS_close_range, first as u32, last as u32, 0u32);
    }
}

#[allow(unsafe_code)]
fn dup2(from: RawFd, to: RawFd) -> Result<(), Errno> {
    // SAFETY: dup2(2) on integer descriptors; no memory is involved.
    Errno::result(unsafe { libc::dup2(from, to) }).map(drop)
}

#[allow(unsafe_code)]
fn read_byte(fd: RawFd) -> Option<u8> {
    let mut b = 0u8;
    loop {
        // SAFETY: reads at most one byte into a live local variable.
        let n = unsafe { libc::read(fd, (&raw mut b).cast(), 1) };
        match n {
            1 => return Some(b),
            -1 if Errno::last() == Errno::EINTR => continue,
            _ => return None,
        }
    }
}

#[allow(unsafe_code)]
fn write_all(fd: RawFd, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: writes from a live slice of the given length.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        if n <= 0 {
            return;
        }
        data = &data[n as usize..];
    }
}

#[allow(unsafe_code)]
fn parent_gone(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polls one live pollfd with a zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLHUP | libc::POLLERR) != 0
}

#[allow(unsafe_code)]
fn set_domainname(name: &[u8]) -> Result<(), Errno> {
    // SAFETY: the pointer and length describe a live byte slice.
    Errno::result(unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) }).map(drop)
}

#[allow(unsafe_code)]
fn loopback_up() -> Result<(), Errno> {
    // SAFETY: socket(2) takes integers; the descriptor is closed below.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    Errno::result(sock)?;
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as c_char;
    }
    ifr.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as i16;
    // SAFETY: SIOCSIFFLAGS reads a live ifreq.
    let r = Errno::result(unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &ifr) }).map(drop);
    close(sock);
    r
}

/// setgroups/setresgid/setresuid as raw system calls: glibc's wrappers would
/// try to change the credentials of every thread it believes exists (copied
/// from the parent) and wait for them forever.
#[allow(unsafe_code)]
fn set_ids(uid: u32, gid: u32, drop_groups: bool) -> Result<(), Errno> {
    // SAFETY: these system calls take integers (and a null list of zero groups).
    unsafe {
        if drop_groups {
            Errno::result(libc::syscall(
                libc::SYS_setgroups,
                0usize,
                ptr::null::<u32>(),
            ))?;
        }
        Errno::result(libc::syscall(libc::SYS_setresgid, gid, gid, gid))?;
        Errno::result(libc::syscall(libc::SYS_setresuid, uid, uid, uid))?;
    }
    Ok(())
}

#[allow(unsafe_code)]
fn set_fs_ids(uid: u32, gid: u32) {
    // SAFETY: setfsgid/setfsuid take integers (and cannot fail in a way that
    // matters here: a later file creation reports it).
    unsafe {
        libc::syscall(libc::SYS_setfsgid, gid);
        libc::syscall(libc::SYS_setfsuid, uid);
    }
}

#[allow(unsafe_code)]
fn mkdir(p: &CStr) -> Result<(), Errno> {
    // SAFETY: the pointer is a live NUL-terminated string.
    Errno::result(unsafe { libc::mkdir(p.as_ptr(), 0o755) }).map(drop)
}

#[allow(unsafe_code)]
fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) ends the process without running any user-space clean-up,
    // the only correct way out of a child that has not exec'd.
    unsafe { libc::_exit(code) }
}

#[allow(unsafe_code)]
fn no_core_dumps_no_aslr() {
    let limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a live rlimit; personality takes an integer.
    // Both are best effort, as in Nix.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &limit);
        let cur = libc::personality(0xffff_ffff);
        if cur != -1 {
            libc::personality((cur | libc::ADDR_NO_RANDOMIZE) as libc::c_ulong);
        }
    }
}

#[allow(unsafe_code)]
fn exec(program: &CStr, argv: &[*const c_char], envp: &[*const c_char]) -> Errno {
    // SAFETY: argv and envp are NUL-terminated arrays of pointers into CStrings
    // owned by the ChildSpec, which outlives this call (it only returns on error).
    unsafe {
        libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr());
    }
    Errno::last()
}
