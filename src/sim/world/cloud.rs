//! The cloud API the provider contract exposes: increase, terminate, release, warm pools,
//! events, and the group arithmetic (desired, zones) behind them.

use super::*;

/// A group of the simulated cloud, as the scenario defines it.
#[derive(Clone, Debug)]
pub struct GroupSpec {
    pub id: NodeGroupId,
    pub pool: PoolName,
    pub capacity_type: CapacityType,
    pub instance_type: InstanceType,
    pub zones: Vec<Zone>,
    pub price_per_hour: f64,
    pub min_size: u32,
    pub max_size: u32,
    /// AWS allows a warm pool only on single-type on-demand groups.
    pub warm_pool_capable: bool,
    /// Spot hazard rate per hour (advisor bucket), also published as the offering's risk.
    pub hazard_per_hour: f64,
}

/// Seeded faults of the provider (FoundationDB's "buggify"): per launch attempt and per
/// mutating call.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Probability a launch attempt finds no capacity although the availability model has
    /// some (late, as the scenario's `cloud` reports it; see [`StockoutMode`]).
    #[serde(default)]
    pub stockout_prob: f64,
    /// How a stockout (fault or no-capacity window) is reported.
    #[serde(default)]
    pub stockout_mode: StockoutMode,
    /// Probability a mutating call is throttled.
    #[serde(default)]
    pub throttle_prob: f64,
}

/// How the simulated cloud reports that it has no capacity for a launch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StockoutMode {
    /// As AWS and GCP do: the launch request is accepted, and the failure is reported later
    /// on the group ([`NodeGroup::unfulfilled`]) the way the scenario's [`Cloud`] reports it.
    #[default]
    Late,
    /// An explicit fault mode, not what either cloud does for a group: `increase` itself fails
    /// with `InsufficientCapacity` (the simulator's behaviour before late stockouts, kept to
    /// compare against). Offerings are then also listed unavailable while a spot
    /// availability trace has no room, which no real provider knows in advance.
    Immediate,
    /// Accepted, then neither progress nor an error: the failure is never reported (AWS: an
    /// activity that stays in progress; GCP: a VM in CREATING without `lastAttempt.errors`),
    /// only the cloud's retries go on. What `scale_up.launch_timeout_s` exists for.
    Silent,
}

/// Which cloud's way of reporting a late stockout the simulated groups follow (scenario key
/// `cloud`). Both accept the launch first; see [`gpupool_provider::UnfulfilledLaunch`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cloud {
    /// An Auto Scaling group: desired capacity stays raised, no instance appears, and a failed
    /// scaling activity is reported (an `UnfulfilledLaunch` without instances) until the
    /// request is taken back by lowering desired capacity.
    #[default]
    Aws,
    /// A managed instance group: the VM is listed at once (Launching, `currentAction:
    /// CREATING`) and stays stuck there with `lastAttempt.errors` (an `UnfulfilledLaunch`
    /// naming it) until it is deleted.
    Gcp,
}

/// One call that changed the cloud, for the determinism hash, scale-action counts and reaction
/// times.
#[derive(Clone, Debug, PartialEq)]
pub struct CallRecord {
    pub at_ms: i64,
    pub call: &'static str,
    pub group: String,
    pub detail: String,
    pub ok: bool,
    /// The error's kind (`ProviderError::kind`) when the call failed.
    pub error: Option<&'static str>,
}

impl World {
    pub(super) fn throttled(&mut self) -> Option<ProviderError> {
        let p = self.params.faults.throttle_prob;
        (p > 0.0 && self.rng.random::<f64>() < p).then_some(ProviderError::Throttled {
            retry_after_ms: 2000,
        })
    }

