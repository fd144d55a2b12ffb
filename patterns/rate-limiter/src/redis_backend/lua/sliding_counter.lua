-- Sliding-window counter (see src/algorithm/sliding_counter.rs).
-- KEYS[1] = hash {w = current window start, p = previous count, c = current count}.
local s = redis.call('HMGET', KEYS[1], 'w', 'p', 'c')
local window, prev, cur = int(s[1]), int(s[2]), int(s[3])
now = max(now, window)
local start = idiv(now, period) * period
if start ~= window then
  if start == window + period then prev = cur else prev = 0 end
  cur = 0
end
local elapsed = now - start
if prev * (period - elapsed) + (cur + 1) * period <= limit * period then
  cur = cur + 1
  local reset = start + 2 * period - now
  redis.call('HSET', KEYS[1], 'w', fmt(start), 'p', fmt(prev), 'c', fmt(cur))
  redis.call('PEXPIRE', KEYS[1], ttl_ms(reset))
  return {1, idiv(limit * period - prev * (period - elapsed) - cur * period, period), reset, 0}
end
local reset = start + period - now
if cur > 0 then reset = reset + period end
-- The first instant one more request fits (see earliest_admission in the Rust file).
local earliest
if cur < limit and prev > 0 then
  local e = max(period - idiv((limit - cur - 1) * period, prev), 0)
  if e < period then earliest = start + e end
end
if not earliest then
  if cur == 0 then
    earliest = start + period
  else
    earliest = start + period + max(period - idiv((limit - 1) * period, cur), 0)
  end
end
return {0, 0, reset, max(earliest, now + 1) - now}
