//! gpupool's AWS provider: Auto Scaling groups as node groups.
//!
//! - **Discovery** ([`AwsProvider::node_groups`]): ASGs tagged `gpupool.io/pool=<pool>` *and*
//!   `gpupool.io/enabled=true`, for configured pools only. Offerings are the group's instance
//!   types (launch template, or mixed-instances overrides) × its zones, priced from the tables
//!   in `data/` and live spot prices; GPU facts come from `DescribeInstanceTypes`.
//! - **Actuation**: `SetDesiredCapacity`, `TerminateInstanceInAutoScalingGroup` (with
//!   decrement, so AWS never picks a victim — except where that would go below the group's min
//!   size, see below), EC2 `TerminateInstances` for warm-pool members (the documented way: the
//!   Auto Scaling call refuses them), `PutWarmPool` (keeping the group's instance reuse
//!   policy), `CompleteLifecycleAction` on gpupool's own launch hook, found by name
//!   ([`DEFAULT_LIFECYCLE_HOOK_NAME`]), once the instance's model-cache tag is the pool's
//!   current version.
//! - **Launches accepted but not fulfilled**: AWS reports a stockout or a quota minutes after
//!   `SetDesiredCapacity` succeeded, as a failed scaling activity, and leaves desired capacity
//!   raised with nothing behind it. While that is outstanding the group carries it in
//!   `NodeGroup::unfulfilled` ([`activities::outstanding_failure`]), and
//!   `release_unfulfilled` lowers desired capacity back to the instances the group lists.
//! - **Warm-pool standing cost** ([`ebs`]): what one stopped warm instance costs per hour —
//!   its EBS volumes, from the launch template's block device mappings over the AMI's
//!   (`DescribeImages`), priced from the Price List API (else a us-east-1 table) per GB-month
//!   plus provisioned IOPS / throughput above the free baseline, ÷ 730 h; unknown (with a
//!   warning) when any volume cannot be priced.
//! - **Events**: spot interruption warnings, rebalance recommendations, state changes and AWS
//!   Health scheduled changes from an SQS queue fed by EventBridge ([`events`]).
//!
//! ## Termination and the group's min size
//! Terminating with decrement where desired capacity already equals the group's min size is
//! refused by AWS (ValidationError). gpupool then terminates *without* decrement: AWS launches a
//! replacement, which is what replacing a drifted or unhealthy instance needs. The planner
//! does not scale a group below its min size voluntarily.
//! - **Metrics** ([`AwsMetrics`]): CloudWatch `PutMetricData` / `GetMetricData` and SQS queue
//!   depth, for gpupool's signals and its CloudWatch publishing.
//!
//! ## Capacity type of a group
//! A group is **spot** when its mixed-instances policy sets
//! `OnDemandPercentageAboveBaseCapacity = 0` (every instance above the on-demand base is
//! spot), or, without a mixed-instances policy, when its launch template requests the spot
//! market (`InstanceMarketOptions.MarketType = spot`). Every other group is **on-demand**,
//! including groups that split capacity above the base (0 < percentage < 100): gpupool cannot
//! choose which kind one `SetDesiredCapacity` produces, so it prices such a group as on-demand
//! (the safe side for cost limits) and logs a warning. Give each group one capacity type: the
//! planner composes the mix from several groups.
//!
//! ## Why warm pools sit only on single-type on-demand groups
//! AWS refuses a warm pool on a group with a mixed-instances policy or one that requests spot
//! (`PutWarmPool` → ValidationError): a stopped spot instance could be reclaimed while stopped,
//! and a pool of pre-initialised instances must be of the one launch-template type the group
//! will start. [`AwsProvider::set_warm_pool_size`] refuses those groups up front with
//! `InvalidConfig`, so the planner learns the rule from the error kind, not from a failed
//! call. A pool therefore uses on-demand warm-pool groups for fast, safe capacity and spot
//! groups (mixed or not) for cheap capacity.
//!
//! ## IAM
//! The crate calls exactly the actions in [`IAM_ACTIONS`] (the same list as gpupool's
//! `contract.rs`; a root integration test checks the two agree).

pub mod activities;
pub mod bounds;
mod cloudwatch;
mod discovery;
pub mod ebs;
mod error;
pub mod events;
mod instances;
pub mod price_list;
pub mod pricing;
mod provider;
mod sigv4;

pub use cloudwatch::{
    AwsMetrics, Datum, GROUP_DIMENSION, MetricUnit, PUT_METRIC_DATA_MAX_DATUMS, QueueDepth,
};
pub use error::THROTTLE_RETRY_AFTER_MS;
pub use provider::AwsProvider;
pub use sigv4::{SignError, Sigv4Signer};

