//! Malformed configs: each case must be refused with an error naming the
//! right line and key. Data-driven through one `check` helper.

#![allow(clippy::unwrap_used)] // tests fail by panicking

/// One expected error: line (0 = whole file), key ("" = none) and a
/// fragment of the message.
type Want = (usize, &'static str, &'static str);

fn check(file: &str, input: &[u8], want: &[Want]) {
    let errs = match conf::parse(file, input, None) {
        Ok(o) => panic!(
            "{file}: accepted, expected errors {want:?}\ninput:\n{}\nparsed: {o:?}",
            String::from_utf8_lossy(input)
        ),
        Err(e) => e,
    };
    for (line, key, fragment) in want {
        let hit =
            errs.errors.iter().any(|e| e.line == *line && e.key == *key && e.message.contains(fragment));
        assert!(
            hit,
            "{file}: no error at line {line} key {key:?} containing {fragment:?}\ninput:\n{}\nerrors:\n{errs}",
            String::from_utf8_lossy(input)
        );
    }
    for e in &errs.errors {
        assert_eq!(e.file, file);
        assert!(!e.to_string().contains('\n'), "one line per error: {e}");
    }
}

fn lines(l: &[&str]) -> Vec<u8> {
    let mut s = l.join("\n");
    s.push('\n');
    s.into_bytes()
}

/// A region project, 4 lines.
const R: &[&str] = &["[project]", "name = \"db\"", "[engine]", "kind = \"region\""];
/// A page project with loop = 2, 5 lines.
const P: &[&str] = &["[project]", "name = \"db\"", "[engine]", "kind = \"page\"", "loop = 2"];
/// An etmem slide project with loop=1, 5 lines.
const S: &[&str] = &["[project]", "name=test", "loop=1", "interval=1", "sleep=1"];
/// An etmem region project, lines 1..=3; intervals and regions follow.
const RI: &[&str] = &["[project]", "name=p", "scan_type=region"];
/// An etmem slide task header, 6 lines (T follows on line 7).
const ST: &[&str] = &["[task]", "project=p", "engine=slide", "name=t", "type=name", "value=x"];

fn with(base: &[&str], more: &[&str]) -> Vec<u8> {
    let all: Vec<&str> = base.iter().chain(more).copied().collect();
    lines(&all)
}

fn toml(base: &[&str], more: &[&str], want: &[Want]) {
    check("t.toml", &with(base, more), want);
}

fn ini(base: &[&str], more: &[&str], want: &[Want]) {
    check("t.conf", &with(base, more), want);
}

#[test]
fn toml_structure() {
    toml(&[], &["[project]", "name = "], &[(2, "", "TOML syntax")]);
    check("t.toml", b"", &[(0, "", "empty config")]);
    check("t.toml", b"# only a comment\n", &[(0, "", "empty config")]);
    toml(&["[project]", "name = \"db\""], &[], &[(1, "engine", "missing [engine]")]);
    toml(&["project = 5"], &[], &[(1, "project", "expected a [project] table")]);
    toml(R, &["[polcy]", "x = 1"], &[(5, "polcy", "did you mean `policy`")]);
    toml(&["[[task]]", "pid = 1"], &[], &[(0, "project", "missing [project]")]);
    toml(
        &[
            "project = \"db\"",
            "engine = \"region\"",
            "[[task]]",
            "pid = 1",
            "[policy]",
            "cold_min_age = \"1m\"",
        ],
        &[],
        &[(5, "policy", "tasks-only file")],
    );
    toml(
        &["project = \"db\"", "engine = \"slide\"", "[[task]]", "pid = 1"],
        &[],
        &[(2, "engine", "not one of page, region, kernel-damon")],
    );
}

