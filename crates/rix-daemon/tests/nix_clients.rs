//! The daemon served in this process (a thread per connection) to real Nix
//! clients: Nix 2.8's `nix-store`, `nix-instantiate` and `nix`, and Nix 2.26's
//! when `RIX_NIX_CURRENT` names its launcher. Skipped when Nix is absent
//! (unless `RIX_REQUIRE_NIX=1`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use rix_daemon::{authorise, bind, serve_connection, serve_listener, Daemon, Peer};
use rix_formats::worker_protocol::handshake::{write_client_magic, write_raw_version};
use rix_formats::worker_protocol::{
    BuildMode, ClientHandshakeInfo, ClientOptions, Ctx, FramedWriter, ProtocolVersion, Request,
    Serialise, ServerHello, StderrMsg, UnkeyedValidPathInfo, ValidPathInfo,
};
use rix_formats::StoreDir;
use rix_store::layout::StoreLayout;
use rix_store::local_store::LocalStore;
use rix_store::settings::Settings;
use rix_testutil::TempStore;

struct Fixture {
    store: TempStore,
    sock: PathBuf,
    daemon: Arc<Daemon>,
}

fn start(configure: impl FnOnce(&mut Settings)) -> Fixture {
    let store = TempStore::new();
    let layout = StoreLayout::from_url(&store.url()).unwrap();
    let local = LocalStore::open(layout).unwrap();
    let mut settings = Settings::default();
    settings.set("sandbox", "false");
    settings.set("substituters", "");
    configure(&mut settings);
    let daemon = Arc::new(Daemon {
        store: local,
        settings,
        exclusive: false,
    });
    let sock = store.dir.path().join("daemon.sock");
    let listener = bind(&sock).unwrap();
    let d = Arc::clone(&daemon);
    std::thread::spawn(move || {
        serve_listener(
            listener,
            Arc::new(move |s: UnixStream| {
                let peer = Peer::of_socket(&s).unwrap();
                let Ok(trusted) = authorise(&d.settings, &peer) else {
                    return;
                };
                let _ = serve_connection(&d, &s, &s, trusted);
            }),
        )
    });
    Fixture {
        store,
        sock,
        daemon,
    }
}

impl Fixture {
    fn url(&self) -> String {
        format!(
            "unix://{}?store={}",
            self.sock.display(),
            self.store.store_dir().display()
        )
    }

    fn cmd(&self, tool: &Path) -> Command {
        let mut c = Command::new(tool);
        c.arg("--store").arg(self.url()).env(
            "NIX_CONFIG",
            "experimental-features = nix-command\nsubstituters =",
        );
        c
    }

