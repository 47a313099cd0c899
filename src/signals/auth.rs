//! Authentication, TLS and extra headers for Prometheus-API queries (a signal's `auth`, `tls`
//! and `headers`): the modes of KEDA's Prometheus scaler (<https://keda.sh/docs/latest/scalers/prometheus/>:
//! `authModes` bearer, basic, tls, custom headers, `unsafeSsl`), plus SigV4 for Amazon Managed
//! Service for Prometheus (feature `aws`) and Google credentials for Managed Service for
//! Prometheus (feature `gcp`).
//!
//! Secrets are read when a request is made (a file is re-read every time, so a rotated
//! projected token or Secret is picked up without a restart) and go only into request headers
//! marked sensitive. Errors name the file or variable, never its content; nothing here logs.
//! reqwest drops `Authorization` when a redirect leaves the host, so a redirect cannot leak a
//! token to another server.
//!
//! An [`Endpoint`] (HTTP client with its TLS settings, headers and credential) is built once
//! per distinct access setting and kept across ticks by [`Endpoints`]: a TLS client or an
//! AWS credential chain is too costly to build per query. A build that fails (a CA file not
//! mounted yet) is retried next tick.

use crate::config::{AuthKind, Config, Issue, PrometheusAccess, PrometheusAuth, PrometheusTls};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Why a request could not be authorised or its client built. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("reading {what} from {path}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} file {path} is empty")]
    EmptyFile { what: &'static str, path: PathBuf },
    #[error("environment variable {name} ({what}) is not set or empty")]
    EnvMissing { what: &'static str, name: String },
    #[error("{what} contains characters not allowed in an HTTP header")]
    BadHeaderValue { what: &'static str },
    #[error("header {name:?}: {problem}")]
    Header { name: String, problem: &'static str },
    #[error("loading TLS {what} from {path}")]
    Tls {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("building the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("{0} authentication needs a gpupool built with --features {1}")]
    NotBuilt(&'static str, &'static str),
    #[error("sigv4 needs a region: set auth.sigv4.region or aws.region")]
    NoRegion,
    #[cfg(feature = "aws")]
    #[error("loading AWS credentials")]
    AwsSetup(#[source] gpupool_aws::AwsError),
    #[cfg(feature = "aws")]
    #[error("SigV4 signing")]
    Sigv4(#[source] gpupool_aws::SignError),
    #[cfg(feature = "gcp")]
    #[error("loading Google credentials")]
    GoogleSetup(#[source] gpupool_gcp::GcpError),
    #[cfg(feature = "gcp")]
    #[error("Google access token")]
    Google(#[source] gpupool_gcp::monitoring::TokenError),
}

/// Where a secret lives.
#[derive(Clone, Debug, PartialEq, Eq)]
enum SecretSource {
    File(PathBuf),
    Env(String),
}

impl SecretSource {
    /// The secret, trimmed of surrounding whitespace (files usually end with a newline).
    fn read(&self, what: &'static str) -> Result<String, AuthError> {
        let raw = match self {
            SecretSource::File(path) => {
                std::fs::read_to_string(path).map_err(|source| AuthError::ReadFile {
                    what,
                    path: path.clone(),
                    source,
                })?
            }
            SecretSource::Env(name) => std::env::var(name).unwrap_or_default(),
        };
        let v = raw.trim();
        if v.is_empty() {
            return Err(match self {
                SecretSource::File(path) => AuthError::EmptyFile {
                    what,
                    path: path.clone(),
                },
                SecretSource::Env(name) => AuthError::EnvMissing {
                    what,
                    name: name.clone(),
                },
            });
        }
        Ok(v.to_owned())
    }
}

/// A header value holding a secret: marked sensitive so `Debug` of the request prints
/// `Sensitive` instead of the value.
fn sensitive(value: &str, what: &'static str) -> Result<HeaderValue, AuthError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| AuthError::BadHeaderValue { what })?;
    v.set_sensitive(true);
    Ok(v)
}

/// How one endpoint's requests are authorised.
#[derive(Clone)]
enum Credential {
    None,
    Bearer(SecretSource),
    Basic {
        username: String,
        password: SecretSource,
    },
    #[cfg(feature = "aws")]
    Sigv4(Arc<gpupool_aws::Sigv4Signer>),
    #[cfg(feature = "gcp")]
    Google(Arc<gpupool_gcp::monitoring::MonitoringToken>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Sources only (paths and variable names); never a secret.
        match self {
            Credential::None => f.write_str("None"),
            Credential::Bearer(s) => write!(f, "Bearer({s:?})"),
            Credential::Basic { username, password } => {
                write!(f, "Basic({username:?}, {password:?})")
            }
            #[cfg(feature = "aws")]
            Credential::Sigv4(_) => f.write_str("Sigv4"),
            #[cfg(feature = "gcp")]
            Credential::Google(_) => f.write_str("Google"),
        }
    }
}

/// The settings that make two endpoints share a client: everything but the URL.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct AccessKey {
    auth: Option<PrometheusAuth>,
    /// SigV4's region once `aws.region` is applied.
    sigv4_region: Option<String>,
    tls: Option<PrometheusTls>,
    headers: BTreeMap<String, String>,
}

impl AccessKey {
    pub fn new(cfg: &Config, a: PrometheusAccess<'_>) -> AccessKey {
        let sigv4_region = match a.auth.and_then(PrometheusAuth::kind) {
            Some(AuthKind::Sigv4(s)) => s
                .region
                .clone()
                .or_else(|| cfg.aws.as_ref().map(|aws| aws.region.clone())),
            _ => None,
        };
        AccessKey {
            auth: a.auth.cloned(),
            sigv4_region,
            tls: a.tls.cloned(),
            headers: a.headers.clone(),
        }
    }
}

/// A client ready to query one kind of endpoint.
#[derive(Clone, Debug)]
pub struct Endpoint {
    http: reqwest::Client,
    headers: HeaderMap,
    credential: Credential,
}

/// The client settings every Prometheus query shares.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("gpupool/", env!("CARGO_PKG_VERSION")))
        // Per-request timeouts come from each signal; this bounds connection setup.
        .connect_timeout(Duration::from_secs(5))
}

fn read_tls(path: &Path, what: &'static str) -> Result<Vec<u8>, AuthError> {
    std::fs::read(path).map_err(|source| AuthError::ReadFile {
        what,
        path: path.to_owned(),
        source,
    })
}

/// A client with `tls`'s trust roots, client certificate and verification setting.
fn tls_client(tls: &PrometheusTls) -> Result<reqwest::Client, AuthError> {
    let mut b = client_builder();
    if let Some(ca) = &tls.ca_file {
        let pem = read_tls(ca, "CA bundle")?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| AuthError::Tls {
                what: "CA bundle",
                path: ca.clone(),
                source,
            })?;
        b = b.tls_certs_merge(certs);
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        let mut pem = read_tls(cert, "client certificate")?;
        pem.push(b'\n');
        pem.extend(read_tls(key, "client key")?);
        let id = reqwest::Identity::from_pem(&pem).map_err(|source| AuthError::Tls {
            what: "client certificate and key",
            path: cert.clone(),
            source,
        })?;
        b = b.identity(id);
    }
    if tls.insecure_skip_verify {
        b = b.tls_danger_accept_invalid_certs(true);
    }
    b.build().map_err(AuthError::Client)
}

fn custom_headers(headers: &BTreeMap<String, String>) -> Result<HeaderMap, AuthError> {
    let mut out = HeaderMap::new();
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| AuthError::Header {
            name: k.clone(),
            problem: "not a valid header name",
        })?;
        let value = HeaderValue::from_str(v).map_err(|_| AuthError::Header {
            name: k.clone(),
            problem: "value not allowed in a header",
        })?;
        out.insert(name, value);
    }
    Ok(out)
}

impl Endpoint {
    /// No credentials, no extra headers: `http` as it is.
    pub fn plain(http: reqwest::Client) -> Endpoint {
        Endpoint {
            http,
            headers: HeaderMap::new(),
            credential: Credential::None,
        }
    }

    /// SigV4 with a given signer (tests: fixed credentials instead of the default chain).
    #[cfg(feature = "aws")]
    pub fn with_sigv4(http: reqwest::Client, signer: gpupool_aws::Sigv4Signer) -> Endpoint {
        Endpoint {
            http,
            headers: HeaderMap::new(),
            credential: Credential::Sigv4(Arc::new(signer)),
        }
    }

    /// Build the client for `key`; `default` serves endpoints without TLS settings.
    pub async fn build(key: &AccessKey, default: &reqwest::Client) -> Result<Endpoint, AuthError> {
        let http = match &key.tls {
            Some(t) => tls_client(t)?,
            None => default.clone(),
        };
        // Validation guarantees one mode when `auth` is present.
        let credential = match key.auth.as_ref().and_then(PrometheusAuth::kind) {
            None => Credential::None,
            Some(AuthKind::BearerTokenFile(p)) => Credential::Bearer(SecretSource::File(p.into())),
            Some(AuthKind::BearerTokenEnv(n)) => Credential::Bearer(SecretSource::Env(n.into())),
            Some(AuthKind::Basic(b)) => Credential::Basic {
                username: b.username.clone(),
                password: match (&b.password_file, &b.password_env) {
                    (Some(p), _) => SecretSource::File(p.clone()),
                    (None, Some(n)) => SecretSource::Env(n.clone()),
                    // Validation requires one of the two; an empty variable name reads as unset.
                    (None, None) => SecretSource::Env(String::new()),
                },
            },
            Some(AuthKind::Sigv4(s)) => sigv4(key.sigv4_region.as_deref(), &s.service).await?,
            Some(AuthKind::Google) => google()?,
        };
        Ok(Endpoint {
            http,
            headers: custom_headers(&key.headers)?,
            credential,
        })
    }

    /// A GET of `url` with the endpoint's headers and credential.
    pub async fn get(
        &self,
        url: reqwest::Url,
        timeout: Duration,
    ) -> Result<reqwest::RequestBuilder, AuthError> {
        let mut headers = self.headers.clone();
        match &self.credential {
            Credential::None => {}
            Credential::Bearer(src) => {
                let token = src.read("bearer token")?;
                headers.insert(
                    reqwest::header::AUTHORIZATION,
                    sensitive(&format!("Bearer {token}"), "bearer token")?,
                );
            }
            Credential::Basic { username, password } => {
                use base64::Engine as _;
                let pw = password.read("basic-auth password")?;
                let raw =
                    base64::engine::general_purpose::STANDARD.encode(format!("{username}:{pw}"));
                headers.insert(
                    reqwest::header::AUTHORIZATION,
                    sensitive(&format!("Basic {raw}"), "basic-auth credentials")?,
                );
            }
            #[cfg(feature = "aws")]
            Credential::Sigv4(signer) => {
                let at = std::time::UNIX_EPOCH
                    + Duration::from_millis(
                        u64::try_from(gpupool_provider::clock::wall_clock().millis()).unwrap_or(0),
                    );
                for (k, v) in signer
                    .sign("GET", url.as_str(), at)
                    .await
                    .map_err(AuthError::Sigv4)?
                {
                    let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                        AuthError::BadHeaderValue {
                            what: "SigV4 header name",
                        }
                    })?;
                    headers.insert(name, sensitive(&v, "SigV4 header")?);
                }
            }
            #[cfg(feature = "gcp")]
            Credential::Google(token) => {
                for (k, v) in token.headers().await.map_err(AuthError::Google)? {
                    let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                        AuthError::BadHeaderValue {
                            what: "Google header name",
                        }
                    })?;
                    headers.insert(name, sensitive(&v, "Google header")?);
                }
            }
        }
        Ok(self.http.get(url).timeout(timeout).headers(headers))
    }
}

