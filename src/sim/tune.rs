//! `simulate --tune-baselines`: each baseline's natural knob swept on the same prepared
//! scenario and seed, to find the cheapest setting that meets the scenario's SLO target
//! (`slo.attainment`). A baseline's main run stays at its default setting; the tuned point is
//! reported beside it, so gpupool is judged against the best each baseline could have done
//! with foresight of the trace.
//!
//! The knobs:
//! - `static-peak`: the fleet size n in 1..=`max_nodes`.
//! - `hpa-ca`, `hpa-ca-default`, `karpenter`: `minReplicas` in 1..=`max_nodes` × the HPA's
//!   target of waiting requests per replica in {c/4, c/2, c, 2c} for a replica concurrency c
//!   (at least 1, duplicates dropped).
//!
//! ## Search, not the whole grid
//! A static fleet's attainment is monotone in its size: every policy run replays the same
//! requests in the same order, the fleet is on-demand and provisioned at t = 0 in one launch
//! call, and a first-come-first-served queue in front of a server set that is a superset at
//! every instant starts no request later. (The cold starts are drawn from the seeded RNG in
//! launch order, so a larger fleet's extra draws can shift later random events — faults,
//! throttles — a little: monotone up to that noise.) Its cost grows with n. So the cheapest
//! size meeting the target is the smallest, found by a search that keeps the largest size known
//! to miss and the smallest known to meet and probes the two points splitting the interval in
//! thirds, until they are adjacent: about 2 log₃(max) runs instead of max.
//!
//! For the HPA-driven baselines a higher `minReplicas` is a higher floor under the same
//! recommendation, so attainment rises with it too (the HPA's own scale-ups may differ between
//! runs, so this is close to, not exactly, monotone); each target gets the same search over
//! `minReplicas`. The tuned point is the cheapest *evaluated* setting meeting the target, and the
//! sweep lists every evaluated setting.
//!
//! ## Deterministic and parallel
//! Each round's probes are a function of the previous rounds' results only (never of the thread
//! count); the probes of a round run on up to `threads` threads (`std::thread::scope`), each on
//! a fresh world from the same prepared scenario and seed, and their results are collected in
//! probe order. Same seed, same sweep, same tuned point, whatever the thread count.

use super::metrics::PolicySummary;
use super::run::{Policy, PolicyRun, Prepared, SweepPoint, run_baseline};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A setting of a baseline's natural knob.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Knob {
    /// `static-peak`: the fleet size.
    Fleet(u32),
    /// The HPA-driven baselines: `minReplicas` and the External metric's `AverageValue`
    /// target (requests waiting per replica).
    Hpa {
        min_replicas: u32,
        target_per_replica: f64,
    },
}

impl std::fmt::Display for Knob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Knob::Fleet(n) => write!(f, "fleet={n}"),
            Knob::Hpa {
                min_replicas,
                target_per_replica,
            } => write!(f, "min_replicas={min_replicas},target={target_per_replica}"),
        }
    }
}

/// A setting string that is neither `fleet=N` nor `min_replicas=N,target=X`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("baseline setting {0:?}: expected fleet=N or min_replicas=N,target=X")]
pub struct BadSetting(pub String);

impl std::str::FromStr for Knob {
    type Err = BadSetting;
    /// The inverse of `Display`: what a sweep point's `setting` says.
    fn from_str(s: &str) -> Result<Knob, BadSetting> {
        let bad = || BadSetting(s.to_owned());
        if let Some(n) = s.strip_prefix("fleet=") {
            return n.parse().map(Knob::Fleet).map_err(|_| bad());
        }
        let (min, target) = s
            .strip_prefix("min_replicas=")
            .and_then(|r| r.split_once(",target="))
            .ok_or_else(bad)?;
        Ok(Knob::Hpa {
            min_replicas: min.parse().map_err(|_| bad())?,
            target_per_replica: target
                .parse::<f64>()
                .ok()
                .filter(|t| *t > 0.0 && t.is_finite())
                .ok_or_else(bad)?,
        })
    }
}

/// Run one baseline alone at `knob` on the prepared scenario (what a sweep point measured).
pub fn run_setting(p: &Prepared, policy: Policy, knob: Knob) -> PolicySummary {
    run_baseline(p, policy, knob, &|_| {}).summary
}

/// The cheapest point meeting `target` attainment (the first of equal cost, in sweep order),
/// or `None` when none does.
pub fn cheapest_meeting(points: &[SweepPoint], target: f64) -> Option<SweepPoint> {
    points
        .iter()
        .filter(|p| p.slo_attainment >= target)
        .fold(None::<&SweepPoint>, |best, p| match best {
            Some(b) if b.cost_usd <= p.cost_usd => Some(b),
            _ => Some(p),
        })
        .cloned()
}

