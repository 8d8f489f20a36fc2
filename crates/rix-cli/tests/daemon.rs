//! `rix daemon` (a process per connection, as Nix's daemon forks) driven by
//! real Nix clients: garbage collection with per-connection temporary roots,
//! indirect roots, `nix copy` both ways, Nix 2.26's `nix store gc`. Skipped
//! when Nix is absent (unless `RIX_REQUIRE_NIX=1`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use rix_testutil::TempStore;

struct Daemon {
    store: TempStore,
    sock: PathBuf,
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Daemon {
    let store = TempStore::new();
    let sock = store.dir.path().join("daemon.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_rix"))
        .args(["--store", &store.url(), "daemon", "--socket"])
        .arg(&sock)
        .env("RIX_CONFIG", "sandbox = false\nsubstituters =")
        .spawn()
        .unwrap();
    rix_testutil::wait_for(
        "the daemon's socket",
        std::time::Duration::from_secs(30),
        || sock.exists().then_some(()),
    );
    Daemon { store, sock, child }
}

impl Daemon {
    fn url(&self) -> String {
        format!(
            "unix://{}?store={}",
            self.sock.display(),
            self.store.store_dir().display()
        )
    }

    fn run(&self, mut c: Command, args: &[&str]) -> String {
        c.arg("--store").arg(self.url()).args(args).env(
            "NIX_CONFIG",
            "experimental-features = nix-command\nsubstituters =",
        );
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{c:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn nix(&self, tool: &Path, args: &[&str]) -> String {
        self.run(Command::new(tool), args)
    }

    fn valid(&self, nix_store: &Path, path: &str) -> bool {
        Command::new(nix_store)
            .args(["--store", &self.url(), "--check-validity", path])
            .output()
            .unwrap()
            .status
            .success()
    }
}

#[test]
fn gc_roots_and_copies_through_rix_daemon() {
    let (Some(nix_store), Some(nix)) = (rix_testutil::nix("nix-store"), rix_testutil::nix("nix"))
    else {
        return;
    };
    let d = start();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("gc-me");
    std::fs::write(&file, "collect me\n").unwrap();

    // A path added by a connection that has closed is garbage: its temporary
    // root went with it.
    let path = d.nix(&nix_store, &["--add", file.to_str().unwrap()]);
    let path = path.trim();
    assert!(d.valid(&nix_store, path));
    let temproots = d.store.dir.path().join("state/temproots");
    let left: Vec<_> = std::fs::read_dir(&temproots).unwrap().collect();
    assert!(left.is_empty(), "temporary roots left behind: {left:?}");
    d.nix(&nix_store, &["--gc"]);
    assert!(!d.valid(&nix_store, path));

    // An indirect root made by `nix-store -r --add-root --indirect` keeps it.
    let path = d.nix(&nix_store, &["--add", file.to_str().unwrap()]);
    let path = path.trim();
    let root = tmp.path().join("my-root");
    let printed = d.nix(
        &nix_store,
        &[
            "-r",
            path,
            "--add-root",
            root.to_str().unwrap(),
            "--indirect",
        ],
    );
    assert_eq!(printed.trim(), root.to_str().unwrap());
    assert_eq!(std::fs::read_link(&root).unwrap(), Path::new(path));
    let roots = d.nix(&nix_store, &["--gc", "--print-roots"]);
    assert!(
        roots.contains(&format!("{} -> {path}", root.display())),
        "{roots}"
    );
    d.nix(&nix_store, &["--gc"]);
    assert!(d.valid(&nix_store, path));

    // nix copy from the daemon to a binary cache, and back after deleting it.
    let cache = format!(
        "file://{}?store={}&compression=none",
        tmp.path().join("cache").display(),
        d.store.store_dir().display()
    );
    d.run(Command::new(&nix), &["copy", "--to", &cache, path]);
    std::fs::remove_file(&root).unwrap();
    d.nix(&nix_store, &["--delete", path]);
    assert!(!d.valid(&nix_store, path));
    let mut c = Command::new(&nix);
    c.args([
        "copy",
        "--no-check-sigs",
        "--from",
        &cache,
        "--to",
        &d.url(),
        path,
    ])
    .env(
        "NIX_CONFIG",
        "experimental-features = nix-command\nsubstituters =",
    );
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(d.valid(&nix_store, path));

    // Nix 2.26's `nix store gc` through the daemon.
    if let Some(mut c) = rix_testutil::nix_current("nix") {
        if c.arg("--version").status().is_ok_and(|s| s.success()) {
            let c = rix_testutil::nix_current("nix").unwrap();
            d.run(c, &["store", "gc"]);
            assert!(!d.valid(&nix_store, path));
        }
    }
}

/// A client that hangs up while its build runs takes the build with it (Nix's
/// `MonitorFdHup`): the builder, blocked opening a FIFO nobody writes, is
/// killed; without the cancellation it would wait forever.
#[test]
fn a_client_hanging_up_stops_its_build() {
    use rix_formats::worker_protocol::{BuildMode, DerivedPath, OutputsSpec, Request};
    use std::io::Write;
    let Some(inst) = rix_testutil::nix("nix-instantiate") else {
        return;
    };
    let d = start();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    let started = dir.path().join("started");
    let file = dir.path().join("wait.nix");
    std::fs::write(
        &file,
        format!(
            r#"derivation {{ name = "waits"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo $$ > {}; read -r x < {}; echo $x > $out" ]; }}"#,
            started.display(),
            fifo.display()
        ),
    )
    .unwrap();
    let drv = d.nix(&inst, &[file.to_str().unwrap()]).trim().to_owned();
    let store_dir = d.store.store_dir();
    let store_dir = rix_formats::StoreDir::new(store_dir.to_str().unwrap()).unwrap();

    let (mut s, ctx) = raw_connect(&d, &store_dir);
    Request::BuildPathsWithResults {
        paths: vec![DerivedPath::Built {
            drv_path: store_dir.parse(&drv).unwrap(),
            outputs: OutputsSpec::All,
        }],
        mode: BuildMode::Normal,
    }
    .write(&mut s, &ctx)
    .unwrap();
    s.flush().unwrap();
    let pid = rix_testutil::wait_for(
        "the builder to start",
        std::time::Duration::from_secs(60),
        || {
            let pid = std::fs::read_to_string(&started).ok()?;
            pid.ends_with('\n').then(|| pid.trim().to_owned())
        },
    );
    let alive = || Path::new("/proc").join(&pid).exists();
    assert!(alive());
    drop(s);
    // (The FIFO is never opened here: a writer would let the builder go on.)
    rix_testutil::wait_for(
        "the builder to be killed",
        std::time::Duration::from_secs(60),
        || (!alive()).then_some(()),
    );
}

/// A raw client of `d` (protocol 1.38), through the handshake.
fn raw_connect(
    d: &Daemon,
    store_dir: &rix_formats::StoreDir,
) -> (
    std::os::unix::net::UnixStream,
    rix_formats::worker_protocol::Ctx,
) {
    use rix_formats::worker_protocol::handshake::{write_client_magic, write_raw_version};
    use rix_formats::worker_protocol::{
        ClientHandshakeInfo, ClientOptions, Ctx, ProtocolVersion, Serialise, ServerHello, StderrMsg,
    };
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
    let version = ProtocolVersion::new(1, 38).unwrap();
    let ctx = Ctx::new(version, store_dir.clone());
    write_client_magic(&mut s).unwrap();
    write_raw_version(&mut s, version.raw()).unwrap();
    ServerHello::read(&mut s).unwrap();
    std::collections::BTreeSet::<String>::new()
        .write(&mut s, &ctx)
        .unwrap();
    std::collections::BTreeSet::<String>::read(&mut s, &ctx).unwrap();
    ClientOptions::default().write(&mut s, &ctx).unwrap();
    ClientHandshakeInfo::read(&mut s, &ctx).unwrap();
    assert_eq!(StderrMsg::read(&mut s, &ctx).unwrap(), StderrMsg::Last);
    (s, ctx)
}

/// Requests written ahead of their replies, queries around a write: each is
/// answered in order, the write succeeds inside a run of pipelined queries
/// (which `rix daemon` answers in one read transaction), and the queries after
/// it see what it added.
#[test]
fn pipelined_queries_around_a_write() {
    use rix_formats::worker_protocol::{Request, Serialise, StderrMsg};
    use std::io::{Read, Write};
    let d = start();
    let store_dir = rix_formats::StoreDir::new(d.store.store_dir().to_str().unwrap()).unwrap();
    let text = b"written between queries\n".to_vec();
    let new = store_dir
        .make_text_path(
            "between",
            &rix_formats::hash::HashAlgo::Sha256.digest(&text),
            [],
        )
        .unwrap();
    let (mut s, ctx) = raw_connect(&d, &store_dir);
    let mut batch = Vec::new();
    for r in [
        Request::IsValidPath(new.clone()),
        Request::QueryPathInfo(new.clone()),
        Request::AddTextToStore {
            name: "between".into(),
            text,
            references: Default::default(),
        },
        Request::IsValidPath(new.clone()),
        Request::QueryPathInfo(new.clone()),
    ] {
        r.write(&mut batch, &ctx).unwrap();
    }
    s.write_all(&batch).unwrap();
    let last = |s: &mut std::os::unix::net::UnixStream| loop {
        match StderrMsg::read(s, &ctx).unwrap() {
            StderrMsg::Last => return,
            StderrMsg::Error(e) => panic!("{}", e.msg),
            _ => {}
        }
    };
    let u64_of = |s: &mut std::os::unix::net::UnixStream| {
        let mut b = [0u8; 8];
        s.read_exact(&mut b).unwrap();
        u64::from_le_bytes(b)
    };
    last(&mut s);
    assert_eq!(u64_of(&mut s), 0, "not valid before the write");
    last(&mut s);
    assert_eq!(u64_of(&mut s), 0, "no info before the write");
    last(&mut s);
    let added = rix_formats::StorePath::read(&mut s, &ctx).unwrap();
    assert_eq!(added, new);
    last(&mut s);
    assert_eq!(u64_of(&mut s), 1, "valid after the write");
    last(&mut s);
    assert_eq!(u64_of(&mut s), 1, "an info after the write");
}
