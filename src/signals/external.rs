//! Signals read through a cloud SDK (CloudWatch `GetMetricData`, SQS `GetQueueAttributes`).
//!
//! The core does not depend on the AWS SDK: the AWS provider crate implements
//! [`MetricReader`] and the binary hands it to [`super::SignalDemand::with_reader`] when built
//! with the `aws` feature. Without a reader those signals read as stale (scale-down holds).

use super::prometheus::Sample;
use crate::config::{CloudWatchSignal, SqsSignal};
use crate::model::Timestamp;
use async_trait::async_trait;

/// An error from an external reader, reduced to what the signal layer reports.
#[derive(Debug, thiserror::Error)]
#[error("{call} failed")]
pub struct ExternalError {
    /// The API call, e.g. `GetMetricData`.
    pub call: &'static str,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Reads metric values for signals from a cloud.
#[async_trait]
pub trait MetricReader: Send + Sync {
    /// The latest datapoint of the metric (statistic `sig.stat`) at or before `now`, with its
    /// own timestamp (so age can be judged against `stale_after_s`). `Ok(None)` when the
    /// metric has no datapoints in the lookback window.
    async fn cloudwatch(
        &self,
        sig: &CloudWatchSignal,
        now: Timestamp,
    ) -> Result<Option<Sample>, ExternalError>;

    /// Visible messages (`ApproximateNumberOfMessages`), plus in-flight ones
    /// (`ApproximateNumberOfMessagesNotVisible`) when `sig.include_in_flight`; stamped `now`.
    async fn sqs_depth(
        &self,
        sig: &SqsSignal,
        now: Timestamp,
    ) -> Result<Option<Sample>, ExternalError>;
}
