-- GCRA (see src/algorithm/gcra.rs) for one or more decisions in one atomic call.
-- KEYS[i] = string holding a key's TAT in µs; the same key may appear several times.
--
-- The hot path, so unlike the other scripts this one is standalone (no common.lua: no helper
-- closures created per call) and does the least a decision needs: one TIME per call, then a
-- GET per decision and a SET only when admitting.
--
-- Several decisions per call is how RedisLimiter coalesces concurrent requests (see
-- src/redis_backend/coalesce.rs): the decisions run in KEYS order, and a key listed twice sees
-- its own earlier write, so the result is exactly that of the same requests sent one by one.
--
-- ARGV[1] = "" to use the Redis server clock (TIME), or an explicit now in µs (tests only);
-- ARGV[2] = interval (µs), ARGV[3] = τ = burst × interval (µs), both validated by Quota.
-- Every number stays an integer below 2^53 (Quota::MAX_PRODUCT_MICROS), where Lua's doubles
-- are exact. The TAT goes to SET as a number, not through tostring (which keeps only 14
-- digits): redis.call converts number arguments itself, exactly for integers below 2^53
-- (fpconv_dtoa since Redis 7.0, '%.17g' before), with no string.format per decision.
--
-- Returns one integer per key, in KEYS order:
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
-- One MGET for the whole call; a key listed again continues from its updated TAT (`tats`),
-- and each admitted key is written once, with its last TAT, after the loop.
local stored = redis.call('MGET', unpack(KEYS))
local tats = {}
local replies = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local tat = tats[key] or tonumber(stored[i])
  if tat == nil or tat < now then
    tat = now
  end
  local new_tat = tat + interval
  if now < new_tat - tau then
    replies[i] = now - tat
  else
    tats[key] = new_tat
    replies[i] = new_tat - now
  end
end
for key, new_tat in pairs(tats) do
  -- The key expires when its state would be indistinguishable from no state (ceil to whole
  -- ms; exact, as the quotient is far from the 2^53 limit). Under a test clock, virtual time
  -- says nothing about real expiry: keep the key 10 min.
  local px = 600000
  if not test_clock then
    px = math.ceil((new_tat - now) / 1000)
  end
  redis.call('SET', key, new_tat, 'PX', px)
end
return replies
