-- GCRA (see src/algorithm/gcra.rs). KEYS[1] = string holding the TAT in µs.
--
-- The hot path, so unlike the other scripts this one is standalone (no common.lua: no helper
-- closures created per call) and does the least a decision needs: TIME, GET, and SET only when
-- admitting.
--
-- ARGV[1] = "" to use the Redis server clock (TIME), or an explicit now in µs (tests only);
-- ARGV[2] = interval (µs), ARGV[3] = τ = burst × interval (µs), both validated by Quota.
-- Every number stays an integer below 2^53 (Quota::MAX_PRODUCT_MICROS), where Lua's doubles
-- are exact; the TAT is written with '%d' because Lua's tostring keeps only 14 digits.
--
-- Returns ONE integer, so Redis converts no reply table:
--   new_tat - now   (> 0) when admitted,
--   now - tat       (< 0) when denied (a denial implies tat > now).
-- RedisLimiter derives remaining and retry_after from it with the arithmetic of gcra.rs.
local test_clock = ARGV[1] ~= ''
local now
if test_clock then
  now = tonumber(ARGV[1])
else
  -- One clock for every instance: the Redis server's. (Arithmetic coerces TIME's strings;
  -- both parts are exact integers.)
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
end
local interval = tonumber(ARGV[2])
local tau = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local new_tat = tat + interval
if now < new_tat - tau then
  return now - tat
end
-- The key expires when its state would be indistinguishable from no state (ceil to whole ms;
-- exact, as the quotient is far from the 2^53 limit). Under a test clock, virtual time says
-- nothing about real expiry: keep the key 10 min.
local px = 600000
if not test_clock then
  px = math.ceil((new_tat - now) / 1000)
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', px)
return new_tat - now