    fn ok(&self, mut c: Command) -> String {
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{c:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

fn tool(name: &str) -> Option<PathBuf> {
    rix_testutil::nix(name)
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

#[test]
fn nix_2_8_adds_queries_and_dumps() {
    let Some(nix_store) = tool("nix-store") else {
        return;
    };
    let f = start(|_| {});
    let src = tempfile::tempdir().unwrap();
    let file = write(src.path(), "hello.txt", "hello daemon\n");

    let mut c = f.cmd(&nix_store);
    c.arg("--add").arg(&file);
    let path = f.ok(c).trim().to_owned();
    assert!(path.starts_with(&f.store.store_dir().display().to_string()));
    assert!(path.ends_with("-hello.txt"));

    // The daemon's store has it, with the hash Nix computes itself.
    let parsed = f.daemon.store.parse_path(&path).unwrap();
    let info = f.daemon.store.path_info(&parsed).unwrap();
    let mut c = f.cmd(&nix_store);
    c.args(["-q", "--hash", &path]);
    assert_eq!(f.ok(c).trim(), info.nar_hash.to_string());

    let mut c = f.cmd(&nix_store);
    c.args(["--check-validity", &path]);
    f.ok(c);
    let mut c = f.cmd(&nix_store);
    c.args(["-q", "--references", &path]);
    assert_eq!(f.ok(c), "");
    let mut c = f.cmd(&nix_store);
    c.args(["-q", "--deriver", &path]);
    assert_eq!(f.ok(c).trim(), "unknown-deriver");

    // --dump through the daemon (NarFromPath) gives Nix's own NAR of the file.
    let mut c = f.cmd(&nix_store);
    c.args(["--dump", &path]);
    let via_daemon = c.output().unwrap().stdout;
    let direct = Command::new(&nix_store)
        .arg("--dump")
        .arg(&file)
        .output()
        .unwrap()
        .stdout;
    assert_eq!(via_daemon, direct);

    // A text file referring to it (builtins.toFile through nix-instantiate),
    // then referrers.
    if let Some(inst) = tool("nix-instantiate") {
        let expr = format!("builtins.toFile \"ref.txt\" \"see ${{builtins.storePath {path}}}\"");
        let mut c = f.cmd(&inst);
        c.args(["--eval", "--read-write-mode", "-E", &expr]);
        let out = f.ok(c);
        let text_path = out.trim().trim_matches('"').to_owned();
        let mut c = f.cmd(&nix_store);
        c.args(["-q", "--referrers", &path]);
        assert_eq!(f.ok(c).trim(), text_path);
        let mut c = f.cmd(&nix_store);
        c.args(["-q", "--references", &text_path]);
        assert_eq!(f.ok(c).trim(), path);
    }

    // An invalid path: Nix's client prints the daemon's error.
    let bogus = format!(
        "{}/00000000000000000000000000000000-nope",
        f.store.store_dir().display()
    );
    let mut c = f.cmd(&nix_store);
    c.args(["-q", "--references", &bogus]);
    let out = c.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not valid"), "{err}");
}

#[test]
fn nix_2_8_instantiates_builds_exports_and_imports() {
    let (Some(nix_store), Some(inst)) = (tool("nix-store"), tool("nix-instantiate")) else {
        return;
    };
    let f = start(|_| {});
    let src = tempfile::tempdir().unwrap();
    let nix_file = write(
        src.path(),
        "drv.nix",
        r#"derivation { name = "daemon-built"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo built by the daemon; echo hi > $out" ]; }"#,
    );
    let mut c = f.cmd(&inst);
    c.arg(&nix_file);
    let drv = f.ok(c).trim().to_owned();
    assert!(drv.ends_with("-daemon-built.drv"), "{drv}");

    let mut c = f.cmd(&nix_store);
    c.args(["-q", "--outputs", &drv]);
    let out_path = f.ok(c).trim().to_owned();

    let mut c = f.cmd(&nix_store);
    c.args(["-r", &drv, "--option", "sandbox", "false"]);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), out_path);
    let real = f
        .daemon
        .store
        .real_path(&f.daemon.store.parse_path(&out_path).unwrap());
    assert_eq!(std::fs::read_to_string(real).unwrap(), "hi\n");
    let mut c = f.cmd(&nix_store);
    c.args(["-q", "--deriver", &out_path]);
    assert_eq!(f.ok(c).trim(), drv);

    // nix path-info --json through the daemon.
    if let Some(nix) = tool("nix") {
        let mut c = f.cmd(&nix);
        c.args(["path-info", "--json", &out_path]);
        let json: serde_json::Value = serde_json::from_str(&f.ok(c)).unwrap();
        assert_eq!(json[0]["path"], out_path.as_str());
        assert_eq!(json[0]["deriver"], drv.as_str());
    }

    // --export from this daemon, --import into another one.
    let mut c = f.cmd(&nix_store);
    c.args(["--export", &out_path]);
    let export = c.output().unwrap();
    assert!(export.status.success());
    let g = start(|_| {});
    // Same store directory is needed for the same paths: import into a daemon
    // whose store has the first one's directory is not possible here, so the
    // export is checked by importing it back into the first daemon after
    // deleting nothing: an import of a valid path is a no-op.
    let mut c = f.cmd(&nix_store);
    c.arg("--import")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&export.stdout)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), out_path);
    drop(g);
}

