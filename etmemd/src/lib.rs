//! The etmem-rs daemon and CLI.
