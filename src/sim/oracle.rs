//! The clairvoyant oracle: the least it can cost to meet the same per-bucket demand, knowing the
//! whole future, with the same (median) cold start. It is the lower bound every policy's cost is
//! divided by.
//!
//! Time is aggregated into buckets of Δ seconds (`oracle.bucket_s`, 60 s by default) so the
//! problem stays small. `D[b]` is the demand of bucket b (see `workload::demand_per_bucket`);
//! `c = ceil(cold_start / Δ)` buckets is how long a launched instance pays before it serves;
//! `w = ceil(warm_start / Δ)` for a start from the warm pool. At t = 0 `I` on-demand replicas
//! are already serving, as they are for every policy (`I` is the most any bucket within the
//! first cold start needs: see `run::start_fleet`); the oracle pays for them from t = 0 and
//! may stop them like any other.
//!
//! ## On-demand only: exact by layers
//! Instances are identical, so the demand curve splits into layers k = 1..max D: layer k must be
//! covered in every bucket where `D[b] ≥ k`. Between two covered runs of a layer separated by a
//! gap of g buckets the cheapest choice is the least of: keep the instance running (g × price),
//! terminate and relaunch (c × price, possible when g ≥ c), or stop it into the warm pool and
//! start it again (disk × (g − w) + w × price, when the scenario's on-demand groups allow a warm
//! pool and g ≥ w). A layer k ≤ I is running at t = 0: the buckets before it is first needed
//! are a gap like any other. A layer k > I first needed at b pays its c buckets of cold start
//! once. Because every instance
//! costs the same and gaps only interact within a layer, the per-layer optimum summed over
//! layers is the optimum of the whole problem.
//!
//! ## Spot + on-demand: SpotHedge-style ILP (solved with `good_lp` + `microlp`)
//! For each class k ∈ {on-demand, spot} and bucket b, integers `n_k[b]` (instances paid for) and
//! `l_k[b]` (launched at b):
//! - `n_k[b] − n_k[b−1] ≤ l_k[b]` (+ warm starts − stops for on-demand, below),
//! - ready capacity `r_k[b] = n_k[b] − Σ_{j=b−c+1..b} l_k[j]` (launches of the last c buckets
//!   are still cold-starting; warm starts of the last w buckets likewise), `r_k[b] ≥ 0`,
//! - `r_od[b] + r_spot[b] ≥ D[b]`,
//! - `n_spot[b] ≤ A[b]`, the spot instances available in bucket b (sum over zones of the
//!   availability trace: a drop below what is held is a preemption),
//! - `n_od[b] + n_spot[b] ≤ max_nodes`,
//!
//! minimising `Σ_b Δ/3600 × (p_od n_od[b] + p_spot n_spot[b] + disk × s[b])`. When the scenario's
//! on-demand groups allow a warm pool, on-demand instances may also be stopped (`stop[b]`) into a
//! warm pool of `s[b]` instances paying only their disk, and started again (`start[b]`, ready
//! after w buckets): `s[b] = s[b−1] + stop[b] − start[b]`, `n_od[b] − n_od[b−1] + stop[b] ≤
//! l_od[b] + start[b]`. Spot groups cannot have a warm pool.
//!
//! ## A feasible start
//! At t = 0, `I` on-demand replicas serve, as for every policy. The simulator's `I` covers
//! every bucket of the first cold start, so no launch before t = 0 is ever worth making; for
//! any other `I` (the tests use `I = D[0]`) the oracle stays feasible: demand above `I` within
//! the first c buckets cannot be met by a launch made at t ≥ 0, so both methods let the oracle
//! launch *before* the replay starts: the ILP has c extra buckets before bucket 0 (no demand,
//! spot availability of bucket 0) in which it may launch and pay, the layers method pays a
//! layer first needed at b < c its full c buckets of cold start. Such a launch is paid in full
//! (its cost counts every bucket of its cold start, before t = 0 included), so the oracle's
//! cost stays the least that meets every bucket's demand, and its per-bucket `paid` covers the
//! replay's buckets only. Whenever no demand rises within the first cold start, no launch
//! before the start is worth making and the cost is the same as without them.
//!
//! ## Spot refunds are not in it
//! AWS bills nothing for a spot instance it reclaims within its first hour (the world's
//! `spot::reclaim`). The ILP counts instances per bucket, not which ones the cloud picks
//! (at random) when availability drops, so it cannot credit that refund and pays for all
//! spot usage. On an AWS scenario with spot its figure is therefore not a strict lower
//! bound: a policy whose reclaimed instances were young can come under it.
//!
//! The oracle is a function of the scenario alone (trace, cold-start model, prices, groups and
//! their sizes), never of the gpupool config the scenario also carries.

