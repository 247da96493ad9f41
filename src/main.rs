//! `hybrid-cache`: run a node, make certificates, or talk to a running node.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use hybrid_cache::cli::{run_client, Cli, Command};
use hybrid_cache::config::Config;
use hybrid_cache::server::node::Node;

/// The tokio runtime; `threads` = worker threads (`None`: one per CPU).
fn runtime(threads: Option<u16>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all();
    if let Some(n) = threads {
        b.worker_threads(usize::from(n));
    }
    b.build()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Node(args) => args.worker_threads,
        _ => Some(1),
    };
    match runtime(threads) {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => {
            eprintln!("hybrid-cache: cannot start the runtime: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> ExitCode {
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
                    ExitCode::from(exit_code(&e))
                }
            }
        }
        Command::Certs { out, nodes } => match hybrid_cache::generate_certs(&out, &nodes) {
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

/// 2 for a configuration the node refuses (as for a bad configuration file), else 1.
fn exit_code(e: &anyhow::Error) -> u8 {
    use hybrid_cache::server::node::NodeError;
    use hybrid_cache::BuildError;
    match e.downcast_ref::<NodeError>() {
        Some(NodeError::Build(BuildError::Config(_) | BuildError::PersistentRedis(_))) => 2,
        _ => 1,
    }
}

async fn run_node(config: Config) -> anyhow::Result<()> {
    // Listen before starting: a SIGTERM during start-up must not kill the process.
    let signal = hybrid_cache::server::node::shutdown_signal();
    let node = Node::start(config).await?;
    node.run_until(signal).await?;
    Ok(())
}
