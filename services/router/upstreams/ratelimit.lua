-- One deployment's rpm and tpm, shared by every router: two GCRA buckets (shared/gcra.lua, which
-- is prepended to this script) in one hash, checked and charged atomically. Nothing is charged on
-- a refusal.
--
-- A router does not ask for every call: an admitted call also takes a share of the room left (one
-- `divisor`-th of it, rounded down: none near the limit), which the router then admits locally, and
-- what its share did not use comes back with its next call or on its own (ratelimit.py: Share). So
-- the buckets never hold more than their limit, whoever holds the shares.
--
-- KEYS[1]  the deployment's hash (shared/keys.ratelimit)
-- ARGV[1]  "acquire": one request and ARGV[4] tokens (an estimate, at most tpm) if both fit, and a share;
--          "release": only what ARGV[6], ARGV[7] give back
-- ARGV[2]  rpm, ARGV[3] tpm (0: that limit is off)
-- ARGV[5]  now in ms, or "" for the server's clock (one clock for all routers)
-- ARGV[6]  requests given back first (a share's unused), ARGV[7] tokens given back first (negative: an
--          overrun charged), ARGV[8] the divisor of the share (0: no share)
-- Returns {allowed 0|1, retry after in ms (whole, at least 1 when refused), "rpm"|"tpm"|"", tokens charged,
--          the share's requests, the share's tokens}
local rpm, tpm, amount = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now = gcra_now(ARGV[5])
local given_r, given_k, divisor = tonumber(ARGV[6]) or 0, tonumber(ARGV[7]) or 0, tonumber(ARGV[8]) or 0
local r, k = gcra_levels(KEYS[1], rpm, tpm, now)
if rpm > 0 then r = math.max(0, r - given_r) end
if tpm > 0 then k = math.max(0, k - given_k) end

local tokens, share_r, share_k = 0, 0, 0
if ARGV[1] == 'acquire' then
  if tpm > 0 then tokens = math.min(amount, tpm) end
  local wait_r, wait_k = gcra_wait(r, 1, rpm), gcra_wait(k, tokens, tpm)
  if wait_r > 0 or wait_k > 0 then
    if given_r ~= 0 or given_k ~= 0 then gcra_store(KEYS[1], r, k, now, rpm, tpm) end
    local which, wait = 'rpm', wait_r
    if wait_k > wait_r then which, wait = 'tpm', wait_k end
    return {0, gcra_retry_ms(wait), which, 0, 0, 0}
  end
  if rpm > 0 then r = r + 1 end
  k = k + tokens
  if divisor > 0 then
    if rpm > 0 then share_r = math.max(0, math.floor((rpm - r) / divisor)) end
    if tpm > 0 then share_k = math.max(0, math.floor((tpm - k) / divisor)) end
    -- a share that cannot hold one more such call would only keep room from the other routers
    if (rpm > 0 and share_r < 1) or (tpm > 0 and share_k < math.max(tokens, 1)) then share_r, share_k = 0, 0 end
    r, k = r + share_r, k + share_k
  end
elseif given_r == 0 and given_k == 0 then
  return {1, 0, '', 0, 0, 0}
end

gcra_store(KEYS[1], r, k, now, rpm, tpm)
return {1, 0, '', tokens, share_r, share_k}
