//! One module per subcommand. Each exposes `Args` (clap) and `run(Args) -> anyhow::Result<Status>`.

pub mod keygen;
