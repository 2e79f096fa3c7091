//! The errors of the use cases, named by what they mean to the caller: the command
//! line turns them into exit codes, the HTTP API into statuses.

use std::path::PathBuf;

use ec2_scheduler_config::Diagnostics;
use ec2_scheduler_core::exemption::ExemptionError;
use ec2_scheduler_engine::EngineError;
use ec2_scheduler_engine::ports::{ApiError, ErrorKind, Lock, StoreError};

/// What an error means to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The input is wrong; the message says where and what.
    Invalid,
    /// What the input names does not exist (a workload, a run, an exemption).
    NotFound,
    /// The workload is busy, or the run is not in a state that allows it.
    Conflict,
    /// The cloud refused: a permission is missing.
    Forbidden,
    /// The cloud or the store failed, or could not be reached.
    Upstream,
    /// Something that should not happen (a corrupt record, a file that cannot be
    /// written).
    Internal,
}

/// An error of a use case. Each keeps its source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input the user can fix.
    #[error("{0}")]
    Invalid(String),
    /// Workload files with errors (every one of them, with file, line and column).
    #[error("{}\n{} error{} found", .0, .0.errors().count(), if .0.errors().count() == 1 { "" } else { "s" })]
    Config(#[from] Diagnostics),
    #[error("cannot plan: {0}")]
    Plan(#[from] ec2_scheduler_core::PlanError),
    #[error(transparent)]
    Exemption(#[from] ExemptionError),
    #[error("{0}")]
    NotFound(String),
    /// Another run holds the workload's lock.
    #[error(
        "workload {} is busy: run {} of {} holds its lock until {}",
        .0.workload, .0.run_id, .0.owner, .0.expires.to_rfc3339()
    )]
    Busy(Lock),
    /// The run is not in a state that allows the request.
    #[error("{0}")]
    Conflict(String),
    /// The lease was lost: another run took over after it expired, or the run was
    /// cancelled.
    #[error("lost the lock of workload {0}: the run was cancelled or another run took over")]
    LockLost(String),
    #[error("access denied: {0}")]
    Forbidden(#[source] ApiError),
    #[error(transparent)]
    Upstream(ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}: cannot read: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: the file is larger than {limit} bytes, the most this command reads", .path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{}: {message}", .path.display())]
    NotUtf8 { path: PathBuf, message: String },
    /// A value that could not be written as JSON.
    #[error("cannot encode: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("{what} {}: {source}", .path.display())]
    Write {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::Invalid(_)
            | Error::Config(_)
            | Error::Plan(_)
            | Error::Exemption(_)
            | Error::Read { .. }
            | Error::TooLarge { .. }
            | Error::NotUtf8 { .. } => Kind::Invalid,
            Error::NotFound(_) => Kind::NotFound,
            Error::Busy(_)
            | Error::Conflict(_)
            | Error::LockLost(_)
            | Error::Store(StoreError::Conflict(_)) => Kind::Conflict,
            Error::Forbidden(_) => Kind::Forbidden,
            Error::Upstream(_) => Kind::Upstream,
            Error::Store(StoreError::Invalid(_)) => Kind::Invalid,
            Error::Store(StoreError::Backend(_)) => Kind::Upstream,
            Error::Store(StoreError::Corrupt { .. }) | Error::Write { .. } | Error::Encode(_) => {
                Kind::Internal
            }
        }
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        if e.kind == ErrorKind::AccessDenied {
            Error::Forbidden(e)
        } else {
            Error::Upstream(e)
        }
    }
}

impl From<EngineError> for Error {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Api(a) => a.into(),
            EngineError::Store(s) => Error::Store(s),
            EngineError::Plan(p) => Error::Plan(p),
            EngineError::Busy(l) => Error::Busy(l),
            EngineError::LockLost(w) => Error::LockLost(w),
            EngineError::NoSuchRun(id) => Error::NotFound(format!("no run {id} in the store")),
        }
    }
}

/// Use-case result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
