-- One deployment's rpm and tpm, shared by every router: two GCRA buckets (shared/gcra.lua, which
-- is prepended to this script) in one hash, checked and charged atomically. Nothing is charged on
-- a refusal.
--
-- KEYS[1]  the deployment's hash (shared/keys.ratelimit)
-- ARGV[1]  "acquire": one request and ARGV[4] tokens (an estimate, at most tpm) if both fit;
--          "settle": add ARGV[4] tokens to the tpm bucket unconditionally (negative: give back)
-- ARGV[2]  rpm, ARGV[3] tpm (0: that limit is off)
-- ARGV[5]  now in ms, or "" for the server's clock (one clock for all routers)
-- Returns {allowed 0|1, retry after in ms (whole, at least 1 when refused), "rpm"|"tpm"|"", tokens charged}
local rpm, tpm, amount = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now = gcra_now(ARGV[5])
local r, k = gcra_levels(KEYS[1], rpm, tpm, now)

local tokens = 0
if ARGV[1] == 'acquire' then
  if tpm > 0 then tokens = math.min(amount, tpm) end
  local wait_r, wait_k = gcra_wait(r, 1, rpm), gcra_wait(k, tokens, tpm)
  if wait_r > 0 or wait_k > 0 then
    local which, wait = 'rpm', wait_r
    if wait_k > wait_r then which, wait = 'tpm', wait_k end
    return {0, gcra_retry_ms(wait), which, 0}
  end
  if rpm > 0 then r = r + 1 end
  k = k + tokens
elseif tpm > 0 then
  k = math.max(0, k + amount)
  tokens = amount
end

gcra_store(KEYS[1], r, k, now, rpm, tpm)
return {1, 0, '', tokens}
