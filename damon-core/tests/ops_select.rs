//! Probe availability and choice on this host: every probe gets a verdict
//! with a reason, checked against what the host really has.

mod ops_common;

use damon_core::ops::ProcTarget;
use damon_core::ops::select::{
    HostEnv, ProbeKind, ProbeOptions, SelectProbeError, build, check_all, select_auto, select_explicit,
};
use damon_core::{AccessProbe, Sees};
use ops_common::{is_root, swap_is_on};
use std::path::Path;
use std::sync::Arc;

#[test]
fn every_probe_gets_a_verdict_that_matches_the_host() {
    let env = HostEnv::default();
    let statuses = check_all(&env, None);
    assert_eq!(statuses.iter().map(|s| s.kind).collect::<Vec<_>>(), ProbeKind::PREFERENCE.to_vec());
    for s in &statuses {
        match &s.availability {
            Ok(()) => println!("{:>17}: available", s.kind),
            Err(why) => println!("{:>17}: {why}", s.kind),
        }
    }
    let get = |k: ProbeKind| statuses.iter().find(|s| s.kind == k).expect("listed").availability.clone();

    if !Path::new("/proc/self/idle_pages").exists() {
        let why = get(ProbeKind::EtmemIdlePages).expect_err("no etmem module");
        assert!(why.contains("etmem_scan"), "{why}");
    }
    if !Path::new("/sys/kernel/mm/page_idle/bitmap").exists() {
        let why = get(ProbeKind::IdleBitmap).expect_err("no idle page tracking");
        assert!(why.contains("CONFIG_IDLE_PAGE_TRACKING"), "{why}");
    }
    assert_eq!(get(ProbeKind::SoftDirty).is_ok(), damon_core::ops::soft_dirty::detect().is_ok());
    if is_root() && !swap_is_on() {
        let why = get(ProbeKind::Refault).expect_err("no swap");
        assert!(why.contains("swap"), "{why}");
        let planned = HostEnv { swap_planned: true, ..HostEnv::default() };
        let statuses = check_all(&planned, None);
        assert_eq!(
            statuses.iter().find(|s| s.kind == ProbeKind::Refault).map(|s| s.availability.clone()),
            Some(Ok(()))
        );
    }
    if !is_root() {
        let why = get(ProbeKind::Refault).expect_err("not root");
        assert!(why.contains("root") || why.contains("permitted"), "{why}");
    }
}

#[test]
fn auto_choice_names_the_probe_and_why_not_the_others() {
    let env = HostEnv { swap_planned: true, ..HostEnv::default() };
    match select_auto(&env, None, &[]) {
        Ok(sel) => {
            println!("{sel}");
            assert_eq!(sel.not_chosen.len(), 3);
            let text = sel.to_string();
            assert!(text.starts_with(&format!("probe {}", sel.chosen)), "{text}");
            // The choice is the first available one in preference order.
            let statuses = check_all(&env, None);
            let first_ok = statuses.iter().find(|s| s.availability.is_ok()).map(|s| s.kind);
            assert_eq!(Some(sel.chosen), first_ok);
        }
        Err(e) => {
            println!("{e}");
            assert!(matches!(e, SelectProbeError::NoneAvailable { ref reasons } if reasons.len() == 4));
        }
    }
    let forbidden = select_auto(&env, None, &ProbeKind::PREFERENCE);
    assert!(matches!(forbidden, Err(SelectProbeError::NoneAvailable { .. })));
}

#[test]
fn explicit_choice_fails_with_the_reason() {
    let env = HostEnv::default();
    for kind in ProbeKind::PREFERENCE {
        match select_explicit(kind, &env, None) {
            Ok(sel) => assert_eq!(sel.chosen, kind),
            Err(SelectProbeError::Unavailable { kind: k, reason }) => {
                assert_eq!(k, kind);
                assert!(!reason.is_empty());
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
}

#[test]
fn build_makes_the_refault_probe_for_a_target() {
    if !is_root() {
        println!("skipped: the refault probe needs root (kpageflags)");
        return;
    }
    let target = Arc::new(ProcTarget::open(std::process::id()).expect("own pidfd"));
    let p = build(ProbeKind::Refault, target, &ProbeOptions::default()).expect("build");
    assert_eq!((p.name(), p.sees(), p.kind()), ("refault", Sees::ReadsAndWrites, ProbeKind::Refault));
    assert!(p.refault_stats().is_some());
    let fixture = Arc::new(ProcTarget::fixture(1, "/nonexistent"));
    let err = build(ProbeKind::EtmemIdlePages, fixture, &ProbeOptions::default()).expect_err("no idle_pages");
    assert!(err.to_string().contains("etmem_scan"), "{err}");
}
