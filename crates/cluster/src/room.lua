-- A room's critical section in a cluster. Redis runs a script to the end
-- before it runs anything else, so each op below is atomic across nodes:
-- a seat claim and the count it checks, a `seq` and the order of the
-- messages, a `cid` and the post it names.
--
-- KEYS (all of one room C, plus this node's room set):
--   1 meta   hash: json (room info), seats, eph (1|0), locked (1|0:
--                nobody new may join)
--   2 mem    hash: user id -> user JSON (members, cluster-wide), and
--                "#j" -> joins and leaves published (user ids start "u_")
--   3 names  hash: lower-cased name -> user id
--   4 cnt    hash: user id -> connections everywhere; "user|node" -> on node
--   5 grace  hash: user id -> "node:epoch" while the member is in grace
--   6 vis    hash: user id -> "from,left" (left -1: still a member)
--   7 seq    string: latest message seq
--   8 ev     unused: a room's latest event number is its seq plus its
--                joins and leaves (mem's "#j"), one counter fewer for a
--                post to touch
--   9 wl     list: the recent window, each message's envelope
--                ("C ev m node conn reply <JSON>"), oldest first; they are
--                contiguous in seq and the last is seq's, so the seq of an
--                item follows from its index (no sorted set needed)
--  10 el     list: the recent envelopes of joins and leaves, oldest first
--                (a message's is in wl): with wl, the events for nodes
--                that missed some
--  11 cid    hash: "user|cid" -> message JSON
--  12 cido   list: cid keys, oldest first
--  13 nroom  set: rooms this node has members in (for the crash sweep)
--  14 uname  hash: user id -> lower-cased name
--  15 rooms  set: every room code
--  16 public set: public room codes
--  17 pend   hash: seq -> envelope tail of a stored message not yet
--                published (a persistent room publishes in seq order)
--  18 pendc  hash: seq -> its "user|cid" key
--  19 op     string: what became of one join or claim, by its op id
--                ("...:op:-" for an op without one): "done:<counted>",
--                "claimed" or "cancelled"
--  20 roles  hash: user id -> "owner" or "moderator" (a plain member is
--                not in it)
--  21 ban    hash: user id -> the user's ban (or removal by `kick`),
--                "until\naddrs\nreason\nby JSON\nuser JSON": until when in
--                ms since the epoch (0: until lifted), the keyed hashes of
--                the addresses it bars ("h1,h2"; '' none), kicked|banned;
--                and "#a:<hash>" -> the user id whose ban bars that address
--  22 addr   hash: user id -> the keyed hashes of the addresses the member
--                joined from, the latest few ("h1,h2")
--  23 mute   hash: user id -> "until\nby JSON\nuser JSON\nshadow" of a
--                member who may not post (until: ms since the epoch, 0
--                until lifted; shadow 1: their posts go on, seen by them
--                only)
--  24 last   hash: user id -> when they last posted (ms), in slow mode
--  25 chg    sorted set: the seqs of messages changed (edited, deleted,
--                reacted to), each scored by the room's change number
--                ("rev" in meta) of its latest change; the latest
--                CHANGES_KEPT, for resumes
--
-- mem's "#p" is there only while the room has a mute or slow mode: the
-- post scripts read it with the member, and check nothing more without
-- it. Its value is meta's "slow" (ms between one member's posts; 0 off).
--
-- ARGV[1] is the op, ARGV[2] the room code; the rest depend on the op.
-- Envelopes published on the events channel:
--   "C ev m node conn reply <message JSON>"   a message
--   "C ev s node conn reply <message JSON>"   a shadow-muted member's
--                                             message: theirs only
--   "C ev j <user JSON>"                      a join
--   "C ev l reason <user JSON>"               a leave
--   "C 0 t 1|0 <user JSON>"                   typing (not numbered)
--   "C 0 k 1|0 <user JSON>"                   the room locked or unlocked
--                                             by the user (not numbered)
--   "C 0 r <role> <user JSON>"                a role given (not numbered:
--                                             join and members tell the
--                                             roles in force)
--   "C 0 u 1|0 <by JSON>\t<user JSON>"        a member muted or not
--   "C 0 w <seconds> <user JSON>"             slow mode set by the user
--   "C 0 h <user JSON>\t<title>"              the room renamed by the user
--   "C 0 d <seq> <rev> <author|-> <user JSON>"
--                                             message seq deleted by the
--                                             user (author: a shadow-muted
--                                             member's, for them only)
--   "C 0 e <rev> <m|s> <message JSON>"       a message edited (s: a
--                                             shadow-muted member's)
--   "C 0 a <seq> <rev> <1|0> <author|-> <emoji> <user JSON>"
--                                             a reaction put on or off
--   "C 0 x closed"                            the room closed by the operator
--   "C 0 n <text>"                            a notice from the operator
--                                             (rooms.lua)
--   "C 0 p <user id>"                         every message of the user
--                                             deleted (rooms.lua)

local op = ARGV[1]
local code = ARGV[2]
-- The events channel: the namespace of KEYS[15] ("<ns>:rooms"), then "events".
local CHANNEL = string.sub(KEYS[15], 1, -6) .. 'events'
-- Joins and leaves kept for nodes that missed some (messages: the window).
local EVENTS_KEPT = 4096
-- Changes of messages kept for resumes.
local CHANGES_KEPT = 4096

local function seq()
  return tonumber(redis.call('GET', KEYS[7]) or '0')
end

-- The joins and leaves published.
local function joins_and_leaves()
  return tonumber(redis.call('HGET', KEYS[2], '#j') or '0')
end

-- The latest event number: each message, join and leave counts one.
local function latest_event()
  return seq() + joins_and_leaves()
end

-- Redis's clock, in milliseconds since the epoch.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The members (mem less its "#j" and "#p").
local function member_count()
  return redis.call('HLEN', KEYS[2]) - redis.call('HEXISTS', KEYS[2], '#j')
    - redis.call('HEXISTS', KEYS[2], '#p')
end

-- Keeps mem's "#p" (see above) true to the mutes and slow mode.
local function refresh_policy()
  local slow = tonumber(redis.call('HGET', KEYS[1], 'slow') or '0')
  if slow > 0 or redis.call('EXISTS', KEYS[23]) == 1 then
    redis.call('HSET', KEYS[2], '#p', slow)
  else
    redis.call('HDEL', KEYS[2], '#p')
  end
end

-- Whether `uid` may post now, in a room whose "#p" is `slow`: nil, or the
-- refusal ({'muted', ms left or -1} or {'slow', every ms, ms left}). A
-- post it lets through is noted for slow mode. (posts.lua does the same.)
local function policy(uid, slow)
  local muted = redis.call('HGET', KEYS[23], uid)
  local now = now_ms()
  if muted then
    local u = tonumber(string.match(muted, '^(%d+)'))
    if u == 0 or u > now then
      -- Shadow-muted ("…\n1" at its end): let through, marked.
      if string.sub(muted, -2) == '\n1' then return {'shadow'} end
      if u == 0 then return {'muted', -1} end
      return {'muted', u - now}
    end
    redis.call('HDEL', KEYS[23], uid)
    refresh_policy()
  end
  slow = tonumber(slow)
  if slow > 0 and redis.call('HEXISTS', KEYS[20], uid) == 0 then
    local last = tonumber(redis.call('HGET', KEYS[24], uid) or '0')
    if last + slow > now then return {'slow', slow, last + slow - now} end
    redis.call('HSET', KEYS[24], uid, now)
  end
  return nil
end

-- The members' user JSON.
local function member_list()
  local users = {}
  for _, v in ipairs(redis.call('HVALS', KEYS[2])) do
    if string.sub(v, 1, 1) == '{' then users[#users + 1] = v end
  end
  return users
end

-- Publishes a join or a leave, and keeps its envelope.
local function publish(kind, rest)
  local ev = seq() + redis.call('HINCRBY', KEYS[2], '#j', 1)
  local envelope = code .. ' ' .. ev .. ' ' .. kind .. ' ' .. rest
  if redis.call('RPUSH', KEYS[10], envelope) > EVENTS_KEPT then
    redis.call('LPOP', KEYS[10])
  end
  redis.call('PUBLISH', CHANNEL, envelope)
  return ev
end

-- Publishes the message that is now seq's ("node conn reply <JSON>", of
-- `kind` m, or s for a shadow-muted member's), its envelope kept in the
-- window of `kept` messages.
local function publish_message(rest, kept, kind)
  local ev = latest_event()
  local envelope = code .. ' ' .. ev .. ' ' .. kind .. ' ' .. rest
  if redis.call('RPUSH', KEYS[9], envelope) > kept then
    redis.call('LPOP', KEYS[9])
  end
  redis.call('PUBLISH', CHANNEL, envelope)
end

-- The user id of the member named by id (`uid`, '' when by name) or by
-- name key; false when there is no such member.
local function named_member(uid, name_key)
  local target = uid
  if target == '' then target = redis.call('HGET', KEYS[3], name_key) end
  -- The members' hash holds counters too ("#s", "#j"): never a member.
  if not target or string.sub(target, 1, 1) == '#' then return false end
  if redis.call('HEXISTS', KEYS[2], target) == 0 then return false end
  return target
end

-- A message envelope's JSON (what follows its sixth space), for `reader`:
-- a shadow-muted member's ("s") is its author's only.
local function message_of(envelope, reader)
  local kind, json = string.match(envelope, '^%S+ %S+ ([ms]) %S+ %S+ %S+ (.*)$')
  if kind == 's' and cjson.decode(json).from.id ~= reader then
    return nil
  end
  return json
end

-- Message n as the window holds it: its index, the envelope's head
-- ("C ev "), its kind, the rest up to its JSON, and the decoded message;
-- nil if the window does not hold it.
local function held(n)
  local first = seq() - redis.call('LLEN', KEYS[9]) + 1
  if n < first or n > seq() then return nil end
  local i = n - first
  local envelope = redis.call('LINDEX', KEYS[9], i)
  local head, kind, tail, json = string.match(envelope or '', '^(%S+ %S+ )([ms])( %S+ %S+ %S+ )(.*)$')
  if not json then return nil end
  return i, head, kind, tail, cjson.decode(json)
end

-- Notes a change of message n; the room's change number now.
local function note_change(n)
  local rev = redis.call('HINCRBY', KEYS[1], 'rev', 1)
  redis.call('ZADD', KEYS[25], rev, n)
  if redis.call('ZCARD', KEYS[25]) > CHANGES_KEPT then
    -- meta's "rev0": the latest change number no longer kept.
    local lost = redis.call('ZRANGE', KEYS[25], 0, 0, 'WITHSCORES')
    redis.call('HSET', KEYS[1], 'rev0', lost[2])
    redis.call('ZREMRANGEBYRANK', KEYS[25], 0, 0)
  end
  return rev
end

-- Whether `uid` is muted now: 'shadow', 'muted' (and the ms left, -1
-- until lifted), or nil.
local function muting(uid)
  local muted = redis.call('HGET', KEYS[23], uid)
  if not muted then return nil end
  local u = tonumber(string.match(muted, '^(%d+)'))
  local now = now_ms()
  if u ~= 0 and u <= now then return nil end
  if string.sub(muted, -2) == '\n1' then return 'shadow' end
  if u == 0 then return 'muted', -1 end
  return 'muted', u - now
end

-- Puts `message` (decoded) back in the window at `i` and in what a retry
-- of its cid is answered with, and notes the change; its JSON and the
-- change number.
local function amend(i, head, kind, tail, message)
  local json = cjson.encode(message)
  redis.call('LSET', KEYS[9], i, head .. kind .. tail .. json)
  if message.cid then
    local key = message.from.id .. '|' .. message.cid
    local first = redis.call('HGET', KEYS[11], key)
    if first and cjson.decode(first).seq == message.seq then
      redis.call('HSET', KEYS[11], key, json)
    end
  end
  return json, note_change(message.seq)
end

-- Lifts the ban of `uid` and the addresses it bars; whether there was one.
local function lift(uid)
  local ban = redis.call('HGET', KEYS[21], uid)
  if not ban then return false end
  local addrs = string.match(ban, '^%d+\n([^\n]*)\n')
  for a in string.gmatch(addrs or '', '[^,]+') do
    if redis.call('HGET', KEYS[21], '#a:' .. a) == uid then redis.call('HDEL', KEYS[21], '#a:' .. a) end
  end
  redis.call('HDEL', KEYS[21], uid)
  return true
end

-- The ban of `uid` in force: {ms left (-1: until lifted), reason}, or nil
-- (one that ran out is lifted on the way).
local function ban_of(uid)
  local ban = redis.call('HGET', KEYS[21], uid)
  if not ban then return nil end
  local u, reason = string.match(ban, '^(%d+)\n[^\n]*\n([^\n]*)\n')
  u = tonumber(u)
  if u == 0 then return {-1, reason} end
  local left = u - now_ms()
  if left > 0 then return {left, reason} end
  lift(uid)
  return nil
end

-- Bars what `ban` (a value of the ban hash) names, for `uid`.
local function bar(uid, ban)
  lift(uid)
  redis.call('HSET', KEYS[21], uid, ban)
  local addrs = string.match(ban, '^%d+\n([^\n]*)\n')
  for a in string.gmatch(addrs or '', '[^,]+') do
    redis.call('HSET', KEYS[21], '#a:' .. a, uid)
  end
end

-- The role of `actor` in the room: 'owner', 'moderator', or false for a
-- plain member; nil when the room or their seat in it is gone.
local function acting(actor)
  if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[2], actor) == 0 then
    return nil
  end
  return redis.call('HGET', KEYS[20], actor)
end

-- The role of `actor`, the room's owner or a moderator; else nil and the
-- answer to give ({'not_member'} or {'not_moderator'}).
local function moderating(actor)
  local role = acting(actor)
  if role == nil then return nil, {'not_member'} end
  if not role then return nil, {'not_moderator'} end
  return role, nil
end

-- Whether the ban or mute `entry` (its fields split by newlines, the
-- maker's user JSON the `field`th) was made by the room's owner.
local function made_by_owner(entry, field)
  local parts, start = {}, 1
  entry = entry or ''
  while true do
    local i = string.find(entry, '\n', start, true)
    if not i then
      parts[#parts + 1] = string.sub(entry, start)
      break
    end
    parts[#parts + 1] = string.sub(entry, start, i - 1)
    start = i + 1
  end
  local by = string.match(parts[field] or '', '"id":"([^"]*)"')
  return by ~= nil and redis.call('HGET', KEYS[20], by) == 'owner'
end

-- Forgets the mutes that ran out, and "#p" with them when nothing else
-- needs it.
local function forget_expired_mutes()
  local now = now_ms()
  local fields = redis.call('HGETALL', KEYS[23])
  for i = 1, #fields, 2 do
    local u = tonumber(string.match(fields[i + 1], '^(%d+)'))
    if u ~= 0 and u <= now then redis.call('HDEL', KEYS[23], fields[i]) end
  end
  refresh_policy()
end

local function destroy()
  for i = 1, 12 do redis.call('DEL', KEYS[i]) end
  redis.call('DEL', KEYS[14], KEYS[17], KEYS[18], KEYS[20], KEYS[21], KEYS[22], KEYS[23], KEYS[24],
    KEYS[25])
  redis.call('SREM', KEYS[15], code)
  redis.call('SREM', KEYS[16], code)
end

-- Removes a member; 'destroyed' if that emptied an ephemeral room, then
-- '1' if the room was public ('0' if not), for the node's log.
local function remove_member(uid, reason)
  local user = redis.call('HGET', KEYS[2], uid)
  if not user then return 'quiet' end
  redis.call('HDEL', KEYS[2], uid)
  local name = redis.call('HGET', KEYS[14], uid)
  if name then redis.call('HDEL', KEYS[3], name) end
  redis.call('HDEL', KEYS[14], uid)
  redis.call('HDEL', KEYS[5], uid)
  redis.call('HDEL', KEYS[4], uid)
  redis.call('HDEL', KEYS[22], uid)
  local vis = redis.call('HGET', KEYS[6], uid)
  if vis then
    local from = string.match(vis, '^(%d+),')
    redis.call('HSET', KEYS[6], uid, from .. ',' .. seq())
  end
  if member_count() == 0 and redis.call('HGET', KEYS[1], 'eph') == '1' then
    local public = tostring(redis.call('SISMEMBER', KEYS[16], code))
    destroy()
    return 'destroyed', public
  end
  publish('l', reason .. ' ' .. user)
  return 'left'
end

-- One connection of `uid` on `node` went away; returns what is left of the
-- user's connections everywhere.
local function release(uid, node)
  local here = uid .. '|' .. node
  local mine = tonumber(redis.call('HGET', KEYS[4], here) or '0')
  if mine <= 0 then return -1 end
  if mine == 1 then redis.call('HDEL', KEYS[4], here) else redis.call('HINCRBY', KEYS[4], here, -1) end
  return redis.call('HINCRBY', KEYS[4], uid, -1)
end

-- The seq of the window's first message (seq() + 1 when it is empty).
local function oldest()
  return seq() - redis.call('LLEN', KEYS[9]) + 1
end

-- The newest `limit` messages of the window with after < seq < before
-- that `reader` may see, newest first.
local function window(after, before, limit, reader)
  if limit <= 0 then return {} end
  local top = seq()
  local first = top - redis.call('LLEN', KEYS[9]) + 1
  local hi = math.min(before - 1, top)
  local lo = math.max(after + 1, first, hi - limit + 1)
  if lo > hi then return {} end
  local items = redis.call('LRANGE', KEYS[9], lo - first, hi - first)
  local newest = {}
  for i = #items, 1, -1 do
    local json = message_of(items[i], reader)
    if json then newest[#newest + 1] = json end
  end
  return newest
end

local function messages(after, limit, reader)
  return window(after, seq() + 1, limit, reader)
end



if op == 'create' then
  -- ARGV: 3 info JSON, 4 seats, 5 eph, 6 public, 7 ttl ms (0: none),
  --       8 only if new (1|0), 9 latest stored seq, 10 backlog
  if redis.call('EXISTS', KEYS[1]) == 1 then
    if ARGV[8] == '1' then return {'exists'} end
    return {'ok'}
  end
  redis.call('HSET', KEYS[1], 'json', ARGV[3], 'seats', ARGV[4], 'eph', ARGV[5], 'backlog', ARGV[10])
  -- ARGV[12]: whether it is locked (a stored room, recorded again).
  if ARGV[12] == '1' then redis.call('HSET', KEYS[1], 'locked', '1') end
  -- ARGV[11]: the roles it starts with, "uid=role;uid=role" ('' none).
  for uid, role in string.gmatch(ARGV[11] or '', '([^=;]+)=([^;]+)') do
    redis.call('HSET', KEYS[20], uid, role)
  end
  -- ARGV[13]: its slow mode (ms; 0 off).
  if tonumber(ARGV[13]) > 0 then
    redis.call('HSET', KEYS[1], 'slow', ARGV[13])
    redis.call('HSET', KEYS[2], '#p', ARGV[13])
  end
  -- ARGV[14]: its latest change number stored.
  if tonumber(ARGV[14]) > 0 then redis.call('HSET', KEYS[1], 'rev', ARGV[14], 'rev0', ARGV[14]) end
  -- ARGV[15] on, in pairs: the bans it starts with (user id, ban).
  for i = 15, #ARGV - 1, 2 do bar(ARGV[i], ARGV[i + 1]) end
  if tonumber(redis.call('GET', KEYS[7]) or '0') < tonumber(ARGV[9]) then
    redis.call('SET', KEYS[7], ARGV[9])
    -- The window ends at seq's message: what it held (if anything
    -- outlived the room) no longer does.
    redis.call('DEL', KEYS[9])
  end
  if tonumber(ARGV[7]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[7]) end
  redis.call('SADD', KEYS[15], code)
  if ARGV[6] == '1' then redis.call('SADD', KEYS[16], code) end
  return {'ok'}
end

if op == 'persist' then
  -- A created persistent room, once stored: it no longer expires unjoined.
  if redis.call('PERSIST', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[1]) == 1 then return {'ok'} end
  return {'not_found'}
end

if op == 'join' then
  -- ARGV: 3 user id, 4 user JSON, 5 name key, 6 node, 7 since (-1: none),
  --       8 limit for since, 9 stored visibility "from,left" or '',
  --       10 rejoin only (1|0): a resume, which takes no new seat,
  --       11 this connection is counted here already (1|0): a second join,
  --       12 op id ('' none): a join its node gave up on is cancelled by it,
  --       13 the keyed hash of the client's address ('' none),
  --       14 with since, the room's change number the client saw (-1: none)
  local info = redis.call('HGET', KEYS[1], 'json')
  if not info then return {'not_found'} end
  if ARGV[12] ~= '' and redis.call('GET', KEYS[19]) == 'cancelled' then return {'cancelled'} end
  local uid = ARGV[3]
  if ARGV[10] == '1' and redis.call('HEXISTS', KEYS[2], uid) == 0 then return {'not_found'} end
  if redis.call('EXISTS', KEYS[21]) == 1 then
    local banned = {uid}
    if ARGV[13] ~= '' then
      local by_address = redis.call('HGET', KEYS[21], '#a:' .. ARGV[13])
      if by_address then banned[2] = by_address end
    end
    for _, who in ipairs(banned) do
      local ban = ban_of(who)
      if ban then return {'banned', ban[1], ban[2]} end
    end
  end
  local latest = seq()
  local new = 0
  if redis.call('HEXISTS', KEYS[2], uid) == 1 then
    redis.call('HDEL', KEYS[5], uid)
    local old = redis.call('HGET', KEYS[14], uid)
    if old ~= ARGV[5] then
      local holder = redis.call('HGET', KEYS[3], ARGV[5])
      if not holder then
        if old then redis.call('HDEL', KEYS[3], old) end
        redis.call('HSET', KEYS[3], ARGV[5], uid)
        redis.call('HSET', KEYS[14], uid, ARGV[5])
        redis.call('HSET', KEYS[2], uid, ARGV[4])
      end
    end
  else
    -- A locked room takes nobody new: its owner and moderators, and those
    -- who were members when it was locked, still come in.
    if redis.call('HGET', KEYS[1], 'locked') == '1' and redis.call('HEXISTS', KEYS[20], uid) == 0 then
      local seen = redis.call('HGET', KEYS[6], uid)
      if not seen and ARGV[9] ~= '' then seen = ARGV[9] end
      if not seen or string.match(seen, ',(-?%d+)$') ~= '-1' then return {'locked'} end
    end
    local seats = tonumber(redis.call('HGET', KEYS[1], 'seats'))
    if member_count() >= seats then return {'room_full', seats} end
    if redis.call('HEXISTS', KEYS[3], ARGV[5]) == 1 then return {'name_taken'} end
    local backlog = tonumber(redis.call('HGET', KEYS[1], 'backlog') or '0')
    local floor = math.max(latest + 1 - backlog, 1)
    local known = redis.call('HGET', KEYS[6], uid)
    if not known and ARGV[9] ~= '' then known = ARGV[9] end
    local from = floor
    if known then
      local f, l = string.match(known, '^(%d+),(-?%d+)$')
      f = tonumber(f)
      l = tonumber(l)
      if l < 0 or l + 1 >= floor then from = f end
    end
    redis.call('HSET', KEYS[6], uid, from .. ',-1')
    redis.call('HSET', KEYS[2], uid, ARGV[4])
    redis.call('HSET', KEYS[3], ARGV[5], uid)
    redis.call('HSET', KEYS[14], uid, ARGV[5])
    redis.call('PERSIST', KEYS[1])
    publish('j', ARGV[4])
    new = 1
  end
  if ARGV[13] ~= '' then
    -- The addresses a ban of the member would bar: the latest few.
    local addrs = redis.call('HGET', KEYS[22], uid) or ''
    if not string.find(',' .. addrs .. ',', ',' .. ARGV[13] .. ',', 1, true) then
      local kept = {}
      for a in string.gmatch(addrs, '[^,]+') do kept[#kept + 1] = a end
      kept[#kept + 1] = ARGV[13]
      while #kept > 4 do table.remove(kept, 1) end
      redis.call('HSET', KEYS[22], uid, table.concat(kept, ','))
    end
  end
  local counted = 0
  if new == 1 or ARGV[11] ~= '1' then
    redis.call('HINCRBY', KEYS[4], uid, 1)
    redis.call('HINCRBY', KEYS[4], uid .. '|' .. ARGV[6], 1)
    counted = 1
  end
  if ARGV[12] ~= '' then
    redis.call('SET', KEYS[19], 'done:' .. counted .. ':' .. new, 'PX', 60000)
  end
  redis.call('SADD', KEYS[13], code)
  local vis = redis.call('HGET', KEYS[6], uid)
  local from = tonumber(string.match(vis, '^(%d+),'))
  local since = tonumber(ARGV[7])
  local after, limit
  if since < 0 then
    local backlog = tonumber(redis.call('HGET', KEYS[1], 'backlog') or '0')
    after = math.max(latest + 1 - backlog, 1) - 1
    limit = backlog
  else
    after = since
    limit = tonumber(ARGV[8])
  end
  after = math.max(after, from - 1)
  local ev = latest_event()
  local members = member_list()
  local rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
  -- On a resume that gave its change number: the messages up to since
  -- that changed after it (all those kept if it is ahead of the room's:
  -- the count started again), oldest first.
  local changed = {}
  local seen = tonumber(ARGV[14] or '-1')
  local floor = tonumber(redis.call('HGET', KEYS[1], 'rev0') or '0')
  if since >= 0 and seen >= 0 and (seen > rev or seen < floor) then
    -- A change number the room cannot vouch for (ahead of its own, or
    -- older than the changes it keeps): every changed message the window
    -- holds up to since, as it is now. (The field names are the JSON's
    -- own: a body's quotes are escaped.)
    local first = latest - redis.call('LLEN', KEYS[9]) + 1
    local lo = math.max(first, from)
    if since >= lo then
      for _, envelope in ipairs(redis.call('LRANGE', KEYS[9], lo - first, since - first)) do
        local json = message_of(envelope, uid)
        if json and (string.find(json, '"edited":', 1, true) or string.find(json, '"deleted":true', 1, true)
            or string.find(json, '"reactions":', 1, true)) then
          changed[#changed + 1] = json
        end
      end
    end
  elseif since >= 0 and seen >= 0 then
    local wanted = {}
    for _, s in ipairs(redis.call('ZRANGEBYSCORE', KEYS[25], '(' .. seen, '+inf')) do
      s = tonumber(s)
      if s <= since and s >= from then wanted[#wanted + 1] = s end
    end
    table.sort(wanted)
    local first = latest - redis.call('LLEN', KEYS[9]) + 1
    for _, s in ipairs(wanted) do
      if s >= first then
        local json = message_of(redis.call('LINDEX', KEYS[9], s - first) or '', uid)
        if json then changed[#changed + 1] = json end
      end
    end
  end
  return {'ok', new, latest, ev, from, info, members, messages(after, limit, uid), after, limit, oldest(),
    redis.call('HGETALL', KEYS[20]), redis.call('HGET', KEYS[1], 'locked') or '0',
    redis.call('HGET', KEYS[1], 'slow') or '0', rev, changed}
end

if op == 'leave' or op == 'drop' then
  -- ARGV: 3 user id, 4 node ('' for a leave of a seat held in grace),
  --       5 grace token ('' for none)
  local uid = ARGV[3]
  if redis.call('HEXISTS', KEYS[2], uid) == 0 then return {'not_member'} end
  if op == 'leave' and ARGV[4] == '' then
    -- From a connection not in the room: it ends the user's seat held in
    -- grace (no connection anywhere); else the user is a member through
    -- other connections only.
    if tonumber(redis.call('HGET', KEYS[4], uid) or '0') > 0 then return {'not_member'} end
    return {remove_member(uid, 'left')}
  end
  local left = release(uid, ARGV[4])
  if left < 0 then return {'not_member'} end
  if left > 0 then return {'quiet'} end
  if op == 'drop' and ARGV[5] ~= '' then
    redis.call('HSET', KEYS[5], uid, ARGV[5])
    return {'grace'}
  end
  local reason = 'left'
  if op == 'drop' then reason = 'disconnected' end
  return {remove_member(uid, reason)}
end

if op == 'cancel' then
  -- A join whose node stopped waiting for it (a timeout): if it ran, it
  -- is undone; if it has not run yet, it never will. Undone means: a
  -- member the join added leaves again; a member who was there before
  -- (held in grace, or whose connections have dropped since) is left as
  -- a drop leaves them, in grace with the token given, or gone.
  -- ARGV: 3 user id, 4 node the join counted the connection under,
  --       5 grace token ('' for none)
  local done = redis.call('GET', KEYS[19])
  redis.call('SET', KEYS[19], 'cancelled', 'PX', 60000)
  if not done or string.sub(done, 1, 7) ~= 'done:1:' then return {'cancelled'} end
  local uid = ARGV[3]
  local left = release(uid, ARGV[4])
  if left ~= 0 then return {'undone'} end
  if string.sub(done, 8) == '1' then return {'undone', remove_member(uid, 'left')} end
  if ARGV[5] ~= '' then
    redis.call('HSET', KEYS[5], uid, ARGV[5])
    return {'grace'}
  end
  return {'undone', remove_member(uid, 'disconnected')}
end

if op == 'expire' then
  -- ARGV: 3 user id, 4 grace token
  local uid = ARGV[3]
  if redis.call('HGET', KEYS[5], uid) ~= ARGV[4] then return {'quiet'} end
  if tonumber(redis.call('HGET', KEYS[4], uid) or '0') > 0 then return {'quiet'} end
  return {remove_member(uid, 'disconnected')}
end

if op == 'sweep' then
  -- ARGV: 3 the dead node. Its connections are gone, and so are its
  -- grace timers: its members leave now.
  local dead = ARGV[3]
  local suffix = '|' .. dead
  local gone = 0
  if redis.call('EXISTS', KEYS[1]) == 0 then return {'ok', 0} end
  for _, uid in ipairs(redis.call('HKEYS', KEYS[2])) do
    -- (Lua 5.1 has no `continue`: "#j" and "#p" are not members.)
    if string.sub(uid, 1, 1) ~= '#' then
      local here = tonumber(redis.call('HGET', KEYS[4], uid .. suffix) or '0')
      local left = tonumber(redis.call('HGET', KEYS[4], uid) or '0')
      if here > 0 then
        redis.call('HDEL', KEYS[4], uid .. suffix)
        left = redis.call('HINCRBY', KEYS[4], uid, -here)
      end
      local token = redis.call('HGET', KEYS[5], uid)
      local graced_there = token and string.sub(token, 1, #dead + 1) == dead .. ':'
      if left <= 0 and (here > 0 or graced_there) then
        gone = gone + 1
        if remove_member(uid, 'disconnected') == 'destroyed' then return {'ok', gone} end
      end
    end
  end
  return {'ok', gone}
end

if op == 'claim' then
  -- A persistent room's post, before it is stored: membership, and its
  -- cid claimed so that a retry on any node waits for it or gets it.
  -- ARGV: 3 user id, 4 cid ('' none), 5 op id: the claim holds it, and a
  -- claim its node gave up on (cancelled by `unclaim` with the op id)
  -- does not take effect if it runs late
  if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_found'} end
  local uid = ARGV[3]
  local got = redis.call('HMGET', KEYS[2], uid, '#p')
  if not got[1] then return {'not_member'} end
  local key = uid .. '|' .. ARGV[4]
  local claim = KEYS[11] .. ':claim:' .. key
  if ARGV[4] ~= '' then
    local first = redis.call('HGET', KEYS[11], key)
    if first then return {'dup', first} end
    if redis.call('GET', KEYS[19]) == 'cancelled' then return {'cancelled'} end
    if not redis.call('SET', claim, ARGV[5], 'NX', 'PX', 30000)
      and redis.call('GET', claim) ~= ARGV[5] then
      return {'pending'}
    end
  end
  -- A retry is answered (or waits) before a mute or slow mode is looked at.
  -- A shadow-muted member's post goes on, marked (1): theirs only.
  local shadow = 0
  if got[2] then
    local refused = policy(uid, got[2])
    if refused and refused[1] == 'shadow' then
      shadow = 1
    elseif refused then
      if ARGV[4] ~= '' then redis.call('DEL', claim) end
      return refused
    end
  end
  return {'ok', shadow}
end

if op == 'unclaim' then
  -- ARGV: 3 "user|cid", 4 the claiming op's id: its claim is released,
  -- and should it run later, it takes no effect
  redis.call('SET', KEYS[19], 'cancelled', 'PX', 60000)
  local claim = KEYS[11] .. ':claim:' .. ARGV[3]
  if redis.call('GET', claim) == ARGV[4] then redis.call('DEL', claim) end
  return {'ok'}
end

if op == 'commit' then
  -- A stored message, published in seq order: one whose predecessor is
  -- not published yet waits in pend until it is.
  -- ARGV: 3 seq, 4 "node conn reply " (who posted it), 5 message JSON,
  --       6 "user|cid" ('' none), 7 window, 8 remembered cids, 9 m, or s
  --       for a shadow-muted member's
  if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_found'} end
  local n = tonumber(ARGV[3])
  local published = seq()
  if n <= published then return {'ok', published} end
  -- The first to commit a seq names its poster; a later commit of the same
  -- stored message (a retry answered from the store) does not replace it.
  redis.call('HSETNX', KEYS[17], n, (ARGV[9] or 'm') .. ' ' .. ARGV[4] .. ARGV[5])
  if ARGV[6] ~= '' then redis.call('HSETNX', KEYS[18], n, ARGV[6]) end
  while true do
    local next = published + 1
    local kind_tail = redis.call('HGET', KEYS[17], next)
    if not kind_tail then break end
    local kind, tail = string.match(kind_tail, '^([ms]) (.*)$')
    redis.call('HDEL', KEYS[17], next)
    redis.call('SET', KEYS[7], next)
    local message = string.match(tail, '^%S+ %S+ %S+ (.*)$')
    local key = redis.call('HGET', KEYS[18], next)
    if key then
      redis.call('HDEL', KEYS[18], next)
      redis.call('HSET', KEYS[11], key, message)
      redis.call('DEL', KEYS[11] .. ':claim:' .. key)
      redis.call('RPUSH', KEYS[12], key)
      if redis.call('LLEN', KEYS[12]) > tonumber(ARGV[8]) then
        redis.call('HDEL', KEYS[11], redis.call('LPOP', KEYS[12]))
      end
    end
    publish_message(tail, tonumber(ARGV[7]), kind)
    published = next
  end
  return {'ok', published}
end

if op == 'stalled' then
  -- Whether a stored message waits for a predecessor that never came
  -- (its node died between storing and publishing): the seq to read
  -- from the store, or 0.
  local published = seq()
  if redis.call('HLEN', KEYS[17]) == 0 then return {'ok', 0} end
  return {'ok', published + 1}
end

if op == 'typing' then
  -- ARGV: 3 user id, 4 1|0
  local user = redis.call('HGET', KEYS[2], ARGV[3])
  if not user then return {'not_member'} end
  redis.call('PUBLISH', CHANNEL, code .. ' 0 t ' .. ARGV[4] .. ' ' .. user)
  return {'ok'}
end

if op == 'read' then
  -- ARGV: 3 user id, 4 after, 5 before, 6 limit. The newest `limit`
  -- messages with after < seq < before that the user may see.
  if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_found'} end
  local vis = redis.call('HGET', KEYS[6], ARGV[3])
  if not vis or redis.call('HEXISTS', KEYS[2], ARGV[3]) == 0 then return {'not_member'} end
  local from = tonumber(string.match(vis, '^(%d+),'))
  -- In a public room, which anyone may join and read, a member reads back
  -- before their join too.
  if redis.call('SISMEMBER', KEYS[16], code) == 1 then from = 1 end
  local after = math.max(tonumber(ARGV[4]), from - 1)
  local before = math.min(tonumber(ARGV[5]), seq() + 1)
  local limit = tonumber(ARGV[6])
  if after + 1 >= before then return {'ok', {}, after, before, oldest()} end
  return {'ok', window(after, before, limit, ARGV[3]), after, before, oldest()}
end

if op == 'events' then
  -- ARGV: 3 after, 4 up to (-1: the newest). The recorded envelopes with
  -- after < ev <= up to, oldest first.
  local top = latest_event()
  -- Events the asker applied that the room no longer counts: it started
  -- over (Redis lost it), and nothing here follows on from them.
  local after = tonumber(ARGV[3])
  if after > top then return {'reset'} end
  local upto = tonumber(ARGV[4])
  if upto < 0 or upto > top then upto = top end
  if after >= upto then return {'ok', {}} end
  -- Each list is in event order, and at most upto - after of its newest
  -- items can be wanted: they are merged, and cut at the first event
  -- that is missing (the asker then reads on from there, or resumes).
  local function wanted(key)
    local found = {}
    for _, envelope in ipairs(redis.call('LRANGE', KEYS[key], -(upto - after), -1)) do
      local e = tonumber(string.match(envelope, '^%S+ (%d+) '))
      if e > after and e <= upto then found[#found + 1] = {e, envelope} end
    end
    return found
  end
  local messages, others = wanted(9), wanted(10)
  local events, i, j, next = {}, 1, 1, after + 1
  while next <= upto do
    local m, o = messages[i], others[j]
    if m and m[1] == next then
      events[#events + 1] = m[2]
      i = i + 1
    elseif o and o[1] == next then
      events[#events + 1] = o[2]
      j = j + 1
    else
      break
    end
    next = next + 1
  end
  return {'ok', events}
end

if op == 'members' then
  -- ARGV: 3 whether the asking connection is in the room (1|0).
  -- A private room the asker is not in and a room that does not exist
  -- take the same commands and get the same answer.
  if ARGV[3] ~= '1' and redis.call('SISMEMBER', KEYS[16], code) == 0 then return {'hidden'} end
  if redis.call('EXISTS', KEYS[1]) == 0 then return {'hidden'} end
  return {'ok', member_list(), redis.call('HGETALL', KEYS[20])}
end

if op == 'lock' then
  -- ARGV: 3 the actor's user id (the owner or a moderator), 4 1|0.
  local actor = ARGV[3]
  local actor_role, refused = moderating(actor)
  if refused then return refused end
  if (redis.call('HGET', KEYS[1], 'locked') or '0') == ARGV[4] then return {'ok', 0} end
  redis.call('HSET', KEYS[1], 'locked', ARGV[4])
  redis.call('PUBLISH', CHANNEL, code .. ' 0 k ' .. ARGV[4] .. ' ' .. redis.call('HGET', KEYS[2], actor))
  return {'ok', 1}
end

if op == 'kick' then
  -- ARGV: 3 the actor's user id, 4 the target's user id ('' when named),
  --       5 the target's name key ('' when by id), 6 for how long (ms; 0:
  --       until lifted), 7 kicked|banned, 8 bar their addresses too (1|0).
  -- The owner removes anyone else; a moderator, a plain member.
  local actor = ARGV[3]
  local actor_role, refused = moderating(actor)
  if refused then return refused end
  local target = named_member(ARGV[4], ARGV[5])
  if not target then return {'no_member'} end
  if target == actor then return {'self'} end
  local target_role = redis.call('HGET', KEYS[20], target)
  if target_role == 'owner' then return {'owner'} end
  if target_role == 'moderator' and actor_role ~= 'owner' then return {'moderator'} end
  -- Bans and the addresses they bar: at most about BANS_MAX of each.
  if redis.call('HLEN', KEYS[21]) >= tonumber(ARGV[9]) and redis.call('HEXISTS', KEYS[21], target) == 0 then
    for _, uid in ipairs(redis.call('HKEYS', KEYS[21])) do
      if string.sub(uid, 1, 1) ~= '#' then ban_of(uid) end
    end
    if redis.call('HLEN', KEYS[21]) >= tonumber(ARGV[9]) then return {'too_many'} end
  end
  local untilms = 0
  if tonumber(ARGV[6]) > 0 then untilms = now_ms() + tonumber(ARGV[6]) end
  local addrs = ''
  if ARGV[8] == '1' then addrs = redis.call('HGET', KEYS[22], target) or '' end
  local ban = untilms .. '\n' .. addrs .. '\n' .. ARGV[7] .. '\n' .. redis.call('HGET', KEYS[2], actor)
    .. '\n' .. redis.call('HGET', KEYS[2], target)
  bar(target, ban)
  local roles_changed = 0
  if redis.call('HDEL', KEYS[20], target) == 1 then
    roles_changed = 1
    redis.call('PUBLISH', CHANNEL, code .. ' 0 r member ' .. redis.call('HGET', KEYS[2], target))
  end
  -- Every connection of theirs, on every node, is out of the room.
  local prefix = target .. '|'
  for _, field in ipairs(redis.call('HKEYS', KEYS[4])) do
    if string.sub(field, 1, #prefix) == prefix then redis.call('HDEL', KEYS[4], field) end
  end
  remove_member(target, ARGV[7])
  return {'ok', redis.call('HGETALL', KEYS[20]), ban, roles_changed}
end

if op == 'unban' then
  -- ARGV: 3 the actor's user id (the owner or a moderator), 4 whose ban.
  local actor = ARGV[3]
  local actor_role, refused = moderating(actor)
  if refused then return refused end
  local in_force = ban_of(ARGV[4])
  if in_force and actor_role ~= 'owner' and made_by_owner(redis.call('HGET', KEYS[21], ARGV[4]), 4) then
    return {'owners'}
  end
  lift(ARGV[4])
  if not in_force then return {'no_ban'} end
  return {'ok'}
end

if op == 'bans' then
  -- ARGV: 3 the actor's user id (the owner or a moderator).
  local actor = ARGV[3]
  local actor_role, refused = moderating(actor)
  if refused then return refused end
  local bans = {}
  for _, uid in ipairs(redis.call('HKEYS', KEYS[21])) do
    if string.sub(uid, 1, 1) ~= '#' and ban_of(uid) then
      bans[#bans + 1] = redis.call('HGET', KEYS[21], uid)
    end
  end
  return {'ok', bans}
end

if op == 'mute' then
  -- ARGV: 3 the actor's user id, 4 the target's user id ('' when named),
  --       5 the target's name key ('' when by id), 6 for how long (ms; 0
  --       until lifted; -1: unmute), 7 the most mutes kept, 8 a shadow
  --       mute (1|0: their posts reach only themselves, nobody is told).
  -- The owner mutes anyone else; a moderator, a plain member. Anyone
  -- muted (a member or not) may be unmuted by id.
  local actor = ARGV[3]
  local actor_role, refused = moderating(actor)
  if refused then return refused end
  local by = redis.call('HGET', KEYS[2], actor)
  if ARGV[6] == '-1' then
    local target = ARGV[4]
    if target == '' then target = named_member('', ARGV[5]) end
    if not target then return {'no_member'} end
    local muted = redis.call('HGET', KEYS[23], target)
    if not muted then return {'no_mute'} end
    if target == actor and actor_role ~= 'owner' then return {'self_unmute'} end
    if actor_role ~= 'owner' and made_by_owner(muted, 2) then return {'owners'} end
    redis.call('HDEL', KEYS[23], target)
    refresh_policy()
    local u = tonumber(string.match(muted, '^(%d+)'))
    if u ~= 0 and u <= now_ms() then return {'no_mute'} end
    -- "until\nby\nuser\nshadow": a shadow mute ends unheard of too.
    local user, shadow = string.match(muted, '^%d+\n[^\n]*\n([^\n]*)\n?([01]?)$')
    if shadow ~= '1' then
      redis.call('PUBLISH', CHANNEL, code .. ' 0 u 0 ' .. by .. '\t' .. user)
    end
    return {'ok'}
  end
  local target = named_member(ARGV[4], ARGV[5])
  if not target then return {'no_member'} end
  if target == actor then return {'self'} end
  local target_role = redis.call('HGET', KEYS[20], target)
  if target_role == 'owner' then return {'owner'} end
  if target_role == 'moderator' and actor_role ~= 'owner' then return {'moderator'} end
  if redis.call('HLEN', KEYS[23]) >= tonumber(ARGV[7]) and redis.call('HEXISTS', KEYS[23], target) == 0 then
    forget_expired_mutes()
    if redis.call('HLEN', KEYS[23]) >= tonumber(ARGV[7]) then return {'too_many'} end
  end
  local untilms = 0
  if tonumber(ARGV[6]) > 0 then untilms = now_ms() + tonumber(ARGV[6]) end
  local user = redis.call('HGET', KEYS[2], target)
  local shadow = ARGV[8] or '0'
  redis.call('HSET', KEYS[23], target, untilms .. '\n' .. by .. '\n' .. user .. '\n' .. shadow)
  refresh_policy()
  -- A shadow mute is heard of by nobody.
  if shadow ~= '1' then
    redis.call('PUBLISH', CHANNEL, code .. ' 0 u 1 ' .. by .. '\t' .. user)
  end
  return {'ok'}
end

if op == 'mutes' then
  -- ARGV: 3 the actor's user id (the owner or a moderator).
  local actor = ARGV[3]
  local actor_role, refused = moderating(actor)
  if refused then return refused end
  forget_expired_mutes()
  return {'ok', redis.call('HVALS', KEYS[23])}
end

if op == 'slow' or op == 'title' then
  -- ARGV: 3 the actor's user id (the owner or a moderator), 4 the slow
  --       mode (ms between one member's posts; 0 off) or the new title.
  local actor = ARGV[3]
  local actor_role, refused = moderating(actor)
  if refused then return refused end
  local user = redis.call('HGET', KEYS[2], actor)
  if op == 'slow' then
    if (redis.call('HGET', KEYS[1], 'slow') or '0') == ARGV[4] then return {'ok', 0} end
    redis.call('HSET', KEYS[1], 'slow', ARGV[4])
    redis.call('DEL', KEYS[24])
    refresh_policy()
    redis.call('PUBLISH', CHANNEL, code .. ' 0 w ' .. math.floor(tonumber(ARGV[4]) / 1000) .. ' ' .. user)
    return {'ok', 1}
  end
  local info = cjson.decode(redis.call('HGET', KEYS[1], 'json'))
  if info.title == ARGV[4] then return {'ok', 0} end
  info.title = ARGV[4]
  redis.call('HSET', KEYS[1], 'json', cjson.encode(info))
  redis.call('PUBLISH', CHANNEL, code .. ' 0 h ' .. user .. '\t' .. ARGV[4])
  return {'ok', 1}
end

if op == 'grant' then
  -- The operator gives a member a role (a board's moderators, or a room
  -- handed over: its owner becomes a moderator).
  -- ARGV: 3 the target's user id ('' when named), 4 its name key ('' when
  --       by id), 5 owner|moderator|member, 6 the room is a board (1|0).
  if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_found'} end
  local role = ARGV[5]
  if role == 'owner' and ARGV[6] == '1' then return {'board'} end
  local target = named_member(ARGV[3], ARGV[4])
  if not target then return {'no_member'} end
  local function give(uid, given)
    if (redis.call('HGET', KEYS[20], uid) or 'member') == given then return end
    if given == 'member' then
      redis.call('HDEL', KEYS[20], uid)
    else
      redis.call('HSET', KEYS[20], uid, given)
    end
    local user = redis.call('HGET', KEYS[2], uid)
    if user then redis.call('PUBLISH', CHANNEL, code .. ' 0 r ' .. given .. ' ' .. user) end
  end
  if role == 'owner' then
    local roles = redis.call('HGETALL', KEYS[20])
    for i = 1, #roles, 2 do
      if roles[i + 1] == 'owner' and roles[i] ~= target then give(roles[i], 'moderator') end
    end
  end
  give(target, role)
  local persistent = 1
  if redis.call('HGET', KEYS[1], 'eph') == '1' then persistent = 0 end
  return {'ok', redis.call('HGETALL', KEYS[20]), persistent}
end

if op == 'close' then
  -- The operator ends the room: every node closes its connections in it.
  -- Answers whether it was persistent (1|0).
  if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_found'} end
  local persistent = 1
  if redis.call('HGET', KEYS[1], 'eph') == '1' then persistent = 0 end
  local public = redis.call('SISMEMBER', KEYS[16], code)
  redis.call('PUBLISH', CHANNEL, code .. ' 0 x closed')
  destroy()
  return {'ok', persistent, public}
end

if op == 'delete' then
  -- ARGV: 3 the actor's user id, 4 the message's seq, 5 its author's user
  --       id, 6 its tombstone's JSON, 7 its "user|cid" key ('' none),
  --       8 the tombstone of a quote of it (JSON).
  -- Its author, the owner or a moderator deletes a message: its envelope
  -- in the window keeps its place with the tombstone in it, and so does
  -- what a retry of its cid is answered with; the replies that quote it
  -- quote its tombstone.
  local actor = ARGV[3]
  if acting(actor) == nil then return {'not_member'} end
  -- Its author; the owner, anyone's; a moderator, a plain member's.
  if actor ~= ARGV[5] then
    local role = redis.call('HGET', KEYS[20], actor)
    if not role or (role == 'moderator' and redis.call('HGET', KEYS[20], ARGV[5])) then
      return {'forbidden'}
    end
  end
  local n = tonumber(ARGV[4])
  local only = '-'
  local i, head, kind, tail, message = held(n)
  if i and message.from.id == ARGV[5] then
    redis.call('LSET', KEYS[9], i, head .. kind .. tail .. ARGV[6])
    if kind == 's' then only = ARGV[5] end
  end
  if ARGV[7] ~= '' then
    local first = redis.call('HGET', KEYS[11], ARGV[7])
    if first and cjson.decode(first).seq == n then
      redis.call('HSET', KEYS[11], ARGV[7], ARGV[6])
    end
  end
  -- A delete is rare: the window, and what retries of posts are answered
  -- with, are searched for quotes of it.
  local quote = cjson.decode(ARGV[8])
  local cids = redis.call('HGETALL', KEYS[11])
  for j = 1, #cids, 2 do
    if string.find(cids[j + 1], '"reply":', 1, true) then
      local reply = cjson.decode(cids[j + 1])
      if reply.reply and reply.reply.seq == n and not reply.reply.deleted then
        reply.reply = quote
        redis.call('HSET', KEYS[11], cids[j], cjson.encode(reply))
      end
    end
  end
  for j, envelope in ipairs(redis.call('LRANGE', KEYS[9], 0, -1)) do
    if string.find(envelope, '"reply":', 1, true) then
      local h, json = string.match(envelope, '^(%S+ %S+ [ms] %S+ %S+ %S+ )(.*)$')
      local reply = json and cjson.decode(json)
      if reply and reply.reply and reply.reply.seq == n and not reply.reply.deleted then
        reply.reply = quote
        redis.call('LSET', KEYS[9], j - 1, h .. cjson.encode(reply))
      end
    end
  end
  local rev = note_change(n)
  redis.call('PUBLISH', CHANNEL, code .. ' 0 d ' .. n .. ' ' .. rev .. ' ' .. only .. ' '
    .. redis.call('HGET', KEYS[2], actor))
  return {'ok', rev}
end

-- Message n as `actor` may change it (edit, react): nil and the refusal,
-- or its place in the window (as `held`) and the actor's mute ('shadow'
-- or nil).
local function changeable(actor, n)
  if acting(actor) == nil then return nil, {'not_member'} end
  local i, head, kind, tail, message = held(n)
  if not i then return nil, {'old'} end
  if kind == 's' and message.from.id ~= actor then return nil, {'gone'} end
  if message.deleted then return nil, {'deleted'} end
  local muted, left = muting(actor)
  if muted == 'muted' then return nil, {'muted', left} end
  return {i, head, kind, tail, message, muted}
end

if op == 'edit' then
  -- ARGV: 3 the actor's user id, 4 the message's seq, 5 its new text,
  --       6 the time of the edit.
  -- Its author edits a message the window holds (the node checked the
  -- edit window).
  local actor = ARGV[3]
  local found, refusal = changeable(actor, tonumber(ARGV[4]))
  if not found then return refusal end
  local i, head, kind, tail, message, muted = unpack(found)
  -- A shadow-muted member edits what only they see; their other messages
  -- are past editing, as far as they can tell.
  if muted == 'shadow' and kind ~= 's' then return {'over'} end
  if message.from.id ~= actor then return {'forbidden'} end
  if message.body == ARGV[5] then return {'same'} end
  message.body = ARGV[5]
  message.edited = ARGV[6]
  local json, rev = amend(i, head, kind, tail, message)
  redis.call('PUBLISH', CHANNEL, code .. ' 0 e ' .. rev .. ' ' .. kind .. ' ' .. json)
  return {'ok', rev, json}
end

if op == 'react' then
  -- ARGV: 3 the actor's user id, 4 the message's seq, 5 the emoji,
  --       6 the most different emoji on a message, 7 the most reactions of
  --       one member on it, 8 the most reactions on it.
  -- Puts the actor's emoji on a message the window holds, or takes it off
  -- (as confab_core::toggle_reaction).
  local actor = ARGV[3]
  local found, refusal = changeable(actor, tonumber(ARGV[4]))
  if not found then return refusal end
  local i, head, kind, tail, message, muted = unpack(found)
  local user_json = redis.call('HGET', KEYS[2], actor)
  local user = cjson.decode(user_json)
  local emoji = ARGV[5]
  local reactions = message.reactions or {}
  local at, total, yours = nil, 0, 0
  local on = 1
  for k, r in ipairs(reactions) do
    if r.emoji == emoji then at = k end
    total = total + #r.users
    for _, u in ipairs(r.users) do
      if u.id == actor then yours = yours + 1 end
    end
  end
  local mine = nil
  if at then
    for k, u in ipairs(reactions[at].users) do
      if u.id == actor then mine = k end
    end
  end
  if mine then
    table.remove(reactions[at].users, mine)
    reactions[at].count = #reactions[at].users
    if #reactions[at].users == 0 then table.remove(reactions, at) end
    on = 0
  else
    if total >= tonumber(ARGV[8]) then return {'limit', 'total'} end
    if yours >= tonumber(ARGV[7]) then return {'limit', 'yours'} end
    if at then
      table.insert(reactions[at].users, user)
      reactions[at].count = #reactions[at].users
    else
      if #reactions >= tonumber(ARGV[6]) then return {'limit', 'emoji'} end
      reactions[#reactions + 1] = {emoji = emoji, count = 1, users = {user}}
    end
  end
  -- A shadow-muted member's reaction to what others see is answered as
  -- if it were taken, and taken nowhere.
  if muted == 'shadow' and kind ~= 's' then return {'ok', 0, on, ''} end
  if #reactions > 0 then message.reactions = reactions else message.reactions = nil end
  local json, rev = amend(i, head, kind, tail, message)
  local only = '-'
  if kind == 's' then only = message.from.id end
  redis.call('PUBLISH', CHANNEL, code .. ' 0 a ' .. message.seq .. ' ' .. rev .. ' ' .. on .. ' '
    .. only .. ' ' .. emoji .. ' ' .. user_json)
  return {'ok', rev, on, json}
end

if op == 'role' then
  -- ARGV: 3 the actor's user id (a member, through the asking
  --       connection), 4 the target's user id ('' when named), 5 the
  --       target's name key ('' when by id), 6 owner|moderator|member.
  -- Only the owner gives roles; making another member the owner hands
  -- the room over, the old owner becoming a moderator.
  local actor = ARGV[3]
  local actor_role = acting(actor)
  if actor_role == nil then return {'not_member'} end
  if actor_role ~= 'owner' then return {'forbidden'} end
  local target = named_member(ARGV[4], ARGV[5])
  if not target then return {'no_member'} end
  local user = redis.call('HGET', KEYS[2], target)
  if target == actor then return {'own'} end
  local role = ARGV[6]
  if (redis.call('HGET', KEYS[20], target) or 'member') ~= role then
    if role == 'member' then
      redis.call('HDEL', KEYS[20], target)
    else
      redis.call('HSET', KEYS[20], target, role)
    end
    redis.call('PUBLISH', CHANNEL, code .. ' 0 r ' .. role .. ' ' .. user)
  end
  if role == 'owner' then
    redis.call('HSET', KEYS[20], actor, 'moderator')
    redis.call('PUBLISH', CHANNEL, code .. ' 0 r moderator ' .. redis.call('HGET', KEYS[2], actor))
  end
  return {'ok', redis.call('HGETALL', KEYS[20])}
end

return redis.error_reply('unknown op ' .. tostring(op))
