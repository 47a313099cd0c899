//! What a pool's SLO learner remembers (the learning itself is `planner::headroom`, pure).
//! Kept in [`super::History`], so it is serialised with it (`gpupool plan --history`) and
//! bounded: a fixed number of histogram buckets and the demand of one cold-start horizon.

use super::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Largest growth (in replicas) a histogram tells apart; larger growth lands in this bucket.
/// 1,024 replicas is beyond any single pool's minute-scale growth we know of; it bounds the
/// histogram at 1,025 buckets whatever the demand does.
pub const MAX_GROWTH_BUCKET: u32 = 1024;

/// Weights below this are dropped after decay (they no longer move any quantile).
const MIN_WEIGHT: f64 = 1e-6;

/// A histogram of whole-replica values whose weights halve every `half_life_s` (the VPA
/// recommender's decaying histogram, `vertical-pod-autoscaler/pkg/recommender/util/
/// decaying_histogram.go` in kubernetes/autoscaler: newer samples count more, old ones fade
/// instead of falling off a window edge).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DecayingHistogram {
    /// Weight per value (whole replicas, capped at [`MAX_GROWTH_BUCKET`]).
    pub weights: BTreeMap<u32, f64>,
    /// When the weights were last decayed.
    pub at: Option<Timestamp>,
}

/// What a weight `dt_s` seconds old is worth with a half-life of `half_life_s`: 1 when no time
/// passed (or the half-life is not positive), halving every half-life.
fn decay_factor(dt_s: f64, half_life_s: f64) -> f64 {
    if dt_s > 0.0 && half_life_s > 0.0 {
        0.5f64.powf(dt_s / half_life_s)
    } else {
        1.0
    }
}

impl DecayingHistogram {
    /// Decay every weight to `now`, then add `weight` at `value`.
    pub fn add(&mut self, value: u32, weight: f64, now: Timestamp, half_life_s: f64) {
        self.decay_to(now, half_life_s);
        if weight.is_finite() && weight > 0.0 {
            *self
                .weights
                .entry(value.min(MAX_GROWTH_BUCKET))
                .or_default() += weight;
        }
    }

    fn decay_to(&mut self, now: Timestamp, half_life_s: f64) {
        if let Some(at) = self.at {
            let f = decay_factor(now.secs_since(at), half_life_s);
            if f < 1.0 {
                self.weights.retain(|_, w| {
                    *w *= f;
                    *w > MIN_WEIGHT
                });
            }
        }
        if self.at.is_none_or(|at| now > at) {
            self.at = Some(now);
        }
    }

    /// Total weight.
    pub fn total(&self) -> f64 {
        self.weights.values().sum()
    }

    /// Total weight as of `now` (decayed since the last addition).
    pub fn total_at(&self, now: Timestamp, half_life_s: f64) -> f64 {
        let dt = self.at.map_or(0.0, |at| now.secs_since(at));
        self.total() * decay_factor(dt, half_life_s)
    }

    /// Weighted sum of the values (`Σ w·v`).
    pub fn weighted_sum(&self) -> f64 {
        self.weights.iter().map(|(v, w)| f64::from(*v) * w).sum()
    }

    /// The smallest `h` whose expected excess `Σ w·max(0, v − h)` is at most `budget`.
    pub fn smallest_with_excess_at_most(&self, budget: f64) -> u32 {
        let mut h = 0u32;
        loop {
            let excess: f64 = self
                .weights
                .range(h + 1..)
                .map(|(v, w)| f64::from(v - h) * w)
                .sum();
            if excess <= budget + 1e-9 || h >= MAX_GROWTH_BUCKET {
                return h;
            }
            h += 1;
        }
    }

    /// The smallest value at or below which a fraction `q` of the weight lies; `None` when
    /// empty.
    pub fn quantile(&self, q: f64) -> Option<u32> {
        let total = self.total();
        if total <= 0.0 {
            return None;
        }
        let want = q.clamp(0.0, 1.0) * total;
        let mut acc = 0.0;
        for (&v, &w) in &self.weights {
            acc += w;
            // A relative tolerance so float sums of equal weights hit exact quantiles.
            if acc >= want * (1.0 - 1e-12) {
                return Some(v);
            }
        }
        self.weights.keys().next_back().copied()
    }
}

/// Which standing capacity a headroom is: spare running replicas, or warm-pool instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadroomKind {
    Running,
    Warm,
}

impl HeadroomKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HeadroomKind::Running => "running",
            HeadroomKind::Warm => "warm",
        }
    }
}

/// Where a headroom figure comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadroomBasis {
    /// The quantile of the decayed demand-growth history.
    Learned,
    /// Too little history yet: the documented prior (demand may double within the horizon).
    Prior,
}

