//! `confab`: the chat server, its terminal client and its load generator.

mod bench;
mod connect;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use confab_server::{ServeArgs, Server};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "confab",
    version,
    propagate_version = true,
    about = "A self-hosted real-time chat server"
)]
struct Cli {
    /// What to log: a level (error, warn, info, debug, trace), or directives such as
    /// `info,confab_cluster=debug` [default: info]
    #[arg(long, global = true, env = "CONFAB_LOG", value_name = "FILTER")]
    log: Option<String>,
    /// How log lines look: `text` (coloured on a terminal only) or `json` (one object a line)
    #[arg(
        long,
        global = true,
        env = "CONFAB_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once, at start")]
enum Command {
    /// Run the server: web chat, WebSocket and HTTP APIs.
    Serve(ServeArgs),
    /// Connect to a server's terminal line protocol.
    Connect {
        /// Server host [default: 127.0.0.1]
        host: Option<String>,
        /// Port of the line protocol [default: 6789]
        port: Option<u16>,
    },
    /// Generate load against a server and measure it.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logs(cli.log.as_deref(), cli.log_format) {
        eprintln!("confab: {e}");
        return ExitCode::from(2);
    }
    // The bench runs on one thread of its own, apart from any server.
    if let Command::Bench(args) = cli.command {
        return bench::run(args);
    }
    // On one core (a container with one CPU, or `taskset -c 0`) the
    // work-stealing scheduler has nobody to steal from. The single-threaded
    // one runs tasks in the order they woke: measured on one core, it cut
    // the p99 of a saturated fan-out from 120 ms to about 50 ms, and of a
    // persistent-post load by half (docs/performance.md).
    let one_core = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let runtime = if one_core {
        tracing::debug!("one core: the single-threaded scheduler");
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Runtime::new()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("confab: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Connect { host, port } => runtime.block_on(connect::run(host, port)),
        Command::Bench(_) => unreachable!("run above"),
    }
}

/// Logs to standard error, filtered by `filter`, as text or JSON lines.
/// Colour only when standard error is a terminal (and `NO_COLOR` is not
/// set): a log file or a journal gets no escape codes.
fn init_logs(filter: Option<&str>, format: LogFormat) -> Result<(), String> {
    let directives = filter.unwrap_or("info");
    let filter = EnvFilter::try_new(directives)
        .map_err(|e| format!("--log (CONFAB_LOG) {directives:?}: {e}"))?;
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            logs.with_ansi(colour).init();
        }
        LogFormat::Json => logs.json().with_ansi(false).flatten_event(true).init(),
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> ExitCode {
    let config = match args.resolve() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("confab: {e}");
            return ExitCode::from(2);
        }
    };
    // Handlers first, so a signal that arrives as soon as the address is
    // logged already finds them in place.
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("confab: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::start(config).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("confab: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let stopper = server.stopper();
    tokio::spawn(async move {
        signals.wait().await;
        stopper.cancel();
    });
    server.wait().await;
    ExitCode::SUCCESS
}

/// SIGINT and SIGTERM, listened for from the moment they are installed.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    /// Resolves on the first SIGINT or SIGTERM.
    async fn wait(mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
