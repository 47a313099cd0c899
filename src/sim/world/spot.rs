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

    pub(super) fn reclaim(&mut self, n: u64) {
        if self.insts.contains_key(&n) {
            self.remove_instance(n, true);
        }
    }
}
