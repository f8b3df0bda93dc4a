//! Policies: classify snapshots, evaluate schemes, quotas and watermarks.
