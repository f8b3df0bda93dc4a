//! Workload generator and benchmark helpers.
