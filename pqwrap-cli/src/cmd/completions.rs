//! `pqwrap completions SHELL`: a completion script generated from the same clap definition
//! that parses the command line, so it never lags behind a new option.

use std::io::Write;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::exit::Status;

/// The shells a completion script can be written for.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Shell {
    /// Bash (bash-completion's `completions/` directory, or `source` it).
    Bash,
    /// Zsh (a file named `_pqwrap` in a directory on `$fpath`).
    Zsh,
    /// Fish (`~/.config/fish/completions/pqwrap.fish`).
    Fish,
    /// PowerShell (dot-source it from `$PROFILE`).
    Powershell,
}

impl From<Shell> for clap_complete::Shell {
    fn from(s: Shell) -> Self {
        match s {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
            Shell::Powershell => clap_complete::Shell::PowerShell,
        }
    }
}

/// Print a shell completion script to standard output.
#[derive(clap::Args)]
#[command(after_help = "Install, for example:\n  \
    pqwrap completions bash > /usr/share/bash-completion/completions/pqwrap\n  \
    pqwrap completions zsh > /usr/local/share/zsh/site-functions/_pqwrap\n  \
    pqwrap completions fish > ~/.config/fish/completions/pqwrap.fish")]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// Runs `pqwrap completions`.
pub fn run(args: Args) -> Result<Status> {
    let mut cmd = crate::Cli::command();
    // clap_complete writes with `expect`: generate into memory so that a full disk or a
    // closed pipe is an error the caller reports, not a panic.
    let mut script = Vec::new();
    clap_complete::generate(
        clap_complete::Shell::from(args.shell),
        &mut cmd,
        "pqwrap",
        &mut script,
    );
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .context("cannot write the completion script to standard output")?;
    Ok(Status::Success)
}
