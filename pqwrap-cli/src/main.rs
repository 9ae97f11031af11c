//! `pqwrap`: post-quantum hybrid encryption toolkit and archive re-wrapper.

mod cmd;
mod exit;
mod keyfiles;
mod objects;
mod outputs;
mod progress;
mod render;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::sync::LazyLock;

/// `pqwrap --version`: the version, then which implementation computes each cryptographic
/// primitive, so a reviewer can tell what a binary runs (`-V` prints the version alone).
static LONG_VERSION: LazyLock<String> = LazyLock::new(|| {
    let backends = pqwrap_core::backends();
    let width = backends
        .iter()
        .map(|b| b.primitive.len())
        .max()
        .unwrap_or(0);
    let mut s = format!("{}\n\ncryptographic backends:", env!("CARGO_PKG_VERSION"));
    for b in backends {
        s.push_str(&format!(
            "\n  {:width$}  {} {}",
            b.primitive, b.implementation, b.version
        ));
    }
    // Chosen at run time, so it belongs to this machine rather than to the build.
    s.push_str(&format!(
        "\n\nML-KEM-768 code path on this CPU: {}",
        pqwrap_core::kem::Backend::detect().name()
    ));
    s
});

/// Post-quantum hybrid encryption (X25519 + ML-KEM-768) and archive re-wrapping.
#[derive(Parser)]
#[command(name = "pqwrap", version, long_version = LONG_VERSION.as_str(), long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate an identity (hybrid post-quantum by default) or print its recipients.
    Keygen(cmd::keygen::Args),
    /// Encrypt a file to recipients or with a passphrase.
    Encrypt(cmd::encrypt::Args),
    /// Decrypt a file (its format is detected).
    Decrypt(cmd::decrypt::Args),
    /// Show an encrypted file's format and protection, without a key.
    Inspect(cmd::inspect::Args),
    /// ML-DSA capability tokens for agents: keygen, pubkey, issue, verify, check, narrow.
    Token(cmd::token::Args),
    /// Hash-chained audit logs.
    Audit(cmd::audit::Args),
    /// Run a command under a token's capabilities, enforced by the kernel (Landlock).
    Exec(cmd::exec::Args),
    /// The token broker service: serve, revoke, consume, rotate-key.
    Broker(cmd::broker::Args),
    /// Re-wrap encrypted files to post-quantum recipients, in place (age and pqwrap files).
    Rewrap(cmd::rewrap::Args),
    /// Count files and bytes by format and protection, without any key.
    Scan(cmd::scan::Args),
    /// Build a sample archive, scan it, re-wrap it to a new post-quantum key, scan again.
    Demo(cmd::demo::Args),
    /// Print a shell completion script (bash, zsh, fish, powershell).
    Completions(cmd::completions::Args),
    /// Print the manual page of a command, or write every page into a directory.
    Man(cmd::man::Args),
}

/// `pqwrap inspect f | head` must end quietly, as Unix tools do, not with a panic: Rust
/// ignores SIGPIPE, so `println!` to a closed pipe panics. Exit like a SIGPIPE death instead.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(args) => cmd::keygen::run(args),
        Command::Encrypt(args) => cmd::encrypt::run(args),
        Command::Decrypt(args) => cmd::decrypt::run(args),
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Token(args) => cmd::token::run(args),
        Command::Audit(args) => cmd::audit::run(args),
        Command::Exec(args) => return cmd::exec::run(args),
        Command::Broker(args) => cmd::broker::run(args),
        Command::Rewrap(args) => cmd::rewrap::run(args),
        Command::Scan(args) => cmd::scan::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Completions(args) => cmd::completions::run(args),
        Command::Man(args) => cmd::man::run(args),
    };
    match result {
        Ok(code) => code.into(),
        // The reader of our output went away (`pqwrap decrypt f | head -c1`): quietly, with
        // the shell's code for SIGPIPE, wherever in the error's chain the pipe broke.
        Err(err)
            if err.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::from(141)
        }
        Err(err) => {
            eprintln!("pqwrap: {err:#}");
            exit::Status::Failure.into()
        }
    }
}
