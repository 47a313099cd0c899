//! Eligible offerings of a pool, and the node template each would register.
//!
//! Every (group, offering) pair of the pool becomes a [`Template`] with a [`Status`]:
//! - `Usable`: meets the requirements and can be launched now;
//! - `Unusable`: meets the requirements but is unavailable, in backoff or above the spot price
//!   cap — kept so fallback reasons can name it and in-flight instances of it still count;
//! - `NotAllowed`: outside the pool's requirements — kept only so instances already running on
//!   it count as capacity.
//!
//! Each offering that is not usable gets exactly one decision naming the failed constraint.

use super::capacity::effective_price;
use super::fit::Caps;
use crate::config::PoolConfig;
use crate::model::{
    CapacityType, Decision, History, NodeGroup, Offering, OfferingKey, Outcome, Price, Reason,
    Subject, Taint, Timestamp, labels,
};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Status {
    Usable,
    Unusable(Reason),
    NotAllowed,
}

/// One way to add a node to the pool: a group's offering and the node it would register.
#[derive(Clone, Debug)]
pub(crate) struct Template<'a> {
    /// Index of the group in the pool's group list.
    pub group: usize,
    pub group_ref: &'a NodeGroup,
    pub offering: &'a Offering,
    pub key: OfferingKey,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub caps: Caps<'a>,
    /// The offering's price; unknown in its region sorts last (see [`Price`]).
    pub price: Price,
    /// Price × (1 + risk × interruption penalty): what capacity choice compares.
    pub eff_price: Price,
    /// Serving replicas one node of this offering holds (0: cannot serve a replica).
    pub rpn: u32,
    pub status: Status,
}

impl Template<'_> {
    pub fn usable(&self) -> bool {
        self.status == Status::Usable
    }
    pub fn capacity_type(&self) -> CapacityType {
        self.offering.capacity_type
    }
}

/// The first requirement the offering fails, if any.
pub(crate) fn requirement_miss(pool: &PoolConfig, o: &Offering) -> Option<String> {
    let r = &pool.requirements;
    let gpu = &o.instance_type.gpu;
    if !r.gpu_models.is_empty() && !r.gpu_models.contains(&gpu.model) {
        return Some(format!(
            "GPU model {} not in {}",
            gpu.model,
            r.gpu_models.join(",")
        ));
    }
    if let Some(n) = r.gpus_per_node
        && gpu.count != n
    {
        return Some(format!("has {} GPUs, pool wants {n} per node", gpu.count));
    }
    if let Some(gib) = r.min_gpu_memory_gib
        && gpu.memory_mib_per_gpu < u64::from(gib) * 1024
    {
        return Some(format!(
            "{} MiB per GPU, pool wants at least {gib} GiB",
            gpu.memory_mib_per_gpu
        ));
    }
    if !r.zones.is_empty() && !r.zones.iter().any(|z| z == o.zone.as_str()) {
        return Some(format!("zone {} not in {}", o.zone, r.zones.join(",")));
    }
    if let Some(m) = &r.mig
        && m.strategy == crate::config::MigStrategy::Single
        && Caps::with_mig(&o.instance_type, Some(m)).is_none()
    {
        return Some(format!(
            "MIG profile {} (strategy single) not offered by {}",
            m.profiles.first().map_or("-", String::as_str),
            gpu.model
        ));
    }
    if !r.instance_types.is_empty()
        && !r
            .instance_types
            .iter()
            .any(|t| t == o.instance_type.name.as_str())
    {
        return Some(format!(
            "instance type {} not in {}",
            o.instance_type.name,
            r.instance_types.join(",")
        ));
    }
    None
}

/// Why a requirement-meeting offering cannot be launched now, if it cannot.
fn usability_miss(
    pool: &PoolConfig,
    o: &Offering,
    key: &OfferingKey,
    history: &History,
    now: Timestamp,
) -> Option<Reason> {
    if !o.available {
        return Some(Reason::OfferingUnavailable {
            offering: key.clone(),
        });
    }
    if let Some(b) = history.in_backoff(key, now) {
        return Some(Reason::OfferingInBackoff {
            offering: key.clone(),
            until: b.until,
            error: b.last_error.clone(),
        });
    }
    if o.capacity_type == CapacityType::Spot
        && let Some(max) = pool.capacity.max_spot_price_per_hour
    {
        match o.price_per_hour {
            Price::Known(price) if price > max => {
                return Some(Reason::AboveMaxPrice {
                    offering: key.clone(),
                    price,
                    max,
                });
            }
            // Unknown is not zero: it cannot be shown to be under the cap.
            Price::Unknown => {
                return Some(Reason::PriceUnknown {
                    offering: key.clone(),
                    max_per_hour: max,
                });
            }
            Price::Known(_) => {}
        }
    }
    None
}

