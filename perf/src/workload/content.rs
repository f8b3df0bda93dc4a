//! Checkable memory content: the value every 8-byte word must hold, derived
//! from (seed, region index, offset), so any word can be verified without a copy.
//!
//! The value is a bijective mix (splitmix64) of a key unique to the word, so two
//! words of the workload never hold the same value (but for the one remapped
//! zero): a page that comes back at the wrong place, or as zeros, is caught.
//! A region may be filled sparsely (one page every `fill_stride` bytes, the
//! rest left untouched and zero), to model memory that is mapped but barely
//! used, which THP `always` backs with whole huge pages anyway.

/// Bytes per checked word.
pub const WORD_BYTES: u64 = 8;

/// Stands in for a mixed value of 0, so no word's expected value is 0 and a
/// zero-filled page (lost content) never verifies.
const ZERO_STAND_IN: u64 = 0x5a5a_5a5a_5a5a_5a5a;

/// splitmix64's finaliser: a bijection on u64 with good avalanche.
fn splitmix64(key: u64) -> u64 {
    let mut z = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The value the word at `offset_bytes` (a multiple of 8) of region `region_index` holds.
#[inline]
pub fn expected_word(seed: u64, region_index: u32, offset_bytes: u64) -> u64 {
    // Word indexes stay below 2^52 (regions are at most 2^44 bytes), so region
    // and word never overlap in the key.
    let key = seed ^ (u64::from(region_index) << 52) ^ (offset_bytes / WORD_BYTES);
    match splitmix64(key) {
        0 => ZERO_STAND_IN,
        v => v,
    }
}

/// What one region's words hold: every word its [`expected_word`], or, in a
/// sparsely filled region, only the words of the first page of every
/// `fill_stride` bytes; the other pages are never touched by the fill and
/// must read zero (an access that stores writes zero there too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionContent {
    pub seed: u64,
    pub region_index: u32,
    /// `(fill_stride, page_size)` of a sparsely filled region.
    pub sparse: Option<(u64, u64)>,
}

impl RegionContent {
    /// Whether the fill wrote the word at `offset_bytes`.
    #[inline]
    pub fn is_filled(&self, offset_bytes: u64) -> bool {
        match self.sparse {
            None => true,
            Some((stride, page)) => offset_bytes % stride < page,
        }
    }

    /// The value the word at `offset_bytes` holds: [`expected_word`], or 0 in
    /// a page the sparse fill left alone.
    #[inline]
    pub fn expected(&self, offset_bytes: u64) -> u64 {
        if self.is_filled(offset_bytes) {
            expected_word(self.seed, self.region_index, offset_bytes)
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn words_differ_across_offsets_regions_and_seeds() {
        let mut seen = HashSet::new();
        for region in 0..4u32 {
            for word in 0..4096u64 {
                assert!(seen.insert(expected_word(7, region, word * WORD_BYTES)));
            }
        }
        assert_ne!(expected_word(7, 0, 0), expected_word(8, 0, 0));
    }

    #[test]
    fn sparse_content_is_zero_between_filled_pages() {
        let dense = RegionContent { seed: 3, region_index: 1, sparse: None };
        let sparse = RegionContent { sparse: Some((16384, 4096)), ..dense };
        assert_eq!(sparse.expected(8), expected_word(3, 1, 8));
        assert_eq!(sparse.expected(4088), expected_word(3, 1, 4088));
        assert_eq!(sparse.expected(4096), 0);
        assert_eq!(sparse.expected(16376), 0);
        assert_eq!(sparse.expected(16384), dense.expected(16384));
        assert!((0..4096u64).all(|w| dense.is_filled(w * 8)));
    }

    #[test]
    fn never_zero() {
        assert!((0..100_000u64).all(|w| expected_word(1, 0, w * 8) != 0));
    }
}
