//! Renders `docs/config.md` from the key tables in [`crate::schema`], so the
//! reference cannot drift from what the parsers accept.

use std::fmt::Write;

use crate::model::{MAX_CONFIG_BYTES, MAX_NAME_LEN};
use crate::schema::{ETMEM_SECTIONS, SectionSpec, TOML_SECTIONS};

const INTRO: &str = r#"# Configuration reference

<!-- Generated from conf/src/schema.rs and conf/src/docs.rs; do not edit by hand.
     Regenerate with: UPDATE_DOCS=1 cargo test -p conf --test docs -->

etmem-rs reads one config file per workload, in one of two formats:

* the **native format**, TOML, for files whose name ends in `.toml`;
* **etmem's own INI files** (openEuler etmem's `*.yaml`/`*.conf`/`*.config`),
  accepted as they are, for any other name.

`etmem obj add -f FILE` (or `etmem project add -f FILE`) hands the file to the
daemon, which reads it and parses it with `conf::parse`. Every error of a file is reported at once,
one per line, as `FILE:LINE: key KEY: message`. Unknown keys are errors (with
a "did you mean" where a known key is close). A file is refused before parsing
when it is larger than MAX_BYTES, is not UTF-8 text, or holds control characters
(binary data). Names of projects, engines and tasks are 1 to MAX_NAME bytes,
without spaces or control characters, and do not start with `-`.

## Values

| kind | written as | notes |
|---|---|---|
| size | `"4096"`, `"4K"`, `"2M"`, `"1.5G"`, `"1T"` | binary multiples, K = 1024; `KB`/`KiB`/lower case accepted; must come out as whole bytes |
| duration | `"500us"`, `"100ms"`, `"5s"`, `"2m"`, `"1h"`, `"1d"` | `ns`, `us`, `ms`, `s`, `m`/`min`, `h`, `d`; fractions such as `"1.5s"` allowed; a bare `0` is allowed, other bare numbers are not |
| percent | `"50%"`, `"12.5%"` | at most two decimals, at most 100 % |
| access bound | `3`, `"50%"`, `"3samples"`, `"min"`, `"max"` | an integer is a count (DAMON `nr_accesses`, or the page engine's score); `N%` is relative to the engine's maximum (samples per aggregation, or `3 * loop`) |
| age bound | `"5s"`, `"min"`, `"max"` | in schemes; converted to aggregation intervals by the engine |

In TOML, sizes, durations and percentages are strings with their unit
(`sample_interval = "5ms"`); plain integers are accepted only where the unit
is obvious (counts, `T`, `dram_percent`). `min`/`max` are accepted only
where a table says so.
"#;

const SCHEMES: &str = r#"## Scheme one-liners

A `[[scheme]]` may give its pattern and action as one line, `line = "..."`, in
either of the two short forms in use. `conf::scheme::parse_line` reads the
same lines. Both have seven whitespace-separated fields:

```
<min-size> <max-size> <min-acc> <max-acc> <min-age> <max-age> <action>
```

**damo's form** (damo's deprecated "DAMOS single line format"):

* sizes: bytes or with a unit (`4K`, `2M`), or `min` / `max`;
* accesses: a percentage of the maximum access count (`80` or `80%`), an
  explicit count with the suffix `samples` (`3samples`), or `min` / `max`;
* ages: durations (`100ms`, `5s`, `2m`) or `min` / `max`;
* action: `willneed`, `cold`, `pageout`, `hugepage`, `nohugepage`, `stat`.

| line | means |
|---|---|
| `min max 80 max 100ms max willneed` | prefetch regions accessed in >= 80 % of samples for at least 100 ms |
| `4K max min min 5s max pageout` | page out regions of 4 KiB or more not accessed for 5 s |
| `2M max 90 100 100ms max hugepage` | huge pages for 2 MiB+ regions accessed in >= 90 % of samples for 100 ms |
| `min max 0 3samples min max stat` | count regions seen at most 3 times per aggregation |

**etmem's form** (the seven keys of etmem's `damon` engine): sizes in bytes,
accesses as raw `nr_accesses` counts per aggregation interval, ages in
aggregation intervals, actions by name. Example: `0 4294967295 0 2 0 4294967295 pageout`.
A `max_acc` of 4294967295 or more means "no upper bound".

**Which form:** a line whose first six fields are all plain unsigned integers
is etmem's form; any other line is damo's. Write `damo:` or `etmem:` before the
fields (or set `form = "damo"` / `"etmem"` in the `[[scheme]]`) to say which.
In damo's form a bare number as an age is an error (give a unit), so a line
cannot be read both ways by accident.
"#;

const ETMEM_INTRO: &str = r#"## etmem INI files

etmem's files are read as etmem (1.1, openEuler master 2025-03) reads them,
with glib's GKeyFile rules: `[group]` headers, `key=value` lines (spaces around
`=` allowed), `#` comments, case-sensitive keys, `\s \n \t \r \\` escapes. The
groups map onto the same model as the native format:

