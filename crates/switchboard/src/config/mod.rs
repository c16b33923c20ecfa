//! Configuration: `config.yml` (or `--config`), `${VAR}` interpolation from the
//! environment and a `.env` file, typed sections with the seeds' defaults, warnings
//! for unknown keys and errors that name the key, the value and what is allowed.
//!
//! Every key is documented in `config.example.yml`; `docs/configuration.md` says which
//! feature reads it.

mod load;
mod schema;
mod types;
mod validate;

pub use load::{ConfigError, Invalid, Loaded, known_keys, load, load_str};
pub use schema::*;
pub use types::{HttpTls, ListenAddr, Secret, SipListen, SipTransport};
