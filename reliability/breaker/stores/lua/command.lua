end_overrides()
local op, reason, dur = ARGV[NARGS + 1], ARGV[NARGS + 2], tonumber(ARGV[NARGS + 3])
if op == 'reset' or op == 'force_close' then
  S.tr = 0
  transition('closed', reason)
elseif op == 'force_open' then
  if dur >= 0 then S.ou = now + dur else S.ou = -1 end
  transition('forced_open', reason)
elseif op == 'disable' or op == 'metrics_only' then
  if dur >= 0 then S.ou = now + dur else S.ou = -1 end
  if op == 'disable' then transition('disabled', reason) else transition('metrics_only', reason) end
else
  return redis.error_reply('unknown breaker command ' .. op)
end
save()
return result('done', 0)
