//! Resource arithmetic: what one node of a template offers, what a pod takes, and why a pod
//! cannot go somewhere (the first failed constraint, for the reason text).
//!
//! GPUs are counted in *slots* whose meaning depends on how the node's GPUs are exposed: whole
//! cards, MIG slices of one profile, or time-sliced replicas. A node exposes its GPUs one way
//! (the device plugin is configured per node), so the first GPU pod placed on a fresh node fixes
//! the node's mode and later pods must use the same one.

use crate::config::{MigPolicy, MigStrategy};
use crate::model::{
    GpuRequest, InstanceType, LabelRequirement, MigProfile, PendingPod, RunningPod, Taint,
    TaintEffect, Toleration, tolerates_all,
};
use std::collections::BTreeMap;

/// The scheduling-relevant view of a pod (pending or running).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PodSpec<'a> {
    pub gpu: &'a GpuRequest,
    pub cpu_milli: u64,
    pub memory_mib: u64,
    pub node_selector: &'a BTreeMap<String, String>,
    pub affinity: &'a [Vec<LabelRequirement>],
    pub tolerations: &'a [Toleration],
}

impl<'a> PodSpec<'a> {
    pub fn pending(p: &'a PendingPod) -> Self {
        PodSpec {
            gpu: &p.gpu,
            cpu_milli: p.cpu_milli,
            memory_mib: p.memory_mib,
            node_selector: &p.node_selector,
            affinity: &p.affinity,
            tolerations: &p.tolerations,
        }
    }
    pub fn running(p: &'a RunningPod) -> Self {
        PodSpec {
            gpu: &p.gpu,
            cpu_milli: p.cpu_milli,
            memory_mib: p.memory_mib,
            node_selector: &p.node_selector,
            affinity: &p.affinity,
            tolerations: &p.tolerations,
        }
    }

    /// A scalar "size" for first-fit-decreasing: GPUs first (a MIG slice or a shared replica
    /// weighs a fraction of a card), then CPU, then memory.
    pub fn ffd_key(&self) -> (u64, u64, u64) {
        let gpu_milli = match self.gpu {
            GpuRequest::None => 0,
            GpuRequest::Whole { count } => u64::from(*count) * 1000,
            // The smallest common MIG slice is 1/7 of a card.
            GpuRequest::Mig { count, .. } => u64::from(*count) * 1000 / 7,
            GpuRequest::Shared {
                count,
                replicas_per_gpu,
            } => u64::from(*count) * 1000 / u64::from((*replicas_per_gpu).max(1)),
        };
        (gpu_milli, self.cpu_milli, self.memory_mib)
    }
}

/// How a node's GPUs are exposed once a GPU pod lands on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GpuUse<'a> {
    Free,
    Whole,
    Mig(&'a str),
    Shared(u32),
}

/// What one empty node of a template offers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caps<'a> {
    pub gpus: u32,
    pub cpu_milli: u64,
    pub memory_mib: u64,
    pub mig: &'a [MigProfile],
    /// MIG profiles the pool allows its nodes to use (`requirements.mig.profiles` under the
    /// `mixed` strategy); `None`: every profile in `mig`.
    pub mig_allowed: Option<&'a [String]>,
}

impl<'a> Caps<'a> {
    pub fn of(t: &'a InstanceType) -> Self {
        Caps {
            gpus: t.gpu.count,
            cpu_milli: u64::from(t.vcpu) * 1000,
            memory_mib: t.memory_mib,
            mig: &t.gpu.mig_profiles,
            mig_allowed: None,
        }
    }

    /// What a node of `t` offers under the pool's MIG policy. `single`: each GPU is split into
    /// the one profile and every slice is a `nvidia.com/gpu`, so whole-GPU requests count
    /// slices; `none`: no slices at all. `None` when `single` names a profile this GPU does
    /// not have (`requirement_miss` says so).
    pub fn with_mig(t: &'a InstanceType, policy: Option<&'a MigPolicy>) -> Option<Self> {
        let mut c = Caps::of(t);
        let Some(p) = policy else {
            return Some(c);
        };
        match p.strategy {
            MigStrategy::None => c.mig = &[],
            MigStrategy::Mixed => {
                if !p.profiles.is_empty() {
                    c.mig_allowed = Some(&p.profiles);
                }
            }
            MigStrategy::Single => {
                let want = p.profiles.first()?;
                let m = t.gpu.mig_profiles.iter().find(|m| &m.name == want)?;
                c.gpus = t.gpu.count.saturating_mul(m.per_gpu);
                c.mig = &[];
            }
        }
        Some(c)
    }