/// Replicas one node of this instance type serves.
pub(crate) fn replicas_per_node(pool: &PoolConfig, o: &Offering) -> u32 {
    // The config's own figure when it sets one per instance; `gpus_per_node` already limits
    // the offerings to that GPU count, so the arithmetic below agrees with it.
    if let Some(n) = pool.replica.replicas_per_instance {
        return n;
    }
    let t = &o.instance_type;
    let mut n = t.gpu.count / pool.replica.gpus.max(1);
    // A zero request (None from checked_div) does not limit the count.
    if let Some(by_cpu) = (u64::from(t.vcpu) * 1000).checked_div(pool.replica.cpu_milli) {
        n = n.min(u32::try_from(by_cpu).unwrap_or(u32::MAX));
    }
    if let Some(by_mem) = t.memory_mib.checked_div(pool.replica.memory_mib) {
        n = n.min(u32::try_from(by_mem).unwrap_or(u32::MAX));
    }
    n
}

/// Labels a node of this offering registers: the group's, then the pool's, then the
/// well-known ones (which win, so a group label cannot lie about the instance type).
pub(crate) fn node_labels(
    pool: &PoolConfig,
    g: &NodeGroup,
    o: &Offering,
) -> BTreeMap<String, String> {
    let mut l = g.labels.clone();
    l.extend(
        pool.requirements
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    let t = &o.instance_type;
    l.insert(labels::INSTANCE_TYPE.into(), t.name.to_string());
    l.insert(labels::ZONE.into(), o.zone.to_string());
    l.insert(
        labels::CAPACITY_TYPE.into(),
        o.capacity_type.as_str().into(),
    );
    l.insert(labels::GPU_MODEL.into(), t.gpu.model.clone());
    l.insert(labels::GPU_COUNT.into(), t.gpu.count.to_string());
    l.insert(labels::POOL.into(), pool.name.to_string());
    l
}

/// All templates of the pool's groups, sorted by effective price (then key, then group) so
/// "the cheapest that fits" is the first that fits. Decisions for unusable offerings are
/// appended to `decisions`, one per offering key.
pub(crate) fn templates<'a>(
    pool: &'a PoolConfig,
    groups: &[&'a NodeGroup],
    history: &History,
    now: Timestamp,
    decisions: &mut Vec<Decision>,
) -> Vec<Template<'a>> {
    let mut out = Vec::new();
    let mut reported = BTreeSet::new();
    for (gi, g) in groups.iter().enumerate() {
        let mut taints = g.taints.clone();
        taints.extend(pool.requirements.taints.iter().cloned());
        for o in &g.offerings {
            let key = o.key();
            let status = if let Some(constraint) = requirement_miss(pool, o) {
                if reported.insert(key.clone()) {
                    decisions.push(Decision {
                        subject: Subject::Offering(key.clone()),
                        outcome: Outcome::Blocked,
                        reason: Reason::OfferingNotAllowed {
                            offering: key.clone(),
                            constraint,
                        },
                    });
                }
                Status::NotAllowed
            } else if let Some(r) = usability_miss(pool, o, &key, history, now) {
                if reported.insert(key.clone()) {
                    decisions.push(Decision {
                        subject: Subject::Offering(key.clone()),
                        outcome: Outcome::Blocked,
                        reason: r.clone(),
                    });
                }
                Status::Unusable(r)
            } else {
                Status::Usable
            };
            out.push(Template {
                group: gi,
                group_ref: g,
                offering: o,
                labels: node_labels(pool, g, o),
                taints: taints.clone(),
                // A `single` profile this GPU lacks is a requirement miss (NotAllowed above).
                caps: Caps::with_mig(&o.instance_type, pool.requirements.mig.as_ref())
                    .unwrap_or_else(|| Caps::of(&o.instance_type)),
                price: o.price_per_hour,
                eff_price: effective_price(pool, o, &key, history),
                rpn: replicas_per_node(pool, o),
                key,
                status,
            });
        }
    }
    set_aside_interrupted(&mut out, history, now, decisions);
    out.sort_by(|a, b| {
        (a.eff_price, &a.key, &a.group_ref.id).cmp(&(b.eff_price, &b.key, &b.group_ref.id))
    });
    out
}

