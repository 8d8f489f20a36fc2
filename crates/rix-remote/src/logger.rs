//! What the daemon says while it works: log lines, activities (builds,
//! substitutions, downloads, ...) and their results (build log lines, phases,
//! progress). [`DaemonLogger`] receives them, decoded; rix-cli implements it to
//! show them in its own progress display. [`StderrLogger`] prints them as
//! Nix's own client does (its "simple logger"). Mirrors `Logger`,
//! `ActivityType` and `ResultType` in Nix's `logging.hh`.

use std::io::Write;

use rix_formats::worker_protocol::stderr::{activity_type, result_type, verbosity};
use rix_formats::worker_protocol::{ActivityResult, Field, StartActivity};

/// What an activity is, decoded from its type and fields. Types rix does not
/// know (newer Nix adds some without changing the protocol) are `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivityKind {
    /// Building a derivation (`actBuild`): its `.drv` path as printed, the
    /// machine it builds on (empty: this one), the round and rounds.
    Build {
        drv_path: String,
        machine: String,
        round: u64,
        rounds: u64,
    },
    /// Substituting a path (`actSubstitute`) from a substituter URI.
    Substitute { path: String, substituter: String },
    /// A download (`actFileTransfer`).
    FileTransfer { uri: String },
    /// Copying a path between stores (`actCopyPath`).
    CopyPath {
        path: String,
        from: String,
        to: String,
    },
    /// Asking a substituter about a path (`actQueryPathInfo`).
    QueryPathInfo { path: String, substituter: String },
    /// The post-build hook of a derivation (`actPostBuildHook`).
    PostBuildHook { drv_path: String },
    /// Every other type, by Nix's number (see `activity_type`), with its
    /// fields as sent.
    Other { activity_type: u32 },
}

/// An activity the daemon started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// The daemon's id of it (unique within the connection's daemon process).
    pub id: u64,
    /// A verbosity level (`lvlError` 0 ... `lvlVomit` 7).
    pub level: u32,
    /// Nix's activity type number.
    pub activity_type: u32,
    pub kind: ActivityKind,
    /// Nix's description (`building '/nix/store/...drv'`); may be empty.
    pub text: String,
    pub fields: Vec<Field>,
    /// The parent activity, 0 when none.
    pub parent: u64,
}

/// A result of an activity, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultKind {
    /// A line the builder printed (`resBuildLogLine`), without its newline.
    BuildLogLine(Vec<u8>),
    /// A line of the post-build hook (`resPostBuildLogLine`).
    PostBuildLogLine(Vec<u8>),
    /// The build entered a phase (`resSetPhase`).
    SetPhase(String),
    /// Progress (`resProgress`).
    Progress {
        done: u64,
        expected: u64,
        running: u64,
        failed: u64,
    },
    /// How much of some activity type to expect (`resSetExpected`).
    SetExpected { activity_type: u32, expected: u64 },
    /// The optimiser linked a file (`resFileLinked`).
    FileLinked { bytes: u64, blocks: u64 },
    /// A path without a trusted signature (`resUntrustedPath`).
    UntrustedPath(String),
    /// A path whose contents are wrong (`resCorruptedPath`).
    CorruptedPath(String),
    /// A status line of a fetch (`resFetchStatus`).
    FetchStatus(String),
    /// Every other type, by Nix's number, with its fields as sent.
    Other {
        result_type: u32,
        fields: Vec<Field>,
    },
}

/// Receives what the daemon reports while it works on a request. Called on
/// the thread that reads the connection; every method has a default that
/// does nothing, except [`DaemonLogger::log`].
pub trait DaemonLogger: Send + Sync {
    /// A log line (`STDERR_NEXT`), without its final newline. Nix's client
    /// prints every one (the daemon has already filtered by verbosity).
    fn log(&self, line: &[u8]);

    /// A warning of the client itself (`unknown setting 'foo'`), as Nix prints
    /// `warning: ...`.
    fn warn(&self, message: &str) {
        self.log(format!("warning: {message}").as_bytes());
    }

    fn start_activity(&self, _activity: &Activity) {}

    fn stop_activity(&self, _id: u64) {}

    fn result(&self, _id: u64, _result: &ResultKind) {}
}

/// Nix's client output (its simple logger, as `nix-store` and `nix-build` use
/// it): log lines to stderr; an activity's text with `...` when its level is
/// at most `verbosity`; build log lines when `print_build_logs` is set.
#[derive(Debug, Clone)]
pub struct StderrLogger {
    pub verbosity: u32,
    pub print_build_logs: bool,
}

impl Default for StderrLogger {
    fn default() -> Self {
        StderrLogger {
            verbosity: verbosity::INFO,
            print_build_logs: true,
        }
    }
}

impl StderrLogger {
    fn print(&self, line: &[u8]) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line);
        let _ = err.write_all(b"\n");
    }
}

impl DaemonLogger for StderrLogger {
    fn log(&self, line: &[u8]) {
        self.print(line);
    }

    fn start_activity(&self, a: &Activity) {
        if a.level <= self.verbosity && !a.text.is_empty() {
            self.print(format!("{}...", a.text).as_bytes());
        }
    }

