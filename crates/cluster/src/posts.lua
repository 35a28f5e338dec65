-- Posts to ephemeral rooms, several in one call (a node sends what its
-- connections posted while its previous call was under way). Each post is
-- done exactly as room.lua's `post` does it, one after the other, so
-- their order and their `seq`s are what one call each would give; the
-- batch shares the call and one publish.
--
-- ARGV: 1 the events channel, 2 window, 3 remembered cids, then 5 per post:
--       room code, user id, "node conn reply", cid ('' none),
--       message JSON without its seq, from its first field on (",...}")
-- KEYS: 7 per post, of its room: mem, meta, seq, ev, wl, cid, cido
-- Reply: per post {'ok', seq} | {'dup', message JSON} | {'not_member'}
--        | {'not_found'}. The envelopes go out in one PUBLISH, one per
--        line (JSON holds no raw newline).

local channel = ARGV[1]
local window = tonumber(ARGV[2])
local cids_kept = tonumber(ARGV[3])
local results = {}
local envelopes = {}
local posts = (#ARGV - 3) / 5

for i = 0, posts - 1 do
  local a = 3 + i * 5
  local k = i * 7
  local code, uid, origin, cid, tail = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5]
  local mem, meta, seq, ev, wl, cids, cido =
    KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5], KEYS[k + 6], KEYS[k + 7]
  local result
  if redis.call('HEXISTS', mem, uid) == 0 then
    if redis.call('EXISTS', meta) == 0 then result = {'not_found'} else result = {'not_member'} end
  else
    local key = uid .. '|' .. cid
    local first = false
    if cid ~= '' then first = redis.call('HGET', cids, key) end
    if first then
      result = {'dup', first}
    else
      local n = redis.call('INCR', seq)
      local message = '{"seq":' .. n .. tail
      if cid ~= '' then
        redis.call('HSET', cids, key, message)
        if redis.call('RPUSH', cido, key) > cids_kept then
          redis.call('HDEL', cids, redis.call('LPOP', cido))
        end
      end
      local e = redis.call('INCR', ev)
      local envelope = code .. ' ' .. e .. ' m ' .. origin .. ' ' .. message
      -- The window holds the message's envelope: it is the event log too.
      if redis.call('RPUSH', wl, envelope) > window then redis.call('LPOP', wl) end
      envelopes[#envelopes + 1] = envelope
      result = {'ok', n}
    end
  end
  results[i + 1] = result
end

if #envelopes > 0 then redis.call('PUBLISH', channel, table.concat(envelopes, '\n')) end
return results
