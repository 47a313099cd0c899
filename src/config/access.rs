//! Checks of a Prometheus endpoint's access settings (`auth`, `tls`, `headers`): mistakes that
//! make every query fail (errors) and settings that work but weaken security (warnings).
//! Pure: whether a secret file or variable is readable *here* is checked by the shell
//! (`signals::auth::unreadable_secrets`), since the config may be checked on another machine.

use super::validate::Issue;
use super::{AuthKind, PrometheusAccess, PrometheusAuth};

fn issue(path: String, message: impl Into<String>) -> Issue {
    Issue {
        path,
        message: message.into(),
    }
}

/// A header name is an RFC 9110 token: visible ASCII without separators.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// An environment variable name as POSIX shells write them.
fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The URL's scheme and whether it carries `user:password@` (credentials that would end up in
/// logs and error messages).
fn url_parts(url: &str) -> (bool, bool) {
    let https = url.starts_with("https://");
    let authority = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
        .unwrap_or("");
    (https, authority.contains('@'))
}

/// Mistakes in one endpoint's access settings; `at` is its config path, `aws_region` the
/// config's `aws.region` (SigV4's default region).
pub(super) fn errors(aws_region: Option<&str>, at: &str, a: PrometheusAccess<'_>) -> Vec<Issue> {
    let mut out = Vec::new();
    let (https, userinfo) = url_parts(a.url);
    if userinfo {
        out.push(issue(
            format!("{at}.url"),
            "must not contain user:password@ (it would be logged): use auth.basic with \
             password_file or password_env",
        ));
    }
    if let Some(auth) = a.auth {
        out.extend(auth_errors(aws_region, &format!("{at}.auth"), auth));
    }
    if let Some(t) = a.tls {
        if !https {
            out.push(issue(
                format!("{at}.tls"),
                "applies to https:// URLs only; this URL is plain http",
            ));
        }
        if t.cert_file.is_some() != t.key_file.is_some() {
            out.push(issue(
                format!("{at}.tls"),
                "cert_file and key_file go together (a client certificate needs its key)",
            ));
        }
        if t.insecure_skip_verify && t.ca_file.is_some() {
            out.push(issue(
                format!("{at}.tls.insecure_skip_verify"),
                "contradicts ca_file (a CA is pointless when nothing is verified): remove one",
            ));
        }
    }
    for (name, value) in a.headers {
        let path = format!("{at}.headers.{name}");
        if !is_token(name) {
            out.push(issue(path, "is not a valid HTTP header name"));
        } else if name.eq_ignore_ascii_case("authorization") {
            out.push(issue(
                path,
                "would put a secret in the config: use auth (bearer_token_file, basic, sigv4, \
                 google) instead",
            ));
        } else if value.bytes().any(|b| b.is_ascii_control()) {
            out.push(issue(path, "value must not contain control characters"));
        }
    }
    out
}

fn auth_errors(aws_region: Option<&str>, at: &str, auth: &PrometheusAuth) -> Vec<Issue> {
    let mut out = Vec::new();
    let Some(kind) = auth.kind() else {
        let set = auth.modes();
        out.push(issue(
            at.to_owned(),
            format!(
                "must set exactly one of bearer_token_file, bearer_token_env, basic, sigv4, \
                 google; found {}",
                if set.is_empty() {
                    "none".to_owned()
                } else {
                    set.join(", ")
                }
            ),
        ));
        return out;
    };
    match kind {
        AuthKind::BearerTokenFile(p) => {
            if p.as_os_str().is_empty() {
                out.push(issue(
                    format!("{at}.bearer_token_file"),
                    "must be a file path, e.g. /var/run/secrets/prometheus/token",
                ));
            }
        }
        AuthKind::BearerTokenEnv(n) => {
            if !is_env_name(n) {
                out.push(issue(
                    format!("{at}.bearer_token_env"),
                    format!("must be an environment variable name such as PROM_TOKEN, got {n:?}"),
                ));
            }
        }
        AuthKind::Basic(b) => {
            if b.username.is_empty() {
                out.push(issue(format!("{at}.basic.username"), "must not be empty"));
            }
            match (&b.password_file, &b.password_env) {
                (Some(_), Some(_)) | (None, None) => out.push(issue(
                    format!("{at}.basic"),
                    "needs exactly one of password_file or password_env (never the password \
                     itself)",
                )),
                (None, Some(n)) if !is_env_name(n) => out.push(issue(
                    format!("{at}.basic.password_env"),
                    format!("must be an environment variable name, got {n:?}"),
                )),
                _ => {}
            }
        }
        AuthKind::Sigv4(s) => {
            let region = s.region.as_deref().or(aws_region);
            if region.is_none_or(|r| r.trim().is_empty()) {
                out.push(issue(
                    format!("{at}.sigv4.region"),
                    "must name the workspace's region (e.g. us-east-1), or set aws.region",
                ));
            }
            if s.service.trim().is_empty() {
                out.push(issue(
                    format!("{at}.sigv4.service"),
                    "must be the signing service name: aps for Amazon Managed Service for \
                     Prometheus",
                ));
            }
        }
        AuthKind::Google => {}
    }
    out
}