/// Why the pool holds the headroom it holds (rendered in `Reason::SloHeadroom`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeadroomExplain {
    pub kind: HeadroomKind,
    /// Replicas held: spare running replicas, or replicas the warm pool holds.
    pub replicas: u32,
    /// The SLO's attainment, used as the quantile (0.99 → the 99th percentile).
    pub quantile: f64,
    /// The horizon the growth is measured over, seconds.
    pub horizon_s: u64,
    /// The growth quantile itself, in replicas.
    pub growth_replicas: u32,
    /// The histogram's half-life, hours.
    pub half_life_h: f64,
    /// History the learner has seen, hours (capped at a day for display).
    pub history_h: f64,
    pub basis: HeadroomBasis,
    /// Replicas attainment feedback adds (negative: removes).
    pub boost_replicas: i32,
    /// Measured attainment (unknown: `None`).
    pub attainment: Option<f64>,
    /// The decayed mean of every reading over the last hours (unknown: `None`): feedback
    /// relaxes only while it meets the target.
    pub attainment_long: Option<f64>,
}

impl std::fmt::Display for HeadroomExplain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // 0.99 → "99th", 0.995 → "99.5th".
        let pct = format!("{:.2}", self.quantile * 100.0);
        let pct = pct.trim_end_matches('0').trim_end_matches('.');
        let what = match self.kind {
            HeadroomKind::Running => "spare",
            HeadroomKind::Warm => "warm",
        };
        write!(f, "holding {} {what}: ", self.replicas)?;
        match self.basis {
            HeadroomBasis::Learned => write!(
                f,
                "{} replica(s) of {}-s demand growth keep demand outrunning it under {:.2}% \
                 (a {pct}% SLO) over the last {:.1} h (half-life {:.0} h)",
                self.growth_replicas,
                self.horizon_s,
                (1.0 - self.quantile) * 100.0,
                self.history_h,
                self.half_life_h
            )?,
            HeadroomBasis::Prior => write!(
                f,
                "only {:.2} h of demand seen, so the prior holds: demand may double within a \
                 cold start, {} replica(s) within {} s",
                self.history_h, self.growth_replicas, self.horizon_s
            )?,
        }
        if self.boost_replicas != 0 {
            write!(f, "; {:+} from feedback", self.boost_replicas)?;
        }
        match self.attainment {
            Some(a) => write!(f, "; measured attainment {:.2}%", a * 100.0)?,
            None => write!(f, "; attainment unknown")?,
        }
        match self.attainment_long {
            Some(a) if a < self.quantile => write!(
                f,
                " (last hours {:.2}%, under target: feedback does not relax)",
                a * 100.0
            ),
            _ => Ok(()),
        }
    }
}

/// SLO attainment as measured: the fraction of requests that started within the SLO's
/// queue wait over the last `window_s` seconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attainment {
    pub fraction: f64,
    pub window_s: f64,
}

/// Demand growth within the two horizons and the demand itself, decayed alike.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GrowthStats {
    /// Demand growth within the warm-start horizon.
    #[serde(default)]
    pub warm_growth: DecayingHistogram,
    /// Demand growth within the cold-start horizon.
    #[serde(default)]
    pub cold_growth: DecayingHistogram,
    /// Demand itself (replicas wanted): the requests the SLO counts.
    #[serde(default)]
    pub demand: DecayingHistogram,
}

/// Most demand levels kept apart (`level_of`): levels are powers of two of the demand, so
/// 12 cover up to 2,047 replicas and the memory stays bounded.
pub const MAX_LEVELS: u32 = 12;

/// The demand level of `d` replicas: 0 for none, then ⌊log2 d⌋ + 1 (1; 2–3; 4–7; …).
pub fn level_of(d: u32) -> u32 {
    (u32::BITS - d.leading_zeros()).min(MAX_LEVELS - 1)
}

/// A decayed mean of attainment readings: the SLO's error budget over the last hours, as a
/// long window next to the short one each reading covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DecayingMean {
    pub weighted_sum: f64,
    pub weight: f64,
    pub at: Option<Timestamp>,
}

impl DecayingMean {
    /// Decay to `now`, then add `value` with weight 1 (non-finite values are not added).
    pub fn add(&mut self, value: f64, now: Timestamp, half_life_s: f64) {
        if let Some(at) = self.at {
            let f = decay_factor(now.secs_since(at), half_life_s);
            self.weighted_sum *= f;
            self.weight *= f;
        }
        self.at = Some(now);
        if value.is_finite() {
            self.weighted_sum += value;
            self.weight += 1.0;
        }
    }

