//! Why talking to a binary cache, or substituting from one, failed.

use rix_store::local_store::StoreError;
use thiserror::Error;

/// A failed operation on one binary cache. `transient` errors (connection
/// refused, time-outs, HTTP 5xx/429) are worth retrying; the others are not.
#[derive(Debug, Clone, Error)]
#[error("binary cache '{cache}': {op} '{key}': {message}")]
pub struct CacheError {
    pub cache: String,
    pub op: &'static str,
    pub key: String,
    pub message: String,
    pub transient: bool,
}

impl CacheError {
    pub fn new(
        cache: &str,
        op: &'static str,
        key: &str,
        message: impl Into<String>,
        transient: bool,
    ) -> Self {
        Self {
            cache: cache.to_owned(),
            op,
            key: key.to_owned(),
            message: message.into(),
            transient,
        }
    }
}

/// Why a substitution, an upload or opening a cache failed.
#[derive(Debug, Error)]
pub enum SubstError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The path could not be taken from this cache (bad NAR, bad signature...).
    #[error("cannot substitute '{path}' from '{cache}': {message}")]
    Rejected {
        path: String,
        cache: String,
        message: String,
    },
    /// A cache could not be asked about a path (down, HTTP 500...).
    #[error("cannot ask '{cache}' for '{path}': {message}")]
    Query {
        path: String,
        cache: String,
        message: String,
    },
    /// A reference of the path could not be substituted.
    #[error("cannot substitute '{path}': its reference '{reference}' could not be substituted")]
    ReferenceFailed { path: String, reference: String },
    #[error("invalid binary cache URL '{url}': {message}")]
    Url { url: String, message: String },
    #[error("cannot open binary cache '{cache}': {message}")]
    Open { cache: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Db(#[from] rix_store::db::DbError),
    #[error(transparent)]
    Lock(#[from] rix_store::lock::LockError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl SubstError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

pub type Result<T, E = SubstError> = std::result::Result<T, E>;
