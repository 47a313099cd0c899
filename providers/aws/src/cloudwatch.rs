//! CloudWatch and SQS for gpupool's signals and metric publishing.
//!
//! [`AwsMetrics`] is deliberately small: three calls, plain arguments, plain results.
//! - [`AwsMetrics::publish`]: `PutMetricData` into the `gpupool` namespace with dimensions
//!   `Pool` (per-pool series) or `AutoScalingGroupName` (per-group series), batched within the
//!   API limits (1,000 datums and 1 MB per request: CloudWatch API Reference, `PutMetricData`,
//!   "Each PutMetricData request is limited to 1 MB in size for HTTP POST requests. You can
//!   send a payload compressed by gzip. Each request is also limited to no more than 1000
//!   different metrics").
//! - Per-group series use `AutoScalingGroupName`, the dimension EC2 Auto Scaling's own group
//!   metrics carry (EC2 Auto Scaling User Guide, "Amazon CloudWatch metrics for Amazon EC2
//!   Auto Scaling", dimensions for Auto Scaling group metrics) and the one the console's group
//!   monitoring tab and a step or target-tracking policy on the group filter by (a customized
//!   metric "published with dimensions" must be named with the same dimensions in the policy,
//!   API Reference `CustomizedMetricSpecification`).
//! - [`AwsMetrics::latest`]: the newest datapoint of any metric via `GetMetricData`.
//! - [`AwsMetrics::queue_depth`]: `ApproximateNumberOfMessages` (+ `…NotVisible`) of a queue
//!   via `GetQueueAttributes` (a queue *name* is resolved once with `GetQueueUrl`).

use crate::error::ApiResult;
use crate::{AwsError, AwsSettings, CLOUDWATCH_NAMESPACE};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    Dimension, Metric, MetricDataQuery, MetricDatum, MetricStat, ScanBy, StandardUnit,
};
use aws_sdk_sqs::types::QueueAttributeName;
use gpupool_provider::{NodeGroupId, PoolName, Result, Timestamp};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Most datums in one `PutMetricData` request (raised from 20 to 1,000 by AWS in 2023).
pub const PUT_METRIC_DATA_MAX_DATUMS: usize = 1000;
/// The request size limit is 1 MB; stay well below it with a conservative size estimate.
const PUT_METRIC_DATA_MAX_BYTES: usize = 800 * 1024;
/// Estimated fixed bytes of one datum in the query encoding (field names, value, timestamp).
const DATUM_OVERHEAD_BYTES: usize = 200;
/// How far back `latest` looks, at least: custom metrics arrive with a delay of minutes.
const LATEST_MIN_LOOKBACK_S: i64 = 900;

/// Unit of a published value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricUnit {
    None,
    Count,
    Seconds,
    Percent,
}

impl MetricUnit {
    fn sdk(self) -> StandardUnit {
        match self {
            MetricUnit::None => StandardUnit::None,
            MetricUnit::Count => StandardUnit::Count,
            MetricUnit::Seconds => StandardUnit::Seconds,
            MetricUnit::Percent => StandardUnit::Percent,
        }
    }
}

/// Dimension name of per-group series (see the module docs).
pub const GROUP_DIMENSION: &str = "AutoScalingGroupName";

/// One value to publish. `pool` / `group` become the `Pool` / `AutoScalingGroupName`
/// dimensions.
#[derive(Clone, Debug, PartialEq)]
pub struct Datum {
    pub metric: String,
    pub pool: Option<PoolName>,
    pub group: Option<NodeGroupId>,
    pub value: f64,
    pub unit: MetricUnit,
    pub at: Timestamp,
}

impl Datum {
    /// A per-group value: dimension `AutoScalingGroupName` only, so a policy or alarm on the
    /// group names it exactly as `{AutoScalingGroupName = <group>}`.
    pub fn for_group(
        metric: &str,
        group: &NodeGroupId,
        value: f64,
        unit: MetricUnit,
        at: Timestamp,
    ) -> Self {
        Datum {
            metric: metric.into(),
            pool: None,
            group: Some(group.clone()),
            value,
            unit,
            at,
        }
    }

    /// Dimensions in name order (`AutoScalingGroupName`, `Pool`), the order [`AwsMetrics::latest`] sends a
    /// `BTreeMap` in. CloudWatch matches dimensions as a set; moto (5.x) compares them in order
    /// (its `Dimension.__lt__` is broken), so one canonical order keeps both happy.
    fn dimensions(&self) -> Vec<(&'static str, &str)> {
        let mut d = Vec::with_capacity(2);
        if let Some(g) = &self.group {
            d.push((GROUP_DIMENSION, g.as_str()));
        }
        if let Some(p) = &self.pool {
            d.push(("Pool", p.as_str()));
        }
        d
    }

