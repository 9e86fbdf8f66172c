local key = KEYS[1]
-- The config arguments (FT, REC, ... TTL, and NARGS, their count) are read into locals by the
-- header reliability/breaker/knobs.py writes before this prelude (knobs.STORE_ARGS, declared once).
local HINT_MS = 1000

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_sec = math.floor(now / 1000)
local raw = redis.call('HGETALL', key)
local h = {}
for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end

local S = {
  st = h.st or 'closed', ep = tonumber(h.ep or '0'), inc = h.inc or '', ou = tonumber(h.ou or '-1'),
  tr = tonumber(h.tr or '0'), cf = tonumber(h.cf or '0'), hs = tonumber(h.hs or '0'),
  wt = tonumber(h.wt or '0'), wf = tonumber(h.wf or '0'), ws = tonumber(h.ws or '0'),
  wi = tonumber(h.wi or '0'), wk = h.wk or '',
}
local sig = WTYPE .. ':' .. W
local dirty = false
local ring = nil        -- count window as a table of bytes (48 + code), loaded on demand
local ring_dirty = false
local buckets = nil     -- time window buckets, loaded on demand
local leases = nil      -- token -> deadline, loaded on demand
local events = {}

local function get_leases()
  if leases == nil then
    leases = (S.st == 'half_open' and h.pl and h.pl ~= '') and cjson.decode(h.pl) or {}
  end
  return leases
end

local function reset_window()
  S.wt, S.wf, S.ws, S.wi, S.wk = 0, 0, 0, 0, sig
  ring, buckets = {}, {}
  for i = 1, (WTYPE == 'count') and W or 0 do ring[i] = 48 end
  ring_dirty = true
  dirty = true
end

local function load_ring()
  if ring ~= nil then return end
  ring = {}
  local s = h.wr or ''
  if #s == W then
    for i = 1, W, 4000 do
      local chunk = {string.byte(s, i, math.min(i + 3999, W))}
      for j = 1, #chunk do ring[i + j - 1] = chunk[j] end
    end
  else
    for i = 1, W do ring[i] = 48 end
  end
end

