//! pqwrap-core: post-quantum hybrid encryption and archive re-wrapping.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod kem;
pub mod keys;
pub mod token;
