//! Record and report (issue 9): the real etmemd monitors an etmem-workload
//! child with a known hot band (region engine, refault probe, a zram
//! backend), `etmem record` saves its snapshots, and the reports show it:
//! the heatmap PNG is brighter over the hot band than over the cold area
//! (checked on the decoded pixels), the working-set size is the hot band's
//! size within 10 %, and damo's JSON format carries the same snapshots.

use damon_core::AddrRange;
use etmem_tests::{DaemonConfig, TestDaemon, is_root, parse_size};
use etmemd::record::{self, Recording, TargetRecord};
use etmemd::report::AddressAxis;
use etmemd::report::heatmap::Layout;
use etmemd::report::plot::luminance;
use perf::workload::Child;
use std::path::Path;

fn skip_reason() -> Option<String> {
    if !is_root() {
        return Some("needs root (process_madvise on another process, zram)".into());
    }
    swap_backends::zram::unavailable_reason()
}

fn project(name: &str, pid: u32) -> String {
    format!(
        r#"
[project]
name = "{name}"

[engine]
kind = "region"
sample_interval = "20ms"
aggr_interval = "400ms"
update_interval = "2s"
min_nr_regions = 10
max_nr_regions = 200
probe = "refault"

[[task]]
name = "wl"
pid = {pid}

[policy]
hot_min_accesses = 1
cold_max_accesses = 0
cold_min_age = "5s"
cold_action = "pageout"

[[backend]]
kind = "zram"
size = "512M"
compressor = "lzo-rle"
"#
    )
}

/// The `<percentile> <wss>` line of `etmem report wss` for `p`.
fn wss_percentile(text: &str, p: u32) -> Option<u64> {
    text.lines().find_map(|l| {
        let l = l.trim_start();
        let rest = l.strip_prefix(&format!("{p} "))?;
        parse_size(rest.trim())
    })
}

/// RGB pixels of a PNG file.
fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
    let file = std::fs::File::open(path).expect("open png");
    let mut dec = png::Decoder::new(std::io::BufReader::new(file));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let channels = info.color_type.samples();
    assert!(channels >= 3, "expected an RGB image, got {:?}", info.color_type);
    let mut rgb = Vec::with_capacity((info.width * info.height * 3) as usize);
    for px in buf[..info.buffer_size()].chunks(channels) {
        rgb.extend_from_slice(&px[..3]);
    }
    (info.width, info.height, rgb)
}

/// Mean luminance of the plot pixels over `ranges` (axis rows), for the
/// time columns after `from_col`.
fn mean_luminance(
    img: &(u32, u32, Vec<u8>),
    layout: &Layout,
    axis: &AddressAxis,
    ranges: &[AddrRange],
    from_col: i32,
) -> (f64, usize) {
    let (w, _, rgb) = img;
    let mut rows = std::collections::BTreeSet::new();
    for r in ranges {
        for (a, b) in axis.pieces(*r) {
            // Stay off the band's edges: a cell there mixes both sides.
            let margin = (b - a) / 10;
            let (y_lo, y_hi) = (
                layout.y_of_offset(a + margin, axis.total_bytes),
                layout.y_of_offset((b - margin).saturating_sub(1), axis.total_bytes),
            );
            rows.extend(y_hi.min(y_lo)..=y_hi.max(y_lo));
        }
    }
    let (mut sum, mut n) = (0.0, 0usize);
    for y in rows {
        for x in (layout.x0 + from_col)..=layout.x1 {
            let i = ((y as u32 * w + x as u32) * 3) as usize;
            sum += luminance((rgb[i], rgb[i + 1], rgb[i + 2]));
            n += 1;
        }
    }
    (if n == 0 { 0.0 } else { sum / n as f64 }, n)
}

fn target_of(rec: &Recording, pid: u32) -> &TargetRecord {
    rec.targets
        .iter()
        .find(|t| t.pid == pid)
        .unwrap_or_else(|| panic!("no target for pid {pid} in the record"))
}

