//! Wire types of the confab protocol, version 1.
//!
//! This crate is the contract between the server and every client: the
//! client ops ([`ClientOp`]), the server pushes ([`Event`]), replies
//! ([`Reply`]), and the shared data types ([`Message`], [`RoomInfo`],
//! [`User`], [`ErrorCode`]). It does no I/O.

mod frame;
mod types;

pub use frame::{ClientOp, FrameError, Request, ResumePoint, parse_request};
pub use types::{
    BanInfo, Challenge, ErrorBody, ErrorCode, Event, IntegrationInfo, JoinResult, LeaveReason,
    Message, MuteInfo, Pow, QUOTE_CHARS, Quote, Reaction, Reply, Retention, Role, Roles, RoomInfo,
    ServerInfo, User,
};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;
