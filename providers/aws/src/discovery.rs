//! What a discovered Auto Scaling group *is*, reduced from the SDK's `AutoScalingGroup` to
//! plain values ([`GroupSpec`]), and the pure rules built on it: capacity type, node template
//! labels and taints, offerings.

use crate::{TAG_ENABLED, TAG_POOL, pricing};
use aws_sdk_autoscaling::types::AutoScalingGroup;
use gpupool_provider::{
    CapacityType, InstanceType, InstanceTypeName, Offering, PoolName, Price, Taint, TaintEffect,
    Zone,
};
use std::collections::BTreeMap;

/// Cluster Autoscaler's tag prefixes for scale-from-zero node templates, honoured so groups
/// already set up for CA describe their nodes to gpupool too.
const CA_LABEL_PREFIX: &str = "k8s.io/cluster-autoscaler/node-template/label/";
const CA_TAINT_PREFIX: &str = "k8s.io/cluster-autoscaler/node-template/taint/";

/// Well-known node labels (gpupool's `model::labels`).
pub const LABEL_INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
pub const LABEL_CAPACITY_TYPE: &str = "gpupool.io/capacity-type";
pub const LABEL_GPU_MODEL: &str = "gpupool.io/gpu-model";
pub const LABEL_GPU_COUNT: &str = "gpupool.io/gpu-count";
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";

/// A launch template reference (by id or name) and version (`$Default` when unset).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TemplateRef {
    pub id: Option<String>,
    pub name: Option<String>,
    pub version: String,
}

impl TemplateRef {
    /// Numbered versions never change, so what they resolve to can be cached for the process;
    /// `$Latest` / `$Default` are resolved every time.
    pub fn is_immutable(&self) -> bool {
        self.version.chars().all(|c| c.is_ascii_digit()) && !self.version.is_empty()
    }
    pub fn display(&self) -> String {
        let what = self.id.as_deref().or(self.name.as_deref()).unwrap_or("?");
        format!("{what}:{}", self.version)
    }
}

/// What the launch template says, as far as gpupool cares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TemplateFacts {
    pub instance_type: Option<InstanceTypeName>,
    /// `InstanceMarketOptions.MarketType = spot`.
    pub spot: bool,
    /// `ImageId` (an AMI id, or a `resolve:ssm:` parameter, which gpupool does not resolve).
    pub image_id: Option<String>,
    /// `BlockDeviceMappings`, over the AMI's: the volumes a stopped warm instance pays for
    /// ([`crate::ebs`]). Read from the same `DescribeLaunchTemplateVersions` reply.
    pub block_devices: Vec<crate::ebs::Mapping>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GroupSpec {
    pub name: String,
    pub pool: Option<PoolName>,
    pub enabled: bool,
    pub min: u32,
    pub max: u32,
    pub desired: u32,
    pub zones: Vec<Zone>,
    pub template: Option<TemplateRef>,
    /// Launch configurations are not supported (deprecated by AWS, and reading them needs an
    /// IAM action gpupool does not ask for).
    pub uses_launch_configuration: bool,
    pub mixed: bool,
    /// Instance types of the mixed-instances overrides, in priority order, deduplicated.
    pub override_types: Vec<InstanceTypeName>,
    /// `OnDemandPercentageAboveBaseCapacity` (AWS default 100) when mixed.
    pub on_demand_pct_above_base: u32,
    /// `OnDemandBaseCapacity` (AWS default 0) when mixed.
    pub on_demand_base: u32,
    pub has_warm_pool: bool,
    pub tags: BTreeMap<String, String>,
}

fn to_u32(v: Option<i32>) -> u32 {
    v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
}

