//! The live "why": one value describing what the controller sees and decides, per pool —
//! demand, capacity in flight, backoffs, headroom, the last decisions with their typed
//! reasons, the last tick, leadership and mode. Built by a pure function from the last
//! plan, its snapshot and history; served as JSON on `/status`, written to the
//! `gpupool-status` ConfigMap (Cluster Autoscaler's status ConfigMap) and printed by
//! `gpupool status`.

use super::shadow::{ShadowLedger, ShadowPool};
use super::{
    Action, Backoff, CacheState, Decision, History, InstanceId, Money, OfferingKey, Outcome, Plan,
    PoolName, Reason, Snapshot, Subject, Timestamp,
};
use crate::config::Config;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Decisions kept per pool (a fleet with thousands of pending pods summarises them in `pods`).
pub const MAX_DECISIONS_PER_POOL: usize = 50;
/// Pod names shown per (outcome, reason) group.
pub const POD_EXAMPLES: usize = 5;

/// Acting on the cloud, or only watching (shadow mode, `dry_run: true`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunMode {
    Active,
    Shadow,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub mode: RunMode,
    pub leader: bool,
    /// The last tick's time (planned or held).
    pub last_tick: Option<Timestamp>,
    /// Why the last tick held, when it did (the observation error, rendered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// Time of the last plan below.
    pub planned_at: Option<Timestamp>,
    pub cache: CacheState,
    pub pools: Vec<PoolStatus>,
    /// Pending pods grouped by what happens to them.
    pub pods: Vec<PodGroup>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolStatus {
    pub pool: PoolName,
    pub paused: bool,
    pub scale_down_enabled: bool,
    pub pending_pods: u32,
    pub wanted_replicas: Option<u32>,
    pub forecast_replicas: Option<u32>,
    pub ready_nodes: u32,
    pub in_flight_nodes: u32,
    pub desired_nodes: u32,
    pub warm_instances: u32,
    pub headroom_replicas: u32,
    /// Sum of the known prices; nodes of unknown price are in `unpriced_nodes` instead.
    pub cost_per_hour: Money,
    /// Nodes whose price is unknown in their region (unknown is not zero).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unpriced_nodes: u32,
    /// Offerings still backing off at the plan's time.
    pub backoffs: Vec<OfferingBackoff>,
    pub actions: Vec<Action>,
    pub decisions: Vec<Decision>,
    pub unneeded: Vec<InstanceId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowPool>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OfferingBackoff {
    pub offering: OfferingKey,
    pub until: Timestamp,
    pub failures: u32,
    pub last_error: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PodGroup {
    pub outcome: Outcome,
    /// The reason of the first pod of the group (all share its code).
    pub reason: Reason,
    pub count: u32,
    pub examples: Vec<String>,
}

/// What the status is built from; everything but `config` is optional before the first plan.
pub struct StatusInput<'a> {
    pub config: &'a Config,
    pub leader: bool,
    pub last_tick: Option<Timestamp>,
    pub held: Option<String>,
    /// The last plan with the snapshot and history it was made from.
    pub planned: Option<(&'a Snapshot, &'a History, &'a Plan)>,
    pub shadow: Option<&'a ShadowLedger>,
}

/// Build the status. Pure.
pub fn build(input: &StatusInput<'_>) -> Status {
    let mode = if input.config.dry_run {
        RunMode::Shadow
    } else {
        RunMode::Active
    };
    let pools = input
        .config
        .pools
        .iter()
        .map(|p| pool_status(input, p))
        .collect();
    Status {
        mode,
        leader: input.leader,
        last_tick: input.last_tick,
        held: input.held.clone(),
        planned_at: input.planned.map(|(s, _, _)| s.taken_at),
        cache: input
            .planned
            .map_or(CacheState::Current, |(s, _, _)| s.cache.clone()),
        pools,
        pods: input
            .planned
            .map_or_else(Vec::new, |(_, _, p)| pod_groups(p)),
    }
}

fn pool_status(input: &StatusInput<'_>, p: &crate::config::PoolConfig) -> PoolStatus {
    let mut st = PoolStatus {
        pool: p.name.clone(),
        paused: p.paused,
        scale_down_enabled: p.scale_down.enabled,
        pending_pods: 0,
        wanted_replicas: None,
        forecast_replicas: None,
        ready_nodes: 0,
        in_flight_nodes: 0,
        desired_nodes: 0,
        warm_instances: 0,
        headroom_replicas: p.disruption.headroom_replicas,
        cost_per_hour: Money::ZERO,
        unpriced_nodes: 0,
        backoffs: Vec::new(),
        actions: Vec::new(),
        decisions: Vec::new(),
        unneeded: Vec::new(),
        shadow: input.shadow.and_then(|l| l.pools.get(&p.name).cloned()),
    };
    let Some((snapshot, history, plan)) = input.planned else {
        return st;
    };
    if let Some(s) = plan.pools.iter().find(|s| s.pool == p.name) {
        st.pending_pods = s.pending_pods;
        st.wanted_replicas = s.wanted_replicas;
        st.forecast_replicas = s.forecast_replicas;
        st.ready_nodes = s.ready_nodes;
        st.in_flight_nodes = s.in_flight_nodes;
        st.desired_nodes = s.desired_nodes;
        st.warm_instances = s.warm_instances;
        st.cost_per_hour = s.cost_per_hour;
        st.unpriced_nodes = s.unpriced_nodes;
    }
    st.backoffs = backoffs_of(snapshot, history, &p.name);
    st.actions = plan
        .actions
        .iter()
        .filter(|a| a.pool() == &p.name)
        .cloned()
        .collect();
    st.decisions = plan
        .decisions
        .iter()
        .filter(|d| pool_of(&d.subject, snapshot).as_ref() == Some(&p.name))
        .take(MAX_DECISIONS_PER_POOL)
        .cloned()
        .collect();
    st.unneeded = plan
        .unneeded
        .iter()
        .filter(|i| instance_pool(snapshot, i).as_ref() == Some(&p.name))
        .cloned()
        .collect();
    st
}

fn backoffs_of(snapshot: &Snapshot, history: &History, pool: &PoolName) -> Vec<OfferingBackoff> {
    history
        .backoff
        .iter()
        .filter(|(_, b)| b.until > snapshot.taken_at)
        .filter(|(k, _)| offering_pool(snapshot, k).as_ref() == Some(pool))
        .map(|(k, b): (&OfferingKey, &Backoff)| OfferingBackoff {
            offering: k.clone(),
            until: b.until,
            failures: b.failures,
            last_error: b.last_error.clone(),
        })
        .collect()
}

fn instance_pool(snapshot: &Snapshot, id: &InstanceId) -> Option<PoolName> {
    let i = snapshot.instances.iter().find(|x| &x.id == id)?;
    snapshot.group(&i.group).map(|g| g.pool.clone())
}

fn offering_pool(snapshot: &Snapshot, k: &OfferingKey) -> Option<PoolName> {
    snapshot
        .groups
        .iter()
        .find(|g| g.offerings.iter().any(|o| &o.key() == k))
        .map(|g| g.pool.clone())
}

/// The pool a decision is about (pods are summarised apart, in `pods`).
pub fn pool_of(subject: &Subject, snapshot: &Snapshot) -> Option<PoolName> {
    match subject {
        Subject::Pool(p) => Some(p.clone()),
        Subject::Group(g) => snapshot.group(g).map(|g| g.pool.clone()),
        Subject::Instance(i) => instance_pool(snapshot, i),
        Subject::Offering(k) => offering_pool(snapshot, k),
        Subject::Pod(_) => None,
    }
}

fn pod_groups(plan: &Plan) -> Vec<PodGroup> {
    let mut groups: BTreeMap<(&'static str, &'static str), PodGroup> = BTreeMap::new();
    for d in &plan.decisions {
        let Subject::Pod(name) = &d.subject else {
            continue;
        };
        let g = groups
            .entry((d.outcome.as_str(), d.reason.code()))
            .or_insert_with(|| PodGroup {
                outcome: d.outcome,
                reason: d.reason.clone(),
                count: 0,
                examples: Vec::new(),
            });
        g.count += 1;
        if g.examples.len() < POD_EXAMPLES {
            g.examples.push(name.clone());
        }
    }
    groups.into_values().collect()
}

/// The status as a table a person reads (`gpupool status`, the ConfigMap's `status` entry).
pub fn render(s: &Status, now: Timestamp) -> String {
    let mut out = String::new();
    let ago = |t: Option<Timestamp>| {
        t.map_or_else(
            || "never".to_owned(),
            |t| format!("{:.0} s ago", now.secs_since(t).max(0.0)),
        )
    };
    let mode = match s.mode {
        RunMode::Active => "active",
        RunMode::Shadow => "shadow (dry run: nothing is changed)",
    };
    let _ = writeln!(
        out,
        "gpupool {}, mode {mode}, last tick {}{}",
        if s.leader { "leader" } else { "standby" },
        ago(s.last_tick),
        s.held
            .as_ref()
            .map_or(String::new(), |h| format!(" (held: {h})"))
    );
    if let CacheState::Relisting { since, resources } = &s.cache {
        let r: Vec<&str> = resources.iter().map(|r| r.as_str()).collect();
        let _ = writeln!(
            out,
            "cluster cache relisting {} since {since}",
            r.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "\n{:<20} {:>6} {:>9} {:>8} {:>8} {:>7} {:>5} {:>10}  STATE",
        "POOL", "READY", "IN-FLIGHT", "DESIRED", "PENDING", "WANTED", "WARM", "COST/H"
    );
    for p in &s.pools {
        let state = match (p.paused, p.scale_down_enabled) {
            (true, _) => "paused",
            (false, false) => "scale-down off",
            _ => "active",
        };
        let _ = writeln!(
            out,
            "{:<20} {:>6} {:>9} {:>8} {:>8} {:>7} {:>5} {:>10}  {state}",
            p.pool.as_str(),
            p.ready_nodes,
            p.in_flight_nodes,
            p.desired_nodes,
            p.pending_pods,
            p.wanted_replicas.map_or("-".to_owned(), |w| w.to_string()),
            p.warm_instances,
            cost_cell(p),
        );
    }
    for p in &s.pools {
        render_pool(&mut out, p);
    }
    if !s.pods.is_empty() {
        let _ = writeln!(out, "\npending pods:");
        for g in &s.pods {
            let _ = writeln!(
                out,
                "  {} ({}): {} — {}",
                g.outcome.as_str(),
                g.count,
                g.reason,
                g.examples.join(", ")
            );
        }
    }
    out
}

fn render_pool(out: &mut String, p: &PoolStatus) {
    let _ = writeln!(out, "\npool {}:", p.pool);
    for a in &p.actions {
        let _ = writeln!(out, "  action: {a}");
    }
    for d in &p.decisions {
        let _ = writeln!(out, "  {} {}: {}", d.outcome.as_str(), d.subject, d.reason);
    }
    for b in &p.backoffs {
        let _ = writeln!(
            out,
            "  backoff: {} until {} ({} failure(s)): {}",
            b.offering, b.until, b.failures, b.last_error
        );
    }
    if p.actions.is_empty() && p.decisions.is_empty() {
        let _ = writeln!(out, "  nothing to do");
    }
    if let Some(sh) = &p.shadow {
        let would: Vec<String> = sh
            .would_total
            .iter()
            .map(|(k, n)| format!("{} ×{n}", k.as_str()))
            .collect();
        let _ = writeln!(
            out,
            "  shadow: would have done {}; others added {} and removed {} node(s); fleet {}/h, \
             gpupool's would be {}/h (difference {}/h, {} so far)",
            if would.is_empty() {
                "nothing".to_owned()
            } else {
                would.join(", ")
            },
            sh.observed_added,
            sh.observed_removed,
            sh.actual_cost_per_hour,
            sh.would_cost_per_hour,
            sh.cost_difference_per_hour,
            sh.cost_difference_total,
        );
    }
}

/// When to write the status ConfigMap: on change at most every `MIN_WRITE_INTERVAL_S`, and at
/// least every `REFRESH_INTERVAL_S` so its age shows the controller is alive.
pub const MIN_WRITE_INTERVAL_S: f64 = 10.0;
pub const REFRESH_INTERVAL_S: f64 = 300.0;

/// The last write: when, and the content written (without its times).
#[derive(Clone, Debug, Default)]
pub struct Written {
    pub at: Option<Timestamp>,
    pub content: String,
}

/// Should the status, whose time-free content is `content`, be written at `now`? Pure.
pub fn should_write(last: &Written, content: &str, now: Timestamp) -> bool {
    match last.at {
        None => true,
        Some(at) => {
            let age = now.secs_since(at);
            (age >= MIN_WRITE_INTERVAL_S && last.content != content) || age >= REFRESH_INTERVAL_S
        }
    }
}

/// The status's content without its clock fields, to tell a change from a tick.
pub fn content_key(s: &Status) -> String {
    let mut s = s.clone();
    s.last_tick = None;
    s.planned_at = None;
    serde_json::to_string(&s).unwrap_or_default()
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The cost column: the known sum, and how many nodes have no known price.
fn cost_cell(p: &PoolStatus) -> String {
    match p.unpriced_nodes {
        0 => p.cost_per_hour.to_string(),
        n => format!("{} + {n} unpriced", p.cost_per_hour),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::fixtures::*;

    /// What the leader serves right after planning `plan` on `s`.
    fn leader_status(cfg: &Config, s: &Snapshot, h: &History, plan: &Plan) -> Status {
        build(&StatusInput {
            config: cfg,
            leader: true,
            last_tick: Some(s.taken_at),
            held: None,
            planned: Some((s, h, plan)),
            shadow: None,
        })
    }

    #[test]
    fn write_on_change_rate_limited_and_refreshed() {
        let t = Timestamp::from_secs;
        let at = |s, c: &str| Written {
            at: Some(t(s)),
            content: c.to_owned(),
        };
        let cases = [
            ("first write", Written::default(), "a", 0, true),
            ("unchanged", at(0, "a"), "a", 60, false),
            ("changed too soon", at(0, "a"), "b", 5, false),
            ("changed", at(0, "a"), "b", 10, true),
            ("unchanged but old", at(0, "a"), "a", 300, true),
        ];
        for (name, last, content, now, want) in cases {
            assert_eq!(should_write(&last, content, t(now)), want, "{name}");
        }
    }

    #[test]
    fn per_pool_reasons_backoffs_and_pods() {
        let mut cfg = config(vec![pool_cfg("llm"), pool_cfg("other")]);
        cfg.pools[1].paused = true;
        let s: Snapshot = snapshot()
            .group(g5_spot().desired(0))
            .pending(gpu_pod(1).name("a"))
            .pending(gpu_pod(1).name("b"))
            .build();
        let mut h = History::default();
        let key = s.groups[0].offerings[0].key();
        h.record_launch_failure(&key, "InsufficientInstanceCapacity", s.taken_at);
        let plan = crate::planner::plan(&s, &cfg, &h, s.taken_at);
        let st = leader_status(&cfg, &s, &h, &plan);
        assert_eq!(st.mode, RunMode::Active);
        let llm = &st.pools[0];
        assert_eq!(llm.pending_pods, 2);
        assert_eq!(llm.backoffs.len(), 1, "{llm:?}");
        assert_eq!(llm.backoffs[0].offering, key);
        assert!(
            llm.actions
                .iter()
                .any(|a| matches!(a, Action::ScaleUp { .. }))
        );
        assert!(
            llm.decisions
                .iter()
                .any(|d| d.reason.code() == "pending_pods")
        );
        let other = &st.pools[1];
        assert!(other.paused);
        assert!(other.decisions.iter().any(|d| d.reason == Reason::Paused));
        assert_eq!(st.pods.iter().map(|g| g.count).sum::<u32>(), 2);
        // JSON round trip: what `gpupool status` reads is what the server wrote.
        let json = serde_json::to_string(&st).unwrap();
        let back: Status = serde_json::from_str(&json).unwrap();
        assert_eq!(back, st);
        let text = render(&st, s.taken_at);
        assert!(text.contains("llm") && text.contains("paused"), "{text}");
        assert!(text.contains("backoff: "), "{text}");
    }

    #[test]
    fn unknown_prices_are_shown_not_summed_as_zero() {
        use crate::model::CapacityType;
        let s = snapshot()
            .group(group("g", "llm").offering(
                offering("g5.xlarge", CapacityType::OnDemand, "ap-east-2a", 1.0).unpriced(),
            ))
            .pending(gpu_pod(1).name("a"))
            .build();
        let h = History::default();
        // (max_cost_per_hour, unpriced nodes planned, decision expected)
        for (cap, unpriced, code) in [(None, 1, "pending_pods"), (Some(50.0), 0, "price_unknown")] {
            let mut pool = pool_cfg("llm");
            pool.limits.max_cost_per_hour = cap.map(crate::model::Money::from_dollars);
            let cfg = config(vec![pool]);
            let plan = crate::planner::plan(&s, &cfg, &h, s.taken_at);
            let st = leader_status(&cfg, &s, &h, &plan);
            let p = &st.pools[0];
            assert_eq!(p.unpriced_nodes, unpriced, "{cap:?}");
            assert_eq!(
                p.cost_per_hour,
                Money::ZERO,
                "unknown is not summed as a price"
            );
            assert!(
                p.decisions.iter().any(|d| d.reason.code() == code),
                "{cap:?}: {p:?}"
            );
            let text = render(&st, s.taken_at);
            assert_eq!(text.contains("+ 1 unpriced"), unpriced == 1, "{text}");
        }
    }
}
