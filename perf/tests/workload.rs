//! Integration tests of `etmem-workload`: the real binary as a child process,
//! checked against /proc/PID/maps, /proc/PID/smaps and /proc/PID/mem.

use perf::workload::child::{Child, SpawnOptions};
use perf::workload::masim::{MASIM_DEFAULT_RW, parse_masim};
use perf::workload::{Event, RegionInfo, ThpHint};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_etmem-workload");

fn options() -> SpawnOptions {
    SpawnOptions {
        binary: Some(PathBuf::from(BIN)),
        ready_timeout: Duration::from_secs(120),
        reply_timeout: Duration::from_secs(120),
        inherit_stderr: true,
    }
}

fn spawn(args: &[&str]) -> Child {
    Child::spawn_with(&options(), args).expect("spawn etmem-workload")
}

/// (start, end, perms) of every line of /proc/PID/maps.
fn maps(pid: u32) -> Vec<(u64, u64, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    text.lines()
        .map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next().expect("range");
            let perms = fields.next().expect("perms").to_owned();
            let (s, e) = range.split_once('-').expect("dash");
            (u64::from_str_radix(s, 16).expect("hex"), u64::from_str_radix(e, 16).expect("hex"), perms)
        })
        .collect()
}

/// The VmFlags line of the smaps entry starting at `start`.
fn vm_flags(pid: u32, start: u64) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("read smaps");
    let header = format!("{start:x}-");
    let mut in_entry = false;
    for line in text.lines() {
        if line.starts_with(&header) {
            in_entry = true;
        } else if let (true, Some(flags)) = (in_entry, line.strip_prefix("VmFlags:")) {
            return flags.trim().to_owned();
        }
    }
    panic!("no smaps entry at {start:#x}");
}

fn wait_for_more_accesses(child: &mut Child, than: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = child.stats().expect("stats").accesses;
        if now > than || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ready_line_regions_are_whole_vmas_in_proc_maps() {
    let child = spawn(&["--size", "16M", "--hot", "25%"]);
    let ready = child.ready();
    assert_eq!(ready.pid, child.pid());
    assert_eq!(ready.page_size, 4096);
    let names: Vec<&str> = ready.regions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["hot", "cold"]);
    let hot = child.region("hot").expect("hot");
    let cold = child.region("cold").expect("cold");
    assert_eq!((hot.size, cold.size), (4 << 20, 12 << 20));
    assert!(hot.hot && !cold.hot);
    assert_eq!(child.hot_ranges(), vec![hot.range()]);
    assert_eq!(child.cold_ranges(), vec![cold.range()]);

    let maps = maps(child.pid());
    for r in child.regions() {
        assert_eq!(r.start.0 % (2 << 20), 0, "{} is not 2 MiB aligned", r.name);
        assert_eq!(r.end.0 - r.start.0, r.size);
        let line =
            maps.iter().find(|m| m.0 == r.start.0).unwrap_or_else(|| panic!("no maps line at {}", r.start));
        assert_eq!((line.1, line.2.as_str()), (r.end.0, "rw-p"), "region {}", r.name);
        // PROT_NONE guards keep the kernel from merging it with a neighbour.
        assert!(maps.iter().any(|m| m.1 == r.start.0 && m.2 == "---p"), "no guard below {}", r.name);
        assert!(maps.iter().any(|m| m.0 == r.end.0 && m.2 == "---p"), "no guard above {}", r.name);
    }
}

#[test]
fn stats_grow_and_verify_checks_every_byte() {
    let mut child = spawn(&["--size", "16M", "--hot", "4M", "--write-ratio", "0.3", "--batch", "4096"]);
    let first = child.stats().expect("stats");
    assert_eq!(first.phase.as_deref(), Some("run"));
    let later = wait_for_more_accesses(&mut child, first.accesses);
    assert!(later > first.accesses, "accesses did not grow from {}", first.accesses);
    let report = child.verify().expect("verify");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.bytes_checked, 16 << 20);
    assert_eq!(report.mismatches, 0);

    let ack = child.pause().expect("pause");
    assert!(ack.complete, "{ack:?}");
    let paused = child.stats().expect("stats");
    assert!(paused.paused);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(child.stats().expect("stats").accesses, paused.accesses, "accesses while paused");
    child.resume().expect("resume");
    wait_for_more_accesses(&mut child, paused.accesses);

    let exit = child.quit().expect("quit");
    assert_eq!(exit.code, Some(0));
    let stats = exit.final_stats.expect("final stats");
    assert!(stats.is_final && stats.accesses >= later);
    assert!(exit.final_verify.is_none());
}

