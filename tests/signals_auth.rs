//! Prometheus signals against a loopback Prometheus-API fake that demands authentication:
//! bearer token (file and environment), basic auth, a tenant header, SigV4 (feature `aws`).
//! Each kind is refused without its credential (the reading goes stale) and accepted with it;
//! the secret never reaches the log (tests/signals_auth_log.rs, in a process of its own).
#![allow(clippy::disallowed_methods)] // test code may read the wall clock

mod signals_harness;

use gpupool::config::Config;
use gpupool::controller::DemandSource;
use gpupool::model::{PoolDemand, PoolName};
use gpupool::signals::SignalDemand;
use signals_harness::prom_api::{PromApi, Require};
use signals_harness::wall_now;
use std::path::PathBuf;

fn temp_file(tag: &str, content: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let p = std::env::temp_dir().join(format!("gpupool-auth-{tag}-{}-{nanos}", std::process::id()));
    std::fs::write(&p, content).unwrap();
    p
}

/// One pool with one Prometheus signal whose `auth`/`headers` text is `access` (YAML lines
/// indented under `prometheus:`).
fn config(url: &str, access: &str) -> Config {
    Config::load(&format!(
        r#"
mode: vm-only
pools:
  - name: p
    requirements: {{}}
    replica: {{ replicas_per_instance: 1 }}
    limits: {{ max_nodes: 50 }}
    signals:
      - name: q
        prometheus:
          url: {url}
          query: sum(queue)
          target_per_replica: 5
          timeout_s: 2
{access}
"#
    ))
    .expect("test config is valid")
}

async fn read(d: &mut SignalDemand, cfg: &Config) -> PoolDemand {
    d.read(cfg, wall_now())
        .await
        .remove(&PoolName::from("p"))
        .expect("pool read")
}

/// Replicas the signal asks for, `None` when stale.
async fn replicas(cfg: &Config) -> Option<u32> {
    let mut d = SignalDemand::new().unwrap();
    let p = read(&mut d, cfg).await;
    let r = &p.readings[0];
    if r.stale { None } else { r.replicas }
}

#[tokio::test]
async fn bearer_token_from_a_file_is_sent_and_rotation_is_picked_up() {
    let api = PromApi::start(Require::Bearer("tok-1".into()), "12").await;
    let file = temp_file("bearer", "tok-1\n");
    let with = config(
        &api.url(),
        &format!(
            "          auth: {{ bearer_token_file: {} }}",
            file.display()
        ),
    );
    assert_eq!(replicas(&with).await, Some(3), "ceil(12 / 5)");
    let without = config(&api.url(), "");
    assert_eq!(
        replicas(&without).await,
        None,
        "refused without the token: stale"
    );

    // The file is re-read per query: a rotated token works at once, the old one is refused.
    let mut d = SignalDemand::new().unwrap();
    assert!(!read(&mut d, &with).await.readings[0].stale);
    std::fs::write(&file, "tok-2\n").unwrap();
    assert!(
        read(&mut d, &with).await.readings[0].stale,
        "server still wants tok-1"
    );
    let seen = api.seen();
    let last = seen.last().unwrap();
    assert!(
        last.headers
            .iter()
            .any(|(k, v)| k == "authorization" && v == "Bearer tok-2")
    );
    std::fs::remove_file(&file).unwrap();
}

#[tokio::test]
async fn bearer_token_from_the_environment() {
    // Cargo sets CARGO_PKG_NAME for every test process (an env var the test need not set).
    let want = std::env::var("CARGO_PKG_NAME").expect("run under cargo");
    let api = PromApi::start(Require::Bearer(want), "6").await;
    let cfg = config(
        &api.url(),
        "          auth: { bearer_token_env: CARGO_PKG_NAME }",
    );
    assert_eq!(replicas(&cfg).await, Some(2));
    let unset = config(
        &api.url(),
        "          auth: { bearer_token_env: GPUPOOL_TEST_SURELY_UNSET }",
    );
    assert_eq!(replicas(&unset).await, None);
    assert_eq!(
        api.seen().len(),
        1,
        "an unset variable sends no request at all"
    );
}

#[tokio::test]
async fn basic_auth_with_a_password_file() {
    let api = PromApi::start(Require::Basic("gpupool".into(), "pa:ss".into()), "11").await;
    let pw = temp_file("basic", "pa:ss\n");
    let cfg = config(
        &api.url(),
        &format!(
            "          auth: {{ basic: {{ username: gpupool, password_file: {} }} }}",
            pw.display()
        ),
    );
    assert_eq!(replicas(&cfg).await, Some(3));
    let wrong_user = config(
        &api.url(),
        &format!(
            "          auth: {{ basic: {{ username: other, password_file: {} }} }}",
            pw.display()
        ),
    );
    assert_eq!(replicas(&wrong_user).await, None);
    std::fs::remove_file(&pw).unwrap();
}

