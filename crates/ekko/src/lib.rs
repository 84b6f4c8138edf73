//! The `ekko` binary's library half: CLI commands and server wiring. Every command calls the
//! same domain functions as the API (`ekko_core::Ekko`); none of them talks SQL.

pub mod admin;
pub mod cli;
pub mod demo;
pub mod environment;
pub mod fleet_cli;
pub mod server;
pub mod simulator;
