use std::time::Duration;

use crate::Rates;

/// Size limits, applied equally to every transport.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes in one client frame (a WebSocket message, a long-poll body, a line).
    pub frame_bytes: usize,
    /// Characters in a message body.
    pub body_chars: usize,
    /// Characters in a subject.
    pub subject_chars: usize,
    /// Characters in a display name.
    pub name_chars: usize,
    /// Characters in a room title.
    pub title_chars: usize,
    /// Characters in a client message id (`cid`).
    pub cid_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            frame_bytes: 64 * 1024,
            body_chars: 4000,
            subject_chars: 120,
            name_chars: 32,
            title_chars: 80,
            cid_chars: 64,
        }
    }
}

/// A board: a room with a fixed name that always exists.
#[derive(Debug, Clone)]
pub struct BoardConfig {
    pub name: String,
    pub title: String,
    pub backlog: u32,
}

/// How long stored messages are kept. `None` keeps everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetentionPolicy {
    /// The newest messages kept per room.
    pub keep: Option<u64>,
    /// The oldest a message may be.
    pub max_age: Option<Duration>,
}

impl RetentionPolicy {
    pub fn is_off(&self) -> bool {
        self.keep.is_none() && self.max_age.is_none()
    }
}

/// Everything the hub needs to know. The server fills it from flags,
/// environment and the config file.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Name of this node, reported by `hello`.
    pub node: String,
    /// How long a dropped member keeps their seat.
    pub grace: Duration,
    /// Boards created at start.
    pub boards: Vec<BoardConfig>,
    /// Default `backlog` of created rooms.
    pub room_backlog: u32,
    /// Largest `capacity` a room may ask for; also the capacity of rooms
    /// created with `capacity: null`.
    pub max_capacity: u32,
    /// Messages each room keeps in memory. For an ephemeral room this is
    /// all it has; older messages are gone (a resume then reports a gap).
    pub room_window: usize,
    /// Most messages returned by one `join` with `since`; beyond it the
    /// newest are returned and `gap` is true.
    pub resume_limit: usize,
    /// A created room that nobody joins within this time is destroyed.
    pub unjoined_room_ttl: Duration,
    /// Length of generated room codes.
    pub code_len: usize,
    /// Remembered `cid`s per room, for de-duplication of retried posts.
    pub dedup_window: usize,
    pub limits: Limits,
    /// Pruning of created persistent rooms.
    pub room_retention: RetentionPolicy,
    /// Pruning of boards (off by default).
    pub board_retention: RetentionPolicy,
    /// How often pruning runs.
    pub prune_every: Duration,
    /// Per-user rate limits.
    pub rates: Rates,
    /// Rooms one connection may be in at once; also the most codes a
    /// `hello` may name to resume.
    pub max_rooms_per_conn: usize,
    /// Where reports (and later operators' actions) are recorded.
    pub audit: crate::Audit,
    /// How long after posting its author may edit a message (zero: never).
    pub edit_window: Duration,
    /// Whether webhooks may go to private, loopback and link-local
    /// addresses (off: a room's owner could make the server reach inside
    /// its network).
    pub webhooks_private: bool,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            node: "local".into(),
            grace: Duration::from_secs(10),
            boards: vec![BoardConfig {
                name: "main".into(),
                title: "Main board".into(),
                backlog: 2,
            }],
            room_backlog: 50,
            max_capacity: 1000,
            room_window: 1000,
            resume_limit: 1000,
            unjoined_room_ttl: Duration::from_secs(600),
            code_len: 6,
            dedup_window: 1024,
            limits: Limits::default(),
            room_retention: RetentionPolicy::default(),
            board_retention: RetentionPolicy::default(),
            prune_every: Duration::from_secs(60),
            rates: Rates::default(),
            max_rooms_per_conn: 100,
            audit: crate::Audit::default(),
            edit_window: Duration::from_secs(15 * 60),
            webhooks_private: false,
        }
    }
}
