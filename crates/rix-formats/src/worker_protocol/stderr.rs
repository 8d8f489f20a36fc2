//! The daemon's side channel while it works on a request: log lines, activities,
//! data requests, and finally `STDERR_LAST` (the reply follows) or
//! `STDERR_ERROR` (the request failed). Mirrors `TunnelLogger` in Nix's
//! `daemon.cc` (writing), `processStderrReturn` and `readFields` in
//! `worker-protocol-connection.cc` (reading), and `operator<<(Sink &, const
//! Error &)` / `readError` in `serialise.cc` (the error form of protocol 1.26
//! and later).
//!
//! Log text travels as bytes: builders print what they like.

use std::io::{self, Read, Write};

use super::serialise::Ctx;
use super::wire::{
    initial_capacity, read_bytes, read_count, read_text, read_u32, read_u64, write_bytes,
    write_u64, WireError,
};

/// `STDERR_NEXT`: a log line.
pub const STDERR_NEXT: u64 = 0x6f6c_6d67;
/// `STDERR_READ`: the daemon wants data from the client.
pub const STDERR_READ: u64 = 0x6461_7461;
/// `STDERR_WRITE`: data for the client.
pub const STDERR_WRITE: u64 = 0x6461_7416;
/// `STDERR_LAST`: the work is done; the reply follows.
pub const STDERR_LAST: u64 = 0x616c_7473;
/// `STDERR_ERROR`: the work failed.
pub const STDERR_ERROR: u64 = 0x6378_7470;
/// `STDERR_START_ACTIVITY`.
pub const STDERR_START_ACTIVITY: u64 = 0x5354_5254;
/// `STDERR_STOP_ACTIVITY`.
pub const STDERR_STOP_ACTIVITY: u64 = 0x5354_4f50;
/// `STDERR_RESULT`: a result of an activity (a build log line, progress, ...).
pub const STDERR_RESULT: u64 = 0x5253_4c54;

/// Nix's verbosity levels (`Verbosity`), sent as numbers.
pub mod verbosity {
    pub const ERROR: u32 = 0;
    pub const WARN: u32 = 1;
    pub const NOTICE: u32 = 2;
    pub const INFO: u32 = 3;
    pub const TALKATIVE: u32 = 4;
    pub const CHATTY: u32 = 5;
    pub const DEBUG: u32 = 6;
    pub const VOMIT: u32 = 7;
}

/// Nix's activity types (`ActivityType` in `logging.hh`). Newer Nix versions add
/// types without changing the protocol version, so they are kept as numbers.
pub mod activity_type {
    pub const UNKNOWN: u32 = 0;
    pub const COPY_PATH: u32 = 100;
    pub const FILE_TRANSFER: u32 = 101;
    pub const REALISE: u32 = 102;
    pub const COPY_PATHS: u32 = 103;
    pub const BUILDS: u32 = 104;
    pub const BUILD: u32 = 105;
    pub const OPTIMISE_STORE: u32 = 106;
    pub const VERIFY_PATHS: u32 = 107;
    pub const SUBSTITUTE: u32 = 108;
    pub const QUERY_PATH_INFO: u32 = 109;
    pub const POST_BUILD_HOOK: u32 = 110;
    pub const BUILD_WAITING: u32 = 111;
    pub const FETCH_TREE: u32 = 112;
}

/// Nix's result types (`ResultType` in `logging.hh`), kept as numbers for the
/// same reason.
pub mod result_type {
    pub const FILE_LINKED: u32 = 100;
    pub const BUILD_LOG_LINE: u32 = 101;
    pub const UNTRUSTED_PATH: u32 = 102;
    pub const CORRUPTED_PATH: u32 = 103;
    pub const SET_PHASE: u32 = 104;
    pub const PROGRESS: u32 = 105;
    pub const SET_EXPECTED: u32 = 106;
    pub const POST_BUILD_LOG_LINE: u32 = 107;
    pub const FETCH_STATUS: u32 = 108;
}

/// One field of an activity or a result (`Logger::Field`): type `0` and a
/// `u64`, or type `1` and a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Int(u64),
    String(Vec<u8>),
}

