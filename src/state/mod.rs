//! What the controller must not forget across a restart or a failover, and how it is restored.
//!
//! Saved after every tick that acted, *before* the tick's cloud events are acknowledged: a
//! spot notice is deleted from the queue only once its drain is on disk (or in the ConfigMap)
//! and its replacement was requested, so a crash at any point either redelivers the notice
//! or restores its drain (at-least-once; a duplicate is harmless, drains are keyed by
//! instance). Saved: the planner's [`History`] (backoffs, learned spot risk, unneeded and
//! unbacked timers, the disruption budget's records, cool-downs) and the drains in progress.
//!
//! Where: VM-only, a JSON file written atomically ([`file::FileStore`]: temporary file, fsync,
//! rename, fsync of the directory), at `state.path` — by default `$STATE_DIRECTORY/state.json`
//! when systemd provides one (`StateDirectory=gpupool`). Kubernetes: the ConfigMap
//! [`CONFIGMAP_NAME`] in gpupool's namespace, written by the leader only
//! ([`configmap::ConfigMapStore`]; RBAC: get/update by name, create), restored on start and
//! again by a replica that becomes leader. A ConfigMap that cannot be read (API unreachable)
//! holds the tick instead of starting fresh ([`StateError::Unavailable`]).
//!
//! **Restoring respects age** ([`restore`], pure): the history decays by the time the state
//! spent on disk as if the controller had ticked through it (risk halves per hour, expired
//! backoffs and disruptions outside the budget window go); timers that only mean something
//! while observed continuously (unneeded since, unbacked since) are dropped when the state is
//! older than [`TIMERS_MAX_GAP_S`], so a long outage never counts as "unneeded the whole
//! time"; entries with timestamps outside the sane range or from the future are dropped.
//! Drains are always restored (an instance deregistered by the dead process must not be left
//! out of service forever); one whose instance is gone is closed on the next tick.
//!
//! **Failure modes**: a corrupt or unreadable state is a WARN and a fresh start, never a
//! crash; a state written by a newer format version is refused ([`StateError::UnknownVersion`])
//! so an older gpupool never overwrites what it cannot read.

#[cfg(feature = "kube")]
pub mod configmap;
pub mod file;

use crate::model::{History, InstanceId, NodeGroupId, PoolName, Reason, Timestamp};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Format version written now.
pub const STATE_VERSION: u32 = 1;
/// Kubernetes: the ConfigMap (in gpupool's namespace) holding the state, key [`CONFIGMAP_KEY`].
pub const CONFIGMAP_NAME: &str = "gpupool-state";
pub const CONFIGMAP_KEY: &str = "state.json";
/// State file name under `$STATE_DIRECTORY`.
pub const FILE_NAME: &str = "state.json";
/// Continuous-observation timers survive a gap this long (a restart or a failover: a Lease
/// takes over within its 15 s duration plus a tick or two); older, they start over.
pub const TIMERS_MAX_GAP_S: f64 = 120.0;
/// Largest state accepted (a ConfigMap holds at most 1 MiB; a file this large is not ours).
pub const MAX_STATE_BYTES: usize = 1 << 20;

/// One drain in progress, as saved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedDrain {
    pub instance: InstanceId,
    pub pool: PoolName,
    pub group: NodeGroupId,
    pub deadline: Timestamp,
    pub start_at: Timestamp,
    pub reason: Reason,
    /// Counted as a `down` action when it started.
    #[serde(default)]
    pub counted: bool,
}