    fn estimated_bytes(&self) -> usize {
        DATUM_OVERHEAD_BYTES
            + self.metric.len()
            + self
                .dimensions()
                .iter()
                .map(|(k, v)| k.len() + v.len() + 40)
                .sum::<usize>()
    }
}

/// Split `data` into request-sized batches (pure; tested).
fn batches(data: &[Datum]) -> Vec<&[Datum]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, d) in data.iter().enumerate() {
        let b = d.estimated_bytes();
        if i > start
            && (i - start == PUT_METRIC_DATA_MAX_DATUMS || bytes + b > PUT_METRIC_DATA_MAX_BYTES)
        {
            out.push(&data[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += b;
    }
    if start < data.len() {
        out.push(&data[start..]);
    }
    out
}

/// Depth of an SQS queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueDepth {
    /// `ApproximateNumberOfMessages`: waiting to be received.
    pub visible: u64,
    /// `ApproximateNumberOfMessagesNotVisible`: received, not yet deleted (being worked on).
    pub in_flight: u64,
}

impl QueueDepth {
    pub fn total(self, include_in_flight: bool) -> u64 {
        if include_in_flight {
            self.visible + self.in_flight
        } else {
            self.visible
        }
    }
}

/// CloudWatch + SQS clients for metrics. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AwsMetrics {
    cw: aws_sdk_cloudwatch::Client,
    sqs: aws_sdk_sqs::Client,
    /// Queue name → URL, resolved once (`GetQueueUrl`).
    queue_urls: std::sync::Arc<Mutex<HashMap<String, String>>>,
}

impl AwsMetrics {
    /// Clients for `settings` (region, endpoint, credentials, retries and timeouts).
    pub async fn new(settings: &AwsSettings) -> std::result::Result<Self, AwsError> {
        Ok(Self::from_sdk_config(&crate::sdk_config(settings).await?))
    }

    pub(crate) fn from_sdk_config(cfg: &aws_config::SdkConfig) -> Self {
        AwsMetrics {
            cw: aws_sdk_cloudwatch::Client::new(cfg),
            sqs: aws_sdk_sqs::Client::new(cfg),
            queue_urls: Default::default(),
        }
    }

    /// Publish `data` to the `gpupool` namespace. Non-finite values are skipped (CloudWatch
    /// rejects NaN and ±Inf, and one bad value must not lose the batch).
    pub async fn publish(&self, data: &[Datum]) -> Result<()> {
        let finite: Vec<Datum> = data
            .iter()
            .filter(|d| d.value.is_finite())
            .cloned()
            .collect();
        if finite.len() < data.len() {
            tracing::warn!(
                skipped = data.len() - finite.len(),
                "not publishing non-finite values"
            );
        }
        for batch in batches(&finite) {
            let mut req = self.cw.put_metric_data().namespace(CLOUDWATCH_NAMESPACE);
            for d in batch {
                let mut m = MetricDatum::builder()
                    .metric_name(&d.metric)
                    .value(d.value)
                    .unit(d.unit.sdk())
                    .timestamp(DateTime::from_millis(d.at.millis()));
                for (k, v) in d.dimensions() {
                    m = m.dimensions(Dimension::builder().name(k).value(v).build());
                }
                req = req.metric_data(m.build());
            }
            req.send()
                .await
                .api("PutMetricData", CLOUDWATCH_NAMESPACE)?;
        }
        Ok(())
    }

