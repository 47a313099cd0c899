//! Prepare a scenario once (requests, demand, groups, oracle), then run each policy on a fresh
//! world with the same seed, side by side.

use super::SimError;
use super::baselines::{Env, HPA_TARGET_WAITING, Hpa, HpaBehavior, HpaCa, Karpenter, StaticPeak};
use super::data::{self, advisor_monthly_frequency, hourly_hazard_from_monthly};
use super::metrics::{PolicySummary, Waits, summarise};
use super::oracle::{self, OracleError, OracleInput, OracleResult};
use super::provider::{SharedWorld, SimProvider, lock};
use super::scenario::Scenario;
use super::timing::ColdStart;
use super::tune::Knob;
use super::workload::{build_requests, demand_per_bucket, history_requests};
use super::world::{
    GroupSpec, Interruption, InvariantBroken, InvariantChecker, Req, Sample, SpotDynamics, World,
    WorldParams,
};
use crate::model::{
    CapacityType, GpuInfo, InstanceType, InstanceTypeName, Money, NodeGroupId, Zone,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Policy {
    Gpupool,
    /// gpupool with the same config but `forecast.enabled: false` on every pool: what
    /// forecasting adds, side by side.
    GpupoolNoForecast,
    StaticPeak,
    HpaCa,
    /// HPA with Kubernetes' default `behavior` and Cluster Autoscaler with its defaults.
    HpaCaDefault,
    Karpenter,
    Oracle,
}

impl Policy {
    pub const ALL: [Policy; 7] = [
        Policy::Gpupool,
        Policy::GpupoolNoForecast,
        Policy::StaticPeak,
        Policy::HpaCa,
        Policy::HpaCaDefault,
        Policy::Karpenter,
        Policy::Oracle,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Policy::Gpupool => "gpupool",
            Policy::GpupoolNoForecast => "gpupool-noforecast",
            Policy::StaticPeak => "static-peak",
            Policy::HpaCa => "hpa-ca",
            Policy::HpaCaDefault => "hpa-ca-default",
            Policy::Karpenter => "karpenter",
            Policy::Oracle => "oracle",
        }
    }
    /// The baselines, whose natural knob `--tune-baselines` sweeps.
    pub fn is_baseline(self) -> bool {
        matches!(
            self,
            Policy::StaticPeak | Policy::HpaCa | Policy::HpaCaDefault | Policy::Karpenter
        )
    }
    pub fn parse_list(s: &str) -> Result<Vec<Policy>, SimError> {
        if s.trim() == "all" {
            return Ok(Policy::ALL.to_vec());
        }
        let mut out = Vec::new();
        for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let pol = Policy::ALL
                .into_iter()
                .find(|x| x.name() == p)
                .ok_or_else(|| SimError::UnknownPolicy(p.to_owned()))?;
            if !out.contains(&pol) {
                out.push(pol);
            }
        }
        Ok(out)
    }
}

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub seed: u64,
    pub policies: Vec<Policy>,
}

/// Everything a policy run starts from.
pub struct Prepared {
    pub scenario: Scenario,
    pub seed: u64,
    pub reqs: Vec<Req>,
    /// The trace's requests in the SLO learner's backfill window before the slice (arrivals
    /// before 0; empty when the slice starts at the trace's start).
    pub history: Arc<Vec<Req>>,
    pub end_ms: i64,
    pub bucket_ms: i64,
    pub demand: Vec<u32>,
    /// On-demand replicas already serving at t = 0, for every policy and the oracle alike:
    /// see [`start_fleet`].
    pub initial: u32,
    pub groups: Vec<GroupSpec>,
    pub params: WorldParams,
    /// The oracle's lower bound, or why there is none (the other policies run regardless and
    /// show cost ÷ oracle as unknown).
    pub oracle: Result<OracleResult, OracleError>,
    pub od_price: f64,
}

