//! Running a command on another machine over SSH, as Nix's `SSHMaster`
//! (`ssh.cc`) does: `ssh HOST -x` with the options of `NIX_SSHOPTS` (split as
//! a shell would), `-i KEY` for the machine's key, the machine's public host
//! key written to a temporary known-hosts file, `-C` to compress; ssh's local
//! command prints `started` once the connection is up. The host `localhost`
//! runs the command directly, without ssh (Nix's `fakeSSH`).

use std::io::{BufRead, BufReader, Read};
use std::net::Shutdown;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

use rix_store::local_store::{Result, StoreError};

use crate::transport::{Connector, Control, Opened};

/// How to reach one host.
pub struct SshMaster {
    host: String,
    fake: bool,
    key_file: Option<String>,
    compress: bool,
    /// Holds the known-hosts file while this lives.
    tmp_dir: tempfile::TempDir,
    known_hosts: Option<std::path::PathBuf>,
}

fn error(msg: String) -> StoreError {
    StoreError::Protocol(msg)
}

impl SshMaster {
    /// `host` is `[user@]host`; `public_host_key` the base64 of a known-hosts
    /// key (`ssh-ed25519 AAAA…`), as in a machines file.
    pub fn new(
        host: &str,
        key_file: Option<&str>,
        public_host_key: Option<&str>,
        compress: bool,
    ) -> Result<SshMaster> {
        if host.is_empty() || host.starts_with('-') {
            return Err(error(format!("invalid SSH host name '{host}'")));
        }
        let tmp_dir = tempfile::Builder::new()
            .prefix("nix")
            .tempdir()
            .map_err(|e| error(format!("cannot create a temporary directory: {e}")))?;
        let known_hosts = match public_host_key.filter(|k| !k.is_empty()) {
            None => None,
            Some(key) => {
                let decoded = data_encoding::BASE64.decode(key.as_bytes()).map_err(|e| {
                    error(format!(
                        "while decoding ssh public host key for host '{host}': {e}"
                    ))
                })?;
                let thost = host.rsplit_once('@').map_or(host, |(_, h)| h);
                let path = tmp_dir.path().join("host-key");
                let mut line = format!("{thost} ").into_bytes();
                line.extend_from_slice(&decoded);
                line.push(b'\n');
                std::fs::write(&path, line)
                    .map_err(|e| error(format!("{}: {e}", path.display())))?;
                Some(path)
            }
        };
        Ok(SshMaster {
            host: host.to_owned(),
            fake: host == "localhost",
            key_file: key_file.filter(|k| !k.is_empty()).map(str::to_owned),
            compress,
            tmp_dir,
            known_hosts,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// `addCommonSSHOpts`.
    fn common_opts(&self, args: &mut Vec<String>) -> Result<()> {
        let opts = std::env::var("NIX_SSHOPTS").unwrap_or_default();
        let split = shlex::split(&opts)
            .ok_or_else(|| error(format!("while splitting NIX_SSHOPTS '{opts}'")))?;
        args.extend(split);
        if let Some(k) = &self.key_file {
            args.extend(["-i".to_owned(), k.clone()]);
        }
        if let Some(p) = &self.known_hosts {
            args.push(format!("-oUserKnownHostsFile={}", p.display()));
        }
        if self.compress {
            args.push("-C".to_owned());
        }
        args.push("-oPermitLocalCommand=yes".to_owned());
        args.push("-oLocalCommand=echo started".to_owned());
        Ok(())
    }

    /// The program and arguments that run `command` on the host.
    pub fn argv(&self, command: &[String]) -> Result<Vec<String>> {
        let mut args = Vec::new();
        if !self.fake {
            args.extend(["ssh".to_owned(), self.host.clone(), "-x".to_owned()]);
            self.common_opts(&mut args)?;
            args.push("--".to_owned());
        }
        args.extend(command.iter().cloned());
        Ok(args)
    }

    /// Starts `command` on the host; its stderr goes where `stderr` says.
    /// Returns once ssh reported the connection up.
    pub fn start(&self, command: &[String], stderr: Stdio) -> Result<SshChild> {
        let argv = self.argv(command)?;
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .env("SHELL", "/bin/sh")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| error(format!("unable to execute '{}': {e}", argv[0])))?;
        let stdin = child.stdin.take().expect("piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        if !self.fake {
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            if line != "started\n" {
                let _ = child.kill();
                let _ = child.wait();
                return Err(error(format!(
                    "failed to start SSH connection to '{}'",
                    self.host
                )));
            }
        }
        let _ = &self.tmp_dir;
        Ok(SshChild {
            stdin,
            stdout,
            process: Arc::new(ChildProcess(Mutex::new(child))),
        })
    }
}

/// A command running on a host: its stdin and stdout.
pub struct SshChild {
    pub stdin: ChildStdin,
    pub stdout: BufReader<ChildStdout>,
    pub process: Arc<ChildProcess>,
}

/// The local process (ssh, or the command itself for `localhost`): killed
/// and reaped when the connection goes.
pub struct ChildProcess(Mutex<Child>);

impl ChildProcess {
    pub fn id(&self) -> u32 {
        self.0.lock().map(|c| c.id()).unwrap_or(0)
    }
}

impl Control for ChildProcess {
    fn shutdown(&self, _: Shutdown) {
        if let Ok(mut c) = self.0.lock() {
            let _ = c.kill();
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Ok(c) = self.0.get_mut() {
            // Its stdin is closed by now: a command that reads it ends.
            // Give it a moment, then make sure.
            for _ in 0..50 {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Connections that are a command on a host (`ssh-ng://`: `nix-daemon
/// --stdio`).
pub struct CommandConnector {
    pub master: SshMaster,
    pub command: Vec<String>,
}

impl Connector for CommandConnector {
    fn connect(&self) -> Result<Opened> {
        let child = self.master.start(&self.command, Stdio::inherit())?;
        let reader: Box<dyn Read + Send> = Box::new(child.stdout);
        Ok(Opened {
            reader,
            writer: Box::new(child.stdin),
            control: child.process,
        })
    }
}
