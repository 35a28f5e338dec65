//! `confab serve` configuration: flags, `CONFAB_*` environment variables
//! and a TOML file, in that order of precedence.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::admission::EdgeConfig;
use clap::Args;
use confab_cluster::ClusterConfig;
use confab_core::{BoardConfig, HubConfig, Limits, Rate, Rates, RetentionPolicy};
use serde::Deserialize;

/// Flags of `confab serve`. Every flag can also be given as `CONFAB_<FLAG>`
/// in the environment or as a key of the `--config` file.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServeArgs {
    /// Address for HTTP and WebSocket [default: 127.0.0.1:8080]
    #[arg(long, env = "CONFAB_HTTP", value_name = "ADDR")]
    pub http: Option<String>,
    /// Address for the terminal line protocol [default: 127.0.0.1:6789]
    #[arg(long, env = "CONFAB_TCP", value_name = "ADDR")]
    pub tcp: Option<String>,
    /// Address for IRC clients (irssi, WeeChat, HexChat; 6667 is the usual port)
    /// [default: off]
    #[arg(long, env = "CONFAB_IRC", value_name = "ADDR")]
    pub irc: Option<String>,
    /// Certificate chain (PEM) to serve HTTPS, WSS and the terminal protocol over TLS;
    /// read again on SIGHUP. Needs --tls-key
    #[arg(long, env = "CONFAB_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert
    #[arg(long, env = "CONFAB_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// TLS handshakes per client address (IPv6: per /64); sockets beyond it are closed
    /// unanswered [default: 10/s,burst=30]
    #[arg(long, env = "CONFAB_TLS_HANDSHAKE_RATE", value_name = "RATE")]
    pub tls_handshake_rate: Option<String>,
    /// Directory for persistent data [default: ./confab-data]
    #[arg(long, env = "CONFAB_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://… [default: sqlite://DIR/confab.db]
    #[arg(long, env = "CONFAB_DATABASE", value_name = "URL")]
    pub database: Option<String>,
    /// Join a cluster of nodes through Redis: redis://…, or several comma-separated to spread
    /// rooms over them (the same list on every node; needs a postgres:// --database)
    #[arg(long, env = "CONFAB_CLUSTER", value_name = "URL")]
    pub cluster: Option<String>,
    /// Name of this node, shown in hello and /health [default: local]
    #[arg(long, env = "CONFAB_NODE", value_name = "NAME")]
    pub node: Option<String>,
    /// How soon the others free the seats of a cluster node that stopped answering [default: 10s]
    #[arg(long, env = "CONFAB_NODE_LEASE", value_name = "DURATION")]
    pub node_lease: Option<String>,
    /// Prefix of the cluster's Redis keys, for several clusters on one Redis [default: cf]
    #[arg(long, env = "CONFAB_CLUSTER_NAMESPACE", value_name = "NAME")]
    pub cluster_namespace: Option<String>,
    /// Least time between two calls that carry posts to one Redis shard: posts that arrive
    /// sooner go in the next call, together (0 turns it off) [default: 2ms]
    #[arg(long, env = "CONFAB_CLUSTER_POST_LINGER", value_name = "DURATION")]
    pub cluster_post_linger: Option<String>,
    /// TOML file with any of these settings (keys named like the flags)
    #[arg(long, env = "CONFAB_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// How long a dropped member keeps their seat, e.g. 10s, 500ms [default: 10s]
    #[arg(long, env = "CONFAB_GRACE", value_name = "DURATION")]
    pub grace: Option<String>,
    /// Boards, comma-separated; each always exists and is public [default: main]
    #[arg(long, env = "CONFAB_BOARDS", value_name = "NAMES", value_delimiter = ',')]
    pub boards: Option<Vec<String>>,
    /// Earlier messages a board shows a joiner [default: 2]
    #[arg(long, env = "CONFAB_BOARD_BACKLOG", value_name = "N")]
    pub board_backlog: Option<u32>,
    /// Default backlog of created rooms [default: 50]
    #[arg(long, env = "CONFAB_ROOM_BACKLOG", value_name = "N")]
    pub room_backlog: Option<u32>,
    /// Largest room capacity [default: 1000]
    #[arg(long, env = "CONFAB_MAX_CAPACITY", value_name = "N")]
    pub max_capacity: Option<u32>,
    /// Messages each room keeps in memory [default: 1000]
    #[arg(long, env = "CONFAB_ROOM_WINDOW", value_name = "N")]
    pub room_window: Option<usize>,
    /// Frames queued per connection before it is closed as too slow [default: 1024]
    #[arg(long, env = "CONFAB_OUTBOX", value_name = "FRAMES")]
    pub outbox: Option<usize>,
    /// Largest client frame in bytes [default: 65536]
    #[arg(long, env = "CONFAB_FRAME_LIMIT", value_name = "BYTES")]
    pub frame_limit: Option<usize>,
    /// Largest message body in characters [default: 4000]
    #[arg(long, env = "CONFAB_BODY_LIMIT", value_name = "CHARS")]
    pub body_limit: Option<usize>,
    /// Messages kept per persistent room; older ones are pruned [default: all]
    #[arg(long, env = "CONFAB_RETAIN_MESSAGES", value_name = "N")]
    pub retain_messages: Option<u64>,
    /// Oldest message kept in persistent rooms, e.g. 30d [default: forever]
    #[arg(long, env = "CONFAB_RETAIN_AGE", value_name = "DURATION")]
    pub retain_age: Option<String>,
    /// Messages kept per board [default: all]
    #[arg(long, env = "CONFAB_BOARD_RETAIN_MESSAGES", value_name = "N")]
    pub board_retain_messages: Option<u64>,
    /// Oldest message kept on boards [default: forever]
    #[arg(long, env = "CONFAB_BOARD_RETAIN_AGE", value_name = "DURATION")]
    pub board_retain_age: Option<String>,
    /// Posts per user: RATE like 10/s or 600/m, optionally ",burst=N", or off [default: 10/s,burst=30]
    #[arg(long, env = "CONFAB_POST_RATE", value_name = "RATE")]
    pub post_rate: Option<String>,
    /// Joins per user [default: 5/s,burst=20]
    #[arg(long, env = "CONFAB_JOIN_RATE", value_name = "RATE")]
    pub join_rate: Option<String>,
    /// Rooms created per user [default: 30/m,burst=20]
    #[arg(long, env = "CONFAB_CREATE_RATE", value_name = "RATE")]
    pub create_rate: Option<String>,
    /// Rooms created per client address (IPv6: per /64) [default: 60/h,burst=30]
    #[arg(long, env = "CONFAB_CREATE_RATE_PER_IP", value_name = "RATE")]
    pub create_rate_per_ip: Option<String>,
    /// Moderation ops (giving roles) per user [default: 1/s,burst=20]
    #[arg(long, env = "CONFAB_MODERATION_RATE", value_name = "RATE")]
    pub moderation_rate: Option<String>,
    /// Messages reported per user [default: 20/h,burst=10]
    #[arg(long, env = "CONFAB_REPORT_RATE", value_name = "RATE")]
    pub report_rate: Option<String>,
    /// Append reports of messages (one JSON object a line) to this file; they are logged
    /// either way
    #[arg(long, env = "CONFAB_AUDIT_LOG", value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Token of the operator's API (/admin/v1/, `confab admin`), at least 24 characters;
    /// without it the API is off. Give it in the environment or the config file: a flag
    /// shows in the process list
    #[arg(long, env = "CONFAB_ADMIN_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
    /// How long one webhook delivery may take; a node delivering a webhook's events
    /// holds them for three times this [default: 10s]
    #[arg(long, env = "CONFAB_WEBHOOK_TIMEOUT", value_name = "DURATION")]
    pub webhook_timeout: Option<String>,
    /// Give up delivering a webhook event this long after it happened [default: 24h]
    #[arg(long, env = "CONFAB_WEBHOOK_GIVE_UP", value_name = "DURATION")]
    pub webhook_give_up: Option<String>,
    /// Let webhooks reach private, loopback and link-local addresses (a room's owner
    /// could then make the server reach inside its network) [default: false]
    #[arg(long, env = "CONFAB_WEBHOOK_PRIVATE", value_name = "BOOL")]
    pub webhook_private: Option<bool>,
    /// Reactions put on or taken off per user [default: 2/s,burst=20]
    #[arg(long, env = "CONFAB_REACT_RATE", value_name = "RATE")]
    pub react_rate: Option<String>,
    /// Reads per user (history pages, member lists, the room list, single
    /// messages) [default: 20/s,burst=100]
    #[arg(long, env = "CONFAB_READ_RATE", value_name = "RATE")]
    pub read_rate: Option<String>,
    /// How long after posting its author may edit a message; 0 turns editing off
    /// [default: 15m]
    #[arg(long, env = "CONFAB_EDIT_WINDOW", value_name = "DURATION")]
    pub edit_window: Option<String>,
    /// Typing indicators per user; more are dropped unsent [default: 4/s,burst=8]
    #[arg(long, env = "CONFAB_TYPING_RATE", value_name = "RATE")]
    pub typing_rate: Option<String>,
    /// Rooms one connection may be in at once [default: 100]
    #[arg(long, env = "CONFAB_MAX_ROOMS_PER_CONNECTION", value_name = "N")]
    pub max_rooms_per_connection: Option<usize>,
    /// Serve /metrics on this address only, not on --http [default: on --http]
    #[arg(long, env = "CONFAB_METRICS", value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Joins of rooms that do not exist, per client address [default: 10/h,burst=20]
    #[arg(long, env = "CONFAB_FAILED_JOIN_RATE", value_name = "RATE")]
    pub failed_join_rate: Option<String>,
    /// New sessions per client address (IPv6: per /64) [default: 10/m,burst=30]
    #[arg(long, env = "CONFAB_SESSION_RATE", value_name = "RATE")]
    pub session_rate: Option<String>,
    /// Apply per-address limits to loopback clients too [default: exempt]
    #[arg(long, env = "CONFAB_LIMIT_LOOPBACK", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub limit_loopback: Option<bool>,
    /// Most connections the server holds [default: 200000]
    #[arg(long, env = "CONFAB_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Most connections from one client address (loopback exempt) [default: 256]
    #[arg(long, env = "CONFAB_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Reverse proxies whose X-Forwarded-For is believed, comma-separated
    #[arg(long, env = "CONFAB_TRUSTED_PROXIES", value_name = "IPS", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// Origins allowed to open a WebSocket besides the server's own, comma-separated
    #[arg(long, env = "CONFAB_ALLOWED_ORIGINS", value_name = "ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// How long a connection may stay without hello [default: 10s]
    #[arg(long, env = "CONFAB_HELLO_TIMEOUT", value_name = "DURATION")]
    pub hello_timeout: Option<String>,
    /// Drain window on SIGTERM: open connections are closed at moments spread over its first
    /// 80%, then the server stops [default: 5s]
    #[arg(long, env = "CONFAB_DRAIN", value_name = "DURATION")]
    pub drain: Option<String>,
    /// How long a long poll waits for a frame before answering [] [default: 25s]
    #[arg(long, env = "CONFAB_POLL_WAIT", value_name = "DURATION")]
    pub poll_wait: Option<String>,
    /// A long-poll connection not polled for this long is closed [default: 60s]
    #[arg(long, env = "CONFAB_POLL_IDLE", value_name = "DURATION")]
    pub poll_idle: Option<String>,
}

