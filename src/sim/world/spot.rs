//! Spot: availability from a trace or a hazard rate, interruption notices and reclaims.

use super::*;

/// How spot instances are reclaimed.
#[derive(Clone, Debug)]
pub enum SpotDynamics {
    /// Exponential time to interruption with the group's hazard rate.
    Hazard,
    /// A real availability trace: zone counts per tick, from `start_tick`.
    Trace {
        trace: AvailabilityTrace,
        start_tick: usize,
    },
}

/// A spot interruption the world carried out, for the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Interruption {
    pub notice_ms: i64,
    pub instance: String,
}

impl World {
    pub(super) fn spot_available(&self, zone: &Zone) -> u32 {
        match &self.params.spot {
            SpotDynamics::Hazard => u32::MAX,
            SpotDynamics::Trace { trace, start_tick } => {
                let tick = *start_tick + (self.now_ms as f64 / 1000.0 / trace.tick_s) as usize;
                trace
                    .zones
                    .get(zone.as_str())
                    .and_then(|v| v.get(tick.min(v.len().saturating_sub(1))).copied())
                    .unwrap_or(0)
            }
        }
    }

    /// Spot instances holding capacity in `zone` that are not already under notice.
    pub(super) fn spot_held(&self, zone: &Zone) -> Vec<u64> {
        self.insts
            .iter()
            .filter(|(_, i)| {
                &i.zone == zone
                    && self.groups[i.group].capacity_type == CapacityType::Spot
                    && i.is_running()
                    && i.notice_deadline.is_none()
            })
            .map(|(n, _)| *n)
            .collect()
    }

    pub(super) fn spot_tick(&mut self) {
        let SpotDynamics::Trace { trace, .. } = &self.params.spot else {
            return;
        };
        let tick_ms = (trace.tick_s * 1000.0) as i64;
        let zones: Vec<Zone> = trace.zones.keys().map(|z| Zone::from(z.as_str())).collect();
        for z in zones {
            let avail = self.spot_available(&z) as usize;
            let mut held = self.spot_held(&z);
            while held.len() > avail {
                // Which instance the cloud reclaims is not in the trace: pick one at random.
                let k = self.rng.random_range(0..held.len());
                let n = held.swap_remove(k);
                self.notice(n);
            }
        }
        let next = self.now_ms + tick_ms;
        if next <= self.end_ms {
            self.push(next, Ev::SpotTick);
        }
    }

    pub(super) fn notice(&mut self, n: u64) {
        let now = self.now_ms;
        let notice_ms = (self.params.spot_notice_s * 1000.0) as i64;
        let Some(i) = self.insts.get_mut(&n) else {
            return;
        };
        if i.notice_deadline.is_some() || !i.is_running() {
            return;
        }
        let deadline = now + notice_ms;
        i.notice_deadline = Some(Timestamp::from_millis(deadline));
        let id = i.id.clone();
        self.interruptions.push(Interruption {
            notice_ms: now,
            instance: id.to_string(),
        });
        let eid = self.next_event_id;
        self.next_event_id += 1;
        self.events_out.push(ProviderEvent {
            ack: None,
            id: format!("sim-ev-{eid}"),
            kind: ProviderEventKind::SpotInterruption {
                instance: id,
                deadline: Timestamp::from_millis(deadline),
            },
        });
        self.push(deadline, Ev::Reclaim { inst: n });
    }

    /// The cloud takes the instance back at its notice's deadline. What follows is the cloud's,
    /// not the controller's:
    /// - **Billing.** AWS charges nothing for a Linux spot instance it interrupts in its first
    ///   hour (Amazon EC2 User Guide, "Billing for interrupted Spot Instances": interrupted by
    ///   Amazon EC2, Windows and Linux, first hour "No charge", later hours "Charged for the
    ///   seconds used"; one the user stops or terminates is "Charged for the seconds used").
    ///   Its usage is taken off the bill. Compute Engine's Spot VM pages (pricing,
    ///   "Preemption process") state no such refund: a preempted VM is billed for the seconds
    ///   it ran.
    /// - **Replacement.** A member of the group stays counted in desired capacity: an Auto
    ///   Scaling group "attempts to launch a replacement instance" (Auto Scaling User Guide,
    ///   "Spot Instance interruptions" / health checks), and a MIG recreates a preempted VM
    ///   when it can (Compute Engine docs, "Spot VMs in a MIG"). The replacement is launched
    ///   like any launch of the group — late stockouts included — without a call from the
    ///   controller. An instance released to the reclaim ([`World::release_to_reclaim`]) left
    ///   the group and is not replaced.
    pub(super) fn reclaim(&mut self, n: u64) {
        let Some(i) = self.insts.get(&n) else {
            return;
        };
        let (g, member) = (i.group, !i.released && i.state.counts_in_desired());
        let spot = self.groups[g].capacity_type == CapacityType::Spot;
        let launched = i.launched_at.millis();
        // Settle first: the bill up to the reclaim is what is refunded.
        self.settle(n);
        if spot
            && let Some(window) = refund_window(self.params.cloud)
            && self.now_ms - launched < window.as_millis() as i64
            && let Some(i) = self.insts.get_mut(&n)
        {
            let refund = std::mem::take(&mut i.billed);
            self.cost_spot -= refund;
            self.spot_refunded += refund;
        }
        self.remove_instance(n, true);
        if member {
            self.replace_reclaimed(g);
        }
    }

