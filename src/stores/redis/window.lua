-- llm-edge-cache: one check of a tenant's per-minute limits and spend budgets (v2).
-- KEYS: requests this window, requests previous window, tokens this window, tokens previous
-- window; with budgets also spend today and spend this month (nano-dollars).
-- ARGV: request limit (0: none), token limit (0: none), token estimate, previous window's weight
-- (parts per million), counter expiry (ms), 1 when the token limit also refuses, then the spend
-- at which today's and this month's budgets refuse (0: they do not).
local function n(v) return tonumber(v or '0') or 0 end
local rc, rp = n(redis.call('GET', KEYS[1])), n(redis.call('GET', KEYS[2]))
local tc, tp = n(redis.call('GET', KEYS[3])), n(redis.call('GET', KEYS[4]))
local sd, sm = 0, 0
if #KEYS >= 6 then sd, sm = n(redis.call('GET', KEYS[5])), n(redis.call('GET', KEYS[6])) end
local rl, tl, cost, w = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local dl, ml = n(ARGV[7]), n(ARGV[8])
local ok = 1
if rl > 0 and math.floor(rp * w / 1000000) + rc + 1 > rl then ok = 0 end
if ARGV[6] == '1' and tl > 0 and math.floor(tp * w / 1000000) + tc + cost > tl then ok = 0 end
if (dl > 0 and sd >= dl) or (ml > 0 and sm >= ml) then ok = 0 end
if ok == 1 and rl > 0 then
  rc = redis.call('INCR', KEYS[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
return {ok, rc, rp, tc, tp, sd, sm}