/// Up to two integers strictly between `bad` and `ok`, splitting the interval in thirds (all
/// of them when there are at most two).
pub fn probes_between(bad: u32, ok: u32) -> Vec<u32> {
    if ok <= bad + 1 {
        return Vec::new();
    }
    let gap = ok - bad;
    if gap <= 3 {
        return (bad + 1..ok).collect();
    }
    let a = bad + gap / 3;
    let b = bad + 2 * gap / 3;
    if a == b { vec![a] } else { vec![a, b] }
}

/// The search for the smallest value in 1..=`hi` meeting the target, assuming attainment
/// rises with the value.
#[derive(Clone, Debug, PartialEq)]
pub struct Search {
    hi: u32,
    /// Largest value known to miss (0: none tried yet, 0 itself never meets).
    bad: u32,
    /// Smallest value known to meet.
    ok: Option<u32>,
    started: bool,
}

impl Search {
    pub fn new(hi: u32) -> Search {
        Search {
            hi: hi.max(1),
            bad: 0,
            ok: None,
            started: false,
        }
    }

    /// The values to try next; empty when the search is over. The first round tries `hi`
    /// and the thirds of 1..hi; if `hi` misses, no smaller value meets and the search ends.
    pub fn next_probes(&self) -> Vec<u32> {
        if !self.started {
            let mut v = probes_between(0, self.hi);
            v.push(self.hi);
            return v;
        }
        match self.ok {
            Some(ok) => probes_between(self.bad, ok),
            None => Vec::new(),
        }
    }

    /// Record a round's results, `(value, met)`.
    pub fn record(&mut self, results: &[(u32, bool)]) {
        self.started = true;
        for &(v, met) in results {
            if met {
                self.ok = Some(self.ok.map_or(v, |o| o.min(v)));
            }
        }
        for &(v, met) in results {
            if !met && self.ok.is_none_or(|o| v < o) {
                self.bad = self.bad.max(v);
            }
        }
    }

    /// A bound on the runs this search makes, for the progress bar.
    pub fn max_runs(&self) -> usize {
        let mut gap = self.hi;
        let mut rounds = 0;
        while gap > 1 {
            gap = gap.div_ceil(3);
            rounds += 1;
        }
        3 + 2 * rounds
    }
}

/// The HPA targets tried for a replica concurrency `c`: {c/4, c/2, c, 2c}, at least 1.
pub fn hpa_targets(concurrency: u32) -> Vec<f64> {
    let c = f64::from(concurrency.max(1));
    let mut v: Vec<f64> = [c / 4.0, c / 2.0, c, 2.0 * c]
        .into_iter()
        .map(|x| x.round().max(1.0))
        .collect();
    v.dedup();
    v
}

/// One sweep of one baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct Tuning {
    pub sweep: Vec<SweepPoint>,
    pub tuned: Option<SweepPoint>,
}

/// Run `knobs` of `policy` on up to `threads` threads; results in `knobs` order.
fn run_batch(
    p: &Prepared,
    policy: Policy,
    knobs: &[Knob],
    threads: usize,
    done: &(dyn Fn() + Sync),
) -> Vec<SweepPoint> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<SweepPoint>>> = Mutex::new(vec![None; knobs.len()]);
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(k) = knobs.get(i) else { break };
            let r: PolicyRun = run_baseline(p, policy, *k, &|_| {});
            let point = SweepPoint {
                setting: k.to_string(),
                slo_attainment: r.summary.slo_attainment,
                cost_usd: r.summary.cost_usd,
            };
            out.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(point);
            done();
        }
    };
    let threads = threads.clamp(1, knobs.len().max(1));
    if threads == 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(work);
            }
        });
    }
    out.into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

/// Sweep `policy`'s knob on `p` and pick the cheapest setting meeting the scenario's target.
/// `progress` gets the fraction of the (bounded) runs done.
pub fn tune(
    p: &Prepared,
    policy: Policy,
    threads: usize,
    progress: &(dyn Fn(f64) + Sync),
) -> Tuning {
    let hi = p.max_nodes();
    let target = p.scenario.file.slo.attainment;
    let knob_of: Vec<Box<dyn Fn(u32) -> Knob + Sync>> = match policy {
        Policy::StaticPeak => vec![Box::new(Knob::Fleet)],
        _ => hpa_targets(p.scenario.file.replica.concurrency)
            .into_iter()
            .map(|t| {
                Box::new(move |min_replicas| Knob::Hpa {
                    min_replicas,
                    target_per_replica: t,
                }) as Box<dyn Fn(u32) -> Knob + Sync>
            })
            .collect(),
    };
    let mut searches: Vec<Search> = knob_of.iter().map(|_| Search::new(hi)).collect();
    let bound: usize = searches.iter().map(Search::max_runs).sum();
    let finished = AtomicUsize::new(0);
    let done = || {
        let n = finished.fetch_add(1, Ordering::Relaxed) + 1;
        progress((n as f64 / bound.max(1) as f64).min(1.0));
    };
    let mut sweep = Vec::new();
    loop {
        let round: Vec<(usize, u32)> = searches
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.next_probes().into_iter().map(move |v| (i, v)))
            .collect();
        if round.is_empty() {
            break;
        }
        let knobs: Vec<Knob> = round.iter().map(|&(i, v)| knob_of[i](v)).collect();
        let points = run_batch(p, policy, &knobs, threads, &done);
        for (i, s) in searches.iter_mut().enumerate() {
            let results: Vec<(u32, bool)> = round
                .iter()
                .zip(&points)
                .filter(|((j, _), _)| *j == i)
                .map(|((_, v), pt)| (*v, pt.slo_attainment >= target))
                .collect();
            if !results.is_empty() {
                s.record(&results);
            }
        }
        sweep.extend(points);
    }
    let tuned = cheapest_meeting(&sweep, target);
    Tuning { sweep, tuned }
}