    /// (mode the request needs, slots a node of this shape has in that mode, slots needed), or
    /// `Err` naming what is missing. `Ok(None)` when the request takes no GPU.
    fn slots<'r>(&self, gpu: &'r GpuRequest) -> Result<Option<(GpuUse<'r>, u32, u32)>, Miss> {
        match gpu {
            GpuRequest::None | GpuRequest::Whole { count: 0 } => Ok(None),
            GpuRequest::Whole { count } => Ok(Some((GpuUse::Whole, self.gpus, *count))),
            GpuRequest::Mig { profile, count } => {
                let allowed = |m: &&MigProfile| {
                    &m.name == profile && self.mig_allowed.is_none_or(|a| a.contains(profile))
                };
                let Some(m) = self.mig.iter().find(allowed) else {
                    return Err(Miss::MigNotOffered(profile.clone()));
                };
                Ok(Some((
                    GpuUse::Mig(profile.as_str()),
                    self.gpus.saturating_mul(m.per_gpu),
                    *count,
                )))
            }
            GpuRequest::Shared {
                count,
                replicas_per_gpu,
            } => Ok(Some((
                GpuUse::Shared(*replicas_per_gpu),
                self.gpus.saturating_mul(*replicas_per_gpu),
                *count,
            ))),
        }
    }
}

/// Used room on one node (in flight, new, or serving).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Room<'a> {
    pub mode: GpuUse<'a>,
    pub slots_used: u32,
    pub cpu_used: u64,
    pub mem_used: u64,
}

impl<'a> Room<'a> {
    pub const EMPTY: Room<'static> = Room {
        mode: GpuUse::Free,
        slots_used: 0,
        cpu_used: 0,
        mem_used: 0,
    };

    /// How many pods of this shape (at most `limit`) still fit, resources only.
    pub fn fit_count(&self, caps: &Caps<'_>, pod: &PodSpec<'_>, limit: u32) -> u32 {
        let mut n = limit;
        match caps.slots(pod.gpu) {
            Err(_) => return 0,
            Ok(None) => {}
            Ok(Some((mode, cap, need))) => {
                let free = if self.mode == GpuUse::Free {
                    cap
                } else if same_mode(self.mode, mode) {
                    cap.saturating_sub(self.slots_used)
                } else {
                    return 0;
                };
                n = n.min(free / need);
            }
        }
        // A zero request (None from checked_div) does not limit the count.
        if let Some(free) = caps
            .cpu_milli
            .saturating_sub(self.cpu_used)
            .checked_div(pod.cpu_milli)
        {
            n = n.min(u32::try_from(free).unwrap_or(u32::MAX));
        }
        if let Some(free) = caps
            .memory_mib
            .saturating_sub(self.mem_used)
            .checked_div(pod.memory_mib)
        {
            n = n.min(u32::try_from(free).unwrap_or(u32::MAX));
        }
        n
    }

    /// Record `n` pods of this shape (the caller checked `fit_count`).
    pub fn take(&mut self, caps: &Caps<'_>, pod: &PodSpec<'a>, n: u32) {
        if n == 0 {
            return;
        }
        if let Ok(Some((mode, _, need))) = caps.slots(pod.gpu) {
            self.mode = mode;
            self.slots_used = self.slots_used.saturating_add(need.saturating_mul(n));
        }
        self.cpu_used = self
            .cpu_used
            .saturating_add(pod.cpu_milli.saturating_mul(u64::from(n)));
        self.mem_used = self
            .mem_used
            .saturating_add(pod.memory_mib.saturating_mul(u64::from(n)));
    }
}

fn same_mode(a: GpuUse<'_>, b: GpuUse<'_>) -> bool {
    match (a, b) {
        (GpuUse::Whole, GpuUse::Whole) => true,
        (GpuUse::Mig(x), GpuUse::Mig(y)) => x == y,
        (GpuUse::Shared(x), GpuUse::Shared(y)) => x == y,
        _ => false,
    }
}

/// The first constraint a pod fails on an empty node of some template. Ordered by how far the
/// pod got (`stage`), so the reason can name the constraint of the *closest* offering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Miss {
    Taint(String),
    Label(String),
    MigNotOffered(String),
    /// Too few GPU slots: `unit` names them ("GPUs", "MIG 1g.10gb slices"…).
    GpuSlots {
        need: u32,
        have: u32,
        unit: String,
    },
    Cpu {
        need: u64,
        have: u64,
    },
    Memory {
        need: u64,
        have: u64,
    },
}

impl Miss {
    pub fn stage(&self) -> u8 {
        match self {
            Miss::Taint(_) => 0,
            Miss::Label(_) => 1,
            Miss::MigNotOffered(_) => 2,
            Miss::GpuSlots { .. } => 3,
            Miss::Cpu { .. } => 4,
            Miss::Memory { .. } => 5,
        }
    }