impl GroupSpec {
    pub fn from_sdk(g: &AutoScalingGroup) -> GroupSpec {
        let tags: BTreeMap<String, String> = g
            .tags()
            .iter()
            .filter_map(|t| {
                Some((
                    t.key()?.to_owned(),
                    t.value().unwrap_or_default().to_owned(),
                ))
            })
            .collect();
        let template_of =
            |s: &aws_sdk_autoscaling::types::LaunchTemplateSpecification| TemplateRef {
                id: s.launch_template_id().map(str::to_owned),
                name: s.launch_template_name().map(str::to_owned),
                version: s.version().unwrap_or("$Default").to_owned(),
            };
        let mixed = g.mixed_instances_policy();
        let template = mixed
            .and_then(|m| m.launch_template())
            .and_then(|lt| lt.launch_template_specification())
            .or(g.launch_template())
            .map(template_of);
        let mut override_types: Vec<InstanceTypeName> = Vec::new();
        for o in mixed
            .and_then(|m| m.launch_template())
            .map_or(&[][..], |lt| lt.overrides())
        {
            if let Some(t) = o.instance_type() {
                let t = InstanceTypeName::from(t);
                if !override_types.contains(&t) {
                    override_types.push(t);
                }
            }
        }
        let on_demand_pct_above_base = mixed
            .and_then(|m| m.instances_distribution())
            .and_then(|d| d.on_demand_percentage_above_base_capacity())
            .map_or(100, |p| p.clamp(0, 100) as u32);
        let on_demand_base = mixed
            .and_then(|m| m.instances_distribution())
            .and_then(|d| d.on_demand_base_capacity())
            .map_or(0, |b| b.max(0) as u32);
        GroupSpec {
            name: g.auto_scaling_group_name().unwrap_or_default().to_owned(),
            pool: tags.get(TAG_POOL).map(|p| PoolName::from(p.as_str())),
            enabled: tags
                .get(TAG_ENABLED)
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            min: to_u32(g.min_size()),
            max: to_u32(g.max_size()),
            desired: to_u32(g.desired_capacity()),
            zones: g
                .availability_zones()
                .iter()
                .map(|z| Zone::from(z.as_str()))
                .collect(),
            template,
            uses_launch_configuration: g.launch_configuration_name().is_some(),
            mixed: mixed.is_some(),
            override_types,
            on_demand_pct_above_base,
            on_demand_base,
            has_warm_pool: g.warm_pool_configuration().is_some(),
            tags,
        }
    }

    /// The documented rule (crate docs, "Capacity type of a group").
    pub fn capacity_type(&self, template: Option<&TemplateFacts>) -> CapacityType {
        if self.mixed {
            if self.on_demand_pct_above_base == 0 {
                CapacityType::Spot
            } else {
                CapacityType::OnDemand
            }
        } else if template.is_some_and(|t| t.spot) {
            CapacityType::Spot
        } else {
            CapacityType::OnDemand
        }
    }

    /// Every instance of the group is spot (spot template, or mixed with no on-demand base and
    /// 0 % on-demand above it): then an instance is spot even when EC2's `InstanceLifecycle`
    /// is missing from a response.
    pub fn all_spot(&self, template: Option<&TemplateFacts>) -> bool {
        self.capacity_type(template) == CapacityType::Spot
            && (!self.mixed || self.on_demand_base == 0)
    }

    /// True when the group splits capacity above the base between spot and on-demand, which
    /// gpupool prices as on-demand (see the crate docs).
    pub fn is_split(&self) -> bool {
        self.mixed && self.on_demand_pct_above_base > 0 && self.on_demand_pct_above_base < 100
    }

    /// Instance types the group launches: the overrides, else the template's type.
    pub fn instance_types(&self, template: Option<&TemplateFacts>) -> Vec<InstanceTypeName> {
        if !self.override_types.is_empty() {
            return self.override_types.clone();
        }
        template
            .and_then(|t| t.instance_type.clone())
            .into_iter()
            .collect()
    }

