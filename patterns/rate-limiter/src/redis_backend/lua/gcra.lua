-- GCRA (see src/algorithm/gcra.rs) for one or more decisions in one atomic call.
-- KEYS[i] = string holding a key's TAT in µs; the same key may appear several times.
--
-- The hot path, so unlike the other scripts this one is standalone (no common.lua: no helper
-- closures created per call) and does the least a decision needs: one TIME and one MGET per
-- call, then a SET per admitted key.
--
-- Several decisions per call is how RedisLimiter coalesces concurrent requests (see
-- src/redis_backend/coalesce.rs): the decisions run in KEYS order, and a key listed twice sees
-- its own earlier write, so the result is exactly that of the same requests sent one by one.
--
-- ARGV[1] = "" to use the Redis server clock (TIME), or an explicit now in µs (tests only);
-- ARGV[2] = interval (µs), ARGV[3] = τ = burst × interval (µs), both validated by Quota.
-- Every number stays an integer below 2^53 (Quota::MAX_PRODUCT_MICROS), where Lua's doubles
-- are exact. The TAT goes to SET through string.format('%d'), exact below 2^53 and an integer
-- print; a number argument would be printed by Redis 7.0 with '%.17g' (glibc's floating-point
-- printf, about a sixth of Redis's CPU time in a profile of the benchmark). tostring would keep
-- only 14 digits.
--
-- Expiry: a key lives until the end of the second its TAT falls in, E(tat), when its state is
-- already indistinguishable from no state. The script keeps one invariant for every key it
-- writes: the key's expiry is at least E(its stored TAT). So when the new TAT falls in the same
-- second as the stored one, the expiry already covers it and SET keeps it (KEEPTTL); only when
-- the TAT enters a new second, or the key is new, does SET move it (PXAT E(new TAT)). A hot
-- key moves its expiry about once a second instead of on every decision, and SET skips the
-- expiry update and the rewrite of a relative PX into PXAT that Redis does for replication:
-- together with the integer formatting, about a quarter less server time per decision.
-- (Anything else writing these keys must keep the invariant: a writer that sets a shorter TTL
-- could let a key expire before its TAT, which admits one extra burst for that key.)
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
-- and each admitted key is written once, with its last TAT, after the loop. `olds` keeps each
-- key's stored TAT (false when it has none), for the expiry rule above.
local stored = redis.call('MGET', unpack(KEYS))
local tats = {}
local olds = {}
local replies = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local tat = tats[key]
  if tat == nil then
    tat = tonumber(stored[i]) or false
    olds[key] = tat
  end
  if not tat or tat < now then
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
  local value = string.format('%d', new_tat)
  if test_clock then
    -- Virtual time says nothing about real expiry: keep the key 10 min.
    redis.call('SET', key, value, 'PX', 600000)
  else
    local second = math.floor(new_tat / 1000000)
    local old = olds[key]
    if old and math.floor(old / 1000000) == second then
      redis.call('SET', key, value, 'KEEPTTL')
    else
      redis.call('SET', key, value, 'PXAT', string.format('%d', (second + 1) * 1000))
    end
  end
end
return replies
