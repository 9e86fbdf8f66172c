-- Reserve the next free slot of one paced call stream (see reliability/ratelimit.py).
-- KEYS[1]  the stream's key: a string holding the next free slot, Redis microseconds
-- ARGV[1]  interval between slots (us)   ARGV[2] longest acceptable wait (us)   ARGV[3] key TTL (ms)
-- ARGV[4]  slots wanted (default 1): the next free one and as many following ones as are within ARGV[2]
-- Returns {1, wait_us, slot_us, n} when n >= 1 slots were reserved (the first after wait_us),
--         {0, wait_us, 0, 0} when the next free slot is further away than ARGV[2] (nothing reserved).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local next_at = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local slot = math.max(now, next_at)
local wait = slot - now
if wait > max_wait then
  return {0, wait, 0, 0}
end
local count = math.max(1, math.min(tonumber(ARGV[4] or '1') or 1, math.floor((max_wait - wait) / interval) + 1))
redis.call('SET', KEYS[1], string.format('%d', slot + count * interval), 'PX', tonumber(ARGV[3]))
return {1, wait, slot, count}
