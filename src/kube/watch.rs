//! Reflectors: a background task per resource keeps an in-memory store in step with the API
//! server through kube-runtime's `watcher` (list, then watch from the list's resourceVersion;
//! on `410 Gone` it relists; on any error or dropped connection it retries with the default
//! exponential backoff, 0.8 s doubling to 30 s with jitter, reset after a healthy stretch).
//!
//! Objects are pruned before they enter the store (see `convert::prune_*`), so the cache holds
//! only what the planner reads.

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch_stream};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// What a reflector task reports about its watch, read by `observe` and by tests.
#[derive(Debug, Default)]
pub struct WatchHealth {
    /// The first full list has been applied to the store.
    synced: AtomicBool,
    /// Completed lists (the first one, and one per relist after `410 Gone` or a restart).
    lists: AtomicU64,
    /// Errors seen (each one followed by a backoff and a retry).
    errors: AtomicU64,
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

/// Start reflecting `api` filtered by `config`, pruning every object with `prune`. Must be
/// called inside a tokio runtime.
pub fn spawn<K, F>(
    api: Api<K>,
    config: watcher::Config,
    name: &'static str,
    prune: F,
) -> Reflected<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Hash + Eq + Clone + Default,
    F: FnMut(&mut K) + Send + 'static,
{
    let (store, writer) = reflector::store();
    let health = Arc::new(WatchHealth::default());
    let h = health.clone();
    let stream = watch_stream(api, config)
        .default_backoff()
        .modify(prune)
        .reflect(writer);
    let task = tokio::spawn(async move {
        stream
            .for_each(|ev| {
                match ev {
                    Ok(Event::InitDone) => {
                        h.lists.fetch_add(1, Ordering::Relaxed);
                        if !h.synced.swap(true, Ordering::AcqRel) {
                            tracing::info!(resource = name, "watch synced");
                        } else {
                            tracing::info!(resource = name, "relisted");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        h.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(resource = name, error = %e, "watch error; retrying with backoff");
                        *h.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    }
                }
                futures::future::ready(())
            })
            .await;
    });
    Reflected {
        store,
        health,
        task,
    }
}
