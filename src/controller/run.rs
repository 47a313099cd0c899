//! The production run loop: ticks on the wall clock (or earlier when new pending GPU pods wake
//! it), acts only while this replica leads, and stops at a safe point on SIGTERM/Ctrl-C.
//!
//! `gpupool run` builds the pieces (provider, cluster side, signals, outlets) and hands them
//! here; everything about *when* the controller ticks and *whether* it may act lives in this
//! module, so it is the same code in a test as in production:
//! - **Leader fencing.** Only the holder of the leader Lease ticks; a standby keeps its health
//!   heartbeat and its status current, exports no fleet gauges, and reloads the durable state
//!   before it next leads. The controller's fence ([`super::Fence`]) is checked before every
//!   mutating call, and it turns false when the Lease is lost *or* the stop signal arrived.
//! - **Wake-ups.** A new pending GPU pod wakes the loop through the [`Batcher`] (Karpenter's
//!   batching window) and the interval restarts from there.
//! - **Safe stop.** On the stop signal the current tick stops acting at its next mutating call
//!   (the fence) and the loop ends after it; a call still hanging [`SHUTDOWN_GRACE`] after the
//!   signal is abandoned — nothing was acted on after the signal, so nothing is half done by us.
//! - **Save before acknowledge.** Inside [`Controller::tick`]: the state is saved, then the
//!   tick's cloud events are acknowledged (`persist.rs`), so a crash anywhere redelivers them.

use super::batcher::Batcher;
use super::{Controller, ControllerError, Fence, Metrics, TickReport, error_chain};
use crate::model::Timestamp;
use crate::server::{Health, wall_clock};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long a tick may still run after the stop signal: it stops acting at once (the fence),
/// so this only bounds a call already in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Who may act: everyone (VM-only, one replica under systemd) or the Lease holder. The Lease is
/// renewed by its own task, so a long tick neither loses it nor outlives it unnoticed: the
/// controller checks the fence before every mutating call.
pub enum Leadership {
    None,
    #[cfg(feature = "kube")]
    Lease(crate::kube::lease::LeaderHandle),
}

impl Leadership {
    /// Whether this replica leads at `now`.
    pub fn check(&self, now: Timestamp) -> bool {
        let _ = now; // used only with the kube feature
        match self {
            Leadership::None => true,
            #[cfg(feature = "kube")]
            Leadership::Lease(h) => h.is_leader(now),
        }
    }

    /// The Lease's own fence, when there is a Lease.
    pub fn fence(&self) -> Option<Fence> {
        match self {
            Leadership::None => None,
            #[cfg(feature = "kube")]
            Leadership::Lease(h) => Some(h.fence()),
        }
    }

    /// Give the Lease up (stop renewing it and clear its holder) so a standby leads at once.
    pub async fn release(&mut self) {
        #[cfg(feature = "kube")]
        if let Leadership::Lease(h) = self {
            h.release().await;
        }
    }
}