    /// The newest datapoint of `namespace/metric{dimensions}` aggregated with `stat`
    /// (`Average`, `Sum`, `Maximum`, `p95`…) over `period_s`, looking back at least 15 minutes,
    /// as `(value, timestamp)`. `Ok(None)` when there is no datapoint in that window.
    pub async fn latest(
        &self,
        namespace: &str,
        metric: &str,
        dimensions: &BTreeMap<String, String>,
        stat: &str,
        period_s: u32,
    ) -> Result<Option<(f64, Timestamp)>> {
        let period_s = period_s.max(1);
        let now_s = now_secs();
        let lookback = (i64::from(period_s) * 5).max(LATEST_MIN_LOOKBACK_S);
        let mut m = Metric::builder().namespace(namespace).metric_name(metric);
        for (k, v) in dimensions {
            m = m.dimensions(Dimension::builder().name(k).value(v).build());
        }
        let query = MetricDataQuery::builder()
            .id("m0")
            .metric_stat(
                MetricStat::builder()
                    .metric(m.build())
                    .period(period_s as i32)
                    .stat(stat)
                    .build(),
            )
            .return_data(true)
            .build();
        let target = format!("{namespace}/{metric}");
        let out = self
            .cw
            .get_metric_data()
            .metric_data_queries(query)
            .start_time(DateTime::from_secs(now_s - lookback))
            // Include the current, still-open period.
            .end_time(DateTime::from_secs(now_s + i64::from(period_s)))
            .scan_by(ScanBy::TimestampDescending)
            .send()
            .await
            .api("GetMetricData", &target)?;
        let Some(r) = out
            .metric_data_results()
            .iter()
            .find(|r| r.id() == Some("m0"))
        else {
            return Ok(None);
        };
        // Newest first was asked for; pick the max timestamp anyway, in case a server ignores
        // the order.
        let newest = r
            .timestamps()
            .iter()
            .zip(r.values())
            .filter(|(_, v)| v.is_finite())
            .filter_map(|(t, v)| Some((t.to_millis().ok()?, *v)))
            .max_by_key(|(t, _)| *t);
        Ok(newest.map(|(t, v)| (v, Timestamp::from_millis(t))))
    }

    /// Messages waiting in (and, if asked, being processed from) a queue given by URL or name.
    pub async fn queue_depth(&self, queue: &str) -> Result<QueueDepth> {
        let url = self.queue_url(queue).await?;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .api("GetQueueAttributes", queue)?;
        let get = |k: QueueAttributeName| {
            out.attributes()
                .and_then(|a| a.get(&k))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(QueueDepth {
            visible: get(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        })
    }

    async fn queue_url(&self, queue: &str) -> Result<String> {
        if queue.starts_with("https://") || queue.starts_with("http://") {
            return Ok(queue.to_owned());
        }
        if let Some(u) = lock(&self.queue_urls).get(queue) {
            return Ok(u.clone());
        }
        let out = self
            .sqs
            .get_queue_url()
            .queue_name(queue)
            .send()
            .await
            .api("GetQueueUrl", queue)?;
        let url = out.queue_url().unwrap_or_default().to_owned();
        lock(&self.queue_urls).insert(queue.to_owned(), url.clone());
        Ok(url)
    }
}

/// A poisoned lock only means another thread panicked while holding it; the maps here stay
/// valid (every update is a single insert), so keep using them.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Wall-clock seconds (the shell may read the clock; nothing here is a planner input).
pub(crate) fn now_secs() -> i64 {
    gpupool_provider::clock::wall_clock()
        .millis()
        .div_euclid(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datum(i: usize) -> Datum {
        Datum {
            metric: format!("m{i}"),
            pool: Some("p".into()),
            group: Some("g".into()),
            value: i as f64,
            unit: MetricUnit::Count,
            at: Timestamp::from_secs(0),
        }
    }

    #[test]
    fn batches_respect_the_datum_limit() {
        let data: Vec<Datum> = (0..2500).map(datum).collect();
        let b = batches(&data);
        assert_eq!(
            b.iter().map(|b| b.len()).collect::<Vec<_>>(),
            vec![1000, 1000, 500]
        );
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn batches_respect_the_size_limit() {
        let mut big = datum(0);
        big.metric = "x".repeat(200 * 1024);
        let data = vec![big.clone(), big.clone(), big.clone(), big.clone(), big];
        let b = batches(&data);
        assert!(b.len() >= 2, "five 200 KB datums cannot share one request");
        assert!(
            b.iter()
                .all(|b| b.iter().map(Datum::estimated_bytes).sum::<usize>()
                    <= PUT_METRIC_DATA_MAX_BYTES)
        );
        assert_eq!(b.iter().map(|b| b.len()).sum::<usize>(), 5);
    }

    #[test]
    fn dimensions_are_pool_and_group() {
        assert_eq!(
            datum(1).dimensions(),
            vec![("AutoScalingGroupName", "g"), ("Pool", "p")]
        );
        let g = Datum::for_group(
            "DesiredNodes",
            &"asg-1".into(),
            2.0,
            MetricUnit::Count,
            Timestamp::from_secs(0),
        );
        assert_eq!(g.dimensions(), vec![("AutoScalingGroupName", "asg-1")]);
        let d = Datum {
            group: None,
            ..datum(1)
        };
        assert_eq!(d.dimensions(), vec![("Pool", "p")]);
        let q = QueueDepth {
            visible: 3,
            in_flight: 2,
        };
        assert_eq!((q.total(true), q.total(false)), (5, 3));
    }
}
