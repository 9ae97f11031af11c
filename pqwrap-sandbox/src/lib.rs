//! `pqwrap exec`: runs a command under the capabilities of a verified pqwrap token, enforced
//! by the kernel. See docs/SANDBOX.md.
pub mod admission; pub mod error; pub mod policy; pub mod proxy; pub mod revocation;
