//! `hybrid-cache`: run a node, make certificates, or talk to a running node.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use hybrid_cache::cli::{run_client, Cli, Command};
use hybrid_cache::config::Config;
use hybrid_cache::node::Node;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Node(args) => {
            hybrid_cache::telemetry::init(args.log_format);
            let config = match Config::load(&args.flags()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("hybrid-cache: configuration error: {e}");
                    return ExitCode::from(2);
                }
            };
            match run_node(config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hybrid-cache: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Certs { out, nodes } => match hybrid_cache::gossip::generate_certs(&out, &nodes) {
            Ok(()) => {
                println!(
                    "wrote CA and certificates for {} to {}",
                    nodes.join(","),
                    out.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("hybrid-cache certs: {e}");
                ExitCode::from(1)
            }
        },
        cmd => match run_client(cmd).await {
            Ok(out) => {
                let mut stdout = std::io::stdout();
                let _ = stdout.write_all(&out);
                if !out.is_empty() && !out.ends_with(b"\n") {
                    let _ = stdout.write_all(b"\n");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("hybrid-cache: {e}");
                ExitCode::from(1)
            }
        },
    }
}

async fn run_node(config: Config) -> anyhow::Result<()> {
    // Listen before starting: a SIGTERM during start-up must not kill the process.
    let signal = hybrid_cache::node::shutdown_signal();
    let node = Node::start(config).await?;
    node.run_until(signal).await?;
    Ok(())
}
