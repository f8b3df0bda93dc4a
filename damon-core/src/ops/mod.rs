//! Address-space operations: everything in damon-core that does I/O.
//! Syscall wrappers, pidfds, /proc parsing, the probes, and the simulated space.

pub mod idle_bitmap;
pub mod idle_pages;
pub mod maps;
pub mod pagemap;
pub mod pidfd;
pub mod refault;
pub mod select;
pub mod sim;
pub mod soft_dirty;
pub mod sys;