#[test]
fn recorded_workload_shows_its_hot_band_and_working_set() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    // 64 MiB hot of 256 MiB: the working set the reports must find.
    let child = Child::spawn(["--size", "256M", "--hot", "25%"]).expect("workload");
    let (hot, cold) = (child.hot_ranges(), child.cold_ranges());
    let hot_bytes: u64 = hot.iter().map(AddrRange::len).sum();
    let d = TestDaemon::start(DaemonConfig::default());
    let cfg = d.config("rec.toml", &project("rec", child.pid()));
    d.etmem(&["obj", "add", "-f", cfg.to_str().expect("utf-8")]).ok();
    d.etmem(&["project", "start", "-n", "rec"]).ok();

    let file = d.dir().join("wl.record");
    let file_s = file.to_str().expect("utf-8");
    let run = d.etmem(&["record", "-n", "rec", "-o", file_s, "-d", "35s"]);
    run.ok().says("snapshots of 1 task(s)").says("duration of 35.0s reached");
    let rec = record::read_file(&file).expect("our record reads back");
    let target = target_of(&rec, child.pid());
    assert!(target.snapshots.len() >= 15, "only {} snapshots in 35 s", target.snapshots.len());
    assert!(!target.mappings.is_empty(), "the record has no mappings of the process");
    assert!(!rec.stats.is_empty() && rec.end.is_some(), "stats and end lines missing");
    let lost: u64 = rec.lost.iter().map(|l| l.items).sum();
    assert_eq!(lost, 0, "snapshots were lost although the recorder kept up");

    // Heatmap PNG: hot band brighter than the cold area.
    let png_path = d.dir().join("heat.png");
    let (w, h) = (1000, 600);
    d.etmem(&["report", "heatmap", file_s, "--png", png_path.to_str().expect("utf-8"), "--size", "1000x600"])
        .ok()
        .says("wrote");
    let img = decode(&png_path);
    assert_eq!((img.0, img.1), (w, h));
    let layout = Layout::of(w, h).expect("layout");
    let axis = AddressAxis::of(target);
    // Leave out the monitor's warm-up (the first fifth of the time).
    let from_col = layout.time_cells() as i32 / 5;
    let (hot_l, hot_n) = mean_luminance(&img, &layout, &axis, &hot, from_col);
    let (cold_l, cold_n) = mean_luminance(&img, &layout, &axis, &cold, from_col);
    println!(
        "heatmap luminance: hot band {hot_l:.1} over {hot_n} px, cold area {cold_l:.1} over {cold_n} px"
    );
    assert!(hot_n > 1000 && cold_n > 1000, "the bands cover too few pixels: {hot_n} hot, {cold_n} cold");
    assert!(
        hot_l > cold_l * 2.0 + 20.0,
        "the hot band ({hot_l:.1}) is not clearly brighter than the cold area ({cold_l:.1}); see {}",
        png_path.display()
    );

    // The text heatmap has damo's shape.
    let text = d.etmem(&["report", "heatmap", file_s]);
    text.ok().says("# access_frequency: 0123456789").says("# x-axis: space");
    let rows = text.stdout.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(rows, 40, "damo's 40 time rows\n{}", text.stdout);

    // Working set: the hot band, within 10 %.
    let wss = d.etmem(&["report", "wss", file_s, "--png", d.dir().join("wss.png").to_str().expect("utf-8")]);
    wss.ok();
    let p50 = wss_percentile(&wss.stdout, 50).unwrap_or_else(|| panic!("no median in\n{}", wss.stdout));
    let err = (p50 as f64 - hot_bytes as f64).abs() / hot_bytes as f64;
    println!("working set median {p50} bytes, hot band {hot_bytes} bytes: {:.1} % off", err * 100.0);
    assert!(
        err <= 0.10,
        "median working set {p50} is {:.1} % off the hot band's {hot_bytes}\n{}",
        err * 100.0,
        wss.stdout
    );

    // Raw and stats reports.
    let raw = d.etmem(&["report", "raw", file_s, "--pid", &child.pid().to_string()]);
    raw.ok().says("base_time_absolute:").says(&format!("target_id: {}", child.pid())).says("# start_addr");
    d.etmem(&["report", "stats", file_s])
        .ok()
        .says("task wl (engine region)")
        .says("paged out")
        .says("/dev/zram");

    // damo's JSON: same targets, readable by us, damo's keys.
    let damo = d.dir().join("wl.damo.json");
    d.etmem(&[
        "record",
        "-n",
        "rec",
        "-o",
        damo.to_str().expect("utf-8"),
        "-d",
        "4s",
        "--format",
        "damo-json",
        "-q",
    ])
    .ok();
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&damo).expect("damo file")).expect("JSON");
    let r0 = &v[0];
    assert_eq!(r0["target_id"], child.pid());
    assert!(
        r0["intervals"]["aggr_us"] == 400_000 && r0["intervals"]["sample_us"] == 20_000,
        "{}",
        r0["intervals"]
    );
    let reg = &r0["snapshots"][0]["regions"][0];
    assert!(reg["nr_accesses"]["samples"].is_u64() && reg["age"]["aggr_intervals"].is_u64(), "{reg}");
    let back = record::read_file(&damo).expect("damo JSON reads back");
    assert!(!back.targets.is_empty() && !back.targets[0].snapshots.is_empty());
    // damo's own default: the same, zlib-compressed.
    let zdamo = d.dir().join("wl.damo");
    d.etmem(&[
        "record",
        "-n",
        "rec",
        "-o",
        zdamo.to_str().expect("utf-8"),
        "-d",
        "3s",
        "--format",
        "damo",
        "-q",
    ])
    .ok();
    let head = std::fs::read(&zdamo).expect("damo file");
    assert_eq!(head.first(), Some(&0x78), "not zlib data");
    d.etmem(&["report", "heatmap", zdamo.to_str().expect("utf-8")]).ok().says("# access_frequency");

    // Errors say what is wrong.
    d.etmem(&["record", "-n", "nope", "-o", file_s, "-d", "1s"])
        .expect_code(1)
        .says("project nope does not exist");
    std::fs::write(d.dir().join("junk"), "hello").expect("write");
    d.etmem(&["report", "wss", d.dir().join("junk").to_str().expect("utf-8")])
        .expect_code(1)
        .says("not a record");
    d.etmem(&["project", "stop", "-n", "rec"]).ok();
}

