//! etmem-rs configuration: the native TOML schema, etmem's INI files, the
//! DAMOS scheme one-liners, and validation that reports every error at once.

pub mod model;

pub use model::*;
