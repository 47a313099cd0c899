//! Serving: the request queue, replicas taking requests, in-flight work and what happens to it
//! when an instance goes away.

use super::*;

impl World {
    pub(super) fn on_ready(&mut self, num: u64, epoch: u32) {
        let Some(i) = self.insts.get(&num) else {
            return;
        };
        if i.epoch != epoch {
            return;
        }
        match i.state {
            LifecycleState::Warming => {
                // Cache warm: the instance stops and waits in the warm pool.
                self.set_state(num, LifecycleState::Warm);
            }
            LifecycleState::Launching | LifecycleState::Starting => {
                self.set_state(num, LifecycleState::Ready);
                if let Some(i) = self.insts.get_mut(&num) {
                    i.serve = Serve::On;
                }
                self.dispatch();
            }
            _ => {}
        }
    }

    pub(super) fn on_done(&mut self, req: usize, attempt: u32) {
        let now = self.now_ms;
        let Some(r) = self.reqs.get_mut(req) else {
            return;
        };
        if r.attempt != attempt || r.done_ms.is_some() {
            return;
        }
        r.done_ms = Some(now);
        self.completed_total += 1;
        self.completed_service_ms_total += r.service_ms.max(0) as u64;
        self.longest_done.push(now, r.service_ms.max(0));
        let holder = self
            .insts
            .iter()
            .find(|(_, i)| i.in_flight.contains(&req))
            .map(|(n, _)| *n);
        if let Some(n) = holder {
            self.remove_in_flight(n, req);
            if let Some(i) = self.insts.get_mut(&n)
                && i.serve == Serve::Draining
                && i.in_flight.is_empty()
            {
                i.serve = Serve::Off;
            }
        }
        self.dispatch();
    }

    pub(super) fn remove_in_flight(&mut self, n: u64, req: usize) {
        let now = self.now_ms;
        let gpus = self.gpus_of(n);
        let mut busy_add = 0.0;
        if let Some(i) = self.insts.get_mut(&n) {
            i.in_flight.retain(|r| *r != req);
            if i.in_flight.is_empty()
                && let Some(since) = i.busy_since.take()
            {
                busy_add = (now - since.millis()) as f64 * gpus;
            }
        }
        self.busy_gpu_ms += busy_add;
    }

    pub(super) fn gpus_of(&self, n: u64) -> f64 {
        self.insts
            .get(&n)
            .map(|i| f64::from(self.groups[i.group].instance_type.gpu.count))
            .unwrap_or(0.0)
    }

    /// FIFO queue to the least-loaded serving replica with a free slot.
    pub(super) fn dispatch(&mut self) {
        let cap = self.params.concurrency as usize;
        while let Some(&req) = self.queue.front() {
            let best = self
                .insts
                .iter()
                .filter(|(_, i)| i.serve == Serve::On && i.in_flight.len() < cap)
                .min_by_key(|(n, i)| (i.in_flight.len(), **n))
                .map(|(n, _)| *n);
            let Some(n) = best else { break };
            self.queue.pop_front();
            let now = self.now_ms;
            let r = &mut self.reqs[req];
            r.waited_ms += now - r.queued_since;
            r.start_ms = Some(now);
            r.attempt += 1;
            let (attempt, service, waited) = (r.attempt, r.service_ms, r.waited_ms);
            self.recent_waits.push_back((now, waited));
            self.started_total += 1;
            for (b, le) in self.started_wait_le.iter_mut().zip(QUEUE_WAIT_BUCKETS_S) {
                if waited as f64 <= le * 1000.0 {
                    *b += 1;
                }
            }
            if let Some(i) = self.insts.get_mut(&n) {
                if i.in_flight.is_empty() {
                    i.busy_since = Some(Timestamp::from_millis(now));
                }
                i.in_flight.push(req);
            }
            self.push(now + service, Ev::ReqDone { req, attempt });
        }
    }

    pub fn inst_by_id(&self, id: &InstanceId) -> Option<&Inst> {
        self.insts.values().find(|i| &i.id == id)
    }

    /// Instances already serving when the replay starts (the service was running before the
    /// slice): Ready, taking requests, no cold start.
    pub fn prewarm_ready(&mut self, g: usize, n: u32) {
        for _ in 0..n {
            let zone = self.pick_zone(g).unwrap_or_default();
            let num = self.new_instance(g, zone, LifecycleState::Ready);
            if let Some(i) = self.insts.get_mut(&num) {
                i.serve = Serve::On;
            }
        }
    }

    /// Stop routing new requests to this instance; it keeps serving what it holds.
    /// Returns the requests still in flight.
    pub fn stop_routing(&mut self, id: &InstanceId) -> Option<u32> {
        let n = self.insts.values().find(|i| &i.id == id)?.num;
        let i = self.insts.get_mut(&n)?;
        i.serve = if i.in_flight.is_empty() {
            Serve::Off
        } else {
            Serve::Draining
        };
        Some(i.in_flight.len() as u32)
    }

    /// Put a Ready instance whose replica was stopped back into service after a replica start
    /// on the node (model load from local disk: the warm-start time).
    pub fn start_serving(&mut self, id: &InstanceId) {
        let Some(n) = self.insts.values().find(|i| &i.id == id).map(|i| i.num) else {
            return;
        };
        let secs = self.params.cold.sample_warm_s(&mut self.rng);
        let now = self.now_ms;
        let Some(i) = self.insts.get_mut(&n) else {
            return;
        };
        if i.state != LifecycleState::Ready {
            return;
        }
        match i.serve {
            Serve::Off => {
                i.serve = Serve::Starting;
                let epoch = i.epoch;
                self.push(now + (secs * 1000.0) as i64, Ev::ServeOn { inst: n, epoch });
            }
            // A draining replica can simply take requests again.
            Serve::Draining => {
                i.serve = Serve::On;
                self.dispatch();
            }
            Serve::Starting | Serve::On => {}
        }
    }

    pub fn waiting(&self) -> u32 {
        self.queue.len() as u32
    }

    pub fn in_flight_total(&self) -> u32 {
        self.insts.values().map(|i| i.in_flight.len() as u32).sum()
    }

    /// Remove an instance; its in-flight requests go back to the front of the queue.
    pub(super) fn remove_instance(&mut self, n: u64, preempted: bool) {
        self.settle(n);
        let now = self.now_ms;
        let gpus = self.gpus_of(n);
        let Some(i) = self.insts.remove(&n) else {
            return;
        };
        // A stuck VM deleted: the request it stood for is gone with it.
        self.take_back(|u| u.inst == Some(n));
        if let Some(since) = i.busy_since {
            self.busy_gpu_ms += (now - since.millis()) as f64 * gpus;
        }
        for &req in i.in_flight.iter().rev() {
            let r = &mut self.reqs[req];
            r.start_ms = None;
            r.queued_since = now;
            // Any running attempt is void: its completion event is ignored.
            r.attempt += 1;
            if preempted {
                if !r.hurt {
                    self.requests_hurt += 1;
                }
                r.hurt = true;
            } else {
                self.requests_cut_short += 1;
            }
            self.queue.push_front(req);
        }
        self.dispatch();
    }
}