/// Everything saved.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedState {
    pub version: u32,
    pub saved_at: Timestamp,
    #[serde(default)]
    pub history: History,
    #[serde(default)]
    pub drains: Vec<SavedDrain>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("reading {what}")]
    Read {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {what}")]
    Write {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store could not be asked (Kubernetes API unreachable, throttled, forbidden): the
    /// state may well exist, so neither a fresh start nor a refusal — the tick holds and the
    /// restore is tried again next tick (starting fresh would overwrite it at the next save).
    #[error("cannot read {what} now")]
    Unavailable {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{what} is not valid gpupool state")]
    Corrupt {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} is {size} bytes, more than the {max} a state may have")]
    TooLarge {
        what: String,
        size: usize,
        max: usize,
    },
    #[error(
        "{what} has state format version {found}; this gpupool reads version {supported} only (written by a newer gpupool? move it aside to start fresh)"
    )]
    UnknownVersion {
        what: String,
        found: u64,
        supported: u32,
    },
}

impl StateError {
    /// Whether starting fresh is the right answer (the state is lost, not incompatible, and
    /// not merely out of reach for now).
    pub fn start_fresh(&self) -> bool {
        !matches!(
            self,
            StateError::UnknownVersion { .. } | StateError::Unavailable { .. }
        )
    }

    /// Whether asking again later may succeed ([`StateError::Unavailable`]).
    pub fn retry_later(&self) -> bool {
        matches!(self, StateError::Unavailable { .. })
    }
}

/// Where the state lives.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// `Ok(None)`: nothing saved yet.
    async fn load(&self) -> Result<Option<SavedState>, StateError>;
    async fn save(&self, state: &SavedState) -> Result<(), StateError>;
    /// For log lines: the path or the ConfigMap's name.
    fn describe(&self) -> String;
}

/// Serialise (compact JSON).
pub fn encode(state: &SavedState) -> Vec<u8> {
    // A struct of maps, strings and numbers: serialisation cannot fail.
    serde_json::to_vec(state).unwrap_or_default()
}

/// Parse `bytes` read from `what`: the version is checked before the rest, so a newer format
/// is reported as such, not as corruption.
pub fn decode(bytes: &[u8], what: &str) -> Result<SavedState, StateError> {
    if bytes.len() > MAX_STATE_BYTES {
        return Err(StateError::TooLarge {
            what: what.into(),
            size: bytes.len(),
            max: MAX_STATE_BYTES,
        });
    }
    #[derive(Deserialize)]
    struct Version {
        version: u64,
    }
    let corrupt = |source| StateError::Corrupt {
        what: what.into(),
        source,
    };
    let v: Version = serde_json::from_slice(bytes).map_err(corrupt)?;
    if v.version != u64::from(STATE_VERSION) {
        return Err(StateError::UnknownVersion {
            what: what.into(),
            found: v.version,
            supported: STATE_VERSION,
        });
    }
    serde_json::from_slice(bytes).map_err(corrupt)
}

/// The deadline of a drain known both from the saved state and from its mark on the node or
/// instance (node annotation, EC2 tag, GCP label): the earlier one. A drain's deadline only
/// ever moves earlier (a spot notice brings it forward, nothing pushes it back), so of two
/// records of the same drain the earlier deadline is the newer one — the state file may predate
/// the notice, or the mark may have failed to update. Taking it is also the safe side: the
/// deadline bounds how long a leaving instance is kept, and a VM is never terminated while
/// still registered whatever the deadline says.
pub fn resumed_deadline(saved: Timestamp, marked: Timestamp) -> Timestamp {
    saved.min(marked)
}

/// What [`restore`] returns: the history and drains to resume, and what was dropped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Restored {
    pub history: History,
    pub drains: Vec<SavedDrain>,
    /// Entries dropped for their age or an insane timestamp.
    pub dropped: usize,
}

