//! Process exit statuses, kept in one place so every command agrees on them.

use std::process::ExitCode;

/// What a command tells the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Everything asked for was done.
    Success,
    /// The command ran but failed (for batch jobs: at least one file failed).
    Failure,
    /// A capability check ran and the request was denied.
    Denied,
    /// The command line was wrong (clap also exits with 2).
    Usage,
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> ExitCode {
        ExitCode::from(match s {
            Status::Success => 0,
            Status::Failure => 1,
            Status::Usage => 2,
            Status::Denied => 3,
        })
    }
}
