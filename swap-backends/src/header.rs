//! The version-1 swap header ("SWAPSPACE2"), written by us instead of
//! running mkswap(8), and parsed back to recognise a device or file we made.
//!
//! Why not call mkswap: util-linux may be missing (containers, minimal
//! images), and writing the page ourselves lets us pick the UUID and label
//! that later identify the device as ours (adoption after a restart). The
//! layout is `union swap_header` in include/linux/swap.h: the `info` struct at
//! byte 1024 (version, last_page, nr_badpages, uuid, volume label) and the
//! 10-byte magic at the end of the first page, all in native byte order.

use std::fmt;

/// The magic at the end of the first page of a version-1 swap area.
pub const SWAP_MAGIC: &[u8; 10] = b"SWAPSPACE2";
/// Offset of `info.version`.
const INFO_OFFSET: usize = 1024;
/// The label we put in `sws_volume`, so an operator can tell our swap areas apart.
pub const OUR_LABEL: &str = "etmem-rs";
/// Fewest pages mkswap(8) accepts for a swap area; we refuse smaller ones too.
pub const MIN_SWAP_PAGES: u64 = 10;

/// A swap area's UUID (`sws_uuid`), random per area.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SwapUuid(pub [u8; 16]);

impl SwapUuid {
    /// Parses the 8-4-4-4-12 hex form (as /proc/sys/kernel/random/uuid gives).
    pub fn parse(s: &str) -> Option<SwapUuid> {
        let hex: Vec<u8> = s.trim().bytes().filter(|&b| b != b'-').collect();
        if hex.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, pair) in hex.chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(s, 16).ok()?;
        }
        Some(SwapUuid(out))
    }

    /// A fresh random UUID from the kernel (`/proc/sys/kernel/random/uuid`).
    pub fn random() -> std::io::Result<SwapUuid> {
        let s = std::fs::read_to_string("/proc/sys/kernel/random/uuid")?;
        SwapUuid::parse(&s).ok_or_else(|| std::io::Error::other(format!("unexpected uuid text {s:?}")))
    }
}

impl fmt::Display for SwapUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SwapUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SwapUuid({self})")
    }
}

/// Why a swap area of this size cannot be described.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwapHeaderError {
    #[error("a swap area of {size_bytes} bytes is smaller than {MIN_SWAP_PAGES} pages of {page_size} bytes")]
    TooSmall { size_bytes: u64, page_size: u64 },
    #[error("a swap area of {size_bytes} bytes has more pages than a swap header can count")]
    TooLarge { size_bytes: u64 },
    #[error("page size {page_size} is not a power of two of at least 4096")]
    BadPageSize { page_size: u64 },
}

/// The first page of a swap area of `size_bytes` (rounded down to whole
/// pages), with our UUID and label, no bad pages.
pub fn swap_header(size_bytes: u64, page_size: u64, uuid: SwapUuid) -> Result<Vec<u8>, SwapHeaderError> {
    if page_size < 4096 || !page_size.is_power_of_two() {
        return Err(SwapHeaderError::BadPageSize { page_size });
    }
    let pages = size_bytes / page_size;
    if pages < MIN_SWAP_PAGES {
        return Err(SwapHeaderError::TooSmall { size_bytes, page_size });
    }
    let last_page = u32::try_from(pages - 1).map_err(|_| SwapHeaderError::TooLarge { size_bytes })?;
    let page = usize::try_from(page_size).map_err(|_| SwapHeaderError::BadPageSize { page_size })?;
    let mut buf = vec![0u8; page];
    buf[INFO_OFFSET..INFO_OFFSET + 4].copy_from_slice(&1u32.to_ne_bytes()); // version
    buf[INFO_OFFSET + 4..INFO_OFFSET + 8].copy_from_slice(&last_page.to_ne_bytes());
    // nr_badpages stays 0.
    buf[INFO_OFFSET + 12..INFO_OFFSET + 28].copy_from_slice(&uuid.0);
    let label = OUR_LABEL.as_bytes();
    buf[INFO_OFFSET + 28..INFO_OFFSET + 28 + label.len()].copy_from_slice(label);
    buf[page - SWAP_MAGIC.len()..].copy_from_slice(SWAP_MAGIC);
    Ok(buf)
}