    /// Whether what the launch template says matters: its market type only without a
    /// mixed-instances policy, its instance type only without overrides. A mixed group with
    /// overrides never needs its template read.
    pub fn template_matters(&self) -> bool {
        !self.mixed || self.override_types.is_empty()
    }

    /// Why gpupool cannot have a warm pool on this group, if it cannot (AWS's own rule).
    pub fn warm_pool_refusal(&self, template: Option<&TemplateFacts>) -> Option<&'static str> {
        if self.mixed {
            Some("AWS does not allow a warm pool on a group with a mixed-instances policy")
        } else if template.is_some_and(|t| t.spot) {
            Some("AWS does not allow a warm pool on a group that requests spot instances")
        } else {
            None
        }
    }

    /// Node template labels: Cluster Autoscaler's node-template tags, then the well-known
    /// labels gpupool can vouch for (a type- or zone-specific label only when the group has a
    /// single type / zone).
    pub fn labels(
        &self,
        capacity: CapacityType,
        types: &[InstanceType],
    ) -> BTreeMap<String, String> {
        let mut labels: BTreeMap<String, String> = self
            .tags
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(CA_LABEL_PREFIX)?.to_owned(), v.clone())))
            .collect();
        if let Some(pool) = &self.pool {
            labels.insert(TAG_POOL.to_owned(), pool.to_string());
        }
        labels.insert(LABEL_CAPACITY_TYPE.to_owned(), capacity.as_str().to_owned());
        if let [only] = types {
            labels.insert(LABEL_INSTANCE_TYPE.to_owned(), only.name.to_string());
        }
        // Model and count are shared by every type of most GPU groups (g5.xlarge + g5.2xlarge).
        if let Some(first) = types.first() {
            if types.iter().all(|t| t.gpu.model == first.gpu.model) {
                labels.insert(LABEL_GPU_MODEL.to_owned(), first.gpu.model.clone());
            }
            if types.iter().all(|t| t.gpu.count == first.gpu.count) {
                labels.insert(LABEL_GPU_COUNT.to_owned(), first.gpu.count.to_string());
            }
        }
        if let [zone] = self.zones.as_slice() {
            labels.insert(LABEL_ZONE.to_owned(), zone.to_string());
        }
        labels
    }

    /// Taints from Cluster Autoscaler's `…/node-template/taint/<key> = <value>:<Effect>` tags.
    /// A tag with an unknown effect is skipped (and reported by the caller's log).
    pub fn taints(&self) -> (Vec<Taint>, Vec<String>) {
        let mut taints = Vec::new();
        let mut bad = Vec::new();
        for (k, v) in &self.tags {
            let Some(key) = k.strip_prefix(CA_TAINT_PREFIX) else {
                continue;
            };
            let (value, effect) = v.rsplit_once(':').unwrap_or(("", v.as_str()));
            let effect = match effect {
                "NoSchedule" => TaintEffect::NoSchedule,
                "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
                "NoExecute" => TaintEffect::NoExecute,
                _ => {
                    bad.push(k.clone());
                    continue;
                }
            };
            taints.push(Taint {
                key: key.to_owned(),
                value: value.to_owned(),
                effect,
            });
        }
        (taints, bad)
    }
}

/// Prices of one type × zone, decided by the caller from live data and the tables.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pricing {
    pub price_per_hour: Price,
    pub risk_per_hour: f64,
}

/// How to price an offering. On-demand: `ondemand`, the figure [`pricing::ondemand`] chose for
/// the group's region (override, live Price List API, regional table), else unknown. Spot: the
/// live price (if any), else the advisor estimate from that on-demand figure, else unknown;
/// with the advisor's risk. Unknown is explicit, never another region's figure nor zero.
pub fn price(
    region: &str,
    instance_type: &str,
    capacity: CapacityType,
    ondemand: Option<f64>,
    live_spot: Option<f64>,
) -> Pricing {
    match capacity {
        CapacityType::OnDemand => Pricing {
            price_per_hour: ondemand.map_or(Price::Unknown, Price::from_dollars),
            risk_per_hour: 0.0,
        },
        CapacityType::Spot => {
            let entry = pricing::advisor(region, instance_type);
            let bucket = entry.map_or(pricing::UNKNOWN_BUCKET, |e| e.bucket);
            let price =
                live_spot.or_else(|| ondemand.map(|od| pricing::estimated_spot_price(od, entry)));
            Pricing {
                price_per_hour: price.map_or(Price::Unknown, Price::from_dollars),
                risk_per_hour: pricing::hourly_risk(bucket),
            }
        }
    }
}