#[cfg(feature = "aws")]
async fn sigv4(region: Option<&str>, service: &str) -> Result<Credential, AuthError> {
    let region = region
        .filter(|r| !r.is_empty())
        .ok_or(AuthError::NoRegion)?;
    let signer = gpupool_aws::Sigv4Signer::from_default_chain(region, service)
        .await
        .map_err(AuthError::AwsSetup)?;
    Ok(Credential::Sigv4(Arc::new(signer)))
}

#[cfg(not(feature = "aws"))]
async fn sigv4(_region: Option<&str>, _service: &str) -> Result<Credential, AuthError> {
    Err(AuthError::NotBuilt("sigv4", "aws"))
}

#[cfg(feature = "gcp")]
fn google() -> Result<Credential, AuthError> {
    let t = gpupool_gcp::monitoring::MonitoringToken::application_default()
        .map_err(AuthError::GoogleSetup)?;
    Ok(Credential::Google(Arc::new(t)))
}

#[cfg(not(feature = "gcp"))]
fn google() -> Result<Credential, AuthError> {
    Err(AuthError::NotBuilt("google", "gcp"))
}

/// Endpoints by access settings, kept across ticks.
#[derive(Default)]
pub struct Endpoints {
    ready: BTreeMap<AccessKey, Endpoint>,
}