/// One policy's outcome: the summary and what the report charts.
pub struct PolicyRun {
    pub summary: PolicySummary,
    pub samples: Vec<Sample>,
    pub waits_s: Vec<f64>,
    /// Arrival times (s into the replay, sorted) of the requests that waited past the SLO:
    /// where the error budget went (`metrics::error_budget`).
    pub miss_arrivals_s: Vec<f64>,
    pub interruptions: Vec<Interruption>,
    /// Hash of the cloud calls made (time, call, group, detail): equal runs, equal hashes.
    pub action_hash: u64,
    pub actions: usize,
    /// The cloud calls made, in order.
    pub calls: Vec<super::world::CallRecord>,
    /// Launches the cloud accepted and did not fulfil, in request order.
    pub failed_launches: Vec<super::world::FailedLaunch>,
    /// Accepted launches that put capacity on its way.
    pub launches: Vec<super::world::LaunchRecord>,
    /// Baselines only, with `--tune-baselines`: every setting of the policy's natural knob
    /// that was tried, in sweep order.
    pub sweep: Vec<SweepPoint>,
    /// The cheapest point of `sweep` meeting the scenario's SLO target, if any did.
    pub tuned: Option<SweepPoint>,
}

/// One setting of a baseline's knob and what it reached.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SweepPoint {
    /// Human-readable setting, e.g. `"fleet=6"` or `"min_replicas=4,target=6"`.
    pub setting: String,
    pub slo_attainment: f64,
    pub cost_usd: f64,
}

pub struct ScenarioRun {
    pub prepared: Prepared,
    pub runs: Vec<PolicyRun>,
}

fn scenario_err(sc: &Scenario, message: impl Into<String>) -> SimError {
    SimError::Scenario {
        scenario: sc.file.name.clone(),
        message: message.into(),
    }
}

/// Most oracle buckets a run may have: a week at the usual 60 s bucket.
pub const MAX_ORACLE_BUCKETS: i64 = 10_080;

pub fn prepare(sc: Scenario, seed: u64) -> Result<Prepared, SimError> {
    let f = &sc.file;
    let types = data::aws_types();
    let t = types
        .get(&f.replica.instance_type)
        .ok_or_else(|| {
            scenario_err(
                &sc,
                format!("unknown instance type {}", f.replica.instance_type),
            )
        })?
        .clone();
    let (groups, spot_price) = groups_of(&sc, &t);
    let (reqs, end_ms) = build_requests(f, &t.gpu_model)?;
    let history = Arc::new(history_requests(
        f,
        &t.gpu_model,
        crate::planner::headroom::BACKFILL_S,
    )?);
    let bucket_ms = bucket_ms(&sc, end_ms)?;
    let slo_ms = (f.slo.queue_wait_s * 1000.0) as i64;
    let demand = demand_per_bucket(&reqs, end_ms, bucket_ms, f.replica.concurrency, slo_ms);
    let cold = ColdStart::new(f.cold_start.clone());
    let spot = spot_dynamics(&sc)?;
    let od_max: u32 = groups
        .iter()
        .filter(|g| g.capacity_type == CapacityType::OnDemand)
        .map(|g| g.max_size)
        .sum();
    let initial = start_fleet(&demand, cold_buckets(&cold, f.oracle.bucket_s), od_max);
    let oracle = solve_oracle(
        f,
        &groups,
        &spot,
        (&demand, initial),
        &cold,
        (spot_price, t.ondemand_per_hour),
    );
    let params = WorldParams {
        concurrency: f.replica.concurrency,
        cold,
        spot_notice_s: f.spot.notice_for(f.cloud().unwrap_or_default()),
        spot,
        faults: f.faults.clone(),
        sample_interval_s: 5.0,
        model_cache: sc.config.pools[0].model_cache.clone(),
        seed,
        // Validated at parse time: a scenario whose cloud cannot be told is refused.
        cloud: f.cloud().unwrap_or_default(),
    };
    Ok(Prepared {
        seed,
        reqs,
        history,
        end_ms,
        bucket_ms,
        demand,
        initial,
        groups,
        params,
        oracle,
        od_price: t.ondemand_per_hour,
        scenario: sc,
    })
}

