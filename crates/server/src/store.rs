//! SQL storage for persistent rooms: SQLite (embedded, the default) and
//! PostgreSQL, through one implementation of [`confab_core::Store`] over
//! sqlx's `Any` driver. The SQL is the subset both engines speak; each has
//! its own embedded migrations, applied at start.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use confab_core::{
    Appended, RoomSpec, Store, StoreError, StoreFuture, StoredRoom, StoredVisibility, Write,
};
use confab_proto::Retention;
use confab_proto::{Message, User};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Connection, Executor, Row};

/// The columns of a message, in the order [`message`] reads them.
const MESSAGE_COLUMNS: &str = "room, seq, user_id, user_name, subject, body, ts, cid";
/// What a read of messages selects: the columns written, whether the
/// message was deleted since, and whether it is a shadow-muted member's.
const READ_COLUMNS: &str = "room, seq, user_id, user_name, subject, body, ts, cid, deleted, shadow, edited, reply, reactions, bot";

/// Rows per multi-row `INSERT` (8 parameters each, well below both
/// engines' parameter limits).
const INSERT_CHUNK: usize = 256;

/// Records a session, or updates its name.
const SAVE_SESSION: &str = "INSERT INTO sessions (token, user_id, name) VALUES ($1, $2, $3) \
     ON CONFLICT (token) DO UPDATE SET name = excluded.name";

/// `INSERT INTO messages … VALUES (…), (…), …` for `rows` rows.
///
/// PostgreSQL needs numbered parameters (`$1`, `$2`, …). SQLite gets
/// anonymous ones (`?`): it treats `$1` as a *named* parameter, and sqlx
/// looks each one's name up by position, which SQLite answers by walking
/// the list of names, so binding n numbered parameters costs O(n²). With
/// 2,048 parameters a statement, that walk was a third of the server's CPU
/// under a load of persistent posts.
fn insert_messages(rows: usize, sqlite: bool) -> sqlx::AssertSqlSafe<String> {
    let mut sql = format!("INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        let params: Vec<String> = (1..=8)
            .map(|i| if sqlite { "?".to_owned() } else { format!("${}", row * 8 + i) })
            .collect();
        sql.push('(');
        sql.push_str(&params.join(", "));
        sql.push(')');
    }
    sqlx::AssertSqlSafe(sql)
}

