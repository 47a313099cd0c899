//! `gpupool check-config` as an operator runs it: warnings for settings that load but will not
//! do what was meant, and secrets it cannot read on this machine.

use std::process::Command;

fn check_config(file: &str, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpupool"));
    cmd.arg("check-config")
        .arg(format!("{}/{file}", env!("CARGO_MANIFEST_DIR")));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run gpupool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn warnings_name_the_field_and_the_fix() {
    let (ok, text) = check_config("tests/data/warn-config.yaml", &[("PROM_TOKEN", "t0k3n")]);
    assert!(ok, "warnings do not fail the check:\n{text}");
    for want in [
        "warning: pools[0].signals[0].cron.start: \"0 0 0 31 2 *\" never fires in the next 10 years, so the window never opens",
        "warning: pools[0].signals[1].prometheus.query: does not parse as PromQL",
        "warning: pools[0].signals[1].prometheus.url: credentials travel unencrypted over plain http",
        "warning: pools[0].slo.attainment_query.count_query: not set, so every reading counts however few requests it covers",
        "readings over fewer than 100 requests are unknown",
        "warning: pools[1].slo.attainment_query: not set, so gpupool cannot measure this pool's SLO",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(text.contains(": ok (2 pool(s))"), "{text}");
    // The measured pool is not told it is unmeasured.
    assert!(!text.contains("pools[0].slo.attainment_query:"), "{text}");
    assert!(
        !text.contains("t0k3n"),
        "the secret is never printed:\n{text}"
    );
}

#[test]
fn a_secret_that_cannot_be_read_here_is_reported() {
    let (ok, text) = check_config("tests/data/warn-config.yaml", &[("PROM_TOKEN", "")]);
    assert!(!ok, "{text}");
    assert!(
        text.contains(
            "pools[0].signals[1].prometheus.auth.bearer_token_env: environment variable PROM_TOKEN (bearer token) is not set or empty"
        ),
        "{text}"
    );
}
