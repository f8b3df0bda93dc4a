//! Every example config in `conf/examples/` parses, and maps onto the model
//! as docs/config.md says.

#![allow(clippy::unwrap_used)] // tests fail by panicking

use std::path::{Path, PathBuf};
use std::time::Duration;

use conf::*;

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn load(rel: &str) -> Objects {
    let path = examples_dir().join(rel);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse(rel, &bytes, None).unwrap_or_else(|e| panic!("{rel} does not parse:\n{e}"))
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .expect("examples dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn every_example_parses() {
    let dir = examples_dir();
    let toml = files_in(&dir);
    assert!(toml.len() >= 3, "{toml:?}");
    for f in &toml {
        let o = load(f);
        assert_eq!(o.format, Format::Toml, "{f}");
        assert!(o.project.is_some() && !o.engines.is_empty() && !o.tasks.is_empty(), "{f}");
    }
    let etmem = files_in(&dir.join("etmem"));
    for want in
        ["slide_conf.yaml", "damon_conf.yaml", "cslide_conf.yaml", "thirdparty_conf.yaml", "psi_conf.yaml"]
    {
        assert!(etmem.iter().any(|f| f == want), "missing {want}");
    }
    for f in &etmem {
        let o = load(&format!("etmem/{f}"));
        assert_eq!(o.format, Format::EtmemIni, "{f}");
        assert_eq!(o.project_name(), Some("test"), "{f}");
    }
}

#[test]
fn db_cold_pages() {
    let o = load("db-cold-pages.toml");
    let p = o.project.unwrap();
    assert_eq!(p.policy.cold_min_age, Duration::from_secs(300));
    assert_eq!(p.policy.cold_action, Some(Action::Pageout));
    assert_eq!(p.policy.quota.bytes_per_s, Some(64 << 20));
    assert_eq!(
        p.policy.watermarks.as_ref().map(|w| (w.high_permil, w.mid_permil, w.low_permil)),
        Some((400, 300, 50))
    );
    let [Backend::Zram(z), Backend::SwapFile(f)] = p.backends.as_slice() else { panic!("{:?}", p.backends) };
    assert!(z.priority > f.priority);
    assert_eq!(z.mem_limit_bytes, Some(3 << 30));
    assert_eq!(o.tasks[0].page.dram_percent, Some(60));
}

#[test]
fn db_thp() {
    let o = load("db-thp.toml");
    let p = o.project.unwrap();
    assert!(p.policy.promote_thp && p.policy.demote_thp);
    assert_eq!(p.policy.cold_action, None);
    assert_eq!(p.schemes.len(), 1);
    assert_eq!(p.schemes[0].action, Action::Stat);
    assert_eq!(p.schemes[0].pattern.min_accesses, AccessBound::Bp(5000));
}

#[test]
fn fleet_default() {
    let o = load("fleet-default.toml");
    let p = o.project.unwrap();
    let Scan::Region(scan) = &p.scan else { panic!() };
    assert_eq!(scan.autotune, Some(IntervalsGoal::default()));
    assert_eq!(o.tasks[0].target, TaskTarget::Cgroup("system.slice".into()));
    assert_eq!(p.schemes[0].pattern.max_accesses, AccessBound::Count(0));
    assert_eq!(p.schemes[0].pattern.min_age, AgeBound::Time(Duration::from_secs(3600)));
}

#[test]
fn etmem_slide() {
    let o = load("etmem/slide_conf.yaml");
    let p = o.project.unwrap();
    assert_eq!(
        p.scan,
        Scan::Page(PageScan { loops: 1, sleep: Duration::from_secs(1), interval: Duration::from_secs(1) })
    );
    assert_eq!(p.policy.sysmem_threshold, Some(Percent::from_percent(50)));
    assert_eq!(p.policy.swapcache, Some(SwapcacheWatermarks { high_percent: 10, low_percent: 6 }));
    assert_eq!(o.engines[0].name, "slide");
    assert!(matches!(o.engines[0].kind, EngineKind::Page(_)));
    let t = &o.tasks[0];
    assert_eq!(
        (t.project.as_str(), t.engine.as_str(), t.name.as_str()),
        ("test", "slide", "background_slide")
    );
    assert_eq!(t.target, TaskTarget::Name("mysql".into()));
    assert_eq!(t.page.hot_threshold, Some(1));
    assert_eq!(t.page.swap_threshold_bytes, Some(10 << 30));
    assert!(t.swap_flag);
}

#[test]
fn etmem_damon() {
    let o = load("etmem/damon_conf.yaml");
    let p = o.project.unwrap();
    assert_eq!(
        p.scan,
        Scan::Region(RegionScan {
            sample_interval: Duration::from_millis(5),
            aggr_interval: Duration::from_millis(100),
            update_interval: Duration::from_secs(1),
            min_nr_regions: 10,
            max_nr_regions: 1000,
            autotune: None,
        })
    );
    let EngineKind::KernelDamon(k) = &o.engines[0].kind else { panic!() };
    assert!(k.from_etmem && k.ops == DamonOps::Vaddr);
    assert_eq!(o.engines[0].kind.schemes().len(), 1);
    let s = &k.schemes[0];
    assert_eq!(s, &scheme::parse_line("0 4294967295 0 2 0 4294967295 pageout").unwrap());
    assert_eq!(s.pattern.max_accesses, AccessBound::Count(2));
    assert_eq!(s.pattern.max_age, AgeBound::Aggregations(4294967295));
}

#[test]
fn etmem_cslide_is_parsed_fully() {
    let o = load("etmem/cslide_conf.yaml");
    let EngineKind::Cslide(c) = &o.engines[0].kind else { panic!() };
    assert_eq!(c.node_pairs, vec![(0, 2), (1, 3)]);
    assert_eq!(c.node_mig_quota_bytes, 1024 << 20);
    assert_eq!(c.pmu.as_ref().and_then(|p| p.cooling_interval), Some(100000));
    let t = &o.tasks[0];
    assert_eq!(t.target, TaskTarget::Pid(23456));
    assert_eq!(t.cslide, Some(CslideTask { vm_flags: "ht".into(), anon_only: false, ign_host: false }));
}

#[test]
fn etmem_thirdparty_is_parsed_not_loaded() {
    let o = load("etmem/thirdparty_conf.yaml");
    assert!(o.project.is_none());
    let e = &o.engines[0];
    assert_eq!(e.name, "my_engine");
    let EngineKind::Thirdparty(t) = &e.kind else { panic!() };
    assert_eq!(t.libname, PathBuf::from("/usr/lib/etmem_fetch/my_engine.so"));
    assert_eq!(t.ops_name, "my_engine_ops");
    assert_eq!(t.private_keys.get("engine_private_key").map(String::as_str), Some("engine_private_value"));
    let task = &o.tasks[0];
    assert_eq!(task.engine, "my_engine");
    assert_eq!(task.private_keys.get("task_private_key").map(String::as_str), Some("task_private_value"));
}

#[test]
fn etmem_psi() {
    let o = load("etmem/psi_conf.yaml");
    assert_eq!(o.project.unwrap().scan, Scan::Psi(PsiScan { interval: Duration::from_secs(6) }));
    assert_eq!(o.engines[0].kind, EngineKind::Psi);
    let t = &o.tasks[0];
    assert_eq!(t.target, TaskTarget::Cgroup("isulad/*".into()));
    let psi = t.psi.as_ref().unwrap();
    assert_eq!(psi.cg_dir, "isulad/*");
    assert_eq!(psi.limit_min_bytes, 209715200);
    assert_eq!(psi.reclaim_rate, DEFAULT_PSI_RECLAIM_RATE);
}

#[test]
fn etmem_separate_files() {
    // etmem's per-object files: project, engine and task added one by one.
    let project = parse("proj.config", b"[project]\nname=p\nscan_type=region\nsample_interval=5000\naggr_interval=100000\nupdate_interval=1000000\nmin_nr_regions=10\nmax_nr_regions=1000\n", None).unwrap();
    let engine = parse("eng.config", b"[engine]\nname=damon\nproject=p\nmin_size=4096\nmax_size=4294967295\nmin_acc=0\nmax_acc=0\nmin_age=1200\nmax_age=4294967295\naction=pageout\n", None).unwrap();
    let task =
        parse("task.config", b"[task]\nproject=p\nengine=damon\nname=t\ntype=pid\nvalue=1\n", None).unwrap();
    let (p, e, t) = (project.project.unwrap(), &engine.engines[0], &task.tasks[0]);
    assert!(checks::engine_fits(e, &p).is_ok());
    assert!(checks::task_fits(t, e, &p).is_ok());
    assert_eq!(e.kind.schemes()[0].pattern.min_age, AgeBound::Aggregations(1200));
}

/// The TPC-C harness's project templates parse once filled in, and the
/// watch scenarios differ from cold-zram only where they say.
#[test]
fn tpcc_templates_parse() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../perf/configs/tpcc");
    let mut region_caps = Vec::new();
    for f in files_in(&dir) {
        let text = std::fs::read_to_string(dir.join(&f)).unwrap();
        let filled = text.replace("@PID@", "4242").replace("@RUN_DIR@", "/tmp/tpcc-run");
        let o = parse(&f, filled.as_bytes(), None).unwrap_or_else(|e| panic!("{f} does not parse:\n{e}"));
        for e in &o.engines {
            if let EngineKind::Region(r) = &e.kind {
                region_caps.push((f.clone(), r.max_probed_accesses));
            }
        }
    }
    assert!(region_caps.contains(&("cold-zram-watch-dense.toml".into(), Some(0))), "{region_caps:?}");
    assert!(region_caps.contains(&("cold-zram-watch.toml".into(), None)), "{region_caps:?}");
    assert!(region_caps.contains(&("cold-zram.toml".into(), None)), "{region_caps:?}");
}
