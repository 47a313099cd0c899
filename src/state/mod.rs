//! What the controller must not forget across a restart or a failover, and how it is restored.
//!
//! Saved after every tick that acted, *before* the tick's cloud events are acknowledged: a
//! spot notice is deleted from the queue only once its drain is on disk (or in the ConfigMap)
//! and its replacement was requested, so a crash at any point either redelivers the notice
//! or restores its drain (at-least-once; a duplicate is harmless, drains are keyed by
//! instance). Saved: the planner's [`History`] (backoffs, learned spot risk, unneeded and
//! unbacked timers, the disruption budget's records, cool-downs, and each SLO pool's learner:
//! its decaying demand-growth histograms, `planner::headroom`), the drains in progress, and
//! each pool's demand-forecast history ([`SavedForecast`]: the per-minute peaks the
//! forecaster's models are rebuilt from).
//!
//! **Bounded** ([`fit`]): a ConfigMap holds at most 1 MiB, so before saving the forecast
//! histories are downsampled (peaks kept: a saved point is the maximum of the steps it stands
//! for) to [`MAX_FORECAST_POINTS`] across all pools and every learner histogram to
//! [`MAX_HISTOGRAM_BUCKETS`] buckets (merged *upwards*: weight moves to the largest growth of
//! its group, so a quantile read from it can only grow — more headroom, never less); if the
//! encoding is still over [`MAX_SAVED_BYTES`], forecasts are downsampled further and finally
//! dropped (a forecaster relearns in minutes; drains and backoffs are never dropped).
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

use crate::model::{
    DecayingHistogram, History, InstanceId, NodeGroupId, PoolName, Reason, SloLearner, Timestamp,
};
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
/// Largest state written: the ConfigMap's 1 MiB covers its metadata too (name, labels,
/// managedFields), so 64 KiB are left for them.
pub const MAX_SAVED_BYTES: usize = MAX_STATE_BYTES - (64 << 10);
/// Forecast points saved across all pools (about 10 bytes each): three days of minute steps
/// for two pools at full resolution; more pools share it, each downsampled to its share.
pub const MAX_FORECAST_POINTS: usize = 8_640;
/// Buckets saved per learner histogram (of up to 1,025).
pub const MAX_HISTOGRAM_BUCKETS: usize = 64;

/// A forecaster's history as it runs: step width (seconds) and `(step index since the
/// epoch, peak replicas)`, oldest first (`signals::forecast::Forecaster::steps`).
pub type ForecastSteps = (u64, Vec<(i64, u32)>);

/// A pool's forecast history as saved: compact (offsets from `first`), possibly downsampled.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedForecast {
    /// Width of one forecaster step, seconds.
    pub step_s: u64,
    /// Index (since the epoch) of the first step.
    pub first: i64,
    /// Steps from `first` to the newest, inclusive.
    pub len: u32,
    /// Steps one saved point stands for: 1 as observed; `k` when downsampled (the point is
    /// the maximum of `k` consecutive steps and is replayed as `k` steps of that peak).
    pub span: u32,
    /// `(steps after first, peak replicas)`, oldest first.
    pub points: Vec<(u32, u32)>,
}

impl SavedForecast {
    /// From a running forecaster's steps (`None` when there are none, or they are not in
    /// order).
    pub fn from_steps((step_s, steps): &ForecastSteps) -> Option<SavedForecast> {
        let first = steps.first()?.0;
        let last = steps.last()?.0;
        let len = u32::try_from(last.checked_sub(first)?.checked_add(1)?).ok()?;
        let mut points = Vec::with_capacity(steps.len());
        for &(idx, v) in steps {
            let off = u32::try_from(idx.checked_sub(first)?).ok()?;
            if points.last().is_some_and(|&(o, _)| o >= off) {
                return None;
            }
            points.push((off, v));
        }
        Some(SavedForecast {
            step_s: *step_s,
            first,
            len,
            span: 1,
            points,
        })
    }

