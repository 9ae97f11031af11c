//! One module per subcommand. Each exposes `Args` (clap) and `run(Args) -> anyhow::Result<Status>`.

pub mod audit;
pub mod broker;
pub mod completions;
pub mod decrypt;
pub mod demo;
pub mod encrypt;
pub mod exec;
pub mod format;
pub mod inspect;
pub mod io_util;
pub mod keygen;
pub mod man;
pub mod rewrap;
pub mod scan;
pub mod token;