#[test]
fn toml_engine() {
    toml(
        R,
        &["smaple_interval = \"5ms\""],
        &[(5, "engine.smaple_interval", "did you mean `sample_interval`")],
    );
    toml(
        R,
        &["min_nr_regions = \"10\""],
        &[(5, "engine.min_nr_regions", "expected an integer without quotes")],
    );
    toml(
        R,
        &["min_nr_regions = 100", "max_nr_regions = 50"],
        &[(6, "engine.max_nr_regions", "must be above min_nr_regions 100")],
    );
    toml(R, &["min_nr_regions = 2"], &[(5, "engine.min_nr_regions", "at least 3")]);
    toml(R, &["sample_interval = \"200ms\""], &[(5, "engine.sample_interval", "above aggr_interval 100ms")]);
    toml(R, &["aggr_interval = \"100xs\""], &[(5, "engine.aggr_interval", "unknown unit `xs`")]);
    toml(R, &["update_interval = 1000"], &[(5, "engine.update_interval", "has no unit")]);
    toml(R, &["loop = 3"], &[(5, "engine.loop", "does not apply to kind = region")]);
    toml(R, &["file_backed = \"true\""], &[(5, "engine.file_backed", "without quotes")]);
    toml(R, &["probe = \"idle_bitmap\""], &[(5, "engine.probe", "did you mean `idle-bitmap`")]);
    toml(
        R,
        &["sample_interval = \"1ms\"", "[engine.autotune]"],
        &[(6, "engine.autotune.min_sample", "outside min_sample..max_sample")],
    );
    toml(
        R,
        &["[engine.autotune]", "access_bp = 20000"],
        &[(6, "engine.autotune.access_bp", "expected 1..=10000")],
    );
    toml(
        &["[project]", "name = \"db\"", "[engine]", "kind = \"regoin\""],
        &[],
        &[(4, "engine.kind", "did you mean `region`")],
    );
    toml(
        &["[project]", "name = \"db\"", "[engine]", "loop = 1"],
        &[],
        &[(3, "engine.kind", "missing required key")],
    );
    toml(P, &["T = 7"], &[(6, "engine.T", "above 3 * loop = 6")]);
    toml(P, &["loop = 3"], &[(6, "", "TOML syntax: duplicate key")]);
    toml(&P[..4], &["loop = 200"], &[(5, "engine.loop", "out of range, expected 1..=120")]);
    toml(P, &["sleep = \"30m\""], &[(6, "engine.sleep", "at most 1200s")]);
    toml(P, &["probe = \"refault\"", "forbid_refault = true"], &[(6, "engine.probe", "contradicts")]);
    toml(
        &["[project]", &format!("name = \"{}\"", "x".repeat(65)), "[engine]", "kind = \"page\""],
        &[],
        &[(2, "project.name", "at most 64")],
    );
    toml(
        &["[project]", "name = \"my db\"", "[engine]", "kind = \"page\""],
        &[],
        &[(2, "project.name", "no spaces")],
    );
}

#[test]
fn toml_tasks() {
    toml(R, &["[[task]]", "name = \"x\""], &[(5, "task", "missing target")]);
    toml(R, &["[[task]]", "pid = 1", "process = \"a\""], &[(7, "task.process", "one target")]);
    toml(R, &["[[task]]", "pid = 0"], &[(6, "task.pid", "out of range")]);
    toml(R, &["[[task]]", "process = \"a_very_long_process_name\""], &[(6, "task.process", "15")]);
    toml(R, &["[[task]]", "cgroup = \"../etc\""], &[(6, "task.cgroup", "without `..`")]);
    toml(
        R,
        &["[[task]]", "pid = 1", "name = \"a\"", "[[task]]", "pid = 2", "name = \"a\""],
        &[(10, "task.name", "two tasks are named `a`")],
    );
    toml(R, &["[[task]]", "pid = 1", "T = 1"], &[(7, "task.T", "does not apply to engine kind = region")]);
    toml(P, &["[[task]]", "pid = 1", "T = 9"], &[(8, "task.T", "above 3 * loop = 6")]);
    toml(
        P,
        &["[[task]]", "pid = 1", "dram_percent = \"12.5%\""],
        &[(8, "task.dram_percent", "whole percentage")],
    );
    toml(P, &["[[task]]", "pid = 1", "max_threads = 0"], &[(8, "task.max_threads", "out of range")]);
    toml(&["task = 3"], R, &[(1, "task", "expected [[task]] tables")]);
}

