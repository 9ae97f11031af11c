//! One module per subcommand. Each exposes `Args` (clap) and `run(Args) -> anyhow::Result<Status>`.

pub mod audit;
pub mod keygen;
pub mod token;
