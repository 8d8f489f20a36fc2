//! The client against a scripted daemon: what a real daemon never sends (bytes
//! out of place, absurd lengths, a connection closed half-way, an old
//! protocol) must end in an error, never a panic, a hang or a huge allocation,
//! and the connection must then be dropped; what a real daemon sends rarely
//! (errors with colours, activities) must arrive as Nix's client shows it.

use std::collections::BTreeSet;
use std::io::{BufReader, BufWriter, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;

use rix_formats::worker_protocol::handshake::{
    read_client_magic, read_raw_version, ClientHandshakeInfo, ClientOptions, ServerHello,
    TrustedFlag,
};
use rix_formats::worker_protocol::stderr::{activity_type, result_type, STDERR_NEXT};
use rix_formats::worker_protocol::wire::{read_strings, write_strings, write_u64};
use rix_formats::worker_protocol::{
    ActivityResult, Ctx, Field, ProtocolVersion, RawVersion, RemoteError, Request, Serialise,
    StartActivity, StderrMsg, WorkerOp,
};
use rix_formats::{StoreDir, StorePath};
use rix_remote::{ActivityKind, DaemonOptions, DaemonStore, QuietLogger, ResultKind};
use rix_store::local_store::StoreError;
use rix_store::store_api::Store;

mod common;

/// One side of a scripted connection.
struct Server {
    r: BufReader<UnixStream>,
    w: BufWriter<UnixStream>,
    ctx: Ctx,
}

impl Server {
    /// Reads the next request.
    fn request(&mut self) -> Option<Request> {
        let op = WorkerOp::read(&mut self.r).ok()?;
        Request::read(op, &mut self.r, &self.ctx).ok()
    }

    fn send(&mut self, msg: StderrMsg) {
        msg.write(&mut self.w).unwrap();
    }

    fn u64(&mut self, n: u64) {
        write_u64(&mut self.w, n).unwrap();
    }

    fn flush(&mut self) {
        self.w.flush().unwrap();
    }
}

/// A daemon at a temporary socket announcing `version`; each connection runs
/// the handshake, answers `SetOptions`, then `script`.
fn fake_daemon(
    version: u32,
    script: impl Fn(&mut Server) + Send + Sync + 'static,
) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("socket");
    let listener = UnixListener::bind(&socket).unwrap();
    let script = Arc::new(script);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let script = script.clone();
            std::thread::spawn(move || {
                let mut s = Server {
                    r: BufReader::new(stream.try_clone().unwrap()),
                    w: BufWriter::new(stream),
                    ctx: Ctx::new(ProtocolVersion::MAX, StoreDir::default()),
                };
                if read_client_magic(&mut s.r).is_err() {
                    return;
                }
                ServerHello {
                    version: RawVersion(version),
                }
                .write(&mut s.w)
                .unwrap();
                s.flush();
                let Ok(client) = read_raw_version(&mut s.r, "client version") else {
                    return;
                };
                let Ok(v) = ProtocolVersion::negotiate(ProtocolVersion::MAX, client)
                    .and_then(|v| ProtocolVersion::negotiate(v, RawVersion(version)))
                else {
                    return;
                };
                s.ctx.version = v;
                if v.has_feature_exchange() {
                    read_strings(&mut s.r, &s.ctx.limits, "features").unwrap();
                    write_strings(&mut s.w, std::iter::empty::<&str>()).unwrap();
                    s.flush();
                }
                ClientOptions::read(&mut s.r, &s.ctx).unwrap();
                ClientHandshakeInfo {
                    daemon_nix_version: "2.26.3".into(),
                    remote_trusts_us: Some(TrustedFlag::Trusted),
                }
                .write(&mut s.w, &s.ctx)
                .unwrap();
                s.send(StderrMsg::Last);
                s.flush();
                match s.request() {
                    Some(Request::SetOptions(_)) => {}
                    other => panic!("expected SetOptions, got {other:?}"),
                }
                s.send(StderrMsg::Last);
                s.flush();
                script(&mut s);
            });
        }
    });
    (dir, socket)
}

fn open(socket: &std::path::Path) -> DaemonStore {
    DaemonStore::open(
        socket,
        StoreDir::default(),
        "fake".into(),
        DaemonOptions::default(),
        Arc::new(QuietLogger),
    )
    .unwrap()
}

fn some_path() -> StorePath {
    StorePath::from_base_name("g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo").unwrap()
}

#[test]
fn an_unknown_stderr_message_drops_the_connection() {
    let (_dir, socket) = fake_daemon(0x126, |s| {
        while let Some(_req) = s.request() {
            s.u64(0x1234_5678);
            s.flush();
        }
    });
    let store = open(&socket);
    assert_eq!(store.idle_connections(), 1);
    let err = store.is_valid(&some_path()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Protocol(m) if m.contains("0x12345678")),
        "{err:?}"
    );
    assert_eq!(store.idle_connections(), 0);
}

#[test]
fn absurd_lengths_are_refused_before_allocating() {
    let (_dir, socket) = fake_daemon(0x126, |s| {
        while let Some(req) = s.request() {
            match req {
                Request::IsValidPath(_) => {
                    // A log line of a terabyte.
                    s.u64(STDERR_NEXT);
                    s.u64(1 << 40);
                }
                _ => {
                    // A set of 2^60 paths.
                    s.send(StderrMsg::Last);
                    s.u64(1 << 60);
                }
            }
            s.flush();
        }
    });
    let store = open(&socket);
    let err = store.is_valid(&some_path()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Protocol(m) if m.contains("over the limit")),
        "{err:?}"
    );
    let err = store.query_all_valid_paths().unwrap_err();
    assert!(
        matches!(&err, StoreError::Protocol(m) if m.contains("over the limit")),
        "{err:?}"
    );
    assert_eq!(store.idle_connections(), 0);
}