    /// At most `max_points` points: groups of `k` consecutive steps (aligned to `first`)
    /// become one point holding their maximum.
    pub fn downsampled(&self, max_points: usize) -> SavedForecast {
        if self.points.len() <= max_points.max(1) {
            return self.clone();
        }
        let span = u64::from(self.span.max(1));
        let groups_needed = max_points.max(1) as u64;
        let k = (u64::from(self.len).div_ceil(span)).div_ceil(groups_needed) * span;
        let k = u32::try_from(k).unwrap_or(u32::MAX).max(1);
        let mut points: Vec<(u32, u32)> = Vec::new();
        for &(off, v) in &self.points {
            let g = off / k * k;
            match points.last_mut() {
                Some((o, p)) if *o == g => *p = (*p).max(v),
                _ => points.push((g, v)),
            }
        }
        SavedForecast {
            span: k,
            points,
            ..self.clone()
        }
    }

    /// Back to forecaster steps: a downsampled point is replayed as each step of its group
    /// (within the saved range), holding the group's peak.
    pub fn steps(&self) -> ForecastSteps {
        let span = self.span.max(1);
        let mut out = Vec::new();
        for &(off, v) in &self.points {
            let end = off.saturating_add(span).min(self.len);
            for o in off..end.max(off + 1) {
                out.push((self.first.saturating_add(i64::from(o)), v));
            }
        }
        (self.step_s, out)
    }
}

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
    /// Each forecasting pool's demand history. Added within format version 1 (an older state
    /// has none: the forecasters start empty; an older gpupool ignores the field).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub forecasts: BTreeMap<PoolName, SavedForecast>,
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

/// Merge a histogram to at most `max` buckets: consecutive buckets (by value) are grouped
/// and each group's weight moves to its *largest* value, so any quantile or expected excess
/// read from the result is at least the original's (more headroom, never less). Total weight
/// is kept.
pub fn coarsen_histogram(h: &mut DecayingHistogram, max: usize) {
    let n = h.weights.len();
    if n <= max.max(1) {
        return;
    }
    let per = n.div_ceil(max.max(1));
    let old = std::mem::take(&mut h.weights);
    let entries: Vec<(u32, f64)> = old.into_iter().collect();
    for group in entries.chunks(per) {
        let top = group.last().map_or(0, |(v, _)| *v);
        let w: f64 = group.iter().map(|(_, w)| w).sum();
        *h.weights.entry(top).or_default() += w;
    }
}

fn learner_histograms(l: &mut SloLearner) -> impl Iterator<Item = &mut DecayingHistogram> {
    std::iter::once(&mut l.all)
        .chain(l.by_level.values_mut())
        .flat_map(|g| [&mut g.warm_growth, &mut g.cold_growth, &mut g.demand])
}

/// Bound `state` for saving (see the module doc): forecasts to [`MAX_FORECAST_POINTS`] in
/// all and learner histograms to [`MAX_HISTOGRAM_BUCKETS`]; then, while the encoding is over
/// `max_bytes`, both halved again (forecasts down to 16 points a pool, histograms to 8
/// buckets), then forecasts dropped, histograms down to 2 buckets, the learners' per-level
/// statistics dropped (`all` kept), and at last their recent readings (the look-back over the
/// cold horizon plus `unneeded_time_s`, one per tick: thousands with a 1-s tick and an hour's
/// hold; a learner without them learns nothing until the look-back fills again, its histograms
/// still hold). Drains, backoffs and timers are never dropped: a state still too large then is
/// refused by its store. Pure.
pub fn fit(state: &mut SavedState, max_bytes: usize) {
    let pools = state.forecasts.len().max(1);
    let mut per_pool = MAX_FORECAST_POINTS / pools;
    let mut buckets = MAX_HISTOGRAM_BUCKETS;
    loop {
        for l in state.history.slo.values_mut() {
            for h in learner_histograms(l) {
                coarsen_histogram(h, buckets);
            }
        }
        for f in state.forecasts.values_mut() {
            *f = f.downsampled(per_pool);
        }
        if encode(state).len() <= max_bytes {
            return;
        }
        if per_pool > 16 || buckets > 8 {
            per_pool = (per_pool / 2).max(16);
            buckets = (buckets / 2).max(8);
        } else if !state.forecasts.is_empty() {
            state.forecasts.clear();
        } else if buckets > 2 {
            buckets /= 2;
        } else if state.history.slo.values().any(|l| !l.by_level.is_empty()) {
            for l in state.history.slo.values_mut() {
                l.by_level.clear();
            }
        } else if state.history.slo.values().any(|l| !l.recent.is_empty()) {
            for l in state.history.slo.values_mut() {
                l.recent.clear();
            }
        } else {
            return;
        }
    }
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
    /// Forecast histories to replay, steps from the future dropped.
    pub forecasts: BTreeMap<PoolName, ForecastSteps>,
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
    for l in h.slo.values_mut() {
        dropped += restore_learner(l, now, trusted);
    }
    let forecasts = saved
        .forecasts
        .into_iter()
        .filter_map(|(pool, f)| {
            let (step_s, mut steps) = f.steps();
            let step_ms = i64::try_from(step_s.max(1)).ok()?.checked_mul(1000)?;
            let before = steps.len();
            steps.retain(|(idx, _)| {
                idx.checked_mul(step_ms)
                    .map(Timestamp::from_millis)
                    .is_some_and(|t| trusted && sane(&t))
            });
            dropped += before - steps.len();
            (!steps.is_empty()).then_some((pool, (step_s, steps)))
        })
        .collect();

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
        forecasts,
        dropped,
    }
}