#[test]
fn toml_policy_schemes_backends() {
    toml(R, &["[policy]", "cold_min_age = 120"], &[(6, "policy.cold_min_age", "has no unit")]);
    toml(R, &["[policy]", "keep_in_ram = \"150%\""], &[(6, "policy.keep_in_ram", "above 100%")]);
    toml(R, &["[policy]", "sysmem_threshold = 50"], &[(6, "policy.sysmem_threshold", "has no unit")]);
    toml(
        R,
        &["[policy]", "hot_min_accesses = \"50\""],
        &[(6, "policy.hot_min_accesses", "expected an integer count")],
    );
    toml(
        R,
        &["[policy]", "hot_min_accesses = 3", "cold_max_accesses = 5"],
        &[(7, "policy.cold_max_accesses", "must be below hot_min_accesses 3")],
    );
    toml(R, &["[policy]", "thp_min_size = \"3M\""], &[(6, "policy.thp_min_size", "multiple of 2M")]);
    toml(R, &["[policy]", "thp_max_ptes_none = 512"], &[(6, "policy.thp_max_ptes_none", "512")]);
    toml(R, &["[policy]", "thp_hold = \"0s\""], &[(6, "policy.thp_hold", "must be above 0s")]);
    toml(
        R,
        &["[policy]", "cold_action = \"swap\""],
        &[(6, "policy.cold_action", "not one of pageout, cold, stat, none")],
    );
    toml(
        R,
        &["[policy]", "swap_threshold = \"99999999999999999999P\""],
        &[(6, "policy.swap_threshold", "too large")],
    );
    toml(
        R,
        &["[policy.watermarks]", "high = \"50%\"", "mid = \"40%\"", "low = \"45%\""],
        &[(8, "policy.watermarks.low", "low 45% is above mid 40%")],
    );
    toml(R, &["[policy.watermarks]", "high = \"50.05%\""], &[(6, "policy.watermarks.high", "0.1% steps")]);
    toml(
        R,
        &["[policy.quota]", "cpu_ms_per_s = 2000"],
        &[(6, "policy.quota.cpu_ms_per_s", "expected 1..=1000")],
    );
    toml(
        R,
        &["[[scheme]]", "line = \"min max 80 max 100ms max\""],
        &[(6, "scheme.line", "expected 7 fields")],
    );
    toml(
        R,
        &["[[scheme]]", "line = \"min max 0 0 5s max pagout\""],
        &[(6, "scheme.line", "did you mean `pageout`")],
    );
    toml(
        R,
        &["[[scheme]]", "line = \"min max 0 0 5s max pageout\"", "action = \"stat\""],
        &[(7, "scheme.action", "either `line`")],
    );
    toml(
        R,
        &["[[scheme]]", "action = \"stat\"", "min_size = \"4M\"", "max_size = \"2M\""],
        &[(7, "scheme.min_size", "min 4M is above max 2M")],
    );
    toml(R, &["[[scheme]]", "min_age = \"5s\""], &[(5, "scheme.action", "missing required key")]);
    toml(
        R,
        &["[[scheme]]", "action = \"stat\"", "min_age = 5"],
        &[(7, "scheme.min_age", "expected a duration")],
    );
    toml(R, &["[[backend]]", "kind = \"zram\""], &[(5, "backend.size", "missing required key")]);
    toml(
        R,
        &["[[backend]]", "kind = \"zram\"", "size = \"1G\"", "path = \"/x\""],
        &[(8, "backend.path", "does not apply to kind = zram")],
    );
    toml(
        R,
        &["[[backend]]", "kind = \"swapfile\"", "size = \"1G\"", "path = \"swap0\""],
        &[(8, "backend.path", "not an absolute")],
    );
    toml(
        R,
        &["[[backend]]", "kind = \"zram\"", "size = \"1G\"", "priority = 40000"],
        &[(8, "backend.priority", "out of range")],
    );
    toml(
        R,
        &["[[backend]]", "kind = \"ssd\"", "size = \"1G\""],
        &[(6, "backend.kind", "not one of zram, swapfile")],
    );
}

#[test]
fn toml_reports_all_errors_together() {
    let input = with(
        R,
        &[
            "smaple = 1",
            "[[task]]",
            "name = \"x\"",
            "[policy]",
            "cold_min_age = 120",
            "[[backend]]",
            "kind = \"zram\"",
        ],
    );
    let errs = conf::parse("t.toml", &input, None).unwrap_err();
    assert_eq!(errs.errors.len(), 4, "{errs}");
    let text = errs.to_string();
    assert_eq!(text.lines().count(), 4);
    assert!(
        text.lines().next().unwrap_or_default().starts_with("t.toml:5: key engine.smaple: unknown key"),
        "{text}"
    );
}

#[test]
fn refused_inputs() {
    for file in ["t.toml", "t.conf"] {
        check(file, b"", &[(0, "", "empty config")]);
        check(file, &[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0xff, 0xfe], &[(1, "", "not UTF-8")]);
        check(file, b"[project]\nname=te\x01st\n", &[(2, "", "control character U+0001")]);
        check(file, &vec![b'#'; 20 << 20], &[(0, "", "10 MiB")]);
    }
}