    fn result(&self, _id: u64, result: &ResultKind) {
        if !self.print_build_logs {
            return;
        }
        match result {
            ResultKind::BuildLogLine(line) | ResultKind::PostBuildLogLine(line) => self.print(line),
            _ => {}
        }
    }
}

/// A logger that drops everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuietLogger;

impl DaemonLogger for QuietLogger {
    fn log(&self, _: &[u8]) {}
    fn warn(&self, _: &str) {}
}

fn string(fields: &[Field], i: usize) -> String {
    match fields.get(i) {
        Some(Field::String(s)) => String::from_utf8_lossy(s).into_owned(),
        _ => String::new(),
    }
}

fn int(fields: &[Field], i: usize) -> u64 {
    match fields.get(i) {
        Some(Field::Int(n)) => *n,
        _ => 0,
    }
}

fn bytes(fields: &[Field], i: usize) -> Vec<u8> {
    match fields.get(i) {
        Some(Field::String(s)) => s.clone(),
        _ => Vec::new(),
    }
}

/// Decodes `STDERR_START_ACTIVITY`. Fields missing or of the wrong type read
/// as empty or zero, as a display would show them.
pub fn decode_activity(a: &StartActivity) -> Activity {
    let f = &a.fields;
    let kind = match a.activity_type {
        activity_type::BUILD => ActivityKind::Build {
            drv_path: string(f, 0),
            machine: string(f, 1),
            round: int(f, 2),
            rounds: int(f, 3),
        },
        activity_type::SUBSTITUTE => ActivityKind::Substitute {
            path: string(f, 0),
            substituter: string(f, 1),
        },
        activity_type::FILE_TRANSFER => ActivityKind::FileTransfer { uri: string(f, 0) },
        activity_type::COPY_PATH => ActivityKind::CopyPath {
            path: string(f, 0),
            from: string(f, 1),
            to: string(f, 2),
        },
        activity_type::QUERY_PATH_INFO => ActivityKind::QueryPathInfo {
            path: string(f, 0),
            substituter: string(f, 1),
        },
        activity_type::POST_BUILD_HOOK => ActivityKind::PostBuildHook {
            drv_path: string(f, 0),
        },
        t => ActivityKind::Other { activity_type: t },
    };
    Activity {
        id: a.id,
        level: a.level,
        activity_type: a.activity_type,
        kind,
        text: String::from_utf8_lossy(&a.text).into_owned(),
        fields: a.fields.clone(),
        parent: a.parent,
    }
}

/// Decodes `STDERR_RESULT`.
pub fn decode_result(r: &ActivityResult) -> ResultKind {
    let f = &r.fields;
    match r.result_type {
        result_type::BUILD_LOG_LINE => ResultKind::BuildLogLine(bytes(f, 0)),
        result_type::POST_BUILD_LOG_LINE => ResultKind::PostBuildLogLine(bytes(f, 0)),
        result_type::SET_PHASE => ResultKind::SetPhase(string(f, 0)),
        result_type::PROGRESS => ResultKind::Progress {
            done: int(f, 0),
            expected: int(f, 1),
            running: int(f, 2),
            failed: int(f, 3),
        },
        result_type::SET_EXPECTED => ResultKind::SetExpected {
            activity_type: int(f, 0).try_into().unwrap_or(u32::MAX),
            expected: int(f, 1),
        },
        result_type::FILE_LINKED => ResultKind::FileLinked {
            bytes: int(f, 0),
            blocks: int(f, 1),
        },
        result_type::UNTRUSTED_PATH => ResultKind::UntrustedPath(string(f, 0)),
        result_type::CORRUPTED_PATH => ResultKind::CorruptedPath(string(f, 0)),
        result_type::FETCH_STATUS => ResultKind::FetchStatus(string(f, 0)),
        t => ResultKind::Other {
            result_type: t,
            fields: f.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_build_and_its_log_lines() {
        let a = decode_activity(&StartActivity {
            id: 7,
            level: verbosity::INFO,
            activity_type: activity_type::BUILD,
            text: b"building '/nix/store/x.drv'".to_vec(),
            fields: vec![
                Field::String(b"/nix/store/x.drv".to_vec()),
                Field::String(Vec::new()),
                Field::Int(1),
                Field::Int(1),
            ],
            parent: 0,
        });
        assert_eq!(
            a.kind,
            ActivityKind::Build {
                drv_path: "/nix/store/x.drv".into(),
                machine: String::new(),
                round: 1,
                rounds: 1
            }
        );
        let r = decode_result(&ActivityResult {
            id: 7,
            result_type: result_type::BUILD_LOG_LINE,
            fields: vec![Field::String(b"hi".to_vec())],
        });
        assert_eq!(r, ResultKind::BuildLogLine(b"hi".to_vec()));
        // Missing fields read as empty, never a panic.
        let r = decode_result(&ActivityResult {
            id: 7,
            result_type: result_type::PROGRESS,
            fields: vec![],
        });
        assert_eq!(
            r,
            ResultKind::Progress {
                done: 0,
                expected: 0,
                running: 0,
                failed: 0
            }
        );
    }
}
