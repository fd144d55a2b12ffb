-- Leaky bucket as a meter (see src/algorithm/leaky_bucket.rs). KEYS[1] = hash {x = level, t = last}.
local s = redis.call('HMGET', KEYS[1], 'x', 't')
local level, last = int(s[1]), int(s[2])
local elapsed = 0
if now > last then elapsed = now - last end
level = max(level - elapsed, 0)
local capacity = burst * interval
local poured = level + interval
if poured > capacity then
  return {0, 0, level, poured - capacity}
end
redis.call('HSET', KEYS[1], 'x', fmt(poured), 't', fmt(max(last, now)))
redis.call('PEXPIRE', KEYS[1], ttl_ms(poured))
return {1, idiv(capacity - poured, interval), poured, 0}