    /// Draw a throttle for a mutating `call` on group `id`; a throttled call is recorded (as
    /// `<what> throttled`) and returned as the error.
    pub(super) fn throttle(
        &mut self,
        call: &'static str,
        id: &NodeGroupId,
        what: impl FnOnce() -> String,
    ) -> Result<(), ProviderError> {
        match self.throttled() {
            None => Ok(()),
            Some(e) => {
                self.record(call, id, format!("{} throttled", what()), Some("throttled"));
                Err(e)
            }
        }
    }

    pub fn group_index(&self, id: &NodeGroupId) -> Result<usize, ProviderError> {
        self.groups
            .iter()
            .position(|g| &g.id == id)
            .ok_or_else(|| ProviderError::NotFound {
                what: format!("group {id}"),
            })
    }

    /// Record a call; `error` is the kind of the error it returned, `None` when it succeeded.
    pub(super) fn record(
        &mut self,
        call: &'static str,
        group: &NodeGroupId,
        detail: String,
        error: Option<&'static str>,
    ) {
        self.calls.push(CallRecord {
            at_ms: self.now_ms,
            call,
            group: group.to_string(),
            detail,
            ok: error.is_none(),
            error,
        });
    }

    /// Instances counted in desired capacity (not warm pool).
    pub(super) fn in_service(&self, g: usize) -> u32 {
        self.insts
            .values()
            .filter(|i| i.member_of(g) && !i.state.is_warm_pool())
            .count() as u32
    }

    pub(super) fn new_instance(&mut self, g: usize, zone: Zone, state: LifecycleState) -> u64 {
        let n = self.next_inst;
        self.next_inst += 1;
        let inst = Inst {
            id: InstanceId::new(format!("i-{n:06}")),
            num: n,
            group: g,
            zone,
            state,
            launched_at: self.now(),
            serve: Serve::Off,
            in_flight: Vec::new(),
            notice_deadline: None,
            stuck: false,
            released: false,
            billed: 0.0,
            epoch: 0,
            cost_since: self.now(),
            busy_since: None,
        };
        self.insts.insert(n, inst);
        n
    }

    /// Desired capacity as the cloud reports it: instances in service (stuck VMs included)
    /// plus requests held without an instance.
    pub fn desired(&self, g: usize) -> u32 {
        self.in_service(g) + self.pending_without_instance(g)
    }

    /// Launch requests of group `g` the cloud holds without an instance (AWS: the part of
    /// desired capacity no listed instance backs).
    pub(super) fn pending_without_instance(&self, g: usize) -> u32 {
        self.unfilled
            .iter()
            .filter(|u| u.group == g && u.inst.is_none())
            .count() as u32
    }

    /// Launch requests held without an instance, over all groups (capacity a baseline that
    /// counts `desired − listed` as upcoming believes is on its way).
    pub fn pending_launches(&self) -> u32 {
        self.unfilled.iter().filter(|u| u.inst.is_none()).count() as u32
    }

    /// Zone with the most room left for a new instance of group `g` (spot: availability minus
    /// held), or None when every zone is full.
    pub(super) fn pick_zone(&self, g: usize) -> Option<Zone> {
        let spec = &self.groups[g];
        let mut best: Option<(i64, Zone)> = None;
        for z in &spec.zones {
            let room = if spec.capacity_type == CapacityType::Spot {
                i64::from(self.spot_available(z)) - self.spot_held(z).len() as i64
            } else {
                // On-demand: balance zones by count.
                -(self
                    .insts
                    .values()
                    .filter(|i| i.member_of(g) && &i.zone == z)
                    .count() as i64)
            };
            if (spec.capacity_type == CapacityType::OnDemand || room > 0)
                && best.as_ref().is_none_or(|(r, _)| room > *r)
            {
                best = Some((room, z.clone()));
            }
        }
        best.map(|(_, z)| z)
    }

    /// Whether a spot zone has room for one more instance of group `g` (on-demand: always).
    pub(super) fn zone_has_room(&self, g: usize, zone: &Zone) -> bool {
        self.groups[g].capacity_type == CapacityType::OnDemand
            || self.spot_available(zone) as usize > self.spot_held(zone).len()
    }

