//! A standalone fake Compute Engine API for trying gpupool without a Google Cloud project:
//!
//! ```text
//! cargo run -p gpupool-gcp --example fake_compute -- --port 8085
//! cargo run --features gcp -- run --config examples/gcp.yaml   # in another terminal
//! ```
//!
//! It serves project `gpupool-demo` with the MIGs `examples/gcp.yaml` manages: a zonal SPOT MIG
//! of g2-standard-8 (1 × L4) in us-central1-a and a regional on-demand MIG of a2-highgpu-1g
//! (1 × A100) over us-central1-a/b with a MANUAL standby pool of 2 stopped VMs; plus an
//! unlabelled MIG gpupool must leave alone. VMs move one lifecycle step every `--step-s`
//! seconds (creating → running, standby → stopped, …). Every request is logged to stderr.
//!
//! Options: `--port N` (default 8085), `--step-s S` (default 5),
//! `--preempt-every-s S` (preempt one running SPOT VM every S seconds; default never),
//! `--stockout ZONE/MACHINE_TYPE` (new VMs of that type in that zone stay CREATING with
//! `lastAttempt.errors` ZONE_RESOURCE_POOL_EXHAUSTED, as a MIG reports a stockout; repeatable).
#![allow(clippy::disallowed_methods)] // test code may wait on real services against wall-clock deadlines

use gpupool_gcp_fake as fake;

use std::time::Duration;

const USAGE: &str = "usage: fake_compute [--port N] [--step-s S] [--preempt-every-s S] [--stockout ZONE/MACHINE_TYPE]...";

struct Args {
    port: u16,
    step_s: u64,
    preempt_every_s: Option<u64>,
    stockouts: Vec<(String, String)>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        port: 8085,
        step_s: 5,
        preempt_every_s: None,
        stockouts: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--port" => a.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--step-s" => a.step_s = value()?.parse().map_err(|e| format!("--step-s: {e}"))?,
            "--preempt-every-s" => {
                a.preempt_every_s = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--preempt-every-s: {e}"))?,
                )
            }
            "--stockout" => {
                let v = value()?;
                let (z, m) = v
                    .split_once('/')
                    .ok_or(format!("--stockout wants ZONE/MACHINE_TYPE, got {v}"))?;
                a.stockouts.push((z.to_owned(), m.to_owned()));
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if a.step_s == 0 {
        return Err("--step-s must be at least 1".into());
    }
    Ok(a)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let labels = [
        ("gpupool-io-pool", "llama-70b"),
        ("gpupool-io-enabled", "true"),
    ];
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
    let f = fake::FakeCompute::start_on("gpupool-demo", addr).await?;
    f.add_template(
        "llama-70b-l4-spot",
        "g2-standard-8",
        &[("nvidia-l4", 1)],
        true,
        &labels,
    );
    f.add_template(
        "llama-70b-a100",
        "a2-highgpu-1g",
        &[("nvidia-tesla-a100", 1)],
        false,
        &labels,
    );
    f.add_template("web", "n1-standard-4", &[], false, &[]);
    f.add_mig(
        "zones/us-central1-a",
        "llama-70b-spot",
        "llama-70b-l4-spot",
        &["us-central1-a"],
        0,
        None,
    );
    f.add_mig(
        "regions/us-central1",
        "llama-70b-od",
        "llama-70b-a100",
        &["us-central1-a", "us-central1-b"],
        0,
        Some(("MANUAL", 2)),
    );
    f.add_mig(
        "zones/us-central1-b",
        "web",
        "web",
        &["us-central1-b"],
        2,
        None,
    );
    for mig in ["llama-70b-spot", "llama-70b-od"] {
        // What the Terraform module's startup script sets once the cache is warm.
        f.set_warm_labels(mig, &[("gpupool-io-model-cache", "llama-70b_v3")]);
    }
    f.set_page_size(50);
    for (z, m) in &args.stockouts {
        f.stockout(z, m);
    }
    eprintln!(
        "fake Compute API for project gpupool-demo on {} (VM step every {} s)",
        f.endpoint(),
        args.step_s
    );

    let mut step = tokio::time::interval(Duration::from_secs(args.step_s));
    let mut preempt = args
        .preempt_every_s
        .map(|s| tokio::time::interval(Duration::from_secs(s.max(1))));
    let mut logged = 0;
    loop {
        tokio::select! {
            _ = step.tick() => f.advance(),
            _ = async { match preempt.as_mut() { Some(p) => { p.tick().await; } None => std::future::pending::<()>().await } } => {
                let victim = f.mig("llama-70b-spot").and_then(|m| m.vms.iter().find(|v| v.status == "RUNNING" && v.action == "NONE").map(|v| v.name.clone()));
                if let Some(v) = victim {
                    f.preempt(&v);
                    eprintln!("preempted {v}");
                }
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let calls = f.calls();
        for c in &calls[logged..] {
            eprintln!("{c}");
        }
        logged = calls.len();
        for name in ["llama-70b-spot", "llama-70b-od"] {
            if let Some(m) = f.mig(name) {
                let states: Vec<String> = m
                    .vms
                    .iter()
                    .map(|v| {
                        format!(
                            "{}:{}/{}",
                            v.name,
                            if v.status.is_empty() { "-" } else { &v.status },
                            v.action
                        )
                    })
                    .collect();
                eprintln!(
                    "  {name}: targetSize={} targetStoppedSize={} targetSuspendedSize={} [{}]",
                    m.target_size,
                    m.target_stopped_size,
                    m.target_suspended_size,
                    states.join(" ")
                );
            }
        }
    }
}
