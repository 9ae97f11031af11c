//! The pqwrap token broker: a local service that mints short-lived ML-DSA capability tokens
//! for attested peers under a policy.
//!
//! Desktop agents ask over a Unix socket ([`proto`]); the broker identifies the peer from
//! the kernel and `/proc` ([`peer`]), decides from the policy file ([`policy`]), may ask a
//! person ([`consent`]), signs with pqwrap-core's [`Issuer`](pqwrap_core::token::Issuer),
//! records every decision durably before answering ([`journal`], [`events`]: write-ahead
//! journal, hash-chained audit log, OCSF stream), counts quantum jobs against tokens and their
//! ancestors, revokes, rotates keys and publishes a signed Token Status List
//! ([`service`]). [`server`] is the service loop, [`client`] the other end. docs/BROKER.md
//! describes the protocol, the policy and deployment.

#![forbid(unsafe_code)]

pub mod client;
pub mod consent;
pub mod events;
pub mod journal;
pub mod peer;
pub mod policy;
pub mod proto;
pub mod server;
pub mod service;
pub mod state;

pub use service::{Broker, BrokerError, Config};
