//! `pqwrap`: post-quantum hybrid encryption toolkit and archive re-wrapper.

mod cmd;
mod exit;
// Until the commands that drive it are wired (phase 2 of issue 5), only tests use it.
#[allow(dead_code)]
mod rewrap;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Post-quantum hybrid encryption (X25519 + ML-KEM-768) and archive re-wrapping.
#[derive(Parser)]
#[command(name = "pqwrap", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate an identity (hybrid post-quantum by default) or print its recipients.
    Keygen(cmd::keygen::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(args) => cmd::keygen::run(args),
    };
    match result {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("pqwrap: {err:#}");
            exit::Status::Failure.into()
        }
    }
}
