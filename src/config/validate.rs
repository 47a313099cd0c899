//! Whole-config validation: every mistake, with its path, value and fix.

use super::raw::{RawConfig, RawCron, RawPool, RawSignal};
use super::{
    CapacityPolicy, Config, CronSignal, CronWindow, Limits, Mode, PoolConfig, PricingConfig,
    ProviderKind, Share, Signal, SignalSource,
};
use crate::model::{Money, PoolName};
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

/// One mistake: where, and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}{}", if path.is_empty() || path == "." { "config" } else { path }, line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Parse {
        path: String,
        line: Option<usize>,
        message: String,
    },
    #[error("{} mistake(s) in config:\n{}", .0.len(), .0.iter().map(|i| format!("  {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Issue>),
}

impl ConfigError {
    /// The individual mistakes (one for a parse error).
    pub fn issues(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid(v) => v.iter().map(|i| i.to_string()).collect(),
            other => vec![other.to_string()],
        }
    }
}

struct Check {
    issues: Vec<Issue>,
}

impl Check {
    fn fail(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.issues.push(Issue {
            path: path.into(),
            message: message.into(),
        });
    }
    fn range_f(&mut self, path: String, v: f64, lo: f64, hi: f64, what: &str) {
        if !v.is_finite() || v < lo || v > hi {
            self.fail(path, format!("must be in {lo}..={hi} ({what}), got {v}"));
        }
    }
    fn positive_f(&mut self, path: String, v: f64, what: &str) {
        if !v.is_finite() || v <= 0.0 {
            self.fail(path, format!("must be a number above 0 ({what}), got {v}"));
        }
    }
    fn non_negative_f(&mut self, path: String, v: f64, what: &str) {
        if !v.is_finite() || v < 0.0 {
            self.fail(path, format!("must be 0 or more ({what}), got {v}"));
        }
    }
    fn range_u(&mut self, path: String, v: u64, lo: u64, hi: u64, what: &str) {
        if v < lo || v > hi {
            self.fail(path, format!("must be in {lo}..={hi} ({what}), got {v}"));
        }
    }
    fn url(&mut self, path: String, v: &str) {
        if !(v.starts_with("http://") || v.starts_with("https://")) || v.len() < 10 {
            self.fail(
                path,
                format!("must be an http:// or https:// URL, got {v:?}"),
            );
        }
    }
}

/// Check `cfg` as a whole and build the typed [`Config`] from it: every mistake, or a config
/// that has passed every check.
///
/// `fed_elsewhere`: pools whose demand comes from outside the config (a simulator scenario's
/// queue signals), so a VM-only pool there needs no signal of its own.
pub(super) fn validate(
    cfg: &RawConfig,
    fed_elsewhere: &BTreeSet<PoolName>,
) -> Result<Config, Vec<Issue>> {
    let mut c = Check { issues: Vec::new() };
    c.range_u(
        "tick_interval_s".into(),
        cfg.tick_interval_s,
        1,
        3600,
        "seconds between ticks",
    );

    provider_section(&mut c, cfg);
    if cfg.sim.is_some() {
        c.fail("sim", SIM_IN_PRODUCTION);
    }

    if let Some(p) = &cfg.state.path
        && (p.trim().is_empty() || p.ends_with('/'))
    {
        c.fail(
            "state.path",
            format!("must name a file such as /var/lib/gpupool/state.json, got {p:?}"),
        );
    }
    let d = cfg.pricing.discount;
    if !d.is_finite() || !(0.0..1.0).contains(&d) {
        c.fail(
            "pricing.discount",
            format!(
                "must be at least 0 and below 1 (the fraction taken off on-demand prices, e.g. \
                 0.28 for a 28 % Savings Plan), got {d}"
            ),
        );
    }
    if cfg.metrics.listen.parse::<std::net::SocketAddr>().is_err() {
        c.fail(
            "metrics.listen",
            format!(
                "must be an address:port such as 0.0.0.0:8080, got {:?}",
                cfg.metrics.listen
            ),
        );
    }
    for (i, s) in cfg.kubernetes.shared_gpu_resources.iter().enumerate() {
        if s.replicas_per_gpu == 0 {
            c.fail(
                format!("kubernetes.shared_gpu_resources[{i}].replicas_per_gpu"),
                "must be at least 1 (the device plugin's replicas setting)",
            );
        }
    }
    if cfg.kubernetes.gpu_resources.is_empty() && cfg.mode == Mode::Kubernetes {
        c.fail(
            "kubernetes.gpu_resources",
            "must list at least one resource, e.g. nvidia.com/gpu",
        );
    }

    if cfg.pools.is_empty() {
        c.fail("pools", "must define at least one pool");
    }
    // Credentials, TLS and headers of every Prometheus endpoint (signals, latency, in-flight).
    let aws_region = cfg.aws.as_ref().map(|a| a.region.as_str());
    for (path, access) in prometheus_endpoints(cfg) {
        c.issues
            .extend(super::access::errors(aws_region, &path, access));
    }
    let mut names = BTreeSet::new();
    let mut pools = Vec::with_capacity(cfg.pools.len());
    for (i, p) in cfg.pools.iter().enumerate() {
        if !names.insert(p.name.as_str()) {
            c.fail(
                format!("pools[{i}].name"),
                format!("duplicate pool name {:?}", p.name.as_str()),
            );
        }
        let signals = pool(&mut c, cfg, i, p, fed_elsewhere.contains(&p.name));
        pools.extend(typed_pool(p, signals));
    }
    // Every value the typed config narrows (shares) was checked above: a failure here has its
    // issue already.
    let discount = Share::new(cfg.pricing.discount);
    let (true, Some(discount)) = (c.issues.is_empty(), discount) else {
        return Err(c.issues);
    };
    Ok(Config {
        provider: cfg.provider,
        mode: cfg.mode,
        tick_interval: std::time::Duration::from_secs(cfg.tick_interval_s),
        aws: cfg.aws.clone(),
        gcp: cfg.gcp.clone(),
        kubernetes: cfg.kubernetes.clone(),
        metrics: cfg.metrics.clone(),
        state: cfg.state.clone(),
        dry_run: cfg.dry_run,
        pricing: PricingConfig { discount },
        pools,
    })
}

/// Every Prometheus endpoint the raw config names, with its path, in the order the typed
/// [`Config::prometheus_endpoints`] lists them.
fn prometheus_endpoints(cfg: &RawConfig) -> Vec<(String, super::PrometheusAccess<'_>)> {
    let mut out = Vec::new();
    for (i, p) in cfg.pools.iter().enumerate() {
        for (j, s) in p.signals.iter().enumerate() {
            if let Some(q) = &s.prometheus {
                out.push((format!("pools[{i}].signals[{j}].prometheus"), q.access()));
            }
            if let Some(l) = &s.latency {
                out.push((format!("pools[{i}].signals[{j}].latency"), l.access()));
            }
        }
        if let Some(q) = &p.in_flight_query {
            out.push((format!("pools[{i}].in_flight_query"), q.access()));
        }
    }
    out
}

