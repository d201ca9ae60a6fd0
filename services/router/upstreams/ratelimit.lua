-- One deployment's rpm and tpm, shared by every router: GCRA in its continuous-state leaky bucket
-- form (ITU-T I.371), one bucket per limit, both in one hash, checked and charged atomically.
-- Each bucket holds what was charged and drains at limit / 60 s; a charge that would overflow a
-- bucket of size `limit` is refused with the time until it fits. Nothing is charged on a refusal.
--
-- KEYS[1]  the deployment's hash (shared/keys.ratelimit): r = requests in the rpm bucket,
--          k = tokens in the tpm bucket, t = when both were last drained (ms)
-- ARGV[1]  "acquire": one request and ARGV[4] tokens (an estimate, at most tpm) if both fit;
--          "settle": add ARGV[4] tokens to the tpm bucket unconditionally (negative: give back)
-- ARGV[2]  rpm, ARGV[3] tpm (0: that limit is off)
-- ARGV[5]  now in ms, or "" for the server's clock (one clock for all routers)
-- Returns {allowed 0|1, retry after in ms (whole, at least 1 when refused), "rpm"|"tpm"|"", tokens charged}
local WINDOW_MS = 60000
local NOISE = 1e-6  -- floating-point noise: overflows and waits this small are none
local rpm, tpm, amount = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now
if ARGV[5] == '' then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
else
  now = tonumber(ARGV[5])
end

local state = redis.call('HMGET', KEYS[1], 'r', 'k', 't')
local r, k = tonumber(state[1]) or 0, tonumber(state[2]) or 0
local elapsed = math.max(0, now - (tonumber(state[3]) or now))
if rpm > 0 then r = math.max(0, r - elapsed * rpm / WINDOW_MS) else r = 0 end
if tpm > 0 then k = math.max(0, k - elapsed * tpm / WINDOW_MS) else k = 0 end

local tokens = 0
if ARGV[1] == 'acquire' then
  if tpm > 0 then tokens = math.min(amount, tpm) end
  local wait_r, wait_k = 0, 0
  if rpm > 0 and r + 1 - rpm > NOISE then wait_r = (r + 1 - rpm) * WINDOW_MS / rpm end
  if tpm > 0 and k + tokens - tpm > NOISE then wait_k = (k + tokens - tpm) * WINDOW_MS / tpm end
  if wait_r > 0 or wait_k > 0 then
    local which, wait = 'rpm', wait_r
    if wait_k > wait_r then which, wait = 'tpm', wait_k end
    return {0, math.max(1, math.ceil(wait - NOISE)), which, 0}
  end
  if rpm > 0 then r = r + 1 end
  k = k + tokens
elseif tpm > 0 then
  k = math.max(0, k + amount)
  tokens = amount
end

redis.call('HSET', KEYS[1], 'r', string.format('%.17g', r), 'k', string.format('%.17g', k),
  't', string.format('%.17g', now))
-- Kept until both buckets have drained (an empty bucket and no key are the same thing).
local full_ms = 0
if rpm > 0 then full_ms = r * WINDOW_MS / rpm end
if tpm > 0 then full_ms = math.max(full_ms, k * WINDOW_MS / tpm) end
redis.call('PEXPIRE', KEYS[1], math.ceil(full_ms) + 1000)
return {1, 0, '', tokens}
