local token = ARGV[NARGS + 1]
local code = tonumber(ARGV[NARGS + 2])
local kind = 'stale'
local held = S.st == 'half_open' and get_leases()[token] ~= nil
if held and not expire_probes() then
  kind = 'released'
  leases[token] = nil
  dirty = true
  if code == 2 or code == 4 then
    trip('probe_failed')
  elseif code == 3 then
    trip('probe_slow')
  elseif code == 1 then
    S.hs = S.hs + 1
    if S.hs >= ST then
      S.tr = 0
      transition('closed', 'probes_succeeded')
    end
  end
end
save()
return result(kind, 0)
