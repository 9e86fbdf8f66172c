expire_probes()
if S.st == 'open' and now >= S.ou then transition('half_open', 'recovery_timeout_elapsed') end
end_overrides()
local kind, extra = 'pass', 0
if S.st == 'half_open' then
  local L = get_leases()
  local n, earliest = 0, nil
  for _, d in pairs(L) do
    n = n + 1
    if earliest == nil or d < earliest then earliest = d end
  end
  if n < HOM then
    L[ARGV[NARGS + 1]] = now + math.floor(HOW * 1000 + 0.5)
    dirty = true
    kind = 'probe'
  else
    kind, extra = 'reject', math.min(earliest - now, HINT_MS)
  end
elseif S.st == 'open' then
  kind, extra = 'reject', S.ou - now
elseif S.st == 'forced_open' then
  kind = 'reject'
  if S.ou >= 0 then extra = S.ou - now else extra = math.floor(REC * 1000) end
end
save()
return result(kind, extra)