/// One offering per type × zone; an unpriced one is kept with [`Price::Unknown`] so the planner
/// can rank it last and explain it, instead of silently dropping it.
pub fn offerings(
    types: &[InstanceType],
    zones: &[Zone],
    capacity: CapacityType,
    mut price_of: impl FnMut(&InstanceType, &Zone) -> Pricing,
) -> Vec<Offering> {
    let mut out = Vec::with_capacity(types.len() * zones.len());
    for t in types {
        for z in zones {
            let p = price_of(t, z);
            out.push(Offering {
                instance_type: t.clone(),
                capacity_type: capacity,
                zone: z.clone(),
                price_per_hour: p.price_per_hour,
                interruption_risk_per_hour: p.risk_per_hour,
                // AWS has no capacity API gpupool may call: failed launches are reported
                // as events and the controller's backoff keeps the offering aside.
                available: true,
            });
        }
    }
    out
}

/// GPU model name as pool requirements spell it: upper-case, vendor prefix dropped
/// (`NVIDIA A10G` → `A10G`, `Radeon Pro V520` → `RADEON PRO V520`).
pub fn normalise_gpu_model(name: &str) -> String {
    let n = name.trim();
    let n = n
        .strip_prefix("NVIDIA ")
        .or_else(|| n.strip_prefix("nvidia "))
        .unwrap_or(n);
    n.to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_autoscaling::types::{
        InstancesDistribution, LaunchTemplate, LaunchTemplateOverrides,
        LaunchTemplateSpecification, MixedInstancesPolicy, TagDescription,
    };
    use gpupool_provider::GpuInfo;

    fn tag(k: &str, v: &str) -> TagDescription {
        TagDescription::builder().key(k).value(v).build()
    }

    fn spot_group(pct: i32) -> AutoScalingGroup {
        AutoScalingGroup::builder()
            .auto_scaling_group_name("g5-spot")
            .min_size(0)
            .max_size(8)
            .desired_capacity(2)
            .availability_zones("us-east-1a")
            .availability_zones("us-east-1b")
            .mixed_instances_policy(
                MixedInstancesPolicy::builder()
                    .launch_template(
                        LaunchTemplate::builder()
                            .launch_template_specification(
                                LaunchTemplateSpecification::builder()
                                    .launch_template_name("gpu")
                                    .version("3")
                                    .build(),
                            )
                            .overrides(
                                LaunchTemplateOverrides::builder()
                                    .instance_type("g5.xlarge")
                                    .build(),
                            )
                            .overrides(
                                LaunchTemplateOverrides::builder()
                                    .instance_type("g5.2xlarge")
                                    .build(),
                            )
                            .overrides(
                                LaunchTemplateOverrides::builder()
                                    .instance_type("g5.xlarge")
                                    .build(),
                            )
                            .build(),
                    )
                    .instances_distribution(
                        InstancesDistribution::builder()
                            .on_demand_base_capacity(0)
                            .on_demand_percentage_above_base_capacity(pct)
                            .spot_allocation_strategy("price-capacity-optimized")
                            .build(),
                    )
                    .build(),
            )
            .tags(tag(TAG_POOL, "llama"))
            .tags(tag(TAG_ENABLED, "true"))
            .tags(tag(
                "k8s.io/cluster-autoscaler/node-template/label/team",
                "ml",
            ))
            .tags(tag(
                "k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu",
                "true:NoSchedule",
            ))
            .tags(tag(
                "k8s.io/cluster-autoscaler/node-template/taint/bad",
                "x:Sometimes",
            ))
            .build()
    }

    fn gpu_type(name: &str, count: u32) -> InstanceType {
        InstanceType {
            name: name.into(),
            vcpu: 4,
            memory_mib: 16384,
            gpu: GpuInfo {
                model: "A10G".into(),
                count,
                memory_mib_per_gpu: 22888,
                mig_profiles: vec![],
            },
        }
    }

    #[test]
    fn mixed_spot_group_is_parsed() {
        let s = GroupSpec::from_sdk(&spot_group(0));
        assert_eq!(s.pool, Some("llama".into()));
        assert!(s.enabled && s.mixed && !s.uses_launch_configuration);
        assert_eq!((s.min, s.max, s.desired), (0, 8, 2));
        assert_eq!(
            s.override_types,
            vec![InstanceTypeName::from("g5.xlarge"), "g5.2xlarge".into()]
        );
        let t = s.template.clone().unwrap();
        assert_eq!(
            (t.name.as_deref(), t.version.as_str(), t.is_immutable()),
            (Some("gpu"), "3", true)
        );
        assert_eq!(s.capacity_type(None), CapacityType::Spot);
        assert!(s.all_spot(None));
        assert!(
            !GroupSpec {
                on_demand_base: 1,
                ..s.clone()
            }
            .all_spot(None),
            "base instances are on-demand"
        );
        assert!(s.warm_pool_refusal(None).is_some());
    }

    #[test]
    fn capacity_type_rule() {
        let split = GroupSpec::from_sdk(&spot_group(50));
        assert_eq!(split.capacity_type(None), CapacityType::OnDemand);
        assert!(split.is_split());
        let od = GroupSpec::from_sdk(&spot_group(100));
        assert_eq!(od.capacity_type(None), CapacityType::OnDemand);
        assert!(!od.is_split());
        // No mixed policy: the template's market decides.
        let plain = GroupSpec {
            mixed: false,
            override_types: vec![],
            ..od
        };
        let spot_lt = TemplateFacts {
            instance_type: Some("p5.48xlarge".into()),
            spot: true,
            ..Default::default()
        };
        let od_lt = TemplateFacts {
            instance_type: Some("p5.48xlarge".into()),
            spot: false,
            ..Default::default()
        };
        assert_eq!(plain.capacity_type(Some(&spot_lt)), CapacityType::Spot);
        assert_eq!(plain.capacity_type(Some(&od_lt)), CapacityType::OnDemand);
        assert!(plain.warm_pool_refusal(Some(&spot_lt)).is_some());
        assert!(plain.warm_pool_refusal(Some(&od_lt)).is_none());
        assert_eq!(
            plain.instance_types(Some(&od_lt)),
            vec![InstanceTypeName::from("p5.48xlarge")]
        );
        assert!(
            !TemplateRef {
                id: None,
                name: None,
                version: "$Latest".into()
            }
            .is_immutable()
        );
    }

    #[test]
    fn template_is_read_only_when_it_matters() {
        let mixed = GroupSpec::from_sdk(&spot_group(0));
        assert!(!mixed.template_matters(), "mixed with overrides");
        let no_overrides = GroupSpec {
            override_types: vec![],
            ..mixed.clone()
        };
        assert!(
            no_overrides.template_matters(),
            "the template names the type"
        );
        let plain = GroupSpec {
            mixed: false,
            ..mixed
        };
        assert!(plain.template_matters(), "the template decides the market");
    }

    #[test]
    fn template_labels_and_taints() {
        let s = GroupSpec::from_sdk(&spot_group(0));
        let types = [gpu_type("g5.xlarge", 1), gpu_type("g5.2xlarge", 1)];
        let l = s.labels(CapacityType::Spot, &types);
        assert_eq!(l["team"], "ml");
        assert_eq!(l[TAG_POOL], "llama");
        assert_eq!(l[LABEL_CAPACITY_TYPE], "spot");
        assert_eq!(l[LABEL_GPU_MODEL], "A10G");
        assert_eq!(l[LABEL_GPU_COUNT], "1");
        assert!(
            !l.contains_key(LABEL_INSTANCE_TYPE),
            "two types: no single type label"
        );
        assert!(!l.contains_key(LABEL_ZONE), "two zones: no zone label");
        let (taints, bad) = s.taints();
        assert_eq!(
            taints,
            vec![Taint {
                key: "nvidia.com/gpu".into(),
                value: "true".into(),
                effect: TaintEffect::NoSchedule
            }]
        );
        assert_eq!(
            bad,
            vec!["k8s.io/cluster-autoscaler/node-template/taint/bad".to_owned()]
        );
    }

    #[test]
    fn pricing_rules() {
        let od1 = pricing::ondemand_price("us-east-1", "g5.xlarge");
        let od = price("us-east-1", "g5.xlarge", CapacityType::OnDemand, od1, None);
        assert_eq!(
            od,
            Pricing {
                price_per_hour: Price::from_dollars(1.006),
                risk_per_hour: 0.0
            }
        );
        let live = price("us-east-1", "g5.xlarge", CapacityType::Spot, od1, Some(0.4));
        assert_eq!(live.price_per_hour, Price::from_dollars(0.4));
        assert!(live.risk_per_hour > 0.0);
        let est = price("us-east-1", "g5.xlarge", CapacityType::Spot, od1, None);
        let entry = pricing::advisor("us-east-1", "g5.xlarge").unwrap();
        assert_eq!(
            est.price_per_hour,
            Price::from_dollars(1.006 * (1.0 - f64::from(entry.savings_pct) / 100.0))
        );
        // No on-demand figure for the region: unknown on-demand, and unknown spot unless
        // priced live.
        for ct in [CapacityType::OnDemand, CapacityType::Spot] {
            let p = price("eu-west-1", "g5.xlarge", ct, None, None);
            assert_eq!(p.price_per_hour, Price::Unknown, "{ct}");
        }
        // Unknown to the tables but priced live: usable, with the worst-bucket risk.
        let p = price(
            "us-east-1",
            "zz.unknown",
            CapacityType::Spot,
            None,
            Some(1.0),
        );
        assert_eq!(p.price_per_hour, Price::from_dollars(1.0));
        assert_eq!(
            p.risk_per_hour,
            pricing::hourly_risk(pricing::UNKNOWN_BUCKET)
        );
    }

    #[test]
    fn offerings_are_types_times_zones() {
        let types = [gpu_type("g5.xlarge", 1), gpu_type("g5.2xlarge", 1)];
        let zones = [Zone::from("us-east-1a"), Zone::from("us-east-1b")];
        let o = offerings(&types, &zones, CapacityType::Spot, |t, _| Pricing {
            price_per_hour: if t.name.as_str() == "g5.xlarge" {
                Price::from_dollars(0.5)
            } else {
                Price::Unknown
            },
            risk_per_hour: 0.01,
        });
        assert_eq!(o.len(), 4, "an unpriced type is kept, as unknown");
        assert!(
            o.iter()
                .all(|o| o.available && o.capacity_type == CapacityType::Spot)
        );
        assert_eq!(o[0].price_per_hour, Price::from_dollars(0.5));
        assert_eq!(o[2].price_per_hour, Price::Unknown);
    }

    #[test]
    fn gpu_model_names() {
        assert_eq!(normalise_gpu_model("A10G"), "A10G");
        assert_eq!(normalise_gpu_model("NVIDIA H100"), "H100");
        assert_eq!(normalise_gpu_model("l40s"), "L40S");
    }
}
