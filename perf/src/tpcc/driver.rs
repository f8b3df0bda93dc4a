//! The TPC-C driver: N terminals (threads, one connection each) run the
//! standard mix back to back, without keying or think time, for a warm-up
//! and then a measured window; deadlocks and lock wait timeouts are retried.
//! Result: tpmC, tpmTotal, and per transaction type counts and latency
//! percentiles.

use super::histogram::LatencyHistogram;
use super::random::{DISTRICTS_PER_WAREHOUSE, NuRandC};
use super::schema;
use super::txn::{self, Deck, Input, Kind, Outcome, Statements};
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder};
use rand::SeedableRng;
use rand_pcg::Pcg64;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use thiserror::Error;

/// At most this many distinct error messages are kept for the report.
const MAX_ERROR_SAMPLES: usize = 8;

/// How to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub terminals: u32,
    pub warmup: Duration,
    pub measure: Duration,
    pub seed: u64,
    /// Retries of a transaction that hit a deadlock or lock wait timeout.
    pub max_retries: u32,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            terminals: 8,
            warmup: Duration::from_secs(60),
            measure: Duration::from_secs(180),
            seed: 1,
            max_retries: 10,
        }
    }
}

/// Figures of one transaction type in the measured window.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TypeResult {
    pub kind: String,
    pub committed: u64,
    /// New-orders rolled back on purpose (1 %).
    pub rolled_back: u64,
    /// Transactions that failed for good (after retries, or other errors).
    pub failed: u64,
    /// Deadlocks and lock wait timeouts retried.
    pub retries: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// The result of a run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunResult {
    pub warehouses: u32,
    pub terminals: u32,
    pub measured_s: f64,
    /// New-order transactions committed per minute.
    pub tpmc: f64,
    /// Transactions of every type completed (committed or rolled back on purpose) per minute.
    pub tpm_total: f64,
    pub types: Vec<TypeResult>,
    /// Transactions completed in each second since the start of the warm-up.
    pub per_second: Vec<u64>,
    /// A few distinct error messages.
    pub errors: Vec<String>,
    /// The measured window (not kept in the JSON: a re-read result has "now").
    #[serde(skip, default = "no_window")]
    pub window: (Instant, Instant),
}