    pub(super) fn offering_key(&self, g: usize, zone: &Zone) -> OfferingKey {
        let spec = &self.groups[g];
        OfferingKey {
            instance_type: spec.instance_type.name.clone(),
            capacity_type: spec.capacity_type,
            zone: zone.clone(),
        }
    }

    /// Raise desired capacity by `delta`: warm instances first, then cold launches. With
    /// `faults.stockout_mode: late` (the default) the call is accepted whenever it is within
    /// `max_size`; each cold launch then either proceeds or fails later, as the scenario's
    /// cloud reports it (see [`Cloud`]). `immediate` keeps the old explicit fault mode.
    pub fn increase(&mut self, id: &NodeGroupId, delta: u32) -> Result<(), ProviderError> {
        match self.params.faults.stockout_mode {
            StockoutMode::Late | StockoutMode::Silent => self.increase_late(id, delta),
            StockoutMode::Immediate => self.increase_instant(id, delta),
        }
    }

    /// Warm instances first (AWS warm pools and GCP standby pools both start those before
    /// launching), `delta` at most; returns how many were started.
    pub(super) fn start_warm(&mut self, g: usize, delta: u32) -> Vec<u64> {
        let warm: Vec<u64> = self
            .insts
            .iter()
            .filter(|(_, i)| i.member_of(g) && i.state == LifecycleState::Warm)
            .map(|(n, _)| *n)
            .take(delta as usize)
            .collect();
        for &n in &warm {
            self.set_state(n, LifecycleState::Starting);
            let secs = self.params.cold.sample_warm_s(&mut self.rng);
            let epoch = self.insts.get(&n).map_or(0, |i| i.epoch);
            self.push(
                self.now_ms + (secs * 1000.0) as i64,
                Ev::Ready { inst: n, epoch },
            );
        }
        warm
    }

    /// Record the instances an accepted call started or launched, one record per zone.
    pub(super) fn record_launches(&mut self, id: &NodeGroupId, nums: &[u64]) {
        let mut by_zone: BTreeMap<Zone, u32> = BTreeMap::new();
        for n in nums {
            if let Some(i) = self.insts.get(n) {
                *by_zone.entry(i.zone.clone()).or_default() += 1;
            }
        }
        for (zone, instances) in by_zone {
            self.launches.push(LaunchRecord {
                at_ms: self.now_ms,
                group: id.clone(),
                zone,
                instances,
            });
        }
    }

    pub(super) fn check_max(
        &mut self,
        g: usize,
        id: &NodeGroupId,
        delta: u32,
    ) -> Result<(), ProviderError> {
        let desired = self.desired(g);
        let max = self.groups[g].max_size;
        if u64::from(desired) + u64::from(delta) > u64::from(max) {
            self.record(
                "increase",
                id,
                format!("+{delta} above max"),
                Some("invalid_config"),
            );
            return Err(ProviderError::InvalidConfig(format!(
                "desired {} would exceed max_size {max} of {id}",
                u64::from(desired) + u64::from(delta)
            )));
        }
        Ok(())
    }

    /// What every `increase` checks first, in this order (the throttle draw comes from the
    /// seeded RNG, so the order is part of determinism): the group exists, the call is not
    /// throttled, the new size stays within max. Returns the group's index.
    pub(super) fn admit_increase(
        &mut self,
        id: &NodeGroupId,
        delta: u32,
    ) -> Result<usize, ProviderError> {
        let g = self.group_index(id)?;
        self.throttle("increase", id, || format!("+{delta}"))?;
        self.check_max(g, id, delta)?;
        Ok(g)
    }