/// A configuration error, naming the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("{setting}: {problem}")]
    Invalid { setting: &'static str, problem: String },
}

/// The resolved configuration of a server.
/// A value that is never shown: `Debug` prints a placeholder.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(secret)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// The shortest `--admin-token` taken.
pub const ADMIN_TOKEN_MIN: usize = 24;

#[derive(Debug, Clone)]
pub struct Config {
    pub http: String,
    pub tcp: String,
    /// IRC clients' address, when on.
    pub irc: Option<String>,
    /// TLS on the HTTP and terminal listeners, when given.
    pub tls: Option<crate::tls::TlsFiles>,
    /// The audit log's file, when given.
    pub audit_log: Option<PathBuf>,
    /// The operator's API token; `None`: the API is off.
    pub admin_token: Option<Secret>,
    /// A webhook event not delivered within this is given up.
    pub webhook_give_up: Duration,
    /// How long one webhook delivery may take.
    pub webhook_timeout: Duration,
    /// A separate address for `/metrics`; `None` serves it on `http`.
    pub metrics: Option<String>,
    pub data: PathBuf,
    pub database: Option<String>,
    /// The cluster this node joins, if any.
    pub cluster: Option<ClusterConfig>,
    /// Frames queued per connection.
    pub outbox: usize,
    /// How long shutdown waits for connections to close.
    pub drain: Duration,
    /// How long a long poll waits for a frame before answering `[]`.
    pub poll_wait: Duration,
    /// A long-poll connection not polled for this long is closed.
    pub poll_idle: Duration,
    /// Connection admission and origins.
    pub edge: EdgeConfig,
    pub hub: HubConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http: "127.0.0.1:8080".into(),
            tcp: "127.0.0.1:6789".into(),
            irc: None,
            tls: None,
            audit_log: None,
            admin_token: None,
            webhook_give_up: Duration::from_secs(24 * 3600),
            webhook_timeout: Duration::from_secs(10),
            metrics: None,
            data: PathBuf::from("./confab-data"),
            database: None,
            cluster: None,
            outbox: 1024,
            drain: Duration::from_secs(5),
            poll_wait: Duration::from_secs(25),
            poll_idle: Duration::from_secs(60),
            edge: EdgeConfig::default(),
            hub: HubConfig::default(),
        }
    }
}

