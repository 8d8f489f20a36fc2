//! A real OpenSSH server on a loopback port, for tests of `ssh://` and
//! `ssh-ng://` stores and build machines.
//!
//! [`Sshd::start`] finds an `sshd` binary ([`find_sshd`]: `$RIX_SSHD`, else
//! `/usr/sbin/sshd`, else Debian's `openssh-server` unpacked with `dpkg -x`
//! under `$RIX_SSHD_DIR`, as `.ci/run` does, so no system sshd is started),
//! generates a host key and a client key, writes an `sshd_config` into a
//! temporary directory (`127.0.0.1`, a free port, public keys only, the
//! client key authorised for the user running the test) and runs `sshd -D -e`
//! until dropped. Clients reach it as `ssh://USER@127.0.0.1` with
//! [`Sshd::sshopts`] in `NIX_SSHOPTS` (port, known-hosts file, key), or with
//! the `ssh-key=` and `base64-ssh-public-host-key=` URL parameters Nix's
//! machines use ([`Sshd::key_params`], with [`Sshd::port_opts`]).
//!
//! When no sshd is found (or, running as root, sshd's privilege separation
//! user `sshd` does not exist) the test is skipped with a message, unless
//! `RIX_REQUIRE_SSHD=1` (as `.ci/run` sets): then it fails.

use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The sshd binary to run: `$RIX_SSHD`, else `/usr/sbin/sshd`, else
/// `$RIX_SSHD_DIR/usr/sbin/sshd` (a `dpkg -x` of Debian's `openssh-server`).
pub fn find_sshd() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RIX_SSHD").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let system = PathBuf::from("/usr/sbin/sshd");
    if system.is_file() {
        return Some(system);
    }
    let dir = std::env::var_os("RIX_SSHD_DIR").filter(|p| !p.is_empty())?;
    let unpacked = PathBuf::from(dir).join("usr/sbin/sshd");
    unpacked.is_file().then_some(unpacked)
}

fn skip(why: &str) -> Option<Sshd> {
    if std::env::var("RIX_REQUIRE_SSHD").as_deref() == Ok("1") {
        panic!("{why}, but RIX_REQUIRE_SSHD=1 (.ci/run unpacks Debian's openssh-server and sets RIX_SSHD)");
    }
    eprintln!("skipping: {why} (set RIX_SSHD to an sshd binary, or RIX_REQUIRE_SSHD=1 to fail)");
    None
}

/// The libraries of an sshd unpacked with `dpkg -x` (e.g. `libwrap.so.0`),
/// next to it: `ROOT/usr/sbin/sshd` → `ROOT/{usr/,}lib/*-linux-gnu`.
fn unpacked_library_path(sshd: &Path) -> Option<String> {
    let root = sshd.parent()?.parent()?.parent()?;
    let mut dirs = Vec::new();
    for lib in [root.join("usr/lib"), root.join("lib")] {
        if let Ok(entries) = std::fs::read_dir(&lib) {
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() && p.to_string_lossy().ends_with("-linux-gnu") {
                    dirs.push(p.display().to_string());
                }
            }
        }
    }
    (!dirs.is_empty() && root != Path::new("/")).then(|| dirs.join(":"))
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "rix-test", "-f"])
        .arg(path)
        .output()
        .expect("run ssh-keygen (openssh-client)");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// What to set up before starting: environment variables for the sessions
/// (`SetEnv`).
#[derive(Default)]
pub struct SshdOptions {
    pub env: Vec<(String, String)>,
}

/// A running sshd; stopped (with its sessions) when dropped.
pub struct Sshd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    sshd: PathBuf,
    port: u16,
    user: String,
    options: SshdOptions,
}

impl Sshd {
    /// Starts an sshd with no extra session environment; `None` when the
    /// test is to be skipped (see the module documentation).
    pub fn start() -> Option<Sshd> {
        Self::start_with(SshdOptions::default())
    }