    pub(super) fn increase_late(
        &mut self,
        id: &NodeGroupId,
        delta: u32,
    ) -> Result<(), ProviderError> {
        let g = self.admit_increase(id, delta)?;
        let mut put = self.start_warm(g, delta);
        let started = put.len() as u32;
        let p = self.params.faults.stockout_prob;
        let (mut launched, mut failed) = (0, 0);
        for _ in started..delta {
            let zone = self.pick_zone(g);
            let faulted = p > 0.0 && self.rng.random::<f64>() < p;
            match (zone, faulted) {
                (Some(z), false) => {
                    put.push(self.launch_cold(g, z, LifecycleState::Launching));
                    launched += 1;
                }
                (Some(z), true) => {
                    self.fail_launch(g, z, StockoutCause::Fault);
                    failed += 1;
                }
                (None, _) => {
                    let z = self.stockout_zone(g);
                    self.fail_launch(g, z, StockoutCause::NoCapacity);
                    failed += 1;
                }
            }
        }
        self.record_launches(id, &put);
        self.record(
            "increase",
            id,
            format!("+{delta} warm={started} cold={launched} unfulfilled={failed}"),
            None,
        );
        self.reconcile_warm(g);
        Ok(())
    }

    /// The old explicit fault mode, and what an instant launch API does (EC2 `CreateFleet`
    /// with `Type: instant`, which Karpenter uses, returns the capacity errors in its
    /// response): a stockout fails the call itself.
    pub fn increase_instant(&mut self, id: &NodeGroupId, delta: u32) -> Result<(), ProviderError> {
        let g = self.admit_increase(id, delta)?;
        let stockout = self.params.faults.stockout_prob;
        if stockout > 0.0 && self.rng.random::<f64>() < stockout {
            let zone = self.groups[g].zones.first().cloned().unwrap_or_default();
            self.record(
                "increase",
                id,
                format!("+{delta} stockout"),
                Some("insufficient_capacity"),
            );
            return Err(ProviderError::InsufficientCapacity {
                offering: self.offering_key(g, &zone),
            });
        }
        let mut put = self.start_warm(g, delta);
        let started = put.len() as u32;
        let mut launched = 0;
        let mut failed_zone = None;
        for _ in started..delta {
            match self.pick_zone(g) {
                Some(z) => {
                    put.push(self.launch_cold(g, z, LifecycleState::Launching));
                    launched += 1;
                }
                None => {
                    failed_zone = self.groups[g].zones.first().cloned();
                    break;
                }
            }
        }
        self.record_launches(id, &put);
        if let Some(z) = failed_zone {
            let key = self.offering_key(g, &z);
            if started + launched == 0 {
                self.record(
                    "increase",
                    id,
                    format!("+{delta} no capacity"),
                    Some("insufficient_capacity"),
                );
                return Err(ProviderError::InsufficientCapacity { offering: key });
            }
            let eid = self.next_event_id;
            self.next_event_id += 1;
            self.events_out.push(ProviderEvent {
                ack: None,
                id: format!("sim-ev-{eid}"),
                kind: ProviderEventKind::LaunchFailed {
                    group: id.clone(),
                    offering: key,
                    error: LaunchFailure::InsufficientCapacity,
                    message: format!(
                        "launched {} of {delta}: no spot capacity left",
                        started + launched
                    ),
                },
            });
        }
        self.record(
            "increase",
            id,
            format!("+{delta} warm={started} cold={launched}"),
            None,
        );
        self.reconcile_warm(g);
        Ok(())
    }