#[test]
fn corrupted_byte_fails_verify_at_its_address() {
    let mut child = spawn(&["--size", "16M", "--hot", "25%", "--verify-on-exit"]);
    let cold = child.region("cold").expect("cold").clone();
    let target = cold.start.0 + 3 * 4096 + 13;
    let mem = std::fs::OpenOptions::new().write(true).open(format!("/proc/{}/mem", child.pid()));
    let mut mem = match mem {
        Ok(f) => f,
        Err(e) => {
            println!("skipped: cannot open /proc/PID/mem for writing ({e}); needs root or ptrace rights");
            return;
        }
    };
    // A different byte than the one there: read it first.
    let mut byte = [0u8; 1];
    {
        use std::io::Read;
        let mut reader = std::fs::File::open(format!("/proc/{}/mem", child.pid())).expect("open mem");
        reader.seek(SeekFrom::Start(target)).expect("seek");
        reader.read_exact(&mut byte).expect("read");
    }
    mem.seek(SeekFrom::Start(target)).expect("seek");
    if let Err(e) = mem.write_all(&[byte[0] ^ 0x5a]) {
        println!("skipped: cannot write /proc/PID/mem ({e})");
        return;
    }
    let report = child.verify().expect("verify");
    assert!(!report.ok);
    assert_eq!((report.mismatches, report.bad_words, report.bad_pages), (1, 1, 1));
    let bad = &report.first_bad[0];
    assert_eq!(bad.addr, target);
    assert_eq!(bad.word_addr, target & !7);
    assert_eq!(bad.region, "cold");
    assert_eq!(bad.offset, target - cold.start.0);
    assert_eq!(bad.found ^ bad.expected, 0x5a << (8 * (target % 8)));

    let exit = child.quit().expect("quit");
    assert_eq!(exit.code, Some(3), "exit code after a failed final verify");
    assert!(!exit.final_verify.expect("final verify").ok);
}

#[test]
fn sigterm_and_stdin_eof_end_it_cleanly() {
    let child = spawn(&["--size", "4M", "--verify-on-exit"]);
    let exit = child.terminate().expect("terminate");
    assert_eq!(exit.code, Some(0));
    assert!(exit.final_stats.expect("final stats").is_final);
    assert!(exit.final_verify.expect("final verify").ok);

    let child = spawn(&["--size", "4M"]);
    let exit = child.close_stdin().expect("close stdin");
    assert_eq!(exit.code, Some(0));
    assert!(exit.final_stats.is_some());
}

#[test]
fn phases_run_in_order_then_done() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("two.cfg");
    std::fs::write(&cfg, "a, 1M\nb, 2M\n\nfirst\n100\na, 1, 64, 1\n\nsecond\n100ms\nb, 0, 4096, 1, rw\n")
        .expect("write cfg");
    let truth_path = dir.path().join("truth.json");
    let cfg_arg = cfg.to_str().expect("utf-8");
    let truth_arg = truth_path.to_str().expect("utf-8");
    let mut child = spawn(&[cfg_arg, "--ground-truth", truth_arg, "--batch", "1024", "--verify-on-exit"]);
    assert_eq!(child.ready().phases, vec!["first", "second"]);
    let exit = child.wait_exit(Duration::from_secs(60)).expect("exit");
    assert_eq!(exit.code, Some(0));
    let phases: Vec<String> = exit
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Phase(p) => Some(p.name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(phases, vec!["first", "second"]);
    assert!(exit.events.contains(&Event::Done));
    assert!(exit.final_stats.expect("final stats").done);
    assert!(exit.final_verify.expect("verify").ok);

    let truth: perf::workload::GroundTruth =
        serde_json::from_str(&std::fs::read_to_string(&truth_path).expect("read truth"))
            .expect("parse truth");
    let range_of = |name: &str| truth.regions.iter().find(|r| r.name == name).map(RegionInfo::range);
    assert_eq!(truth.phases[0].hot_ranges, vec![range_of("a").expect("a")]);
    assert_eq!(truth.phases[1].hot_ranges, vec![range_of("b").expect("b")]);
}

#[test]
fn thp_hints_reach_the_vmas() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/hot-cold-thp.cfg");
    let child = spawn(&[config.to_str().expect("utf-8")]);
    for r in child.regions() {
        let flags = vm_flags(child.pid(), r.start.0);
        let words: Vec<&str> = flags.split_whitespace().collect();
        match r.thp {
            ThpHint::Hugepage => assert!(words.contains(&"hg"), "{}: {flags}", r.name),
            ThpHint::Nohugepage => assert!(words.contains(&"nh"), "{}: {flags}", r.name),
            ThpHint::None => assert!(!words.contains(&"hg") && !words.contains(&"nh"), "{}: {flags}", r.name),
        }
    }
    let hot: Vec<&str> = child.regions().iter().filter(|r| r.hot).map(|r| r.name.as_str()).collect();
    assert_eq!(hot, vec!["hot", "warm"]);
}

