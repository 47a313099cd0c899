//! The domain model: what the planner reasons about. Cloud-facing types (node groups,
//! offerings, instances, money, time) come from the `gpupool-provider` crate and are re-exported
//! here so the rest of the core has one place to import from.

pub mod bounds;
mod drain;
pub mod group_figures;
mod plan;
mod pod;
pub mod shadow;
pub mod slo;
mod snapshot;
pub mod status;

pub use drain::DrainProgress;
pub use gpupool_provider::{
    CapacityType, GpuInfo, Instance, InstanceId, InstanceType, InstanceTypeName, LaunchFailure,
    LifecycleState, MigProfile, Money, NodeGroup, NodeGroupId, Offering, OfferingKey, PoolName,
    Price, ProviderEvent, ProviderEventKind, Taint, TaintEffect, Timestamp, UnfulfilledLaunch,
    WarmPool, Zone,
};
pub use plan::*;
pub use pod::*;
pub use slo::{
    Attainment, DecayingHistogram, Feedback, GrowthStats, HeadroomBasis, HeadroomExplain,
    HeadroomKind, SloLearner,
};
pub use snapshot::*;

/// Well-known node labels every node template carries, so pods can select on them.
pub mod labels {
    pub const INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
    pub const ZONE: &str = "topology.kubernetes.io/zone";
    pub const CAPACITY_TYPE: &str = "gpupool.io/capacity-type";
    pub const GPU_MODEL: &str = "gpupool.io/gpu-model";
    pub const GPU_COUNT: &str = "gpupool.io/gpu-count";
    pub use crate::contract::TAG_POOL as POOL;
}