/// The typed pool: the raw one's sections with its checked signals, prices as [`Money`] and
/// the spot share a [`Share`]; `None` when a value is out of range (its issue is recorded).
fn typed_pool(p: &RawPool, signals: Vec<Signal>) -> Option<PoolConfig> {
    let (cap, lim) = (&p.capacity, &p.limits);
    let capacity = CapacityPolicy {
        on_demand_base: cap.on_demand_base,
        spot_share: Share::new(cap.spot_share)?,
        fallback: cap.fallback.clone(),
        max_spot_price_per_hour: cap.max_spot_price_per_hour.map(Money::from_dollars),
        interruption_penalty_hours: cap.interruption_penalty_hours,
    };
    let limits = Limits {
        min_nodes: lim.min_nodes,
        max_nodes: lim.max_nodes,
        max_cost_per_hour: lim.max_cost_per_hour.map(Money::from_dollars),
    };
    Some(PoolConfig {
        name: p.name.clone(),
        requirements: p.requirements.clone(),
        replica: p.replica.clone(),
        capacity,
        warm_pool: super::WarmPoolPolicy {
            enabled: Some(p.warm_pool.resolved(p.slo.is_some(), p.scale_up.cold_start)),
            ..p.warm_pool.clone()
        },
        limits,
        disruption: p.disruption.clone(),
        scale_up: p.scale_up.clone(),
        model_cache: p.model_cache.clone(),
        signals,
        forecast: p.forecast.clone(),
        slo: p.slo.clone(),
        health_url: p.health_url.clone(),
        deregister_command: p.deregister_command.clone(),
        in_flight_query: p.in_flight_query.clone(),
        paused: p.paused,
        scale_down: p.scale_down.clone(),
    })
}

