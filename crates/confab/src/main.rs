//! `confab`: the chat server, its terminal client and its load generator.

mod admin;
mod bench;
mod connect;
mod healthcheck;
mod http_client;
mod post;
mod unchecked_tls;

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
        /// Speak TLS (a server with --tls-cert), checking its certificate against the
        /// system's CA bundle
        #[arg(long)]
        tls: bool,
        /// With TLS, trust the certificates of this PEM file instead (implies --tls)
        #[arg(long, value_name = "FILE")]
        ca: Option<std::path::PathBuf>,
        /// With TLS, trust any certificate (implies --tls): for a test server only
        #[arg(long, conflicts_with = "ca")]
        insecure: bool,
    },
    /// Generate load against a server and measure it.
    Bench(bench::BenchArgs),
    /// The operator's actions on a running server (its --admin-token in
    /// CONFAB_ADMIN_TOKEN): rooms, closing a room, notices, purges, address bans.
    Admin(admin::AdminArgs),
    /// Post a message to a room through the HTTP API, as the bot of one of its
    /// integrations (its token in CONFAB_TOKEN): for scripts and CI jobs.
    Post(post::PostArgs),
    /// Exit 0 if a server is ready (its /readyz answers 200), else 1: for container and
    /// service health checks.
    Healthcheck {
        /// What to ask; https:// for a server with TLS (its certificate is not checked)
        /// [default: http://127.0.0.1:8080/readyz]
        url: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = init_logs(cli.log.as_deref(), cli.log_format) {
        eprintln!("confab: {e}");
        return ExitCode::from(2);
    }
    // The bench runs on one thread of its own, apart from any server.
    let cli = match cli.command {
        Command::Bench(args) => return bench::run(args),
        Command::Healthcheck { url } => return healthcheck::run(url.as_deref()),
        Command::Admin(args) => return admin::run(args),
        Command::Post(args) => return post::run(args),
        command => Cli { command, ..cli },
    };
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
        Command::Connect { host, port, tls, ca, insecure } => {
            let security = if tls || insecure || ca.is_some() {
                match connect::Security::tls(ca.as_deref(), insecure) {
                    Ok(security) => security,
                    Err(e) => {
                        eprintln!("confab: {e}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                connect::Security::plain()
            };
            runtime.block_on(connect::run(host, port, security))
        }
        Command::Bench(_) | Command::Healthcheck { .. } | Command::Admin(_) | Command::Post(_) => {
            unreachable!("run above")
        }
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
    warn_unknown_env();
    let reload_args = args.clone();
    let config = match args.resolve() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("confab: {}", from_where(&e));
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
    let reloader = server.reloader();
    notify_service_manager("READY=1\nSTATUS=serving");
    tokio::spawn(async move {
        let mut signals = signals;
        // SIGHUP: the rate limits and the certificate again, from the
        // flags, the environment and the config file as they are now.
        while signals.first_or_hangup().await {
            reload(&reload_args, &reloader);
        }
        notify_service_manager("STOPPING=1\nSTATUS=draining");
        stopper.cancel();
        // A second Ctrl-C does not wait for the drain.
        signals.interrupted_again().await;
        eprintln!("confab: interrupted again; quitting without draining");
        std::process::exit(130);
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
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
                hangup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    /// Waits for SIGINT or SIGTERM (false) or SIGHUP (true).
    async fn first_or_hangup(&mut self) -> bool {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.hangup.recv() => true,
                _ = self.interrupt.recv() => false,
                _ = self.terminate.recv() => false,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            false
        }
    }
}

impl Signals {
    /// Resolves on the next SIGINT.
    async fn interrupted_again(&mut self) {
        #[cfg(unix)]
        {
            self.interrupt.recv().await;
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A bad value is named as the operator wrote it: `CONFAB_GRACE` when it
/// came from the environment, the flag otherwise.
fn from_where(error: &confab_server::config::ConfigError) -> String {
    if let confab_server::config::ConfigError::Invalid { setting, problem } = error {
        let flag = format!("--{setting}");
        let on_line = std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
        let variable = confab_server::config::env_name(setting);
        if !on_line && std::env::var_os(&variable).is_some() {
            return format!("{variable}: {problem}");
        }
        return format!("{flag}: {problem}");
    }
    error.to_string()
}

/// Warns of `CONFAB_*` variables that configure nothing (a misspelling),
/// naming the closest real one.
fn warn_unknown_env() {
    use clap::CommandFactory;
    let cli = Cli::command();
    let serve = cli.find_subcommand("serve").expect("serve is a subcommand");
    let mut known: Vec<String> = cli
        .get_arguments()
        .chain(serve.get_arguments())
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    known.sort();
    known.dedup();
    let set = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok());
    for (name, closest) in confab_server::config::unknown_env(set, &known) {
        match closest {
            Some(real) => tracing::warn!("{name} is not a setting (did you mean {real}?); ignored"),
            None => tracing::warn!("{name} is not a setting; ignored"),
        }
    }
}

/// Tells a service manager (systemd's `Type=notify`) how the server is:
/// one datagram to `$NOTIFY_SOCKET`, when it is set. A path, or an
/// abstract address written with a leading `@`.
fn notify_service_manager(state: &str) {
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::net::{SocketAddr, UnixDatagram};
        let Some(target) = std::env::var_os("NOTIFY_SOCKET") else { return };
        let target = target.to_string_lossy().into_owned();
        let addr = match target.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
            None => SocketAddr::from_pathname(&target),
        };
        let sent = addr.and_then(|addr| {
            let socket = UnixDatagram::unbound()?;
            socket.send_to_addr(state.as_bytes(), &addr)
        });
        if let Err(e) = sent {
            tracing::warn!("cannot notify the service manager at {target}: {e}");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = state;
}

/// Puts the rate limits, connection caps and TLS certificate of the
/// configuration as it is now in force, and logs what changed; a
/// configuration that no longer resolves changes nothing, and a
/// certificate that cannot be read leaves the one in force.
fn reload(args: &ServeArgs, reloader: &confab_server::Reloader) {
    let config = match args.clone().resolve() {
        Ok(config) => config,
        Err(e) => {
            // One line: a TOML error spans several.
            let why = from_where(&e).split_whitespace().collect::<Vec<_>>().join(" ");
            tracing::warn!("reload: {why}; the settings in force are kept");
            return;
        }
    };
    let done = reloader.apply(&config);
    if done.changes.is_empty() && done.refused.is_empty() {
        tracing::info!("reload: nothing changed");
    }
    for change in done.changes {
        tracing::info!("reload: {change}");
    }
    for refused in done.refused {
        tracing::warn!("reload: {refused}");
    }
}
