-- GCRA (see src/algorithm/gcra.rs). KEYS[1] = string holding the TAT in µs.
local tau = burst * interval
local tat = max(int(redis.call('GET', KEYS[1])), now)
local new_tat = tat + interval
local allow_at = new_tat - tau
if now < allow_at then
  return {0, 0, tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], fmt(new_tat), 'PX', ttl_ms(new_tat - now))
return {1, idiv(tau - (new_tat - now), interval), new_tat - now, 0}