/// Why a run could not be done.
#[derive(Debug, Error)]
pub enum RunError {
    #[error("cannot connect to the server")]
    Connect(#[source] mysql::Error),
    #[error("the database is not loaded (no tpcc.tpcc_meta row)")]
    NotLoaded(#[source] Option<mysql::Error>),
    #[error("every terminal lost its connection; last error: {last}")]
    AllTerminalsLost { last: String },
}

fn no_window() -> (Instant, Instant) {
    let now = Instant::now();
    (now, now)
}

#[derive(Debug, Default, Clone)]
struct TypeStats {
    committed: u64,
    rolled_back: u64,
    failed: u64,
    retries: u64,
    hist: LatencyHistogram,
}

/// The load's facts the driver needs.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    pub warehouses: u32,
    pub c_load: NuRandC,
}

fn db_opts(opts: &Opts) -> Opts {
    OptsBuilder::from_opts(opts.clone()).db_name(Some(schema::DATABASE)).stmt_cache_size(Some(64)).into()
}

/// Read the warehouse count and the load's NURand constants.
pub fn loaded(opts: &Opts) -> Result<Loaded, RunError> {
    let mut conn = Conn::new(db_opts(opts)).map_err(RunError::Connect)?;
    let row: Option<(u32, u32, u32, u32)> = conn
        .query_first("SELECT warehouses, c_last_load, c_id_load, ol_i_id_load FROM tpcc_meta")
        .map_err(|e| RunError::NotLoaded(Some(e)))?;
    let (warehouses, c_last, c_id, ol_i_id) = row.ok_or(RunError::NotLoaded(None))?;
    Ok(Loaded { warehouses, c_load: NuRandC { c_last, c_id, ol_i_id } })
}

/// Shared state of the terminals.
struct Shared {
    t0: Instant,
    measure_start: Instant,
    end: Instant,
    per_second: Vec<AtomicU64>,
    errors: Mutex<Vec<String>>,
    lost: AtomicU64,
}

impl Shared {
    fn note_error(&self, e: &str) {
        let mut errs = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if errs.len() < MAX_ERROR_SAMPLES && !errs.iter().any(|x| x == e) {
            errs.push(e.to_string());
        }
    }
}

/// Run the mix on a loaded database. `stop` ends the run early (the result
/// then covers the part of the measured window that ran).
pub fn run(opts: &Opts, cfg: &RunConfig, stop: &AtomicBool) -> Result<RunResult, RunError> {
    let loaded = loaded(opts)?;
    let opts = db_opts(opts);
    let mut seed_rng = Pcg64::seed_from_u64(cfg.seed);
    let c_run = NuRandC::for_run(&loaded.c_load, &mut seed_rng);
    // Connect every terminal before the clock starts.
    let mut conns = Vec::with_capacity(cfg.terminals as usize);
    for _ in 0..cfg.terminals.max(1) {
        conns.push(Conn::new(opts.clone()).map_err(RunError::Connect)?);
    }
    let t0 = Instant::now();
    let total = cfg.warmup + cfg.measure;
    let shared = Shared {
        t0,
        measure_start: t0 + cfg.warmup,
        end: t0 + total,
        per_second: (0..total.as_secs() + 2).map(|_| AtomicU64::new(0)).collect(),
        errors: Mutex::new(Vec::new()),
        lost: AtomicU64::new(0),
    };
    let n = conns.len() as u32;
    let stats: Vec<[TypeStats; 5]> = std::thread::scope(|s| {
        let handles: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(i, conn)| {
                let (shared, opts) = (&shared, &opts);
                let i = i as u32;
                let home_w = i % loaded.warehouses + 1;
                let home_d = (i / loaded.warehouses) % DISTRICTS_PER_WAREHOUSE + 1;
                let seed = cfg.seed.wrapping_mul(1_000_003).wrapping_add(i as u64 + 1);
                s.spawn(move || {
                    terminal(conn, opts, shared, cfg, loaded.warehouses, &c_run, home_w, home_d, seed, stop)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    let errors = shared.errors.into_inner().unwrap_or_else(|p| p.into_inner());
    if shared.lost.load(Ordering::Relaxed) == n as u64 {
        return Err(RunError::AllTerminalsLost { last: errors.last().cloned().unwrap_or_default() });
    }
    let mut merged: [TypeStats; 5] = Default::default();
    for t in &stats {
        for (m, s) in merged.iter_mut().zip(t) {
            m.committed += s.committed;
            m.rolled_back += s.rolled_back;
            m.failed += s.failed;
            m.retries += s.retries;
            m.hist.merge(&s.hist);
        }
    }
    // A run stopped early measured less than its window.
    let stopped_at = Instant::now().min(shared.end);
    let measured_s = stopped_at.saturating_duration_since(shared.measure_start).as_secs_f64();
    let minutes = (measured_s / 60.0).max(f64::MIN_POSITIVE);
    let ms = |us: u64| us as f64 / 1000.0;
    let types: Vec<TypeResult> = Kind::ALL
        .iter()
        .zip(&merged)
        .map(|(k, s)| TypeResult {
            kind: k.name().to_string(),
            committed: s.committed,
            rolled_back: s.rolled_back,
            failed: s.failed,
            retries: s.retries,
            p50_ms: ms(s.hist.percentile_us(0.50)),
            p90_ms: ms(s.hist.percentile_us(0.90)),
            p95_ms: ms(s.hist.percentile_us(0.95)),
            p99_ms: ms(s.hist.percentile_us(0.99)),
            max_ms: ms(s.hist.max_us()),
            mean_ms: s.hist.mean_us() / 1000.0,
        })
        .collect();
    let done: u64 = merged.iter().map(|s| s.committed + s.rolled_back).sum();
    Ok(RunResult {
        warehouses: loaded.warehouses,
        terminals: n,
        measured_s,
        tpmc: merged[Kind::NewOrder.index()].committed as f64 / minutes,
        tpm_total: done as f64 / minutes,
        types,
        per_second: shared.per_second.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
        errors,
        window: (shared.measure_start, stopped_at.max(shared.measure_start)),
    })
}

#[allow(clippy::too_many_arguments)]
fn terminal(
    mut conn: Conn,
    opts: &Opts,
    shared: &Shared,
    cfg: &RunConfig,
    warehouses: u32,
    c: &NuRandC,
    home_w: u32,
    home_d: u32,
    seed: u64,
    stop: &AtomicBool,
) -> [TypeStats; 5] {
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut deck = Deck::default();
    let st = Statements::default();
    let mut stats: [TypeStats; 5] = Default::default();
    while !stop.load(Ordering::Relaxed) && Instant::now() < shared.end {
        let kind = deck.deal(&mut rng);
        let input = Input::draw(kind, home_w, home_d, warehouses, c, &mut rng);
        let start = Instant::now();
        let mut retries = 0;
        let result = loop {
            match txn::execute(&mut conn, &st, &input) {
                Err(e) if e.is_retryable() && retries < cfg.max_retries => retries += 1,
                r => break r,
            }
        };
        let end = Instant::now();
        let measured = start >= shared.measure_start && end <= shared.end;
        let s = &mut stats[kind.index()];
        if measured {
            s.retries += retries as u64;
        }
        match result {
            Ok(outcome) => {
                let sec = end.duration_since(shared.t0).as_secs() as usize;
                if let Some(c) = shared.per_second.get(sec) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
                if measured {
                    match outcome {
                        Outcome::Committed => s.committed += 1,
                        Outcome::RolledBack => s.rolled_back += 1,
                    }
                    s.hist.record(end.duration_since(start).as_micros() as u64);
                }
            }
            Err(e) => {
                if measured {
                    s.failed += 1;
                }
                shared.note_error(&e.to_string());
                if e.is_connection_lost() {
                    match Conn::new(opts.clone()) {
                        Ok(c) => conn = c,
                        Err(e) => {
                            shared.note_error(&format!("reconnect: {e}"));
                            shared.lost.fetch_add(1, Ordering::Relaxed);
                            return stats;
                        }
                    }
                }
            }
        }
    }
    stats
}