/// The SDK crates, re-exported so callers (gpupool's tests, its CLI) build clients against the
/// same versions without depending on them separately.
pub mod sdk {
    pub use aws_config;
    pub use aws_sdk_autoscaling as autoscaling;
    pub use aws_sdk_cloudwatch as cloudwatch;
    pub use aws_sdk_ec2 as ec2;
    pub use aws_sdk_pricing as pricing;
    pub use aws_sdk_sqs as sqs;
}

use gpupool_provider::{InstanceTypeName, PoolName};
use std::collections::BTreeMap;
use std::time::Duration;

/// Tag naming a group's pool (gpupool's `contract::TAG_POOL`).
pub const TAG_POOL: &str = "gpupool.io/pool";
/// Tag that must be `true` on every group gpupool acts on (`contract::TAG_ENABLED`).
pub const TAG_ENABLED: &str = "gpupool.io/enabled";
/// Instance tag holding `<model>@<version>` once the model cache is warm
/// (`contract::TAG_MODEL_CACHE`).
pub const TAG_MODEL_CACHE: &str = "gpupool.io/model-cache";
/// Name of gpupool's launch lifecycle hook, as the Terraform module
/// `terraform/modules/aws-gpu-node-group` creates it on every group (`local.lifecycle_hook_name`)
/// and its user data completes it. Only a hook of this name is completed by gpupool: another
/// launch hook on the group is someone else's to complete.
pub const DEFAULT_LIFECYCLE_HOOK_NAME: &str = "gpupool-model-cache";
/// CloudWatch namespace gpupool publishes to (`contract::CLOUDWATCH_NAMESPACE`).
pub const CLOUDWATCH_NAMESPACE: &str = "gpupool";

/// Every IAM action this crate calls, sorted.
pub const IAM_ACTIONS: &[&str] = &[
    "autoscaling:CompleteLifecycleAction",
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLifecycleHooks",
    "autoscaling:DescribeScalingActivities",
    "autoscaling:DescribeWarmPool",
    "autoscaling:DetachInstances",
    "autoscaling:PutWarmPool",
    "autoscaling:SetDesiredCapacity",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
    "cloudwatch:GetMetricData",
    "cloudwatch:PutMetricData",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeInstances",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:DescribeSpotPriceHistory",
    "ec2:TerminateInstances",
    "pricing:GetProducts",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
];

/// Static credentials, for tests against a local endpoint (moto). Production uses the default
/// credential chain (environment, profile, web identity / IRSA, ECS, IMDS).
#[derive(Clone)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Everything the provider needs; gpupool's `AwsConfig` maps onto it.
#[derive(Clone, Debug)]
pub struct AwsSettings {
    pub region: String,
    /// Endpoint override for every service (tests, VPC endpoints). Without it the SDK still
    /// honours `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>`.
    pub endpoint_url: Option<String>,
    /// SQS queue fed by EventBridge with interruption events; `None` disables event polling
    /// (launch failures are still reported).
    pub interruption_queue_url: Option<String>,
    /// Limit on one API call including the SDK's retries.
    pub api_timeout: Duration,
    /// Attempts per call (first try included) in the SDK's standard retry mode.
    pub max_attempts: u32,
    /// Pools whose groups are discovered; groups of other pools are never touched.
    pub pools: Vec<PoolName>,
    /// `None`: the default credential chain.
    pub credentials: Option<StaticCredentials>,
    /// On-demand dollars per hour overriding every other source (types no source prices in
    /// the region, negotiated prices).
    pub price_overrides: BTreeMap<InstanceTypeName, f64>,
    /// Ask the Price List Query API for live on-demand prices (`pricing:GetProducts`, see
    /// [`price_list`]); off: the shipped tables only (isolated VPCs without a route to it).
    pub price_list_api: bool,
    /// gpupool's launch lifecycle hook on its groups ([`DEFAULT_LIFECYCLE_HOOK_NAME`]).
    pub lifecycle_hook_name: String,
    /// Each pool's current model cache, `<model>@<version>` (the pool's `model_cache`): the
    /// launch hook is completed only once an instance's `gpupool.io/model-cache` tag equals it.
    /// A pool without one needs the tag present, any value.
    pub model_caches: BTreeMap<PoolName, String>,
}