| etmem | becomes |
|---|---|
| `[project] scan_type=page` | `Scan::Page` (`loop`, `sleep`, `interval` with the code's meaning), the slide policy (`Policy::etmem_slide`: pages scoring below the task's `T` are paged out) |
| `[project] scan_type=region` | `Scan::Region` (µs intervals), no userspace policy |
| `[project] scan_type=psi` | `Scan::Psi` |
| `[engine] name=slide` | a `page` engine named `slide` |
| `[engine] name=cslide` | `EngineKind::Cslide` (refused at start on hosts with one NUMA node) |
| `[engine] name=damon` | `EngineKind::KernelDamon { ops: vaddr, from_etmem: true }` carrying the group's scheme (so a separate engine file brings it along) |
| `[engine] name=thirdparty` | `EngineKind::Thirdparty`, named by `eng_name`; parsed, never loaded: the daemon refuses it, naming `libname` |
| `[engine] name=psi` / `name=memdcd` | `EngineKind::Psi` / `EngineKind::Memdcd` |
| `[task]` | a task; `type=pid` / `type=name` with `value`; psi tasks target their `cg_dir` |

As in etmem, a file may hold any of the three groups (project, engine and task
files may be added one by one), and an engine or task names its project (and
engine) by name. When the same file holds the project, its engine and task are
checked against it (`T` <= 3 * `loop`, engine type against `scan_type`); when
they come in separate files, the daemon runs the same checks
(`conf::checks::engine_fits`, `conf::checks::task_fits`).

**etmem pitfalls that are errors here** (etmem accepts them silently or
behaves unlike its docs):

* a repeated `[project]`, `[engine]` or `[task]` group: GKeyFile merges them,
  so a file holds one of each; put several tasks in several files;
* a repeated key in a group, an unknown key or group, a key that does not
  belong to the group's engine type;
* `swapcache_high_vmark` / `swapcache_low_vmark` (the user guide's spelling)
  are unknown keys with a "did you mean"; only one of the two swap-cache
  watermarks, or low >= high;
* `engine=` instead of `name=` in `[engine]` (the README tables' spelling);
* `dram_percent` out of 1..100 (etmem ignores it with a warning); page scores
  range over 0..=3 * `loop`, and the engine sizes its buckets for that
  (etmem's `loop + 1` buckets overflow);
* cslide tasks without `vm_flags=ht`, `anon_only`, `ign_host` (required by
  etmem's code, "optional" in its docs); a numeric `name` without `value`
  (the README's cslide example) gets a hint;
* `loop` is 1..=120 and `interval` / `sleep` 1..=1200 s as in the code, and
  `sleep` is the pause after each scan, `interval` the pause between rounds
  (the docs have them the other way round);
* `node_pair` is `hot,cold`: the first node of each pair is the DRAM node, as
  in etmem's code (its docs say the reverse);
* a `value` longer than 15 characters or with characters outside
  `A-Za-z0-9.%/_-`; a `type=pid` value that is not a pid.

**Accepted and kept, but without effect here:** `swapcache_high_wmark` /
`swapcache_low_wmark` (they act through etmem's `etmem_swap` kernel module;
the daemon says so) and the PMU-build keys (`sample_period`,
`vma_updata_rate`, `cpu_set_size`, `cooling_interval`).
"#;

/// The whole of `docs/config.md`.
pub fn render() -> String {
    let mut out = INTRO
        .replace("MAX_BYTES", &format!("{} MiB", MAX_CONFIG_BYTES >> 20))
        .replace("MAX_NAME", &MAX_NAME_LEN.to_string());
    out.push_str("\n## Native TOML format\n\n");
    out.push_str(
        "A whole project in one file. Every key but `[project] name` and `[engine] kind` \
         has a default; the examples in `conf/examples/` are commented.\n\n\
         ```toml\n[project]\nname = \"db\"\n\n[engine]\nkind = \"region\"\n\n\
         [[task]]\nprocess = \"mysqld\"\n\n[policy]\ncold_min_age = \"2m\"\ncold_action = \"pageout\"\n\n\
         [[backend]]\nkind = \"zram\"\nsize = \"4G\"\n```\n\n\
         Adding tasks to a project that is already loaded:\n\n\
         ```toml\nproject = \"db\"\nengine = \"region\"\n\n[[task]]\npid = 4242\n```\n\n\
         How the file maps onto the model: `[engine]`'s scan parameters become the project's \
         `scan`; the engine is named after its kind (`page`, `region`, `kernel-damon`); tasks \
         get the project's and engine's names; `[policy]`, `[[scheme]]` and `[[backend]]` go \
         to the project.\n\n",
    );
    for s in TOML_SECTIONS {
        section(&mut out, s);
    }
    out.push('\n');
    out.push_str(SCHEMES);
    out.push('\n');
    out.push_str(ETMEM_INTRO);
    out.push('\n');
    for s in ETMEM_SECTIONS {
        section(&mut out, s);
    }
    out
}

fn section(out: &mut String, s: &SectionSpec) {
    let _ = writeln!(out, "### {}\n\n{}\n", s.header, s.doc);
    let variants = !s.variant_by.is_empty();
    if variants {
        let _ = writeln!(out, "| key | type | default | {} | meaning |\n|---|---|---|---|---|", s.variant_by);
    } else {
        out.push_str("| key | type | default | meaning |\n|---|---|---|---|\n");
    }
    for k in s.keys {
        let only = if k.only.is_empty() { "all".to_owned() } else { k.only.join(", ") };
        let cells = [format!("`{}`", k.key), k.ty.to_owned(), k.default.render()];
        let mut row = cells.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ");
        if variants {
            row.push_str(" | ");
            row.push_str(&cell(&only));
        }
        let _ = writeln!(out, "| {row} | {} |", cell(k.doc));
    }
    out.push('\n');
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}
