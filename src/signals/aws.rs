//! CloudWatch and SQS signals through the AWS provider crate (feature `aws`).

use super::external::{ExternalError, MetricReader};
use super::prometheus::Sample;
use crate::config::{CloudWatchSignal, SqsSignal};
use crate::model::Timestamp;
use async_trait::async_trait;

/// CloudWatch `GetMetricData` period used for signals: one minute, the finest standard
/// resolution most metrics have.
const CLOUDWATCH_PERIOD_S: u32 = 60;

/// [`MetricReader`] on `gpupool_aws::AwsMetrics`.
pub struct AwsMetricReader(gpupool_aws::AwsMetrics);

impl From<gpupool_aws::AwsMetrics> for AwsMetricReader {
    fn from(m: gpupool_aws::AwsMetrics) -> Self {
        AwsMetricReader(m)
    }
}

#[async_trait]
impl MetricReader for AwsMetricReader {
    async fn cloudwatch(
        &self,
        sig: &CloudWatchSignal,
        _now: Timestamp,
    ) -> Result<Option<Sample>, ExternalError> {
        let latest = self
            .0
            .latest(
                &sig.namespace,
                &sig.metric_name,
                &sig.dimensions,
                &sig.stat,
                CLOUDWATCH_PERIOD_S,
            )
            .await
            .map_err(|e| ExternalError {
                call: "GetMetricData",
                source: Box::new(e),
            })?;
        Ok(latest.map(|(value, at)| Sample { value, at }))
    }

    async fn sqs_depth(
        &self,
        sig: &SqsSignal,
        now: Timestamp,
    ) -> Result<Option<Sample>, ExternalError> {
        let depth = self
            .0
            .queue_depth(&sig.queue_url)
            .await
            .map_err(|e| ExternalError {
                call: "GetQueueAttributes",
                source: Box::new(e),
            })?;
        Ok(Some(Sample {
            value: depth.total(sig.include_in_flight) as f64,
            at: now,
        }))
    }
}
