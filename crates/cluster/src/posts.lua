-- Posts to ephemeral rooms, several in one call (a node sends what its
-- connections posted while its previous call was under way). Each post is
-- done exactly as room.lua's `post` does it, one after the other, so
-- their order and their `seq`s are what one call each would give; the
-- batch shares the call and one publish.
--
-- The script is on the hot path of every post, and what Redis spends on
-- it bounds a shard, so it is lean: a post passes five arguments and no
-- KEYS (each declared key is one more string for Redis to read and Lua to
-- intern); the room's keys are built here, the same names as
-- `connection::keys`, all in the room's `{code}` hash slot. Shards are
-- picked by the client, not by Redis Cluster, so undeclared keys are safe.
--
-- ARGV: 1 the events channel, 2 window, 3 remembered cids, 4 the key
--       namespace, then 5 per post: room code, user id, "node conn reply",
--       cid ('' none), message JSON without its seq, from its first field
--       on (",...}")
-- Reply: per post the message's seq (> 0; a shadow-muted member's post
--        is published as "C ev s …", for their own connections only); 0
--        not a member; -1 no such room; for a cid seen before, the JSON of the message it posted;
--        or, for a post a mute or slow mode holds off, "!muted <ms left,
--        -1 until lifted>" or "!slow <every ms> <ms left>". The envelopes go out in one PUBLISH, one per line (JSON
--        holds no raw newline).

local channel = ARGV[1]
local window = tonumber(ARGV[2])
-- How far the window may grow past `window` before it is cut back.
local SLACK = 64
local cids_kept = tonumber(ARGV[3])
local ns = ARGV[4]
local results = {}
local envelopes = {}
local posts = (#ARGV - 4) / 5

-- Whether `uid` may post now in `room`, whose mem "#p" is `slow`: nil, or
-- the refusal. A post it lets through is noted for slow mode. (room.lua's
-- `policy` does the same for persistent rooms.)
local function policy(room, uid, slow)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local muted = redis.call('HGET', room .. 'mute', uid)
  if muted then
    local u = tonumber(string.match(muted, '^(%d+)'))
    -- Shadow-muted ("…\n1" at its end): posted, marked, theirs only.
    if (u == 0 or u > now) and string.sub(muted, -2) == '\n1' then return 'shadow' end
    if u == 0 then return '!muted -1' end
    if u > now then return '!muted ' .. (u - now) end
    -- Run out: gone, and "#p" with it when nothing else needs it.
    redis.call('HDEL', room .. 'mute', uid)
    if tonumber(slow) == 0 and redis.call('EXISTS', room .. 'mute') == 0 then
      redis.call('HDEL', room .. 'mem', '#p')
    end
  end
  slow = tonumber(slow)
  if slow > 0 and redis.call('HEXISTS', room .. 'roles', uid) == 0 then
    local last = tonumber(redis.call('HGET', room .. 'last', uid) or '0')
    if last + slow > now then return '!slow ' .. slow .. ' ' .. (last + slow - now) end
    redis.call('HSET', room .. 'last', uid, now)
  end
  return nil
end

for i = 0, posts - 1 do
  local a = 4 + i * 5
  local code, uid, origin, cid, tail = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  local room = ns .. ':{' .. code .. '}:'
  local result
  -- Membership, and the joins and leaves so far (room.lua's "#j"): a
  -- room's event number is its seq plus those.
  local got = redis.call('HMGET', room .. 'mem', uid, '#j', '#p')
  if not got[1] then
    if redis.call('EXISTS', room .. 'meta') == 0 then result = -1 else result = 0 end
  else
    local key, first = nil, false
    if cid ~= '' then
      key = uid .. '|' .. cid
      first = redis.call('HGET', room .. 'cid', key)
    end
    -- A retry is answered before a mute or slow mode is looked at.
    local kind = ' m '
    if not first and got[3] then first = policy(room, uid, got[3]) end
    if first == 'shadow' then
      kind = ' s '
      first = false
    end
    if first then
      result = first
    else
      local n = redis.call('INCR', room .. 'seq')
      local e = n + tonumber(got[2] or '0')
      local envelope
      if key then
        local message = '{"seq":' .. n .. tail
        redis.call('HSET', room .. 'cid', key, message)
        if redis.call('RPUSH', room .. 'cido', key) > cids_kept then
          redis.call('HDEL', room .. 'cid', redis.call('LPOP', room .. 'cido'))
        end
        envelope = code .. ' ' .. e .. kind .. origin .. ' ' .. message
      else
        envelope = code .. ' ' .. e .. kind .. origin .. ' {"seq":' .. n .. tail
      end
      -- The window holds the message's envelope: it is the event log too.
      -- It is cut back to `window` once it is SLACK over, not by one at
      -- every post: one call a post fewer (the scripts read its length,
      -- never assume it).
      if redis.call('RPUSH', room .. 'wl', envelope) > window + SLACK then
        redis.call('LTRIM', room .. 'wl', -window, -1)
      end
      envelopes[#envelopes + 1] = envelope
      result = n
    end
  end
  results[i + 1] = result
end

if #envelopes > 0 then redis.call('PUBLISH', channel, table.concat(envelopes, '\n')) end
return results