    /// The group's own replacement for a reclaimed member: a launch in the zone with the most
    /// room, or — none having room — a request the cloud holds unfulfilled and reports late,
    /// as for any launch (`increase_late`). The explicit immediate-stockout mode, which
    /// models an API that fails the call itself, has no call to fail: it launches where there
    /// is room and otherwise lets desired capacity fall (the simulator's old behaviour).
    fn replace_reclaimed(&mut self, g: usize) {
        // The cloud's own action, not a call of the policy's: counted apart, not in `calls`
        // (which the scale-action counts and the determinism hash read).
        self.reclaim_replacements += 1;
        match self.pick_zone(g) {
            Some(z) => {
                self.launch_cold(g, z, LifecycleState::Launching);
            }
            None if self.params.faults.stockout_mode != StockoutMode::Immediate => {
                let z = self.stockout_zone(g);
                self.fail_launch(g, z, StockoutCause::NoCapacity);
            }
            None => {}
        }
    }

    /// Leave a drained spot instance under notice to the cloud's reclaim instead of
    /// terminating it: it leaves the group with desired capacity lowered by one (AWS
    /// `DetachInstances` with `ShouldDecrementDesiredCapacity`), keeps running — billed —
    /// until the reclaim, and takes no new requests. Refused (`InvalidConfig`) for an
    /// instance that is not a spot member under notice, or when the group's min size would
    /// be crossed (as `DetachInstances` refuses to go below it).
    pub fn release_to_reclaim(
        &mut self,
        id: &NodeGroupId,
        inst: &InstanceId,
    ) -> Result<(), ProviderError> {
        let g = self.group_index(id)?;
        self.throttle("release_to_reclaim", id, || inst.to_string())?;
        let n = self
            .insts
            .iter()
            .find(|(_, i)| i.member_of(g) && &i.id == inst)
            .map(|(n, _)| *n)
            .ok_or_else(|| ProviderError::NotFound {
                what: format!("instance {inst} in {id}"),
            })?;
        let i = &self.insts[&n];
        let refusal =
            if self.groups[g].capacity_type != CapacityType::Spot || i.notice_deadline.is_none() {
                Some(format!(
                    "{inst} is not a spot instance under an interruption notice"
                ))
            } else if !i.state.counts_in_desired() {
                Some(format!("{inst} is not in service"))
            } else if self.desired(g) <= self.groups[g].min_size {
                Some(format!("{id} is at its min size"))
            } else {
                None
            };
        if let Some(why) = refusal {
            self.record(
                "release_to_reclaim",
                id,
                why.clone(),
                Some("invalid_config"),
            );
            return Err(ProviderError::InvalidConfig(why));
        }
        if let Some(i) = self.insts.get_mut(&n) {
            i.released = true;
            if i.serve == Serve::On {
                i.serve = Serve::Draining;
            }
        }
        self.record("release_to_reclaim", id, inst.to_string(), None);
        Ok(())
    }

    /// Terminate instances released to a reclaim that has not come by their notice's deadline
    /// plus `grace` (the provider contract's `sweep_released`). The simulated cloud always
    /// reclaims at the deadline, so this finds nothing unless that changes.
    pub fn sweep_released(
        &mut self,
        now: Timestamp,
        grace: std::time::Duration,
    ) -> Vec<InstanceId> {
        let overdue: Vec<(u64, InstanceId)> = self
            .insts
            .iter()
            .filter(|(_, i)| {
                i.released
                    && i.notice_deadline
                        .is_some_and(|d| now.secs_since(d) > grace.as_secs_f64())
            })
            .map(|(n, i)| (*n, i.id.clone()))
            .collect();
        for (n, _) in &overdue {
            self.remove_instance(*n, false);
        }
        overdue.into_iter().map(|(_, id)| id).collect()
    }
}

/// How long after launch a spot instance the cloud reclaims costs nothing: AWS an hour
/// ([`World::reclaim`]); GCP never.
pub fn refund_window(cloud: Cloud) -> Option<std::time::Duration> {
    match cloud {
        Cloud::Aws => Some(crate::config::AWS_SPOT_RECLAIM_FREE),
        Cloud::Gcp => None,
    }
}
