//! `kubectl-podmirror`: found by kubectl on PATH as `kubectl podmirror`.

use std::process::ExitCode;

use clap::Parser;
use kubectl_podmirror::cli::Cli;
use kubectl_podmirror::commands;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
