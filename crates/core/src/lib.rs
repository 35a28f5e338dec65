//! The confab hub: rooms, presence, sequence numbers, visibility,
//! de-duplication and limits.
//!
//! Nothing here knows about sockets, HTTP or SQL. An edge adapter (the
//! WebSocket handler, the long-poll routes, the TCP line protocol) opens a
//! [`Conn`] with an [`Outbox`], feeds it decoded ops, and writes out what
//! the outbox yields. Everything a chat user can observe is decided here.

pub mod audit;
pub mod backend;
mod clock;
mod config;
mod conn;
pub mod fanout;
pub mod frames;
mod hub;
pub mod ids;
pub mod integrations;
mod limits;
mod local;
pub mod metric;
mod outbox;
mod persist;
pub mod pow;
mod rates;
mod room;
mod store;

pub use audit::Audit;
pub use backend::{
    Ban, Departure, Draft, Joiner, Mute, NewRoom, REACTION_EMOJI_MAX, REACTIONS_MAX,
    REACTIONS_PER_USER_MAX, Range, ReactionLimit, Removal, RoomBackend, RoomSpec, Seat, Services,
    Since, Target, WriteSlot, reaction_refusal, toggle_reaction,
};
pub use clock::{ms_of_rfc3339, now_rfc3339, rfc3339_ago, rfc3339_of_ms, unix_ms};
pub use confab_proto::{Role, Roles};
pub use config::{BoardConfig, HubConfig, Limits, RetentionPolicy};
pub use conn::Conn;
pub use hub::Hub;
pub use limits::{name_key, validate_name};
pub use local::{LocalRooms, LocalSeat};
pub use outbox::{CloseReason, CloseSignal, Next, Outbox, OutboxReceiver};
pub use rates::{Rate, Rates};
pub use store::{
    Appended, HookEvent, Integration, MemoryStore, SiteBan, Store, StoreError, StoreFuture,
    StoredRoom, StoredVisibility, Webhook, Write,
};
