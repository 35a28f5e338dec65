//! The room backend a server runs: its own rooms, or a cluster's through
//! Redis. One enum of the two, so that dispatch stays static: every op is
//! a `match` and a direct call, nothing boxed.

use std::sync::Arc;
use std::time::Duration;

use confab_cluster::{ClusterConfig, ClusterRooms, ClusterSeat};
use confab_core::frames::not_in;
use confab_core::{
    Draft, HubConfig, Joiner, LocalRooms, LocalSeat, NewRoom, Range, RoomBackend, Seat, Services,
    Store, StoreError, Target,
};
use confab_proto::{ErrorBody, JoinResult, Message, Role, Roles, RoomInfo, User};

/// The hub of this server.
pub type Hub = confab_core::Hub<Rooms>;
/// A connection of this server.
pub type Conn = confab_core::Conn<Rooms>;

/// Where this server's rooms live.
#[derive(Clone)]
pub enum Rooms {
    /// In this process.
    Local(LocalRooms),
    /// In Redis, shared by the nodes of a cluster.
    Cluster(ClusterRooms),
}

/// A connection's place in a room of either backend. A cluster seat is
/// boxed: it is larger than a local one, and an idle connection's seats
/// are most of what it costs.
pub enum RoomSeat {
    Local(LocalSeat),
    Cluster(Box<ClusterSeat>),
}

impl Seat for RoomSeat {
    fn code(&self) -> &str {
        match self {
            RoomSeat::Local(seat) => seat.code(),
            RoomSeat::Cluster(seat) => seat.code(),
        }
    }
}

/// Opens the hub: the store's rooms here, or, with `cluster`, the
/// cluster's.
///
/// # Errors
///
/// The store or the cluster cannot be reached.
pub async fn open(
    config: HubConfig,
    store: Arc<dyn Store>,
    cluster: Option<ClusterConfig>,
) -> anyhow::Result<Hub> {
    use anyhow::Context;
    let services = Services::open(config, store).await.context("cannot open the database")?;
    let rooms = match cluster {
        None => Rooms::Local(
            LocalRooms::open(&services).await.context("cannot load rooms from the database")?,
        ),
        Some(cluster) => {
            let url = cluster.url.clone();
            let rooms = ClusterRooms::start(cluster, services.clone())
                .await
                .map_err(|e| anyhow::anyhow!("cannot join the cluster at {url}: {e}"))?;
            tracing::info!(node = services.config.node, "joined the cluster at {url}");
            Rooms::Cluster(rooms)
        }
    };
    Ok(Hub::new(services, rooms))
}

/// A hub with its rooms here, on `store`.
///
/// # Errors
///
/// The store failed.
pub async fn open_local(config: HubConfig, store: Arc<dyn Store>) -> Result<Hub, StoreError> {
    let services = Services::open(config, store).await?;
    let rooms = LocalRooms::open(&services).await?;
    Ok(Hub::new(services, Rooms::Local(rooms)))
}

/// Runs `$call` on whichever backend `$rooms` is, bound to `$backend`.
macro_rules! either {
    ($rooms:expr, $backend:ident => $call:expr) => {
        match $rooms {
            Rooms::Local($backend) => $call,
            Rooms::Cluster($backend) => $call,
        }
    };
}

/// A seat of the other backend: cannot happen (a connection's seats all
/// come from its server's one backend), answered as a room it is not in.
fn foreign(seat: &RoomSeat) -> ErrorBody {
    tracing::error!(room = seat.code(), "a seat of another backend");
    not_in(seat.code())
}

impl RoomBackend for Rooms {
    type Seat = RoomSeat;

    async fn create(&self, room: NewRoom) -> Result<RoomInfo, ErrorBody> {
        either!(self, rooms => rooms.create(room).await)
    }

    async fn join(
        &self,
        who: Joiner<'_>,
        code: &str,
        since: Option<confab_core::Since>,
        rejoin: bool,
        seated: Option<&RoomSeat>,
    ) -> Result<(RoomSeat, JoinResult), ErrorBody> {
        match self {
            Rooms::Local(rooms) => {
                let seated = match seated {
                    Some(RoomSeat::Local(seat)) => Some(seat),
                    _ => None,
                };
                let (seat, joined) = rooms.join(who, code, since, rejoin, seated).await?;
                Ok((RoomSeat::Local(seat), joined))
            }
            Rooms::Cluster(rooms) => {
                let seated = match seated {
                    Some(RoomSeat::Cluster(seat)) => Some(&**seat),
                    _ => None,
                };
                let (seat, joined) = rooms.join(who, code, since, rejoin, seated).await?;
                Ok((RoomSeat::Cluster(Box::new(seat)), joined))
            }
        }
    }