/// What one turn of the loop was, for the outlets.
pub enum Turn<'a> {
    /// This replica does not lead: nothing was observed or planned.
    Standby,
    /// The tick ran (its actions may still have failed: see `results`).
    Ran(&'a TickReport),
    /// The tick held (observation or the saved state failed): nothing was changed.
    Held(&'a ControllerError),
}

/// Where each turn's outcome goes besides the log: `/status`, the status ConfigMap, snapshot
/// dumps, CloudWatch. A failing outlet logs and never fails the loop. Not `Send`: the loop
/// runs on the task that owns the controller (which is not `Sync`), never spawned.
#[async_trait(?Send)]
pub trait Outlets {
    async fn after_turn(&mut self, controller: &Controller, turn: Turn<'_>, now: Timestamp);
}

/// Outlets that publish nothing (tests, one-shot runs).
pub struct NoOutlets;

#[async_trait(?Send)]
impl Outlets for NoOutlets {
    async fn after_turn(&mut self, _: &Controller, _: Turn<'_>, _: Timestamp) {}
}

/// How the loop ran, for the exit code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Ticks run as leader.
    pub ticks: u64,
    /// Of those, the ticks that held.
    pub held: u64,
    /// The last tick was abandoned [`SHUTDOWN_GRACE`] after the stop signal.
    pub abandoned: bool,
}

impl RunSummary {
    /// A bounded run (`--ticks`) whose every tick held did nothing: the caller should see it.
    pub fn failed(&self) -> bool {
        self.ticks > 0 && self.held == self.ticks
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The durable state could not be restored before the first tick (a state of an unknown
    /// version refuses to start rather than be overwritten).
    #[error("restoring the saved state")]
    Restore(#[source] crate::state::StateError),
}

/// Turns true on the stop signal (SIGTERM or Ctrl-C); tests send it themselves.
pub type StopSignal = watch::Receiver<bool>;

/// A stop signal set by SIGTERM or SIGINT, watched by a task of the current runtime.
pub fn stop_on_signals() -> StopSignal {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = tx.send(true);
    });
    rx
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The controller and everything that decides when it ticks.
pub struct RunLoop {
    controller: Controller,
    leader: Leadership,
    /// New pending GPU pods wake the loop (Kubernetes mode); VM-only has nothing to wake it.
    wake: Option<Arc<Batcher>>,
    stop: StopSignal,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    interval: Duration,
    max_ticks: Option<u64>,
    grace: Duration,
}

impl RunLoop {
    /// The loop around `controller`, fenced by `leader` and `stop`: the controller may act only
    /// while this replica leads and no stop was asked for.
    pub fn new(
        controller: Controller,
        leader: Leadership,
        stop: StopSignal,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
        interval: Duration,
    ) -> Self {
        let stopping = stop.clone();
        let leader_fence = leader.fence();
        let controller = controller.with_fence(Arc::new(move || {
            !*stopping.borrow() && leader_fence.as_ref().is_none_or(|f| f())
        }));
        RunLoop {
            controller,
            leader,
            wake: None,
            stop,
            health,
            metrics,
            interval,
            max_ticks: None,
            grace: SHUTDOWN_GRACE,
        }
    }

    /// Wake the loop before its tick when the batcher says so.
    pub fn with_wakeups(mut self, wake: Arc<Batcher>) -> Self {
        self.wake = Some(wake);
        self
    }

    /// Stop after this many ticks as leader (smoke tests, one-shot runs from cron).
    pub fn with_max_ticks(mut self, ticks: Option<u64>) -> Self {
        self.max_ticks = ticks;
        self
    }

    /// Restore the durable state before the first tick. A store out of reach (the state
    /// ConfigMap while the API server is unreachable) is not fatal: the first tick asks again
    /// and holds until it can read it, so a fresh start never overwrites it.
    pub async fn restore(&mut self) -> Result<(), RunError> {
        match self.controller.restore_state(wall_clock()).await {
            Err(e) if e.retry_later() => {
                tracing::warn!(error = %super::error_chain(&e), "saved state not readable yet; retried before the first tick that acts");
                Ok(())
            }
            r => r.map_err(RunError::Restore),
        }
    }

    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// Tick until the stop signal or the tick limit, then give up the Lease.
    pub async fn run(&mut self, outlets: &mut dyn Outlets) -> RunSummary {
        let mut interval = tokio::time::interval(self.interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut summary = RunSummary::default();
        loop {
            if !self.wait_for_turn(&mut interval).await {
                break;
            }
            let now = wall_clock();
            let is_leader = self.leader.check(now);
            self.health.set_leader(is_leader);
            self.metrics.leader.set(i64::from(is_leader));
            if !is_leader {
                self.controller.restore_before_next_tick();
                self.metrics.clear_fleet_gauges();
                self.health.heartbeat(now);
                outlets
                    .after_turn(&self.controller, Turn::Standby, now)
                    .await;
                continue;
            }
            let Some(tick) = self.tick_unless_hung(now).await else {
                summary.abandoned = true;
                break;
            };
            let ok = log_tick(&tick);
            summary.ticks += 1;
            summary.held += u64::from(!ok);
            self.health.record_tick(now, ok);
            let turn = match &tick {
                Ok(r) => Turn::Ran(r),
                Err(e) => Turn::Held(e),
            };
            outlets.after_turn(&self.controller, turn, now).await;
            if self.max_ticks.is_some_and(|n| summary.ticks >= n) {
                break;
            }
        }
        self.leader.release().await;
        summary
    }

    /// Wait for the next tick (or a wake-up, which restarts the interval). False on the stop
    /// signal.
    async fn wait_for_turn(&mut self, interval: &mut tokio::time::Interval) -> bool {
        let wake = self.wake.clone();
        tokio::select! {
            biased;
            _ = self.stop.wait_for(|stop| *stop) => {
                tracing::info!("shutting down");
                false
            }
            _ = interval.tick() => true,
            _ = async {
                match &wake {
                    Some(w) => w.wait().await,
                    None => std::future::pending().await,
                }
            } => {
                tracing::debug!("new pending GPU pods: planning now instead of at the next tick");
                interval.reset();
                true
            }
        }
    }

    /// One tick, or `None` when a call of it still hangs the grace period after the stop
    /// signal (the tick is abandoned; the fence kept it from acting after the signal).
    async fn tick_unless_hung(
        &mut self,
        now: Timestamp,
    ) -> Option<Result<TickReport, ControllerError>> {
        let mut during = self.stop.clone();
        let grace = self.grace;
        tokio::select! {
            r = self.controller.tick(now) => Some(r),
            _ = async {
                let _ = during.wait_for(|stop| *stop).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(grace_s = grace.as_secs(), "shutting down: a call of the current tick still hangs after the grace period; abandoning it (nothing was acted on after the signal)");
                None
            }
        }
    }
}

/// Logs a tick's failed actions, or why it held; true when the tick ran.
fn log_tick(tick: &Result<TickReport, ControllerError>) -> bool {
    match tick {
        Ok(report) => {
            for r in &report.results {
                if let Some(f) = &r.error {
                    tracing::warn!(action = %r.action, kind = f.kind, error = %f.message, "action failed");
                }
            }
            true
        }
        Err(e) => {
            tracing::warn!(error = %error_chain(e), "tick held");
            false
        }
    }
}