#[test]
fn etmem_groups() {
    ini(
        S,
        &["[engine]", "name=slide", "project=test", "[engine]", "name=cslide"],
        &[(9, "", "second [engine] group (the first is at line 6)")],
    );
    ini(&["[projet]", "name=x"], &[], &[(1, "", "did you mean [project]")]);
    ini(&["name=test", "[project]", "name=test"], &[], &[(1, "name", "outside of a group")]);
    ini(&["[project]", "name=a", "name=b"], &[], &[(3, "name", "given twice")]);
    ini(&["[project]", "name test"], &[], &[(2, "", "expected `key=value`")]);
    ini(&["[project", "name=x"], &[], &[(1, "", "malformed group header")]);
}

#[test]
fn etmem_project() {
    ini(
        S,
        &["swapcache_high_vmark=10"],
        &[(6, "swapcache_high_vmark", "did you mean `swapcache_high_wmark`")],
    );
    ini(S, &["swapcache_high_wmark=10"], &[(6, "swapcache_high_wmark", "set swapcache_low_wmark too")]);
    ini(
        S,
        &["swapcache_high_wmark=10", "swapcache_low_wmark=10"],
        &[(7, "swapcache_low_wmark", "must be below")],
    );
    ini(S, &["sysmem_threshold=101"], &[(6, "sysmem_threshold", "expected 0..=100")]);
    ini(
        &["[project]", "name=test", "loop=121", "interval=1", "sleep=1"],
        &[],
        &[(3, "loop", "expected 1..=120")],
    );
    ini(
        &["[project]", "name=test", "loop=1", "interval=10s", "sleep=1"],
        &[],
        &[(4, "interval", "plain numbers")],
    );
    ini(
        &["[project]", "name=test", "loop=1", "sleep=1"],
        &[],
        &[(1, "interval", "missing required key in [project] (scan_type page)")],
    );
    ini(&["[project]", "name=test", "scan_type=regoin"], &[], &[(3, "scan_type", "did you mean `region`")]);
    let region = ["sample_interval=5000", "aggr_interval=100000", "update_interval=1000000"];
    ini(
        RI,
        &[&region[..], &["min_nr_regions=2", "max_nr_regions=1000"]].concat(),
        &[(7, "min_nr_regions", "at least 3")],
    );
    ini(
        RI,
        &[&region[..], &["min_nr_regions=10", "max_nr_regions=10"]].concat(),
        &[(8, "max_nr_regions", "must be above")],
    );
    ini(
        RI,
        &[&["sample_interval=200000"], &region[1..], &["min_nr_regions=10", "max_nr_regions=100", "loop=1"]]
            .concat(),
        &[(4, "sample_interval", "above aggr_interval"), (9, "loop", "does not apply to scan_type = region")],
    );
}

#[test]
fn etmem_engines() {
    ini(
        &["[engine]", "engine=slide", "project=p"],
        &[],
        &[(2, "engine", "unknown key in [engine]"), (1, "name", "missing required key")],
    );
    ini(
        S,
        &[
            "[engine]",
            "name=damon",
            "project=test",
            "min_size=0",
            "max_size=1",
            "min_acc=0",
            "max_acc=1",
            "min_age=0",
            "max_age=1",
            "action=stat",
        ],
        &[(7, "name", "needs a project with scan_type region")],
    );
    let cslide = ["[engine]", "name=cslide", "project=p"];
    ini(
        &cslide,
        &["node_pair=0,1;1,2", "hot_threshold=1", "node_mig_quota=1", "node_hot_reserve=1"],
        &[(4, "node_pair", "twice")],
    );
    ini(
        &cslide,
        &["node_pair=0,1", "hot_threshold=1", "node_mig_quota=1", "node_hot_reserve=1", "sample_period=5"],
        &[(8, "sample_period", "go together")],
    );
    ini(
        &cslide,
        &["node_pair=0,1"],
        &[(1, "node_hot_reserve", "missing required key in [engine] (name cslide)")],
    );
    let damon = ["[engine]", "name=damon", "project=p", "min_size=0", "max_size=10"];
    ini(
        &damon,
        &["min_acc=5", "max_acc=2", "min_age=0", "max_age=1", "action=pageout"],
        &[(6, "min_acc", "min_acc 5 is above max_acc 2")],
    );
    ini(
        &damon,
        &["min_acc=0", "max_acc=2", "min_age=0", "max_age=1", "action=2"],
        &[(10, "action", "debugfs number 2 is `pageout`")],
    );
    ini(
        &damon,
        &["min_acc=0", "max_acc=2", "min_age=0", "max_age=-1", "action=stat"],
        &[(9, "max_age", "out of range")],
    );
    let third = ["[engine]", "name=thirdparty", "project=p", "ops_name=ops"];
    ini(&third, &["eng_name=e", "libname=e.so"], &[(6, "libname", "not an absolute path")]);
    ini(&third, &["eng_name=slide", "libname=/e.so"], &[(5, "eng_name", "built-in engine type")]);
    ini(&third, &["eng_name=e", "lib_name=/e.so"], &[(1, "libname", "is `lib_name` a misspelling of it?")]);
}