local function load_buckets()
  if buckets ~= nil then return end
  local decoded = (h.wb and h.wb ~= '') and cjson.decode(h.wb) or {}
  buckets = {}
  for _, b in ipairs(decoded) do
    if b[1] > now_sec - W then
      buckets[#buckets + 1] = b
    else
      S.wt, S.wf, S.ws = S.wt - b[2], S.wf - b[3], S.ws - b[4]
      dirty = true
    end
  end
end

if S.wk ~= sig then
  if h.st then reset_window() else S.wk = sig end
elseif WTYPE == 'time' then
  load_buckets()
end

local function add(code, n)
  local fail = (code % 2 == 0) and 1 or 0
  local slow = (code >= 3) and 1 or 0
  if WTYPE == 'count' then
    load_ring()
    local i = S.wi + 1
    local old = ring[i] - 48
    if old > 0 then
      S.wt = S.wt - 1
      if old % 2 == 0 then S.wf = S.wf - 1 end
      if old >= 3 then S.ws = S.ws - 1 end
    end
    ring[i] = 48 + code
    ring_dirty = true
    S.wi = i % W
  else
    load_buckets()
    local last = buckets[#buckets]
    if last == nil or last[1] < now_sec then
      last = {now_sec, 0, 0, 0}
      buckets[#buckets + 1] = last
    end
    last[2], last[3], last[4] = last[2] + n, last[3] + fail * n, last[4] + slow * n
  end
  S.wt, S.wf, S.ws = S.wt + n, S.wf + fail * n, S.ws + slow * n
  if fail == 1 then S.cf = S.cf + n else S.cf = 0 end
  dirty = true
end

local function trip_reason()
  if FT > 0 and S.cf >= FT then return 'consecutive_failures' end
  if S.wt >= MINR then
    if S.wf * 100.0 >= FRT * S.wt then return 'failure_rate' end
    if S.ws * 100.0 >= SRT * S.wt then return 'slow_call_rate' end
  end
  return nil
end

local function rates()
  if S.wt <= 0 then return 0.0, 0.0 end
  return 100.0 * S.wf / S.wt, 100.0 * S.ws / S.wt
end

local function transition(to, reason)
  local fr, sr = rates()
  -- ou: when OPEN / FORCED_OPEN ends, or when a timed DISABLED / METRICS_ONLY ends (-1: no end)
  local open_until = -1
  if to ~= 'closed' and to ~= 'half_open' then open_until = S.ou else S.ou = -1 end
  events[#events + 1] = {S.st, to, reason, string.format('%.6f', fr), string.format('%.6f', sr),
                         now, open_until}
  S.st = to
  S.ep = S.ep + 1
  S.cf, S.hs = 0, 0
  leases = {}
  reset_window()
end

local function open_ms(trips)
  local d = REC
  if MULT ~= 1.0 and trips > 1 then d = REC * MULT ^ (trips - 1) end
  if d > CAP then d = CAP end
  return math.floor(d * 1000 + 0.5)
end

local function trip(reason)
  S.tr = S.tr + 1
  S.ou = now + open_ms(S.tr)
  transition('open', reason)
end

-- A run of fast successes in a count window: inline loop; only reaching minimum_requests can trip.
local function success_run(n)
  load_ring()
  local wi, wt, wf, ws = S.wi, S.wt, S.wf, S.ws
  for _ = 1, n do
    local i = wi + 1
    local old = ring[i]
    ring[i] = 49
    wi = i % W
    if old == 48 then
      wt = wt + 1
      if wt == MINR then
        S.wi, S.wt, S.wf, S.ws, S.cf = wi, wt, wf, ws, 0
        local reason = trip_reason()
        if reason then
          if S.st == 'closed' then trip(reason) return false end
          transition('metrics_only', 'would_trip:' .. reason)
          wi, wt, wf, ws = 0, 0, 0, 0
        end
      end
    elseif old ~= 49 then
      if old == 50 or old == 52 then wf = wf - 1 end
      if old >= 51 then ws = ws - 1 end
    end
  end
  S.wi, S.wt, S.wf, S.ws, S.cf = wi, wt, wf, ws, 0
  ring_dirty, dirty = true, true
  return true
end

-- Apply one outcome run; false once the breaker no longer records (tripped).
local function apply_run(code, n)
  if S.st ~= 'closed' and S.st ~= 'metrics_only' then return false end
  if code == 1 then
    if WTYPE == 'count' then return success_run(n) end
    if S.wt >= MINR or S.wt + n < MINR then
      add(code, n)  -- fast successes that cannot cross minimum_requests cannot trip anything
      return true
    end
  end
  for _ = 1, n do
    add(code, 1)
    local reason = trip_reason()
    if reason then
      if S.st == 'closed' then trip(reason) return false end
      transition('metrics_only', 'would_trip:' .. reason)
    end
  end
  return true
end

local function apply_aggregate(calls, failures, slow)
  if S.st ~= 'closed' and S.st ~= 'metrics_only' or calls <= 0 then return end
  load_buckets()
  local last = buckets[#buckets]
  if last == nil or last[1] < now_sec then
    last = {now_sec, 0, 0, 0}
    buckets[#buckets + 1] = last
  end
  last[2], last[3], last[4] = last[2] + calls, last[3] + failures, last[4] + slow
  S.wt, S.wf, S.ws = S.wt + calls, S.wf + failures, S.ws + slow
  dirty = true
  local reason = trip_reason()
  if reason then
    if S.st == 'closed' then trip(reason) else transition('metrics_only', 'would_trip:' .. reason) end
  end
end

local function expire_probes()
  if S.st ~= 'half_open' then return false end
  for _, deadline in pairs(get_leases()) do
    if deadline <= now then
      trip('probe_timeout')
      return true
    end
  end
  return false
end

-- A timed staff override whose time is up ends here, whichever script runs first (once cluster-wide).
local function end_overrides()
  if S.ou < 0 or now < S.ou then return end
  if S.st == 'forced_open' then
    transition('half_open', 'forced_open_expired')
  elseif S.st == 'disabled' or S.st == 'metrics_only' then
    transition('closed', S.st .. '_expired')
  end
end

local function is_override(st)
  return st == 'forced_open' or st == 'disabled' or st == 'metrics_only'
end

-- A staff override never expires with the key (key_ttl only collects idle automatic state).
local function save()
  if not dirty then
    if h.st and is_override(S.st) then redis.call('PERSIST', key) end
    return
  end
  if S.inc == '' then S.inc = t[1] .. '.' .. t[2] end
  local L = get_leases()
  local pl = next(L) and cjson.encode(L) or ''
  local f = {'st', S.st, 'ep', S.ep, 'inc', S.inc, 'ou', S.ou, 'tr', S.tr, 'cf', S.cf, 'hs', S.hs,
             'wt', S.wt, 'wf', S.wf, 'ws', S.ws, 'wi', S.wi, 'wk', S.wk, 'pl', pl}
  if WTYPE == 'count' then
    if ring_dirty then
      local parts = {}
      for i = 1, W, 4000 do parts[#parts + 1] = string.char(unpack(ring, i, math.min(i + 3999, W))) end
      f[#f + 1] = 'wr'
      f[#f + 1] = table.concat(parts)
    end
  elseif buckets ~= nil then
    f[#f + 1] = 'wb'
    f[#f + 1] = (#buckets > 0) and cjson.encode(buckets) or ''
  end
  redis.call('HSET', key, unpack(f))
  if is_override(S.st) then redis.call('PERSIST', key) else redis.call('PEXPIRE', key, TTL) end
end

local function result(kind, extra)
  local remaining = -1
  if S.st == 'open' or S.st == 'forced_open' then
    if S.ou >= 0 then remaining = math.max(0, S.ou - now) else remaining = -2 end
  elseif S.ou >= 0 and is_override(S.st) then
    remaining = math.max(0, S.ou - now)  -- time left of a timed DISABLED / METRICS_ONLY
  end
  local n = 0
  if S.st == 'half_open' then for _ in pairs(get_leases()) do n = n + 1 end end
  local out = {kind, S.st, S.ep, S.inc, remaining, now, S.cf, S.wt, S.wf, S.ws, S.tr, n, extra, #events}
  for _, e in ipairs(events) do
    for _, v in ipairs(e) do out[#out + 1] = v end
  end
  return out
end
