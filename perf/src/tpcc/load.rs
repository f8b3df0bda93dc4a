//! The TPC-C loader (clause 4.3.3.1): `item`, then per warehouse its
//! `stock`, `district`, `customer`, `history`, `orders`, `order_line` and
//! `new_orders` rows at the specification's cardinalities, written with
//! multi-row INSERTs by several threads (one warehouse at a time each).

use super::random::{self, CUSTOMERS_PER_DISTRICT, DISTRICTS_PER_WAREHOUSE, FIRST_NEW_ORDER, ITEMS, NuRandC};
use super::schema;
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;
use thiserror::Error;

/// Flush a multi-row INSERT once its text reaches this many bytes
/// (MariaDB's max_allowed_packet is 16 MiB by default).
const BATCH_BYTES: usize = 1 << 20;

/// What to load.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub warehouses: u32,
    /// Loader connections working in parallel.
    pub threads: u32,
    pub seed: u64,
}

/// What a load did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadSummary {
    pub warehouses: u32,
    pub rows: u64,
    pub elapsed_s: f64,
}

/// Why a load failed.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot connect to the server")]
    Connect(#[source] mysql::Error),
    #[error("cannot create the schema ({stmt})")]
    Schema { stmt: String, source: mysql::Error },
    #[error("cannot load table {table} of warehouse {warehouse}")]
    Insert { table: &'static str, warehouse: u32, source: mysql::Error },
    #[error("a loader thread panicked")]
    Panicked,
    #[error("stopped by a signal")]
    Interrupted,
}

/// One multi-row INSERT being built.
struct Batch {
    table: &'static str,
    head: String,
    sql: String,
    rows: u64,
}

impl Batch {
    fn new(table: &'static str, columns: &str) -> Batch {
        let head = format!("INSERT INTO {table} ({columns}) VALUES ");
        Batch { table, sql: head.clone(), head, rows: 0 }
    }

    /// Start a row: the caller writes the parenthesised values after it.
    fn next_row(&mut self) -> &mut String {
        if self.rows > 0 {
            self.sql.push(',');
        }
        self.rows += 1;
        &mut self.sql
    }

    fn flush_if_full(&mut self, conn: &mut Conn, w: u32, total: &AtomicU64) -> Result<(), LoadError> {
        if self.sql.len() >= BATCH_BYTES { self.flush(conn, w, total) } else { Ok(()) }
    }

    fn flush(&mut self, conn: &mut Conn, w: u32, total: &AtomicU64) -> Result<(), LoadError> {
        if self.rows == 0 {
            return Ok(());
        }
        conn.query_drop(&self.sql).map_err(|source| LoadError::Insert {
            table: self.table,
            warehouse: w,
            source,
        })?;
        total.fetch_add(self.rows, Ordering::Relaxed);
        self.sql.clear();
        self.sql.push_str(&self.head);
        self.rows = 0;
        Ok(())
    }
}

fn with_db(opts: &Opts) -> Opts {
    OptsBuilder::from_opts(opts.clone()).db_name(Some(schema::DATABASE)).into()
}

/// Drop and recreate the `tpcc` database and load it. `opts` names the
/// server (no database needed); `stop` ends the load early with
/// [`LoadError::Interrupted`].
pub fn load(
    opts: &Opts,
    cfg: &LoadConfig,
    stop: &AtomicBool,
    progress: &(dyn Fn(String) + Sync),
) -> Result<LoadSummary, LoadError> {
    let started = Instant::now();
    let mut rng = Pcg64::seed_from_u64(cfg.seed);
    let c = NuRandC::random(&mut rng);
    {
        let mut conn = Conn::new(opts.clone()).map_err(LoadError::Connect)?;
        let db = schema::DATABASE;
        let mut stmts = vec![
            format!("DROP DATABASE IF EXISTS {db}"),
            format!("CREATE DATABASE {db}"),
            format!("USE {db}"),
        ];
        stmts.extend(schema::TABLES.iter().map(|s| s.to_string()));
        stmts.push(format!(
            "INSERT INTO tpcc_meta VALUES ({}, {}, {}, {})",
            cfg.warehouses, c.c_last, c.c_id, c.ol_i_id
        ));
        for stmt in stmts {
            conn.query_drop(&stmt).map_err(|source| LoadError::Schema { stmt, source })?;
        }
    }
    // Task 0 is the item table; task w (1..=W) is warehouse w.
    let tasks = cfg.warehouses as usize + 1;
    let next = AtomicUsize::new(0);
    let total = AtomicU64::new(0);
    let threads = (cfg.threads.max(1) as usize).min(tasks);
    let db_opts = with_db(opts);
    // Set when a thread fails, so that the others stop too.
    let abort = AtomicBool::new(false);
    let halted = || stop.load(Ordering::Relaxed) || abort.load(Ordering::Relaxed);
    let result: Result<(), LoadError> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<(), LoadError> {
                    let r = (|| {
                        let mut conn = Conn::new(db_opts.clone()).map_err(LoadError::Connect)?;
                        conn.query_drop("SET SESSION unique_checks = 0, foreign_key_checks = 0")
                            .map_err(|source| LoadError::Schema { stmt: "SET SESSION".into(), source })?;
                        loop {
                            if halted() {
                                return Err(LoadError::Interrupted);
                            }
                            let task = next.fetch_add(1, Ordering::Relaxed);
                            if task >= tasks {
                                return Ok(());
                            }
                            let mut rng = Pcg64::seed_from_u64(
                                cfg.seed ^ (task as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                            );
                            let t = Instant::now();
                            if task == 0 {
                                load_items(&mut conn, &mut rng, &total)?;
                                progress(format!("item: {ITEMS} rows in {:.1} s", t.elapsed().as_secs_f64()));
                            } else {
                                let w = task as u32;
                                load_warehouse(&mut conn, &mut rng, w, &c, &total, &halted)?;
                                progress(format!(
                                    "warehouse {w} of {} loaded in {:.1} s ({} rows so far)",
                                    cfg.warehouses,
                                    t.elapsed().as_secs_f64(),
                                    total.load(Ordering::Relaxed)
                                ));
                            }
                        }
                    })();
                    if r.is_err() {
                        abort.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        // Report the first real error, not the Interrupted of the threads it stopped.
        let mut errors: Vec<LoadError> =
            handles.into_iter().filter_map(|h| h.join().unwrap_or(Err(LoadError::Panicked)).err()).collect();
        errors.sort_by_key(|e| matches!(e, LoadError::Interrupted));
        errors.into_iter().next().map_or(Ok(()), Err)
    });
    result?;
    Ok(LoadSummary {
        warehouses: cfg.warehouses,
        rows: total.load(Ordering::Relaxed),
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

fn load_items(conn: &mut Conn, rng: &mut Pcg64, total: &AtomicU64) -> Result<(), LoadError> {
    let mut b = Batch::new("item", "i_id, i_im_id, i_name, i_price, i_data");
    for i in 1..=ITEMS {
        let (im, name, price, data) = (
            rng.random_range(1..=10_000u32),
            random::astring(rng, 14, 24),
            random::decimal(rng, 1.0, 100.0, 2),
            random::data_with_original(rng),
        );
        let _ = write!(b.next_row(), "({i},{im},'{name}',{price},'{data}')");
        b.flush_if_full(conn, 0, total)?;
    }
    b.flush(conn, 0, total)
}

fn address(rng: &mut Pcg64) -> String {
    format!(
        "'{}','{}','{}','{}','{}'",
        random::astring(rng, 10, 20),
        random::astring(rng, 10, 20),
        random::astring(rng, 10, 20),
        random::astring(rng, 2, 2).to_uppercase(),
        random::zip(rng)
    )
}

fn load_warehouse(
    conn: &mut Conn,
    rng: &mut Pcg64,
    w: u32,
    c: &NuRandC,
    total: &AtomicU64,
    halted: &dyn Fn() -> bool,
) -> Result<(), LoadError> {
    let mut b =
        Batch::new("warehouse", "w_id, w_name, w_street_1, w_street_2, w_city, w_state, w_zip, w_tax, w_ytd");
    let (name, addr, tax) = (random::astring(rng, 6, 10), address(rng), random::decimal(rng, 0.0, 0.2, 4));
    let _ = write!(b.next_row(), "({w},'{name}',{addr},{tax},300000.00)");
    b.flush(conn, w, total)?;

    let mut b = Batch::new(
        "stock",
        "s_i_id, s_w_id, s_quantity, s_dist_01, s_dist_02, s_dist_03, s_dist_04, s_dist_05, s_dist_06, \
         s_dist_07, s_dist_08, s_dist_09, s_dist_10, s_ytd, s_order_cnt, s_remote_cnt, s_data",
    );
    for i in 1..=ITEMS {
        let q = rng.random_range(10..=100u32);
        let row = b.next_row();
        let _ = write!(row, "({i},{w},{q}");
        for _ in 0..10 {
            let _ = write!(row, ",'{}'", random::astring(rng, 24, 24));
        }
        let _ = write!(row, ",0,0,0,'{}')", random::data_with_original(rng));
        b.flush_if_full(conn, w, total)?;
    }
    b.flush(conn, w, total)?;

    let mut b = Batch::new(
        "district",
        "d_id, d_w_id, d_name, d_street_1, d_street_2, d_city, d_state, d_zip, d_tax, d_ytd, d_next_o_id",
    );
    for d in 1..=DISTRICTS_PER_WAREHOUSE {
        let (name, addr, tax) =
            (random::astring(rng, 6, 10), address(rng), random::decimal(rng, 0.0, 0.2, 4));
        let _ = write!(
            b.next_row(),
            "({d},{w},'{name}',{addr},{tax},30000.00,{})",
            random::ORDERS_PER_DISTRICT + 1
        );
    }
    b.flush(conn, w, total)?;

    for d in 1..=DISTRICTS_PER_WAREHOUSE {
        if halted() {
            return Err(LoadError::Interrupted);
        }
        load_customers(conn, rng, w, d, c, total)?;
        load_orders(conn, rng, w, d, total)?;
    }
    Ok(())
}

fn load_customers(
    conn: &mut Conn,
    rng: &mut Pcg64,
    w: u32,
    d: u32,
    c: &NuRandC,
    total: &AtomicU64,
) -> Result<(), LoadError> {
    let mut cust = Batch::new(
        "customer",
        "c_id, c_d_id, c_w_id, c_first, c_middle, c_last, c_street_1, c_street_2, c_city, c_state, c_zip, \
         c_phone, c_since, c_credit, c_credit_lim, c_discount, c_balance, c_ytd_payment, c_payment_cnt, \
         c_delivery_cnt, c_data",
    );
    let mut hist =
        Batch::new("history", "h_c_id, h_c_d_id, h_c_w_id, h_d_id, h_w_id, h_date, h_amount, h_data");
    for id in 1..=CUSTOMERS_PER_DISTRICT {
        // The first 1,000 customers cover every last name once; the rest
        // draw theirs with the load's C (clause 4.3.3.1).
        let last = if id <= 1000 {
            random::last_name(id - 1)
        } else {
            random::last_name(random::last_name_number(rng, c.c_last))
        };
        let credit = if rng.random_range(0..10) == 0 { "BC" } else { "GC" };
        let (first, addr, phone, discount, data) = (
            random::astring(rng, 8, 16),
            address(rng),
            random::nstring(rng, 16, 16),
            random::decimal(rng, 0.0, 0.5, 4),
            random::astring(rng, 300, 500),
        );
        let _ = write!(
            cust.next_row(),
            "({id},{d},{w},'{first}','OE','{last}',{addr},'{phone}',NOW(),'{credit}',50000,{discount},\
             -10.00,10.00,1,0,'{data}')"
        );
        let _ =
            write!(hist.next_row(), "({id},{d},{w},{d},{w},NOW(),10.00,'{}')", random::astring(rng, 12, 24));
        cust.flush_if_full(conn, w, total)?;
        hist.flush_if_full(conn, w, total)?;
    }
    cust.flush(conn, w, total)?;
    hist.flush(conn, w, total)
}

fn load_orders(conn: &mut Conn, rng: &mut Pcg64, w: u32, d: u32, total: &AtomicU64) -> Result<(), LoadError> {
    let mut orders =
        Batch::new("orders", "o_id, o_d_id, o_w_id, o_c_id, o_entry_d, o_carrier_id, o_ol_cnt, o_all_local");
    let mut lines = Batch::new(
        "order_line",
        "ol_o_id, ol_d_id, ol_w_id, ol_number, ol_i_id, ol_supply_w_id, ol_delivery_d, ol_quantity, \
         ol_amount, ol_dist_info",
    );
    let mut new = Batch::new("new_orders", "no_o_id, no_d_id, no_w_id");
    let customers = random::permutation(rng, CUSTOMERS_PER_DISTRICT);
    for (o, c_id) in (1..=random::ORDERS_PER_DISTRICT).zip(customers) {
        let delivered = o < FIRST_NEW_ORDER;
        let ol_cnt = rng.random_range(5..=15u32);
        let carrier = if delivered { rng.random_range(1..=10u32).to_string() } else { "NULL".to_string() };
        let _ = write!(orders.next_row(), "({o},{d},{w},{c_id},NOW(),{carrier},{ol_cnt},1)");
        for n in 1..=ol_cnt {
            let item = rng.random_range(1..=ITEMS);
            let (delivery, amount) = if delivered {
                ("NOW()", "0.00".to_string())
            } else {
                ("NULL", random::decimal(rng, 0.01, 9999.99, 2))
            };
            let _ = write!(
                lines.next_row(),
                "({o},{d},{w},{n},{item},{w},{delivery},5,{amount},'{}')",
                random::astring(rng, 24, 24)
            );
        }
        if !delivered {
            let _ = write!(new.next_row(), "({o},{d},{w})");
        }
        orders.flush_if_full(conn, w, total)?;
        lines.flush_if_full(conn, w, total)?;
        new.flush_if_full(conn, w, total)?;
    }
    orders.flush(conn, w, total)?;
    lines.flush(conn, w, total)?;
    new.flush(conn, w, total)
}

/// The nine tables, for [`table_rows`].
pub const TABLE_NAMES: [&str; 9] =
    ["item", "warehouse", "stock", "district", "customer", "history", "orders", "new_orders", "order_line"];

/// Rows in each TPC-C table (to check a load against the cardinalities).
pub fn table_rows(opts: &Opts) -> Result<Vec<(&'static str, u64)>, mysql::Error> {
    let mut conn = Conn::new(with_db(opts))?;
    TABLE_NAMES
        .iter()
        .map(|t| Ok((*t, conn.query_first(format!("SELECT COUNT(*) FROM {t}"))?.unwrap_or(0))))
        .collect()
}
