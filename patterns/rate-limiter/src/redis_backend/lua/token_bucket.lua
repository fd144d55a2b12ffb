-- Token bucket (see src/algorithm/token_bucket.rs). KEYS[1] = hash {u = used, t = last}.
local s = redis.call('HMGET', KEYS[1], 'u', 't')
local used, last = int(s[1]), int(s[2])
if now > last then
  local tokens = idiv(now - last, interval)
  if tokens >= used then
    used = 0
    last = now
  else
    used = used - tokens
    last = last + tokens * interval
  end
end
if used < burst then
  used = used + 1
  local reset = max(last + used * interval - now, 0)
  redis.call('HSET', KEYS[1], 'u', fmt(used), 't', fmt(last))
  redis.call('PEXPIRE', KEYS[1], ttl_ms(reset))
  return {1, burst - used, reset, 0}
end
return {0, 0, max(last + used * interval - now, 0), max(last + interval - now, 0)}
