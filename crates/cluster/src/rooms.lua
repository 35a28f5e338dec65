-- The public rooms of the cluster: info JSON and member count of each.
-- Codes whose room is gone (an unjoined room that expired) are dropped.
-- ARGV[1] is the namespace of the keys.
local ns = ARGV[1]
local out = {}
for _, code in ipairs(redis.call('SMEMBERS', ns .. ':public')) do
  local info = redis.call('HGET', ns .. ':{' .. code .. '}:meta', 'json')
  if info then
    table.insert(out, info)
    local mem = ns .. ':{' .. code .. '}:mem'
    -- Less mem's "#j" and "#p" (room.lua), which are not members.
    table.insert(out, redis.call('HLEN', mem) - redis.call('HEXISTS', mem, '#j')
      - redis.call('HEXISTS', mem, '#p'))
  else
    redis.call('SREM', ns .. ':public', code)
    redis.call('SREM', ns .. ':rooms', code)
  end
end
return out
