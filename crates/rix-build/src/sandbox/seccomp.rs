//! System-call filters (seccomp BPF), as Nix's `filter-syscalls` (`setupSeccomp`
//! in `local-derivation-goal.cc`): builders cannot make set-user-ID or
//! set-group-ID files (`chmod`, `fchmod`, `fchmodat`, `fchmodat2` with `S_ISUID`
//! or `S_ISGID` in the mode fail with `EPERM`), nor set extended attributes
//! (`setxattr`, `lsetxattr`, `fsetxattr` fail with `ENOTSUP`: NARs cannot
//! represent them).
//!
//! The program is assembled here rather than with a filter crate because it must
//! cover every ABI a builder on this host can use, as libseccomp does for Nix
//! (which adds x86 and x32 on x86_64, 32-bit ARM on aarch64): crates that target
//! one architecture kill processes of the others (32-bit builders), or let x32
//! system calls through. The program: load the architecture; for each known one,
//! load the system call number (x32's marker bit cleared) and compare it with each
//! rule's; a rule either fails the call or tests the low 32 bits of one argument
//! (mode bits live there) against a mask. Anything else is allowed.
//!
//! [`install`] runs between `fork`/`clone` and `execve`: no allocation, two
//! `prctl` calls on memory prepared by the parent.

use nix::errno::Errno;
use nix::libc;

/// `AUDIT_ARCH_*` values (`<linux/audit.h>`).
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
pub const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;
pub const AUDIT_ARCH_ARM: u32 = 0x4000_0028;

/// x32 system calls are x86_64's numbers with this bit set.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// When a rule's system call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Always.
    Always,
    /// When the low 32 bits of argument `arg` (0-based) share a bit with `mask`.
    ArgAnyBit { arg: u8, mask: u32 },
}

/// One system call that fails with `errno` when `check` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub nr: u32,
    pub check: Check,
    pub errno: i32,
}

/// The rules for one architecture (ABI) as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchRules {
    pub arch: u32,
    /// Bits cleared from the system call number before comparing (x32's marker).
    pub nr_clear: u32,
    pub rules: Vec<Rule>,
}

/// A compiled filter program.
#[derive(Clone)]
pub struct Program(Vec<libc::sock_filter>);

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Program({} instructions)", self.0.len())
    }
}

const fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

const LD_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
const JEQ: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
const JSET: u32 = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
const AND: u32 = libc::BPF_ALU | libc::BPF_AND | libc::BPF_K;
const RET: u32 = libc::BPF_RET | libc::BPF_K;

/// Offsets in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
fn arg_low_offset(arg: u8) -> u32 {
    let base = 16 + 8 * u32::from(arg);
    if cfg!(target_endian = "little") {
        base
    } else {
        base + 4
    }
}

fn ret_errno(errno: i32) -> libc::sock_filter {
    stmt(
        RET,
        libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA),
    )
}

fn ret_allow() -> libc::sock_filter {
    stmt(RET, libc::SECCOMP_RET_ALLOW)
}

fn jump_len(n: usize) -> u8 {
    u8::try_from(n).expect("a seccomp block longer than 255 instructions")
}

impl Program {
    /// Assembles the rules of each architecture; calls of other architectures,
    /// and calls no rule names, are allowed.
    pub fn compile(arches: &[ArchRules]) -> Self {
        let mut prog = vec![stmt(LD_ABS, ARCH_OFFSET)];
        for a in arches {
            let mut block = vec![stmt(LD_ABS, NR_OFFSET)];
            if a.nr_clear != 0 {
                block.push(stmt(AND, !a.nr_clear));
            }
            for r in &a.rules {
                let body = match r.check {
                    Check::Always => vec![ret_errno(r.errno)],
                    Check::ArgAnyBit { arg, mask } => vec![
                        stmt(LD_ABS, arg_low_offset(arg)),
                        jump(JSET, mask, 0, 1),
                        ret_errno(r.errno),
                        // The number is no longer in the accumulator: no other
                        // rule can match anyway (one rule per call).
                        ret_allow(),
                    ],
                };
                block.push(jump(JEQ, r.nr, 0, jump_len(body.len())));
                block.extend(body);
            }
            block.push(ret_allow());
            prog.push(jump(JEQ, a.arch, 0, jump_len(block.len())));
            prog.extend(block);
        }
        prog.push(ret_allow());
        Program(prog)
    }

