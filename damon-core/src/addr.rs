//! Virtual addresses and half-open address ranges, as newtypes so a size is
//! never mistaken for an address.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The base page size this crate assumes (x86-64 and most arm64 kernels).
pub const PAGE_SIZE: u64 = 4096;

/// A virtual address in a target's address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Addr(pub u64);

impl Addr {
    pub fn align_down(self, to: u64) -> Addr {
        Addr(self.0 / to * to)
    }
    pub fn align_up(self, to: u64) -> Addr {
        Addr(self.0.div_ceil(to) * to)
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// The half-open range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AddrRange {
    pub start: Addr,
    pub end: Addr,
}

impl AddrRange {
    pub fn new(start: u64, end: u64) -> AddrRange {
        debug_assert!(start <= end, "range {start:#x}-{end:#x} is inverted");
        AddrRange { start: Addr(start), end: Addr(end) }
    }
    pub fn len(&self) -> u64 {
        self.end.0 - self.start.0
    }
    pub fn is_empty(&self) -> bool {
        self.end.0 <= self.start.0
    }
    pub fn contains(&self, a: Addr) -> bool {
        self.start <= a && a < self.end
    }
    /// The overlap of two ranges, if any.
    pub fn intersect(&self, other: &AddrRange) -> Option<AddrRange> {
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        (start < end).then_some(AddrRange { start, end })
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}-{:x}", self.start.0, self.end.0)
    }
}
