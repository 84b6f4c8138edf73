//! Ekko's domain core.
//!
//! This crate owns the model (accounts, devices, tracks, notifications), its validation rules,
//! the authorization decisions, and the *ports* the rest of the system plugs into:
//! [`ports::Store`] (durable storage) and [`ports::Bus`] (live notification fan-out).
//!
//! Invariants:
//! - No I/O happens here: no sockets, no files, no SQL. Adapters live in other crates.
//! - No wire format is known here: no GraphQL, no Phoenix frames, no device byte formats.
//! - Every authorization decision is taken here ([`service::Ekko`]), never in a transport.

pub mod account;
pub mod device;
pub mod device_cache;
pub mod device_secret;
pub mod error;
pub mod fields;
pub mod fleet;
pub mod history;
pub mod ids;
pub mod integration;
pub mod notification;
pub mod oauth;
pub mod paging;
pub mod ports;
pub mod service;
pub mod time;
pub mod track;

pub use error::DomainError;
pub use ids::{AccountId, Imei};
pub use service::{Caller, Ekko};