    /// Did the pod get past the node's labels and taints (so it belongs to this pool and only
    /// resources are short)?
    pub fn past_labels(&self) -> bool {
        self.stage() >= 2
    }

    /// Merge two misses of the same stage so the text names the largest capacity on offer.
    pub fn widest(self, other: Miss) -> Miss {
        match (self, other) {
            (
                Miss::GpuSlots { need, have, unit },
                Miss::GpuSlots {
                    have: h2, unit: u2, ..
                },
            ) if unit == u2 => Miss::GpuSlots {
                need,
                have: have.max(h2),
                unit,
            },
            (Miss::Cpu { need, have }, Miss::Cpu { have: h2, .. }) => Miss::Cpu {
                need,
                have: have.max(h2),
            },
            (Miss::Memory { need, have }, Miss::Memory { have: h2, .. }) => Miss::Memory {
                need,
                have: have.max(h2),
            },
            (a, _) => a,
        }
    }

    /// The constraint as the operator reads it in `NoOfferingFits`.
    pub fn describe(&self) -> String {
        match self {
            Miss::Taint(t) => format!("taint {t} not tolerated"),
            Miss::Label(l) => l.clone(),
            Miss::MigNotOffered(p) => format!("MIG profile {p} not offered"),
            Miss::GpuSlots { need, have, unit } => {
                format!("needs {need} {unit}, largest eligible offering has {have}")
            }
            Miss::Cpu { need, have } => {
                format!("needs {need} mCPU, largest eligible offering has {have}")
            }
            Miss::Memory { need, have } => {
                format!("needs {need} MiB memory, largest eligible offering has {have}")
            }
        }
    }
}

/// Can a pod ever run on an empty node with these labels, taints and resources? `Ok(n)`: how
/// many such pods one empty node holds (≥ 1, capped at `u32::MAX` for request-less pods).
pub(crate) fn static_fit(
    pod: &PodSpec<'_>,
    labels: &BTreeMap<String, String>,
    taints: &[Taint],
    caps: &Caps<'_>,
) -> Result<u32, Miss> {
    if !tolerates_all(pod.tolerations, taints) {
        // tolerates_all said some blocking taint is untolerated; name the first one.
        let t = taints
            .iter()
            .filter(|t| t.effect != TaintEffect::PreferNoSchedule)
            .find(|t| !pod.tolerations.iter().any(|tol| tol.tolerates(t)));
        let text = t.map_or_else(String::new, |t| {
            if t.value.is_empty() {
                format!("{}:{:?}", t.key, t.effect)
            } else {
                format!("{}={}:{:?}", t.key, t.value, t.effect)
            }
        });
        return Err(Miss::Taint(text));
    }
    if let Some(m) = label_mismatch(pod.node_selector, pod.affinity, labels) {
        return Err(Miss::Label(m));
    }
    if let Some((_, cap, need)) = caps.slots(pod.gpu)?
        && need > cap
    {
        let unit = match pod.gpu {
            GpuRequest::Mig { profile, .. } => format!("MIG {profile} slices"),
            GpuRequest::Shared { .. } => "shared GPU replicas".to_owned(),
            _ => "GPUs".to_owned(),
        };
        return Err(Miss::GpuSlots {
            need,
            have: cap,
            unit,
        });
    }
    if pod.cpu_milli > caps.cpu_milli {
        return Err(Miss::Cpu {
            need: pod.cpu_milli,
            have: caps.cpu_milli,
        });
    }
    if pod.memory_mib > caps.memory_mib {
        return Err(Miss::Memory {
            need: pod.memory_mib,
            have: caps.memory_mib,
        });
    }
    Ok(Room::EMPTY.fit_count(caps, pod, u32::MAX).max(1))
}