/// Tune every baseline among `runs` (in place: their `sweep` and `tuned`).
/// `progress(k, fraction)` for the k-th baseline tuned.
pub fn tune_runs(
    p: &Prepared,
    runs: &mut [PolicyRun],
    threads: usize,
    progress: &(dyn Fn(usize, f64) + Sync),
) {
    let mut k = 0;
    for r in runs.iter_mut() {
        let Some(policy) = Policy::ALL
            .into_iter()
            .find(|x| x.name() == r.summary.policy)
            .filter(|x| x.is_baseline())
        else {
            continue;
        };
        let t = tune(p, policy, threads, &|f| progress(k, f));
        r.sweep = t.sweep;
        r.tuned = t.tuned;
        k += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(setting: &str, slo: f64, cost: f64) -> SweepPoint {
        SweepPoint {
            setting: setting.into(),
            slo_attainment: slo,
            cost_usd: cost,
        }
    }

    #[test]
    fn cheapest_meeting_picks_the_least_cost_at_or_above_target() {
        let pts = [
            pt("a", 0.999, 9.0),
            pt("b", 0.95, 1.0),
            pt("c", 0.99, 4.0),
            pt("d", 0.995, 4.0),
        ];
        // b is cheapest but misses; c and d tie at 4: the first in sweep order.
        assert_eq!(cheapest_meeting(&pts, 0.99).unwrap().setting, "c");
        assert_eq!(cheapest_meeting(&pts, 0.996).unwrap().setting, "a");
        assert_eq!(cheapest_meeting(&pts, 0.9).unwrap().setting, "b");
    }

    #[test]
    fn cheapest_meeting_is_none_when_nothing_meets() {
        let pts = [pt("a", 0.98, 1.0), pt("b", 0.989, 2.0)];
        assert_eq!(cheapest_meeting(&pts, 0.99), None);
        assert_eq!(cheapest_meeting(&[], 0.5), None);
    }

    #[test]
    fn probes_split_in_thirds() {
        for (bad, ok, want) in [
            (0, 1, vec![]),
            (3, 4, vec![]),
            (0, 2, vec![1]),
            (0, 3, vec![1, 2]),
            (0, 40, vec![13, 26]),
            (13, 26, vec![17, 21]),
        ] {
            assert_eq!(probes_between(bad, ok), want, "({bad}, {ok})");
        }
    }

    /// The search finds the smallest value meeting a monotone predicate for every threshold,
    /// within its run bound, and ends at once when even `hi` misses.
    #[test]
    fn search_finds_the_smallest_meeting_value() {
        for hi in [1u32, 2, 5, 17, 40] {
            for threshold in 1..=hi + 1 {
                let mut s = Search::new(hi);
                let mut runs = 0;
                loop {
                    let probes = s.next_probes();
                    if probes.is_empty() {
                        break;
                    }
                    runs += probes.len();
                    let res: Vec<(u32, bool)> =
                        probes.iter().map(|&v| (v, v >= threshold)).collect();
                    s.record(&res);
                }
                let want = (threshold <= hi).then_some(threshold);
                assert_eq!(s.ok, want, "hi {hi} threshold {threshold}");
                assert!(runs <= s.max_runs(), "hi {hi}: {runs} > {}", s.max_runs());
            }
        }
    }

    #[test]
    fn hpa_targets_surround_the_concurrency() {
        assert_eq!(hpa_targets(8), vec![2.0, 4.0, 8.0, 16.0]);
        assert_eq!(hpa_targets(1), vec![1.0, 2.0]);
        assert_eq!(
            Knob::Hpa {
                min_replicas: 4,
                target_per_replica: 8.0
            }
            .to_string(),
            "min_replicas=4,target=8"
        );
        assert_eq!(Knob::Fleet(6).to_string(), "fleet=6");
    }

    #[test]
    fn settings_parse_back() {
        for k in [
            Knob::Fleet(6),
            Knob::Hpa {
                min_replicas: 3,
                target_per_replica: 2.5,
            },
        ] {
            assert_eq!(k.to_string().parse::<Knob>(), Ok(k));
        }
        for bad in [
            "",
            "fleet=",
            "fleet=-1",
            "min_replicas=2",
            "min_replicas=2,target=0",
        ] {
            assert!(bad.parse::<Knob>().is_err(), "{bad}");
        }
    }
}
