-- What concerns every room of a shard at once. ARGV[1] is the namespace of
-- the keys, ARGV[2] what to do:
--   'public' (or none): the public rooms: info JSON and member count of
--       each. Codes whose room is gone (an unjoined room that expired) are
--       dropped.
--   'all': the same for every room.
--   'announce': ARGV[3] is told to every room ("C 0 n <text>"); how many.
--   'purge': every message of user ARGV[3] held here (each room's window
--       and remembered cids) becomes a tombstone, each a change of its
--       room (as room.lua's delete notes one), and each room that held any
--       or knows the user is told ("C 0 p <user id>[ <its change number>]",
--       the number when it held any); how many rooms, then the code and
--       change number of each room whose messages it purged.
local ns = ARGV[1]
local mode = ARGV[2] or 'public'
local channel = ns .. ':events'
local out = {}
local set = ns .. ':public'
if mode ~= 'public' then set = ns .. ':rooms' end

-- A message's JSON as a tombstone: its text gone, its place kept.
local function tombstone(json)
  local message = cjson.decode(json)
  message.body = ''
  message.subject = nil
  message.deleted = true
  message.edited = nil
  message.reactions = nil
  message.reply = nil
  return cjson.encode(message)
end

-- Notes one change of each message of `seqs` in `room`, under one change
-- number (room.lua's note_change, with the same CHANGES_KEPT); the room's
-- change number now.
local CHANGES_KEPT = 4096
local function note_changes(room, seqs)
  local rev = redis.call('HINCRBY', room .. 'meta', 'rev', 1)
  for i = 1, #seqs, 1000 do
    local pairs = {}
    for j = i, math.min(i + 999, #seqs) do
      pairs[#pairs + 1] = rev
      pairs[#pairs + 1] = seqs[j]
    end
    redis.call('ZADD', room .. 'chg', unpack(pairs))
  end
  local over = redis.call('ZCARD', room .. 'chg') - CHANGES_KEPT
  if over > 0 then
    -- meta's "rev0": the latest change number no longer kept.
    local lost = redis.call('ZRANGE', room .. 'chg', over - 1, over - 1, 'WITHSCORES')
    redis.call('HSET', room .. 'meta', 'rev0', lost[2])
    redis.call('ZREMRANGEBYRANK', room .. 'chg', 0, over - 1)
  end
  return rev
end

local told = 0
local purges = {}
for _, code in ipairs(redis.call('SMEMBERS', set)) do
  local room = ns .. ':{' .. code .. '}:'
  local info = redis.call('HGET', room .. 'meta', 'json')
  if not info then
    redis.call('SREM', ns .. ':public', code)
    redis.call('SREM', ns .. ':rooms', code)
  elseif mode == 'announce' then
    redis.call('PUBLISH', channel, code .. ' 0 n ' .. ARGV[3])
    told = told + 1
  elseif mode == 'purge' then
    local uid = ARGV[3]
    -- (An edited or reacted-to message's JSON is re-encoded by the room
    -- script, its fields in any order: a match is decoded to be sure.)
    local mark = '"id":"' .. uid .. '"'
    local touched = redis.call('HEXISTS', room .. 'vis', uid) == 1
    local purged = {}
    for i, envelope in ipairs(redis.call('LRANGE', room .. 'wl', 0, -1)) do
      local head, json = string.match(envelope, '^(%S+ %S+ [ms] %S+ %S+ %S+ )(.*)$')
      if json and string.find(json, mark, 1, true) then
        local message = cjson.decode(json)
        if message.from.id == uid and not message.deleted then
          redis.call('LSET', room .. 'wl', i - 1, head .. tombstone(json))
          purged[#purged + 1] = message.seq
          touched = true
        elseif message.reply and message.reply.from.id == uid and not message.reply.deleted then
          -- A reply quotes the user's message no more.
          message.reply.body = ''
          message.reply.deleted = true
          redis.call('LSET', room .. 'wl', i - 1, head .. cjson.encode(message))
        end
      end
    end
    local cids = redis.call('HGETALL', room .. 'cid')
    for i = 1, #cids, 2 do
      if string.sub(cids[i], 1, #uid + 1) == uid .. '|' then
        redis.call('HSET', room .. 'cid', cids[i], tombstone(cids[i + 1]))
      end
    end
    if touched then
      local rev = ''
      if #purged > 0 then
        local n = note_changes(room, purged)
        rev = ' ' .. n
        purges[#purges + 1] = code
        purges[#purges + 1] = n
      end
      redis.call('PUBLISH', channel, code .. ' 0 p ' .. uid .. rev)
      told = told + 1
    end
  else
    table.insert(out, info)
    local mem = room .. 'mem'
    -- Less mem's "#j" and "#p" (room.lua), which are not members.
    table.insert(out, redis.call('HLEN', mem) - redis.call('HEXISTS', mem, '#j')
      - redis.call('HEXISTS', mem, '#p'))
  end
end
if mode == 'announce' then return told end
if mode == 'purge' then
  table.insert(purges, 1, told)
  return purges
end
return out
