-- Prepended to every limiter script.
--
-- ARGV[1] = "" to use the Redis server clock (TIME), or an explicit now in µs (tests only);
-- ARGV[2..5] = limit, period (µs), burst, interval (µs), all validated by Quota in Rust.
-- Every number stays an integer below 2^53 (Quota::MAX_PRODUCT_MICROS), where Lua's doubles
-- are exact, and values are written with '%d' because Lua's tostring keeps only 14 digits.

local function idiv(a, b)
  -- floor(a / b) for integers, corrected for the one-ulp rounding of the double division.
  local q = math.floor(a / b)
  if q * b > a then
    q = q - 1
  elseif (q + 1) * b <= a then
    q = q + 1
  end
  return q
end

local function int(v)
  if v then return tonumber(v) end
  return 0
end

local function fmt(x)
  return string.format('%d', x)
end

local function max(a, b)
  if a > b then return a end
  return b
end

local test_clock = ARGV[1] ~= nil and ARGV[1] ~= ''
local now
if test_clock then
  now = tonumber(ARGV[1])
else
  -- One clock for every instance: the Redis server's. (Scripts replicate their effects, so
  -- reading TIME in a script is allowed since Redis 5 and the default since Redis 7.)
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local limit = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local interval = tonumber(ARGV[5])

local function ttl_ms(us)
  -- The key expires when its state would be indistinguishable from no state. With a test
  -- clock, virtual time and Redis' real expiry clock are unrelated, so keep keys for 10 min.
  if test_clock then return 600000 end
  return max(idiv(us + 999, 1000), 1)
end
