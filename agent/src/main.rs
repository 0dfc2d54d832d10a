//! `quantgrid-agent`: runs cells for a coordinator on this machine's browsers.

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "quantgrid-agent",
    version,
    about = "Run quantgrid cells on this machine's browsers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print what this agent would register with a coordinator, as JSON.
    Probe,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Probe => {
            let host = quantgrid_agent::host::host();
            println!("{}", serde_json::to_string_pretty(&host)?);
            eprintln!("browser discovery is not built yet: this agent reports no browsers");
        }
    }
    Ok(())
}