    /// The mean, `None` before any reading.
    pub fn mean(&self) -> Option<f64> {
        (self.weight > 0.0).then(|| self.weighted_sum / self.weight)
    }
}

/// The integral term of one demand level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    /// Replicas added to the learnt running headroom (negative: removed), bounded.
    pub boost_replicas: i32,
    /// When it last changed.
    pub changed_at: Option<Timestamp>,
    /// When a measurement last fell short of the margin relaxing needs: relaxing wants a
    /// whole hold of readings above it, not one good reading.
    #[serde(default)]
    pub short_at: Option<Timestamp>,
}

/// One pool's learner state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SloLearner {
    /// Replicas wanted at each observation, oldest first, covering the cold-start horizon.
    #[serde(default)]
    pub recent: VecDeque<(Timestamp, u32)>,
    /// Growth over all observations.
    #[serde(default)]
    pub all: GrowthStats,
    /// Growth by the demand level it started from (`level_of` the horizon's lowest demand):
    /// how much demand grows depends on how much there is (a few requests a minute jump by
    /// a replica or two, hundreds by tens).
    #[serde(default)]
    pub by_level: BTreeMap<u32, GrowthStats>,
    /// First observation.
    #[serde(default)]
    pub since: Option<Timestamp>,
    /// Attainment feedback per demand level (`level_of` the demand when it was measured):
    /// a correction learnt at night says nothing about the busy hours.
    #[serde(default)]
    pub feedback: BTreeMap<u32, Feedback>,
    /// The attainment measured at the last observation; `None`: unknown (no feedback).
    #[serde(default)]
    pub attainment: Option<Attainment>,
    /// Every known reading, decayed (half-life `planner::headroom::HALF_LIFE_S`): feedback
    /// relaxes only while this long window meets the target too.
    #[serde(default)]
    pub attainment_long: DecayingMean,
    /// Demand observations seen.
    #[serde(default)]
    pub observations: u64,
    /// Whether, at the last plan, the pool's demand was above the replicas its serving nodes
    /// run (`None`: not known, e.g. before the first plan). While a pool stays short, a
    /// queue-depth signal rises with the backlog the shortage builds, not with demand; the
    /// learner does not take that rise for growth (`planner::headroom`).
    #[serde(default)]
    pub short: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_decay() {
        let mut h = DecayingHistogram::default();
        let t0 = Timestamp::from_secs(0);
        assert_eq!(h.quantile(0.99), None);
        for v in 0..100 {
            h.add(v, 1.0, t0, 3600.0);
        }
        assert_eq!(h.quantile(0.5), Some(49));
        assert_eq!(h.quantile(0.99), Some(98));
        assert_eq!(h.quantile(1.0), Some(99));
        // One half-life later a new sample weighs twice an old one.
        h.add(500, 100.0, Timestamp::from_secs(3600), 3600.0);
        assert!((h.total() - 150.0).abs() < 1e-9, "{}", h.total());
        assert_eq!(h.quantile(0.5), Some(500));
        assert_eq!(h.quantile(0.3), Some(89));
        // Values beyond the last bucket are capped, never unbounded.
        h.add(u32::MAX, 1.0, Timestamp::from_secs(3600), 3600.0);
        assert_eq!(h.quantile(1.0), Some(MAX_GROWTH_BUCKET));
        assert!((h.total_at(Timestamp::from_secs(7200), 3600.0) - 75.5).abs() < 1e-9);
    }

    #[test]
    fn excess_and_levels() {
        let mut h = DecayingHistogram::default();
        let t = Timestamp::from_secs(0);
        // growth 0 ×90, 2 ×8, 10 ×2
        for (v, n) in [(0, 90), (2, 8), (10, 2)] {
            h.add(v, f64::from(n), t, 3600.0);
        }
        // Excess over h: h=0 → 16+20 = 36; h=2 → 16; h=5 → 10; h=10 → 0.
        assert_eq!(h.smallest_with_excess_at_most(36.0), 0);
        assert_eq!(h.smallest_with_excess_at_most(16.0), 2);
        assert_eq!(h.smallest_with_excess_at_most(10.0), 5);
        assert_eq!(h.smallest_with_excess_at_most(0.0), 10);
        assert!((h.weighted_sum() - 36.0).abs() < 1e-9);
        let levels: Vec<u32> = [0, 1, 2, 3, 4, 7, 8, 1000, u32::MAX]
            .into_iter()
            .map(level_of)
            .collect();
        assert_eq!(levels, vec![0, 1, 2, 2, 3, 3, 4, 10, MAX_LEVELS - 1]);
    }
}