/// Fifty Nix 2.8 clients at once, mixing adds, queries, evaluation and builds.
#[test]
fn fifty_concurrent_clients() {
    let (Some(nix_store), Some(inst)) = (tool("nix-store"), tool("nix-instantiate")) else {
        return;
    };
    let f = Arc::new(start(|_| {}));
    let src = tempfile::tempdir().unwrap();
    // Every third client evaluates and builds a derivation (on the others'
    // sources); the rest add a file and query it.
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let f = Arc::clone(&f);
            let file = write(src.path(), &format!("f{i}"), &format!("contents {i}\n"));
            let nix_file = write(
                src.path(),
                &format!("d{i}.nix"),
                &format!(
                    r#"derivation {{ name = "built-{i}"; system = builtins.currentSystem; builder = "/bin/sh"; src = ./f{i}; args = [ "-c" "read -r line < $src; echo \"$line\" > $out" ]; }}"#
                ),
            );
            let (nix_store, inst) = (nix_store.clone(), inst.clone());
            std::thread::spawn(move || {
                if i % 3 == 0 {
                    let mut c = f.cmd(&inst);
                    c.arg(&nix_file);
                    let drv = f.ok(c).trim().to_owned();
                    let mut c = f.cmd(&nix_store);
                    c.args(["-r", &drv]);
                    let out = f.ok(c).trim().to_owned();
                    let real = f.daemon.store.real_path(&f.daemon.store.parse_path(&out).unwrap());
                    assert_eq!(std::fs::read_to_string(real).unwrap(), format!("contents {i}\n"));
                    return out;
                }
                let mut c = f.cmd(&nix_store);
                c.arg("--add").arg(&file);
                let path = f.ok(c).trim().to_owned();
                let mut c = f.cmd(&nix_store);
                c.args(["-q", "--hash", &path]);
                f.ok(c);
                path
            })
        })
        .collect();
    let paths: std::collections::BTreeSet<String> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(paths.len(), 50);
    for p in &paths {
        let p = f.daemon.store.parse_path(p).unwrap();
        assert!(f.daemon.store.is_valid(&p).unwrap());
    }
}

/// A raw client (the `Request` writer of rix-formats): handshake at `minor`.
fn connect(sock: &Path, minor: u8, store_dir: &StoreDir) -> (UnixStream, Ctx) {
    let mut s = UnixStream::connect(sock).unwrap();
    let version = ProtocolVersion::new(1, minor).unwrap();
    let ctx = Ctx::new(version, store_dir.clone());
    write_client_magic(&mut s).unwrap();
    write_raw_version(&mut s, version.raw()).unwrap();
    let hello = ServerHello::read(&mut s).unwrap();
    assert_eq!(hello.version, ProtocolVersion::MAX.raw());
    if version.has_feature_exchange() {
        std::collections::BTreeSet::<String>::new()
            .write(&mut s, &ctx)
            .unwrap();
        let features = std::collections::BTreeSet::<String>::read(&mut s, &ctx).unwrap();
        assert!(features.is_empty());
    }
    ClientOptions::default().write(&mut s, &ctx).unwrap();
    let info = ClientHandshakeInfo::read(&mut s, &ctx).unwrap();
    assert_eq!(info.daemon_nix_version, rix_daemon::DAEMON_VERSION);
    assert_eq!(StderrMsg::read(&mut s, &ctx).unwrap(), StderrMsg::Last);
    (s, ctx)
}

/// Reads stderr messages up to the end of the work: `Ok` or the error message.
fn outcome(s: &mut UnixStream, ctx: &Ctx) -> Result<(), String> {
    loop {
        match StderrMsg::read(s, ctx).unwrap() {
            StderrMsg::Last => return Ok(()),
            StderrMsg::Error(e) => return Err(e.msg),
            _ => {}
        }
    }
}

fn nar_of(contents: &[u8]) -> Vec<u8> {
    let mut w = rix_formats::nar::NarWriter::new(Vec::new());
    w.file(false, contents).unwrap();
    w.get_ref().clone()
}