/// Restore `saved` at `now`: see the module doc for the rules. `budget_window_s` is the
/// longest disruption-budget window of the configured pools.
pub fn restore(saved: SavedState, now: Timestamp, budget_window_s: f64) -> Restored {
    let sane = |t: &Timestamp| t.is_external_range() && *t <= now;
    let gap = now.secs_since(saved.saved_at);
    let mut h = saved.history;
    fn keep<K: Ord>(
        m: &mut BTreeMap<K, Timestamp>,
        keep: bool,
        sane: impl Fn(&Timestamp) -> bool,
    ) -> usize {
        let before = m.len();
        m.retain(|_, t| keep && sane(t));
        before - m.len()
    }
    // Written after now (the clock stepped back) or never sane: nothing time-based is trusted.
    let trusted = sane(&saved.saved_at);
    let timers_fresh = trusted && gap <= TIMERS_MAX_GAP_S;
    let mut dropped = keep(&mut h.unneeded_since, timers_fresh, sane)
        + keep(&mut h.unbacked_since, timers_fresh, sane)
        + keep(&mut h.at_risk, trusted, sane)
        + keep(&mut h.drain_abandoned, trusted, sane)
        + keep(&mut h.last_scale_up, trusted, sane)
        + keep(&mut h.warm_needed_at, trusted, sane);
    let before = h.disruptions.len() + h.backoff.len() + h.risk_boost.len();
    h.disruptions.retain(|d| trusted && sane(&d.at));
    h.backoff.retain(|_, b| {
        trusted && b.until.is_external_range() && b.last_failure_at.is_none_or(|t| sane(&t))
    });
    h.risk_boost
        .retain(|_, r| trusted && r.is_finite() && *r >= 0.0);
    // As if the controller had ticked through the gap.
    h.decay(now, gap.max(0.0), budget_window_s);
    dropped += before - (h.disruptions.len() + h.backoff.len() + h.risk_boost.len());

    let before = saved.drains.len();
    let drains: Vec<SavedDrain> = saved
        .drains
        .into_iter()
        .filter(|d| d.deadline.is_external_range() && d.start_at.is_external_range())
        .collect();
    dropped += before - drains.len();
    Restored {
        history: h,
        drains,
        dropped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Backoff, CapacityType, DisruptionRecord, InstanceTypeName, OfferingKey, Zone,
    };

    fn t(s: i64) -> Timestamp {
        Timestamp::from_secs(1_700_000_000 + s)
    }

    fn key() -> OfferingKey {
        OfferingKey {
            instance_type: InstanceTypeName::from("g5.xlarge"),
            capacity_type: CapacityType::Spot,
            zone: Zone::from("us-east-1a"),
        }
    }

    fn drain(id: &str, deadline: Timestamp) -> SavedDrain {
        SavedDrain {
            instance: id.into(),
            pool: "p".into(),
            group: "g".into(),
            deadline,
            start_at: deadline.plus_secs(-60.0),
            reason: Reason::SpotInterruption { deadline },
            counted: false,
        }
    }

    fn saved(at: Timestamp) -> SavedState {
        let mut h = History::default();
        h.unneeded_since.insert("i-1".into(), t(0));
        h.unbacked_since.insert("g".into(), t(0));
        h.last_scale_up.insert("p".into(), t(0));
        h.backoff.insert(
            key(),
            Backoff {
                until: t(60),
                failures: 1,
                last_error: "InsufficientInstanceCapacity".into(),
                last_failure_at: Some(t(0)),
            },
        );
        h.risk_boost.insert(key(), 0.1);
        h.disruptions.push(DisruptionRecord {
            at: t(0),
            pool: "p".into(),
            instance: "i-9".into(),
        });
        SavedState {
            version: STATE_VERSION,
            saved_at: at,
            history: h,
            drains: vec![drain("i-2", t(120))],
        }
    }

    #[test]
    fn encode_then_decode_is_the_identity() {
        let s = saved(t(10));
        assert_eq!(decode(&encode(&s), "x").unwrap(), s);
    }

    #[test]
    fn bad_bytes_are_typed_errors_and_only_a_new_version_refuses_to_start() {
        let table: Vec<(Vec<u8>, &str, bool)> = vec![
            (b"".to_vec(), "not valid", true),
            (b"{not json".to_vec(), "not valid", true),
            (b"\x00\xff\xfe".to_vec(), "not valid", true),
            (
                b"{\"version\": 1, \"saved_at\": \"yesterday\"}".to_vec(),
                "not valid",
                true,
            ),
            (b"{\"saved_at\": 1}".to_vec(), "not valid", true),
            (
                b"{\"version\": -1, \"saved_at\": 1}".to_vec(),
                "not valid",
                true,
            ),
            (
                b"{\"version\": 2, \"saved_at\": 1}".to_vec(),
                "version 2",
                false,
            ),
            (
                b"{\"version\": 99999999999, \"whatever\": []}".to_vec(),
                "version 99999999999",
                false,
            ),
            (vec![b' '; MAX_STATE_BYTES + 1], "more than", true),
        ];
        for (bytes, says, fresh) in table {
            let e = decode(&bytes, "the state file").unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
            assert_eq!(e.start_fresh(), fresh, "{e}");
        }
    }

    #[test]
    fn restore_respects_the_age_of_each_entry() {
        // (saved at, restored at) → (unneeded/unbacked kept, backoff kept, risk, disruptions)
        let table = [
            // A quick restart: everything kept, risk barely decayed.
            (
                t(10),
                t(40),
                true,
                true,
                0.1 * 0.5f64.powf(30.0 / 3600.0),
                1,
            ),
            // Down 10 min: continuous timers start over; backoff kept (within its reset).
            (
                t(10),
                t(610),
                false,
                true,
                0.1 * 0.5f64.powf(600.0 / 3600.0),
                1,
            ),
            // Down 5 h: the disruption left the 1 h window, the backoff is forgotten, risk fades.
            (t(10), t(18_010), false, false, 0.1 * 0.5f64.powf(5.0), 0),
        ];
        for (at, now, timers, backoff, risk, disruptions) in table {
            let r = restore(saved(at), now, 3600.0);
            let h = &r.history;
            assert_eq!(
                h.unneeded_since.contains_key(&InstanceId::from("i-1")),
                timers
            );
            assert_eq!(
                h.unbacked_since.contains_key(&NodeGroupId::from("g")),
                timers
            );
            assert_eq!(h.backoff.contains_key(&key()), backoff, "now {now}");
            let got = h.risk_boost.get(&key()).copied().unwrap_or(0.0);
            assert!((got - risk).abs() < 1e-9, "risk {got} vs {risk}");
            assert_eq!(h.disruptions.len(), disruptions);
            assert_eq!(h.last_scale_up.len(), 1);
            assert_eq!(r.drains.len(), 1, "drains are always resumed");
        }
    }

    #[test]
    fn restore_drops_insane_and_future_timestamps() {
        let mut s = saved(t(10));
        s.history
            .unneeded_since
            .insert("i-future".into(), t(10_000));
        s.history
            .last_scale_up
            .insert("q".into(), Timestamp::from_millis(i64::MIN / 2));
        s.history.risk_boost.insert(
            OfferingKey {
                zone: Zone::from("us-east-1b"),
                ..key()
            },
            f64::NAN,
        );
        s.drains
            .push(drain("i-bad", Timestamp::from_millis(i64::MAX / 2)));
        let r = restore(s, t(20), 3600.0);
        assert!(
            !r.history
                .unneeded_since
                .contains_key(&InstanceId::from("i-future"))
        );
        assert!(
            r.history
                .unneeded_since
                .contains_key(&InstanceId::from("i-1"))
        );
        assert!(!r.history.last_scale_up.contains_key(&PoolName::from("q")));
        assert_eq!(r.history.risk_boost.len(), 1);
        assert_eq!(r.drains.len(), 1);
        assert_eq!(r.dropped, 4);

        // Saved "after" now (the clock stepped back): time-based entries are not trusted, the
        // drains still are.
        let r = restore(saved(t(1000)), t(20), 3600.0);
        assert!(r.history.unneeded_since.is_empty());
        assert!(r.history.backoff.is_empty());
        assert!(r.history.last_scale_up.is_empty());
        assert_eq!(r.drains.len(), 1);
    }
}