use good_lp::{
    Expression, ResolutionError, Solution, SolverModel, Variable, constraint, microlp, variable,
    variables,
};

#[derive(Clone, Debug, PartialEq)]
pub struct OracleInput {
    pub bucket_s: f64,
    pub demand: Vec<u32>,
    /// On-demand replicas serving at t = 0 (`I`).
    pub initial: u32,
    pub cold_buckets: usize,
    pub warm_buckets: usize,
    pub od_price_per_hour: f64,
    /// Disk cost per hour of a stopped warm instance, when the scenario's on-demand groups
    /// allow a warm pool.
    pub warm_disk_per_hour: Option<f64>,
    /// Spot price and availability per bucket, when the scenario has spot.
    pub spot: Option<(f64, Vec<u32>)>,
    pub max_nodes: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OracleResult {
    pub cost_usd: f64,
    pub spot_cost_usd: f64,
    pub on_demand_cost_usd: f64,
    /// Instances paid for per bucket of the replay (on-demand, spot).
    pub paid: Vec<(u32, u32)>,
}

/// Why the oracle has no figure. The other policies run regardless.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum OracleError {
    #[error("the ILP is infeasible")]
    Infeasible,
    #[error("the ILP is unbounded")]
    Unbounded,
    #[error("the ILP solver failed: {0}")]
    Solver(String),
}

impl From<ResolutionError> for OracleError {
    fn from(e: ResolutionError) -> OracleError {
        match e {
            ResolutionError::Infeasible => OracleError::Infeasible,
            ResolutionError::Unbounded => OracleError::Unbounded,
            ResolutionError::Other(s) => OracleError::Solver(s.to_owned()),
            ResolutionError::Str(s) => OracleError::Solver(s),
        }
    }
}

pub fn solve(inp: &OracleInput) -> Result<OracleResult, OracleError> {
    match &inp.spot {
        None => Ok(layers(inp)),
        Some((price, avail)) => ilp(inp, *price, avail),
    }
}

fn layers(inp: &OracleInput) -> OracleResult {
    let d = &inp.demand;
    let n = d.len();
    let hours = inp.bucket_s / 3600.0;
    let p = inp.od_price_per_hour * hours;
    let max = d.iter().copied().max().unwrap_or(0);
    let initial = inp.initial;
    let mut cost = 0.0;
    let mut paid = vec![0u32; n];
    for k in 1..=max {
        let on: Vec<bool> = d.iter().map(|&x| x >= k).collect();
        let Some(first) = on.iter().position(|&x| x) else {
            continue;
        };
        // A layer serving at t = 0 starts there (the buckets before it is needed are a gap,
        // priced below); any other pays c buckets of cold start before it is first needed
        // (before t = 0 in part when first < c: see "A feasible start").
        let mut b = if k <= initial {
            0
        } else {
            cost += p * inp.cold_buckets as f64;
            for x in &mut paid[first.saturating_sub(inp.cold_buckets)..first] {
                *x += 1;
            }
            first
        };
        while b < n {
            if on[b] {
                cost += p;
                paid[b] += 1;
                b += 1;
                continue;
            }
            let gap_end = (b..n).find(|&j| on[j]);
            let Some(e) = gap_end else { break };
            let g = e - b;
            let run = g as f64 * p;
            let relaunch = if g >= inp.cold_buckets {
                inp.cold_buckets as f64 * p
            } else {
                f64::INFINITY
            };
            let warm = match inp.warm_disk_per_hour {
                Some(disk) if g >= inp.warm_buckets => {
                    disk * hours * (g - inp.warm_buckets) as f64 + inp.warm_buckets as f64 * p
                }
                _ => f64::INFINITY,
            };
            let best = run.min(relaunch).min(warm);
            cost += best;
            if best == run {
                for x in paid.iter_mut().take(e).skip(b) {
                    *x += 1;
                }
            } else if best == relaunch {
                for x in paid.iter_mut().take(e).skip(e - inp.cold_buckets) {
                    *x += 1;
                }
            } else {
                for x in paid.iter_mut().take(e).skip(e - inp.warm_buckets) {
                    *x += 1;
                }
            }
            b = e;
        }
    }
    OracleResult {
        cost_usd: cost,
        spot_cost_usd: 0.0,
        on_demand_cost_usd: cost,
        paid: paid.into_iter().map(|x| (x, 0)).collect(),
    }
}