#[test]
fn example_configs_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("configs dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "cfg") {
            let text = std::fs::read_to_string(&path).expect("read");
            let cfg =
                parse_masim(&text, MASIM_DEFAULT_RW).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(cfg.warnings.is_empty(), "{}: {:?}", path.display(), cfg.warnings);
            checked += 1;
        }
    }
    assert!(checked >= 3);

    let stairs =
        parse_masim(&std::fs::read_to_string(dir.join("stairs.cfg")).expect("read"), MASIM_DEFAULT_RW)
            .expect("stairs");
    assert_eq!(stairs.spec.regions.len(), 5);
    assert_eq!(stairs.spec.phases.len(), 6);
    assert_eq!(stairs.spec.hot_regions(0).len(), 5);
    for step in 1..6 {
        assert_eq!(stairs.spec.hot_regions(step), vec![format!("s{}", step - 1)]);
    }
}

/// A masim config in masim's own spelling (comment lines between paragraphs,
/// byte sizes, default rw mode) parses and prints as a spec through the binary.
#[test]
fn masim_zigzag_through_print_spec() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("zigzag.cfg");
    let mut text = String::from("#regions\na, 100000000\nb, 100000000\n\n#phases\ninitial phase\n10000\n");
    text.push_str("a, 0, 4096, 1\nb, 0, 4096, 1\n");
    for i in 0..3 {
        text.push_str(&format!(
            "\nlow phase {i}\n5000\na, 0, 4096, 50\n\nhigh phase {i}\n5000\nb, 0, 4096, 50\n"
        ));
    }
    std::fs::write(&cfg, text).expect("write");
    let out = Command::new(BIN).arg(&cfg).arg("--print-spec").output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let spec: perf::workload::WorkloadSpec = serde_json::from_slice(&out.stdout).expect("spec json");
    assert_eq!(spec.regions.len(), 2);
    assert_eq!(spec.phases.len(), 7);
    assert_eq!(spec.phases[0].duration_ms, Some(10_000));
    assert_eq!(spec.phases[6].name, "high phase 2");
    assert_eq!(spec.phases[6].patterns[0].rw, perf::workload::RwMode::Wo);
    assert_eq!(spec.hot_regions(5), vec!["a"]);
}

#[test]
fn json_spec_config_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("spec.json");
    std::fs::write(
        &cfg,
        r#"{"regions":[{"name":"x","size_bytes":1048576,"thp":"nohugepage"}],
            "phases":[{"name":"p","duration_ms":null,"patterns":[{"region":"x","random":false,"stride_bytes":4096,"weight":1,"rw":"rw"}]}]}"#,
    )
    .expect("write");
    let mut child = spawn(&[cfg.to_str().expect("utf-8")]);
    assert_eq!(child.regions()[0].thp, ThpHint::Nohugepage);
    let truth = child.ground_truth().expect("ground truth");
    assert_eq!(truth.phases[0].hot_regions, vec!["x"]);
    assert!(child.verify().expect("verify").ok);
}

#[test]
fn bad_input_exits_with_2_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bad.cfg");
    std::fs::write(&cfg, "a, 4096\n\np\n10\nnope, 1, 64, 1\n").expect("write");
    let out = Command::new(BIN).arg(&cfg).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 5") && stderr.contains("nope"), "{stderr}");
    assert!(out.stdout.is_empty(), "no ready line on bad input");

    let out = Command::new(BIN).args(["--size", "1M", "--hot", "2M"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unknown_command_is_refused_not_fatal() {
    let mut child = spawn(&["--size", "2M"]);
    let err = child.request("frobnicate", |_| false).expect_err("refused");
    assert!(err.to_string().contains("frobnicate"), "{err}");
    assert!(child.stats().is_ok());
}

/// `Child::spawn` without an explicit binary: `locate_binary` (and, under
/// cargo, the automatic build) must find it.
#[test]
fn spawn_locates_the_binary() {
    let mut child = Child::spawn(["--size", "2M", "--hot", "50%"]).expect("spawn via locate_binary");
    assert_eq!(child.regions().len(), 2);
    assert!(child.verify().expect("verify").ok);
}

#[test]
fn interval_lines_report_accesses() {
    let mut child = spawn(&["--size", "2M", "--log-interval", "20ms", "--batch", "1024"]);
    let mut total = 0;
    for _ in 0..3 {
        match child.wait_for_event(Duration::from_secs(60), |e| matches!(e, Event::Interval(_))) {
            Ok(Event::Interval(i)) => {
                assert_eq!(i.phase.as_deref(), Some("run"));
                assert!(i.total_accesses >= total);
                total = i.total_accesses;
            }
            other => panic!("expected an interval line, got {other:?}"),
        }
    }
}

#[test]
fn spawn_reports_a_child_that_exits_before_ready() {
    let options = SpawnOptions { inherit_stderr: false, ..options() };
    match Child::spawn_with(&options, ["--size", "1M", "--hot", "2M"]) {
        Err(perf::workload::SpawnError::ExitedBeforeReady { status, .. }) => {
            assert!(status.contains('2'), "{status}");
        }
        other => panic!("expected ExitedBeforeReady, got {other:?}"),
    }
}