/// `aws` / `gcp`: the section the provider needs, checked.
fn provider_section(c: &mut Check, cfg: &RawConfig) {
    match cfg.provider {
        ProviderKind::Aws => match &cfg.aws {
            None => c.fail("aws", "required when provider is aws: add `aws: { region: us-east-1 }`"),
            Some(a) => {
                if a.region.trim().is_empty() {
                    c.fail("aws.region", "must name a region, e.g. us-east-1");
                }
                if let Some(u) = &a.endpoint_url {
                    c.url("aws.endpoint_url".into(), u);
                }
                if let Some(u) = &a.interruption_queue_url {
                    c.url("aws.interruption_queue_url".into(), u);
                }
                c.range_u("aws.api_timeout_s".into(), a.api_timeout.as_secs(), 1, 300, "per-call timeout");
            }
        },
        ProviderKind::Gcp => match &cfg.gcp {
            None => c.fail(
                "gcp",
                "required when provider is gcp: add `gcp: { project: my-project, region: us-central1 }`",
            ),
            Some(g) => {
                if g.project.trim().is_empty() {
                    c.fail("gcp.project", "must name a project id");
                }
                if g.region.trim().is_empty() {
                    c.fail("gcp.region", "must name a region, e.g. us-central1");
                }
                if let Some(u) = &g.endpoint_url {
                    c.url("gcp.endpoint_url".into(), u);
                }
                c.range_u("gcp.api_timeout_s".into(), g.api_timeout.as_secs(), 1, 300, "per-call timeout");
                c.range_u(
                    "gcp.operation_deadline_s".into(),
                    g.operation_deadline.as_secs(),
                    5,
                    3600,
                    "how long to wait for an operation",
                );
            }
        },
        ProviderKind::Sim => {}
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `pools[i].slo`: a wait that can be met, an attainment strictly between 0 and 1 (1 would
/// ask for capacity against every possible burst), and a usable attainment query.
fn slo_policy(c: &mut Check, at: &dyn Fn(&str) -> String, slo: &crate::config::SloPolicy) {
    c.range_f(
        at("slo.queue_wait_s"),
        slo.queue_wait_s,
        0.0,
        86_400.0,
        "seconds a request may wait before service starts",
    );
    if !(slo.attainment.is_finite() && slo.attainment > 0.0 && slo.attainment < 1.0) {
        c.fail(
            at("slo.attainment"),
            format!(
                "must be above 0 and below 1 (the fraction of requests meeting queue_wait_s, \
                 e.g. 0.99), got {}",
                slo.attainment
            ),
        );
    }
    if let Some(q) = &slo.attainment_query {
        measured_query(
            c,
            &|f| at(&format!("slo.attainment_query.{f}")),
            q,
            "the fraction of requests that met queue_wait_s",
        );
        if q.count_query.as_ref().is_some_and(|s| s.trim().is_empty()) {
            c.fail(
                at("slo.attainment_query.count_query"),
                "must be a PromQL query returning the number of requests the attainment covers \
                 (e.g. sum(increase(vllm:request_queue_time_seconds_count[10m]))), or be left out"
                    .to_owned(),
            );
        }
    }
}

/// An `AttainmentQuery`-shaped Prometheus query (`slo.attainment_query`,
/// `disruption.request_duration_query`): an http(s) URL, a query returning `returning`, its
/// range and its timeout. `at` names a field of the query.
fn measured_query(
    c: &mut Check,
    at: &dyn Fn(&str) -> String,
    q: &super::AttainmentQuery,
    returning: &str,
) {
    if !(q.url.starts_with("http://") || q.url.starts_with("https://")) {
        c.fail(
            at("url"),
            format!("must be an http(s) URL of Prometheus, got {:?}", q.url),
        );
    }
    if q.query.trim().is_empty() {
        c.fail(
            at("query"),
            format!("must be a PromQL query returning {returning}"),
        );
    }
    c.range_u(
        at("window_s"),
        q.window.as_secs(),
        10,
        86_400,
        "seconds the query's range covers",
    );
    c.range_u(
        at("timeout_s"),
        q.timeout.as_secs(),
        1,
        120,
        "seconds per query",
    );
}

/// `pools[i]`: every check of one pool, in the order its mistakes are reported; its signals
/// typed (those that passed).
fn pool(c: &mut Check, cfg: &RawConfig, i: usize, p: &RawPool, fed_elsewhere: bool) -> Vec<Signal> {
    let at = |f: &str| format!("pools[{i}].{f}");
    if !is_dns_label(p.name.as_str()) {
        c.fail(
            at("name"),
            format!(
                "must be a DNS label (lowercase letters, digits, '-', at most 63), got {:?}; \
                 it becomes a tag and a GCP label value",
                p.name.as_str()
            ),
        );
    }
    requirements(c, cfg, &at, &p.requirements);
    replica(c, &at, p);
    capacity(c, &at, p);
    warm_pool(c, &at, p);
    limits(c, &at, &p.limits);
    disruption_budget(c, &at, &p.disruption.budget);
    disruption_timing(c, cfg, &at, p);
    scale_up(c, &at, p);
    instance_hooks(c, &at, p);
    signals(c, cfg, i, p, fed_elsewhere)
}

/// `pools[i].requirements`: GPU models, node shape, zones, instance types and MIG.
fn requirements(
    c: &mut Check,
    cfg: &RawConfig,
    at: &dyn Fn(&str) -> String,
    r: &super::Requirements,
) {
    for (j, m) in r.gpu_models.iter().enumerate() {
        if m.is_empty()
            || m.chars()
                .any(|ch| ch.is_ascii_lowercase() || ch.is_whitespace())
        {
            c.fail(
                at(&format!("requirements.gpu_models[{j}]")),
                format!("use the upper-case model name such as H100, A100, L4, got {m:?}"),
            );
        }
    }
    if let Some(n) = r.gpus_per_node {
        c.range_u(
            at("requirements.gpus_per_node"),
            n.into(),
            1,
            16,
            "GPUs on one node",
        );
    }
    if let Some(m) = r.min_gpu_memory_gib {
        c.range_u(
            at("requirements.min_gpu_memory_gib"),
            m.into(),
            1,
            1024,
            "GiB per GPU",
        );
    }
    for (j, z) in r.zones.iter().enumerate() {
        if z.trim().is_empty() {
            c.fail(
                at(&format!("requirements.zones[{j}]")),
                "must name a zone, e.g. us-east-1a",
            );
        } else if let Some(why) = zone_mistake(cfg, z) {
            c.fail(at(&format!("requirements.zones[{j}]")), why);
        }
    }
    for (j, m) in r.gpu_models.iter().enumerate() {
        if let Some(why) = gpu_model_mistake(cfg.provider, m) {
            c.fail(at(&format!("requirements.gpu_models[{j}]")), why);
        }
    }
    for (j, t) in r.instance_types.iter().enumerate() {
        if let Some(why) = instance_type_mistake(cfg.provider, t) {
            c.fail(at(&format!("requirements.instance_types[{j}]")), why);
        }
    }

    if let Some(m) = &r.mig {
        validate_mig(c, &at("requirements.mig"), m);
    }
}

/// `pools[i].replica`: GPUs per serving replica, which must fit on one node.
fn replica(c: &mut Check, at: &dyn Fn(&str) -> String, p: &RawPool) {
    let r = &p.requirements;
    if p.replica.gpus == 0 {
        c.fail(
            at("replica.gpus"),
            "must be at least 1 (GPUs one serving replica needs)",
        );
    } else if let Some(n) = r.gpus_per_node
        && p.replica.gpus > n
    {
        c.fail(
            at("replica.gpus"),
            format!(
                "a replica needs {} GPUs but nodes have {n} (requirements.gpus_per_node): \
                 lower replica.gpus or raise gpus_per_node",
                p.replica.gpus
            ),
        );
    }
    if p.replica.replicas_per_instance == Some(0) {
        c.fail(
            at("replica.replicas_per_instance"),
            "must be at least 1 when set",
        );
    }
}

/// `pools[i].capacity`: spot share, the fallback order it needs, prices and the on-demand base.
fn capacity(c: &mut Check, at: &dyn Fn(&str) -> String, p: &RawPool) {
    let cap = &p.capacity;
    c.range_f(
        at("capacity.spot_share"),
        cap.spot_share,
        0.0,
        1.0,
        "share of nodes above the base that may be spot",
    );
    if cap.fallback.is_empty() {
        c.fail(
            at("capacity.fallback"),
            "must list at least one capacity type: [spot, on-demand]",
        );
    }
    let uniq: BTreeSet<_> = cap.fallback.iter().collect();
    if uniq.len() != cap.fallback.len() {
        c.fail(
            at("capacity.fallback"),
            "lists a capacity type twice; use each of spot, on-demand once",
        );
    }
    if cap.spot_share > 0.0 && !cap.fallback.contains(&crate::model::CapacityType::Spot) {
        c.fail(
            at("capacity.fallback"),
            "spot_share is above 0 but fallback has no `spot`: add it or set spot_share: 0",
        );
    }
    if cap.spot_share < 1.0 && !cap.fallback.contains(&crate::model::CapacityType::OnDemand) {
        c.fail(
            at("capacity.fallback"),
            "spot_share is below 1 but fallback has no `on-demand`: add it or set spot_share: 1",
        );
    }
    if let Some(m) = cap.max_spot_price_per_hour {
        c.positive_f(
            at("capacity.max_spot_price_per_hour"),
            m,
            "dollars per hour",
        );
    }
    c.non_negative_f(
        at("capacity.interruption_penalty_hours"),
        cap.interruption_penalty_hours,
        "hours of price lost per interruption",
    );
    if cap.on_demand_base > p.limits.max_nodes {
        c.fail(
            at("capacity.on_demand_base"),
            format!(
                "{} is above limits.max_nodes {}: lower it or raise max_nodes",
                cap.on_demand_base, p.limits.max_nodes
            ),
        );
    }
}

/// `pools[i].warm_pool` (and `slo`, which sizes it): bounds and a warm start faster than a cold one.
fn warm_pool(c: &mut Check, at: &dyn Fn(&str) -> String, p: &RawPool) {
    let w = &p.warm_pool;
    let w_max = w.max_for(p.slo.is_some(), p.limits.max_nodes);
    if w.min > w_max {
        c.fail(
            at("warm_pool.min"),
            format!("{} is above warm_pool.max {}", w.min, w_max),
        );
    }
    if let Some(slo) = &p.slo {
        slo_policy(c, at, slo);
    }
    if let Some(cost) = w.standing_cost_per_hour
        && !(cost.is_finite() && (0.0..=100.0).contains(&cost))
    {
        c.fail(
            at("warm_pool.standing_cost_per_hour"),
            format!(
                "{cost} is not a price: dollars per hour one stopped warm instance costs (its \
                 disks), 0..=100"
            ),
        );
    }
    c.range_u(
        at("warm_pool.warm_start_s"),
        w.warm_start.as_secs(),
        1,
        1800,
        "seconds from warm start to serving",
    );
    if w.enabled == Some(true) && w.warm_start >= p.scale_up.cold_start {
        c.fail(
            at("warm_pool.warm_start_s"),
            format!(
                "{} s is not faster than scale_up.cold_start_s {} s: a warm pool would not help",
                w.warm_start.as_secs(),
                p.scale_up.cold_start.as_secs()
            ),
        );
    }
}

/// `pools[i].limits`: node and cost bounds.
fn limits(c: &mut Check, at: &dyn Fn(&str) -> String, l: &super::raw::RawLimits) {
    if l.max_nodes == 0 {
        c.fail(at("limits.max_nodes"), "must be at least 1");
    }
    if l.min_nodes > l.max_nodes {
        c.fail(
            at("limits.min_nodes"),
            format!("{} is above limits.max_nodes {}", l.min_nodes, l.max_nodes),
        );
    }
    if let Some(m) = l.max_cost_per_hour {
        c.positive_f(at("limits.max_cost_per_hour"), m, "dollars per hour");
    }
}

/// `pools[i].disruption.budget`: how many nodes voluntary disruption may take, and how often.
fn disruption_budget(c: &mut Check, at: &dyn Fn(&str) -> String, b: &super::DisruptionBudget) {
    if b.max_disrupted_at_once == 0 {
        c.fail(
            at("disruption.budget.max_disrupted_at_once"),
            "must be at least 1; to stop voluntary disruption set disruption.consolidation: false",
        );
    }
    if let Some(per_window) = b.max_per_window
        && per_window < b.max_disrupted_at_once
    {
        c.fail(
            at("disruption.budget.max_per_window"),
            format!(
                "{} is below max_disrupted_at_once {}",
                per_window, b.max_disrupted_at_once
            ),
        );
    }
    c.range_u(
        at("disruption.budget.window_s"),
        b.window.as_secs(),
        60,
        7 * 86_400,
        "seconds",
    );
}

/// `pools[i].disruption` timings: unneeded time, drains, deregistration and provisioning.
fn disruption_timing(c: &mut Check, cfg: &RawConfig, at: &dyn Fn(&str) -> String, p: &RawPool) {
    let d = &p.disruption;
    c.range_u(
        at("disruption.unneeded_time_s"),
        p.unneeded_time().as_secs(),
        0,
        86_400,
        "seconds a node must be unneeded",
    );
    c.range_u(
        at("disruption.drain_timeout_s"),
        d.drain_timeout.as_secs(),
        30,
        86_400,
        "seconds a drain may take",
    );
    if let Some(lead) = d.interruption_drain {
        interruption_drain(c, cfg, at, lead.as_secs());
    }
    if let Some(q) = &d.request_duration_query {
        measured_query(
            c,
            &|f| at(&format!("disruption.request_duration_query.{f}")),
            q,
            "the longest recent request duration in seconds",
        );
        if q.count_query.is_some() {
            c.fail(
                at("disruption.request_duration_query.count_query"),
                "only slo.attainment_query counts requests; remove it here".to_owned(),
            );
        }
    }
    c.range_u(
        at("disruption.deregister_give_up_s"),
        d.deregister_give_up.as_secs(),
        10,
        86_400,
        "seconds a drain retries a failing deregister_command before keeping the VM",
    );
    c.range_u(
        at("disruption.max_provision_time_s"),
        d.max_provision_time.as_secs(),
        60,
        7200,
        "seconds until a node must be serving",
    );
    if d.max_provision_time <= p.scale_up.cold_start {
        c.fail(
            at("disruption.max_provision_time_s"),
            format!(
                "{} s is not above scale_up.cold_start_s {} s: healthy nodes would be replaced while they boot",
                d.max_provision_time.as_secs(),
                p.scale_up.cold_start.as_secs()
            ),
        );
    }
}

/// `pools[i].disruption.interruption_drain_s`: a lead shorter than the cloud's interruption notice.
fn interruption_drain(c: &mut Check, cfg: &RawConfig, at: &dyn Fn(&str) -> String, lead: u64) {
    c.range_u(
        at("disruption.interruption_drain_s"),
        lead,
        5,
        600,
        "seconds before a spot reclaim to start draining; omit it to drain at the notice",
    );
    // The notice itself (`ProviderKind::spot_notice`): a lead at or above it drains at the
    // notice anyway.
    let cloud = match cfg.provider {
        ProviderKind::Aws => "AWS",
        ProviderKind::Gcp => "GCP",
        ProviderKind::Sim => "the simulated cloud",
    };
    if let Some(notice_s) = cfg.provider.spot_notice().map(|n| n.as_secs())
        && lead >= notice_s
    {
        c.fail(
            at("disruption.interruption_drain_s"),
            format!(
                "{lead} s is not shorter than {cloud}'s {notice_s} s interruption notice: the \
                 drain would start at the notice anyway; set it below {notice_s} or omit it"
            ),
        );
    }
}

/// `pools[i].scale_up` and `forecast`: launch timings, step size and the seasonal period.
fn scale_up(c: &mut Check, at: &dyn Fn(&str) -> String, p: &RawPool) {
    c.range_u(
        at("scale_up.cold_start_s"),
        p.scale_up.cold_start.as_secs(),
        1,
        7200,
        "seconds from launch to serving",
    );
    c.range_u(
        at("scale_up.launch_timeout_s"),
        p.scale_up.launch_timeout.as_secs(),
        30,
        3600,
        "seconds a requested launch may show neither an instance nor an error",
    );
    if p.scale_up.max_nodes_per_tick == 0 {
        c.fail(at("scale_up.max_nodes_per_tick"), "must be at least 1");
    }
    if p.forecast.season < Duration::from_secs(3600) {
        c.fail(
            at("forecast.season_s"),
            format!(
                "must be at least 3600 (a seasonal period), got {}",
                p.forecast.season.as_secs()
            ),
        );
    }
}

/// `pools[i]` per-instance hooks: model cache, health URL, deregister command, in-flight query.
fn instance_hooks(c: &mut Check, at: &dyn Fn(&str) -> String, p: &RawPool) {
    if let Some(mc) = &p.model_cache {
        let ok = mc
            .split_once('@')
            .is_some_and(|(m, v)| !m.is_empty() && !v.is_empty());
        if !ok {
            c.fail(
                at("model_cache"),
                format!("must be <model>@<version>, e.g. llama-70b@v3, got {mc:?}"),
            );
        }
    }
    if let Some(u) = &p.health_url {
        c.url(at("health_url"), u);
        if !u.contains("{ip}") {
            c.fail(
                at("health_url"),
                "must contain {ip}, replaced by each instance's private IP",
            );
        }
    }
    if let Some(cmd) = &p.deregister_command
        && cmd.is_empty()
    {
        c.fail(
            at("deregister_command"),
            "must name a program, e.g. [\"/usr/local/bin/deregister\", \"{id}\"]",
        );
    }

    if let Some(q) = &p.in_flight_query {
        c.url(at("in_flight_query.url"), &q.url);
        if !(q.query.contains("{instance}") || q.query.contains("{ip}")) {
            c.fail(
                at("in_flight_query.query"),
                "must contain {instance} or {ip} so it selects one instance's series",
            );
        }
    }
}

/// `pools[i].signals`: VM-only pools need one (or a floor), and each signal is checked and
/// typed.
fn signals(
    c: &mut Check,
    cfg: &RawConfig,
    i: usize,
    p: &RawPool,
    fed_elsewhere: bool,
) -> Vec<Signal> {
    if cfg.mode == Mode::VmOnly && p.signals.is_empty() && p.limits.min_nodes == 0 && !fed_elsewhere
    {
        c.fail(
            format!("pools[{i}].signals"),
            "VM-only pools take demand from signals only: add a signal (prometheus, sqs, cloudwatch, cron) or set limits.min_nodes",
        );
    }
    p.signals
        .iter()
        .enumerate()
        .filter_map(|(j, s)| signal(c, cfg, &format!("pools[{i}].signals[{j}]"), s, j))
        .collect()
}

/// Check one signal; the typed signal when it has exactly one source and that source is
/// usable (`None` after a mistake, which is recorded).
fn signal(c: &mut Check, cfg: &RawConfig, at: &str, s: &RawSignal, index: usize) -> Option<Signal> {
    let n = s.sources().count();
    if n != 1 {
        c.fail(
            at.to_string(),
            format!("must have exactly one source (prometheus, cloudwatch, sqs, cron, latency), found {n}"),
        );
    }
    let mut typed = Vec::new();
    if let Some(p) = &s.prometheus {
        prometheus_signal(c, at, p);
        typed.push(Some(SignalSource::Prometheus(p.clone())));
    }
    if let Some(p) = &s.latency {
        latency_signal(c, at, p);
        typed.push(Some(SignalSource::Latency(p.clone())));
    }
    if let Some(w) = &s.cloudwatch {
        cloudwatch_signal(c, cfg, at, w);
        typed.push(Some(SignalSource::CloudWatch(w.clone())));
    }
    if let Some(q) = &s.sqs {
        sqs_signal(c, cfg, at, q);
        typed.push(Some(SignalSource::Sqs(q.clone())));
    }
    if let Some(cr) = &s.cron {
        typed.push(cron_signal(c, at, cr).map(SignalSource::Cron));
    }
    if s.sim_queue.is_some() {
        c.fail(format!("{at}.sim_queue"), SIM_QUEUE_IN_PRODUCTION);
        typed.push(None);
    }
    match typed.as_slice() {
        [Some(source)] => Some(Signal {
            name: s.display_name(index),
            source: source.clone(),
        }),
        _ => None,
    }
}

/// `{at}.prometheus`: a Prometheus query over target_per_replica.
fn prometheus_signal(c: &mut Check, at: &str, p: &super::PrometheusSignal) {
    c.url(format!("{at}.prometheus.url"), &p.url);
    if p.query.trim().is_empty() {
        c.fail(
            format!("{at}.prometheus.query"),
            "must be a PromQL expression",
        );
    }
    c.positive_f(
        format!("{at}.prometheus.target_per_replica"),
        p.target_per_replica,
        "metric value one replica handles",
    );
    c.non_negative_f(
        format!("{at}.prometheus.activation"),
        p.activation,
        "value below which a pool at zero stays at zero",
    );
    c.range_u(
        format!("{at}.prometheus.stale_after_s"),
        p.stale_after.as_secs(),
        1,
        3600,
        "seconds",
    );
    c.range_u(
        format!("{at}.prometheus.timeout_s"),
        p.timeout.as_secs(),
        1,
        60,
        "seconds",
    );
}

/// `{at}.latency`: a latency query against its target.
fn latency_signal(c: &mut Check, at: &str, p: &super::LatencySignal) {
    c.url(format!("{at}.latency.url"), &p.url);
    if p.query.trim().is_empty() {
        c.fail(format!("{at}.latency.query"), "must be a PromQL expression");
    }
    c.positive_f(
        format!("{at}.latency.target"),
        p.target,
        "latency target in the query's unit",
    );
    c.range_u(
        format!("{at}.latency.stale_after_s"),
        p.stale_after.as_secs(),
        1,
        3600,
        "seconds",
    );
    c.range_u(
        format!("{at}.latency.timeout_s"),
        p.timeout.as_secs(),
        1,
        60,
        "seconds",
    );
}

/// `{at}.cloudwatch`: a CloudWatch metric, which needs AWS credentials.
fn cloudwatch_signal(c: &mut Check, cfg: &RawConfig, at: &str, w: &super::CloudWatchSignal) {
    if w.namespace.is_empty() || w.metric_name.is_empty() {
        c.fail(
            format!("{at}.cloudwatch"),
            "namespace and metric_name must be set",
        );
    }
    c.positive_f(
        format!("{at}.cloudwatch.target_per_replica"),
        w.target_per_replica,
        "metric value one replica handles",
    );
    c.non_negative_f(
        format!("{at}.cloudwatch.activation"),
        w.activation,
        "activation threshold",
    );
    if cfg.provider != ProviderKind::Aws && cfg.aws.is_none() {
        c.fail(
            format!("{at}.cloudwatch"),
            "needs AWS credentials and region: add an `aws:` section",
        );
    }
}

/// `{at}.sqs`: an SQS queue depth, which needs AWS credentials.
fn sqs_signal(c: &mut Check, cfg: &RawConfig, at: &str, q: &super::SqsSignal) {
    c.url(format!("{at}.sqs.queue_url"), &q.queue_url);
    c.positive_f(
        format!("{at}.sqs.target_per_replica"),
        q.target_per_replica,
        "messages one replica handles",
    );
    c.non_negative_f(
        format!("{at}.sqs.activation"),
        q.activation,
        "activation threshold",
    );
    if cfg.provider != ProviderKind::Aws && cfg.aws.is_none() {
        c.fail(
            format!("{at}.sqs"),
            "needs AWS credentials and region: add an `aws:` section",
        );
    }
}

/// `{at}.cron`: cron expressions with seconds and an IANA zone, parsed here once; the parsed
/// window when all of it is usable.
fn cron_signal(c: &mut Check, at: &str, cr: &RawCron) -> Option<CronSignal> {
    let mut parsed = [None, None];
    for (slot, (f, e)) in parsed
        .iter_mut()
        .zip([("start", &cr.start), ("end", &cr.end)])
    {
        let fields = e.split_whitespace().count();
        if !(6..=7).contains(&fields) {
            c.fail(
                format!("{at}.cron.{f}"),
                format!("must be a cron expression with seconds (6 or 7 fields, e.g. \"0 0 8 * * Mon-Fri\"), got {e:?}"),
            );
            continue;
        }
        match <cron::Schedule as std::str::FromStr>::from_str(e) {
            Ok(schedule) => *slot = Some(schedule),
            Err(err) => c.fail(
                format!("{at}.cron.{f}"),
                format!("is not a valid cron expression ({err}), got {e:?}; fields are sec min hour day-of-month month day-of-week [year], e.g. \"0 0 8 * * Mon-Fri\""),
            ),
        }
    }
    let mut usable = true;
    if cr.start.trim() == cr.end.trim() {
        c.fail(
            format!("{at}.cron.end"),
            format!("equals start ({:?}): the window would never open", cr.start),
        );
        usable = false;
    }
    let tz = super::cron::parse_tz(&cr.timezone);
    if tz.is_err() {
        c.fail(
            format!("{at}.cron.timezone"),
            format!(
                "must be an IANA time zone such as UTC or Europe/Paris, got {:?}",
                cr.timezone
            ),
        );
    }
    let [Some(start), Some(end)] = parsed else {
        return None;
    };
    let window = CronWindow::from_parsed(start, end, tz.ok()?, &cr.start, &cr.end);
    usable.then_some(CronSignal {
        window,
        desired: cr.desired,
    })
}

/// Why a live config may not have a `sim_queue` signal.
const SIM_QUEUE_IN_PRODUCTION: &str = "belongs to a simulator scenario (its `gpupool:` section), \
     not to a live config: the simulator's queue is no metric gpupool can read in production; \
     use prometheus, sqs, cloudwatch, cron or latency";

/// Why a live config may not have a `sim:` section.
const SIM_IN_PRODUCTION: &str = "belongs to a simulator scenario, not to a live config (`gpupool \
     run` never reads it; a scenario's top-level `seed:` seeds the simulator): remove it";

#[cfg(test)]
mod tests {
    use super::super::Config;
    use std::time::Duration;

    const VALID: &str = r#"
pools:
  - name: llama-70b
    requirements: { gpu_models: [H100], gpus_per_node: 8 }
    replica: { gpus: 8 }
    capacity: { on_demand_base: 1, spot_share: 0.5 }
"#;

    #[test]
    fn minimal_config_gets_operator_defaults() {
        let c = Config::load(VALID).unwrap();
        let p = &c.pools[0];
        assert_eq!(c.tick_interval, std::time::Duration::from_secs(10));
        assert_eq!(p.unneeded_time(), Duration::from_secs(600));
        assert_eq!(p.disruption.budget.max_disrupted_at_once, 1);
        assert_eq!(p.limits.max_nodes, 10);
        assert!(p.disruption.consolidation);
    }

    #[test]
    fn mig_policies_are_checked_against_the_catalog_and_the_strategy() {
        let bad = r#"
pools:
  - name: a
    requirements: { mig: { strategy: single, profiles: [1g.10gb, 3g.40gb] } }
  - name: b
    requirements: { mig: { strategy: mixed, profiles: [1G.10GB, 9g.1gb] } }
  - name: c
    requirements: { mig: { strategy: none, profiles: [1g.10gb] } }
"#;
        let issues = Config::load(bad).unwrap_err().issues();
        for e in [
            "pools[0].requirements.mig.profiles: strategy single partitions every GPU one way",
            "pools[1].requirements.mig.profiles[0]: no GPU has MIG profile \"1G.10GB\"; did you mean 1g.10gb?",
            "pools[1].requirements.mig.profiles[1]: no GPU in the built-in MIG catalog",
            "pools[2].requirements.mig.profiles: strategy none uses whole GPUs",
        ] {
            assert!(
                issues.iter().any(|i| i.starts_with(e)),
                "missing {e:?} in {issues:#?}"
            );
        }
        let ok = "pools:\n  - name: a\n    requirements: { mig: { strategy: single, profiles: [1g.10gb] } }\n";
        assert!(Config::load(ok).is_ok());
    }

    #[test]
    fn names_are_checked_against_what_the_clouds_call_things() {
        let bad = r#"
provider: aws
aws: { region: us-east-1 }
pools:
  - name: a
    requirements:
      gpu_models: [H1OO, A10]
      instance_types: [g5.xlargee, p5.48xlarge]
      zones: [us-east1-a, us-east-1b]
    disruption: { interruption_drain_s: 150 }
"#;
        let issues = Config::load(bad).unwrap_err().issues();
        for e in [
            "pools[0].requirements.gpu_models[0]: no GPU model \"H1OO\"; did you mean H100?",
            "pools[0].requirements.gpu_models[1]: AWS's A10 GPUs (g5) are named A10G",
            "pools[0].requirements.instance_types[0]: \"g5.xlargee\" is not an EC2 instance type; did you mean g5.xlarge?",
            "pools[0].requirements.zones[0]: \"us-east1-a\" is not a zone of us-east-1",
            "pools[0].disruption.interruption_drain_s: 150 s is not shorter than AWS's 120 s",
        ] {
            assert!(
                issues.iter().any(|i| i.starts_with(e)),
                "missing {e:?} in {issues:#?}"
            );
        }
        assert_eq!(issues.len(), 5, "{issues:#?}");
    }

    #[test]
    fn every_mistake_is_reported_with_its_path() {
        let bad = r#"
tick_interval_s: 0
pools:
  - name: Llama_70B
    requirements: { gpu_models: [h100], gpus_per_node: 4 }
    replica: { gpus: 8 }
    capacity: { spot_share: 1.5 }
    warm_pool: { min: 5, max: 2, standing_cost_per_hour: -1 }
"#;
        let err = Config::load(bad).unwrap_err();
        let issues = err.issues();
        let expect = [
            "tick_interval_s: must be in 1..=3600",
            "pools[0].name: must be a DNS label",
            "pools[0].requirements.gpu_models[0]: use the upper-case model name",
            "pools[0].replica.gpus: a replica needs 8 GPUs but nodes have 4",
            "pools[0].capacity.spot_share: must be in 0..=1",
            "pools[0].warm_pool.min: 5 is above warm_pool.max 2",
            "pools[0].warm_pool.standing_cost_per_hour: -1 is not a price",
        ];
        for e in expect {
            assert!(
                issues.iter().any(|i| i.starts_with(e)),
                "missing {e:?} in {issues:#?}"
            );
        }
        assert!(issues.iter().any(|i| i.contains("got 1.5")));
    }

    #[test]
    fn an_unset_warm_pool_is_on_for_an_slo_pool_where_it_helps() {
        let load = |extra: &str| {
            let yaml = format!("pools:\n  - name: a\n    requirements: {{}}\n{extra}");
            Config::load(&yaml).map(|c| c.pools[0].warm_pool.on())
        };
        let slo = "    slo: { queue_wait_s: 1.0, attainment: 0.99 }\n";
        // (pool text, warm pools sized)
        let cases = [
            (String::new(), false),
            (slo.to_string(), true),
            (format!("{slo}    warm_pool: {{ enabled: false }}\n"), false),
            ("    warm_pool: { enabled: true }\n".to_string(), true),
            // A warm start no faster than the cold start would not help: not turned on …
            (
                format!(
                    "{slo}    warm_pool: {{ warm_start_s: 200 }}\n    scale_up: {{ cold_start_s: 150 }}\n"
                ),
                false,
            ),
        ];
        for (text, on) in cases {
            assert_eq!(load(&text).unwrap(), on, "{text}");
        }
        // … and asking for it is an error naming the field.
        let err = load("    warm_pool: { enabled: true, warm_start_s: 200 }\n    scale_up: { cold_start_s: 150 }\n")
            .unwrap_err();
        assert!(
            err.issues()
                .iter()
                .any(|i| i.starts_with("pools[0].warm_pool.warm_start_s")),
            "{err}"
        );
    }

    #[test]
    fn request_duration_query_is_checked_field_by_field() {
        let pool = |q: &str| {
            format!(
                "pools:\n  - name: a\n    requirements: {{}}\n    disruption:\n      request_duration_query: {q}\n"
            )
        };
        let vllm = r#"{ url: "http://prometheus:9090", query: "histogram_quantile(1, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket[1h])))", window_s: 3600 }"#;
        let cfg = Config::load(&pool(vllm)).unwrap();
        let q = cfg.pools[0].disruption.request_duration_query.as_ref();
        assert_eq!(q.map(|q| q.window), Some(Duration::from_secs(3600)));
        assert_eq!(q.map(|q| q.timeout), Some(Duration::from_secs(5)));
        let at = |f: &str| format!("pools[0].disruption.request_duration_query.{f}");
        #[rustfmt::skip]
        let cases: [(&str, &str, Option<String>); 8] = [
            ("vLLM's e2e histogram, an hour", vllm, None),
            ("not a URL", r#"{ url: "prometheus:9090", query: q, window_s: 3600 }"#, Some(at("url: must be an http(s) URL"))),
            ("empty query", r#"{ url: "http://p:9090", query: " ", window_s: 3600 }"#, Some(at("query: must be a PromQL query returning the longest"))),
            ("window too short", r#"{ url: "http://p:9090", query: q, window_s: 5 }"#, Some(at("window_s: must be in 10..=86400"))),
            ("window too long", r#"{ url: "http://p:9090", query: q, window_s: 90000 }"#, Some(at("window_s: must be in 10..=86400"))),
            ("timeout zero", r#"{ url: "http://p:9090", query: q, window_s: 3600, timeout_s: 0 }"#, Some(at("timeout_s: must be in 1..=120"))),
            ("window is required", r#"{ url: "http://p:9090", query: q }"#, Some(at("window_s: is required"))),
            ("a count is the attainment's", r#"{ url: "http://p:9090", query: q, window_s: 3600, count_query: c }"#, Some(at("count_query: only slo.attainment_query counts requests"))),
        ];
        for (name, q, want) in cases {
            match (Config::load(&pool(q)), want) {
                (Ok(_), None) => {}
                (Err(e), Some(w)) => {
                    let text = e.to_string();
                    assert!(text.contains(&w), "{name}: wanted {w:?} in {text}");
                }
                (Ok(_), Some(w)) => panic!("{name}: accepted, wanted {w:?}"),
                (Err(e), None) => panic!("{name}: refused: {e}"),
            }
        }
    }

    #[test]
    fn slo_is_validated_field_by_field() {
        let ok = "pools:\n  - name: a\n    requirements: {}\n    slo: { queue_wait_s: 1.0, attainment: 0.99 }\n";
        let cfg = Config::load(ok).unwrap();
        let p = &cfg.pools[0];
        assert_eq!(p.slo.as_ref().map(|s| s.attainment), Some(0.99));
        // With an slo: warm pool up to max_nodes, unneeded time = cold start, no cool-down.
        assert_eq!(
            p.warm_pool.max_for(true, p.limits.max_nodes),
            p.limits.max_nodes
        );
        assert_eq!(p.unneeded_time(), p.scale_up.cold_start);
        assert_eq!(p.scale_down_delay_after_add(), Duration::ZERO);
        let bad = r#"
pools:
  - name: a
    requirements: {}
    slo:
      queue_wait_s: -1
      attainment: 1.0
      attainment_query: { url: "prometheus:9090", query: " ", window_s: 0, count_query: "" }
"#;
        let issues = Config::load(bad).unwrap_err().issues();
        for e in [
            "pools[0].slo.queue_wait_s: must be in 0..=86400",
            "pools[0].slo.attainment: must be above 0 and below 1",
            "pools[0].slo.attainment_query.url: must be an http(s) URL",
            "pools[0].slo.attainment_query.query: must be a PromQL query",
            "pools[0].slo.attainment_query.window_s: must be in 10..=86400",
            "pools[0].slo.attainment_query.count_query: must be a PromQL query returning the number",
        ] {
            assert!(
                issues.iter().any(|i| i.starts_with(e)),
                "missing {e:?} in {issues:#?}"
            );
        }
        let typo = "pools:\n  - name: a\n    requirements: {}\n    slo: { queue_wait: 1 }\n";
        let err = Config::load(typo).unwrap_err().to_string();
        assert!(
            err.contains("pools[0].slo") && err.contains("queue_wait"),
            "{err}"
        );
    }

    #[test]
    fn unknown_field_names_the_path() {
        let bad = "pools:\n  - name: a\n    requirements: {}\n    capacity: { spot_shar: 0.5 }\n";
        let err = Config::load(bad).unwrap_err().to_string();
        assert!(err.contains("pools[0].capacity"), "{err}");
        assert!(err.contains("spot_shar"), "{err}");
    }

    #[test]
    fn simulator_only_keys_are_refused_as_belonging_to_a_scenario() {
        let text = "sim: { seed: 3 }\nmode: vm-only\npools:\n  - name: a\n    requirements: {}\n    signals:\n      - name: q\n        sim_queue: { target_per_replica: 8 }\n";
        let issues = Config::load(text).unwrap_err().issues();
        for want in [
            "sim: belongs to a simulator scenario",
            "pools[0].signals[0].sim_queue: belongs to a simulator scenario",
        ] {
            assert!(
                issues.iter().any(|i| i.starts_with(want)),
                "missing {want:?} in {issues:#?}"
            );
        }
        // One message per key: not also "exactly one source" or "unknown key".
        assert_eq!(issues.len(), 2, "{issues:#?}");
    }

    #[test]
    fn signals_are_typed_with_their_names() {
        use crate::config::SignalSource;
        let text = "mode: vm-only\npools:\n  - name: a\n    requirements: {}\n    signals:\n      - cron: { start: \"0 0 8 * * *\", end: \"0 0 18 * * *\", desired: 2, timezone: Europe/Paris }\n      - name: waiting\n        prometheus: { url: \"http://prom:9090\", query: up, target_per_replica: 4 }\n";
        let cfg = Config::load(text).unwrap();
        let s = &cfg.pools[0].signals;
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "cron-0");
        match &s[0].source {
            SignalSource::Cron(c) => {
                assert_eq!(c.desired, 2);
                assert_eq!(c.window.tz(), chrono_tz::Europe::Paris);
                assert_eq!(c.window.start_text(), "0 0 8 * * *");
            }
            other => panic!("not cron: {other:?}"),
        }
        assert_eq!(s[1].name, "waiting");
        assert_eq!(s[1].source.kind(), "prometheus");
        // Fed from elsewhere (a scenario's queue), a VM-only pool needs no signal of its own.
        let bare = "mode: vm-only\npools:\n  - name: a\n    requirements: {}\n";
        assert!(Config::load(bare).is_err());
        let fed = std::iter::once(crate::model::PoolName::from("a")).collect();
        assert!(Config::load_with_demand_from(bare, &fed).is_ok());
    }

    #[test]
    fn provider_sections_are_required() {
        let err = Config::load("provider: aws\npools: []\n").unwrap_err();
        let issues = err.issues();
        assert!(issues.iter().any(|i| i.starts_with("aws: required")));
        assert!(issues.iter().any(|i| i.starts_with("pools: must define")));
    }
}

#[cfg(test)]
mod cron_tests {
    use super::super::Config;

    fn with_cron(start: &str, end: &str, tz: &str) -> Vec<String> {
        let text = format!(
            "mode: vm-only\npools:\n  - name: a\n    requirements: {{}}\n    signals:\n      - cron: {{ start: \"{start}\", end: \"{end}\", desired: 2, timezone: \"{tz}\" }}\n"
        );
        match Config::load(&text) {
            Ok(_) => Vec::new(),
            Err(e) => e.issues(),
        }
    }

    #[test]
    fn cron_expressions_and_zones_are_parsed_at_load() {
        assert!(with_cron("0 0 8 * * Mon-Fri", "0 0 18 * * Mon-Fri", "Europe/Paris").is_empty());
        let issues = with_cron("0 0 25 * * *", "0 0 8 * * Funday", "Mars/Olympus");
        let want = [
            "pools[0].signals[0].cron.start: is not a valid cron expression",
            "pools[0].signals[0].cron.end: is not a valid cron expression",
            "pools[0].signals[0].cron.timezone: must be an IANA time zone",
        ];
        for w in want {
            assert!(
                issues.iter().any(|i| i.starts_with(w)),
                "missing {w:?} in {issues:#?}"
            );
        }
        assert!(issues.iter().any(|i| i.contains("\"Mars/Olympus\"")));
        let same = with_cron("0 0 8 * * *", "0 0 8 * * *", "UTC");
        assert!(same.iter().any(|i| i.contains("never open")), "{same:#?}");
        let five = with_cron("0 8 * * *", "0 18 * * *", "UTC");
        assert!(
            five.iter().any(|i| i.contains("6 or 7 fields")),
            "{five:#?}"
        );
    }
}

/// `requirements.mig`: profile names as NVIDIA writes them (`1g.10gb`, `3g.40gb`,
/// `1g.10gb+me`) and as many as the strategy takes.
fn validate_mig(c: &mut Check, at: &str, m: &super::MigPolicy) {
    use super::MigStrategy;
    let known: std::collections::BTreeSet<String> = gpupool_provider::mig::all_profile_names();
    for (j, name) in m.profiles.iter().enumerate() {
        if !known.contains(name) {
            let near = known.iter().find(|k| {
                k.eq_ignore_ascii_case(name) || k.replace(".", "") == name.replace(".", "")
            });
            c.fail(
                format!("{at}.profiles[{j}]"),
                match near {
                    Some(k) => format!("no GPU has MIG profile {name:?}; did you mean {k}?"),
                    None => format!(
                        "no GPU in the built-in MIG catalog has profile {name:?} (NVIDIA's names look \
                         like 1g.10gb, 3g.40gb, 7g.80gb)"
                    ),
                },
            );
        }
    }
    match (m.strategy, m.profiles.len()) {
        (MigStrategy::None, n) if n > 0 => c.fail(
            format!("{at}.profiles"),
            "strategy none uses whole GPUs: remove the profiles or choose single/mixed",
        ),
        (MigStrategy::Single, n) if n != 1 => c.fail(
            format!("{at}.profiles"),
            format!(
                "strategy single partitions every GPU one way: name exactly one profile, got {n}"
            ),
        ),
        _ => {}
    }
}

/// GPU models as the providers name them (`GpuInfo::model`): EC2's GPU names and GCP's
/// accelerator types, normalised upper case.
const GPU_MODELS: &[&str] = &[
    "T4",
    "T4G",
    "A10G",
    "L4",
    "L40S",
    "A100",
    "H100",
    "H200",
    "B200",
    "GB200",
    "GH200",
    "V100",
    "P100",
    "P4",
    "K80",
    "M60",
    "A30",
    "A10",
    "RTX6000",
    "RTXPRO6000",
];

fn gpu_model_mistake(provider: ProviderKind, m: &str) -> Option<String> {
    if m.is_empty()
        || m.chars()
            .any(|ch| ch.is_ascii_lowercase() || ch.is_whitespace())
    {
        return None; // reported by the upper-case rule
    }
    if provider == ProviderKind::Aws && m == "A10" {
        return Some("AWS's A10 GPUs (g5) are named A10G: use A10G".into());
    }
    if GPU_MODELS.contains(&m) {
        return None;
    }
    let near = GPU_MODELS
        .iter()
        .map(|k| (strsim::damerau_levenshtein(m, k), k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d);
    Some(match near {
        Some((_, k)) => format!("no GPU model {m:?}; did you mean {k}?"),
        None => format!("no GPU model {m:?} (known: {})", GPU_MODELS.join(", ")),
    })
}

/// AWS instance types are `<family>.<size>`, sizes nano … 48xlarge, metal, metal-24xl.
fn instance_type_mistake(provider: ProviderKind, t: &str) -> Option<String> {
    if provider != ProviderKind::Aws {
        return None;
    }
    const SIZES: &[&str] = &[
        "nano", "micro", "small", "medium", "large", "xlarge", "metal",
    ];
    let Some((family, size)) = t.split_once('.') else {
        return Some(format!(
            "{t:?} is not an EC2 instance type (family.size, e.g. g5.xlarge)"
        ));
    };
    let size_ok = SIZES.contains(&size)
        || size
            .strip_suffix("xlarge")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        || size
            .strip_prefix("metal-")
            .and_then(|n| n.strip_suffix("xl"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let family_ok = !family.is_empty()
        && family.starts_with(|c: char| c.is_ascii_lowercase())
        && family
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if size_ok && family_ok {
        return None;
    }
    let near = SIZES
        .iter()
        .map(|s| (strsim::damerau_levenshtein(size, s), s))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d);
    Some(match near {
        Some((_, s)) if family_ok => {
            format!("{t:?} is not an EC2 instance type; did you mean {family}.{s}?")
        }
        _ => {
            format!("{t:?} is not an EC2 instance type (family.size, e.g. g5.xlarge, p5.48xlarge)")
        }
    })
}

/// Zones that cannot be in the configured region: AWS zones are the region plus a letter
/// (`us-east-1a`), GCP zones the region, a dash and a letter (`us-central1-a`).
fn zone_mistake(cfg: &RawConfig, z: &str) -> Option<String> {
    match cfg.provider {
        ProviderKind::Aws => {
            let region = cfg.aws.as_ref()?.region.as_str();
            let ok = z
                .strip_prefix(region)
                .is_some_and(|l| l.len() == 1 && l.bytes().all(|b| b.is_ascii_lowercase()));
            (!ok)
                .then(|| format!("{z:?} is not a zone of {region} (AWS zones look like {region}a)"))
        }
        ProviderKind::Gcp => {
            let region = cfg.gcp.as_ref()?.region.as_str();
            let ok = z
                .strip_prefix(region)
                .and_then(|r| r.strip_prefix('-'))
                .is_some_and(|l| l.len() == 1 && l.bytes().all(|b| b.is_ascii_lowercase()));
            (!ok).then(|| {
                format!("{z:?} is not a zone of {region} (GCP zones look like {region}-a)")
            })
        }
        ProviderKind::Sim => None,
    }
}
