//! /proc/PID/maps and smaps parsing on fixture text, and the reader on this
//! very process.

mod ops_common;

use damon_core::AddrRange;
use damon_core::ops::ProcTarget;
use damon_core::ops::maps::{VmaFilter, VmaKind, parse_maps, parse_smaps};
use damon_core::ops::sys::AnonMapping;
use ops_common::read_fixture;

#[test]
fn maps_fixture_parses_every_kind() {
    let vmas = parse_maps(&read_fixture("maps/process.maps")).expect("fixture parses");
    assert_eq!(vmas.len(), 21);
    let kind = |start: u64| vmas.iter().find(|v| v.range.start.0 == start).map(|v| v.kind.clone());
    assert_eq!(kind(0x55d6b2763000), Some(VmaKind::Heap));
    assert_eq!(kind(0x7f6600000000), Some(VmaKind::Anonymous));
    assert_eq!(kind(0x7f6610000000), Some(VmaKind::NamedAnonymous("jvm heap".into())));
    assert_eq!(kind(0x7f6618000000), Some(VmaKind::File { path: "/dev/zero".into(), deleted: true }));
    assert_eq!(
        kind(0x7f6618400000),
        Some(VmaKind::File { path: "/memfd:shared pool".into(), deleted: true })
    );
    assert_eq!(
        kind(0x7f6621020000),
        Some(VmaKind::File { path: "/data/my file.bin".into(), deleted: false })
    );
    assert_eq!(kind(0x7ffc1d2a0000), Some(VmaKind::Stack));
    assert_eq!(kind(0xffffffffff600000), Some(VmaKind::Special("[vsyscall]".into())));
    assert_eq!(kind(0x7f662101c000), Some(VmaKind::Special("[vvar_vclock]".into())));
    let libc_data = vmas.iter().find(|v| v.range.start.0 == 0x7f6620ffe000).expect("libc data");
    assert_eq!((libc_data.offset, libc_data.dev, libc_data.inode), (0x1d3000, (0xfe, 0), 326279));
    assert_eq!(libc_data.perms.to_string(), "rw-p");
}

#[test]
fn default_filter_is_etmems_anonymous_rule() {
    let vmas = parse_maps(&read_fixture("maps/process.maps")).expect("fixture parses");
    let starts: Vec<u64> =
        vmas.iter().filter(|v| VmaFilter::anonymous().accepts(v)).map(|v| v.range.start.0).collect();
    assert_eq!(
        starts,
        vec![
            0x55d67423a000, // demo .data: private-writable file mapping
            0x55d6b2763000, // [heap]
            0x7f6600000000, // anonymous (its ---p reservation is skipped)
            0x7f6610000000, // [anon:jvm heap]
            0x7f6620ffe000, // libc .data
            0x7f6621016000, // anonymous
            0x7ffc1d2a0000, // [stack]
        ]
    );
}

#[test]
fn file_backed_option_adds_files_but_never_kernel_mappings() {
    let vmas = parse_maps(&read_fixture("maps/process.maps")).expect("fixture parses");
    let f = VmaFilter { file_backed: true, ..VmaFilter::default() };
    let accepted: Vec<&damon_core::ops::maps::Vma> = vmas.iter().filter(|v| f.accepts(v)).collect();
    // 21 mappings minus vvar, vvar_vclock, vdso, vsyscall and the ---p reservation.
    assert_eq!(accepted.len(), 16);
    assert!(accepted.iter().all(|v| !v.is_special() && !v.perms.none()));
    assert!(accepted.iter().any(|v| v.range.start.0 == 0x7f6618000000), "shared anonymous memory");
    assert!(accepted.iter().any(|v| v.range.start.0 == 0x7f6620e51000), "library text");
}

#[test]
fn smaps_fixture_fields_and_vm_flags_filter() {
    let vmas = parse_smaps(&read_fixture("maps/process.smaps")).expect("fixture parses");
    assert_eq!(vmas.len(), 4);
    let jvm = &vmas[1];
    let s = jvm.smaps.as_ref().expect("smaps fields");
    assert_eq!(s.rss_bytes, 65536 * 1024);
    assert_eq!(s.anon_huge_pages_bytes, 61440 * 1024);
    assert!(s.has_flag("hg") && !s.has_flag("nh"));
    assert_eq!(vmas[0].smaps.as_ref().map(|s| s.swap_bytes), Some(4096));
    let hg = VmaFilter { file_backed: false, required_vm_flags: vec!["hg".into()] };
    assert!(hg.needs_smaps());
    let picked: Vec<AddrRange> = vmas.iter().filter(|v| hg.accepts(v)).map(|v| v.range).collect();
    assert_eq!(picked, vec![jvm.range]);
}

#[test]
fn smaps_field_before_a_mapping_is_an_error() {
    let err = parse_smaps("Rss: 4 kB\n").expect_err("no header");
    assert_eq!(err.line_no, 1);
    let err = parse_maps("1000-2000 rw-p 0 00:00 0\nnot a line\n").expect_err("bad line");
    assert_eq!(err.line_no, 2);
}

#[test]
fn reader_sees_a_fresh_mapping_of_this_process() {
    let m = AnonMapping::new(16 * 4096).expect("mmap");
    m.write_byte(0, 1);
    let target = ProcTarget::open(std::process::id()).expect("own pidfd");
    let range = AddrRange::new(m.addr(), m.addr() + 16 * 4096);
    let vmas = target.eligible_vmas(&VmaFilter::anonymous()).expect("read maps");
    assert!(
        vmas.iter().any(|v| v.range.start <= range.start && range.end <= v.range.end),
        "the mapping {range} is eligible"
    );
    let smaps = target.smaps().expect("read smaps");
    let v =
        smaps.iter().find(|v| v.range.start <= range.start && range.end <= v.range.end).expect("in smaps");
    let s = v.smaps.as_ref().expect("fields");
    assert!(s.has_flag("rd") && s.has_flag("wr"));
    assert!(s.rss_bytes >= 4096);
}
