//! TPC-C on MariaDB under etmemd: a driver (schema, loader, the five
//! transactions, terminals, tpmC/tpmTotal and latency percentiles) and the
//! harness that runs the scenarios of issue 8 and writes
//! `perf/results/tpcc.md`. The `tpcc` binary is the command line.
//!
//! Pure parts: [`random`], [`histogram`], the input side of [`txn`], the
//! medians and the report. I/O: [`mariadb`], [`load`], [`driver`],
//! [`sample`], [`harness`], [`os`].

pub mod driver;
pub mod harness;
pub mod histogram;
pub mod load;
pub mod mariadb;
pub mod os;
pub mod random;
pub mod report;
pub mod sample;
pub mod schema;
pub mod thp_ab;
pub mod thp_allow;
pub mod txn;