impl Config {
    /// A configuration for tests: every listener on a free loopback port.
    pub fn ephemeral(data: &Path) -> Config {
        Config {
            http: "127.0.0.1:0".into(),
            tcp: "127.0.0.1:0".into(),
            data: data.to_path_buf(),
            // A short drain: a test that stops its server does not wait
            // out a production window (a drain test sets its own).
            drain: Duration::from_millis(300),
            ..Config::default()
        }
    }
}

impl ServeArgs {
    /// Resolves flags and environment (already in `self`) over the config
    /// file over the defaults.
    ///
    /// # Errors
    ///
    /// An unreadable or invalid config file, or an invalid value.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                toml::from_str::<ServeArgs>(&text)
                    .map_err(|source| ConfigError::Parse { path: path.clone(), source })?
            }
            None => ServeArgs::default(),
        };
        let args = self.over(file);
        let defaults = Config::default();
        let hub = args.hub(&defaults)?;
        let (outbox, drain, poll_wait, poll_idle) = args.timing(&defaults)?;
        let cluster = args.cluster()?;
        let edge = args.edge(&defaults, hub.rates.limit_loopback)?;
        let http = listen_address("http", args.http.unwrap_or(defaults.http))?;
        let tcp = listen_address("tcp", args.tcp.unwrap_or(defaults.tcp))?;
        let irc = args.irc.map(|irc| listen_address("irc", irc)).transpose()?;
        let metrics = args.metrics.map(|m| listen_address("metrics", m)).transpose()?;
        let tls = match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "tls-key",
                    "--tls-cert needs its private key, --tls-key".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "tls-cert",
                    "--tls-key needs its certificate, --tls-cert".into(),
                ));
            }
        };
        let admin_token = match args.admin_token {
            Some(token) if token.expose().trim().chars().count() < ADMIN_TOKEN_MIN => {
                return Err(invalid(
                    "admin-token",
                    format!(
                        "it must be at least {ADMIN_TOKEN_MIN} characters (try `openssl rand -hex 24`)"
                    ),
                ));
            }
            token => token,
        };
        let webhook_timeout = match &args.webhook_timeout {
            Some(text) => {
                parse_duration(text).map_err(|problem| invalid("webhook-timeout", problem))?
            }
            None => Duration::from_secs(10),
        };
        let webhook_give_up = match &args.webhook_give_up {
            Some(text) => {
                parse_duration(text).map_err(|problem| invalid("webhook-give-up", problem))?
            }
            None => Duration::from_secs(24 * 3600),
        };
        Ok(Config {
            tls,
            audit_log: args.audit_log,
            admin_token,
            webhook_give_up,
            webhook_timeout,
            edge,
            http,
            tcp,
            irc,
            metrics,
            data: args.data.unwrap_or(defaults.data),
            database: args.database,
            cluster,
            outbox,
            drain,
            poll_wait,
            poll_idle,
            hub,
        })
    }

    /// The hub's settings: boards, rooms, limits, rates, retention.
    fn hub(&self, defaults: &Config) -> Result<HubConfig, ConfigError> {
        let args = self;
        let mut hub = defaults.hub.clone();
        if let Some(private) = args.webhook_private {
            hub.webhooks_private = private;
        }
        if let Some(window) = &args.edit_window {
            hub.edit_window =
                parse_duration(window).map_err(|problem| invalid("edit-window", problem))?;
        }
        if let Some(grace) = &args.grace {
            hub.grace = parse_duration(grace).map_err(|problem| invalid("grace", problem))?;
        }
        let board_backlog = args.board_backlog.unwrap_or(2);
        if let Some(names) = &args.boards {
            hub.boards = names
                .iter()
                .map(|name| name.trim())
                .filter(|name| !name.is_empty())
                .map(|name| {
                    if name.len() > 32 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                        return Err(invalid("boards", format!("{name:?} is not a board name (letters, digits, - and _, at most 32)")));
                    }
                    Ok(BoardConfig { name: name.to_lowercase(), title: title_case(name), backlog: board_backlog })
                })
                .collect::<Result<_, _>>()?;
        }
        for board in &mut hub.boards {
            board.backlog = board_backlog;
        }
        if let Some(n) = args.room_backlog {
            hub.room_backlog = n;
        }
        if let Some(n) = args.max_capacity {
            if n < 2 {
                return Err(invalid("max-capacity", "must be at least 2".into()));
            }
            hub.max_capacity = n;
        }
        if let Some(n) = args.room_window {
            if n == 0 {
                return Err(invalid("room-window", "must be at least 1".into()));
            }
            hub.room_window = n;
        }
        let mut limits = Limits::default();
        if let Some(n) = args.frame_limit {
            if n < 1024 {
                return Err(invalid("frame-limit", "must be at least 1024 bytes".into()));
            }
            limits.frame_bytes = n;
        }
        if let Some(n) = args.body_limit {
            if n == 0 {
                return Err(invalid("body-limit", "must be at least 1".into()));
            }
            limits.body_chars = n;
        }
        hub.limits = limits;
        let rate =
            |setting: &'static str, value: &Option<String>, default: Option<Rate>| match value {
                Some(text) => parse_rate(text).map_err(|problem| invalid(setting, problem)),
                None => Ok(default),
            };
        let rates = hub.rates;
        hub.rates = Rates {
            post: rate("post-rate", &args.post_rate, rates.post)?,
            join: rate("join-rate", &args.join_rate, rates.join)?,
            create: rate("create-rate", &args.create_rate, rates.create)?,
            typing: rate("typing-rate", &args.typing_rate, rates.typing)?,
            address_create: rate(
                "create-rate-per-ip",
                &args.create_rate_per_ip,
                rates.address_create,
            )?,
            failed_join: rate("failed-join-rate", &args.failed_join_rate, rates.failed_join)?,
            new_session: rate("session-rate", &args.session_rate, rates.new_session)?,
            report: rate("report-rate", &args.report_rate, rates.report)?,
            moderate: rate("moderation-rate", &args.moderation_rate, rates.moderate)?,
            react: rate("react-rate", &args.react_rate, rates.react)?,
            read: rate("read-rate", &args.read_rate, rates.read)?,
            limit_loopback: args.limit_loopback.unwrap_or(rates.limit_loopback),
        };
        hub.room_retention = RetentionPolicy {
            keep: args.retain_messages,
            max_age: args
                .retain_age
                .as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(|problem| invalid("retain-age", problem))?,
        };
        hub.board_retention = RetentionPolicy {
            keep: args.board_retain_messages,
            max_age: args
                .board_retain_age
                .as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(|problem| invalid("board-retain-age", problem))?,
        };
        if let Some(node) = args.node.clone() {
            hub.node = node;
        }
        if let Some(n) = args.max_rooms_per_connection {
            if n == 0 {
                return Err(invalid("max-rooms-per-connection", "must be at least 1".into()));
            }
            hub.max_rooms_per_conn = n;
        }
        Ok(hub)
    }

    /// The outbox size and the connection timings: drain, poll wait, poll
    /// idle.
    fn timing(
        &self,
        defaults: &Config,
    ) -> Result<(usize, Duration, Duration, Duration), ConfigError> {
        let args = self;
        let outbox = args.outbox.unwrap_or(defaults.outbox);
        if outbox == 0 {
            return Err(invalid("outbox", "must be at least 1".into()));
        }
        let drain = match &args.drain {
            Some(d) => parse_duration(d).map_err(|problem| invalid("drain", problem))?,
            None => defaults.drain,
        };
        let poll_wait = match &args.poll_wait {
            Some(d) => parse_duration(d).map_err(|problem| invalid("poll-wait", problem))?,
            None => defaults.poll_wait,
        };
        let poll_idle = match &args.poll_idle {
            Some(d) => parse_duration(d).map_err(|problem| invalid("poll-idle", problem))?,
            None => defaults.poll_idle,
        };
        Ok((outbox, drain, poll_wait, poll_idle))
    }

    /// The database URL checked, and the cluster this node joins, if any.
    fn cluster(&self) -> Result<Option<ClusterConfig>, ConfigError> {
        let args = self;
        if let Some(url) = &args.database
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres:")
                || url.starts_with("postgresql:"))
        {
            return Err(invalid(
                "database",
                format!("{url:?}: expected sqlite://PATH or postgres://…"),
            ));
        }
        Ok(match &args.cluster {
            None => {
                if args.node_lease.is_some() {
                    return Err(invalid("node-lease", "applies only with --cluster".into()));
                }
                if args.cluster_namespace.is_some() {
                    return Err(invalid("cluster-namespace", "applies only with --cluster".into()));
                }
                if args.cluster_post_linger.is_some() {
                    return Err(invalid(
                        "cluster-post-linger",
                        "applies only with --cluster".into(),
                    ));
                }
                None
            }
            Some(url) => {
                // One URL, or several (the shards), comma-separated.
                let shards: Vec<&str> = url.split(',').map(str::trim).collect();
                if let Some(bad) =
                    shards.iter().find(|u| !(u.starts_with("redis:") || u.starts_with("rediss:")))
                {
                    return Err(invalid("cluster", format!("{bad:?}: expected redis://…")));
                }
                if let Some(twice) =
                    shards.iter().enumerate().find(|(i, u)| shards[..*i].contains(u))
                {
                    return Err(invalid("cluster", format!("{:?} is given twice", twice.1)));
                }
                // Nodes share rooms, so they must share what is stored: a
                // node on its own SQLite file would give out `seq`s that
                // the others' databases know nothing of.
                let shared = args
                    .database
                    .as_deref()
                    .is_some_and(|d| d.starts_with("postgres:") || d.starts_with("postgresql:"));
                if !shared {
                    return Err(invalid(
                        "cluster",
                        "the nodes of a cluster share one database: give --database postgres://…"
                            .into(),
                    ));
                }
                // The node's name starts its long-poll tokens, which a
                // load balancer routes by: it must be unique and path-safe.
                let node = args.node.as_deref().unwrap_or_default();
                let path_safe = !node.is_empty()
                    && node.len() <= 32
                    && node.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !path_safe {
                    return Err(invalid(
                        "node",
                        format!(
                            "{node:?}: each node of a cluster needs its own --node name, \
                             1 to 32 letters, digits, '-' or '_'"
                        ),
                    ));
                }
                let mut cluster = ClusterConfig::new(url.clone());
                if let Some(lease) = &args.node_lease {
                    cluster.lease =
                        parse_duration(lease).map_err(|problem| invalid("node-lease", problem))?;
                    if cluster.lease < Duration::from_millis(300) {
                        return Err(invalid("node-lease", "must be at least 300ms".into()));
                    }
                }
                if let Some(linger) = &args.cluster_post_linger {
                    cluster.post_linger = parse_duration(linger)
                        .map_err(|problem| invalid("cluster-post-linger", problem))?;
                    if cluster.post_linger > Duration::from_millis(100) {
                        return Err(invalid("cluster-post-linger", "must be at most 100ms".into()));
                    }
                }
                if let Some(namespace) = &args.cluster_namespace {
                    let fine = !namespace.is_empty()
                        && namespace.len() <= 64
                        && namespace
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                    if !fine {
                        return Err(invalid(
                            "cluster-namespace",
                            format!("{namespace:?}: 1 to 64 letters, digits, '-', '_' or '.'"),
                        ));
                    }
                    cluster.namespace.clone_from(namespace);
                }
                Some(cluster)
            }
        })
    }

    /// Admission at the edge: connection caps, proxies, origins, hello.
    fn edge(&self, defaults: &Config, limit_loopback: bool) -> Result<EdgeConfig, ConfigError> {
        let args = self;
        let mut edge = defaults.edge.clone();
        if let Some(n) = args.max_connections {
            edge.max_connections = n;
        }
        if let Some(n) = args.max_connections_per_ip {
            edge.max_connections_per_ip = n;
        }
        edge.limit_loopback = limit_loopback;
        if let Some(proxies) = &args.trusted_proxies {
            edge.trusted_proxies = proxies
                .iter()
                .map(|p| {
                    p.trim().parse().map_err(|_| {
                        invalid("trusted-proxies", format!("{p:?} is not an IP address"))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(origins) = &args.allowed_origins {
            for origin in origins {
                if origin != "*" && !origin.contains("://") {
                    return Err(invalid(
                        "allowed-origins",
                        format!("{origin:?}: expected scheme://host[:port] or *"),
                    ));
                }
            }
            edge.allowed_origins.clone_from(origins);
        }
        if let Some(rate) = &args.tls_handshake_rate {
            edge.handshake_rate =
                parse_rate(rate).map_err(|problem| invalid("tls-handshake-rate", problem))?;
        }
        if let Some(timeout) = &args.hello_timeout {
            edge.hello_timeout =
                parse_duration(timeout).map_err(|problem| invalid("hello-timeout", problem))?;
        }
        Ok(edge)
    }

    /// `self`'s settings where given, else `lower`'s.
    fn over(self, lower: ServeArgs) -> ServeArgs {
        ServeArgs {
            http: self.http.or(lower.http),
            tcp: self.tcp.or(lower.tcp),
            irc: self.irc.or(lower.irc),
            tls_cert: self.tls_cert.or(lower.tls_cert),
            tls_key: self.tls_key.or(lower.tls_key),
            tls_handshake_rate: self.tls_handshake_rate.or(lower.tls_handshake_rate),
            data: self.data.or(lower.data),
            database: self.database.or(lower.database),
            cluster: self.cluster.or(lower.cluster),
            node: self.node.or(lower.node),
            node_lease: self.node_lease.or(lower.node_lease),
            cluster_namespace: self.cluster_namespace.or(lower.cluster_namespace),
            cluster_post_linger: self.cluster_post_linger.or(lower.cluster_post_linger),
            config: self.config,
            grace: self.grace.or(lower.grace),
            boards: self.boards.or(lower.boards),
            board_backlog: self.board_backlog.or(lower.board_backlog),
            room_backlog: self.room_backlog.or(lower.room_backlog),
            max_capacity: self.max_capacity.or(lower.max_capacity),
            room_window: self.room_window.or(lower.room_window),
            outbox: self.outbox.or(lower.outbox),
            frame_limit: self.frame_limit.or(lower.frame_limit),
            body_limit: self.body_limit.or(lower.body_limit),
            drain: self.drain.or(lower.drain),
            poll_wait: self.poll_wait.or(lower.poll_wait),
            poll_idle: self.poll_idle.or(lower.poll_idle),
            post_rate: self.post_rate.or(lower.post_rate),
            join_rate: self.join_rate.or(lower.join_rate),
            create_rate: self.create_rate.or(lower.create_rate),
            create_rate_per_ip: self.create_rate_per_ip.or(lower.create_rate_per_ip),
            typing_rate: self.typing_rate.or(lower.typing_rate),
            react_rate: self.react_rate.or(lower.react_rate),
            read_rate: self.read_rate.or(lower.read_rate),
            webhook_give_up: self.webhook_give_up.or(lower.webhook_give_up),
            webhook_timeout: self.webhook_timeout.or(lower.webhook_timeout),
            webhook_private: self.webhook_private.or(lower.webhook_private),
            edit_window: self.edit_window.or(lower.edit_window),
            report_rate: self.report_rate.or(lower.report_rate),
            moderation_rate: self.moderation_rate.or(lower.moderation_rate),
            audit_log: self.audit_log.or(lower.audit_log),
            admin_token: self.admin_token.or(lower.admin_token),
            max_rooms_per_connection: self
                .max_rooms_per_connection
                .or(lower.max_rooms_per_connection),
            metrics: self.metrics.or(lower.metrics),
            failed_join_rate: self.failed_join_rate.or(lower.failed_join_rate),
            session_rate: self.session_rate.or(lower.session_rate),
            limit_loopback: self.limit_loopback.or(lower.limit_loopback),
            max_connections: self.max_connections.or(lower.max_connections),
            max_connections_per_ip: self.max_connections_per_ip.or(lower.max_connections_per_ip),
            trusted_proxies: self.trusted_proxies.or(lower.trusted_proxies),
            allowed_origins: self.allowed_origins.or(lower.allowed_origins),
            hello_timeout: self.hello_timeout.or(lower.hello_timeout),
            retain_messages: self.retain_messages.or(lower.retain_messages),
            retain_age: self.retain_age.or(lower.retain_age),
            board_retain_messages: self.board_retain_messages.or(lower.board_retain_messages),
            board_retain_age: self.board_retain_age.or(lower.board_retain_age),
        }
    }
}

fn invalid(setting: &'static str, problem: String) -> ConfigError {
    ConfigError::Invalid { setting, problem }
}

/// A listener's `HOST:PORT`, with a hint for a bare port or host.
fn listen_address(setting: &'static str, value: String) -> Result<String, ConfigError> {
    if let Ok(port) = value.trim().parse::<u16>() {
        return Err(invalid(
            setting,
            format!(
                "{value:?} is a port alone: give HOST:PORT, such as 127.0.0.1:{port} (this \
                 machine only) or 0.0.0.0:{port} (every interface)"
            ),
        ));
    }
    let port = value.rsplit_once(':').map(|(_, port)| port);
    if port.is_none_or(|p| p.parse::<u16>().is_err()) {
        return Err(invalid(
            setting,
            format!("{value:?}: give HOST:PORT, such as 127.0.0.1:8080 or [::1]:8080"),
        ));
    }
    Ok(value)
}

/// The environment variable of the flag `setting` (`node-lease`:
/// `CONFAB_NODE_LEASE`).
pub fn env_name(setting: &str) -> String {
    format!("CONFAB_{}", setting.to_uppercase().replace('-', "_"))
}

/// The `CONFAB_*` variables that are set and are none of `known`, each with
/// the closest known name when there is a near one: a misspelt variable is
/// otherwise silently ignored.
pub fn unknown_env(
    set: impl Iterator<Item = String>,
    known: &[String],
) -> Vec<(String, Option<&str>)> {
    set.filter(|name| name.starts_with("CONFAB_") && !name.starts_with("CONFAB_TEST_"))
        .filter(|name| !known.contains(name))
        .map(|name| {
            let closest = known
                .iter()
                .map(|k| (edit_distance(&name, k), k.as_str()))
                .filter(|(d, _)| *d <= 3)
                .min_by_key(|(d, _)| *d)
                .map(|(_, k)| k);
            (name, closest)
        })
        .collect()
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

fn title_case(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Parses `250ms`, `10s`, `2m`, `1h`, `30d`, or a plain number of seconds.
///
/// # Errors
///
/// A message saying what was expected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 =
        number.parse().map_err(|_| format!("{text:?} is not a duration (e.g. 10s, 500ms)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        other => return Err(format!("{text:?}: unknown unit {other:?} (use ms, s, m, h or d)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// Parses a rate: `off`, or `N/UNIT` (UNIT one of s, m, h) with an
/// optional `,burst=B` (default: the larger of N and 20).
///
/// # Errors
///
/// A message saying what was expected.
pub fn parse_rate(text: &str) -> Result<Option<Rate>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let expected = || format!("{text:?} is not a rate (e.g. 10/s, 600/m,burst=40, or off)");
    let (rate, burst) = match text.split_once(',') {
        Some((rate, burst)) => {
            let burst = burst.trim().strip_prefix("burst=").ok_or_else(expected)?;
            (rate, Some(burst.trim().parse::<u32>().map_err(|_| expected())?))
        }
        None => (text, None),
    };
    let (count, unit) = rate.split_once('/').ok_or_else(expected)?;
    let count: u32 = count.trim().parse().map_err(|_| expected())?;
    let period = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(expected()),
    };
    if count == 0 || burst == Some(0) {
        return Err(format!("{text:?}: a rate must allow something; use off to disable it"));
    }
    Ok(Some(Rate::new(count, period, burst.unwrap_or(count.max(20)))))
}

#[cfg(test)]
mod tests;
