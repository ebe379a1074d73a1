//! The doorbell: how the feed thread wakes a shard that ran out of ticks, without ever
//! waiting itself.
//!
//! A shard that finds its consumer empty calls [`Doorbell::park`]: it raises its `sleeping`
//! flag, re-checks the ring, and only then awaits a notification. The feed thread, after each
//! batch of publishes, calls [`Doorbell::ring`], which notifies only if the flag was up, so a
//! busy shard costs the feed thread one load per batch and an idle one a single wake-up per
//! batch. Both sides put a `SeqCst` fence between their store and their load (the flag vs.
//! the ring head), so at least one of them sees the other's store: no lost wake-ups.
//!
//! `tokio::sync::Notify` keeps a permit if the notification arrives before the shard awaits,
//! and its internal lock is only touched when a waiter exists, i.e. when the shard is parked.

use std::sync::atomic::{AtomicBool, Ordering, fence};

use tokio::sync::Notify;

use super::Consumer;

/// Wakes one parked shard. Shared by the feed thread (ringing) and the shard (parking).
#[derive(Default)]
pub struct Doorbell {
    sleeping: AtomicBool,
    notify: Notify,
}

impl Doorbell {
    /// A doorbell with nobody asleep.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed side: wake the shard if it is parked. Call after publishing a batch.
    #[inline]
    pub fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    /// Shard side: wait until the ring has ticks past `consumer`'s position (returns at once
    /// if it already has). Cancel-safe: dropping the future loses nothing.
    pub async fn park<T: super::Packed<N>, const N: usize>(&self, consumer: &Consumer<T, N>) {
        self.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if consumer.has_pending() {
            self.sleeping.store(false, Ordering::Relaxed);
            return;
        }
        self.notify.notified().await;
    }

    /// Wakes the shard unconditionally (for shutdown and other non-feed events).
    pub fn wake(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
        self.notify.notify_one();
    }
}
