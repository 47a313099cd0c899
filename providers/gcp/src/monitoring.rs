//! Access tokens for Google Cloud Managed Service for Prometheus's query API
//! (`GET https://monitoring.googleapis.com/v1/projects/{project}/location/global/prometheus/api/v1/query`,
//! Cloud Monitoring API reference "Method: projects.location.prometheus.api.v1.query", whose
//! authorization scopes include `https://www.googleapis.com/auth/monitoring.read`; KEDA's
//! equivalent is kedacore/keda#4675).
//!
//! The token comes from the same Application Default Credentials the provider uses (GKE
//! Workload Identity, a VM's service account, `GOOGLE_APPLICATION_CREDENTIALS`), narrowed to
//! the read-only monitoring scope. `google-cloud-auth` caches the token and refreshes it before
//! it expires, so asking for headers on every query costs no round trip most of the time.

use crate::GcpError;
use google_cloud_auth::credentials::{CacheableResource, Credentials};

/// The OAuth scope for reading Cloud Monitoring (and so Managed Prometheus) data.
pub const MONITORING_READ_SCOPE: &str = "https://www.googleapis.com/auth/monitoring.read";

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("getting a Google access token")]
    Credentials(#[source] google_cloud_auth::errors::CredentialsError),
    /// Only returned when an entity tag is passed, which this module never does.
    #[error("the credentials answered `not modified` without a cached value")]
    NotModified,
}

/// Request headers carrying a `monitoring.read` access token.
#[derive(Clone, Debug)]
pub struct MonitoringToken {
    credentials: Credentials,
}

impl MonitoringToken {
    /// Application Default Credentials with the `monitoring.read` scope.
    pub fn application_default() -> Result<MonitoringToken, GcpError> {
        let credentials = google_cloud_auth::credentials::Builder::default()
            .with_scopes([MONITORING_READ_SCOPE])
            .build()
            .map_err(GcpError::Credentials)?;
        Ok(MonitoringToken { credentials })
    }

    /// Given credentials (tests).
    pub fn from_credentials(credentials: Credentials) -> MonitoringToken {
        MonitoringToken { credentials }
    }

    /// The headers to add to one request (`authorization: Bearer …`, and
    /// `x-goog-user-project` when the credentials name a quota project).
    pub async fn headers(&self) -> Result<Vec<(String, String)>, TokenError> {
        match self
            .credentials
            .headers(http::Extensions::new())
            .await
            .map_err(TokenError::Credentials)?
        {
            CacheableResource::New { data, .. } => Ok(data
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect()),
            CacheableResource::NotModified => Err(TokenError::NotModified),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use google_cloud_auth::credentials::{CredentialsProvider, EntityTag};
    use http::{HeaderMap, HeaderValue};

    /// Credentials that hand out a fixed token, as a metadata server would.
    #[derive(Debug)]
    struct Fixed;

    impl CredentialsProvider for Fixed {
        async fn headers(
            &self,
            _extensions: http::Extensions,
        ) -> Result<CacheableResource<HeaderMap>, google_cloud_auth::errors::CredentialsError>
        {
            let mut h = HeaderMap::new();
            h.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_static("Bearer ya29.fixed"),
            );
            Ok(CacheableResource::New {
                entity_tag: EntityTag::new(),
                data: h,
            })
        }
        async fn universe_domain(&self) -> Option<String> {
            None
        }
    }

    #[tokio::test]
    async fn headers_carry_the_token() {
        let t = MonitoringToken::from_credentials(Credentials::from(Fixed));
        let h = t.headers().await.unwrap();
        assert_eq!(
            h,
            vec![("authorization".to_owned(), "Bearer ya29.fixed".to_owned())]
        );
    }
}
