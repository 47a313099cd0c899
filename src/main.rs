//! The gpupool command line: parse, wire, run — nothing else.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "gpupool", version, about = "GPU node-pool autoscaler")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config file: every mistake with its path and fix; exit 1 on any.
    CheckConfig { file: PathBuf },
    /// Print the tags, labels, EventBridge rules and IAM actions gpupool uses, as JSON.
    PrintContract,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CheckConfig { file } => match gpupool::config::Config::load_file(&file) {
            Ok(cfg) => {
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