impl AwsSettings {
    /// Settings with gpupool's defaults: 20 s per call, 4 attempts, no endpoint override.
    pub fn new(region: impl Into<String>, pools: Vec<PoolName>) -> Self {
        AwsSettings {
            region: region.into(),
            endpoint_url: None,
            interruption_queue_url: None,
            api_timeout: Duration::from_secs(20),
            max_attempts: 4,
            pools,
            credentials: None,
            price_overrides: BTreeMap::new(),
            price_list_api: true,
            lifecycle_hook_name: DEFAULT_LIFECYCLE_HOOK_NAME.to_owned(),
            model_caches: BTreeMap::new(),
        }
    }

    fn validate(&self) -> Result<(), AwsError> {
        if self.region.trim().is_empty() {
            return Err(AwsError::InvalidSettings("region is empty".into()));
        }
        if self.api_timeout.is_zero() {
            return Err(AwsError::InvalidSettings(
                "api_timeout must be positive".into(),
            ));
        }
        if self.lifecycle_hook_name.trim().is_empty() {
            return Err(AwsError::InvalidSettings(
                "lifecycle_hook_name is empty".into(),
            ));
        }
        if self.max_attempts == 0 {
            return Err(AwsError::InvalidSettings(
                "max_attempts must be at least 1".into(),
            ));
        }
        if let Some((t, p)) = self
            .price_overrides
            .iter()
            .find(|(_, p)| !(p.is_finite() && **p > 0.0))
        {
            return Err(AwsError::InvalidSettings(format!(
                "price_overrides[{t}] must be a positive number of dollars, got {p}"
            )));
        }
        Ok(())
    }
}

/// Errors building the provider (API errors are [`gpupool_provider::ProviderError`]).
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("invalid AWS settings: {0}")]
    InvalidSettings(String),
}

/// First backoff before a retry, doubled per retry. The Rust SDK's default is 1 s
/// (`RetryConfigBuilder::build` in aws-smithy-types 1.9); the JavaScript SDK v3 backs off
/// from 500 ms after throttling and 100 ms after other errors (`THROTTLING_RETRY_DELAY_BASE`,
/// `DEFAULT_RETRY_DELAY_BASE` in `@aws-sdk/middleware-retry`). 500 ms: with 30 % of calls
/// throttled and 20 % failing, 1 s made one tick of a dozen reads take 21 s (measured against
/// moto behind the fault proxy), close to the 30 s liveness limit.
pub const RETRY_INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Longest backoff before one retry. The SDK's default is 20 s (same source), longer than a
/// whole tick; 4 s keeps a call's worst case inside [`AwsSettings::api_timeout`].
pub const RETRY_MAX_BACKOFF: Duration = Duration::from_secs(4);
/// Time budgeted per attempt when checking that the retries fit (a throttling or 5xx answer
/// comes back well within it).
pub const MIN_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// How one API call is bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallTimeouts {
    /// The longest the SDK may sleep between attempts, summed over every retry.
    pub backoff_total: Duration,
    /// `operation_timeout`: the whole call, retries included. Never shorter than every backoff
    /// plus [`MIN_ATTEMPT_TIMEOUT`] per attempt, so the retries of errors answered at once
    /// (throttling, 5xx) always fit — a call cut off mid-retry wastes the attempts already
    /// made and reports a timeout where the cloud only throttled.
    pub operation: Duration,
}

/// The SDK's timeouts for a per-call limit of `api_timeout` and `max_attempts` attempts.
///
/// In standard retry mode the SDK sleeps `rand[0,1) × min(initial × 2^(i-1), max_backoff)`
/// before retry `i` (`calculate_exponential_backoff` in aws-smithy-runtime 1.16,
/// `client/retries/strategy/standard.rs`), so the sum over the retries is at most
/// [`CallTimeouts::backoff_total`]; when `api_timeout` cannot hold it, the call's limit grows
/// instead of the retries being cut.
///
/// No per-attempt timeout: an attempt cut off after the server acted would be retried, and a
/// write that is not idempotent (`PutMetricData`, `TerminateInstanceInAutoScalingGroup` with
/// decrement) would then be applied twice — quarter- and half-budget attempt timeouts did that
/// against a slow moto on a loaded machine. A hung endpoint therefore costs one whole
/// `api_timeout` per call, and is not retried within it. A server's `x-amz-retry-after` may
/// add up to 5 s per retry (same source, retry behaviour 2.1); the Auto Scaling and EC2 query
/// APIs are not documented to send it, so it is not budgeted — the operation timeout still
/// ends such a call.
pub fn call_timeouts(api_timeout: Duration, max_attempts: u32) -> CallTimeouts {
    let attempts = max_attempts.max(1);
    let backoff_total: Duration = (1..attempts)
        .map(|retry| {
            let doubled = RETRY_INITIAL_BACKOFF
                .checked_mul(1u32.checked_shl(retry - 1).unwrap_or(u32::MAX))
                .unwrap_or(RETRY_MAX_BACKOFF);
            doubled.min(RETRY_MAX_BACKOFF)
        })
        .sum();
    let operation = api_timeout.max(
        MIN_ATTEMPT_TIMEOUT
            .saturating_mul(attempts)
            .saturating_add(backoff_total),
    );
    CallTimeouts {
        backoff_total,
        operation,
    }
}