    /// Nix's `filter-syscalls` filter for the ABIs of this host.
    pub fn nix_default() -> Self {
        Self::compile(&default_rules())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `chmod`-like calls with their mode argument, and the `setxattr` family, per ABI.
struct Table {
    arch: u32,
    nr_clear: u32,
    /// (number, index of the mode argument); `None` numbers do not exist there.
    chmods: [(Option<u32>, u8); 4],
    setxattrs: [u32; 3],
}

const S_ISUID_OR_GID: u32 = 0o6000;

// chmod, fchmod, fchmodat, fchmodat2; setxattr, lsetxattr, fsetxattr.
const X86_64: Table = Table {
    arch: AUDIT_ARCH_X86_64,
    nr_clear: X32_SYSCALL_BIT,
    chmods: [(Some(90), 1), (Some(91), 1), (Some(268), 2), (Some(452), 2)],
    setxattrs: [188, 189, 190],
};
const I386: Table = Table {
    arch: AUDIT_ARCH_I386,
    nr_clear: 0,
    chmods: [(Some(15), 1), (Some(94), 1), (Some(306), 2), (Some(452), 2)],
    setxattrs: [226, 227, 228],
};
const AARCH64: Table = Table {
    arch: AUDIT_ARCH_AARCH64,
    nr_clear: 0,
    chmods: [(None, 1), (Some(52), 1), (Some(53), 2), (Some(452), 2)],
    setxattrs: [5, 6, 7],
};
const ARM: Table = Table {
    arch: AUDIT_ARCH_ARM,
    nr_clear: 0,
    chmods: [(Some(15), 1), (Some(94), 1), (Some(333), 2), (Some(452), 2)],
    setxattrs: [226, 227, 228],
};

fn host_tables() -> &'static [Table] {
    if cfg!(target_arch = "x86_64") {
        &[X86_64, I386]
    } else if cfg!(target_arch = "aarch64") {
        &[AARCH64, ARM]
    } else {
        &[]
    }
}

/// Whether this host's ABIs are known (else `filter-syscalls` cannot be honoured).
pub fn supported() -> bool {
    !host_tables().is_empty()
}

fn default_rules() -> Vec<ArchRules> {
    host_tables()
        .iter()
        .map(|t| {
            let mut rules = Vec::new();
            for (nr, arg) in t.chmods {
                if let Some(nr) = nr {
                    rules.push(Rule {
                        nr,
                        check: Check::ArgAnyBit {
                            arg,
                            mask: S_ISUID_OR_GID,
                        },
                        errno: libc::EPERM,
                    });
                }
            }
            for nr in t.setxattrs {
                rules.push(Rule {
                    nr,
                    check: Check::Always,
                    errno: libc::ENOTSUP,
                });
            }
            ArchRules {
                arch: t.arch,
                nr_clear: t.nr_clear,
                rules,
            }
        })
        .collect()
}

/// What a builder's process gets, from the `filter-syscalls` and
/// `allow-new-privileges` settings, as in Nix 2.8: the filter when
/// `filter-syscalls` is on, and `no_new_privs` (set-user-ID programs and file
/// capabilities grant nothing) with it unless `allow-new-privileges` is on.
#[derive(Debug, Clone)]
pub struct Policy {
    pub program: Option<Program>,
    /// `filter-syscalls` is on but this host's ABIs are unknown here.
    pub unsupported: bool,
    pub no_new_privs: bool,
    /// Whether failing to install it stops the build: when rix runs builders as
    /// other users (root), as Nix does when it has build users; otherwise Nix
    /// goes on without it.
    pub required: bool,
}

impl Policy {
    pub fn new(filter_syscalls: bool, allow_new_privileges: bool, required: bool) -> Self {
        Self {
            program: (filter_syscalls && supported()).then(Program::nix_default),
            unsupported: filter_syscalls && !supported(),
            no_new_privs: filter_syscalls && !allow_new_privileges,
            required,
        }
    }

