//! What the cloud lists: node groups with offerings, warm pools and unfulfilled launches;
//! instances as the provider contract describes them.

use super::*;

/// The cloud's words for a stockout, as the provider crates receive them.
/// AWS: the scaling activity's StatusMessage — for spot "Could not launch Spot Instances.
/// InsufficientInstanceCapacity - There is no Spot capacity available that matches your
/// request. Launching EC2 instance failed." (quoted in kubernetes/autoscaler#3241), on-demand
/// "We currently do not have sufficient <type> capacity in the Availability Zone you requested
/// (<zone>). …" (quoted in kubernetes/autoscaler#1402). GCP: the `lastAttempt.errors` code
/// ZONE_RESOURCE_POOL_EXHAUSTED with its message.
fn cloud_message(cloud: Cloud, spec: &GroupSpec, zone: &Zone) -> String {
    match (cloud, spec.capacity_type) {
        (Cloud::Aws, CapacityType::Spot) => "Could not launch Spot Instances. \
            InsufficientInstanceCapacity - There is no Spot capacity available that matches \
            your request. Launching EC2 instance failed."
            .to_owned(),
        (Cloud::Aws, CapacityType::OnDemand) => format!(
            "We currently do not have sufficient {} capacity in the Availability Zone you \
             requested ({zone}). Our system will be working on provisioning additional \
             capacity. Launching EC2 instance failed.",
            spec.instance_type.name
        ),
        (Cloud::Gcp, _) => format!(
            "ZONE_RESOURCE_POOL_EXHAUSTED: The zone '{zone}' does not have enough resources \
             available to fulfill the request. Try a different zone, or try again later."
        ),
    }
}

impl World {
    pub fn node_groups(&self) -> Vec<NodeGroup> {
        (0..self.groups.len()).map(|g| self.node_group(g)).collect()
    }

    pub(super) fn node_group(&self, g: usize) -> NodeGroup {
        let spec = &self.groups[g];
        let offerings = spec
            .zones
            .iter()
            .map(|z| Offering {
                instance_type: spec.instance_type.clone(),
                capacity_type: spec.capacity_type,
                zone: z.clone(),
                price_per_hour: Price::from_dollars(spec.price_per_hour),
                interruption_risk_per_hour: if spec.capacity_type == CapacityType::Spot {
                    spec.hazard_per_hour
                } else {
                    0.0
                },
                // The real providers list every offering available (they cannot know spot
                // capacity before a launch fails); only the old immediate mode peeks at the
                // availability trace.
                available: match self.params.faults.stockout_mode {
                    StockoutMode::Late | StockoutMode::Silent => true,
                    StockoutMode::Immediate => self.zone_has_room(g, z),
                },
            })
            .collect();
        let warm_pool = spec.warm_pool_capable.then(|| WarmPool {
            target_size: self.warm_target[g],
            ready: self.count(g, LifecycleState::Warm),
            warming: self.count(g, LifecycleState::Warming),
            // What the simulated cloud bills a warm instance: its cache disk (`ledger`).
            standing_cost_per_hour: crate::model::Price::from_dollars(
                self.params.cold.warm_disk_per_hour(),
            ),
        });
        let mut labels = BTreeMap::new();
        labels.insert(crate::model::labels::POOL.to_owned(), spec.pool.to_string());
        labels.insert(
            crate::model::labels::CAPACITY_TYPE.to_owned(),
            spec.capacity_type.to_string(),
        );
        labels.insert(
            crate::model::labels::INSTANCE_TYPE.to_owned(),
            spec.instance_type.name.to_string(),
        );
        labels.insert(
            crate::model::labels::GPU_MODEL.to_owned(),
            spec.instance_type.gpu.model.clone(),
        );
        NodeGroup {
            id: spec.id.clone(),
            pool: spec.pool.clone(),
            offerings,
            min_size: spec.min_size,
            max_size: spec.max_size,
            desired: self.desired(g),
            labels,
            taints: Vec::new(),
            warm_pool,
            activity_in_progress: false,
            unfulfilled: self.unfulfilled_view(g),
        }
    }

    /// The reported, still outstanding unfulfilled launches of group `g`, one entry per zone,
    /// as the provider crates build them from the cloud's reports.
    pub(super) fn unfulfilled_view(&self, g: usize) -> Vec<UnfulfilledLaunch> {
        let spec = &self.groups[g];
        let mut by_zone: BTreeMap<Zone, UnfulfilledLaunch> = BTreeMap::new();
        for u in self.unfilled.iter().filter(|u| u.group == g) {
            let Some(at) = u.reported else { continue };
            let e = by_zone
                .entry(u.zone.clone())
                .or_insert_with(|| UnfulfilledLaunch {
                    offering: self.offering_key(g, &u.zone),
                    failure: LaunchFailure::InsufficientCapacity,
                    count: 0,
                    message: cloud_message(self.params.cloud, spec, &u.zone),
                    at,
                    instances: Vec::new(),
                });
            e.count += 1;
            e.at = e.at.min(at);
            if let Some(i) = u.inst.and_then(|n| self.insts.get(&n)) {
                e.instances.push(i.id.clone());
            }
        }
        by_zone.into_values().collect()
    }

    pub(super) fn count(&self, g: usize, s: LifecycleState) -> u32 {
        self.insts
            .values()
            .filter(|i| i.member_of(g) && i.state == s)
            .count() as u32
    }

    pub fn instances(&self, id: &NodeGroupId) -> Result<Vec<Instance>, ProviderError> {
        let g = self.group_index(id)?;
        Ok(self
            .insts
            .values()
            .filter(|i| i.member_of(g))
            .map(|i| self.provider_instance(i))
            .collect())
    }

    pub fn provider_instance(&self, i: &Inst) -> Instance {
        let spec = &self.groups[i.group];
        Instance {
            id: i.id.clone(),
            group: spec.id.clone(),
            instance_type: spec.instance_type.name.clone(),
            capacity_type: spec.capacity_type,
            zone: i.zone.clone(),
            state: i.state,
            launched_at: i.launched_at,
            model_cache: match i.state {
                LifecycleState::Launching | LifecycleState::Warming => None,
                _ => self.params.model_cache.clone(),
            },
            provider_id: Some(format!("sim:///{}/{}", i.zone, i.id)),
            protected_from_scale_in: false,
            awaiting_lifecycle_hook: false,
            private_ip: None,
            drain_deadline: None,
        }
    }
}
