//! The provider wrapped once for metrics: every call's latency and every error by its typed
//! kind, whichever part of the controller made the call — instead of counting at each call
//! site (where a new call was easily left uncounted). Karpenter wraps its cloud provider the
//! same way (`pkg/cloudprovider/metrics/cloudprovider.go`, `Decorate`: a duration histogram and
//! an error counter per method, labelled by method name and error type, never error text).
//!
//! Labels are fixed: `call` is the trait method's name and `kind` is
//! [`ProviderError::kind`], so the series stay few whatever the cloud answers.

use super::Metrics;
use super::metrics::{CallLabels, ErrorLabels};
use crate::model::{Instance, InstanceId, NodeGroup, NodeGroupId, ProviderEvent};
use async_trait::async_trait;
use gpupool_provider::{NodeGroupProvider, ProviderError, Result};
use std::future::Future;
use std::sync::Arc;

/// `inner`, with each call timed into `gpupool_provider_call_duration_seconds{call}` and each
/// error counted in `gpupool_provider_errors_total{call,kind}`.
pub struct Instrumented<P: ?Sized> {
    inner: Arc<P>,
    metrics: Arc<Metrics>,
}

impl<P: NodeGroupProvider + ?Sized> Instrumented<P> {
    pub fn new(inner: Arc<P>, metrics: Arc<Metrics>) -> Self {
        Instrumented { inner, metrics }
    }

    async fn measured<T>(
        &self,
        call: &'static str,
        f: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        // Wall-clock timing here only feeds the latency histogram; it is never a decision input.
        let started = gpupool_provider::clock::monotonic();
        let r = f.await;
        self.metrics
            .provider_call_duration_seconds
            .get_or_create(&CallLabels { call: call.into() })
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = &r {
            count_error(&self.metrics, call, e);
        }
        r
    }
}

fn count_error(metrics: &Metrics, call: &'static str, e: &ProviderError) {
    metrics
        .provider_errors
        .get_or_create(&ErrorLabels {
            call: call.into(),
            kind: e.kind().into(),
        })
        .inc();
}

#[async_trait]
impl<P: NodeGroupProvider + ?Sized> NodeGroupProvider for Instrumented<P> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn node_groups(&self) -> Result<Vec<NodeGroup>> {
        self.measured("node_groups", self.inner.node_groups()).await
    }
    async fn instances(&self, group: &NodeGroupId) -> Result<Vec<Instance>> {
        self.measured("instances", self.inner.instances(group))
            .await
    }
    async fn increase(&self, group: &NodeGroupId, delta: u32) -> Result<()> {
        self.measured("increase", self.inner.increase(group, delta))
            .await
    }
    async fn terminate(&self, group: &NodeGroupId, instances: &[InstanceId]) -> Result<()> {
        self.measured("terminate", self.inner.terminate(group, instances))
            .await
    }
    async fn release_unfulfilled(
        &self,
        group: &NodeGroupId,
        count: u32,
        instances: &[InstanceId],
    ) -> Result<u32> {
        let call = self.inner.release_unfulfilled(group, count, instances);
        self.measured("release_unfulfilled", call).await
    }
    async fn set_warm_pool_size(&self, group: &NodeGroupId, size: u32) -> Result<()> {
        let call = self.inner.set_warm_pool_size(group, size);
        self.measured("set_warm_pool_size", call).await
    }
    async fn complete_warmup(&self, group: &NodeGroupId, instance: &InstanceId) -> Result<()> {
        let call = self.inner.complete_warmup(group, instance);
        self.measured("complete_warmup", call).await
    }
    async fn poll_events(&self) -> Result<Vec<ProviderEvent>> {
        self.measured("poll_events", self.inner.poll_events()).await
    }
    async fn ack_event(&self, ack: &str) -> Result<()> {
        self.measured("ack_event", self.inner.ack_event(ack)).await
    }
    async fn mark_draining(
        &self,
        group: &NodeGroupId,
        instance: &InstanceId,
        deadline: gpupool_provider::Timestamp,
    ) -> Result<()> {
        let call = self.inner.mark_draining(group, instance, deadline);
        self.measured("mark_draining", call).await
    }
    async fn clear_draining(&self, group: &NodeGroupId, instance: &InstanceId) -> Result<()> {
        let call = self.inner.clear_draining(group, instance);
        self.measured("clear_draining", call).await
    }
    fn reclaim_refund_window(&self) -> Option<std::time::Duration> {
        self.inner.reclaim_refund_window()
    }
    async fn release_to_reclaim(&self, group: &NodeGroupId, instance: &InstanceId) -> Result<()> {
        let call = self.inner.release_to_reclaim(group, instance);
        self.measured("release_to_reclaim", call).await
    }
    async fn sweep_released(
        &self,
        now: gpupool_provider::Timestamp,
        grace: std::time::Duration,
    ) -> Result<Vec<InstanceId>> {
        let call = self.inner.sweep_released(now, grace);
        self.measured("sweep_released", call).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::doubles::MemProvider;
    use prometheus_client::registry::Registry;

    fn block<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn every_call_is_timed_and_every_error_counted_by_call_and_kind() {
        let mem = MemProvider::default();
        mem.w().fail_observe = true;
        mem.w().fail_instances_of.push(NodeGroupId::new("g"));
        let metrics = Arc::new(Metrics::default());
        let p = Instrumented::new(Arc::new(mem.clone()), metrics.clone());
        block(async {
            assert!(p.node_groups().await.is_err());
            assert!(p.instances(&NodeGroupId::new("g")).await.is_err());
            assert!(p.instances(&NodeGroupId::new("g")).await.is_err());
            assert!(p.instances(&NodeGroupId::new("h")).await.is_ok());
            assert!(p.ack_event("a-1").await.is_ok());
        });
        // Delegated, not swallowed: the inner provider saw the call.
        assert_eq!(mem.w().acked, vec!["a-1".to_string()]);
        assert_eq!(p.name(), "mem");

        let mut reg = Registry::default();
        metrics.register(&mut reg);
        let text = super::super::metrics::encode(&reg);
        for want in [
            r#"gpupool_provider_errors_total{call="node_groups",kind="transient"} 1"#,
            r#"gpupool_provider_errors_total{call="instances",kind="throttled"} 2"#,
            r#"gpupool_provider_call_duration_seconds_count{call="instances"} 3"#,
            r#"gpupool_provider_call_duration_seconds_count{call="ack_event"} 1"#,
        ] {
            assert!(text.contains(want), "missing {want}:\n{text}");
        }
        assert!(!text.contains(r#"call="ack_event",kind"#), "{text}");
    }
}