#[test]
fn a_daemon_that_goes_away_mid_reply() {
    let (_dir, socket) = fake_daemon(0x126, |s| {
        if s.request().is_some() {
            s.send(StderrMsg::Next(b"working".to_vec()));
            s.send(StderrMsg::Last);
            s.u64(3); // a set of three paths, then nothing
            s.flush();
        }
    });
    let store = open(&socket);
    let err = store.query_all_valid_paths().unwrap_err();
    assert!(
        matches!(&err, StoreError::Protocol(m) if m == "Nix daemon disconnected unexpectedly (maybe it crashed?)"),
        "{err:?}"
    );
    assert_eq!(store.idle_connections(), 0);
}

#[test]
fn errors_keep_the_connection_and_lose_their_colours() {
    let (_dir, socket) = fake_daemon(0x126, |s| {
        let mut first = true;
        while let Some(req) = s.request() {
            assert!(matches!(req, Request::IsValidPath(_)));
            if first {
                s.send(StderrMsg::Error(RemoteError {
                    level: 0,
                    msg: "path '\x1b[35;1m/nix/store/x\x1b[0m' is not valid".into(),
                    traces: vec![],
                }));
                first = false;
            } else {
                s.send(StderrMsg::Last);
                s.u64(1);
            }
            s.flush();
        }
    });
    let store = open(&socket);
    let err = store.is_valid(&some_path()).unwrap_err();
    match err {
        StoreError::Remote {
            message,
            exit_status,
        } => {
            assert_eq!(message, "path '/nix/store/x' is not valid");
            assert_eq!(exit_status, 1);
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(store.idle_connections(), 1);
    assert!(store.is_valid(&some_path()).unwrap());
}

#[test]
fn unsupported_versions_are_refused() {
    for version in [0x121, 0x226] {
        let (_dir, socket) = fake_daemon(version, |_| {});
        let err = DaemonStore::open(
            &socket,
            StoreDir::default(),
            "fake".into(),
            DaemonOptions::default(),
            Arc::new(QuietLogger),
        )
        .err()
        .unwrap();
        assert!(
            matches!(&err, StoreError::Protocol(m) if m.contains("not supported")),
            "{err:?}"
        );
    }
}

#[test]
fn activities_and_results_reach_the_logger() {
    let (_dir, socket) = fake_daemon(0x122, |s| {
        while s.request().is_some() {
            s.send(StderrMsg::StartActivity(StartActivity {
                id: 5,
                level: 3,
                activity_type: activity_type::BUILD,
                text: b"building '/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo.drv'".to_vec(),
                fields: vec![
                    Field::String(b"/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo.drv".to_vec()),
                    Field::String(Vec::new()),
                    Field::Int(1),
                    Field::Int(1),
                ],
                parent: 0,
            }));
            s.send(StderrMsg::Result(ActivityResult {
                id: 5,
                result_type: result_type::BUILD_LOG_LINE,
                fields: vec![Field::String(b"compiling".to_vec())],
            }));
            s.send(StderrMsg::StopActivity(5));
            s.send(StderrMsg::Next(b"a message\n".to_vec()));
            s.send(StderrMsg::Last);
            s.u64(0);
            s.flush();
        }
    });
    let recorder = Arc::new(common::Recorder::default());
    let store = DaemonStore::open(
        &socket,
        StoreDir::default(),
        "fake".into(),
        DaemonOptions::default(),
        recorder.clone(),
    )
    .unwrap();
    assert_eq!(store.protocol_version().unwrap().to_string(), "1.34");
    assert_eq!(store.is_trusted_client().unwrap(), None);
    assert!(!store.is_valid(&some_path()).unwrap());
    let activities = recorder.activities.lock().unwrap();
    assert_eq!(activities.len(), 1);
    assert_eq!(
        activities[0].kind,
        ActivityKind::Build {
            drv_path: "/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo.drv".into(),
            machine: String::new(),
            round: 1,
            rounds: 1
        }
    );
    assert_eq!(
        *recorder.results.lock().unwrap(),
        vec![(5, ResultKind::BuildLogLine(b"compiling".to_vec()))]
    );
    assert_eq!(*recorder.stopped.lock().unwrap(), vec![5]);
    assert_eq!(
        *recorder.lines.lock().unwrap(),
        vec!["a message".to_owned()]
    );
}

#[test]
fn unexpected_data_requests_are_refused() {
    let (_dir, socket) = fake_daemon(0x126, |s| {
        while s.request().is_some() {
            s.send(StderrMsg::Read(1 << 30));
            s.flush();
        }
    });
    let store = open(&socket);
    let err = store
        .add_text("t", b"t", &BTreeSet::new())
        .map(drop)
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Protocol(m) if m.contains("STDERR_READ")),
        "{err:?}"
    );
    let err = store.is_valid(&some_path()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Protocol(m) if m.contains("STDERR_READ")),
        "{err:?}"
    );
    assert_eq!(store.idle_connections(), 0);
}