    fn activate(&self, seat: &RoomSeat, conn: u64) {
        match (self, seat) {
            (Rooms::Local(rooms), RoomSeat::Local(seat)) => rooms.activate(seat, conn),
            (Rooms::Cluster(rooms), RoomSeat::Cluster(seat)) => rooms.activate(seat, conn),
            _ => drop(foreign(seat)),
        }
    }

    async fn leave(
        &self,
        code: &str,
        seat: Option<&RoomSeat>,
        conn: u64,
        user_id: &str,
    ) -> Result<(), ErrorBody> {
        match (self, seat) {
            (Rooms::Local(rooms), None) => rooms.leave(code, None, conn, user_id).await,
            (Rooms::Local(rooms), Some(RoomSeat::Local(seat))) => {
                rooms.leave(code, Some(seat), conn, user_id).await
            }
            (Rooms::Cluster(rooms), None) => rooms.leave(code, None, conn, user_id).await,
            (Rooms::Cluster(rooms), Some(RoomSeat::Cluster(seat))) => {
                rooms.leave(code, Some(&**seat), conn, user_id).await
            }
            (_, Some(seat)) => Err(foreign(seat)),
        }
    }

    fn disconnect(&self, seat: RoomSeat, conn: u64, user_id: &str, grace: bool) {
        match (self, seat) {
            (Rooms::Local(rooms), RoomSeat::Local(seat)) => {
                rooms.disconnect(seat, conn, user_id, grace);
            }
            (Rooms::Cluster(rooms), RoomSeat::Cluster(seat)) => {
                rooms.disconnect(*seat, conn, user_id, grace);
            }
            (_, seat) => drop(foreign(&seat)),
        }
    }

    async fn post(
        &self,
        seat: &RoomSeat,
        who: Joiner<'_>,
        draft: Draft,
        reply: Option<i64>,
    ) -> Result<(), ErrorBody> {
        match (self, seat) {
            (Rooms::Local(rooms), RoomSeat::Local(seat)) => {
                rooms.post(seat, who, draft, reply).await
            }
            (Rooms::Cluster(rooms), RoomSeat::Cluster(seat)) => {
                rooms.post(seat, who, draft, reply).await
            }
            _ => Err(foreign(seat)),
        }
    }

    async fn typing(
        &self,
        seat: &RoomSeat,
        conn: u64,
        user: &User,
        active: bool,
    ) -> Result<(), ErrorBody> {
        match (self, seat) {
            (Rooms::Local(rooms), RoomSeat::Local(seat)) => {
                rooms.typing(seat, conn, user, active).await
            }
            (Rooms::Cluster(rooms), RoomSeat::Cluster(seat)) => {
                rooms.typing(seat, conn, user, active).await
            }
            _ => Err(foreign(seat)),
        }
    }

    async fn members(
        &self,
        code: &str,
        seat: Option<&RoomSeat>,
        conn: u64,
        user_id: &str,
    ) -> Result<(Vec<User>, Roles), ErrorBody> {
        match (self, seat) {
            (Rooms::Local(rooms), None) => rooms.members(code, None, conn, user_id).await,
            (Rooms::Local(rooms), Some(RoomSeat::Local(seat))) => {
                rooms.members(code, Some(seat), conn, user_id).await
            }
            (Rooms::Cluster(rooms), None) => rooms.members(code, None, conn, user_id).await,
            (Rooms::Cluster(rooms), Some(RoomSeat::Cluster(seat))) => {
                rooms.members(code, Some(&**seat), conn, user_id).await
            }
            (_, Some(seat)) => Err(foreign(seat)),
        }
    }

    async fn set_role(
        &self,
        seat: &RoomSeat,
        conn: u64,
        actor: &str,
        target: &Target,
        role: Role,
    ) -> Result<(), ErrorBody> {
        match (self, seat) {
            (Rooms::Local(rooms), RoomSeat::Local(seat)) => {
                rooms.set_role(seat, conn, actor, target, role).await
            }
            (Rooms::Cluster(rooms), RoomSeat::Cluster(seat)) => {
                rooms.set_role(seat, conn, actor, target, role).await
            }
            _ => Err(foreign(seat)),
        }
    }