/// Spot offerings whose instance got an interruption warning in the last 3 minutes
/// ([`History::interrupted_aside`]) are set aside while another offering of the pool is usable:
/// the replacement goes there at once. When none is, they stay usable — a launch into capacity
/// being reclaimed may still succeed, and no launch at all certainly leaves the pool short
/// (Karpenter's cache blocks the offering outright; gpupool keeps it as the last resort).
fn set_aside_interrupted(
    out: &mut [Template<'_>],
    history: &History,
    now: Timestamp,
    decisions: &mut Vec<Decision>,
) {
    if history.interrupted_until.is_empty() {
        return;
    }
    let aside = |t: &Template<'_>| history.interrupted_aside(&t.key, now);
    if !out.iter().any(|t| t.usable() && aside(t).is_none())
        || !out.iter().any(|t| t.usable() && aside(t).is_some())
    {
        return;
    }
    let mut reported = BTreeSet::new();
    for t in out.iter_mut().filter(|t| t.usable()) {
        let Some(until) = aside(t) else { continue };
        let reason = Reason::OfferingInBackoff {
            offering: t.key.clone(),
            until,
            error: "an instance of this offering got a spot interruption warning".into(),
        };
        if reported.insert(t.key.clone()) {
            decisions.push(Decision {
                subject: Subject::Offering(t.key.clone()),
                outcome: Outcome::Blocked,
                reason: reason.clone(),
            });
        }
        t.status = Status::Unusable(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::fixtures::*;

    #[test]
    fn each_failed_constraint_is_named() {
        let mut pool = pool_cfg("llm");
        pool.requirements.gpu_models = vec!["H100".into(), "A10G".into()];
        pool.requirements.zones = vec!["us-east-1a".into()];
        pool.capacity.max_spot_price_per_hour = Some(crate::model::Money::from_dollars(1.0));
        let g = group("g", "llm")
            .offering(offering("g5.xlarge", CapacityType::Spot, "us-east-1a", 0.5))
            .offering(offering(
                "g5.2xlarge",
                CapacityType::Spot,
                "us-east-1a",
                1.5,
            ))
            .offering(offering(
                "g5.4xlarge",
                CapacityType::Spot,
                "us-east-1b",
                0.5,
            ))
            .offering(offering("g6.xlarge", CapacityType::Spot, "us-east-1a", 0.5))
            .offering(
                offering("g5.8xlarge", CapacityType::OnDemand, "us-east-1a", 2.0).unavailable(),
            )
            .offering(offering(
                "g5.12xlarge",
                CapacityType::OnDemand,
                "us-east-1a",
                5.0,
            ))
            .build();
        let mut history = History::default();
        let backed_off = offering("g5.12xlarge", CapacityType::OnDemand, "us-east-1a", 5.0).key();
        history.record_launch_failure(&backed_off, "InsufficientInstanceCapacity", T0);
        let mut decisions = Vec::new();
        let ts = templates(&pool, &[&g], &history, T0, &mut decisions);
        assert_eq!(ts.len(), 6);
        let usable: Vec<_> = ts
            .iter()
            .filter(|t| t.usable())
            .map(|t| t.key.to_string())
            .collect();
        assert_eq!(usable, vec!["g5.xlarge/spot/us-east-1a"]);
        let codes: Vec<_> = decisions.iter().map(|d| d.reason.code()).collect();
        assert_eq!(
            codes,
            vec![
                "above_max_price",
                "offering_not_allowed",
                "offering_not_allowed",
                "offering_unavailable",
                "offering_in_backoff"
            ]
        );
        let texts: Vec<_> = decisions.iter().map(|d| d.reason.to_string()).collect();
        assert!(
            texts[1].contains("zone us-east-1b not in us-east-1a"),
            "{texts:?}"
        );
        assert!(
            texts[2].contains("GPU model L4 not in H100,A10G"),
            "{texts:?}"
        );
    }

    #[test]
    fn template_carries_well_known_labels_and_both_taint_sets() {
        let mut pool = pool_cfg("llm");
        pool.requirements.labels.insert("team".into(), "ml".into());
        pool.requirements.taints.push(gpu_taint());
        let g = group("g", "llm")
            .label("tier", "gold")
            .taint(Taint {
                key: "dedicated".into(),
                value: "llm".into(),
                effect: crate::model::TaintEffect::NoSchedule,
            })
            .offering(offering(
                "p5.48xlarge",
                CapacityType::OnDemand,
                "us-east-1a",
                98.32,
            ))
            .build();
        let ts = templates(&pool, &[&g], &History::default(), T0, &mut Vec::new());
        let l = &ts[0].labels;
        assert_eq!(l["tier"], "gold");
        assert_eq!(l["team"], "ml");
        assert_eq!(l[labels::INSTANCE_TYPE], "p5.48xlarge");
        assert_eq!(l[labels::GPU_MODEL], "H100");
        assert_eq!(l[labels::GPU_COUNT], "8");
        assert_eq!(l[labels::CAPACITY_TYPE], "on-demand");
        assert_eq!(l[labels::POOL], "llm");
        assert_eq!(ts[0].taints.len(), 2);
        assert_eq!(ts[0].rpn, 8);
    }

    #[test]
    fn replicas_per_node_uses_override_then_gpu_arithmetic() {
        let mut pool = pool_cfg("llm");
        let o = offering("p5.48xlarge", CapacityType::OnDemand, "us-east-1a", 98.32).build();
        pool.replica.gpus = 2;
        assert_eq!(replicas_per_node(&pool, &o), 4);
        pool.replica.gpus = 3;
        assert_eq!(replicas_per_node(&pool, &o), 2);
        pool.replica.replicas_per_instance = Some(1);
        assert_eq!(replicas_per_node(&pool, &o), 1);
    }
}
