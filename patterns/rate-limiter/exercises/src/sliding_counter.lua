-- Exercise step 3 — the sliding-window counter as an atomic Redis script (see exercises/step3.md).
--
-- common.lua is prepended: you have now, limit, period, burst, interval, test_clock and the
-- helpers idiv, int, fmt, max, ttl_ms. KEYS[1] is a hash {w = window start, p = previous
-- count, c = current count}. Return {allowed (0/1), remaining, reset_after_us, retry_after_us}
-- exactly as src/algorithm/sliding_counter.rs computes them.
return redis.error_reply('step 3: implement the sliding-window counter script')
