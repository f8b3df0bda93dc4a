//! The push side of recording: an engine task owns one [`SnapshotFeed`] and
//! hands it every aggregation's snapshots; recorders subscribe to it.
//!
//! Architecture invariant: publishing never blocks and never slows the
//! engine. With no subscriber it costs one atomic load; with subscribers,
//! each gets the item through a bounded channel (`try_send`), and an item a
//! slow subscriber has no room for is dropped and counted on its side.

use crate::protocol::TaskStats;
use damon_core::{AddrRange, Snapshot};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Items a subscription buffers before it starts dropping: at the default
/// 100 ms aggregation that is more than a minute of snapshots.
pub const DEFAULT_CAPACITY: usize = 1024;

/// What a task publishes at the end of one aggregation interval.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedItem {
    /// When the engine published it.
    pub at: Instant,
    /// The snapshot of each process of the task, by pid.
    pub snapshots: BTreeMap<u32, Snapshot>,
    /// The eligible mappings of each process, when the engine knows them
    /// (the region engine does: it clips its plans to them).
    pub mappings: BTreeMap<u32, Vec<AddrRange>>,
    /// The task's figures right after this aggregation, when the engine
    /// sends them (recorders otherwise take them from `project show`).
    pub stats: Option<TaskStats>,
}

struct Subscriber {
    tx: SyncSender<FeedItem>,
    dropped: Arc<AtomicU64>,
}

/// One task's snapshot feed. Cheap to share (`Arc`); made with
/// [`SnapshotFeed::new`] (no `Default`, so a map of feeds says where each
/// one is created).
pub struct SnapshotFeed {
    subscribers: Mutex<Vec<Subscriber>>,
    nr_subscribers: AtomicUsize,
    published: AtomicU64,
}

impl std::fmt::Debug for SnapshotFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotFeed")
            .field("subscribers", &self.nr_subscribers.load(Ordering::Relaxed))
            .field("published", &self.published.load(Ordering::Relaxed))
            .finish()
    }
}

impl SnapshotFeed {
    pub fn new() -> Arc<SnapshotFeed> {
        Arc::new(SnapshotFeed {
            subscribers: Mutex::new(Vec::new()),
            nr_subscribers: AtomicUsize::new(0),
            published: AtomicU64::new(0),
        })
    }

    /// Whether anyone listens; engines skip building items when nobody does.
    pub fn is_watched(&self) -> bool {
        self.nr_subscribers.load(Ordering::Acquire) > 0
    }

    /// Items published while watched, since the feed was made.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Hand an item to every subscriber without waiting. `make` runs only
    /// when someone listens, so an unwatched feed costs one atomic load.
    pub fn publish(&self, make: impl FnOnce() -> FeedItem) {
        if !self.is_watched() {
            return;
        }
        let item = make();
        let Ok(mut subs) = self.subscribers.lock() else { return };
        self.published.fetch_add(1, Ordering::Relaxed);
        subs.retain(|s| match s.tx.try_send(item.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                s.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
        self.nr_subscribers.store(subs.len(), Ordering::Release);
    }

    /// Start receiving every item published from now on, `capacity` of
    /// them buffered.
    pub fn subscribe(&self, capacity: usize) -> Subscription {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.push(Subscriber { tx, dropped: Arc::clone(&dropped) });
        self.nr_subscribers.store(subs.len(), Ordering::Release);
        Subscription { rx, dropped }
    }
}

/// The receiving end; dropping it unsubscribes (at the next publish).
#[derive(Debug)]
pub struct Subscription {
    rx: Receiver<FeedItem>,
    dropped: Arc<AtomicU64>,
}

impl Subscription {
    /// Wait up to `wait` for the first item, then take whatever else is
    /// buffered, at most `max` items in all.
    pub fn take(&self, wait: Duration, max: usize) -> Vec<FeedItem> {
        let mut out = Vec::new();
        if max == 0 {
            return out;
        }
        match self.rx.recv_timeout(wait) {
            Ok(item) => out.push(item),
            Err(_) => return out,
        }
        while out.len() < max {
            match self.rx.try_recv() {
                Ok(item) => out.push(item),
                Err(_) => break,
            }
        }
        out
    }

    /// Items dropped so far because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u32) -> FeedItem {
        let mut snapshots = BTreeMap::new();
        snapshots.insert(n, Snapshot::default());
        FeedItem { at: Instant::now(), snapshots, mappings: BTreeMap::new(), stats: None }
    }

    #[test]
    fn unwatched_feed_builds_nothing() {
        let feed = SnapshotFeed::new();
        let mut built = false;
        feed.publish(|| {
            built = true;
            item(1)
        });
        assert!(!built);
        assert_eq!(feed.published(), 0);
    }

    #[test]
    fn slow_subscriber_loses_items_and_counts_them() {
        let feed = SnapshotFeed::new();
        let sub = feed.subscribe(2);
        for n in 0..5 {
            feed.publish(|| item(n));
        }
        let got = sub.take(Duration::from_millis(10), 100);
        assert_eq!(got.len(), 2);
        assert_eq!(sub.dropped(), 3);
        assert_eq!(got[0].snapshots.keys().copied().collect::<Vec<_>>(), vec![0]);
    }

    #[test]
    fn dropped_subscription_unsubscribes() {
        let feed = SnapshotFeed::new();
        let sub = feed.subscribe(4);
        assert!(feed.is_watched());
        drop(sub);
        feed.publish(|| item(1));
        assert!(!feed.is_watched());
    }

    #[test]
    fn take_is_bounded() {
        let feed = SnapshotFeed::new();
        let sub = feed.subscribe(10);
        for n in 0..6 {
            feed.publish(|| item(n));
        }
        assert_eq!(sub.take(Duration::ZERO, 4).len(), 4);
        assert_eq!(sub.take(Duration::ZERO, 4).len(), 2);
        assert!(sub.take(Duration::from_millis(1), 4).is_empty());
    }
}
