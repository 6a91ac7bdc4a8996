//! Exit codes, which scripts and CI pipelines branch on. They are documented in the README.

use std::process::ExitCode;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything went as asked; for `plan --detailed-exitcode`, nothing to do.
    Success,
    /// An error: bad input, an unreachable warehouse, a failed invocation setup.
    Error,
    /// `plan --detailed-exitcode`: there are changes to apply.
    ChangesPending,
    /// `apply`: some rows were rejected or failed and stay pending, or a rejected-rows
    /// threshold was passed.
    RowsNotDelivered,
    /// `apply` was interrupted by a signal; what was acknowledged is committed.
    Interrupted,
}

impl Outcome {
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Error => 1,
            Outcome::ChangesPending => 2,
            Outcome::RowsNotDelivered => 3,
            Outcome::Interrupted => 130,
        }
    }
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> Self {
        ExitCode::from(outcome.code())
    }
}