impl Endpoints {
    /// Build what `config` needs and is not built yet; forget what it no longer uses. Returns
    /// the settings whose client could not be built this time (retried next call).
    pub async fn prepare(
        &mut self,
        config: &Config,
        default: &reqwest::Client,
    ) -> BTreeMap<AccessKey, Arc<AuthError>> {
        let wanted: std::collections::BTreeSet<AccessKey> = config
            .prometheus_endpoints()
            .into_iter()
            .map(|(_, a)| AccessKey::new(config, a))
            .collect();
        self.ready.retain(|k, _| wanted.contains(k));
        let mut failed = BTreeMap::new();
        for key in wanted {
            if self.ready.contains_key(&key) {
                continue;
            }
            match Endpoint::build(&key, default).await {
                Ok(e) => {
                    self.ready.insert(key, e);
                }
                Err(e) => {
                    failed.insert(key, Arc::new(e));
                }
            }
        }
        failed
    }

    pub fn get(&self, key: &AccessKey) -> Option<&Endpoint> {
        self.ready.get(key)
    }
}

/// Secret files and variables the config names that cannot be read *here* (`check-config`
/// on the machine that will run gpupool), and TLS files that are missing.
pub fn unreadable_secrets(cfg: &Config) -> Vec<Issue> {
    let mut out = Vec::new();
    for (path, a) in cfg.prometheus_endpoints() {
        let mut check = |at: String, src: SecretSource, what: &'static str| {
            if let Err(e) = src.read(what) {
                out.push(Issue {
                    path: at,
                    message: crate::controller::error_chain(&e),
                });
            }
        };
        match a.auth.and_then(PrometheusAuth::kind) {
            Some(AuthKind::BearerTokenFile(p)) => check(
                format!("{path}.auth.bearer_token_file"),
                SecretSource::File(p.into()),
                "bearer token",
            ),
            Some(AuthKind::BearerTokenEnv(n)) => check(
                format!("{path}.auth.bearer_token_env"),
                SecretSource::Env(n.into()),
                "bearer token",
            ),
            Some(AuthKind::Basic(b)) => {
                if let Some(p) = &b.password_file {
                    check(
                        format!("{path}.auth.basic.password_file"),
                        SecretSource::File(p.clone()),
                        "basic-auth password",
                    );
                } else if let Some(n) = &b.password_env {
                    check(
                        format!("{path}.auth.basic.password_env"),
                        SecretSource::Env(n.clone()),
                        "basic-auth password",
                    );
                }
            }
            _ => {}
        }
        if let Some(t) = a.tls {
            for (f, p) in [
                ("ca_file", &t.ca_file),
                ("cert_file", &t.cert_file),
                ("key_file", &t.key_file),
            ] {
                if let Some(p) = p
                    && let Err(e) = std::fs::metadata(p).and_then(|_| std::fs::File::open(p))
                {
                    out.push(Issue {
                        path: format!("{path}.tls.{f}"),
                        message: format!("cannot read {}: {e}", p.display()),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_trimmed_and_empty_ones_refused() {
        let dir = std::env::temp_dir().join(format!("gpupool-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("token");
        std::fs::write(&f, "s3cr3t\n").unwrap();
        assert_eq!(SecretSource::File(f.clone()).read("t").unwrap(), "s3cr3t");
        std::fs::write(&f, "\n").unwrap();
        let e = SecretSource::File(f.clone()).read("t").unwrap_err();
        assert!(matches!(e, AuthError::EmptyFile { .. }));
        let missing = SecretSource::File(dir.join("nope")).read("t").unwrap_err();
        assert!(matches!(missing, AuthError::ReadFile { .. }));
        let env = SecretSource::Env("GPUPOOL_TEST_SURELY_UNSET_VAR".into())
            .read("t")
            .unwrap_err();
        assert!(env.to_string().contains("GPUPOOL_TEST_SURELY_UNSET_VAR"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn credential_debug_shows_sources_only() {
        let c = Credential::Basic {
            username: "u".into(),
            password: SecretSource::Env("PW".into()),
        };
        assert_eq!(format!("{c:?}"), "Basic(\"u\", Env(\"PW\"))");
        let v = sensitive("Bearer abc", "t").unwrap();
        assert_eq!(format!("{v:?}"), "Sensitive");
    }
}
