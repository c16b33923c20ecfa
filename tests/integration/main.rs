//! Integration tests: one binary, one module per feature (a single link step on a
//! two-core machine). Storage tests run on SQLite and PostgreSQL.

mod harness;
mod sip_phone;

mod auth;
mod auto_attendant;
mod browser;
mod calls;
mod cli;
mod config_example;
mod device_agent;
mod devices;
mod extensions;
mod first_start;
mod hot_desk;
mod hot_desk_phone;
mod interop;
mod mfa;
mod mwi;
mod openapi;
mod registrar;
mod security;
mod sip_tls;
mod sip_websocket;
mod store;
mod tls;
mod voicemail;
mod voicemail_email;
mod voicemail_phone;
mod webhooks;
mod webrtc_sessions;
mod yubico;