#[test]
fn a_client_killed_mid_nar_leaves_the_store_consistent() {
    let f = start(|_| {});
    let store_dir = f.daemon.store.store_dir().clone();
    let contents = vec![7u8; 4 << 20];
    let nar = nar_of(&contents);
    let nar_hash = rix_formats::hash::HashAlgo::Sha256.digest(&nar);
    let path = store_dir
        .make_fixed_output_path(
            "big",
            rix_formats::store_path::FileIngestionMethod::Recursive,
            &nar_hash,
            [],
            false,
        )
        .unwrap();
    let mut info = UnkeyedValidPathInfo::new(nar_hash);
    info.nar_size = nar.len() as u64;
    let req = Request::AddToStoreNar {
        info: ValidPathInfo {
            path: path.clone(),
            info,
        },
        repair: false,
        dont_check_sigs: true,
    };
    for minor in [34, 38] {
        let (mut s, ctx) = connect(&f.sock, minor, &store_dir);
        req.write(&mut s, &ctx).unwrap();
        let mut framed = FramedWriter::new(&mut s);
        framed.write_all(&nar[..nar.len() / 2]).unwrap();
        framed.flush().unwrap();
        drop(framed);
        drop(s); // the client dies mid-NAR
    }
    // The daemon goes on serving; the path is not valid, nothing is left over.
    let (mut s, ctx) = connect(&f.sock, 38, &store_dir);
    Request::IsValidPath(path.clone())
        .write(&mut s, &ctx)
        .unwrap();
    assert_eq!(outcome(&mut s, &ctx), Ok(()));
    let mut valid = [0u8; 8];
    s.read_exact(&mut valid).unwrap();
    assert_eq!(valid, [0; 8]);
    rix_testutil::wait_for(
        "the aborted writes to be cleaned up",
        std::time::Duration::from_secs(30),
        || {
            let report = rix_store::verify::verify_store(
                &f.daemon.store,
                rix_store::verify::VerifyOptions {
                    check_contents: true,
                },
                &rix_store::verify::Quiet,
            )
            .unwrap();
            (report.is_consistent() && report.leftovers.is_empty()).then_some(())
        },
    );

    // The whole NAR, sent properly, is added.
    req.write(&mut s, &ctx).unwrap();
    let mut framed = FramedWriter::new(&mut s);
    framed.write_all(&nar).unwrap();
    framed.finish().unwrap();
    assert_eq!(outcome(&mut s, &ctx), Ok(()));
    assert!(f.daemon.store.is_valid(&path).unwrap());
}