/// The scenario's groups of instance type `t`, and the spot price they are billed at.
fn groups_of(sc: &Scenario, t: &data::AwsType) -> (Vec<GroupSpec>, f64) {
    let f = &sc.file;
    let advisor = data::spot_advisor();
    let adv = advisor.get(&t.name);
    let spot_price = f
        .spot
        .price_per_hour
        .or_else(|| adv.map(|a| t.ondemand_per_hour * (1.0 - a.savings_pct / 100.0)))
        .unwrap_or(t.ondemand_per_hour * 0.35);
    let hazard = hourly_hazard_from_monthly(advisor_monthly_frequency(adv.map_or(4, |a| a.bucket)));
    let pool = sc.config.pools[0].clone();
    let itype = InstanceType {
        name: InstanceTypeName::new(t.name.clone()),
        vcpu: t.vcpu,
        memory_mib: t.memory_mib,
        gpu: GpuInfo {
            model: t.gpu_model.clone(),
            count: t.gpu_count,
            memory_mib_per_gpu: t.gpu_memory_mib,
            mig_profiles: Vec::new(),
        },
    };
    let groups: Vec<GroupSpec> = f
        .groups
        .iter()
        .map(|g| GroupSpec {
            id: NodeGroupId::new(g.id.clone()),
            pool: pool.name.clone(),
            capacity_type: g.capacity_type,
            instance_type: itype.clone(),
            zones: g.zones.iter().map(|z| Zone::new(z.clone())).collect(),
            price_per_hour: match g.capacity_type {
                CapacityType::OnDemand => t.ondemand_per_hour,
                CapacityType::Spot => spot_price,
            },
            min_size: g.min_size,
            max_size: g.max_size,
            warm_pool_capable: g.capacity_type == CapacityType::OnDemand,
            hazard_per_hour: if g.capacity_type == CapacityType::Spot {
                hazard
            } else {
                0.0
            },
        })
        .collect();
    (groups, spot_price)
}

/// The oracle's bucket in ms, refused when the replay of `end_ms` has too many of them.
fn bucket_ms(sc: &Scenario, end_ms: i64) -> Result<i64, SimError> {
    let f = &sc.file;
    // Validated at parse time (1..=3600 s); the count of buckets is bounded here, where the
    // replay's length is known, so the demand table and the oracle stay small.
    let bucket_ms = (f.oracle.bucket_s * 1000.0) as i64;
    let buckets = end_ms / bucket_ms.max(1) + 1;
    if buckets > MAX_ORACLE_BUCKETS {
        let need = (end_ms as f64 / 1000.0 / MAX_ORACLE_BUCKETS as f64).ceil();
        return Err(SimError::InvalidValue {
            scenario: sc.file.name.clone(),
            field: "oracle.bucket_s".into(),
            value: f.oracle.bucket_s.to_string(),
            fix: format!(
                "{} s of replay make {buckets} buckets, more than {MAX_ORACLE_BUCKETS}: raise \
                 oracle.bucket_s to at least {need} or shorten trace.duration_s",
                end_ms / 1000
            ),
        });
    }
    Ok(bucket_ms)
}

/// How spot capacity is reclaimed: the scenario's availability trace, else the hazard rate.
fn spot_dynamics(sc: &Scenario) -> Result<SpotDynamics, SimError> {
    let f = &sc.file;
    let spot = match f.spot.availability_trace {
        Some(src) => {
            let trace = src.load()?;
            // The world reads tick `start_tick + elapsed / tick_s`, held at the trace's last
            // tick beyond its end: a start past the end would add to usize::MAX.
            let ticks = trace.zones.values().map(Vec::len).min().unwrap_or(0);
            if f.spot.start_tick >= ticks {
                return Err(SimError::InvalidValue {
                    scenario: sc.file.name.clone(),
                    field: "spot.start_tick".into(),
                    value: f.spot.start_tick.to_string(),
                    fix: format!(
                        "the availability trace has {ticks} ticks per zone: start at 0..{ticks}"
                    ),
                });
            }
            SpotDynamics::Trace {
                trace,
                start_tick: f.spot.start_tick,
            }
        }
        None => SpotDynamics::Hazard,
    };
    Ok(spot)
}

/// How many oracle buckets a median cold start spans.
fn cold_buckets(cold: &ColdStart, bucket_s: f64) -> usize {
    (cold.median_cold_s() / bucket_s).ceil() as usize
}

/// The fleet serving when the replay starts: the most replicas any bucket within the first
/// (median) cold start needs, at most the on-demand groups' size.
///
/// A replay starts in the middle of a running service. Demand that arrives before a launch
/// made at t = 0 could serve is met only by capacity that was already up, whatever a policy
/// decides; sizing that capacity from the first bucket alone (as before) made the first
/// minutes a lottery on cold-start draws that no policy's decisions could change (on `quick`,
/// 32 requests in minute 2 against an empty fleet decided 8 % of the SLO), while the oracle
/// alone could buy that capacity by launching before t = 0. Every policy and the oracle now
/// start with the same fleet, so the replay measures decisions, not the start; a policy that
/// does not need it scales it in by its own rules.
pub(crate) fn start_fleet(demand: &[u32], cold_buckets: usize, max: u32) -> u32 {
    demand
        .iter()
        .take(cold_buckets.max(1))
        .copied()
        .max()
        .unwrap_or(0)
        .min(max)
}