#[tokio::test]
async fn tenant_header() {
    let api = PromApi::start(
        Require::Header("x-scope-orgid".into(), "team-a".into()),
        "5",
    )
    .await;
    let cfg = config(&api.url(), "          headers: { X-Scope-OrgID: team-a }");
    assert_eq!(replicas(&cfg).await, Some(1));
    let other = config(&api.url(), "          headers: { X-Scope-OrgID: team-b }");
    assert_eq!(replicas(&other).await, None);
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn sigv4_signature_is_sent_for_the_exact_url() {
    use gpupool::signals::auth::Endpoint;
    use gpupool::signals::prometheus;
    let api = PromApi::start(
        Require::Sigv4 {
            access_key: "AKIDTEST".into(),
            region: "eu-west-1".into(),
            service: "aps".into(),
        },
        "7",
    )
    .await;
    let creds = gpupool_aws::StaticCredentials {
        access_key_id: "AKIDTEST".into(),
        secret_access_key: "SECRETKEYTEST".into(),
    };
    let signer = gpupool_aws::Sigv4Signer::from_static(&creds, "eu-west-1", "aps");
    let http = gpupool::signals::auth::client_builder().build().unwrap();
    let ep = Endpoint::with_sigv4(http.clone(), signer);
    let now = wall_now();
    // A query with characters that must be percent-encoded: the URL signed is the URL sent.
    let promql = r#"sum(rate(x{job="a b"}[5m]))"#;
    let s = prometheus::query_at(
        &ep,
        &api.url(),
        promql,
        now,
        std::time::Duration::from_secs(2),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(s.value, 7.0);
    let seen = api.seen();
    assert!(seen[0].accepted);
    assert!(
        !seen[0]
            .headers
            .iter()
            .any(|(_, v)| v.contains("SECRETKEYTEST"))
    );
    // Re-sign what the server received: the same signature, so the canonical request matched.
    let date = &seen[0]
        .headers
        .iter()
        .find(|(k, _)| k == "x-amz-date")
        .unwrap()
        .1;
    let at = chrono::NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ").unwrap();
    let at =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(at.and_utc().timestamp() as u64);
    let again = gpupool_aws::Sigv4Signer::from_static(&creds, "eu-west-1", "aps")
        .sign("GET", &format!("{}{}", api.url(), seen[0].uri), at)
        .await
        .unwrap();
    let auth = |h: &[(String, String)]| {
        h.iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.clone())
    };
    assert_eq!(auth(&seen[0].headers), auth(&again));
    // Without a signature the fake refuses: 401, a typed status error.
    let plain = Endpoint::plain(http);
    let e = prometheus::query_at(
        &plain,
        &api.url(),
        promql,
        now,
        std::time::Duration::from_secs(2),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, gpupool::signals::SignalError::Status(401)),
        "{e:?}"
    );
}

/// Run `openssl` with `args` in `dir` (the Debian package; the test's CA is made at run time).
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the `openssl` command (Debian package openssl) must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throw-away CA, a server certificate for 127.0.0.1 and a client certificate, all signed by
/// the CA (P-256 keys, valid two days).
fn make_pki(dir: &std::path::Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=gpupool test CA",
    ]);
    openssl(dir, &ca);
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        let (key, csr, pem, extf) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        let subj = format!("/CN=gpupool test {name}");
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &extf,
            ],
        );
    }
}

/// A real Prometheus serving HTTPS and requiring a client certificate from the CA
/// (`--web.config.file`, Prometheus's TLS server settings), stopped when dropped.
struct TlsPrometheus {
    child: std::process::Child,
    url: String,
}