#[test]
fn etmem_tasks() {
    ini(
        S,
        &["[task]", "project=test", "engine=slide", "name=t", "type=name", "value=mysql", "T=4"],
        &[(12, "T", "above 3 * loop = 3")],
    );
    ini(ST, &[], &[(1, "T", "missing required key in [task] (engine slide)")]);
    ini(
        &["[task]", "project=p", "engine=slide", "name=t", "type=name", "value=a_very_long_name_x", "T=1"],
        &[],
        &[(6, "value", "at most 15")],
    );
    ini(
        &["[task]", "project=p", "engine=slide", "name=t", "type=name", "value=my$ql", "T=1"],
        &[],
        &[(6, "value", "etmem allows only")],
    );
    ini(
        &["[task]", "project=p", "engine=slide", "name=t", "type=pid", "value=abc", "T=1"],
        &[],
        &[(6, "value", "not a pid")],
    );
    ini(
        &["[task]", "project=p", "engine=slide", "name=t", "type=comm", "value=x", "T=1"],
        &[],
        &[(5, "type", "not one of pid, name")],
    );
    ini(ST, &["T=1", "swap_threshold=512M"], &[(8, "swap_threshold", "`<N>g`")]);
    ini(ST, &["T=1", "swap_flag=true"], &[(8, "swap_flag", "did you mean `yes`")]);
    ini(ST, &["T=1", "dram_percent=0"], &[(8, "dram_percent", "expected 1..=100")]);
    ini(ST, &["T=1", "vm_flags=ht"], &[(8, "vm_flags", "does not apply to engine = slide")]);
    let cs = ["[task]", "project=p", "engine=cslide", "name=t", "type=pid", "value=1"];
    ini(
        &cs,
        &[],
        &[
            (1, "vm_flags", "missing required"),
            (1, "anon_only", "missing required"),
            (1, "ign_host", "missing required"),
        ],
    );
    ini(&cs, &["vm_flags=rw", "anon_only=no", "ign_host=no"], &[(7, "vm_flags", "only `ht`")]);
    ini(
        &[
            "[task]",
            "project=p",
            "engine=cslide",
            "name=23456",
            "type=pid",
            "vm_flags=ht",
            "anon_only=no",
            "ign_host=no",
        ],
        &[],
        &[(4, "name", "belongs in `value`"), (1, "value", "missing required")],
    );
    let psi = ["[task]", "project=p", "engine=psi", "name=t", "type=name", "value=x"];
    ini(&psi, &["cg_dir=a", "reclaim_rate=1.5"], &[(8, "reclaim_rate", "out of range")]);
    ini(
        &psi,
        &["cg_dir=a", "reclaim_rate_min=0.4", "reclaim_rate=0.3"],
        &[(9, "reclaim_rate", "reclaim_rate_min <= reclaim_rate")],
    );
    ini(&psi, &["cg_dir=/abs"], &[(7, "cg_dir", "relative")]);
}

/// Large (but allowed) inputs parse in linear time: many keys, many tasks.
#[test]
fn large_inputs() {
    let mut ini = String::from("[task]\n");
    for i in 0..100_000 {
        ini.push_str(&format!("k{i}=v\n"));
    }
    let errs = conf::parse("big.conf", ini.as_bytes(), None).unwrap_err();
    assert!(errs.to_string().ends_with("more errors not shown"), "{errs}");
    let mut toml = with(R, &[]);
    for i in 0..20_000 {
        toml.extend_from_slice(format!("[[task]]\npid = {}\n", i + 1).as_bytes());
    }
    let o = conf::parse("big.toml", &toml, None).unwrap();
    assert_eq!(o.tasks.len(), 20_000);
}