/// The oracle's lower bound for `demand` on the scenario's groups, starting from `initial`
/// on-demand replicas serving.
fn solve_oracle(
    f: &super::scenario::ScenarioFile,
    groups: &[GroupSpec],
    spot: &SpotDynamics,
    (demand, initial): (&[u32], u32),
    cold: &ColdStart,
    (spot_price, od_price): (f64, f64),
) -> Result<OracleResult, OracleError> {
    let has_spot = groups.iter().any(|g| g.capacity_type == CapacityType::Spot);
    // The oracle depends on the scenario alone, never on the gpupool config it carries: warm
    // restarts wherever the scenario's groups allow a warm pool, at most the groups' sizes.
    let has_warm = groups
        .iter()
        .any(|g| g.warm_pool_capable && g.capacity_type == CapacityType::OnDemand);
    let max_nodes: u32 = groups.iter().map(|g| g.max_size).sum();
    let oracle_spot = if has_spot {
        let zones: Vec<Zone> = groups
            .iter()
            .filter(|g| g.capacity_type == CapacityType::Spot)
            .flat_map(|g| g.zones.clone())
            .collect();
        let avail: Vec<u32> = (0..demand.len())
            .map(|b| match spot {
                SpotDynamics::Hazard => groups
                    .iter()
                    .filter(|g| g.capacity_type == CapacityType::Spot)
                    .map(|g| g.max_size)
                    .sum(),
                SpotDynamics::Trace { trace, start_tick } => {
                    // The lowest availability over the bucket: a drop anywhere in it reclaims.
                    let t0 = b as f64 * f.oracle.bucket_s;
                    let t1 = t0 + f.oracle.bucket_s - 1e-6;
                    let k0 = start_tick + (t0 / trace.tick_s) as usize;
                    let k1 = start_tick + (t1 / trace.tick_s) as usize;
                    zones
                        .iter()
                        .map(|z| {
                            trace.zones.get(z.as_str()).map_or(0, |v| {
                                (k0..=k1)
                                    .map(|k| v.get(k.min(v.len() - 1)).copied().unwrap_or(0))
                                    .min()
                                    .unwrap_or(0)
                            })
                        })
                        .sum()
                }
            })
            .collect();
        Some((spot_price, avail))
    } else {
        None
    };
    let bucket_s = f.oracle.bucket_s;
    oracle::solve(&OracleInput {
        bucket_s,
        demand: demand.to_vec(),
        initial,
        cold_buckets: cold_buckets(cold, bucket_s),
        warm_buckets: (cold.median_warm_s() / bucket_s).ceil() as usize,
        od_price_per_hour: od_price,
        warm_disk_per_hour: has_warm.then(|| cold.warm_disk_per_hour()),
        spot: oracle_spot,
        max_nodes,
    })
}

impl Prepared {
    /// A fresh world with [`Prepared::initial`] replicas already serving on on-demand capacity
    /// (the replay starts in the middle of a running service), the same for every policy.
    pub fn world(&self) -> World {
        let mut w = World::new(
            self.params.clone(),
            self.groups.clone(),
            self.reqs.clone(),
            self.end_ms,
        );
        let initial = self.initial;
        if let Some(g) = self
            .groups
            .iter()
            .position(|g| g.capacity_type == CapacityType::OnDemand)
        {
            w.prewarm_ready(g, initial);
        }
        w
    }

    fn od_group(&self) -> NodeGroupId {
        self.groups
            .iter()
            .find(|g| g.capacity_type == CapacityType::OnDemand)
            .or(self.groups.first())
            .map(|g| g.id.clone())
            .unwrap_or_default()
    }

    /// The baselines' replica ceiling: the pool's `max_nodes`, as the HPA's `maxReplicas`.
    pub(crate) fn max_nodes(&self) -> u32 {
        self.scenario.config.pools[0].limits.max_nodes
    }

    /// The largest per-bucket demand of the replay.
    pub(crate) fn peak_demand(&self) -> u32 {
        self.demand.iter().copied().max().unwrap_or(0)
    }