/// `etmem record` as a child process of the test.
fn spawn_record(d: &TestDaemon, args: &[&str]) -> std::process::Child {
    std::process::Command::new(etmem_tests::bin("etmem"))
        .args(args)
        .arg("-s")
        .arg(d.socket())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn etmem record")
}

fn finish(child: std::process::Child) -> (i32, String) {
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

fn line_types(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("record file")
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("each line is JSON")["type"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[test]
fn recording_sessions_start_end_and_refuse_cleanly() {
    // The test engine has no snapshot feed: the recorder polls it.
    let d = TestDaemon::start(DaemonConfig { test_engine: true, ..DaemonConfig::default() });
    let cfg = d.config(
        "p.toml",
        &format!(
            "[project]\nname = \"p\"\n\n[engine]\nkind = \"region\"\n\n[[task]]\nname = \"t\"\npid = {}\n",
            std::process::id()
        ),
    );
    d.etmem(&["obj", "add", "-f", cfg.to_str().expect("utf-8")]).ok();
    let file = d.dir().join("r.record");
    let f = file.to_str().expect("utf-8");
    d.etmem(&["record", "-n", "p", "-o", f, "-d", "1s"]).expect_code(1).says("project p is not started");
    assert!(!file.exists(), "a refused recording must not create its file");
    d.etmem(&["project", "start", "-n", "p"]).ok();
    d.etmem(&["record", "-n", "p", "-t", "nope", "-o", f, "-d", "1s"])
        .expect_code(1)
        .says("no task to record matching task nope");

    d.etmem(&["record", "-n", "p", "-o", f, "-d", "2s"]).ok().says("duration of 2.0s reached");
    let types = line_types(&file);
    assert_eq!(types.first().map(String::as_str), Some("header"));
    assert_eq!(types.last().map(String::as_str), Some("end"));
    assert!(types.iter().any(|t| t == "stats"), "{types:?}");
    let head: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&file).expect("read").lines().next().expect("line"))
            .expect("json");
    assert_eq!(head["targets"][0]["source"], "poll", "{head}");

    // Interrupted: the file still ends properly.
    let rec = spawn_record(&d, &["record", "-n", "p", "-o", f]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: kill on the pid of our own child.
    unsafe { libc::kill(rec.id() as i32, libc::SIGINT) };
    let (code, out) = finish(rec);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("interrupted"), "{out}");
    assert_eq!(line_types(&file).last().map(String::as_str), Some("end"));

    // The project stops while recording: the recording ends and says why.
    let rec = spawn_record(&d, &["record", "-n", "p", "-o", f, "-d", "60s"]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    d.etmem(&["project", "stop", "-n", "p"]).ok();
    let (code, out) = finish(rec);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("project p was stopped"), "{out}");
    // No snapshot: reports say so instead of drawing nothing.
    d.etmem(&["report", "heatmap", f]).expect_code(1).says("holds no snapshot");
}
