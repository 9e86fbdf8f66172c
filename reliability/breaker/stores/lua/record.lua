local lost = ARGV[NARGS + 1] ~= '' and ARGV[NARGS + 1] ~= S.inc
-- The caller knew a hash that is gone (restart without persistence, FLUSHALL, expiry): this script
-- recreates it, and its caller alone reports the inferred transition (extra = 1).
local noticed = 0
if lost and not h.st then
  noticed = 1
  dirty = true
end
expire_probes()
end_overrides()
local force = ARGV[NARGS + 2] == '-1' or lost
if ARGV[NARGS + 3] ~= '' and (force or tonumber(ARGV[NARGS + 2]) == S.ep) then
  for entry in string.gmatch(ARGV[NARGS + 3], '[^,]+') do
    if string.sub(entry, 1, 1) == 'a' then
      local c, f, s = string.match(entry, '^a:(%d+):(%d+):(%d+)$')
      apply_aggregate(tonumber(c), tonumber(f), tonumber(s))
    else
      local code, n = string.match(entry, '^(%d):(%d+)$')
      if not apply_run(tonumber(code), tonumber(n)) then break end
    end
  end
end
local hint = tonumber(ARGV[NARGS + 4])
if force and hint >= 0 then
  if S.st == 'closed' then
    S.tr = S.tr + 1
    S.ou = now + hint
    transition('open', 'fallback_open_reconciled')
  elseif S.st == 'open' and now + hint > S.ou then
    S.ou = now + hint
    dirty = true
  end
end
-- ARGV[NARGS + 5] (optional): the caller saw a staff force-open (ms left, -2 without end, -1 none). If Redis
-- lost the state, the force is re-asserted at once, before any process admits a call.
local forced = tonumber(ARGV[NARGS + 5] or '-1')
if lost and forced ~= -1 and S.st == 'closed' then
  if forced >= 0 then S.ou = now + forced else S.ou = -1 end
  transition('forced_open', 'forced_open re-asserted: shared state lost')
end
save()
return result('sync', noticed)