    /// `cost` ÷ the oracle's cost; unknown when the oracle failed or costs nothing.
    pub fn cost_vs_oracle(&self, cost_usd: f64) -> Option<f64> {
        match &self.oracle {
            Ok(o) if o.cost_usd > 0.0 => Some(cost_usd / o.cost_usd),
            _ => None,
        }
    }

    /// A baseline's setting when it is not tuned: static-peak provisions the run's peak, the
    /// HPA-driven ones use the scenario's `baselines.min_replicas` and [`HPA_TARGET_WAITING`].
    pub fn default_knob(&self, policy: Policy) -> Knob {
        match policy {
            Policy::StaticPeak => Knob::Fleet(self.peak_demand().min(self.max_nodes())),
            _ => Knob::Hpa {
                min_replicas: self.scenario.file.baselines.min_replicas,
                target_per_replica: HPA_TARGET_WAITING,
            },
        }
    }
}

/// Check the world's invariants after a tick of `policy`; a broken one names the command that
/// reproduces the run.
fn check(
    p: &Prepared,
    policy: Policy,
    checker: &mut InvariantChecker,
    w: &World,
) -> Result<(), SimError> {
    checker.check(w).map_err(|violation| {
        SimError::Invariant(Box::new(InvariantBroken {
            violation,
            at_s: w.now_ms as f64 / 1000.0,
            scenario: p.scenario.file.name.clone(),
            policy: policy.name().to_owned(),
            seed: p.seed,
        }))
    })
}

fn fnv(hash: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *hash ^= u64::from(*b);
        *hash = hash.wrapping_mul(0x100_0000_01b3);
    }
}

fn finish(p: &Prepared, policy: Policy, mut w: World) -> PolicyRun {
    w.finish();
    let slo = &p.scenario.file.slo;
    let waits = Waits::of(&w, slo.queue_wait_s);
    let mut summary = summarise(
        policy.name(),
        &w,
        &waits,
        slo.attainment,
        &p.demand,
        p.bucket_ms,
    );
    summary.cost_vs_oracle = p.cost_vs_oracle(summary.cost_usd);
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for c in &w.calls {
        fnv(
            &mut hash,
            format!("{}|{}|{}|{}|{}\n", c.at_ms, c.call, c.group, c.detail, c.ok).as_bytes(),
        );
    }
    PolicyRun {
        summary,
        samples: std::mem::take(&mut w.samples),
        waits_s: waits.sorted_s,
        miss_arrivals_s: waits.miss_arrivals_s,
        interruptions: std::mem::take(&mut w.interruptions),
        action_hash: hash,
        actions: w.calls.len(),
        calls: std::mem::take(&mut w.calls),
        failed_launches: std::mem::take(&mut w.failed_launches),
        launches: std::mem::take(&mut w.launches),
        sweep: Vec::new(),
        tuned: None,
    }
}

/// Run a baseline loop at its default setting: every second, advance the world and let the
/// policy act.
fn run_loop(p: &Prepared, policy: Policy, progress: &dyn Fn(f64)) -> Result<PolicyRun, SimError> {
    run_baseline(p, policy, p.default_knob(policy), progress)
}