    async fn lock(
        &self,
        seat: &RoomSeat,
        conn: u64,
        actor: &str,
        locked: bool,
    ) -> Result<(), ErrorBody> {
        match (self, seat) {
            (Rooms::Local(rooms), RoomSeat::Local(seat)) => {
                rooms.lock(seat, conn, actor, locked).await
            }
            (Rooms::Cluster(rooms), RoomSeat::Cluster(seat)) => {
                rooms.lock(seat, conn, actor, locked).await
            }
            _ => Err(foreign(seat)),
        }
    }

    async fn kick(
        &self,
        seat: &RoomSeat,
        conn: u64,
        actor: &str,
        target: &Target,
        removal: confab_core::Removal,
    ) -> Result<(), ErrorBody> {
        match (self, seat) {
            (Rooms::Local(rooms), RoomSeat::Local(seat)) => {
                rooms.kick(seat, conn, actor, target, removal).await
            }
            (Rooms::Cluster(rooms), RoomSeat::Cluster(seat)) => {
                rooms.kick(seat, conn, actor, target, removal).await
            }
            _ => Err(foreign(seat)),
        }
    }

    async fn unban(
        &self,
        seat: &RoomSeat,
        conn: u64,
        actor: &str,
        user_id: &str,
    ) -> Result<(), ErrorBody> {
        match (self, seat) {
            (Rooms::Local(rooms), RoomSeat::Local(seat)) => {
                rooms.unban(seat, conn, actor, user_id).await
            }
            (Rooms::Cluster(rooms), RoomSeat::Cluster(seat)) => {
                rooms.unban(seat, conn, actor, user_id).await
            }
            _ => Err(foreign(seat)),
        }
    }

    async fn bans(
        &self,
        seat: &RoomSeat,
        conn: u64,
        actor: &str,
    ) -> Result<Vec<confab_core::Ban>, ErrorBody> {
        match (self, seat) {
            (Rooms::Local(rooms), RoomSeat::Local(seat)) => rooms.bans(seat, conn, actor).await,
            (Rooms::Cluster(rooms), RoomSeat::Cluster(seat)) => rooms.bans(seat, conn, actor).await,
            _ => Err(foreign(seat)),
        }
    }

    async fn delete(
        &self,
        seat: &RoomSeat,
        conn: u64,
        actor: &str,
        message: &Message,
    ) -> Result<(), ErrorBody> {
        match (self, seat) {
            (Rooms::Local(rooms), RoomSeat::Local(seat)) => {
                rooms.delete(seat, conn, actor, message).await
            }
            (Rooms::Cluster(rooms), RoomSeat::Cluster(seat)) => {
                rooms.delete(seat, conn, actor, message).await
            }
            _ => Err(foreign(seat)),
        }
    }

    async fn edit(
        &self,
        seat: &RoomSeat,
        conn: u64,
        actor: &str,
        message: &Message,
        body: &str,
        edited: &str,
    ) -> Result<(), ErrorBody> {
        match (self, seat) {
            (Rooms::Local(rooms), RoomSeat::Local(seat)) => {
                rooms.edit(seat, conn, actor, message, body, edited).await
            }
            (Rooms::Cluster(rooms), RoomSeat::Cluster(seat)) => {
                rooms.edit(seat, conn, actor, message, body, edited).await
            }
            _ => Err(foreign(seat)),
        }
    }

    async fn react(
        &self,
        seat: &RoomSeat,
        conn: u64,
        actor: &str,
        seq: u64,
        emoji: &str,
    ) -> Result<bool, ErrorBody> {
        match (self, seat) {
            (Rooms::Local(rooms), RoomSeat::Local(seat)) => {
                rooms.react(seat, conn, actor, seq, emoji).await
            }
            (Rooms::Cluster(rooms), RoomSeat::Cluster(seat)) => {
                rooms.react(seat, conn, actor, seq, emoji).await
            }
            _ => Err(foreign(seat)),
        }
    }