impl Drop for TlsPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn tls_prometheus(dir: &std::path::Path) -> TlsPrometheus {
    std::fs::write(
        dir.join("web.yml"),
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
    )
    .unwrap();
    std::fs::write(dir.join("prometheus.yml"), "global: {}\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new("prometheus")
        .current_dir(dir)
        .arg("--config.file=prometheus.yml")
        .arg("--web.config.file=web.yml")
        .arg("--storage.tsdb.path=data")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the `prometheus` binary (Debian package `prometheus`) must be installed");
    let p = TlsPrometheus {
        child,
        url: format!("https://127.0.0.1:{port}"),
    };
    let pem = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let mut id = pem("client.pem");
    id.extend(pem("client.key"));
    let http = reqwest::Client::builder()
        .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&pem("ca.pem")).unwrap())
        .identity(reqwest::Identity::from_pem(&id).unwrap())
        .build()
        .unwrap();
    let ready = format!("{}/-/ready", p.url);
    signals_harness::poll(
        std::time::Duration::from_secs(60),
        "TLS prometheus ready",
        || async { matches!(http.get(&ready).send().await, Ok(r) if r.status().is_success()) },
    )
    .await;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_and_a_client_certificate() {
    let dir = std::env::temp_dir().join(format!(
        "gpupool-tls-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    make_pki(&dir);
    let prom = tls_prometheus(&dir).await;
    let d = dir.display();
    let tls = |extra: &str| {
        let cfg = Config::load(&format!(
            r#"
mode: vm-only
pools:
  - name: p
    requirements: {{}}
    replica: {{ replicas_per_instance: 1 }}
    limits: {{ max_nodes: 50 }}
    signals:
      - name: q
        prometheus:
          url: {}
          query: vector(12)
          target_per_replica: 5
          timeout_s: 5
{extra}
"#,
            prom.url
        ));
        cfg.expect("test config is valid")
    };
    let mutual = tls(&format!(
        "          tls: {{ ca_file: {d}/ca.pem, cert_file: {d}/client.pem, key_file: {d}/client.key }}"
    ));
    assert_eq!(
        replicas(&mutual).await,
        Some(3),
        "ceil(12 / 5) over mutual TLS"
    );
    // The server requires a client certificate.
    let no_client = tls(&format!("          tls: {{ ca_file: {d}/ca.pem }}"));
    assert_eq!(replicas(&no_client).await, None);
    // Without the CA the server is not trusted.
    let no_ca = tls(&format!(
        "          tls: {{ cert_file: {d}/client.pem, key_file: {d}/client.key }}"
    ));
    assert_eq!(replicas(&no_ca).await, None);
    // Explicitly unverified: the CA is not needed (check-config warns about it).
    let insecure = tls(&format!(
        "          tls: {{ insecure_skip_verify: true, cert_file: {d}/client.pem, key_file: {d}/client.key }}"
    ));
    assert_eq!(replicas(&insecure).await, Some(3));
    assert_eq!(insecure.warnings(wall_now()).len(), 1);
    // A CA file that is not PEM: the signal is stale (the client cannot be built), no panic.
    std::fs::write(dir.join("bad.pem"), "not a certificate").unwrap();
    let bad = tls(&format!("          tls: {{ ca_file: {d}/bad.pem }}"));
    assert_eq!(replicas(&bad).await, None);
    drop(prom);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// VM-only in-flight queries take the same access settings: their endpoint is built from the
/// pool's `in_flight_query` (what `VmCluster` does each tick) and the fake accepts it.
#[tokio::test]
async fn in_flight_queries_authenticate_too() {
    use gpupool::signals::auth::{AccessKey, Endpoints};
    let api = PromApi::start(
        Require::Header("x-scope-orgid".into(), "vm-fleet".into()),
        "2",
    )
    .await;
    let tok = temp_file("inflight", "unused\n");
    let cfg = Config::load(&format!(
        r#"
mode: vm-only
pools:
  - name: p
    requirements: {{}}
    replica: {{ replicas_per_instance: 1 }}
    limits: {{ min_nodes: 1 }}
    in_flight_query:
      url: {}
      query: sum(vllm:num_requests_running{{instance="{{ip}}:8000"}})
      headers: {{ X-Scope-OrgID: vm-fleet }}
"#,
        api.url()
    ))
    .expect("test config is valid");
    let q = cfg.pools[0].in_flight_query.as_ref().unwrap();
    let http = gpupool::signals::auth::client_builder().build().unwrap();
    let mut endpoints = Endpoints::default();
    let failed = endpoints.prepare(&cfg, &http).await;
    assert!(failed.is_empty());
    let ep = endpoints
        .get(&AccessKey::new(&cfg, q.access()))
        .expect("built for the in-flight query");
    let s = gpupool::signals::prometheus::query_at(
        ep,
        &q.url,
        "sum(vllm:num_requests_running{instance=\"10.0.0.1:8000\"})",
        wall_now(),
        std::time::Duration::from_secs(2),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(s.value, 2.0);
    assert!(api.seen()[0].accepted);
    std::fs::remove_file(&tok).unwrap();
}