/// An error the daemon reports (Nix's `Error`, as sent since 1.26).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    /// A [`verbosity`] level.
    pub level: u32,
    pub msg: String,
    /// The error's trace, innermost first, as Nix keeps `ErrorInfo::traces`.
    pub traces: Vec<String>,
}

/// `STDERR_START_ACTIVITY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartActivity {
    pub id: u64,
    /// A [`verbosity`] level.
    pub level: u32,
    /// An [`activity_type`].
    pub activity_type: u32,
    pub text: Vec<u8>,
    pub fields: Vec<Field>,
    /// 0 when the activity has no parent.
    pub parent: u64,
}

/// `STDERR_RESULT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityResult {
    pub id: u64,
    /// A [`result_type`].
    pub result_type: u32,
    pub fields: Vec<Field>,
}

/// One message of the stderr stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StderrMsg {
    /// `STDERR_NEXT`: a log line (Nix adds the newline).
    Next(Vec<u8>),
    /// `STDERR_READ`: the daemon wants up to this many bytes; the client answers
    /// with one string.
    Read(u64),
    /// `STDERR_WRITE`: data for the client's sink.
    Write(Vec<u8>),
    /// `STDERR_LAST`: the reply follows.
    Last,
    /// `STDERR_ERROR`: the request failed; no reply follows.
    Error(RemoteError),
    StartActivity(StartActivity),
    /// `STDERR_STOP_ACTIVITY` with the activity's id.
    StopActivity(u64),
    Result(ActivityResult),
}

impl StderrMsg {
    /// Reads one message.
    pub fn read<R: Read + ?Sized>(r: &mut R, ctx: &Ctx) -> Result<StderrMsg, WireError> {
        let limits = &ctx.limits;
        Ok(match read_u64(r, "stderr message")? {
            STDERR_NEXT => StderrMsg::Next(read_bytes(r, limits, "STDERR_NEXT")?),
            STDERR_READ => StderrMsg::Read(read_u64(r, "STDERR_READ")?),
            STDERR_WRITE => StderrMsg::Write(read_bytes(r, limits, "STDERR_WRITE")?),
            STDERR_LAST => StderrMsg::Last,
            STDERR_ERROR => StderrMsg::Error(read_error(r, ctx)?),
            STDERR_START_ACTIVITY => StderrMsg::StartActivity(StartActivity {
                id: read_u64(r, "activity id")?,
                level: read_u32(r, "activity level")?,
                activity_type: read_u32(r, "activity type")?,
                text: read_bytes(r, limits, "activity text")?,
                fields: read_fields(r, ctx)?,
                parent: read_u64(r, "activity parent")?,
            }),
            STDERR_STOP_ACTIVITY => StderrMsg::StopActivity(read_u64(r, "activity id")?),
            STDERR_RESULT => StderrMsg::Result(ActivityResult {
                id: read_u64(r, "activity id")?,
                result_type: read_u32(r, "result type")?,
                fields: read_fields(r, ctx)?,
            }),
            value => {
                return Err(WireError::UnknownTag {
                    field: "stderr message",
                    value,
                })
            }
        })
    }

    /// Writes one message.
    pub fn write<W: Write + ?Sized>(&self, w: &mut W) -> io::Result<()> {
        match self {
            StderrMsg::Next(s) => {
                write_u64(w, STDERR_NEXT)?;
                write_bytes(w, s)
            }
            StderrMsg::Read(len) => {
                write_u64(w, STDERR_READ)?;
                write_u64(w, *len)
            }
            StderrMsg::Write(s) => {
                write_u64(w, STDERR_WRITE)?;
                write_bytes(w, s)
            }
            StderrMsg::Last => write_u64(w, STDERR_LAST),
            StderrMsg::Error(e) => {
                write_u64(w, STDERR_ERROR)?;
                write_error(w, e)
            }
            StderrMsg::StartActivity(a) => {
                write_u64(w, STDERR_START_ACTIVITY)?;
                write_u64(w, a.id)?;
                write_u64(w, a.level.into())?;
                write_u64(w, a.activity_type.into())?;
                write_bytes(w, &a.text)?;
                write_fields(w, &a.fields)?;
                write_u64(w, a.parent)
            }
            StderrMsg::StopActivity(id) => {
                write_u64(w, STDERR_STOP_ACTIVITY)?;
                write_u64(w, *id)
            }
            StderrMsg::Result(res) => {
                write_u64(w, STDERR_RESULT)?;
                write_u64(w, res.id)?;
                write_u64(w, res.result_type.into())?;
                write_fields(w, &res.fields)
            }
        }
    }
}

