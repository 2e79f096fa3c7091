//! The command line's errors and their exit codes.

use ec2_scheduler_app::Kind;

/// Why a command did not end well.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    App(#[from] ec2_scheduler_app::Error),
    /// The run finished without success.
    #[error("run {id} {status}")]
    RunNotSuccessful { id: String, status: &'static str },
    /// Standard output was closed by its reader (`| head`): a normal end.
    #[error("standard output was closed")]
    Closed,
    #[error("writing to standard output: {0}")]
    Stdout(#[source] std::io::Error),
    #[error("cannot encode the output: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl CliError {
    /// The process's exit code: 0 ok (also when the reader of standard output went
    /// away), 1 invalid input (or something it names that does not exist), 2 usage
    /// (from the argument parser), 3 a run that did not succeed, 4 the workload is
    /// busy (or the run is in a state that does not allow the request), 5 access
    /// denied by AWS, 6 AWS or the store failed or could not be reached, 7 anything
    /// else.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Closed => 0,
            CliError::RunNotSuccessful { .. } => 3,
            CliError::App(e) => match e.kind() {
                Kind::Invalid | Kind::NotFound => 1,
                Kind::Conflict => 4,
                Kind::Forbidden => 5,
                Kind::Upstream => 6,
                Kind::Internal => 7,
            },
            CliError::Stdout(_) | CliError::Encode(_) | CliError::Runtime(_) => 7,
        }
    }

    /// Whether the message is for the user as it is (input to fix, a run's outcome),
    /// rather than an error report.
    pub fn is_plain(&self) -> bool {
        match self {
            CliError::RunNotSuccessful { .. } => true,
            CliError::App(e) => matches!(e.kind(), Kind::Invalid | Kind::NotFound),
            _ => false,
        }
    }
}

/// Command result.
pub type Result<T = (), E = CliError> = std::result::Result<T, E>;