/// nodeSelector and required node affinity against node labels, with the same semantics and
/// text as [`PendingPod::label_mismatch`] (which running pods do not have).
pub(crate) fn label_mismatch(
    node_selector: &BTreeMap<String, String>,
    affinity: &[Vec<LabelRequirement>],
    labels: &BTreeMap<String, String>,
) -> Option<String> {
    for (k, v) in node_selector {
        if labels.get(k) != Some(v) {
            return Some(format!("nodeSelector {k}={v}"));
        }
    }
    if !affinity.is_empty()
        && !affinity
            .iter()
            .any(|term| term.iter().all(|r| r.matches(labels)))
    {
        let first = &affinity[0];
        return Some(match first.iter().find(|r| !r.matches(labels)) {
            Some(r) => format!("node affinity {} {:?} {:?}", r.key, r.operator, r.values),
            None => "node affinity (empty term)".to_owned(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{GpuInfo, InstanceTypeName};

    fn it(gpus: u32, mig: &[(&str, u32)]) -> InstanceType {
        InstanceType {
            name: InstanceTypeName::from("t"),
            vcpu: 8,
            memory_mib: 65536,
            gpu: GpuInfo {
                model: "A100".into(),
                count: gpus,
                memory_mib_per_gpu: 81920,
                mig_profiles: mig
                    .iter()
                    .map(|(n, p)| MigProfile {
                        name: (*n).into(),
                        per_gpu: *p,
                    })
                    .collect(),
            },
        }
    }

    fn spec(gpu: &GpuRequest) -> PodSpec<'_> {
        static EMPTY: std::sync::OnceLock<BTreeMap<String, String>> = std::sync::OnceLock::new();
        PodSpec {
            gpu,
            cpu_milli: 1000,
            memory_mib: 1024,
            node_selector: EMPTY.get_or_init(BTreeMap::new),
            affinity: &[],
            tolerations: &[],
        }
    }

    #[test]
    fn per_node_counts_by_gpu_kind() {
        let t = it(4, &[("1g.10gb", 7)]);
        let caps = Caps::of(&t);
        let none = BTreeMap::new();
        let cases = [
            (GpuRequest::Whole { count: 1 }, Ok(4)),
            (GpuRequest::Whole { count: 2 }, Ok(2)),
            (GpuRequest::Whole { count: 3 }, Ok(1)),
            (
                GpuRequest::Whole { count: 8 },
                Err("needs 8 GPUs, largest eligible offering has 4"),
            ),
            (
                GpuRequest::Mig {
                    profile: "1g.10gb".into(),
                    count: 1,
                },
                Ok(8), // 28 slices, but 8 vCPU / 1000 m limits first
            ),
            (
                GpuRequest::Mig {
                    profile: "3g.40gb".into(),
                    count: 1,
                },
                Err("MIG profile 3g.40gb not offered"),
            ),
            (
                GpuRequest::Shared {
                    count: 1,
                    replicas_per_gpu: 2,
                },
                Ok(8),
            ),
            (GpuRequest::None, Ok(8)),
        ];
        for (req, want) in cases {
            let got = static_fit(&spec(&req), &none, &[], &caps).map_err(|m| m.describe());
            assert_eq!(got, want.map_err(str::to_owned), "{req:?}");
        }
    }

    #[test]
    fn a_node_serves_one_gpu_mode() {
        let t = it(2, &[("1g.10gb", 7), ("2g.20gb", 3)]);
        let caps = Caps::of(&t);
        let mig1 = GpuRequest::Mig {
            profile: "1g.10gb".into(),
            count: 1,
        };
        let mig2 = GpuRequest::Mig {
            profile: "2g.20gb".into(),
            count: 1,
        };
        let whole = GpuRequest::Whole { count: 1 };
        let mut room = Room::EMPTY;
        let s1 = PodSpec {
            cpu_milli: 0,
            memory_mib: 0,
            ..spec(&mig1)
        };
        assert_eq!(room.fit_count(&caps, &s1, 100), 14);
        room.take(&caps, &s1, 10);
        assert_eq!(room.fit_count(&caps, &s1, 100), 4);
        assert_eq!(room.fit_count(&caps, &spec(&mig2), 100), 0);
        assert_eq!(room.fit_count(&caps, &spec(&whole), 100), 0);
        // CPU- and memory-only pods still fit next to MIG pods.
        assert_eq!(room.fit_count(&caps, &spec(&GpuRequest::None), 100), 8);
    }

    #[test]
    fn taint_and_selector_misses_name_the_constraint() {
        let t = it(1, &[]);
        let caps = Caps::of(&t);
        let req = GpuRequest::Whole { count: 1 };
        let taints = [Taint {
            key: "nvidia.com/gpu".into(),
            value: String::new(),
            effect: TaintEffect::NoSchedule,
        }];
        let miss = static_fit(&spec(&req), &BTreeMap::new(), &taints, &caps).unwrap_err();
        assert_eq!(
            miss.describe(),
            "taint nvidia.com/gpu:NoSchedule not tolerated"
        );
        let sel: BTreeMap<String, String> = [("x".to_string(), "y".to_string())].into();
        let pod = PodSpec {
            node_selector: &sel,
            ..spec(&req)
        };
        let miss = static_fit(&pod, &BTreeMap::new(), &[], &caps).unwrap_err();
        assert_eq!(miss.describe(), "nodeSelector x=y");
        assert!(!miss.past_labels());
    }

    #[test]
    fn widest_keeps_the_largest_capacity() {
        let a = Miss::GpuSlots {
            need: 8,
            have: 2,
            unit: "GPUs".into(),
        };
        let b = Miss::GpuSlots {
            need: 8,
            have: 4,
            unit: "GPUs".into(),
        };
        assert_eq!(
            a.widest(b).describe(),
            "needs 8 GPUs, largest eligible offering has 4"
        );
    }
}
