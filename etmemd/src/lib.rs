//! The etmem-rs daemon (`etmemd`) and its CLI (`etmem`): the socket protocol,
//! the project registry, engine scheduling, state, and human output.

pub mod client;
pub mod config_file;
pub mod daemon;
pub mod doctor;
pub mod engine;
pub mod metrics;
pub mod progress;
pub mod protocol;
pub mod record;
pub mod registry;
pub mod render;
pub mod report;
pub mod runtime;
pub mod server;
pub mod state;
pub mod tools;
