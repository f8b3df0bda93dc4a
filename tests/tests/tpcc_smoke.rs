//! The TPC-C harness end to end at the smallest scale (issue 8, item 4):
//! install MariaDB's server binaries if missing, load one warehouse, run the
//! no-migration and cold-pages-to-zram scenarios briefly with the real
//! etmemd, and check the loader's cardinalities, the mix, the figures and
//! that nothing of ours is left running. About a minute plus the install.

use etmem_tests::{bin, is_root};
use perf::tpcc::harness::{self, BenchConfig, RunRecord, RunStatus};
use perf::tpcc::mariadb::{self, Server};
use perf::tpcc::{load, report, txn};
use std::path::Path;
use std::time::{Duration, Instant};

fn log(m: String) {
    println!("tpcc-smoke: {m}");
}

/// The project templates with a cold age short enough for a 30 s run.
fn quick_templates(dir: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../perf/configs/tpcc");
    std::fs::create_dir_all(dir).expect("config dir");
    for e in std::fs::read_dir(&src).expect("perf/configs/tpcc") {
        let e = e.expect("entry");
        let text = std::fs::read_to_string(e.path()).expect("template");
        let quick: Vec<String> = text
            .lines()
            .map(|l| {
                if l.starts_with("cold_min_age") {
                    "cold_min_age = \"5s\"".to_string()
                } else {
                    l.to_string()
                }
            })
            .collect();
        assert!(
            quick.iter().any(|l| l == "cold_min_age = \"5s\""),
            "{} has no cold_min_age line",
            e.path().display()
        );
        std::fs::write(dir.join(e.file_name()), quick.join("\n")).expect("write template");
    }
}

fn our_mariadbd_running(work: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(&*work.to_string_lossy()) {
            found.push(format!("{}: {cmd}", p.file_name().to_string_lossy()));
        }
    }
    found
}

#[test]
fn one_warehouse_baseline_and_cold_pages_to_zram() {
    if !is_root() {
        println!("skipped: the TPC-C smoke needs root (apt-get, process_madvise, zram)");
        return;
    }
    if let Some(why) = swap_backends::zram::unavailable_reason() {
        println!("skipped: the TPC-C smoke needs zram: {why}");
        return;
    }
    let started = Instant::now();
    let bins = match mariadb::ensure_installed(true, &log) {
        Ok(b) => b,
        Err(e) => {
            println!("skipped: MariaDB is not installed and could not be: {e}");
            return;
        }
    };
    log(format!("{} ({:.0} s)", bins.version, started.elapsed().as_secs_f64()));
    let work = tempfile::Builder::new().prefix("tpcc-smoke").tempdir().expect("work dir");
    let config_dir = work.path().join("configs");
    quick_templates(&config_dir);
    let cfg = BenchConfig {
        warehouses: 1,
        buffer_pool_bytes: 512 << 20,
        log_file_bytes: 64 << 20,
        terminals: 4,
        warmup: Duration::from_secs(5),
        measure: Duration::from_secs(20),
        runs: 1,
        load_threads: 2,
        work_dir: work.path().join("work"),
        config_dir,
        etmemd: bin("etmemd"),
        etmem: bin("etmem"),
        scenarios: vec!["baseline".into(), "cold-zram".into()],
        seed: 7,
        allow_install: true,
        keep_data: false,
        notes: Vec::new(),
    };
    let (image_dir, image) = harness::prepare_image(&cfg, &bins, &log).expect("load one warehouse");

    // The loader's cardinalities (clause 4.3.3.1) for W = 1.
    {
        let run = work.path().join("check");
        std::fs::create_dir_all(&run).expect("run dir");
        let copy = run.join("data");
        mariadb::copy_tree(&image_dir, &copy).expect("copy the image");
        let server =
            Server::start(&bins, &copy, &run, &cfg.server(), Duration::from_secs(120)).expect("start");
        let rows = load::table_rows(&server.opts()).expect("count rows");
        let count = |t: &str| rows.iter().find(|r| r.0 == t).map_or(0, |r| r.1);
        for (table, want) in [
            ("item", 100_000),
            ("warehouse", 1),
            ("stock", 100_000),
            ("district", 10),
            ("customer", 30_000),
            ("history", 30_000),
            ("orders", 30_000),
            ("new_orders", 9_000),
        ] {
            assert_eq!(count(table), want, "rows of {table}");
        }
        let lines = count("order_line");
        assert!((5 * 30_000..=15 * 30_000).contains(&lines), "{lines} order lines");
        assert_eq!(
            image.rows,
            100_000 + 1 + 100_000 + 10 + 3 * 30_000 + 9_000 + lines,
            "rows the loader counted"
        );
    }

    let records: Vec<RunRecord> =
        harness::run_all(&cfg, &bins, &image_dir, &log, &mut |_| {}).expect("run the scenarios");
    let leftovers = our_mariadbd_running(work.path());
    assert!(leftovers.is_empty(), "processes of the smoke still running: {leftovers:?}");
    assert_eq!(records.len(), 2, "{records:?}");
    for r in &records {
        assert_eq!(r.status, RunStatus::Done, "{} did not finish: {:?}", r.scenario, r.status);
        let d = r.driver.as_ref().expect("driver result");
        for t in &d.types {
            assert!(t.committed > 0, "{}: no {} committed", r.scenario, t.kind);
        }
        let no = &d.types[txn::Kind::NewOrder.index()];
        let pay = &d.types[txn::Kind::Payment.index()];
        // The deck holds 45 new-orders per 43 payments; a short run drifts a little.
        let ratio = (no.committed + no.rolled_back) as f64 / pay.committed as f64;
        assert!((0.9..1.2).contains(&ratio), "{}: new-order / payment = {ratio:.2}", r.scenario);
        assert!(r.tpm_total > 0.0 && r.tpmc > 0.0 && r.rss_mib_end > 0.0, "{}: {r:?}", r.scenario);
        assert!(r.samples.len() >= 20, "{}: {} samples", r.scenario, r.samples.len());
        println!(
            "{}: tpmTotal {:.0}, tpmC {:.0}, VmRSS {:.0} MiB, VmSwap {:.0} MiB, etmemd CPU {:?}",
            r.scenario, r.tpm_total, r.tpmc, r.rss_mib_end, r.swap_mib_end, r.daemon_cpu_pct
        );
    }
    let cold = &records[1];
    assert!(cold.project_show.contains("probe refault"), "the project did not run:\n{}", cold.project_show);
    assert!(cold.swap_mib_end > 0.0, "nothing of mariadbd went to zram:\n{}", cold.project_show);
    assert!(cold.daemon_cpu_pct.is_some(), "etmemd's CPU was not sampled");
    // The project's zram device is gone again.
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    for dev in cold.project_show.lines().filter_map(|l| l.trim().strip_prefix("backend ")) {
        let dev = dev.split_whitespace().nth(1).unwrap_or("");
        assert!(!swaps.contains(dev), "{dev} still swapped on");
    }

    let machine = report::Machine::describe();
    let text = report::render(&report::ReportInput {
        cfg: &cfg,
        mariadb_version: &bins.version,
        image: &image,
        machine: &machine,
        records: &records,
        templates: Vec::new(),
        date: String::new(),
        elapsed_s: started.elapsed().as_secs_f64(),
        complete: true,
    });
    assert!(text.contains("| cold pages to zram (region engine) |"), "{text}");
    assert!(text.contains("| baseline | new-order |"), "{text}");
    log(format!("done in {:.0} s", started.elapsed().as_secs_f64()));
}