#[test]
fn untrusted_clients_get_nix_refusals() {
    // Nobody is trusted: this process's own connections are untrusted.
    let f = start(|s| s.set("trusted-users", ""));
    let store_dir = f.daemon.store.store_dir().clone();

    // An unsigned, input-addressed path.
    let nar = nar_of(b"unsigned\n");
    let nar_hash = rix_formats::hash::HashAlgo::Sha256.digest(&nar);
    let path = store_dir
        .parse(&format!(
            "{store_dir}/0000000000000000000000000000000a-unsigned"
        ))
        .unwrap();
    let mut info = UnkeyedValidPathInfo::new(nar_hash);
    info.nar_size = nar.len() as u64;
    let (mut s, ctx) = connect(&f.sock, 34, &store_dir);
    Request::AddToStoreNar {
        info: ValidPathInfo {
            path: path.clone(),
            info,
        },
        repair: false,
        dont_check_sigs: true,
    }
    .write(&mut s, &ctx)
    .unwrap();
    let mut framed = FramedWriter::new(&mut s);
    framed.write_all(&nar).unwrap();
    framed.finish().unwrap();
    assert_eq!(
        outcome(&mut s, &ctx),
        Err(format!(
            "cannot add path '{}' because it lacks a signature by a trusted key",
            store_dir.display(&path)
        ))
    );
    assert!(!f.daemon.store.is_valid(&path).unwrap());

    // BuildDerivation of an input-addressed derivation.
    let out = store_dir
        .parse(&format!("{store_dir}/0000000000000000000000000000000b-x"))
        .unwrap();
    let drv_path = store_dir
        .parse(&format!(
            "{store_dir}/0000000000000000000000000000000c-x.drv"
        ))
        .unwrap();
    let mut drv = rix_formats::derivation::Derivation {
        name: "x".into(),
        system: b"x86_64-linux".to_vec(),
        builder: b"/bin/sh".to_vec(),
        ..Default::default()
    };
    drv.outputs.insert(
        "out".into(),
        rix_formats::derivation::DerivationOutput::InputAddressed { path: out },
    );
    Request::BuildDerivation {
        drv_path,
        drv,
        mode: BuildMode::Normal,
    }
    .write(&mut s, &ctx)
    .unwrap();
    assert_eq!(
        outcome(&mut s, &ctx),
        Err("you are not privileged to build input-addressed derivations".to_owned())
    );

    // Privileged options are ignored with Nix's warning.
    Request::SetOptions(rix_formats::worker_protocol::ClientSettings {
        verbosity: 3,
        overrides: vec![("sandbox".into(), "relaxed".into())],
        ..Default::default()
    })
    .write(&mut s, &ctx)
    .unwrap();
    let mut lines = Vec::new();
    loop {
        match StderrMsg::read(&mut s, &ctx).unwrap() {
            StderrMsg::Next(l) => lines.push(String::from_utf8(l).unwrap()),
            StderrMsg::Last => break,
            m => panic!("{m:?}"),
        }
    }
    assert_eq!(lines, ["warning: ignoring the client-specified setting 'sandbox', because it is a restricted setting and you are not a trusted user\n"]);

    // AddPermRoot (1.36): refused, and the connection is closed, as Nix does.
    let (mut s, ctx) = connect(&f.sock, 38, &store_dir);
    Request::AddPermRoot {
        path: path.clone(),
        gc_root: "/tmp/x".into(),
    }
    .write(&mut s, &ctx)
    .unwrap();
    assert!(outcome(&mut s, &ctx)
        .unwrap_err()
        .starts_with("you are not privileged to create perm roots"));
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

#[test]
fn nix_2_8_untrusted_user_cannot_import_unsigned_paths() {
    let Some(nix_store) = tool("nix-store") else {
        return;
    };
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping: needs root to run a client as rixuser");
        return;
    }
    let f = start(|_| {});
    // An export (`nix-store --export` layout) of an input-addressed path with
    // no signature.
    let store_dir = f.daemon.store.store_dir().clone();
    let printed = format!("{store_dir}/0000000000000000000000000000000d-unsigned");
    let mut export = Vec::new();
    {
        use rix_formats::worker_protocol::wire::{write_bytes, write_u64};
        write_u64(&mut export, 1).unwrap();
        export.extend_from_slice(&nar_of(b"not signed\n"));
        write_u64(&mut export, 0x4558_494e).unwrap();
        write_bytes(&mut export, printed.as_bytes()).unwrap();
        write_u64(&mut export, 0).unwrap(); // references
        write_bytes(&mut export, b"").unwrap(); // deriver
        write_u64(&mut export, 0).unwrap(); // no signature
        write_u64(&mut export, 0).unwrap(); // end
    }
    let import = |as_rixuser: bool| -> Output {
        let mut c = if as_rixuser {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=1001", "--regid=1001", "--clear-groups"])
                .arg(&nix_store);
            c
        } else {
            Command::new(&nix_store)
        };
        c.arg("--store")
            .arg(f.url())
            .arg("--import")
            .env("NIX_CONFIG", "substituters =")
            .env("HOME", "/tmp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child.stdin.take().unwrap().write_all(&export).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = import(true);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot add path '{printed}' because it lacks a signature by a trusted key"
        )),
        "{err}"
    );
    let parsed = store_dir.parse(&printed).unwrap();
    assert!(!f.daemon.store.is_valid(&parsed).unwrap());
    // root is trusted (trusted-users = root): `--import` does not check signatures.
    let out = import(false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), printed);
    assert!(f.daemon.store.is_valid(&parsed).unwrap());
}

#[test]
fn nix_current_adds_and_queries() {
    let Some(mut probe) = rix_testutil::nix_current("nix-store") else {
        return;
    };
    if !probe.arg("--version").status().is_ok_and(|s| s.success()) {
        eprintln!("skipping: nix-current does not run");
        return;
    }
    let f = start(|_| {});
    let src = tempfile::tempdir().unwrap();
    let file = write(src.path(), "current.txt", "from Nix 2.26\n");
    let run = |args: &[&str]| -> String {
        let mut c = rix_testutil::nix_current("nix-store").unwrap();
        c.arg("--store").arg(f.url()).args(args).env(
            "NIX_CONFIG",
            "experimental-features = nix-command\nsubstituters =",
        );
        f.ok(c)
    };
    let path = run(&["--add", file.to_str().unwrap()]).trim().to_owned();
    assert!(path.ends_with("-current.txt"));
    assert_eq!(run(&["-q", "--references", &path]), "");
    let parsed = f.daemon.store.parse_path(&path).unwrap();
    let info = f.daemon.store.path_info(&parsed).unwrap();
    assert_eq!(
        run(&["-q", "--hash", &path]).trim(),
        info.nar_hash.to_string()
    );
    let dumped = {
        let mut c = rix_testutil::nix_current("nix-store").unwrap();
        c.arg("--store").arg(f.url()).args(["--dump", &path]);
        c.output().unwrap().stdout
    };
    let mut expected = Vec::new();
    rix_store::archive::dump(&file, &mut expected).unwrap();
    assert_eq!(dumped, expected);
}

