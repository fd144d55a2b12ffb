-- Sliding-window log (see src/algorithm/sliding_log.rs).
-- KEYS[1] = sorted set of admitted requests scored by µs; KEYS[2] = member sequence counter.
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if newest[2] then now = max(now, tonumber(newest[2])) end
-- An entry at t counts while t + period > now: drop every t <= now - period.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now - period))
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  local seq = redis.call('INCR', KEYS[2])
  redis.call('ZADD', KEYS[1], fmt(now), seq)
  local ttl = ttl_ms(period)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  return {1, limit - count - 1, period, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, 0, tonumber(newest[2]) + period - now, tonumber(oldest[2]) + period - now}
