//! Checkable memory content: the value every 8-byte word must hold, derived
//! from (seed, region index, offset), so any word can be verified without a copy.
//!
//! The value is a bijective mix (splitmix64) of a key unique to the word, so two
//! words of the workload never hold the same value (but for the one remapped
//! zero): a page that comes back at the wrong place, or as zeros, is caught.

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
    fn never_zero() {
        assert!((0..100_000u64).all(|w| expected_word(1, 0, w * 8) != 0));
    }
}
