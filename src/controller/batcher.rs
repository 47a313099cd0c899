//! Plan at once when new pending pods appear, batched as Karpenter batches them
//! (`pkg/controllers/provisioning/batcher.go`: the first trigger opens a window; each new
//! trigger within `BatchIdleDuration` (1 s) extends it, up to `BatchMaxDuration` (10 s) from
//! its start; a trigger for an element already in the window is ignored). A burst of pods
//! created together is planned together — one right-sized scale-up instead of one per pod —
//! and a lone pod waits about a second instead of the next tick.
//!
//! The cluster side calls [`Batcher::trigger`] with a key per pod (its uid), only for pods it
//! has not triggered for before (a pod that stays pending is covered by the periodic tick),
//! and the run loop awaits [`Batcher::wait`] next to its tick interval.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;

/// Karpenter's defaults (`--batch-idle-duration`, `--batch-max-duration`).
pub const BATCH_IDLE: Duration = Duration::from_secs(1);
pub const BATCH_MAX: Duration = Duration::from_secs(10);
/// Keys remembered as already triggered (oldest forgotten first): a bound, far above the
/// pending pods of any real cluster.
pub const MAX_REMEMBERED: usize = 10_000;

#[derive(Default)]
struct Seen {
    keys: HashSet<String>,
    order: VecDeque<String>,
}

pub struct Batcher {
    idle: Duration,
    max: Duration,
    notify: Notify,
    seen: Mutex<Seen>,
}

impl Default for Batcher {
    fn default() -> Self {
        Batcher::new(BATCH_IDLE, BATCH_MAX)
    }
}

impl Batcher {
    pub fn new(idle: Duration, max: Duration) -> Self {
        Batcher {
            idle,
            max,
            notify: Notify::new(),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// A new element (a pending pod's uid) wants a plan. Returns false, and does nothing, for
    /// a key triggered before.
    pub fn trigger(&self, key: &str) -> bool {
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if !seen.keys.insert(key.to_owned()) {
                return false;
            }
            seen.order.push_back(key.to_owned());
            if seen.order.len() > MAX_REMEMBERED
                && let Some(old) = seen.order.pop_front()
            {
                seen.keys.remove(&old);
            }
        }
        // Stores a permit when nobody waits, so a trigger between two waits is not lost.
        self.notify.notify_one();
        true
    }

    /// Wait for a trigger, then until no new trigger came for `idle`, or `max` after the
    /// first, whichever is sooner ([`Window`]). Cancel-safe: dropped midway, the next call
    /// starts over (the tick that ran instead covered the pods).
    pub async fn wait(&self) {
        self.notify.notified().await;
        // Elapsed time only sizes the sleeps; the window's rule is `Window::closes_at`.
        let start = gpupool_provider::clock::monotonic();
        let mut window = Window::open(Duration::ZERO);
        loop {
            let now = start.elapsed();
            let close = window.closes_at(self.idle, self.max);
            if now >= close {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(close - now) => return,
                _ = self.notify.notified() => window.extend(start.elapsed()),
            }
        }
    }
}

/// A batching window, in time since some start: opened by a first trigger, extended by each
/// later one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub opened: Duration,
    pub last: Duration,
}

impl Window {
    pub fn open(at: Duration) -> Self {
        Window {
            opened: at,
            last: at,
        }
    }

    pub fn extend(&mut self, at: Duration) {
        self.last = self.last.max(at);
    }

    /// When the window closes: `idle` after its last trigger, and never later than `max`
    /// after its first (Karpenter's idle timer reset on each trigger, under the max timer).
    pub fn closes_at(&self, idle: Duration, max: Duration) -> Duration {
        (self.last + idle).min(self.opened + max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_closes_when_idle_or_at_its_maximum() {
        let ms = Duration::from_millis;
        let steady: Vec<u64> = (1..=40).map(|i| i * 500).collect();
        let cases: Vec<(&str, Vec<u64>, u64)> = vec![
            ("a lone pod: one idle period", vec![], 1_000),
            (
                "pods 0.5 s apart extend the window",
                vec![500, 1_000],
                2_000,
            ),
            ("a steady stream is cut at the maximum", steady, 10_000),
        ];
        for (name, triggers, want_ms) in cases {
            let mut w = Window::open(Duration::ZERO);
            for t in triggers {
                // A trigger after the window closed belongs to the next window.
                if ms(t) < w.closes_at(BATCH_IDLE, BATCH_MAX) {
                    w.extend(ms(t));
                }
            }
            assert_eq!(w.closes_at(BATCH_IDLE, BATCH_MAX), ms(want_ms), "{name}");
        }
        // A gap longer than idle: the window closed before the second trigger.
        let w = Window::open(Duration::ZERO);
        assert!(w.closes_at(BATCH_IDLE, BATCH_MAX) < ms(1_500));
    }

    #[test]
    fn a_key_triggers_once() {
        let b = Batcher::default();
        assert!(b.trigger("uid-1"));
        assert!(!b.trigger("uid-1"));
        assert!(b.trigger("uid-2"));
    }
}