    /// Take back launch requests the cloud holds without fulfilling them (the provider
    /// contract's `release_unfulfilled`): AWS-like, lower desired by up to `count`, reported
    /// failures first, never below `min_size`; GCP-like, delete the named VMs that are still
    /// stuck (one that started meanwhile is a real launch now and is kept). Returns how many
    /// were taken back; asking again takes back nothing.
    pub fn release_unfulfilled(
        &mut self,
        id: &NodeGroupId,
        count: u32,
        instances: &[InstanceId],
    ) -> Result<u32, ProviderError> {
        let g = self.group_index(id)?;
        self.throttle("release_unfulfilled", id, || count.to_string())?;
        let mut taken = 0u32;
        // AWS: desired − count, but not below min size (SetDesiredCapacity refuses that).
        let room = self.desired(g).saturating_sub(self.groups[g].min_size);
        let mut aws: Vec<(bool, u64)> = self
            .unfilled
            .iter()
            .filter(|u| u.group == g && u.inst.is_none())
            .map(|u| (u.reported.is_none(), u.id))
            .collect();
        aws.sort();
        for (_, uid) in aws.into_iter().take(count.min(room) as usize) {
            self.take_back(|u| u.id == uid);
            taken += 1;
        }
        // GCP: deleteInstances on the stuck VMs named.
        let stuck: Vec<u64> = self
            .insts
            .iter()
            .filter(|(_, i)| i.member_of(g) && i.stuck && instances.contains(&i.id))
            .map(|(n, _)| *n)
            .collect();
        for n in stuck {
            self.remove_instance(n, false);
            taken += 1;
        }
        self.record(
            "release_unfulfilled",
            id,
            format!("{taken} of {count}"),
            None,
        );
        Ok(taken)
    }

    /// Terminate exactly these instances (already gone is fine). Never back into the warm pool:
    /// the call the AWS provider makes terminates whatever the pool's `ReuseOnScaleIn` (see
    /// `gpupool_aws`'s `terminate`), and the pool refills by launching, as `reconcile_warm` does.
    pub fn terminate(&mut self, id: &NodeGroupId, ids: &[InstanceId]) -> Result<(), ProviderError> {
        let g = self.group_index(id)?;
        self.throttle("terminate", id, || ids.len().to_string())?;
        let nums: Vec<u64> = self
            .insts
            .iter()
            .filter(|(_, i)| i.member_of(g) && ids.contains(&i.id))
            .map(|(n, _)| *n)
            .collect();
        for n in &nums {
            self.remove_instance(*n, false);
        }
        let names: Vec<&str> = ids.iter().map(|i| i.as_str()).collect();
        self.record("terminate", id, names.join(","), None);
        self.reconcile_warm(g);
        Ok(())
    }

    pub fn set_warm_pool_size(&mut self, id: &NodeGroupId, size: u32) -> Result<(), ProviderError> {
        let g = self.group_index(id)?;
        if !self.groups[g].warm_pool_capable {
            return Err(ProviderError::InvalidConfig(format!(
                "{id} cannot have a warm pool (spot or mixed-instances group)"
            )));
        }
        if let Some(e) = self.throttled() {
            return Err(e);
        }
        if self.warm_target[g] != size {
            self.record("set_warm_pool", id, format!("{size}"), None);
        }
        self.warm_target[g] = size;
        self.reconcile_warm(g);
        Ok(())
    }

    /// Keep the warm pool at its target: launch warming instances, or drop the extra ones
    /// (warming ones first: they are not ready anyway).
    pub(super) fn reconcile_warm(&mut self, g: usize) {
        let target = self.warm_target[g] as usize;
        let mut pool: Vec<(bool, u64)> = self
            .insts
            .iter()
            .filter(|(_, i)| i.member_of(g) && i.state.is_warm_pool())
            .map(|(n, i)| (i.state == LifecycleState::Warm, *n))
            .collect();
        if pool.len() < target {
            for _ in pool.len()..target {
                let zone = self.pick_zone(g).unwrap_or_default();
                self.launch_cold(g, zone, LifecycleState::Warming);
            }
        } else if pool.len() > target {
            // Warming (false) sorts first, newest last: drop warming ones first.
            pool.sort();
            let extra = pool.len() - target;
            for (_, n) in pool.into_iter().take(extra) {
                self.remove_instance(n, false);
            }
        }
    }

    /// Take and clear the events raised since the last call.
    pub fn poll_events(&mut self) -> Vec<ProviderEvent> {
        std::mem::take(&mut self.events_out)
    }
}
