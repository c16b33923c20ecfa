//! Switchboard: an IP PBX in one binary. See `docs/architecture.md` for the map.

pub mod api;
pub mod app;
pub mod apps;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod features;
pub mod first_start;
pub mod role;
pub mod server;
pub mod sip_server;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod tls;