    /// Installs the policy in the calling process. Async-signal-safe.
    pub fn apply(&self) -> Result<(), Errno> {
        if self.unsupported && self.required {
            // As Nix: no filter for this platform is an error for builds as
            // other users (unless `filter-syscalls` is turned off).
            return Err(Errno::ENOSYS);
        }
        match install(self.program.as_ref(), self.no_new_privs) {
            Err(e) if self.required => Err(e),
            _ => Ok(()),
        }
    }
}

/// Sets `no_new_privs` if asked, then loads `prog` into the calling process (and
/// its future children). Async-signal-safe.
///
/// Without `no_new_privs` the kernel requires `CAP_SYS_ADMIN` (in the current
/// user namespace) and refuses with `EACCES` otherwise.
#[allow(unsafe_code)]
pub fn install(prog: Option<&Program>, no_new_privs: bool) -> Result<(), Errno> {
    if no_new_privs {
        // SAFETY: prctl with integer arguments.
        Errno::result(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
    }
    let Some(prog) = prog else {
        return Ok(());
    };
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.0.len()).map_err(|_| Errno::E2BIG)?,
        filter: prog.0.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `prog`'s instructions, alive for the call; the
    // kernel copies the program.
    Errno::result(unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &raw const fprog,
            0,
            0,
        )
    })
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` in a forked child with `prog` installed; its exit code.
    #[allow(unsafe_code)]
    fn in_child(prog: &Program, f: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the child only makes system calls and exits with _exit; the
        // test harness's other threads are not touched.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = match install(Some(prog), true) {
                    Ok(()) => f(),
                    Err(_) => 99,
                };
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                match nix::sys::wait::waitpid(child, None).unwrap() {
                    nix::sys::wait::WaitStatus::Exited(_, c) => c,
                    _ => -1,
                }
            }
        }
    }

    fn errno_of(r: libc::c_long) -> i32 {
        if r == -1 {
            Errno::last_raw()
        } else {
            0
        }
    }

    #[test]
    #[allow(unsafe_code)]
    fn refuses_setuid_modes_and_xattrs_but_nothing_else() {
        if !supported() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        let c = std::ffi::CString::new(f.as_os_str().as_encoded_bytes()).unwrap();
        let prog = Program::nix_default();
        let code = in_child(&prog, || {
            // SAFETY: system calls on a live NUL-terminated path.
            unsafe {
                let fd = libc::open(c.as_ptr(), libc::O_RDONLY);
                let results = [
                    errno_of(libc::chmod(c.as_ptr(), 0o4755).into()) == libc::EPERM,
                    errno_of(libc::chmod(c.as_ptr(), 0o2755).into()) == libc::EPERM,
                    errno_of(libc::fchmod(fd, 0o4755).into()) == libc::EPERM,
                    errno_of(libc::fchmodat(libc::AT_FDCWD, c.as_ptr(), 0o6755, 0).into())
                        == libc::EPERM,
                    errno_of(libc::chmod(c.as_ptr(), 0o1755).into()) == 0,
                    errno_of(libc::fchmod(fd, 0o755).into()) == 0,
                    errno_of(
                        libc::setxattr(c.as_ptr(), c"user.x".as_ptr(), c"1".as_ptr().cast(), 1, 0)
                            .into(),
                    ) == libc::ENOTSUP,
                    errno_of(
                        libc::lsetxattr(c.as_ptr(), c"user.x".as_ptr(), c"1".as_ptr().cast(), 1, 0)
                            .into(),
                    ) == libc::ENOTSUP,
                    errno_of(
                        libc::fsetxattr(fd, c"user.x".as_ptr(), c"1".as_ptr().cast(), 1, 0).into(),
                    ) == libc::ENOTSUP,
                ];
                results
                    .iter()
                    .position(|ok| !ok)
                    .map_or(0, |i| 10 + i as i32)
            }
        });
        assert_eq!(code, 0, "check {} failed (99: cannot install)", code - 10);
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o7777,
            0o755
        );
    }

    /// i386 system calls from a 64-bit process (`int 0x80`) are filtered too.
    #[cfg(target_arch = "x86_64")]
    #[test]
    #[allow(unsafe_code)]
    fn covers_the_i386_abi() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        let d = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
        let prog = Program::nix_default();
        let code = in_child(&prog, || {
            // SAFETY: chdir on a live path; the mapping is fresh and private; int
            // 0x80 chmod(15) reads the NUL-terminated name written into it and
            // clobbers only eax.
            unsafe {
                if libc::chdir(d.as_ptr()) != 0 {
                    return 98;
                }
                // int 0x80 takes 32-bit pointers: the name must be below 4 GiB.
                let page = libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                    -1,
                    0,
                );
                if page == libc::MAP_FAILED {
                    return 98;
                }
                page.cast::<[u8; 2]>().write(*b"f\0");
                let addr = page as usize as u32;
                let chmod32 = |mode: u32| -> i32 {
                    let mut eax: i32 = 15;
                    // (rbx is LLVM's: swap the argument in and out.)
                    std::arch::asm!(
                        "xchg {b:e}, ebx",
                        "int 0x80",
                        "xchg {b:e}, ebx",
                        b = inout(reg) addr => _,
                        inout("eax") eax,
                        in("ecx") mode,
                        options(nostack)
                    );
                    eax
                };
                let suid = chmod32(0o4755);
                let plain = chmod32(0o700);
                if suid == -libc::ENOSYS || plain == -libc::ENOSYS {
                    return 97;
                }
                if suid == -libc::EPERM && plain == 0 {
                    0
                } else {
                    1
                }
            }
        });
        if code == 97 || code == -1 {
            eprintln!("skipping: no IA-32 emulation in this kernel");
            return;
        }
        assert_eq!(code, 0);
        let mode = std::fs::metadata(dir.path().join("f"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o700);
    }

    use std::os::unix::fs::PermissionsExt;
}
