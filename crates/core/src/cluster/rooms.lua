-- The public rooms of the cluster: info JSON and member count of each.
-- Codes whose room is gone (an unjoined room that expired) are dropped.
local out = {}
for _, code in ipairs(redis.call('SMEMBERS', 'cf:public')) do
  local info = redis.call('HGET', 'cf:{' .. code .. '}:meta', 'json')
  if info then
    table.insert(out, info)
    table.insert(out, redis.call('HLEN', 'cf:{' .. code .. '}:mem'))
  else
    redis.call('SREM', 'cf:public', code)
    redis.call('SREM', 'cf:rooms', code)
  end
end
return out
