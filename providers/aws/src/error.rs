//! SDK errors → [`ProviderError`], by the error *code* the service returns
//! (`ProvideErrorMetadata::code()`), never by Debug text.
//!
//! The SDK has already retried retryable errors (standard retry mode, see `AwsSettings`) by the
//! time an error gets here, so a `Throttled` here means the retry budget ran out.

use aws_sdk_autoscaling::error::ProvideErrorMetadata;
use aws_sdk_autoscaling::error::SdkError;
use gpupool_provider::ProviderError;

/// How long the controller should leave a throttled group alone. AWS sends no Retry-After; the
/// SDK already backed off within the call, so this is the pause *between ticks*.
pub const THROTTLE_RETRY_AFTER_MS: u64 = 5_000;

const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "PriorRequestNotComplete",
    "SlowDown",
    // Auto Scaling: another update of the same group is running; come back shortly.
    "ResourceContention",
];

const CAPACITY_CODES: &[&str] = &["InsufficientInstanceCapacity", "InsufficientCapacity"];

const QUOTA_CODES: &[&str] = &[
    // Auto Scaling: too many groups / launch configurations / hooks for the account.
    "LimitExceeded",
    "VcpuLimitExceeded",
    "InstanceLimitExceeded",
    "MaxSpotInstanceCountExceeded",
    "ServiceQuotaExceededException",
];

/// EC2 / SQS codes that mean the object does not exist.
const NOT_FOUND_CODES: &[&str] = &[
    "InvalidInstanceID.NotFound",
    "InvalidInstanceID.Malformed",
    "InvalidLaunchTemplateId.NotFound",
    "InvalidLaunchTemplateName.NotFoundException",
    "InvalidLaunchTemplateId.VersionNotFound",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "ResourceNotFound",
    "ResourceNotFoundException",
];

/// Classify an error by code and message. Pure, so it is tested without a server.
///
/// Auto Scaling reports a missing group / instance / lifecycle action with the generic
/// `ValidationError` code; only its message says "not found" (there is no finer code), so for
/// that one code the message decides.
pub fn classify(code: Option<&str>, message: Option<&str>) -> Class {
    let Some(code) = code else {
        return Class::Other;
    };
    if THROTTLING_CODES.contains(&code) {
        Class::Throttled
    } else if CAPACITY_CODES.contains(&code) {
        Class::Capacity
    } else if QUOTA_CODES.contains(&code) {
        Class::Quota
    } else if NOT_FOUND_CODES.contains(&code)
        || (code == "ValidationError"
            && message.is_some_and(|m| {
                let m = m.to_ascii_lowercase();
                m.contains("not found") || m.contains("no active lifecycle action")
            }))
    {
        Class::NotFound
    } else if code == "ReceiptHandleIsInvalid" {
        Class::StaleReceipt
    } else {
        Class::Other
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Throttled,
    Capacity,
    Quota,
    NotFound,
    /// An SQS receipt handle that no longer names a message (already deleted, expired).
    StaleReceipt,
    Other,
}

/// Map any SDK operation error onto `ProviderError`. `call` is the API call as IAM spells it
/// (`SetDesiredCapacity`), `target` the group, instance or queue acted on.
pub fn map_sdk<E, R>(call: &'static str, target: &str, err: SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let what = || match err.message() {
        Some(m) => format!("{target} ({}): {m}", err.code().unwrap_or("")),
        None => target.to_owned(),
    };
    match classify(err.code(), err.message()) {
        Class::Throttled => ProviderError::Throttled {
            retry_after_ms: THROTTLE_RETRY_AFTER_MS,
        },
        Class::Quota => ProviderError::QuotaExceeded { what: what() },
        Class::NotFound | Class::StaleReceipt => ProviderError::NotFound { what: what() },
        // No call here launches one offering (launches happen after `SetDesiredCapacity`
        // returns and fail as scaling activities), so a capacity error cannot name its
        // offering: it is transient like any other.
        Class::Capacity | Class::Other => ProviderError::Transient {
            call,
            target: target.to_owned(),
            source: Box::new(err),
        },
    }
}

/// `send().await.api(call, target)?`: an SDK call's result with the error mapped by [`map_sdk`].
pub trait ApiResult<T> {
    fn api(self, call: &'static str, target: &str) -> Result<T, ProviderError>;
}

impl<T, E, R> ApiResult<T> for Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    fn api(self, call: &'static str, target: &str) -> Result<T, ProviderError> {
        self.map_err(|e| map_sdk(call, target, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_decide_the_class() {
        assert_eq!(classify(Some("Throttling"), None), Class::Throttled);
        assert_eq!(
            classify(Some("RequestLimitExceeded"), None),
            Class::Throttled
        );
        assert_eq!(
            classify(Some("InsufficientInstanceCapacity"), None),
            Class::Capacity
        );
        assert_eq!(classify(Some("VcpuLimitExceeded"), None), Class::Quota);
        assert_eq!(classify(Some("LimitExceeded"), None), Class::Quota);
        assert_eq!(
            classify(Some("InvalidInstanceID.NotFound"), None),
            Class::NotFound
        );
        assert_eq!(
            classify(Some("ReceiptHandleIsInvalid"), None),
            Class::StaleReceipt
        );
        assert_eq!(classify(Some("InternalFailure"), None), Class::Other);
        assert_eq!(
            classify(None, Some("not found")),
            Class::Other,
            "no code: never guess"
        );
    }

    #[test]
    fn validation_error_is_not_found_only_when_it_says_so() {
        let m = "AutoScalingGroup name not found - AutoScalingGroup 'x' not found";
        assert_eq!(classify(Some("ValidationError"), Some(m)), Class::NotFound);
        let m = "No active Lifecycle Action found with instance ID i-0123";
        assert_eq!(classify(Some("ValidationError"), Some(m)), Class::NotFound);
        let m = "New SetDesiredCapacity value 9 is above max value 4 for the AutoScalingGroup.";
        assert_eq!(classify(Some("ValidationError"), Some(m)), Class::Other);
    }
}