/// A build through the daemon takes an output from the daemon's binary caches
/// instead of running the builder (Nix 2.8's `nix-store -r`), as `rix build` does.
#[test]
fn nix_2_8_builds_through_the_daemon_substitute_from_its_caches() {
    let (Some(nix_store), Some(inst), Some(nix)) =
        (tool("nix-store"), tool("nix-instantiate"), tool("nix"))
    else {
        return;
    };
    let src = tempfile::tempdir().unwrap();
    let cache = src.path().join("cache");
    let cache_url = format!("file://{}", cache.display());
    let f = start(|s| {
        s.set("substituters", &cache_url);
        s.set("require-sigs", "false");
    });
    let marker = src.path().join("runs");
    let nix_file = write(
        src.path(),
        "drv.nix",
        &format!(
            r#"derivation {{ name = "cached"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo run >> {}; echo hi > $out" ]; }}"#,
            marker.display()
        ),
    );
    let mut c = f.cmd(&inst);
    c.arg(&nix_file);
    let drv = f.ok(c).trim().to_owned();
    let with_cache = |c: &mut Command| {
        c.args([
            "--option",
            "substituters",
            &cache_url,
            "--option",
            "require-sigs",
            "false",
        ]);
    };
    let mut c = f.cmd(&nix_store);
    c.args(["-r", &drv]);
    with_cache(&mut c);
    let out_path = f.ok(c).trim().to_owned();
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "run\n");

    // Into the cache (Nix's own `nix copy` reading through the daemon), then
    // out of the store.
    let mut c = f.cmd(&nix);
    let to = format!("{cache_url}?store={}", f.store.store_dir().display());
    c.args(["copy", "--to", &to, &out_path]);
    f.ok(c);
    // (This daemon runs in the test's process, whose temporary roots keep the
    // output from `--delete`: it is dropped directly.)
    let p = f.daemon.store.parse_path(&out_path).unwrap();
    f.daemon.store.db().invalidate(&p).unwrap();
    rix_store::canonicalise::delete_path(&f.daemon.store.real_path(&p)).unwrap();
    let mut c = f.cmd(&nix_store);
    c.args(["--check-validity", &out_path]);
    assert!(!c.output().unwrap().status.success());

    let mut c = f.cmd(&nix_store);
    c.args(["-r", &drv]);
    with_cache(&mut c);
    assert_eq!(f.ok(c).trim(), out_path);
    // Fetched, not built again.
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "run\n");
    let real = f
        .daemon
        .store
        .real_path(&f.daemon.store.parse_path(&out_path).unwrap());
    assert_eq!(std::fs::read_to_string(real).unwrap(), "hi\n");
}