/// What a swap header says about its area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapHeaderInfo {
    pub version: u32,
    pub last_page: u32,
    pub uuid: SwapUuid,
    /// `sws_volume` up to its first NUL.
    pub label: String,
}

/// Parses the first page of a swap area; `None` when it is not a version-1
/// header in native byte order.
pub fn parse_swap_header(page: &[u8]) -> Option<SwapHeaderInfo> {
    if page.len() < 4096 || !page.ends_with(SWAP_MAGIC) {
        return None;
    }
    let u32_at = |o: usize| -> Option<u32> { Some(u32::from_ne_bytes(page.get(o..o + 4)?.try_into().ok()?)) };
    let version = u32_at(INFO_OFFSET)?;
    if version != 1 {
        return None;
    }
    let last_page = u32_at(INFO_OFFSET + 4)?;
    let uuid = SwapUuid(page.get(INFO_OFFSET + 12..INFO_OFFSET + 28)?.try_into().ok()?);
    let vol = page.get(INFO_OFFSET + 28..INFO_OFFSET + 44)?;
    let end = vol.iter().position(|&b| b == 0).unwrap_or(vol.len());
    let label = String::from_utf8_lossy(&vol[..end]).into_owned();
    Some(SwapHeaderInfo { version, last_page, uuid, label })
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: SwapUuid = SwapUuid([
        0x93, 0x2f, 0x3f, 0x23, 0xb4, 0xa5, 0x40, 0xc7, 0x8d, 0x6c, 0x6d, 0xc0, 0xa2, 0xcb, 0x9e, 0xef,
    ]);

    #[test]
    fn header_bytes_match_the_kernel_layout() {
        let h = swap_header(256 << 20, 4096, U).expect("valid size");
        assert_eq!(h.len(), 4096);
        assert!(h[..1024].iter().all(|&b| b == 0), "bootbits stay zero");
        assert_eq!(&h[1024..1028], &1u32.to_ne_bytes());
        assert_eq!(&h[1028..1032], &65535u32.to_ne_bytes(), "last_page = pages - 1");
        assert_eq!(&h[1032..1036], &[0; 4], "no bad pages");
        assert_eq!(&h[1036..1052], &U.0);
        assert_eq!(&h[1052..1060], b"etmem-rs");
        assert_eq!(&h[4086..], b"SWAPSPACE2");
        assert!(h[1060..4086].iter().all(|&b| b == 0));
    }

    #[test]
    fn header_rounds_down_to_whole_pages_and_round_trips() {
        let h = swap_header((1 << 20) + 100, 4096, U).expect("valid size");
        let info = parse_swap_header(&h).expect("our own header parses");
        assert_eq!(info, SwapHeaderInfo { version: 1, last_page: 255, uuid: U, label: "etmem-rs".into() });
    }

    #[test]
    fn header_refuses_bad_sizes() {
        assert_eq!(
            swap_header(9 * 4096, 4096, U),
            Err(SwapHeaderError::TooSmall { size_bytes: 9 * 4096, page_size: 4096 })
        );
        assert!(matches!(swap_header(1 << 60, 4096, U), Err(SwapHeaderError::TooLarge { .. })));
        assert!(matches!(swap_header(1 << 20, 1000, U), Err(SwapHeaderError::BadPageSize { .. })));
    }

    #[test]
    fn parse_rejects_other_pages() {
        assert_eq!(parse_swap_header(&[0u8; 4096]), None);
        let mut h = swap_header(1 << 20, 4096, U).expect("valid size");
        h[1024] = 2; // version 2 does not exist
        assert_eq!(parse_swap_header(&h), None);
    }

    #[test]
    fn uuid_text_round_trips() {
        let u = SwapUuid::parse("932f3f23-b4a5-40c7-8d6c-6dc0a2cb9eef\n").expect("valid uuid");
        assert_eq!(u, U);
        assert_eq!(u.to_string(), "932f3f23-b4a5-40c7-8d6c-6dc0a2cb9eef");
        assert_eq!(SwapUuid::parse("xyz"), None);
        assert_eq!(SwapUuid::parse("932f3f23-b4a5-40c7-8d6c-6dc0a2cb9eeg"), None);
    }
}