/// One class's variables per ILP bucket (the c buckets before the start first).
struct ClassVars {
    n: Vec<Variable>,
    l: Vec<Variable>,
}

/// The on-demand warm pool's variables, when the scenario allows one.
struct WarmVars {
    held: Vec<Variable>,
    stop: Vec<Variable>,
    start: Vec<Variable>,
}

/// Σ of `v[j]` over the `len` buckets ending at `i`.
fn window(v: &[Variable], i: usize, len: usize) -> Expression {
    let mut e = Expression::from(0.0);
    for x in &v[i + 1 - len.min(i + 1)..=i] {
        e += *x;
    }
    e
}

fn ilp(inp: &OracleInput, spot_price: f64, avail: &[u32]) -> Result<OracleResult, OracleError> {
    let d = &inp.demand;
    let n = d.len();
    let hours = inp.bucket_s / 3600.0;
    let c = inp.cold_buckets;
    // ILP bucket i is the replay's bucket i − c: the first c are before the start.
    let m = n + c;
    let demand = |i: usize| i.checked_sub(c).map_or(0, |b| d[b]);
    let max = f64::from(inp.max_nodes.max(d.iter().copied().max().unwrap_or(0)));
    let mut vars = variables!();
    let mut int = |hi: f64| vars.add(variable().integer().min(0).max(hi));
    let mut od = ClassVars {
        n: Vec::with_capacity(m),
        l: Vec::with_capacity(m),
    };
    let mut sp = ClassVars {
        n: Vec::with_capacity(m),
        l: Vec::with_capacity(m),
    };
    for i in 0..m {
        let b = i.saturating_sub(c);
        let a = f64::from(avail.get(b).copied().unwrap_or(0)).min(max);
        od.n.push(int(max));
        sp.n.push(int(a));
        od.l.push(int(max));
        sp.l.push(int(max));
    }
    let warm = inp.warm_disk_per_hour.map(|_| WarmVars {
        held: (0..m).map(|_| int(max)).collect(),
        stop: (0..m).map(|_| int(max)).collect(),
        start: (0..m).map(|_| int(max)).collect(),
    });
    let mut objective = Expression::from(0.0);
    for i in 0..m {
        objective += inp.od_price_per_hour * hours * od.n[i] + spot_price * hours * sp.n[i];
        if let (Some(wv), Some(disk)) = (&warm, inp.warm_disk_per_hour) {
            objective += disk * hours * wv.held[i];
        }
    }
    let mut model = vars.minimise(objective).using(microlp);
    let initial = f64::from(inp.initial);
    for i in 0..m {
        // The I replicas serving at t = 0 join at the replay's first bucket, free of launch.
        let od_prev = match i {
            0 => Expression::from(0.0),
            _ if i == c => od.n[i - 1] + initial,
            _ => Expression::from(od.n[i - 1]),
        };
        let sp_prev = if i == 0 {
            Expression::from(0.0)
        } else {
            Expression::from(sp.n[i - 1])
        };
        let mut ready_od = od.n[i] - window(&od.l, i, c);
        match &warm {
            Some(wv) => {
                let held_prev = if i == 0 {
                    Expression::from(0.0)
                } else {
                    Expression::from(wv.held[i - 1])
                };
                model = model.with(constraint!(
                    od.n[i] - od_prev + wv.stop[i] <= od.l[i] + wv.start[i]
                ));
                model = model.with(constraint!(
                    wv.held[i] == held_prev + wv.stop[i] - wv.start[i]
                ));
                ready_od -= window(&wv.start, i, inp.warm_buckets);
            }
            None => model = model.with(constraint!(od.n[i] - od_prev <= od.l[i])),
        }
        model = model.with(constraint!(sp.n[i] - sp_prev <= sp.l[i]));
        let ready_sp = sp.n[i] - window(&sp.l, i, c);
        model = model.with(constraint!(ready_od.clone() >= 0.0));
        model = model.with(constraint!(ready_sp.clone() >= 0.0));
        model = model.with(constraint!(ready_od + ready_sp >= f64::from(demand(i))));
        model = model.with(constraint!(od.n[i] + sp.n[i] <= max));
    }
    let sol = model.solve()?;
    let value = |v: Variable| sol.value(v).round().max(0.0);
    let mut od_cost = 0.0;
    let mut sp_cost = 0.0;
    let mut paid = Vec::with_capacity(n);
    for i in 0..m {
        let (o, s) = (value(od.n[i]), value(sp.n[i]));
        od_cost += o * inp.od_price_per_hour * hours;
        if let (Some(wv), Some(disk)) = (&warm, inp.warm_disk_per_hour) {
            od_cost += value(wv.held[i]) * disk * hours;
        }
        sp_cost += s * spot_price * hours;
        if i >= c {
            paid.push((o as u32, s as u32));
        }
    }
    Ok(OracleResult {
        cost_usd: od_cost + sp_cost,
        spot_cost_usd: sp_cost,
        on_demand_cost_usd: od_cost,
        paid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inp(demand: Vec<u32>) -> OracleInput {
        OracleInput {
            bucket_s: 3600.0,
            initial: demand.first().copied().unwrap_or(0),
            demand,
            cold_buckets: 1,
            warm_buckets: 1,
            od_price_per_hour: 1.0,
            warm_disk_per_hour: None,
            spot: None,
            max_nodes: 10,
        }
    }

    #[test]
    fn layers_bridge_short_gaps_and_relaunch_long_ones() {
        // Serving 1 at start; layer 2 needed in buckets 2 and 4 (gap 1 = c: either way 1).
        let r = solve(&inp(vec![1, 1, 2, 1, 2])).unwrap();
        // layer 1: 5 buckets; layer 2: cold 1 + 1 + gap 1 + 1 = 4.
        assert!((r.cost_usd - 9.0).abs() < 1e-9, "{}", r.cost_usd);
        // A long gap is cheaper to relaunch across.
        let r = solve(&inp(vec![1, 0, 0, 0, 0, 1])).unwrap();
        assert!((r.cost_usd - 3.0).abs() < 1e-9, "{}", r.cost_usd);
    }

    #[test]
    fn ilp_matches_layers_without_spot_and_uses_cheap_spot() {
        let mut i = inp(vec![1, 1, 2, 2, 3, 1]);
        let exact = solve(&i).unwrap().cost_usd;
        i.spot = Some((0.3, vec![0; 6]));
        let ilp_cost = solve(&i).unwrap().cost_usd;
        assert!((exact - ilp_cost).abs() < 1e-6, "{exact} vs {ilp_cost}");
        i.spot = Some((0.3, vec![5; 6]));
        let r = solve(&i).unwrap();
        assert!(r.cost_usd < exact, "{} vs {exact}", r.cost_usd);
        assert!(r.spot_cost_usd > 0.0);
    }

    /// Demand above the replicas serving at t = 0 within the first cold start: no launch at
    /// t ≥ 0 can meet it, so the ILP launches before the start (paying the whole cold start)
    /// instead of being infeasible, and agrees with the layers method, which does the same.
    #[test]
    fn demand_rising_within_the_first_cold_start_is_met_by_launches_before_it() {
        let mut i = inp(vec![1, 3, 3, 1]);
        i.cold_buckets = 2;
        let exact = solve(&i).unwrap();
        // Layer 1: 4 buckets; layers 2 and 3: 2 cold buckets (before t = 0 in part) + 2.
        assert!((exact.cost_usd - 12.0).abs() < 1e-9, "{}", exact.cost_usd);
        i.spot = Some((0.3, vec![0; 4]));
        let r = solve(&i).expect("a rise within the first cold start is feasible");
        assert!((r.cost_usd - exact.cost_usd).abs() < 1e-6, "{r:?}");
        assert_eq!(r.paid.len(), 4, "paid covers the replay's buckets only");
        assert!(r.paid[1].0 >= 3, "{:?}", r.paid);
        // With spot available before the start too, the rise is met more cheaply on spot.
        i.spot = Some((0.3, vec![5; 4]));
        let r = solve(&i).unwrap();
        assert!(r.cost_usd < exact.cost_usd, "{}", r.cost_usd);
    }

    /// The start fleet the simulator gives every policy (`I` above `D[0]`, covering the first
    /// cold start): its layers run from t = 0, paying the buckets before they are needed
    /// rather than a cold start, and the ILP agrees.
    #[test]
    fn a_start_fleet_above_the_first_bucket_is_paid_from_t0() {
        let mut i = inp(vec![1, 3, 3, 1]);
        i.cold_buckets = 2;
        i.initial = 3;
        let exact = solve(&i).unwrap();
        // Layer 1: 4 buckets; layers 2 and 3: running from t = 0 through bucket 2 (3 each).
        assert!((exact.cost_usd - 10.0).abs() < 1e-9, "{}", exact.cost_usd);
        assert_eq!(exact.paid[0].0, 3, "{:?}", exact.paid);
        assert_eq!(exact.paid[3].0, 1, "{:?}", exact.paid);
        i.spot = Some((0.3, vec![0; 4]));
        let r = solve(&i).unwrap();
        assert!((r.cost_usd - exact.cost_usd).abs() < 1e-6, "{r:?}");
    }

    /// Without a rise in the first cold start, launching before it is never worth it: the same
    /// cost as a launch at its time.
    #[test]
    fn launches_before_the_start_change_nothing_when_not_needed() {
        let mut i = inp(vec![2, 2, 2, 4, 4, 2]);
        i.cold_buckets = 2;
        let exact = solve(&i).unwrap().cost_usd;
        // Layers 1-2: 6 each; layers 3-4: 2 cold + 2 serving.
        assert!((exact - 20.0).abs() < 1e-9, "{exact}");
        i.spot = Some((0.3, vec![0; 6]));
        let ilp_cost = solve(&i).unwrap().cost_usd;
        assert!((ilp_cost - exact).abs() < 1e-6, "{ilp_cost}");
    }

    /// Warm restarts in the ILP price a gap as the layers method does: disk × (g − w) + w ×
    /// price when that beats running through or relaunching.
    #[test]
    fn ilp_warm_restarts_match_layers() {
        let mut i = inp(vec![2, 0, 0, 0, 0, 0, 2]);
        i.cold_buckets = 2;
        i.warm_buckets = 1;
        i.warm_disk_per_hour = Some(0.1);
        let exact = solve(&i).unwrap().cost_usd;
        // Per layer: 1 + (0.1 × 4 + 1) + 1 = 3.4.
        assert!((exact - 6.8).abs() < 1e-9, "{exact}");
        i.spot = Some((0.3, vec![0; 7]));
        let r = solve(&i).unwrap();
        assert!(
            (r.cost_usd - exact).abs() < 1e-6,
            "{} vs {exact}",
            r.cost_usd
        );
        // Without a warm pool the gap is bridged by a relaunch (2 buckets).
        i.warm_disk_per_hour = None;
        let r = solve(&i).unwrap();
        assert!((r.cost_usd - 8.0).abs() < 1e-6, "{}", r.cost_usd);
    }
}