/// Run a baseline at `knob` (a fleet size for static-peak, HPA settings for the others; a knob
/// of the other kind is replaced by the policy's default).
pub(crate) fn run_baseline(
    p: &Prepared,
    policy: Policy,
    knob: Knob,
    progress: &dyn Fn(f64),
) -> Result<PolicyRun, SimError> {
    let world: SharedWorld = Arc::new(Mutex::new(p.world()));
    let mut checker = InvariantChecker::default();
    let initial = p.initial;
    let scrape = Duration::from_millis(p.scenario.file.signals.scrape_ms().max(0) as u64);
    let default = p.default_knob(policy);
    let (fleet, min, target) = match (knob, default) {
        (Knob::Fleet(n), Knob::Fleet(_)) | (Knob::Hpa { .. }, Knob::Fleet(n)) => {
            (n, 0, HPA_TARGET_WAITING)
        }
        (
            Knob::Hpa {
                min_replicas,
                target_per_replica,
            },
            _,
        )
        | (
            Knob::Fleet(_),
            Knob::Hpa {
                min_replicas,
                target_per_replica,
            },
        ) => (0, min_replicas, target_per_replica),
    };
    let max = p.max_nodes();
    let hpa = |behavior| Hpa::with_behavior(min.min(max), max, initial, target, behavior);
    enum Loop {
        Static(StaticPeak),
        Ca(Box<HpaCa>),
        Karp(Box<Karpenter>),
    }
    let mut l = match policy {
        Policy::StaticPeak => Loop::Static(StaticPeak {
            group: p.od_group(),
            peak: fleet,
        }),
        Policy::HpaCa => Loop::Ca(Box::new(HpaCa::new(
            hpa(HpaBehavior::conservative()),
            p.od_group(),
            scrape,
        ))),
        Policy::HpaCaDefault => Loop::Ca(Box::new(
            HpaCa::new(hpa(HpaBehavior::kubernetes_default()), p.od_group(), scrape)
                .with_ca_defaults(),
        )),
        _ => Loop::Karp(Box::new(Karpenter::new(
            hpa(HpaBehavior::conservative()),
            scrape,
            p.groups
                .iter()
                .map(|g| {
                    let price = Money::from_dollars(g.price_per_hour);
                    (g.id.clone(), g.capacity_type, price)
                })
                .collect(),
        ))),
    };
    // The same provider interface the controller drives; Karpenter's launches are instant
    // fleet requests.
    let cloud = match l {
        Loop::Karp(_) => SimProvider::instant(world.clone()),
        _ => SimProvider::new(world.clone()),
    };
    let env = Env::new(&cloud, &world);
    let mut t = 0;
    while t <= p.end_ms {
        lock(&world).advance_to(t);
        match &mut l {
            Loop::Static(s) => s.step(&env),
            Loop::Ca(c) => c.step(&env),
            Loop::Karp(k) => k.step(&env),
        }
        check(p, policy, &mut checker, &lock(&world))?;
        if t % 60_000 == 0 {
            progress(t as f64 / p.end_ms.max(1) as f64);
        }
        t += 1000;
    }
    drop(cloud);
    Ok(finish(p, policy, unshare(world)?))
}

/// The world back from the policy's provider and views once the run is over.
fn unshare(world: SharedWorld) -> Result<World, SimError> {
    Ok(Arc::try_unwrap(world)
        .map_err(|_| SimError::Controller("world still shared after the run".into()))?
        .into_inner()
        .unwrap_or_else(|e| e.into_inner()))
}

/// Run the production controller on the virtual clock.
fn run_gpupool(
    p: &Prepared,
    policy: Policy,
    progress: &dyn Fn(f64),
) -> Result<PolicyRun, SimError> {
    use super::gpupool::{SimCluster, SimDemand};
    use crate::controller::{Controller, Metrics};
    let world: SharedWorld = Arc::new(Mutex::new(p.world()));
    let mut config = p.scenario.config.clone();
    if policy == Policy::GpupoolNoForecast {
        for pool in &mut config.pools {
            pool.forecast.enabled = false;
        }
    }
    let config = Arc::new(config);
    let provider = Arc::new(SimProvider::new(world.clone()));
    let pool = config.pools[0].name.clone();
    let mut controller = Controller::new(
        config.clone(),
        provider,
        Box::new(SimCluster::new(world.clone(), pool)),
        Box::new(
            SimDemand::new(
                world.clone(),
                p.scenario.file.signals.scrape_ms(),
                p.scenario.sim_signals.clone(),
            )
            .with_history(p.history.clone()),
        ),
        Arc::new(Metrics::default()),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| SimError::Controller(e.to_string()))?;
    let tick_ms = (config.tick_interval.as_secs().max(1) * 1000) as i64;
    let mut checker = InvariantChecker::default();
    let mut t = 0;
    while t <= p.end_ms {
        lock(&world).advance_to(t);
        // A tick that holds (observation failed) is what production would do too: go on.
        let _ = rt.block_on(controller.tick(crate::model::Timestamp::from_millis(t)));
        check(p, policy, &mut checker, &lock(&world))?;
        if t % 60_000 < tick_ms {
            progress(t as f64 / p.end_ms.max(1) as f64);
        }
        t += tick_ms;
    }
    drop(controller);
    Ok(finish(p, policy, unshare(world)?))
}