/// Inserts messages many rows per statement: one round trip to the
/// database per chunk instead of per message.
async fn insert_all(
    conn: &mut AnyConnection,
    messages: &[&Message],
    sqlite: bool,
) -> Result<(), sqlx::Error> {
    for chunk in messages.chunks(INSERT_CHUNK) {
        let mut query = sqlx::query(insert_messages(chunk.len(), sqlite));
        for m in chunk {
            query = query
                .bind(&m.room)
                .bind(int(m.seq))
                .bind(&m.from.id)
                .bind(&m.from.name)
                .bind(m.subject.as_deref())
                .bind(&m.body)
                .bind(&m.ts)
                .bind(m.cid.as_deref());
        }
        query.execute(&mut *conn).await?;
    }
    // A shadow-muted member's message is rare: marked by a statement of
    // its own, in the same transaction.
    for m in messages.iter().filter(|m| m.shadow) {
        sqlx::query("UPDATE messages SET shadow = 1 WHERE room = $1 AND seq = $2")
            .bind(&m.room)
            .bind(int(m.seq))
            .execute(&mut *conn)
            .await?;
    }
    // So is a bot's.
    for m in messages.iter().filter(|m| m.bot) {
        sqlx::query("UPDATE messages SET bot = 1 WHERE room = $1 AND seq = $2")
            .bind(&m.room)
            .bind(int(m.seq))
            .execute(&mut *conn)
            .await?;
    }
    // So is a reply, in a chat of people (not of a load test).
    for m in messages.iter() {
        let Some(quote) = &m.reply else { continue };
        let json = serde_json::to_string(quote).expect("quotes serialize");
        sqlx::query("UPDATE messages SET reply = $1, reply_seq = $2 WHERE room = $3 AND seq = $4")
            .bind(json)
            .bind(int(quote.seq))
            .bind(&m.room)
            .bind(int(m.seq))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The newest message `user_id` posted to `room` with `cid` after `after`,
/// if there is one.
async fn stored_by_cid(
    conn: &mut AnyConnection,
    room: &str,
    after: u64,
    user_id: &str,
    cid: &str,
) -> Result<Option<Message>, StoreError> {
    let query = sqlx::AssertSqlSafe(format!(
        "SELECT {READ_COLUMNS} FROM messages \
         WHERE room = $1 AND user_id = $2 AND cid = $3 AND seq > $4 ORDER BY seq DESC LIMIT 1"
    ));
    let row = sqlx::query(query)
        .bind(room)
        .bind(user_id)
        .bind(cid)
        .bind(int(after))
        .fetch_optional(&mut *conn)
        .await
        .map_err(error)?;
    row.as_ref().map(message).transpose().map_err(error)
}

/// A store in a SQL database.
pub struct SqlStore {
    pool: AnyPool,
    /// Whether the database is SQLite (else PostgreSQL).
    sqlite: bool,
    /// The webhooks by room and the events each wants, as last read: the
    /// writes queue events for them (read again every few seconds, so a
    /// webhook made on another node is seen soon).
    hooks: parking_lot::Mutex<HookIndex>,
}

#[derive(Default)]
struct HookIndex {
    read: Option<std::time::Instant>,
    by_room: HashMap<String, Vec<(String, Vec<String>)>>,
}

/// How long the webhook index is trusted.
const HOOK_INDEX_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// The webhooks of `room` that want `kind`.
fn hooks_for<'a>(
    index: &'a HashMap<String, Vec<(String, Vec<String>)>>,
    room: &str,
    kind: &str,
) -> Vec<&'a str> {
    index
        .get(room)
        .map(|hooks| {
            hooks
                .iter()
                .filter(|(_, events)| events.iter().any(|e| e == kind))
                .map(|(id, _)| id.as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// Queues `kind` of `room` with `data` for each webhook in `hooks`.
async fn queue_hook_event(
    conn: &mut AnyConnection,
    hooks: &[&str],
    room: &str,
    kind: &str,
    data: &str,
) -> Result<(), sqlx::Error> {
    if hooks.is_empty() {
        return Ok(());
    }
    let now = confab_core::unix_ms();
    let body = format!(
        "{{\"type\":{},\"timestamp\":\"{}\",\"room\":{},\"data\":{data}}}",
        serde_json::Value::from(kind),
        confab_core::rfc3339_of_ms(now),
        serde_json::Value::from(room),
    );
    for hook in hooks {
        sqlx::query("INSERT INTO hook_events (hook, body, created_ms, attempts, next_ms) VALUES ($1, $2, $3, 0, 0)")
            .bind(*hook)
            .bind(&body)
            .bind(int(now))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The events a batch of writes makes, for the webhooks that want them:
/// `(room, kind, data JSON)`. A shadow-muted member's messages are nobody
/// else's, webhooks' included.
fn batch_events<'a>(
    index: &HashMap<String, Vec<(String, Vec<String>)>>,
    batch: impl Iterator<Item = &'a Write>,
) -> Vec<(String, &'static str, String)> {
    let mut events = Vec::new();
    for write in batch {
        let (room, kind, data) = match write {
            Write::Message(m) if !m.shadow => {
                (&m.room, "message.created", serde_json::to_string(&**m))
            }
            Write::Amend { room, message, .. } if !message.shadow => {
                (room, "message.updated", serde_json::to_string(&**message))
            }
            Write::Delete { room, seq, .. } => {
                (room, "message.deleted", Ok(format!("{{\"seq\":{seq}}}")))
            }
            Write::Visibility { room, user_id, visibility } => {
                let kind =
                    if visibility.left_at.is_none() { "member.joined" } else { "member.left" };
                (room, kind, Ok(serde_json::json!({ "user_id": user_id }).to_string()))
            }
            _ => continue,
        };
        if index.contains_key(room.as_str())
            && let Ok(data) = data
        {
            events.push((room.clone(), kind, data));
        }
    }
    events
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("database {name}: {problem}")]
pub struct OpenError {
    name: String,
    problem: String,
}

impl SqlStore {
    /// One attempt at a batch, in one transaction. Rows are written in
    /// key order: messages, then visibility by room and user, sessions by
    /// token, and rooms' latest `seq` by code.
    async fn write_once(&self, batch: &[Write]) -> Result<(), sqlx::Error> {
        {
            let mut tx = self.pool.begin().await?;
            let mut last_seqs: Vec<(&str, u64)> = Vec::new();
            let new_messages: Vec<&Message> = batch
                .iter()
                .filter_map(|w| match w {
                    Write::Message(m) => Some(&**m),
                    Write::Visibility { .. }
                    | Write::Session { .. }
                    | Write::Roles { .. }
                    | Write::Locked { .. }
                    | Write::Ban { .. }
                    | Write::Unban { .. }
                    | Write::Title { .. }
                    | Write::Slow { .. }
                    | Write::Delete { .. }
                    | Write::Amend { .. }
                    | Write::Rev { .. } => None,
                })
                .collect();
            for m in &new_messages {
                match last_seqs.iter_mut().find(|(room, _)| *room == m.room) {
                    Some((_, seq)) => *seq = (*seq).max(m.seq),
                    None => last_seqs.push((&m.room, m.seq)),
                }
            }
            insert_all(&mut tx, &new_messages, self.sqlite).await?;
            let mut ordered: Vec<&Write> =
                batch.iter().filter(|w| !matches!(w, Write::Message(_))).collect();
            ordered.sort_by(|a, b| write_key(a).cmp(&write_key(b)));
            last_seqs.sort_unstable();
            for write in ordered {
                match write {
                    Write::Visibility { room, user_id, visibility } => {
                        sqlx::query(
                            "INSERT INTO visibility (room, user_id, from_seq, left_at) \
                             VALUES ($1, $2, $3, $4) ON CONFLICT (room, user_id) DO UPDATE \
                             SET from_seq = excluded.from_seq, left_at = excluded.left_at",
                        )
                        .bind(room)
                        .bind(user_id)
                        .bind(int(visibility.from))
                        .bind(visibility.left_at.map(int))
                        .execute(&mut *tx)
                        .await?;
                    }
                    Write::Session { token, user } => {
                        sqlx::query(SAVE_SESSION)
                            .bind(token)
                            .bind(&user.id)
                            .bind(&user.name)
                            .execute(&mut *tx)
                            .await?;
                    }
                    Write::Roles { room, roles } => {
                        sqlx::query("DELETE FROM room_roles WHERE room = $1")
                            .bind(room)
                            .execute(&mut *tx)
                            .await?;
                        insert_roles(&mut tx, room, roles).await?;
                    }
                    Write::Locked { room, locked } => {
                        sqlx::query("UPDATE rooms SET locked = $1 WHERE code = $2")
                            .bind(i64::from(*locked))
                            .bind(room)
                            .execute(&mut *tx)
                            .await?;
                    }
                    Write::Ban { room, ban } => {
                        let json = serde_json::to_string(ban).expect("bans serialize");
                        sqlx::query(
                            "INSERT INTO room_bans (room, user_id, ban) VALUES ($1, $2, $3) \
                             ON CONFLICT (room, user_id) DO UPDATE SET ban = excluded.ban",
                        )
                        .bind(room)
                        .bind(&ban.user.id)
                        .bind(json)
                        .execute(&mut *tx)
                        .await?;
                    }
                    Write::Unban { room, user_id } => {
                        sqlx::query("DELETE FROM room_bans WHERE room = $1 AND user_id = $2")
                            .bind(room)
                            .bind(user_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    Write::Rev { room, rev } => {
                        sqlx::query("UPDATE rooms SET rev = $1 WHERE code = $2 AND rev < $1")
                            .bind(int(*rev))
                            .bind(room)
                            .execute(&mut *tx)
                            .await?;
                    }
                    Write::Delete { room, seq, quote, rev } => {
                        if let Some(rev) = rev {
                            sqlx::query("UPDATE rooms SET rev = $1 WHERE code = $2 AND rev < $1")
                                .bind(int(*rev))
                                .bind(room)
                                .execute(&mut *tx)
                                .await?;
                        }
                        sqlx::query(
                            "UPDATE messages SET body = '', subject = NULL, deleted = 1, \
                             edited = NULL, reactions = NULL, reply = NULL, reply_seq = NULL \
                             WHERE room = $1 AND seq = $2",
                        )
                        .bind(room)
                        .bind(int(*seq))
                        .execute(&mut *tx)
                        .await?;
                        let quote = serde_json::to_string(quote).expect("quotes serialize");
                        sqlx::query(
                            "UPDATE messages SET reply = $1 WHERE room = $2 AND reply_seq = $3",
                        )
                        .bind(quote)
                        .bind(room)
                        .bind(int(*seq))
                        .execute(&mut *tx)
                        .await?;
                    }
                    Write::Amend { room, message, rev } => {
                        let reactions = (!message.reactions.is_empty()).then(|| {
                            serde_json::to_string(&message.reactions).expect("reactions serialize")
                        });
                        sqlx::query(
                            "UPDATE messages SET body = $1, edited = $2, reactions = $3, rev = $4 \
                             WHERE room = $5 AND seq = $6 AND deleted = 0 AND rev < $4",
                        )
                        .bind(&message.body)
                        .bind(message.edited.as_deref())
                        .bind(reactions)
                        .bind(int(*rev))
                        .bind(room)
                        .bind(int(message.seq))
                        .execute(&mut *tx)
                        .await?;
                        sqlx::query("UPDATE rooms SET rev = $1 WHERE code = $2 AND rev < $1")
                            .bind(int(*rev))
                            .bind(room)
                            .execute(&mut *tx)
                            .await?;
                    }
                    Write::Title { room, title } => {
                        sqlx::query("UPDATE rooms SET title = $1 WHERE code = $2")
                            .bind(title)
                            .bind(room)
                            .execute(&mut *tx)
                            .await?;
                    }
                    Write::Slow { room, seconds } => {
                        sqlx::query("UPDATE rooms SET slow = $1 WHERE code = $2")
                            .bind(i64::from(*seconds))
                            .bind(room)
                            .execute(&mut *tx)
                            .await?;
                    }
                    Write::Message(_) => {}
                }
            }
            for (room, seq) in last_seqs {
                sqlx::query("UPDATE rooms SET last_seq = $1 WHERE code = $2")
                    .bind(int(seq))
                    .bind(room)
                    .execute(&mut *tx)
                    .await?;
            }
            let index = self.hook_index().await?;
            if !index.is_empty() {
                for (room, kind, data) in batch_events(&index, batch.iter()) {
                    let hooks = hooks_for(&index, &room, kind);
                    queue_hook_event(&mut tx, &hooks, &room, kind, &data).await?;
                }
            }
            tx.commit().await
        }
    }

    /// The webhooks by room, read again when the last reading is older
    /// than [`HOOK_INDEX_TTL`].
    async fn hook_index(&self) -> Result<HashMap<String, Vec<(String, Vec<String>)>>, sqlx::Error> {
        {
            let index = self.hooks.lock();
            if index.read.is_some_and(|at| at.elapsed() < HOOK_INDEX_TTL) {
                return Ok(index.by_room.clone());
            }
        }
        let rows =
            sqlx::query("SELECT id, room, events FROM webhooks").fetch_all(&self.pool).await?;
        let mut by_room: HashMap<String, Vec<(String, Vec<String>)>> = HashMap::new();
        for row in &rows {
            let events: String = row.try_get("events")?;
            let events = events.split(',').map(str::to_owned).collect();
            by_room.entry(row.try_get("room")?).or_default().push((row.try_get("id")?, events));
        }
        let mut index = self.hooks.lock();
        *index = HookIndex { read: Some(std::time::Instant::now()), by_room: by_room.clone() };
        Ok(by_room)
    }

    fn forget_hook_index(&self) {
        self.hooks.lock().read = None;
    }

    /// Opens the database at `url` (or `DATA/confab.db` when `url` is
    /// `None`), creating a new SQLite file if there is none, and applies
    /// the migrations. An existing file that is not a confab database is
    /// refused, never overwritten.
    ///
    /// # Errors
    ///
    /// The database cannot be reached, read or migrated; the error names it.
    pub async fn open(url: Option<&str>, data: &Path) -> Result<SqlStore, OpenError> {
        sqlx::any::install_default_drivers();
        // The default file's directory is created; a path given in
        // `--database` must be in a directory that exists (a typo there
        // should not scatter databases around).
        let (url, name, sqlite, create_dir) = match url {
            Some(url) if url.starts_with("postgres") => (url.to_owned(), redact(url), false, false),
            Some(url) => {
                let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
                (format!("sqlite://{path}?mode=rwc"), path.to_owned(), true, false)
            }
            None => {
                // Shown absolute: a relative --data depends on where the
                // server was started.
                let path = std::path::absolute(data.join("confab.db"))
                    .unwrap_or_else(|_| data.join("confab.db"));
                let shown = path.display().to_string();
                (format!("sqlite://{shown}?mode=rwc"), shown, true, true)
            }
        };
        let fail = |problem: String| OpenError { name: name.clone(), problem };
        if sqlite && let Some(dir) = Path::new(&name).parent().filter(|d| !d.as_os_str().is_empty())
        {
            if create_dir {
                std::fs::create_dir_all(dir)
                    .map_err(|e| fail(format!("cannot create {}: {}", dir.display(), plain(&e))))?;
            } else if !dir.is_dir() {
                return Err(fail(format!(
                    "directory {} does not exist: create it, or give another path",
                    dir.display()
                )));
            }
            // A file that cannot be opened for writing is said plainly,
            // rather than as SQLite's "unable to open database file".
            if let Err(e) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&name)
            {
                return Err(fail(format!("cannot open {name}: {}", plain(&e))));
            }
        }
        if sqlite {
            // One plain connection first, so that a file that is not a
            // database is reported as such rather than as a pool time-out.
            let mut probe = AnyConnection::connect(&url).await.map_err(|e| fail(e.to_string()))?;
            probe
                .execute("SELECT count(*) FROM sqlite_master")
                .await
                .map_err(|e| fail(e.to_string()))?;
            probe.close().await.map_err(|e| fail(e.to_string()))?;
        }
        let options = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(2))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // WAL lets readers run beside the writer; FULL makes a
                        // commit durable (fsync) before it returns. A multi-row
                        // INSERT keeps a statement journal: in memory, not in a
                        // temporary file. A page cache of 16 MiB keeps the
                        // pages that posts to many rooms touch. What is deleted
                        // (a deleted message's text, pruned messages) is
                        // overwritten with zeros, not left in free space.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA busy_timeout = 5000; PRAGMA temp_store = MEMORY; \
                             PRAGMA cache_size = -16384; PRAGMA secure_delete = ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            });
        let pool = options.connect(&url).await.map_err(|e| fail(e.to_string()))?;
        let migrator = if sqlite {
            sqlx::migrate!("migrations/sqlite")
        } else {
            sqlx::migrate!("migrations/postgres")
        };
        migrator.run(&pool).await.map_err(|e| fail(describe(&e)))?;
        tracing::info!("database {name} ready");
        Ok(SqlStore { pool, sqlite, hooks: parking_lot::Mutex::new(HookIndex::default()) })
    }

    pub fn into_store(self) -> Arc<dyn Store> {
        Arc::new(self)
    }
}

/// An I/O error as a person reads it: "permission denied", not "Permission
/// denied (os error 13)".
fn plain(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        std::io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        std::io::ErrorKind::ReadOnlyFilesystem => "the file system is read-only".to_owned(),
        _ => error.to_string(),
    }
}

/// A migration error, with the cause a person can act on.
fn describe(error: &sqlx::migrate::MigrateError) -> String {
    match error {
        sqlx::migrate::MigrateError::Execute(e) => e.to_string(),
        other => other.to_string(),
    }
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn error(e: sqlx::Error) -> StoreError {
    StoreError::new(e)
}

/// A failure that trying the same transaction again may not meet: a
/// deadlock, a serialization failure, a busy SQLite file.
fn retryable(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|e| e.code())
        // PostgreSQL's deadlock and serialization failure; SQLite's busy
        // and locked, with their extended codes.
        .is_some_and(|code| {
            matches!(code.as_ref(), "40P01" | "40001" | "5" | "6" | "261" | "262" | "517" | "773")
        })
}

/// The order a batch's writes other than messages are applied in.
fn write_key(write: &Write) -> (u8, &str, &str) {
    match write {
        Write::Message(m) => (0, &m.room, ""),
        Write::Visibility { room, user_id, .. } => (1, room, user_id),
        Write::Session { token, .. } => (2, token, ""),
        Write::Roles { room, .. } => (3, room, ""),
        Write::Locked { room, .. } => (4, room, ""),
        Write::Ban { room, ban } => (5, room, &ban.user.id),
        Write::Unban { room, user_id } => (5, room, user_id),
        Write::Title { room, .. } => (6, room, ""),
        Write::Slow { room, .. } => (7, room, ""),
        Write::Delete { room, .. } => (8, room, ""),
        Write::Amend { room, .. } => (9, room, ""),
        Write::Rev { room, .. } => (10, room, ""),
    }
}

/// Inserts `roles` of `room` (none of them stored yet).
async fn insert_roles(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    room: &str,
    roles: &confab_core::Roles,
) -> Result<(), sqlx::Error> {
    for (user_id, role) in roles {
        sqlx::query("INSERT INTO room_roles (room, user_id, role) VALUES ($1, $2, $3)")
            .bind(room)
            .bind(user_id)
            .bind(role.as_str())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn uint(row: &AnyRow, column: &str) -> Result<u64, sqlx::Error> {
    Ok(u64::try_from(row.try_get::<i64, _>(column)?).unwrap_or(0))
}

fn message(row: &AnyRow) -> Result<Message, sqlx::Error> {
    Ok(Message {
        bot: row.try_get::<i64, _>("bot")? != 0,
        room: row.try_get("room")?,
        seq: uint(row, "seq")?,
        from: User { id: row.try_get("user_id")?, name: row.try_get("user_name")? },
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        ts: row.try_get("ts")?,
        cid: row.try_get("cid")?,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
        shadow: row.try_get::<i64, _>("shadow")? != 0,
        edited: row.try_get("edited")?,
        reply: json_column(row, "reply")?,
        reactions: json_column(row, "reactions")?.unwrap_or_default(),
    })
}

/// A column of JSON, `None` when null (or, logged, when it cannot be read).
fn json_column<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    column: &str,
) -> Result<Option<T>, sqlx::Error> {
    let Some(text) = row.try_get::<Option<String>, _>(column)? else { return Ok(None) };
    match serde_json::from_str(&text) {
        Ok(value) => Ok(Some(value)),
        Err(e) => {
            tracing::warn!("a stored {column} that cannot be read: {e}");
            Ok(None)
        }
    }
}

fn messages(rows: &[AnyRow]) -> Result<Vec<Message>, StoreError> {
    rows.iter().map(message).collect::<Result<_, _>>().map_err(error)
}

impl SqlStore {
    /// A deleted message's old text is still in SQLite's write-ahead log:
    /// it goes into the file (whose freed space is zeroed) and the log is
    /// emptied. Best effort: a reader holding an old snapshot leaves it to
    /// the next checkpoint. (PostgreSQL's old row versions go at its next
    /// vacuum.)
    async fn forget_deleted(&self) {
        if !self.sqlite {
            return;
        }
        let checkpoint = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)");
        match checkpoint.fetch_one(&self.pool).await {
            Ok(row) if row.try_get::<i64, _>(0).is_ok_and(|busy| busy != 0) => {
                tracing::debug!("the checkpoint after a delete waits for readers");
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("the checkpoint after a delete failed: {e}"),
        }
    }
}

impl Store for SqlStore {
    fn session<'a>(&'a self, token: &'a str) -> StoreFuture<'a, Option<User>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT user_id, name FROM sessions WHERE token = $1")
                .bind(token)
                .fetch_optional(&self.pool)
                .await
                .map_err(error)?;
            row.map(|row| Ok(User { id: row.try_get("user_id")?, name: row.try_get("name")? }))
                .transpose()
                .map_err(error)
        })
    }

    fn save_session<'a>(&'a self, token: &'a str, user: &'a User) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(SAVE_SESSION)
                .bind(token)
                .bind(&user.id)
                .bind(&user.name)
                .execute(&self.pool)
                .await
                .map_err(error)?;
            Ok(())
        })
    }

    fn rooms(&self) -> StoreFuture<'_, Vec<StoredRoom>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT code, title, capacity, backlog, public, board, created, last_seq, locked, slow, rev \
                 FROM rooms ORDER BY created",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(error)?;
            let role_rows = sqlx::query("SELECT room, user_id, role FROM room_roles")
                .fetch_all(&self.pool)
                .await
                .map_err(error)?;
            let mut roles: HashMap<String, confab_core::Roles> = HashMap::new();
            for row in &role_rows {
                let room: String = row.try_get("room").map_err(error)?;
                let user_id: String = row.try_get("user_id").map_err(error)?;
                let role: String = row.try_get("role").map_err(error)?;
                if let Some(role) = confab_proto::Role::parse(&role) {
                    roles.entry(room).or_default().insert(user_id, role);
                }
            }
            let ban_rows = sqlx::query("SELECT room, ban FROM room_bans")
                .fetch_all(&self.pool)
                .await
                .map_err(error)?;
            let mut bans: HashMap<String, Vec<confab_core::Ban>> = HashMap::new();
            for row in &ban_rows {
                let room: String = row.try_get("room").map_err(error)?;
                let json: String = row.try_get("ban").map_err(error)?;
                match serde_json::from_str(&json) {
                    Ok(ban) => bans.entry(room).or_default().push(ban),
                    Err(e) => tracing::warn!(room, "a stored ban that cannot be read: {e}"),
                }
            }
            let room = |row: &AnyRow| -> Result<StoredRoom, sqlx::Error> {
                Ok(StoredRoom {
                    spec: RoomSpec {
                        code: row.try_get("code")?,
                        title: row.try_get("title")?,
                        capacity: row
                            .try_get::<Option<i64>, _>("capacity")?
                            .and_then(|c| u32::try_from(c).ok()),
                        retention: Retention::Persistent,
                        backlog: u32::try_from(row.try_get::<i64, _>("backlog")?).unwrap_or(0),
                        public: row.try_get::<i64, _>("public")? != 0,
                        board: row.try_get::<i64, _>("board")? != 0,
                        created: row.try_get("created")?,
                    },
                    last_seq: uint(row, "last_seq")?,
                    roles: roles.remove(&row.try_get::<String, _>("code")?).unwrap_or_default(),
                    locked: row.try_get::<i64, _>("locked")? != 0,
                    bans: bans.remove(&row.try_get::<String, _>("code")?).unwrap_or_default(),
                    slow: u32::try_from(row.try_get::<i64, _>("slow")?).unwrap_or(0),
                    rev: uint(row, "rev")?,
                })
            };
            rows.iter().map(room).collect::<Result<_, _>>().map_err(error)
        })
    }

    fn save_room<'a>(&'a self, stored: &'a StoredRoom) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let room = &stored.spec;
            let query = if room.board {
                "INSERT INTO rooms (code, title, capacity, backlog, public, board, created) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (code) DO UPDATE SET title = excluded.title, backlog = excluded.backlog"
            } else {
                "INSERT INTO rooms (code, title, capacity, backlog, public, board, created) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)"
            };
            sqlx::query(query)
                .bind(&room.code)
                .bind(&room.title)
                .bind(room.capacity.map(i64::from))
                .bind(i64::from(room.backlog))
                .bind(i64::from(room.public))
                .bind(i64::from(room.board))
                .bind(&room.created)
                .execute(&self.pool)
                .await
                .map_err(error)?;
            if !stored.roles.is_empty() {
                let mut tx = self.pool.begin().await.map_err(error)?;
                insert_roles(&mut tx, &room.code, &stored.roles).await.map_err(error)?;
                tx.commit().await.map_err(error)?;
            }
            Ok(())
        })
    }

    fn write<'a>(&'a self, batch: &'a [Write]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            // Every transaction takes its rows in one order (see
            // `write_once`), so nodes writing overlapping batches into one
            // database do not deadlock; if the database still reports a
            // deadlock or a serialization failure, the batch is tried again
            // rather than failed (a failed batch marks the store down).
            let mut attempt = 0;
            loop {
                match self.write_once(batch).await {
                    Err(e) if attempt < 3 && retryable(&e) => {
                        attempt += 1;
                        tracing::debug!("storage write retried ({attempt}): {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(5 * attempt)).await;
                    }
                    written => {
                        written.map_err(error)?;
                        break;
                    }
                }
            }
            if batch.iter().any(|w| matches!(w, Write::Delete { .. })) {
                self.forget_deleted().await;
            }
            Ok(())
        })
    }

    fn append<'a>(
        &'a self,
        room: &'a str,
        messages: Vec<Message>,
        recent: u64,
    ) -> StoreFuture<'a, Vec<Appended>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(error)?;
            // The row lock this takes orders concurrent appends to the room,
            // from any node, until the commit; what is read after it is
            // what the appends before this one committed.
            let row = sqlx::query(
                "UPDATE rooms SET last_seq = last_seq WHERE code = $1 RETURNING last_seq",
            )
            .bind(room)
            .fetch_optional(&mut *tx)
            .await
            .map_err(error)?
            .ok_or_else(|| StoreError::new(format!("no room {room}")))?;
            let mut last = uint(&row, "last_seq").map_err(error)?;
            let mut appended: Vec<Appended> = Vec::with_capacity(messages.len());
            for mut message in messages {
                let earlier = match &message.cid {
                    None => None,
                    Some(cid) => match appended.iter().find(|a| {
                        a.message.from.id == message.from.id && a.message.cid.as_ref() == Some(cid)
                    }) {
                        Some(a) => Some(a.message.clone()),
                        None => {
                            let after = last.saturating_sub(recent);
                            stored_by_cid(&mut tx, room, after, &message.from.id, cid).await?
                        }
                    },
                };
                match earlier {
                    Some(earlier) => appended.push(Appended { message: earlier, new: false }),
                    None => {
                        last += 1;
                        message.seq = last;
                        appended.push(Appended { message, new: true });
                    }
                }
            }
            let new: Vec<&Message> =
                appended.iter().filter(|a| a.new).map(|a| &a.message).collect();
            if !new.is_empty() {
                sqlx::query("UPDATE rooms SET last_seq = $1 WHERE code = $2")
                    .bind(int(last))
                    .bind(room)
                    .execute(&mut *tx)
                    .await
                    .map_err(error)?;
                insert_all(&mut tx, &new, self.sqlite).await.map_err(error)?;
                let index = self.hook_index().await.map_err(error)?;
                let hooks = hooks_for(&index, room, "message.created");
                for m in new.iter().filter(|m| !m.shadow && !hooks.is_empty()) {
                    let data = serde_json::to_string(m).expect("messages serialize");
                    queue_hook_event(&mut tx, &hooks, room, "message.created", &data)
                        .await
                        .map_err(error)?;
                }
            }
            tx.commit().await.map_err(error)?;
            Ok(appended)
        })
    }

    fn messages<'a>(
        &'a self,
        room: &'a str,
        after: u64,
        before: u64,
        limit: usize,
        viewer: Option<&'a str>,
    ) -> StoreFuture<'a, Vec<Message>> {
        Box::pin(async move {
            // A shadow-muted member's messages are their author's only.
            let seen = if viewer.is_some() { "AND (shadow = 0 OR user_id = $5)" } else { "" };
            let query = sqlx::AssertSqlSafe(format!(
                "SELECT {READ_COLUMNS} FROM messages \
                 WHERE room = $1 AND seq > $2 AND seq < $3 {seen} ORDER BY seq DESC LIMIT $4"
            ));
            let mut query = sqlx::query(query)
                .bind(room)
                .bind(int(after))
                .bind(int(before))
                .bind(int(limit as u64));
            if let Some(viewer) = viewer {
                query = query.bind(viewer);
            }
            let rows = query.fetch_all(&self.pool).await.map_err(error)?;
            let mut found = messages(&rows)?;
            found.reverse();
            Ok(found)
        })
    }

    fn visibility<'a>(
        &'a self,
        room: &'a str,
        user_id: &'a str,
    ) -> StoreFuture<'a, Option<StoredVisibility>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT from_seq, left_at FROM visibility WHERE room = $1 AND user_id = $2",
            )
            .bind(room)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(error)?;
            let visibility = |row: AnyRow| -> Result<StoredVisibility, sqlx::Error> {
                Ok(StoredVisibility {
                    from: uint(&row, "from_seq")?,
                    left_at: row
                        .try_get::<Option<i64>, _>("left_at")?
                        .map(|v| u64::try_from(v).unwrap_or(0)),
                })
            };
            row.map(visibility).transpose().map_err(error)
        })
    }

    fn recent_cids<'a>(&'a self, room: &'a str, after: u64) -> StoreFuture<'a, Vec<Message>> {
        Box::pin(async move {
            let query = sqlx::AssertSqlSafe(format!(
                "SELECT {READ_COLUMNS} FROM messages \
                 WHERE room = $1 AND seq > $2 AND cid IS NOT NULL ORDER BY seq DESC"
            ));
            let rows = sqlx::query(query)
                .bind(room)
                .bind(int(after))
                .fetch_all(&self.pool)
                .await
                .map_err(error)?;
            messages(&rows)
        })
    }

    fn mine<'a>(&'a self, user_id: &'a str, limit: usize) -> StoreFuture<'a, Vec<Message>> {
        Box::pin(async move {
            let query = sqlx::AssertSqlSafe(format!(
                "SELECT {READ_COLUMNS} FROM messages \
                 WHERE user_id = $1 ORDER BY ts DESC, seq DESC LIMIT $2"
            ));
            let rows = sqlx::query(query)
                .bind(user_id)
                .bind(int(limit as u64))
                .fetch_all(&self.pool)
                .await
                .map_err(error)?;
            messages(&rows)
        })
    }

    fn prune(
        &self,
        boards: bool,
        keep: Option<u64>,
        max_age: Option<Duration>,
    ) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut pruned = 0;
            if let Some(keep) = keep {
                let done = sqlx::query(
                    "DELETE FROM messages WHERE room IN \
                     (SELECT code FROM rooms WHERE board = $1) \
                     AND seq <= (SELECT last_seq FROM rooms WHERE rooms.code = messages.room) - $2",
                )
                .bind(i64::from(boards))
                .bind(int(keep))
                .execute(&self.pool)
                .await
                .map_err(error)?;
                pruned += done.rows_affected();
            }
            if let Some(age) = max_age {
                let done = sqlx::query(
                    "DELETE FROM messages WHERE room IN \
                     (SELECT code FROM rooms WHERE board = $1) AND ts < $2",
                )
                .bind(i64::from(boards))
                .bind(confab_core::rfc3339_ago(age))
                .execute(&self.pool)
                .await
                .map_err(error)?;
                pruned += done.rows_affected();
            }
            Ok(pruned)
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&self.pool).await.map_err(error)?;
            Ok(())
        })
    }

    fn setting<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            // Settings share the secrets' table, under names of their own.
            let row = sqlx::query("SELECT value FROM secrets WHERE name = $1")
                .bind(format!("setting:{name}"))
                .fetch_optional(&self.pool)
                .await
                .map_err(error)?;
            row.map(|row| row.try_get("value")).transpose().map_err(error)
        })
    }

    fn save_setting<'a>(&'a self, name: &'a str, value: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO secrets (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )
            .bind(format!("setting:{name}"))
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(error)?;
            Ok(())
        })
    }

    fn site_bans(&self) -> StoreFuture<'_, Vec<confab_core::SiteBan>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT address, until_ms, reason, created FROM site_bans")
                .fetch_all(&self.pool)
                .await
                .map_err(error)?;
            rows.iter()
                .map(|row| {
                    Ok(confab_core::SiteBan {
                        address: row.try_get("address")?,
                        until: row
                            .try_get::<Option<i64>, _>("until_ms")?
                            .and_then(|u| u64::try_from(u).ok()),
                        reason: row.try_get("reason")?,
                        created: row.try_get("created")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(error)
        })
    }

    fn save_site_ban<'a>(&'a self, ban: &'a confab_core::SiteBan) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO site_bans (address, until_ms, reason, created) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (address) DO UPDATE SET until_ms = excluded.until_ms, \
                 reason = excluded.reason, created = excluded.created",
            )
            .bind(&ban.address)
            .bind(ban.until.map(int))
            .bind(&ban.reason)
            .bind(&ban.created)
            .execute(&self.pool)
            .await
            .map_err(error)?;
            Ok(())
        })
    }

    fn delete_site_ban<'a>(&'a self, address: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let done = sqlx::query("DELETE FROM site_bans WHERE address = $1")
                .bind(address)
                .execute(&self.pool)
                .await
                .map_err(error)?;
            Ok(done.rows_affected() > 0)
        })
    }

    fn delete_room<'a>(&'a self, room: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let index = self.hook_index().await.map_err(error)?;
            let mut tx = self.pool.begin().await.map_err(error)?;
            // Its webhooks that want to hear of its end do (and go once it
            // is delivered); the others go now, with what they had queued.
            let hooks = hooks_for(&index, room, "room.ended");
            queue_hook_event(&mut tx, &hooks, room, "room.ended", "{}").await.map_err(error)?;
            for (hook, _) in
                index.get(room).into_iter().flatten().filter(|(h, _)| !hooks.contains(&h.as_str()))
            {
                for sql in [
                    "DELETE FROM hook_events WHERE hook = $1",
                    "DELETE FROM webhooks WHERE id = $1",
                ] {
                    sqlx::query(sql).bind(hook).execute(&mut *tx).await.map_err(error)?;
                }
            }
            for sql in [
                "DELETE FROM messages WHERE room = $1",
                "DELETE FROM visibility WHERE room = $1",
                "DELETE FROM room_roles WHERE room = $1",
                "DELETE FROM room_bans WHERE room = $1",
                "DELETE FROM integrations WHERE room = $1",
                "DELETE FROM rooms WHERE code = $1",
            ] {
                sqlx::query(sql).bind(room).execute(&mut *tx).await.map_err(error)?;
            }
            tx.commit().await.map_err(error)?;
            self.forget_hook_index();
            self.forget_deleted().await;
            Ok(())
        })
    }

    fn purge_user<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE messages SET body = '', subject = NULL, deleted = 1 \
                 WHERE user_id = $1 AND deleted = 0",
            )
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(error)?;
            // Replies quote them no more (the quote goes; its seq was the
            // user's). Quotes are written by the server, as
            // `{"seq":…,"from":{"id":"…"`.
            sqlx::query(
                "UPDATE messages SET reply = NULL, reply_seq = NULL \
                 WHERE reply_seq IS NOT NULL AND reply LIKE $1",
            )
            .bind(format!("%,\"from\":{{\"id\":\"{user_id}\",%"))
            .execute(&self.pool)
            .await
            .map_err(error)?;
            self.forget_deleted().await;
            Ok(done.rows_affected())
        })
    }

    fn secret<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Vec<u8>> {
        Box::pin(async move {
            // The first node to ask makes it; every other, and every later
            // start, reads what that one stored.
            let made: String =
                rand::random::<[u8; 32]>().iter().map(|b| format!("{b:02x}")).collect();
            sqlx::query(
                "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(made)
            .execute(&self.pool)
            .await
            .map_err(error)?;
            let row = sqlx::query("SELECT value FROM secrets WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await
                .map_err(error)?;
            let hex: String = row.try_get("value").map_err(error)?;
            let bytes: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
                .collect();
            bytes
                .filter(|b| b.len() == 32)
                .ok_or_else(|| StoreError::new(format!("secret {name} is not 32 bytes of hex")))
        })
    }

    fn save_integration<'a>(&'a self, i: &'a confab_core::Integration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO integrations (id, room, user_id, user_name, scopes, digest, created, made_by, session) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&i.id)
            .bind(&i.room)
            .bind(&i.user.id)
            .bind(&i.user.name)
            .bind(i.scopes.join(","))
            .bind(&i.digest)
            .bind(&i.created)
            .bind(&i.by)
            .bind(&i.session)
            .execute(&self.pool)
            .await
            .map_err(error)?;
            Ok(())
        })
    }

    fn integrations<'a>(&'a self, room: &'a str) -> StoreFuture<'a, Vec<confab_core::Integration>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT id, room, user_id, user_name, scopes, digest, created, made_by, session \
                 FROM integrations WHERE room = $1 ORDER BY created, id",
            )
            .bind(room)
            .fetch_all(&self.pool)
            .await
            .map_err(error)?;
            rows.iter().map(integration).collect::<Result<_, _>>().map_err(error)
        })
    }

    fn integration<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<confab_core::Integration>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT id, room, user_id, user_name, scopes, digest, created, made_by, session \
                 FROM integrations WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(error)?;
            row.as_ref().map(integration).transpose().map_err(error)
        })
    }

    fn delete_integration<'a>(&'a self, room: &'a str, id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let done = sqlx::query("DELETE FROM integrations WHERE room = $1 AND id = $2")
                .bind(room)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(error)?;
            Ok(done.rows_affected() > 0)
        })
    }

    fn delete_session<'a>(&'a self, digest: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query("DELETE FROM sessions WHERE token = $1")
                .bind(digest)
                .execute(&self.pool)
                .await
                .map_err(error)?;
            Ok(())
        })
    }

    fn expire_hook_events<'a>(&'a self, hook: &'a str, before_ms: u64) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let done = sqlx::query("DELETE FROM hook_events WHERE hook = $1 AND created_ms < $2")
                .bind(hook)
                .bind(int(before_ms))
                .execute(&self.pool)
                .await
                .map_err(error)?;
            Ok(done.rows_affected())
        })
    }

    fn save_webhook<'a>(&'a self, hook: &'a confab_core::Webhook) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO webhooks (id, room, url, events, secret, created, made_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&hook.id)
            .bind(&hook.room)
            .bind(&hook.url)
            .bind(hook.events.join(","))
            .bind(&hook.secret)
            .bind(&hook.created)
            .bind(&hook.by)
            .execute(&self.pool)
            .await
            .map_err(error)?;
            self.forget_hook_index();
            Ok(())
        })
    }

    fn webhooks<'a>(&'a self, room: &'a str) -> StoreFuture<'a, Vec<confab_core::Webhook>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT id, room, url, events, secret, created, made_by FROM webhooks \
                 WHERE room = $1 ORDER BY created, id",
            )
            .bind(room)
            .fetch_all(&self.pool)
            .await
            .map_err(error)?;
            rows.iter().map(webhook).collect::<Result<_, _>>().map_err(error)
        })
    }

    fn webhook<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<confab_core::Webhook>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT id, room, url, events, secret, created, made_by FROM webhooks WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(error)?;
            row.as_ref().map(webhook).transpose().map_err(error)
        })
    }

    fn delete_webhook<'a>(&'a self, room: &'a str, id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(error)?;
            let done = sqlx::query("DELETE FROM webhooks WHERE room = $1 AND id = $2")
                .bind(room)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(error)?;
            sqlx::query("DELETE FROM hook_events WHERE hook = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(error)?;
            tx.commit().await.map_err(error)?;
            self.forget_hook_index();
            Ok(done.rows_affected() > 0)
        })
    }

    fn hook_event<'a>(&'a self, room: &'a str, kind: &'a str, data: String) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let index = self.hook_index().await.map_err(error)?;
            let hooks = hooks_for(&index, room, kind);
            if hooks.is_empty() {
                return Ok(());
            }
            let mut conn = self.pool.acquire().await.map_err(error)?;
            queue_hook_event(&mut conn, &hooks, room, kind, &data).await.map_err(error)
        })
    }

    fn due_hooks(&self, now_ms: u64) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            // A webhook is due when its oldest event is: the ones behind
            // it wait their turn.
            let rows = sqlx::query(
                "SELECT hook FROM hook_events WHERE id IN (SELECT MIN(id) FROM hook_events GROUP BY hook) \
                 AND next_ms <= $1",
            )
                .bind(int(now_ms))
                .fetch_all(&self.pool)
                .await
                .map_err(error)?;
            rows.iter()
                .map(|r| r.try_get::<String, _>("hook"))
                .collect::<Result<_, _>>()
                .map_err(error)
        })
    }

    fn hook_events<'a>(
        &'a self,
        hook: &'a str,
        limit: usize,
    ) -> StoreFuture<'a, Vec<confab_core::HookEvent>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT id, hook, body, created_ms, attempts, next_ms FROM hook_events \
                 WHERE hook = $1 ORDER BY id LIMIT $2",
            )
            .bind(hook)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(error)?;
            let event = |row: &AnyRow| -> Result<confab_core::HookEvent, sqlx::Error> {
                Ok(confab_core::HookEvent {
                    id: uint(row, "id")?,
                    hook: row.try_get("hook")?,
                    body: row.try_get("body")?,
                    created_ms: uint(row, "created_ms")?,
                    attempts: u32::try_from(uint(row, "attempts")?).unwrap_or(u32::MAX),
                    next_ms: uint(row, "next_ms")?,
                })
            };
            rows.iter().map(event).collect::<Result<_, _>>().map_err(error)
        })
    }

    fn hook_attempted(&self, event: u64, retry: Option<u64>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let query = match retry {
                None => sqlx::query("DELETE FROM hook_events WHERE id = $1").bind(int(event)),
                Some(next) => sqlx::query(
                    "UPDATE hook_events SET attempts = attempts + 1, next_ms = $2 WHERE id = $1",
                )
                .bind(int(event))
                .bind(int(next)),
            };
            query.execute(&self.pool).await.map_err(error)?;
            Ok(())
        })
    }
}

fn webhook(row: &AnyRow) -> Result<confab_core::Webhook, sqlx::Error> {
    let events: String = row.try_get("events")?;
    Ok(confab_core::Webhook {
        id: row.try_get("id")?,
        room: row.try_get("room")?,
        url: row.try_get("url")?,
        events: events.split(',').filter(|e| !e.is_empty()).map(str::to_owned).collect(),
        secret: row.try_get("secret")?,
        created: row.try_get("created")?,
        by: row.try_get("made_by")?,
    })
}

fn integration(row: &AnyRow) -> Result<confab_core::Integration, sqlx::Error> {
    let scopes: String = row.try_get("scopes")?;
    Ok(confab_core::Integration {
        id: row.try_get("id")?,
        room: row.try_get("room")?,
        user: User { id: row.try_get("user_id")?, name: row.try_get("user_name")? },
        scopes: scopes.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        digest: row.try_get("digest")?,
        session: row.try_get::<Option<String>, _>("session")?.unwrap_or_default(),
        created: row.try_get("created")?,
        by: row.try_get("made_by")?,
    })
}