    pub fn start_with(options: SshdOptions) -> Option<Sshd> {
        let Some(sshd) = find_sshd() else {
            return skip("no sshd found");
        };
        if !sshd.is_absolute() {
            return skip(&format!(
                "sshd must be given by an absolute path, not {}",
                sshd.display()
            ));
        }
        let root = nix::unistd::geteuid().is_root();
        if root {
            // sshd running as root separates privileges into an unprivileged
            // child chrooted to /run/sshd as the user `sshd`.
            if nix::unistd::User::from_name("sshd")
                .ok()
                .flatten()
                .is_none()
            {
                return skip("running as root, sshd needs its privilege separation user 'sshd' (useradd --system sshd)");
            }
            std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        }
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .expect("the user running the test has a name");
        let dir = tempfile::Builder::new()
            .prefix("rix-sshd-")
            .tempdir()
            .unwrap();
        keygen(&dir.path().join("host_key"));
        keygen(&dir.path().join("client_key"));
        std::fs::copy(
            dir.path().join("client_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .unwrap();
        let mut s = Sshd {
            dir,
            child: None,
            sshd,
            port: 0,
            user,
            options,
        };
        // A port found free can be taken before sshd binds it: try again.
        for _ in 0..5 {
            s.port = free_port();
            if s.launch() {
                let host_key = s.host_key();
                std::fs::write(
                    s.dir.path().join("known_hosts"),
                    format!("[127.0.0.1]:{} {host_key}\n", s.port),
                )
                .unwrap();
                return Some(s);
            }
        }
        panic!("sshd did not start: {}", s.log());
    }

    fn config(&self) -> String {
        let d = self.dir.path().display();
        let mut c = format!(
            "ListenAddress 127.0.0.1\nPort {}\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nAllowUsers {}\n\
             MaxStartups 100\nMaxSessions 100\nUseDNS no\nX11Forwarding no\nPrintMotd no\n",
            self.port, self.user
        );
        if !self.options.env.is_empty() {
            c.push_str("SetEnv");
            for (k, v) in &self.options.env {
                assert!(
                    !v.contains(['"', ' ', '\n']),
                    "SetEnv value with a quote, space or newline: {k}={v}"
                );
                c.push_str(&format!(" {k}={v}"));
            }
            c.push('\n');
        }
        c
    }

    /// Starts sshd and waits until it accepts; `false` when it exited (its
    /// port taken).
    fn launch(&mut self) -> bool {
        let config = self.dir.path().join("sshd_config");
        std::fs::write(&config, self.config()).unwrap();
        let log = std::fs::File::create(self.dir.path().join("sshd.log")).unwrap();
        let mut cmd = Command::new(&self.sshd);
        cmd.args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(libs) = unpacked_library_path(&self.sshd) {
            cmd.env("LD_LIBRARY_PATH", libs);
        }
        let mut child = cmd.spawn().expect("start sshd");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                // The banner says it is sshd, not another listener.
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 4];
                if s.read_exact(&mut buf).is_ok() && &buf == b"SSH-" {
                    self.child = Some(child);
                    return true;
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sshd did not accept connections: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts sshd again on the same port after [`Self::kill`].
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "sshd is running");
        assert!(self.launch(), "sshd did not start again: {}", self.log());
    }

    /// sshd's log so far (`-e`: its messages on stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user the client logs in as (the one running the test).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// `USER@127.0.0.1`, the host part of a store URL.
    pub fn host(&self) -> String {
        format!("{}@127.0.0.1", self.user)
    }

    /// The client's private key.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// The server's public host key, `ssh-ed25519 AAAA…`.
    pub fn host_key(&self) -> String {
        let line = std::fs::read_to_string(self.dir.path().join("host_key.pub")).unwrap();
        let mut words = line.split_whitespace();
        format!("{} {}", words.next().unwrap(), words.next().unwrap())
    }

    /// Options that keep ssh to what the test gives: no user or system
    /// configuration, no agent, no prompt.
    fn base_opts(&self) -> String {
        format!(
            "-F /dev/null -p {} -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none \
             -o StrictHostKeyChecking=yes -o ConnectTimeout=10 -o LogLevel=ERROR",
            self.port
        )
    }

    /// `NIX_SSHOPTS` that reach this server: the port, its host key in a
    /// known-hosts file, the client key.
    pub fn sshopts(&self) -> String {
        format!(
            "{} -o UserKnownHostsFile={} -i {}",
            self.base_opts(),
            self.dir.path().join("known_hosts").display(),
            self.client_key().display()
        )
    }

    /// `NIX_SSHOPTS` for URLs with [`Self::key_params`]: only the port (and
    /// `HostKeyAlias`, since a known-hosts entry for a port other than 22 is
    /// `[host]:port`, while Nix writes the machine's host key for the bare
    /// host name).
    pub fn port_opts(&self) -> String {
        format!(
            "{} -o HostKeyAlias=127.0.0.1 -o GlobalKnownHostsFile=/dev/null",
            self.base_opts()
        )
    }

    /// `ssh-key=…&base64-ssh-public-host-key=…`, as in a machines file.
    pub fn key_params(&self) -> String {
        let b64 = data_encoding::BASE64.encode(self.host_key().as_bytes());
        format!(
            "ssh-key={}&base64-ssh-public-host-key={}",
            self.client_key().display(),
            b64.replace('=', "%3D")
                .replace('+', "%2B")
                .replace('/', "%2F")
        )
    }

    /// Process ids of sshd and of the sshd processes serving connections
    /// (its descendants running the same binary); not the commands they run.
    fn sshd_pids(&self) -> Vec<i32> {
        let Some(main) = self.child.as_ref().map(|c| c.id() as i32) else {
            return Vec::new();
        };
        let mut parents: Vec<(i32, i32, String)> = Vec::new();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    continue;
                };
                // pid (comm) state ppid ...
                let Some(close) = stat.rfind(')') else {
                    continue;
                };
                let comm = stat[stat.find('(').map_or(0, |i| i + 1)..close].to_owned();
                let ppid = stat[close + 1..]
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                parents.push((pid, ppid, comm));
            }
        }
        let mut found = vec![main];
        let mut i = 0;
        while i < found.len() {
            let p = found[i];
            for (pid, ppid, comm) in &parents {
                if *ppid == p && comm.starts_with("sshd") && !found.contains(pid) {
                    found.push(*pid);
                }
            }
            i += 1;
        }
        found
    }

    /// Stops the machine's network side at once: sshd and every connection
    /// it serves are killed (`SIGKILL`); the commands they ran see their
    /// input end, as when a machine drops off the network.
    pub fn kill(&mut self) {
        for pid in self.sshd_pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command run over real SSH: the session gets the `SetEnv`
    /// environment, and stopping the server refuses the next connection.
    #[test]
    fn runs_a_command_over_ssh() {
        let Some(mut sshd) = Sshd::start_with(SshdOptions {
            env: vec![("RIX_TEST_VAR".into(), "set-by-sshd".into())],
        }) else {
            return;
        };
        let host = sshd.host();
        let run = |opts: &str| {
            let mut cmd = Command::new("ssh");
            cmd.args(shlex_split(opts))
                .arg(&host)
                .arg("echo $RIX_TEST_VAR")
                .stdin(Stdio::null());
            cmd.output().unwrap()
        };
        let out = run(&sshd.sshopts());
        assert!(out.status.success(), "{}", sshd.log());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "set-by-sshd\n");
        sshd.kill();
        assert!(!run(&sshd.sshopts()).status.success());
    }

    fn shlex_split(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }
}