/// Clients that die in the middle of each kind of operation: in a request's
/// arguments, in a framed upload (`AddToStore`, `AddMultipleToStore`), while a
/// NAR streams to them, and with a build running. The daemon goes on serving,
/// nothing half-written becomes valid, and the store verifies clean once the
/// abandoned work has ended.
#[test]
fn clients_killed_mid_operation_leave_the_daemon_serving_and_the_store_clean() {
    use rix_formats::worker_protocol::request::{AddMethod, ContentAddressMethodWithAlgo};
    use rix_formats::worker_protocol::{DerivedPath, OutputsSpec};
    let f = start(|_| {});
    let store_dir = f.daemon.store.store_dir().clone();
    let big = nar_of(&vec![3u8; 2 << 20]);

    // In the middle of a request's arguments.
    let (mut s, ctx) = connect(&f.sock, 38, &store_dir);
    let mut bytes = Vec::new();
    Request::AddTextToStore {
        name: "half-request".into(),
        text: vec![b'x'; 4096],
        references: Default::default(),
    }
    .write(&mut bytes, &ctx)
    .unwrap();
    s.write_all(&bytes[..bytes.len() / 2]).unwrap();
    drop(s);

    // In the middle of AddToStore's framed dump, and of AddMultipleToStore's.
    let (mut s, ctx) = connect(&f.sock, 38, &store_dir);
    Request::AddToStore {
        name: "cut-dump".into(),
        method: ContentAddressMethodWithAlgo {
            method: AddMethod::Recursive,
            algo: rix_formats::hash::HashAlgo::Sha256,
        },
        references: Default::default(),
        repair: false,
    }
    .write(&mut s, &ctx)
    .unwrap();
    let mut framed = FramedWriter::new(&mut s);
    framed.write_all(&big[..big.len() / 3]).unwrap();
    framed.flush().unwrap();
    drop(framed);
    drop(s);
    let (mut s, ctx) = connect(&f.sock, 38, &store_dir);
    Request::AddMultipleToStore {
        repair: false,
        dont_check_sigs: true,
    }
    .write(&mut s, &ctx)
    .unwrap();
    let mut framed = FramedWriter::new(&mut s);
    framed.write_all(&1u64.to_le_bytes()).unwrap();
    framed.write_all(&big[..1000]).unwrap();
    framed.flush().unwrap();
    drop(framed);
    drop(s);

    // While a NAR streams: a valid path, read a little of it.
    let nar_hash = rix_formats::hash::HashAlgo::Sha256.digest(&big);
    let path = store_dir
        .make_fixed_output_path(
            "streamed",
            rix_formats::store_path::FileIngestionMethod::Recursive,
            &nar_hash,
            [],
            false,
        )
        .unwrap();
    let mut info =
        rix_store::path_info::ValidPathInfo::new(path.clone(), nar_hash, big.len() as u64);
    info.ca = Some(rix_formats::content_address::ContentAddress::Fixed(
        rix_formats::store_path::FileIngestionMethod::Recursive,
        nar_hash,
    ));
    f.daemon.store.add_nar(&info, &big[..]).unwrap();
    let (mut s, ctx) = connect(&f.sock, 34, &store_dir);
    Request::NarFromPath(path.clone())
        .write(&mut s, &ctx)
        .unwrap();
    let mut some = [0u8; 1000];
    s.read_exact(&mut some).unwrap();
    drop(s);

    // With a build running (its builder takes a while).
    let src = tempfile::tempdir().unwrap();
    let drv = rix_formats::derivation::Derivation::from_aterm(
        format!(
            r#"Derive([("out","","","")],[],[],"{system}","/bin/sh",["-c","i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done; echo done > $out"],[("builder","/bin/sh"),("name","slow"),("out",""),("system","{system}")])"#,
            system = rix_testutil_system()
        )
        .as_bytes(),
        &store_dir,
        Some("slow"),
    )
    .unwrap();
    let mut drv = drv;
    drv.fill_in_output_paths(&store_dir, |_: &rix_formats::StorePath| {
        Err::<rix_formats::derivation::DrvHash, std::io::Error>(std::io::Error::other(
            "no input derivations",
        ))
    })
    .unwrap();
    let drv_path = f.daemon.store.add_derivation(&drv).unwrap();
    let out = drv.outputs["out"]
        .path(&store_dir, "slow", "out")
        .unwrap()
        .unwrap();
    let (mut s, ctx) = connect(&f.sock, 38, &store_dir);
    Request::BuildPathsWithResults {
        paths: vec![DerivedPath::Built {
            drv_path: drv_path.clone(),
            outputs: OutputsSpec::All,
        }],
        mode: BuildMode::Normal,
    }
    .write(&mut s, &ctx)
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(s);
    drop(src);

    // Still serving; what was cut is not valid; the store is clean once the
    // build has ended (its output complete and valid, or absent).
    let (mut s, ctx) = connect(&f.sock, 38, &store_dir);
    Request::IsValidPath(path.clone())
        .write(&mut s, &ctx)
        .unwrap();
    assert_eq!(outcome(&mut s, &ctx), Ok(()));
    let mut valid = [0u8; 8];
    s.read_exact(&mut valid).unwrap();
    assert_eq!(valid, 1u64.to_le_bytes());
    let names: Vec<String> = f
        .daemon
        .store
        .db()
        .all_valid_paths()
        .unwrap()
        .iter()
        .map(|p| p.name().to_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n == "half-request" || n == "cut-dump"),
        "{names:?}"
    );
    // (In this in-process daemon nothing cancels the abandoned build: it runs
    // to its end. `rix daemon`'s connection processes cancel it on hang-up.)
    rix_testutil::wait_for(
        "the abandoned work to end and the store to verify clean",
        std::time::Duration::from_secs(60),
        || {
            if !f.daemon.store.is_valid(&out).unwrap() {
                return None;
            }
            let report = rix_store::verify::verify_store(
                &f.daemon.store,
                rix_store::verify::VerifyOptions {
                    check_contents: true,
                },
                &rix_store::verify::Quiet,
            )
            .unwrap();
            (report.is_consistent() && report.leftovers.is_empty()).then_some(())
        },
    );
    let real = f.daemon.store.real_path(&out);
    assert_eq!(std::fs::read_to_string(real).unwrap(), "done\n");
}