fn oracle_run(p: &Prepared, o: &OracleResult) -> PolicyRun {
    let hours = p.bucket_ms as f64 / 3_600_000.0;
    let gpus = f64::from(p.groups.first().map_or(1, |g| g.instance_type.gpu.count));
    let gpu_hours: f64 = o
        .paid
        .iter()
        .map(|(a, b)| f64::from(a + b) * hours * gpus)
        .sum();
    let busy: f64 = p.reqs.iter().map(|r| r.service_ms as f64).sum::<f64>()
        / 3_600_000.0
        / f64::from(p.params.concurrency)
        * gpus;
    PolicyRun {
        summary: PolicySummary {
            policy: "oracle".into(),
            requests: p.reqs.len() as u64,
            // By construction: capacity meets every bucket's peak concurrency.
            slo_attainment: 1.0,
            queue_wait_p50_s: 0.0,
            queue_wait_p99_s: 0.0,
            queue_wait_p999_s: 0.0,
            gpu_hours,
            idle_gpu_hours: (gpu_hours - busy).max(0.0),
            cost_usd: o.cost_usd,
            spot_cost_usd: o.spot_cost_usd,
            on_demand_cost_usd: o.on_demand_cost_usd,
            cost_vs_oracle: Some(1.0),
            scale_actions: 0,
            requests_hurt_by_preemption: 0,
            // The ILP counts instances, not which the cloud reclaims: it pays for all spot
            // usage (see `oracle`'s module documentation).
            spot_refunded_usd: 0.0,
            reclaim_replacements: 0,
            requests_cut_short: 0,
            reaction_to_api_s_p50: 0.0,
            reaction_to_ready_s_p50: 0.0,
            // The oracle knows every outage in advance and never launches into one.
            failed_launches: 0,
            failed_launches_without_fallback: 0,
            failure_to_fallback_s_p50: None,
            failure_to_fallback_s_max: None,
            error_budget: super::metrics::error_budget(
                &[],
                p.reqs.len() as u64,
                p.scenario.file.slo.attainment,
            ),
        },
        samples: Vec::new(),
        waits_s: Vec::new(),
        miss_arrivals_s: Vec::new(),
        interruptions: Vec::new(),
        action_hash: 0,
        actions: 0,
        calls: Vec::new(),
        failed_launches: Vec::new(),
        launches: Vec::new(),
        sweep: Vec::new(),
        tuned: None,
    }
}

/// Run the chosen policies on the scenario. `progress(policy_index, fraction)` is called as
/// the virtual clock advances.
pub fn run_scenario(
    sc: Scenario,
    opts: &RunOptions,
    progress: &dyn Fn(usize, f64),
) -> Result<ScenarioRun, SimError> {
    run_prepared(prepare(sc, opts.seed)?, &opts.policies, progress)
}

/// Run `policies` on an already prepared scenario. A failed oracle leaves its row out and
/// every other policy runs (their cost ÷ oracle is then unknown).
pub fn run_prepared(
    prepared: Prepared,
    policies: &[Policy],
    progress: &dyn Fn(usize, f64),
) -> Result<ScenarioRun, SimError> {
    let mut runs = Vec::new();
    for (i, pol) in policies.iter().enumerate() {
        let pr = |f: f64| progress(i, f);
        let run = match pol {
            Policy::Gpupool | Policy::GpupoolNoForecast => run_gpupool(&prepared, *pol, &pr)?,
            // A failed oracle has no row; the summary says why (`prepared.oracle`).
            Policy::Oracle => match &prepared.oracle {
                Ok(o) => oracle_run(&prepared, o),
                Err(_) => {
                    progress(i, 1.0);
                    continue;
                }
            },
            other => run_loop(&prepared, *other, &pr)?,
        };
        progress(i, 1.0);
        runs.push(run);
    }
    Ok(ScenarioRun { prepared, runs })
}

#[cfg(test)]
mod tests {
    use super::start_fleet;

    #[test]
    fn start_fleet_table() {
        // (demand per bucket, cold-start buckets, on-demand max) → start fleet
        let cases: &[(&[u32], usize, u32, u32)] = &[
            // Quiet first bucket, a blip in the first cold start: the blip is covered.
            (&[0, 0, 4, 0, 0, 9], 3, 40, 4),
            // A rise after the first cold start is each policy's business.
            (&[2, 2, 2, 9], 3, 40, 2),
            // A cold start under one bucket still covers the first bucket.
            (&[3, 7], 0, 40, 3),
            // Never more than the on-demand groups hold.
            (&[5, 50], 2, 8, 8),
            (&[], 3, 40, 0),
        ];
        for &(demand, c, max, want) in cases {
            assert_eq!(
                start_fleet(demand, c, max),
                want,
                "{demand:?} c={c} max={max}"
            );
        }
    }
}