fn read_fields<R: Read + ?Sized>(r: &mut R, ctx: &Ctx) -> Result<Vec<Field>, WireError> {
    let count = read_count(r, &ctx.limits, "fields")?;
    let mut fields = Vec::with_capacity(initial_capacity(count));
    for _ in 0..count {
        fields.push(match read_u32(r, "field type")? {
            0 => Field::Int(read_u64(r, "integer field")?),
            1 => Field::String(read_bytes(r, &ctx.limits, "string field")?),
            value => {
                return Err(WireError::UnknownTag {
                    field: "field type",
                    value: value.into(),
                })
            }
        });
    }
    Ok(fields)
}

fn write_fields<W: Write + ?Sized>(w: &mut W, fields: &[Field]) -> io::Result<()> {
    write_u64(w, fields.len() as u64)?;
    for f in fields {
        match f {
            Field::Int(n) => {
                write_u64(w, 0)?;
                write_u64(w, *n)?;
            }
            Field::String(s) => {
                write_u64(w, 1)?;
                write_bytes(w, s)?;
            }
        }
    }
    Ok(())
}

/// `"Error"`, level, `"Error"` (a removed name), message, `0` (no position),
/// then the traces, each `0` (no position) and its text. Nix asserts the first
/// string and both positions; rix refuses what Nix would abort on.
fn read_error<R: Read + ?Sized>(r: &mut R, ctx: &Ctx) -> Result<RemoteError, WireError> {
    let limits = &ctx.limits;
    let kind = read_bytes(r, limits, "error type")?;
    if kind != b"Error" {
        return Err(WireError::invalid(
            "error type",
            format!("\"{}\" instead of \"Error\"", kind.escape_ascii()),
        ));
    }
    let level = read_u32(r, "error level")?;
    read_bytes(r, limits, "error name")?;
    let msg = read_text(r, limits, "error message")?;
    read_no_position(r, "error position")?;
    let count = read_count(r, limits, "error traces")?;
    let mut traces = Vec::with_capacity(initial_capacity(count));
    for _ in 0..count {
        read_no_position(r, "trace position")?;
        traces.push(read_text(r, limits, "trace")?);
    }
    Ok(RemoteError { level, msg, traces })
}

fn read_no_position<R: Read + ?Sized>(r: &mut R, field: &'static str) -> Result<(), WireError> {
    match read_u64(r, field)? {
        0 => Ok(()),
        value => Err(WireError::UnknownTag { field, value }),
    }
}

fn write_error<W: Write + ?Sized>(w: &mut W, e: &RemoteError) -> io::Result<()> {
    write_bytes(w, b"Error")?;
    write_u64(w, e.level.into())?;
    write_bytes(w, b"Error")?;
    write_bytes(w, e.msg.as_bytes())?;
    write_u64(w, 0)?;
    write_u64(w, e.traces.len() as u64)?;
    for t in &e.traces {
        write_u64(w, 0)?;
        write_bytes(w, t.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nix's numbers (`worker-protocol.hh`, 2.26.3).
    #[test]
    fn tags() {
        assert_eq!(STDERR_NEXT, 0x6f6c6d67);
        assert_eq!(STDERR_READ, 0x64617461);
        assert_eq!(STDERR_WRITE, 0x64617416);
        assert_eq!(STDERR_LAST, 0x616c7473);
        assert_eq!(STDERR_ERROR, 0x63787470);
        assert_eq!(STDERR_START_ACTIVITY, 0x53545254);
        assert_eq!(STDERR_STOP_ACTIVITY, 0x53544f50);
        assert_eq!(STDERR_RESULT, 0x52534c54);
    }
}
