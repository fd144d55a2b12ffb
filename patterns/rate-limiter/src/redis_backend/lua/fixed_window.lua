-- Fixed window (see src/algorithm/fixed_window.rs). KEYS[1] = hash {w = window start, c = count}.
local s = redis.call('HMGET', KEYS[1], 'w', 'c')
local window, count = int(s[1]), int(s[2])
now = max(now, window)
local start = idiv(now, period) * period
if start ~= window then
  window = start
  count = 0
end
local reset = window + period - now
if count < limit then
  count = count + 1
  redis.call('HSET', KEYS[1], 'w', fmt(window), 'c', fmt(count))
  redis.call('PEXPIRE', KEYS[1], ttl_ms(reset))
  return {1, limit - count, reset, 0}
end
return {0, 0, reset, reset}