/// The system string builders here run under (`builtins.currentSystem`).
fn rix_testutil_system() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "aarch64-linux"
    } else {
        "x86_64-linux"
    }
}

/// An untrusted client's `.drv` whose declared output is not the one its
/// contents give is refused with Nix's words (`LocalStore::checkDerivationOutputs`),
/// and does not become valid.
#[test]
fn untrusted_clients_cannot_add_a_drv_with_forged_outputs() {
    use rix_formats::derivation::{Derivation, DerivationOutput};
    let f = start(|s| s.set("trusted-users", ""));
    let store_dir = f.daemon.store.store_dir().clone();
    let honest = |out_path: Option<rix_formats::StorePath>| {
        let mut drv = Derivation {
            name: "forged".into(),
            system: rix_testutil_system().as_bytes().to_vec(),
            builder: b"/bin/sh".to_vec(),
            ..Default::default()
        };
        drv.env.insert("builder".into(), b"/bin/sh".to_vec());
        drv.env.insert("name".into(), b"forged".to_vec());
        drv.env
            .insert("system".into(), rix_testutil_system().as_bytes().to_vec());
        let printed = out_path.as_ref().map(|p| store_dir.display(p));
        drv.env
            .insert("out".into(), printed.unwrap_or_default().into_bytes());
        drv.outputs.insert(
            "out".into(),
            match out_path {
                Some(path) => DerivationOutput::InputAddressed { path },
                None => DerivationOutput::Deferred,
            },
        );
        drv
    };
    let mut real = honest(None);
    real.fill_in_output_paths(&store_dir, |_: &rix_formats::StorePath| {
        Err::<rix_formats::derivation::DrvHash, std::io::Error>(std::io::Error::other("none"))
    })
    .unwrap();
    let expected = real.outputs["out"]
        .path(&store_dir, "forged", "out")
        .unwrap()
        .unwrap();
    let bogus = store_dir
        .parse(&format!(
            "{store_dir}/00000000000000000000000000000000-forged"
        ))
        .unwrap();
    let forged = honest(Some(bogus.clone()));
    let aterm = forged.to_aterm(&store_dir).unwrap();
    let drv_path = store_dir
        .make_text_path(
            "forged.drv",
            &rix_formats::hash::HashAlgo::Sha256.digest(&aterm),
            [],
        )
        .unwrap();
    for minor in [34, 38] {
        let (mut s, ctx) = connect(&f.sock, minor, &store_dir);
        Request::AddTextToStore {
            name: "forged.drv".into(),
            text: aterm.clone(),
            references: Default::default(),
        }
        .write(&mut s, &ctx)
        .unwrap();
        let err = outcome(&mut s, &ctx).unwrap_err();
        let want = format!(
            "has incorrect output '{}', should be '{}'",
            store_dir.display(&bogus),
            store_dir.display(&expected)
        );
        assert!(err.contains(&want), "wanted '{want}' in: {err}");
        assert!(!f.daemon.store.is_valid(&drv_path).unwrap());
    }
}
