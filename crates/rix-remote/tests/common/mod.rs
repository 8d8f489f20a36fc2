//! A real `nix-daemon` (Nix 2.8 from PATH, or Nix 2.26 through
//! `RIX_NIX_CURRENT`) serving a temporary store, and the same version's
//! `nix-store` to check what rix's client did.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rix_formats::derivation::hashing::{DrvHash, LookupError};
use rix_formats::derivation::{Derivation, DerivationOutput};
use rix_formats::{StoreDir, StorePath};
use rix_remote::{Activity, DaemonLogger, DaemonOptions, DaemonStore, ResultKind};
use rix_testutil::TempStore;

/// Which Nix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nix {
    /// Debian bookworm's nix-bin, protocol 1.34.
    V2_8,
    /// Debian trixie's nix-bin, protocol 1.38.
    V2_26,
}

impl Nix {
    /// A command running this Nix's tool `name`, or `None` (skip) when absent.
    pub fn command(self, name: &str) -> Option<Command> {
        match self {
            Nix::V2_8 => rix_testutil::nix(name).map(Command::new),
            Nix::V2_26 => rix_testutil::nix_current(name),
        }
    }
}

/// A daemon on a temporary store; killed when dropped.
pub struct Daemon {
    pub nix: Nix,
    pub store: TempStore,
    pub socket: PathBuf,
    child: Child,
}

impl Daemon {
    /// Starts `nix`'s daemon on a fresh store, or `None` when that Nix is absent.
    pub fn start(nix: Nix) -> Option<Daemon> {
        Self::start_with(nix, &[])
    }

    /// Starts a daemon with extra `--option NAME VALUE` settings.
    pub fn start_with(nix: Nix, options: &[(&str, &str)]) -> Option<Daemon> {
        let mut cmd = nix.command("nix-daemon")?;
        for (name, value) in options {
            cmd.args(["--option", name, value]);
        }
        let store = TempStore::new();
        let socket = store.dir.path().join("daemon.sock");
        cmd.env("NIX_DAEMON_SOCKET_PATH", &socket)
            .env("NIX_CONFIG", "")
            .args(["--option", "store", &store.url()])
            .args(["--option", "build-users-group", ""])
            .args(["--option", "sandbox", "false"])
            .args(["--option", "substituters", ""])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(store.dir.path().join("daemon.log")).unwrap());
        if nix == Nix::V2_26 {
            cmd.args(["--option", "build-hook", ""]);
        }
        let child = cmd.spawn().expect("start nix-daemon");
        let daemon = Daemon {
            nix,
            store,
            socket,
            child,
        };
        rix_testutil::wait_for("the daemon's socket", Duration::from_secs(60), || {
            daemon.socket.exists().then_some(())
        });
        Some(daemon)
    }

    /// What the daemon printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.store.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn store_dir(&self) -> StoreDir {
        StoreDir::new(self.store.store_dir().to_string_lossy().into_owned()).unwrap()
    }

    /// The store URL Nix and rix both accept for this daemon.
    pub fn url(&self) -> String {
        let dir = self.store.dir.path().display();
        format!(
            "unix://{}?store={dir}/store&state={dir}/state&log={dir}/log",
            self.socket.display(),
        )
    }

    pub fn open(&self) -> DaemonStore {
        self.open_with(DaemonOptions::default(), Arc::new(Recorder::default()))
    }

    pub fn open_with(&self, options: DaemonOptions, logger: Arc<dyn DaemonLogger>) -> DaemonStore {
        DaemonStore::open_url(&self.url(), options, logger).expect("open the daemon store")
    }

    /// Runs this Nix's `nix-store --store <daemon url> ARGS`.
    pub fn nix_store_output(&self, args: &[&str]) -> Output {
        let mut cmd = self.nix.command("nix-store").unwrap();
        cmd.arg("--store")
            .arg(self.url())
            .args(args)
            .env("NIX_CONFIG", "")
            .output()
            .expect("run nix-store")
    }

    /// `nix-store --store <daemon url> ARGS`'s stdout; panics when it fails.
    pub fn nix_store(&self, args: &[&str]) -> Vec<u8> {
        let out = self.nix_store_output(args);
        assert!(
            out.status.success(),
            "nix-store {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    pub fn nix_store_text(&self, args: &[&str]) -> String {
        String::from_utf8(self.nix_store(args)).unwrap()
    }

    pub fn print(&self, p: &StorePath) -> String {
        self.store_dir().display(p)
    }

    pub fn parse(&self, s: &str) -> StorePath {
        self.store_dir().parse(s.trim()).unwrap()
    }

    /// The trivial derivation `name` (builder `/bin/sh -c SCRIPT`), its
    /// output path filled in for this store.
    pub fn derivation(&self, name: &str, script: &str) -> Derivation {
        let system = format!("{}-linux", std::env::consts::ARCH);
        let mut drv = Derivation {
            name: name.to_owned(),
            ..Derivation::default()
        };
        drv.outputs.insert("out".into(), DerivationOutput::Deferred);
        drv.system = system.clone().into_bytes();
        drv.builder = b"/bin/sh".to_vec();
        drv.args = vec![b"-c".to_vec(), script.as_bytes().to_vec()];
        for (k, v) in [
            ("builder", "/bin/sh"),
            ("name", name),
            ("system", &system),
            ("out", ""),
        ] {
            drv.env.insert(k.as_bytes().to_vec(), v.as_bytes().to_vec());
        }
        drv.fill_in_output_paths(&self.store_dir(), |_| {
            Err::<DrvHash, LookupError>("no input derivations".into())
        })
        .unwrap();
        drv
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything the daemon reported, for assertions.
#[derive(Default)]
pub struct Recorder {
    pub lines: Mutex<Vec<String>>,
    pub activities: Mutex<Vec<Activity>>,
    pub stopped: Mutex<Vec<u64>>,
    pub results: Mutex<Vec<(u64, ResultKind)>>,
}

impl DaemonLogger for Recorder {
    fn log(&self, line: &[u8]) {
        self.lines
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(line).into_owned());
    }
    fn start_activity(&self, a: &Activity) {
        self.activities.lock().unwrap().push(a.clone());
    }
    fn stop_activity(&self, id: u64) {
        self.stopped.lock().unwrap().push(id);
    }
    fn result(&self, id: u64, r: &ResultKind) {
        self.results.lock().unwrap().push((id, r.clone()));
    }
}

/// Defines `mod $name { fn nix_2_8(); fn nix_2_26() }`, each running `$body`
/// against that version's daemon (skipped when it is absent).
#[macro_export]
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn nix_2_8() {
                if let Some(d) = common::Daemon::start(common::Nix::V2_8) {
                    ($body)(&d);
                }
            }
            #[test]
            fn nix_2_26() {
                if let Some(d) = common::Daemon::start(common::Nix::V2_26) {
                    ($body)(&d);
                }
            }
        }
    };
}

pub fn write_file(dir: &Path, name: &str, contents: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}