/// Settings that work but that an operator should know about.
pub(super) fn warnings(at: &str, a: PrometheusAccess<'_>) -> Vec<Issue> {
    let mut out = Vec::new();
    let (https, _) = url_parts(a.url);
    if a.auth.is_some() && !https {
        out.push(issue(
            format!("{at}.url"),
            "credentials travel unencrypted over plain http: use https:// (fine only for a \
             loopback or sidecar proxy)",
        ));
    }
    if a.tls.is_some_and(|t| t.insecure_skip_verify) {
        out.push(issue(
            format!("{at}.tls.insecure_skip_verify"),
            "the server's certificate is not verified: anyone on the path can answer queries; \
             prefer ca_file",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn url_parts_find_scheme_and_userinfo() {
        assert_eq!(url_parts("https://p:9090/x"), (true, false));
        assert_eq!(url_parts("http://u:pw@p:9090"), (false, true));
        assert_eq!(url_parts("http://p:9090/a@b"), (false, false));
    }

    fn signal(access: &str) -> String {
        format!(
            "mode: vm-only\npools:\n  - name: a\n    requirements: {{}}\n    signals:\n      - prometheus:\n          url: {access}\n          query: up\n          target_per_replica: 1\n"
        )
    }

    fn issues(text: &str) -> Vec<String> {
        match Config::load(text) {
            Ok(_) => Vec::new(),
            Err(e) => e.issues(),
        }
    }

    #[test]
    fn access_mistakes_are_reported_with_paths() {
        let at = "pools[0].signals[0].prometheus";
        let cases: &[(&str, &str)] = &[
            (
                "http://u:pw@prom:9090",
                "url: must not contain user:password@",
            ),
            (
                "http://prom:9090\n          auth: { bearer_token_file: /t, basic: { username: u, password_env: P } }",
                "auth: must set exactly one of bearer_token_file, bearer_token_env, basic, sigv4, google; found bearer_token_file, basic",
            ),
            (
                "http://prom:9090\n          auth: {}",
                "auth: must set exactly one",
            ),
            (
                "http://prom:9090\n          auth: { basic: { username: u } }",
                "auth.basic: needs exactly one of password_file or password_env",
            ),
            (
                "http://prom:9090\n          auth: { bearer_token_env: \"1X\" }",
                "auth.bearer_token_env: must be an environment variable name",
            ),
            (
                "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1\n          auth: { sigv4: {} }",
                "auth.sigv4.region: must name the workspace's region",
            ),
            (
                "http://prom:9090\n          tls: { ca_file: /ca.pem }",
                "tls: applies to https:// URLs only",
            ),
            (
                "https://prom:9090\n          tls: { cert_file: /c.pem }",
                "tls: cert_file and key_file go together",
            ),
            (
                "https://prom:9090\n          tls: { ca_file: /ca.pem, insecure_skip_verify: true }",
                "tls.insecure_skip_verify: contradicts ca_file",
            ),
            (
                "http://prom:9090\n          headers: { Authorization: Bearer x }",
                "headers.Authorization: would put a secret in the config",
            ),
            (
                "http://prom:9090\n          headers: { \"X Org\": a }",
                "headers.X Org: is not a valid HTTP header name",
            ),
        ];
        for (access, want) in cases {
            let got = issues(&signal(access));
            let want = format!("{at}.{want}");
            assert!(
                got.iter().any(|i| i.starts_with(&want)),
                "{access}: missing {want:?} in {got:#?}"
            );
        }
        // Good settings load, with the warnings an operator should see.
        let ok = signal(
            "http://prom:9090\n          auth: { basic: { username: u, password_file: /pw } }\n          headers: { X-Scope-OrgID: team-a }",
        );
        let cfg = Config::load(&ok).unwrap();
        let w: Vec<String> = cfg
            .warnings(crate::model::Timestamp::from_secs(0))
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(w.len(), 1, "{w:#?}");
        assert!(w[0].starts_with(&format!("{at}.url: credentials travel unencrypted")));
        let tls = Config::load(&signal(
            "https://prom:9090\n          tls: { insecure_skip_verify: true }",
        ))
        .unwrap();
        assert!(
            tls.warnings(crate::model::Timestamp::from_secs(0))[0]
                .path
                .ends_with("tls.insecure_skip_verify")
        );
    }

    #[test]
    fn cloud_auth_needs_its_feature() {
        let cfg = Config::load(&signal(
            "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1\n          auth: { sigv4: { region: us-east-1 } }",
        ))
        .unwrap();
        let missing = cfg.unsupported_by_this_build();
        assert_eq!(missing.is_empty(), cfg!(feature = "aws"), "{missing:?}");
        let g = Config::load(&signal(
            "https://monitoring.googleapis.com/v1/projects/p/location/global/prometheus\n          auth: { google: {} }",
        ))
        .unwrap();
        assert_eq!(
            g.unsupported_by_this_build().is_empty(),
            cfg!(feature = "gcp")
        );
    }

    #[test]
    fn names() {
        assert!(is_token("X-Scope-OrgID"));
        assert!(!is_token("X Scope"));
        assert!(!is_token(""));
        assert!(is_env_name("PROM_TOKEN"));
        assert!(!is_env_name("1TOKEN"));
        assert!(!is_env_name("A=B"));
    }
}

#[cfg(test)]
mod pricing_tests {
    use crate::config::{Config, PricingConfig};
    use crate::model::{CapacityType, Timestamp};

    #[test]
    fn discount_applies_to_on_demand_only_and_is_validated() {
        use crate::planner::fixtures::{group, offering};
        let g: gpupool_provider::NodeGroup = group("g", "llm")
            .offering(offering(
                "g5.xlarge",
                CapacityType::OnDemand,
                "us-east-1a",
                1.006,
            ))
            .offering(offering(
                "g5.xlarge",
                CapacityType::Spot,
                "us-east-1a",
                0.40,
            ))
            .into();
        let mut groups = vec![g];
        let before: Vec<(CapacityType, gpupool_provider::Price)> = groups[0]
            .offerings
            .iter()
            .map(|o| (o.capacity_type, o.price_per_hour))
            .collect();
        PricingConfig {
            discount: crate::config::Share::new(0.25).unwrap(),
        }
        .apply(&mut groups);
        for ((cap, was), o) in before.iter().zip(&groups[0].offerings) {
            let want = match cap {
                CapacityType::OnDemand => was.scale(0.75),
                CapacityType::Spot => *was,
            };
            assert_eq!(o.price_per_hour, want, "{cap:?}");
        }
        let mut same = groups.clone();
        PricingConfig::default().apply(&mut same);
        assert_eq!(same, groups, "0 is a no-op");

        let cfg = |d: &str| {
            Config::load(&format!(
                "pricing: {{ discount: {d} }}\npools:\n  - name: a\n    requirements: {{}}\n"
            ))
        };
        assert!(cfg("0.28").is_ok());
        for bad in ["1", "-0.1", "1.5", ".nan"] {
            let e = cfg(bad).unwrap_err().issues();
            assert!(
                e.iter()
                    .any(|i| i.starts_with("pricing.discount: must be at least 0 and below 1")),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn an_unpriced_aws_region_is_a_warning() {
        let cfg = |region: &str| {
            Config::load(&format!(
                "provider: aws\nmode: vm-only\naws: {{ region: {region} }}\npools:\n  - name: a\n    requirements: {{}}\n    limits: {{ min_nodes: 1 }}\n"
            ))
            .unwrap()
            .warnings(Timestamp::from_secs(0))
        };
        assert!(cfg("us-east-1").is_empty());
        let w = cfg("eu-west-1");
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].path, "aws.region");
        assert!(w[0].message.contains("in eu-west-1"));
        assert!(
            cfg("us-gov-west-1").is_empty(),
            "GovCloud West has a shipped table"
        );
    }
}
