//! `regmesh`: the binary. Reads the config, wires the crates together, binds
//! the sockets, and offers `serve` and `ctl`.
//!
//! Exit codes: 0 success, 64 bad usage or configuration (`EX_USAGE`), 1 runtime
//! failure (including a database that cannot be opened).

mod bench;
mod config;
mod ctl;
mod metrics;
mod serve;
mod sip_stream;
mod sip_udp;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: the REGISTER path allocates small
/// strings on several threads at once, and the profile under load had
/// glibc's malloc, free and consolidation at ~14% of the server's CPU
/// (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::PathBuf;
use std::process::ExitCode;

/// The realtime clock since the Unix epoch: the clock of the kernel's
/// receive timestamps (`SO_TIMESTAMPNS`), which the SIP receive threads
/// (queue delay) and the bench generator (arrival time) compare with it a
/// moment after the datagram is read. Only such differences are used, so a
/// clock step moves at most the datagrams queued across it.
#[allow(clippy::disallowed_methods)] // compared with kernel timestamps of the same clock
pub(crate) fn realtime_now() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

#[derive(Parser)]
#[command(
    name = "regmesh",
    version,
    about = "A clustered SIP registrar and location service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node. Without --config it runs on the embedded defaults.
    Serve {
        /// TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Validate the configuration, print the effective one, and exit.
        #[arg(long)]
        check_config: bool,
        /// Write the bound addresses as JSON to this file once serving.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Call a JSON-RPC method on a running node.
    Ctl(ctl::CtlArgs),
    /// Load a registrar (regmesh or Kamailio) with REGISTERs and report.
    Bench(bench::BenchArgs),
    /// A trivial UDP responder, to show the bench generator's own ceiling.
    BenchResponder(bench::ResponderArgs),
    /// Replication lag: register on one node, time until another lists each binding.
    BenchLag(bench::LagArgs),
}

const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            check_config,
            ready_file,
        } => {
            let cfg = match load_config(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("regmesh: configuration error: {e:#}");
                    return ExitCode::from(EX_USAGE);
                }
            };
            if check_config {
                // The certificate and key are part of the configuration:
                // check they load, as `serve` would.
                if let Some(tls) = cfg.tls.as_ref().filter(|_| {
                    cfg.listen
                        .iter()
                        .any(|l| l.transport == regmesh_sip::Transport::Tls)
                }) && let Err(e) = sip_stream::tls_acceptor(&tls.cert, &tls.key)
                {
                    eprintln!("regmesh: configuration error: {e:#}");
                    return ExitCode::from(EX_USAGE);
                }
                match cfg.effective_toml() {
                    Ok(text) => {
                        println!("# configuration is valid; effective values:\n{text}");
                        return ExitCode::SUCCESS;
                    }
                    Err(e) => {
                        eprintln!("regmesh: cannot print configuration: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            match serve::run(cfg, ready_file) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("regmesh: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Ctl(args) => ctl::run(args),
        Command::Bench(args) => report(bench::run(args)),
        Command::BenchResponder(args) => report(bench::run_responder(args)),
        Command::BenchLag(args) => report(bench::run_lag(args)),
    }
}

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<config::Config> {
    use anyhow::Context as _;
    let text = match path {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => String::new(),
    };
    let raw = config::RawConfig::from_toml(&text)?;
    Ok(raw.validate()?)
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("regmesh: {e:#}");
            ExitCode::FAILURE
        }
    }
}
