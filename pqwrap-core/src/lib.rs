//! pqwrap-core: post-quantum hybrid encryption and archive re-wrapping.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod age;
pub mod audit;
mod backend;
pub mod envelope;
pub mod kem;
pub mod keys;
pub mod ocsf;
#[cfg(feature = "sops")]
pub mod sops;
pub mod token;
#[cfg(unix)]
pub mod xattr;

pub use backend::{Backend, backends};
