//! The run loop (`run.rs`) around the in-memory provider: bounded runs, held ticks, and the
//! stop signal fencing the controller mid-tick.

use super::*;
use crate::controller::run::{Leadership, NoOutlets, RunLoop};
use crate::server::Health;
use std::time::Duration;
use tokio::sync::watch;

fn run_loop(c: Controller, stop: watch::Receiver<bool>) -> RunLoop {
    RunLoop::new(
        c,
        Leadership::None,
        stop,
        Arc::new(Health::new(1, Timestamp::from_secs(0))),
        Arc::new(Metrics::default()),
        // Short, so the test does not wait; nothing here depends on how long a turn takes.
        Duration::from_millis(1),
    )
}

/// The loop needs the runtime's timer (its interval).
fn run_to_end<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn a_bounded_run_stops_after_its_ticks_and_fails_when_every_tick_held() {
    let p = MemProvider::default();
    world(&p).fail_observe = true;
    let (_tx, rx) = watch::channel(false);
    let mut r = run_loop(controller(&p, empty_plan, 1), rx).with_max_ticks(Some(2));
    let s = run_to_end(r.run(&mut NoOutlets));
    assert_eq!((s.ticks, s.held, s.abandoned), (2, 2, false));
    assert!(s.failed());

    let p = MemProvider::default();
    world(&p).groups.push(group("a", CapacityType::OnDemand));
    let (_tx, rx) = watch::channel(false);
    let mut r = run_loop(controller(&p, empty_plan, 1), rx).with_max_ticks(Some(3));
    let s = run_to_end(r.run(&mut NoOutlets));
    assert_eq!((s.ticks, s.held), (3, 0));
    assert!(!s.failed());
}

/// The serving side of the first tick's cluster, which asks the loop to stop while observing
/// in the second tick — after the cloud was read, before anything is acted on.
struct StopOnSecondObserve {
    inner: MemCluster,
    tx: watch::Sender<bool>,
    observed: u32,
}

#[async_trait]
impl Cluster for StopOnSecondObserve {
    async fn observe(
        &mut self,
        instances: &[Instance],
        now: Timestamp,
    ) -> Result<ClusterView, ClusterError> {
        self.observed += 1;
        if self.observed == 2 {
            let _ = self.tx.send(true);
        }
        self.inner.observe(instances, now).await
    }
    async fn drain(
        &mut self,
        instance: &Instance,
        deadline: Timestamp,
        now: Timestamp,
    ) -> Result<DrainProgress, ClusterError> {
        self.inner.drain(instance, deadline, now).await
    }
}

#[test]
fn a_stop_signal_fences_the_tick_it_arrives_in_and_ends_the_loop() {
    let p = MemProvider::default();
    world(&p).groups.push(group("a", CapacityType::OnDemand));
    let (tx, rx) = watch::channel(false);
    let cluster = StopOnSecondObserve {
        inner: MemCluster {
            drain_ticks: 1,
            drain_calls: BTreeMap::new(),
        },
        tx,
        observed: 0,
    };
    let c = Controller::new(
        config(),
        Arc::new(p.clone()),
        Box::new(cluster),
        Box::new(NoDemand),
        Arc::new(Metrics::default()),
    )
    .with_planner(scale_up_first_usable);
    // Unbounded: only the stop signal ends it.
    let mut r = run_loop(c, rx);
    let s = run_to_end(r.run(&mut NoOutlets));
    // The second tick ran to its end but acted on nothing; the loop then stopped.
    assert_eq!((s.ticks, s.held, s.abandoned), (2, 0, false));
    assert_eq!(world(&p).calls, vec!["increase a 1".to_string()]);
}
