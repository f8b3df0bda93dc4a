//! etmem idle_pages stream parsing on fixture files: this machine has no
//! etmem_scan kernel module, so no test here reads a real idle_pages file.

mod ops_common;

use damon_core::Addr;
use damon_core::ops::idle_pages::{IdlePageRun, IdlePagesParseError, PageAccess, buffer_len, parse_stream};
use damon_core::{AddrRange, PAGE_SIZE};
use ops_common::read_hex;

fn run(start: u64, page_size: u64, nr_pages: u64, access: PageAccess) -> IdlePageRun {
    IdlePageRun { start: Addr(start), page_size, nr_pages, access }
}

const M2: u64 = 2 << 20;

#[test]
fn idle_pages_stream_fixture_parses_no_kernel_module_here() {
    let bytes = read_hex("idle_pages/one_read.hex");
    let mut runs = Vec::new();
    let out = parse_stream(Addr(0x7f00_0000_0000), &bytes, &mut |r| runs.push(r)).expect("parses");
    use PageAccess::*;
    assert_eq!(
        runs,
        vec![
            run(0x7f00_0000_0000, PAGE_SIZE, 3, Accessed),
            run(0x7f00_0000_3000, PAGE_SIZE, 2, Dirty),
            run(0x7f00_0000_5000, PAGE_SIZE, 15, Idle),
            run(0x7f00_0001_f000, PAGE_SIZE, 1, Idle),
            run(0x7f00_0020_0000, M2, 1, Accessed),
            run(0x7f00_0040_0000, M2, 1, Dirty),
            run(0x7f00_0060_0000, M2, 2, Idle),
            run(0x7f00_00c0_0000, PAGE_SIZE, 512, Idle),
            run(0x7f00_0100_1000, PAGE_SIZE, 1, Accessed),
            run(0x7f40_0000_0000, 1 << 30, 1, Accessed),
        ]
    );
    assert_eq!(out.unaligned_records, 1);
    assert_eq!(out.end, Addr(0x7f40_4000_0000), "cursor after the 1 GiB page; cut command ignored");
}

#[test]
fn idle_pages_weights_are_etmems_no_kernel_module_here() {
    let bytes = read_hex("idle_pages/one_read.hex");
    let mut score_by_page = std::collections::BTreeMap::new();
    parse_stream(Addr(0), &bytes, &mut |r| {
        if r.page_size == PAGE_SIZE {
            for k in 0..r.nr_pages {
                score_by_page.insert(r.start.0 + k * PAGE_SIZE, r.access.etmem_weight());
            }
        }
    })
    .expect("parses");
    assert_eq!(score_by_page[&0x7f00_0000_0000], 1);
    assert_eq!(score_by_page[&0x7f00_0000_4000], 3);
    assert_eq!(score_by_page[&0x7f00_0000_5000], 0);
    assert!(!score_by_page.contains_key(&0x7f00_0001_4000), "hole");
    assert_eq!(score_by_page.len(), 3 + 2 + 15 + 1 + 512 + 1);
}

#[test]
fn idle_pages_bad_streams_are_errors_no_kernel_module_here() {
    let e =
        parse_stream(Addr(0), &read_hex("idle_pages/unknown_type.hex"), &mut |_| {}).expect_err("type 11");
    assert_eq!(e, IdlePagesParseError::UnknownType { offset: 10, byte: 0xb1 });
    let e =
        parse_stream(Addr(0), &read_hex("idle_pages/unknown_command.hex"), &mut |_| {}).expect_err("0xa5");
    assert_eq!(e, IdlePagesParseError::UnknownCommand { offset: 9, byte: 0xa5 });
}

#[test]
fn idle_pages_read_sizing_is_one_byte_per_8_pages_no_kernel_module_here() {
    let r = |pages: u64| AddrRange::new(0x1000_0000, 0x1000_0000 + pages * PAGE_SIZE);
    assert_eq!(buffer_len(r(1)), 20, "etmemd's minimum");
    assert_eq!(buffer_len(r(8 * 20)), 20);
    assert_eq!(buffer_len(r(8 * 20 + 1)), 21);
    assert_eq!(buffer_len(r(262_144)), 32_768, "1 GiB of 4 KiB pages");
    assert_eq!(buffer_len(r(1 << 30)), 1 << 20, "capped at 1 MiB per read");
}