/// A learner as of `now`: every histogram decayed by the time since it was last decayed (the
/// time on disk included; `planner::headroom::HALF_LIFE_S`), observations from the future or
/// outside the sane range dropped, and nothing time-based kept when the saved time is not
/// `trusted`. Returns how many entries were dropped.
fn restore_learner(l: &mut SloLearner, now: Timestamp, trusted: bool) -> usize {
    let sane = |t: &Timestamp| trusted && t.is_external_range() && *t <= now;
    let half_life_s = crate::planner::headroom::HALF_LIFE_S;
    let mut dropped = 0;
    for h in learner_histograms(l) {
        match h.at {
            Some(at) if sane(&at) => {
                let f = 0.5f64.powf(now.secs_since(at).max(0.0) / half_life_s);
                h.weights.retain(|_, w| {
                    *w *= f;
                    w.is_finite() && *w > 1e-6
                });
                h.at = Some(now);
            }
            _ => {
                dropped += h.weights.len();
                *h = DecayingHistogram::default();
            }
        }
    }
    let before = l.recent.len();
    l.recent.retain(|(t, _)| sane(t));
    dropped += before - l.recent.len();
    if l.since.is_some_and(|t| !sane(&t)) {
        l.since = None;
    }
    dropped
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
            reason: Reason::SpotInterruption {
                deadline,
                start: crate::model::SpotDrainStart::AtNoticeUnknown,
            },
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
            forecasts: BTreeMap::new(),
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

    /// Minute steps ending at `end` (epoch seconds), `n` of them, with a daily-ish shape.
    fn minute_steps(end_s: i64, n: i64) -> ForecastSteps {
        let last = end_s / 60;
        (
            60,
            (last - n + 1..=last)
                .map(|i| (i, (10 + (i % 1440) / 60) as u32))
                .collect(),
        )
    }

    #[test]
    fn forecast_history_round_trips_and_downsampling_keeps_the_peaks() {
        let steps = minute_steps(1_700_000_000, 4320);
        let saved = SavedForecast::from_steps(&steps).unwrap();
        assert_eq!(saved.steps(), steps, "full resolution is the identity");
        let small = saved.downsampled(500);
        assert!(small.points.len() <= 500, "{}", small.points.len());
        let back = small.steps();
        assert_eq!(back.1.len(), steps.1.len(), "every step replayed");
        for ((i, v), (j, w)) in steps.1.iter().zip(&back.1) {
            assert_eq!(i, j);
            assert!(w >= v, "a downsampled step holds its group's peak");
        }
        assert_eq!(
            back.1.iter().map(|s| s.1).max(),
            steps.1.iter().map(|s| s.1).max()
        );
        // Gaps and disorder.
        assert!(SavedForecast::from_steps(&(60, vec![(5, 1), (4, 2)])).is_none());
        assert!(SavedForecast::from_steps(&(60, vec![])).is_none());
        let gappy = SavedForecast::from_steps(&(60, vec![(10, 1), (13, 4)])).unwrap();
        assert_eq!(gappy.steps(), (60, vec![(10, 1), (13, 4)]));
    }

    #[test]
    fn a_replayed_forecaster_forecasts_as_the_live_one() {
        use crate::signals::Forecaster;
        let mut live = Forecaster::new(60, 3600);
        let t0 = 1_700_000_000i64;
        for m in 0..600i64 {
            let v = 5 + ((m * 7) % 13) as u32 + (m / 100) as u32;
            live.observe(Timestamp::from_secs(t0 + m * 60), v);
        }
        let saved = SavedForecast::from_steps(&(live.step_s(), live.steps())).unwrap();
        let decoded: SavedForecast =
            serde_json::from_slice(&serde_json::to_vec(&saved).unwrap()).unwrap();
        let (step_s, steps) = decoded.steps();
        let mut replayed = Forecaster::new(60, 3600);
        replayed.replay(step_s, &steps);
        let now = Timestamp::from_secs(t0 + 600 * 60 + 30);
        assert_eq!(replayed.steps(), live.steps());
        assert_eq!(
            replayed.forecast_growth(now, 300),
            live.forecast_growth(now, 300)
        );
    }

    #[test]
    fn coarsened_histograms_keep_weight_and_never_lower_a_quantile() {
        let mut h = DecayingHistogram::default();
        for v in 0..=1024u32 {
            h.add(v, 1.0 + f64::from(v % 7), t(0), 3600.0);
        }
        let before = h.clone();
        coarsen_histogram(&mut h, MAX_HISTOGRAM_BUCKETS);
        assert!(h.weights.len() <= MAX_HISTOGRAM_BUCKETS);
        assert!((h.total() - before.total()).abs() < 1e-6);
        for q in [0.5, 0.9, 0.99, 0.999] {
            assert!(h.quantile(q) >= before.quantile(q), "q {q}");
        }
        for budget in [0.0, 10.0, 1000.0] {
            assert!(
                h.smallest_with_excess_at_most(budget)
                    >= before.smallest_with_excess_at_most(budget)
            );
        }
    }

    /// A learner filled to its bounds: every demand level, every growth bucket.
    fn full_learner() -> SloLearner {
        let mut l = SloLearner::default();
        let fill = |g: &mut crate::model::GrowthStats| {
            for v in 0..=crate::model::slo::MAX_GROWTH_BUCKET {
                for h in [&mut g.warm_growth, &mut g.cold_growth, &mut g.demand] {
                    h.add(v, 0.123_456_789 + f64::from(v), t(0), 21_600.0);
                }
            }
        };
        fill(&mut l.all);
        for level in 0..crate::model::slo::MAX_LEVELS {
            fill(l.by_level.entry(level).or_default());
        }
        for i in 0..30 {
            l.recent.push_back((t(i * 10), 7));
        }
        l
    }

    #[test]
    fn a_long_history_stays_under_the_configmap_cap() {
        let mut s = saved(t(0));
        // 30 pools with weekly seasons (three weeks of minute steps each) and full learners.
        for p in 0..30 {
            let pool = PoolName::from(format!("pool-{p}").as_str());
            let steps = minute_steps(1_700_000_000, 3 * 7 * 1440);
            s.forecasts
                .insert(pool.clone(), SavedForecast::from_steps(&steps).unwrap());
            s.history.slo.insert(pool, full_learner());
        }
        let raw = encode(&s).len();
        assert!(
            raw > MAX_STATE_BYTES,
            "the test must start over the cap: {raw}"
        );
        let mut fitted = s.clone();
        fit(&mut fitted, MAX_SAVED_BYTES);
        let size = encode(&fitted).len();
        assert!(size <= MAX_SAVED_BYTES, "{size} bytes");
        // Decodes, keeps what must never go, and still has a forecast for every pool.
        let back = decode(&encode(&fitted), "fitted").unwrap();
        assert_eq!(back.drains, s.drains);
        assert_eq!(back.history.backoff, s.history.backoff);
        assert_eq!(back.forecasts.len(), 30, "downsampled, not dropped");
        let points: usize = back.forecasts.values().map(|f| f.points.len()).sum();
        assert!(points <= MAX_FORECAST_POINTS, "{points}");
        assert_eq!(back.history.slo.len(), 30);

        // A budget too small for any forecast: they go, the rest stays.
        let mut tight = s;
        tight.history.slo.clear();
        let without = {
            let mut w = tight.clone();
            w.forecasts.clear();
            encode(&w).len()
        };
        fit(&mut tight, without + 10);
        assert!(tight.forecasts.is_empty());
        assert_eq!(tight.drains.len(), 1);
        assert_eq!(encode(&tight).len(), without);
    }

    #[test]
    fn learners_with_an_hour_of_readings_stay_under_the_cap() {
        // A 1-s tick and `unneeded_time_s: 3600`: 3,760 readings of look-back per learner.
        let mut s = saved(t(0));
        for p in 0..30 {
            let mut l = full_learner();
            l.recent = (0..3_760).map(|i| (t(i), 1_000 + i as u32)).collect();
            s.history
                .slo
                .insert(PoolName::from(format!("pool-{p}").as_str()), l);
        }
        assert!(encode(&s).len() > MAX_SAVED_BYTES);
        fit(&mut s, MAX_SAVED_BYTES);
        assert!(encode(&s).len() <= MAX_SAVED_BYTES);
        assert_eq!(s.history.slo.len(), 30);
        assert!(
            s.history
                .slo
                .values()
                .all(|l| !l.all.cold_growth.weights.is_empty())
        );
    }

    #[test]
    fn learners_and_forecasts_are_restored_with_their_age() {
        let mut s = saved(t(0));
        let mut l = SloLearner::default();
        l.all.cold_growth.add(3, 8.0, t(0), 21_600.0);
        l.recent.push_back((t(-60), 4));
        l.recent.push_back((t(0), 5));
        l.recent.push_back((t(100_000), 6)); // from the future
        s.history.slo.insert("p".into(), l);
        let steps: Vec<(i64, u32)> = (0..10)
            .map(|i| ((t(0).secs_f64() as i64) / 60 + i, 3))
            .collect();
        s.forecasts.insert(
            "p".into(),
            SavedForecast::from_steps(&(60, steps.clone())).unwrap(),
        );
        // Restored 6 h later: one half-life.
        let r = restore(s.clone(), t(21_600), 3600.0);
        let l = &r.history.slo[&PoolName::from("p")];
        let w = l.all.cold_growth.weights[&3];
        assert!((w - 4.0).abs() < 1e-9, "halved over one half-life: {w}");
        assert_eq!(l.all.cold_growth.at, Some(t(21_600)));
        assert_eq!(l.recent.len(), 2, "the future observation dropped");
        assert_eq!(r.forecasts[&PoolName::from("p")], (60, steps.clone()));
        // Restored before most steps (clock stepped back): only the sane ones are replayed.
        let r = restore(s.clone(), t(200), 3600.0);
        assert_eq!(r.forecasts[&PoolName::from("p")].1.len(), 4);
        // Saved "after" now: nothing time-based is trusted.
        let mut later = s;
        later.saved_at = t(1_000_000);
        let r = restore(later, t(21_600), 3600.0);
        assert!(r.forecasts.is_empty());
        assert!(
            r.history.slo[&PoolName::from("p")]
                .all
                .cold_growth
                .weights
                .is_empty()
        );
    }

    #[test]
    fn a_version_1_state_without_forecasts_still_reads() {
        let old = br#"{"version":1,"saved_at":1700000000000,"history":{},"drains":[]}"#;
        let s = decode(old, "old").unwrap();
        assert!(s.forecasts.is_empty());
        assert!(!String::from_utf8(encode(&s)).unwrap().contains("forecasts"));
    }
}
