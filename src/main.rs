//! The gpupool command line: parse, wire, run — nothing else.

mod cli {
    pub mod bench;
    pub mod plan;
    pub mod run;
    pub mod simulate;
    pub mod status;
}

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
// `--version`: version, commit and the cargo features built in (aws, gcp, kube), set by build.rs,
// so an operator can tell at once whether a binary can drive their cloud and cluster.
#[command(
    name = "gpupool",
    version = env!("GPUPOOL_VERSION_LINE"),
    about = "GPU node-pool autoscaler"
)]
struct Cli {
    /// Log format: `text` or `json` (one object per line, for log pipelines).
    #[arg(
        long,
        global = true,
        env = "GPUPOOL_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the configured cloud (AWS or GCP), in Kubernetes or VM-only mode.
    Run(cli::run::Args),
    /// Replay a scenario against gpupool, the baselines and the oracle in the simulated cloud.
    Simulate(cli::simulate::Args),
    /// Explain a plan: read a snapshot (JSON) and print every action and non-action with its reason.
    Plan(cli::plan::Args),
    /// Ask a running controller why: its per-pool view and reasons (`/status`) as a table.
    Status(cli::status::Args),
    /// Benchmarks (planner at scale).
    Bench(cli::bench::Args),
    /// Validate a config file: every mistake with its path and fix; exit 1 on any.
    CheckConfig { file: PathBuf },
    /// Print the tags, labels, EventBridge rules and IAM actions gpupool uses, as JSON.
    PrintContract,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `RUST_LOG` wins; otherwise the controller logs at info and the one-shot commands only warn,
/// so their own output (tables, JSON) stays clean on stdout. The simulator's controllers log
/// only errors by default: their warnings (a rate signal without a full window at the start of
/// a trace, each spot notice) are simulated events stamped with wall-clock times, and the report
/// charts the notices (`RUST_LOG=warn` prints them all). Logs always go to stderr.
fn init_logging(cli: &Cli) {
    let default = match cli.command {
        Command::Run(_) => "info",
        Command::Simulate(_) => "error",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only for a person at a terminal; journald and log pipelines get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match cli.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => cli::run::run(args),
        Command::Simulate(args) => cli::simulate::run(args),
        Command::Plan(args) => cli::plan::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Status(args) => cli::status::run(args),
        Command::CheckConfig { file } => match gpupool::config::Config::load_file(&file) {
            Ok(cfg) => {
                for w in cfg.warnings(gpupool_provider::clock::wall_clock()) {
                    eprintln!("  warning: {w}");
                }
                let mut missing = cfg.unsupported_by_this_build();
                missing.extend(gpupool::signals::auth::unreadable_secrets(&cfg));
                if !missing.is_empty() {
                    eprintln!(
                        "{}: valid, but it cannot run here ({} problem(s))",
                        file.display(),
                        missing.len()
                    );
                    for i in missing {
                        eprintln!("  {i}");
                    }
                    return Ok(ExitCode::FAILURE);
                }
                println!("{}: ok ({} pool(s))", file.display(), cfg.pools.len());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                let issues = e.issues();
                eprintln!("{}: {} mistake(s)", file.display(), issues.len());
                for i in issues {
                    eprintln!("  {i}");
                }
                Ok(ExitCode::FAILURE)
            }
        },
        Command::PrintContract => {
            let v = gpupool::contract::contract_json();
            println!(
                "{}",
                serde_json::to_string_pretty(&v).context("serialising contract")?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
