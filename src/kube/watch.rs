//! Reflectors: a background task per resource keeps an in-memory store in step with the API
//! server through kube-runtime's `watcher` (list, then watch from the list's resourceVersion;
//! a watch that simply ends is resumed from its last resourceVersion without a list).
//!
//! **After any watch error the cache is not trusted until it has listed again.** The error
//! may have hidden events (a 410 after compaction, an outage during which pods were bound and
//! nodes added), so the task starts a fresh watcher, which lists first, after a backoff (0.8 s
//! doubling to 30 s, kube-runtime's default bounds; reset by a completed list). client-go's
//! reflector does the same: `ListAndWatch` returns on a watch error and `Run` calls it again
//! under a backoff, listing first (`tools/cache/reflector.go`). Meanwhile the store keeps the
//! last complete view (the writer swaps in a new list only at `InitDone`) and
//! [`WatchHealth::current`] is false: the planner may add capacity on that view but holds
//! every scale-down (`Reason::CacheNotCurrent`).
//!
//! Objects are pruned before they enter the store (see `convert::prune_*`), so the cache holds
//! only what the planner reads.

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher as watch_stream;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// What a reflector task reports about its watch, read by `observe` and by tests.
#[derive(Debug, Default)]
pub struct WatchHealth {
    /// The first full list has been applied to the store.
    synced: AtomicBool,
    /// Completed lists (the first one, and one per relist after `410 Gone` or a restart).
    lists: AtomicU64,
    /// Errors seen (each one followed by a backoff and a relist).
    errors: AtomicU64,
    /// Listed, and no error since the last list.
    current: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl WatchHealth {
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }
    pub fn lists(&self) -> u64 {
        self.lists.load(Ordering::Relaxed)
    }
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
    /// Synced, and no watch error since the last completed list.
    pub fn current(&self) -> bool {
        self.current.load(Ordering::Acquire)
    }
    pub fn last_error(&self) -> Option<String> {
        // A poisoned lock only means a panicking writer; the string is still usable.
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A store kept current by a background task; the task ends when this is dropped.
pub struct Reflected<K>
where
    K: Resource + 'static,
    K::DynamicType: Hash + Eq,
{
    pub store: Store<K>,
    pub health: Arc<WatchHealth>,
    task: JoinHandle<()>,
}

impl<K> Drop for Reflected<K>
where
    K: Resource + 'static,
    K::DynamicType: Hash + Eq,
{
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relist backoff after a watch error: kube-runtime's `DefaultBackoff` bounds (0.8 s doubling
/// to 30 s), without its jitter: two replicas relisting at once are two lists, not a storm.
const RELIST_BACKOFF_MIN: Duration = Duration::from_millis(800);
const RELIST_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Start reflecting `api` filtered by `config`, pruning every object with `prune` and passing
/// every added or changed object to `on_apply` (after pruning). Must be called inside a tokio
/// runtime.
pub fn spawn<K, F, A>(
    api: Api<K>,
    config: watcher::Config,
    name: &'static str,
    mut prune: F,
    mut on_apply: A,
) -> Reflected<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Hash + Eq + Clone + Default,
    F: FnMut(&mut K) + Send + 'static,
    A: FnMut(&K) + Send + 'static,
{
    let (store, mut writer) = reflector::store();
    let health = Arc::new(WatchHealth::default());
    let h = health.clone();
    let task = tokio::spawn(async move {
        let mut backoff = RELIST_BACKOFF_MIN;
        loop {
            let mut stream = std::pin::pin!(watch_stream(api.clone(), config.clone()));
            while let Some(ev) = stream.next().await {
                let mut ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        h.current.store(false, Ordering::Release);
                        h.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(resource = name, error = %e, retry_s = backoff.as_secs_f64(), "watch error; the cache is not current until it lists again");
                        *h.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(e.to_string());
                        break;
                    }
                };
                if let Event::Apply(o) | Event::InitApply(o) | Event::Delete(o) = &mut ev {
                    prune(o);
                }
                writer.apply_watcher_event(&ev);
                match &ev {
                    Event::Apply(o) => on_apply(o),
                    Event::InitDone => {
                        h.lists.fetch_add(1, Ordering::Relaxed);
                        h.current.store(true, Ordering::Release);
                        backoff = RELIST_BACKOFF_MIN;
                        if !h.synced.swap(true, Ordering::AcqRel) {
                            tracing::info!(resource = name, "watch synced");
                        } else {
                            tracing::info!(resource = name, "relisted; the cache is current");
                        }
                    }
                    _ => {}
                }
            }
            // An error (or a stream that ended for good): relist after the backoff.
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RELIST_BACKOFF_MAX);
        }
    });
    Reflected {
        store,
        health,
        task,
    }
}
