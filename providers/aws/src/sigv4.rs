//! AWS Signature Version 4 for HTTP APIs gpupool calls outside the SDK: the query API of
//! Amazon Managed Service for Prometheus (signing service `aps`), which accepts only SigV4
//! requests ("Amazon Managed Service for Prometheus requires ... requests signed with AWS
//! Signature Version 4", AMP user guide, "Query your Prometheus metrics"; KEDA does the same in
//! `pkg/scalers/aws/aws_sigv4.go`, kedacore/keda#5373).
//!
//! Signing uses the SDK's own signer (`aws-sigv4`) and credentials from the same default chain
//! the provider uses (environment, profile, web identity / IRSA, ECS, IMDS). The signer puts
//! the signature in headers (`authorization`, `x-amz-date`, and `x-amz-security-token` for
//! temporary credentials) and derives the signed `host` header from the URL; the query string
//! is part of the canonical request, so the URL sent must be exactly the URL signed.

use crate::{AwsError, StaticCredentials};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use std::time::SystemTime;

/// Why a request could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("no AWS credentials: {0}")]
    Credentials(#[source] aws_credential_types::provider::error::CredentialsError),
    #[error("signing the request")]
    Signing(#[source] aws_sigv4::http_request::SigningError),
    #[error("building the signing parameters")]
    Params(#[source] aws_sigv4::sign::v4::signing_params::BuildError),
}

/// Signs requests for one region and service.
#[derive(Clone, Debug)]
pub struct Sigv4Signer {
    credentials: SharedCredentialsProvider,
    region: String,
    service: String,
}

impl Sigv4Signer {
    /// The default credential chain, as the provider loads it.
    pub async fn from_default_chain(region: &str, service: &str) -> Result<Self, AwsError> {
        use aws_config::{BehaviorVersion, Region};
        let cfg = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .load()
            .await;
        let credentials = cfg.credentials_provider().ok_or_else(|| {
            AwsError::InvalidSettings("the default AWS credential chain is empty".into())
        })?;
        Ok(Sigv4Signer {
            credentials,
            region: region.to_owned(),
            service: service.to_owned(),
        })
    }

    /// Fixed credentials (tests against a local fake).
    pub fn from_static(c: &StaticCredentials, region: &str, service: &str) -> Self {
        let creds = Credentials::new(
            c.access_key_id.clone(),
            c.secret_access_key.clone(),
            None,
            None,
            "gpupool-static",
        );
        Sigv4Signer {
            credentials: SharedCredentialsProvider::new(creds),
            region: region.to_owned(),
            service: service.to_owned(),
        }
    }

    /// The headers that sign a body-less `method url` at `at` (the caller's clock). `url` must
    /// already be percent-encoded, exactly as it will be sent.
    pub async fn sign(
        &self,
        method: &str,
        url: &str,
        at: SystemTime,
    ) -> Result<Vec<(String, String)>, SignError> {
        let creds = self
            .credentials
            .provide_credentials()
            .await
            .map_err(SignError::Credentials)?;
        let identity = creds.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .map_err(SignError::Params)?
            .into();
        let request =
            SignableRequest::new(method, url, std::iter::empty(), SignableBody::Bytes(&[]))
                .map_err(SignError::Signing)?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(SignError::Signing)?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signature_headers_have_the_documented_shape() {
        let s = Sigv4Signer::from_static(
            &StaticCredentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            },
            "us-east-1",
            "aps",
        );
        // 2015-08-30T12:36:00Z, the date of AWS's SigV4 test suite.
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        let h = s
            .sign(
                "GET",
                "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/api/v1/query?query=up",
                at,
            )
            .await
            .unwrap();
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("x-amz-date"), Some("20150830T123600Z"));
        let auth = get("authorization").unwrap();
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/aps/aws4_request, SignedHeaders=host;x-amz-date, Signature="
            ),
            "{auth}"
        );
        let sig = auth.rsplit("Signature=").next().unwrap();
        assert_eq!(sig.len(), 64);
        assert!(!auth.contains("EXAMPLEKEY"), "the secret is never sent");
        // Same input, same signature (deterministic); another URL, another signature.
        let again = s.sign("GET", "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/api/v1/query?query=up", at).await.unwrap();
        assert_eq!(h, again);
        let other = s.sign("GET", "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/api/v1/query?query=down", at).await.unwrap();
        assert_ne!(h, other);
    }
}