    async fn mute(
        &self,
        seat: &RoomSeat,
        conn: u64,
        actor: &str,
        target: &Target,
        mute: Option<Option<Duration>>,
        shadow: bool,
    ) -> Result<(), ErrorBody> {
        match (self, seat) {
            (Rooms::Local(rooms), RoomSeat::Local(seat)) => {
                rooms.mute(seat, conn, actor, target, mute, shadow).await
            }
            (Rooms::Cluster(rooms), RoomSeat::Cluster(seat)) => {
                rooms.mute(seat, conn, actor, target, mute, shadow).await
            }
            _ => Err(foreign(seat)),
        }
    }

    async fn mutes(
        &self,
        seat: &RoomSeat,
        conn: u64,
        actor: &str,
    ) -> Result<Vec<confab_core::Mute>, ErrorBody> {
        match (self, seat) {
            (Rooms::Local(rooms), RoomSeat::Local(seat)) => rooms.mutes(seat, conn, actor).await,
            (Rooms::Cluster(rooms), RoomSeat::Cluster(seat)) => {
                rooms.mutes(seat, conn, actor).await
            }
            _ => Err(foreign(seat)),
        }
    }

    async fn slow(
        &self,
        seat: &RoomSeat,
        conn: u64,
        actor: &str,
        seconds: u32,
    ) -> Result<(), ErrorBody> {
        match (self, seat) {
            (Rooms::Local(rooms), RoomSeat::Local(seat)) => {
                rooms.slow(seat, conn, actor, seconds).await
            }
            (Rooms::Cluster(rooms), RoomSeat::Cluster(seat)) => {
                rooms.slow(seat, conn, actor, seconds).await
            }
            _ => Err(foreign(seat)),
        }
    }

    async fn retitle(
        &self,
        seat: &RoomSeat,
        conn: u64,
        actor: &str,
        title: &str,
    ) -> Result<(), ErrorBody> {
        match (self, seat) {
            (Rooms::Local(rooms), RoomSeat::Local(seat)) => {
                rooms.retitle(seat, conn, actor, title).await
            }
            (Rooms::Cluster(rooms), RoomSeat::Cluster(seat)) => {
                rooms.retitle(seat, conn, actor, title).await
            }
            _ => Err(foreign(seat)),
        }
    }

    async fn read(
        &self,
        seat: &RoomSeat,
        conn: u64,
        user_id: &str,
        range: Range,
    ) -> Result<Vec<Message>, ErrorBody> {
        match (self, seat) {
            (Rooms::Local(rooms), RoomSeat::Local(seat)) => {
                rooms.read(seat, conn, user_id, range).await
            }
            (Rooms::Cluster(rooms), RoomSeat::Cluster(seat)) => {
                rooms.read(seat, conn, user_id, range).await
            }
            _ => Err(foreign(seat)),
        }
    }

    async fn public_rooms(&self) -> Result<Vec<(bool, RoomInfo)>, ErrorBody> {
        either!(self, rooms => rooms.public_rooms().await)
    }

    async fn all_rooms(&self) -> Result<Vec<(bool, RoomInfo)>, ErrorBody> {
        either!(self, rooms => rooms.all_rooms().await)
    }

    async fn room_members(&self, code: &str) -> Result<(Vec<User>, Roles), ErrorBody> {
        either!(self, rooms => rooms.room_members(code).await)
    }

    async fn close_room(&self, code: &str) -> Result<(), ErrorBody> {
        either!(self, rooms => rooms.close_room(code).await)
    }

    async fn announce(&self, text: &str) -> Result<usize, ErrorBody> {
        either!(self, rooms => rooms.announce(text).await)
    }

    async fn grant(&self, code: &str, target: &Target, role: Role) -> Result<(), ErrorBody> {
        either!(self, rooms => rooms.grant(code, target, role).await)
    }

    async fn purge(&self, user_id: &str) -> Result<(), ErrorBody> {
        either!(self, rooms => rooms.purge(user_id).await)
    }

    fn room_count(&self) -> usize {
        either!(self, rooms => rooms.room_count())
    }

    fn healthy(&self) -> Option<bool> {
        either!(self, rooms => rooms.healthy())
    }

    fn sessions_shared(&self) -> bool {
        either!(self, rooms => rooms.sessions_shared())
    }

    fn prune(&self, boards: bool, keep: Option<u64>, cutoff: Option<&str>) {
        either!(self, rooms => rooms.prune(boards, keep, cutoff));
    }

    fn shutdown(&self) {
        either!(self, rooms => rooms.shutdown());
    }

    async fn settle(&self, limit: Duration) {
        either!(self, rooms => rooms.settle(limit).await);
    }
}
