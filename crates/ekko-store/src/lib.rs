//! Storage adapters for [`ekko_core::ports::Store`].
//!
//! `sqlite` is the embedded default: one file in the data directory, WAL mode, a busy timeout
//! so that the admin CLI can write while `ekko serve` runs, and `synchronous=FULL` so that a
//! write that returned is on disk (devices are acknowledged only after that).
//! A PostgreSQL adapter implements the same trait later; nothing above this crate sees SQL.

pub mod sqlite;

pub use sqlite::SqliteStore;
