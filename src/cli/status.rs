//! `gpupool status [--url URL]`: ask a running controller why — its `/status`, per pool, as a
//! table (or the JSON with `--json`). And the run loop's side of it: after every tick the
//! status is built (`model::status::build`), served on `/status`, written to the
//! `gpupool-status` ConfigMap by the leader in Kubernetes mode, and with
//! `--dump-snapshot DIR` the plan's inputs are written for `gpupool plan` to replay.

use anyhow::Context;
use gpupool::config::Config;
use gpupool::controller::Controller;
use gpupool::controller::dump::Dumper;
use gpupool::model::Timestamp;
use gpupool::model::status::{Status, StatusInput, build, render};
use gpupool::server::{Health, wall_clock};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The controller's HTTP address (`metrics.listen`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Print the JSON as served instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let url = format!("{}/status", args.url.trim_end_matches('/'));
    let body = runtime.block_on(async {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the HTTP client")?;
        let r = http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("asking {url}"))?;
        let code = r.status();
        let text = r.text().await.with_context(|| format!("reading {url}"))?;
        if !code.is_success() {
            anyhow::bail!("{url} answered {code}: {text}");
        }
        Ok(text)
    })?;
    if args.json {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let status: Status =
        serde_json::from_str(&body).with_context(|| format!("parsing the status from {url}"))?;
    print!("{}", render(&status, wall_clock()));
    Ok(ExitCode::SUCCESS)
}

/// The run loop's status outlets.
pub struct Publisher {
    config: Arc<Config>,
    health: Arc<Health>,
    dumper: Option<Dumper>,
    /// Time of the last plan dumped (a held or standby tick plans nothing new).
    dumped: Option<Timestamp>,
    #[cfg(feature = "kube")]
    map: Option<gpupool::kube::status_map::StatusMap>,
}

impl Publisher {
    pub fn new(config: Arc<Config>, health: Arc<Health>, dumper: Option<Dumper>) -> Self {
        Publisher {
            config,
            health,
            dumper,
            dumped: None,
            #[cfg(feature = "kube")]
            map: None,
        }
    }

    #[cfg(feature = "kube")]
    pub fn with_status_map(&mut self, map: gpupool::kube::status_map::StatusMap) {
        self.map = Some(map);
    }

    /// After a tick (or a standby's idle turn): build, serve, dump and write the status.
    pub async fn after_tick(
        &mut self,
        ctl: &Controller,
        leader: bool,
        now: Timestamp,
        held: Option<String>,
    ) {
        let planned = ctl.last_planned().filter(|_| leader);
        let status = build(&StatusInput {
            config: &self.config,
            leader,
            last_tick: Some(now),
            held,
            planned: planned.map(|p| (&p.snapshot, &p.history, &p.plan)),
            shadow: ctl.shadow(),
        });
        match serde_json::to_string(&status) {
            Ok(json) => self.health.status.publish(json),
            Err(e) => tracing::warn!(error = %e, "cannot serialise the status"),
        }
        if let (Some(d), Some(p)) = (&self.dumper, planned)
            && self.dumped != Some(p.snapshot.taken_at)
        {
            self.dumped = Some(p.snapshot.taken_at);
            if let Err(e) = d.write(p) {
                tracing::warn!(error = %gpupool::controller::error_chain(&e), "cannot dump the snapshot");
            }
        }
        #[cfg(feature = "kube")]
        if leader
            && let Some(map) = &mut self.map
            && let Err(e) = map.publish(&status, now).await
        {
            tracing::warn!(error = %gpupool::controller::error_chain(&e), "cannot write the status ConfigMap");
        }
    }
}