/// The shared SDK configuration: region, endpoint, credentials, standard retries, timeouts.
async fn sdk_config(settings: &AwsSettings) -> Result<aws_config::SdkConfig, AwsError> {
    use aws_config::{BehaviorVersion, Region};
    settings.validate()?;
    let t = call_timeouts(settings.api_timeout, settings.max_attempts);
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()))
        // Standard, not adaptive, retries. Adaptive mode adds a client-side token bucket that,
        // once throttled, refills at down to 0.5 requests per second (`MIN_FILL_RATE` in
        // aws-smithy-runtime 1.16 `client/retries/client_rate_limiter.rs`) and is shared by
        // every client of a retry partition (`CLIENT_RATE_LIMITER`, keyed by service and
        // region): under 30 % throttling every call of a tick then queued behind it and a
        // 0→3 scale-up took 87 s (issue #14). Standard mode retries with jittered exponential
        // backoff only; its retry quota (a 500-token bucket, `token_bucket.rs`) still stops
        // retry storms, and the controller's per-tick retry budget is the second bound.
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(settings.max_attempts)
                .with_initial_backoff(RETRY_INITIAL_BACKOFF)
                .with_max_backoff(RETRY_MAX_BACKOFF),
        )
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(t.operation)
                .build(),
        );
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    if let Some(c) = &settings.credentials {
        loader = loader.credentials_provider(aws_sdk_autoscaling::config::Credentials::new(
            c.access_key_id.clone(),
            c.secret_access_key.clone(),
            None,
            None,
            "gpupool-static",
        ));
    }
    Ok(loader.load().await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_list_is_sorted_and_unique() {
        let mut sorted = IAM_ACTIONS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, IAM_ACTIONS);
    }

    #[test]
    fn settings_are_validated() {
        let ok = AwsSettings::new("us-east-1", vec!["p".into()]);
        assert!(ok.validate().is_ok());
        let mut bad = ok.clone();
        bad.region = " ".into();
        assert!(bad.validate().is_err());
        let mut bad = ok.clone();
        bad.price_overrides.insert("x.large".into(), -1.0);
        assert!(bad.validate().is_err());
        let mut bad = ok;
        bad.max_attempts = 0;
        assert!(bad.validate().is_err());
    }

    #[test]
    fn call_timeouts_fit_every_retry_inside_the_call() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // (api_timeout, attempts) → (attempt, backoff_total, operation)
        // (api_timeout, attempts) → (backoff_total, operation)
        let table = [
            ((s(20), 4), (ms(3500), s(20))),
            ((s(20), 3), (ms(1500), s(20))),
            ((s(30), 1), (s(0), s(30))),
            // Backoffs are capped at 4 s: 0.5 + 1 + 2 + 4 + 4.
            ((s(60), 6), (ms(11_500), s(60))),
            // Too short for the retries: the call's limit grows (4 × 1 s + 3.5 s).
            ((s(5), 4), (ms(3500), ms(7500))),
            ((s(1), 0), (s(0), s(1))),
        ];
        for ((api, attempts), (backoff, operation)) in table {
            let t = call_timeouts(api, attempts);
            assert_eq!(
                (t.backoff_total, t.operation),
                (backoff, operation),
                "api_timeout {api:?}, {attempts} attempts"
            );
            assert!(MIN_ATTEMPT_TIMEOUT * attempts.max(1) + t.backoff_total <= t.operation);
        }
        // A huge attempt count does not overflow the doubling.
        let t = call_timeouts(s(20), 64);
        assert_eq!(t.backoff_total, ms(500 + 1000 + 2000 + 4000 * 60));
    }

    #[test]
    fn credentials_debug_hides_the_secret() {
        let c = StaticCredentials {
            access_key_id: "AKIA".into(),
            secret_access_key: "s3cr3t".into(),
        };
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
