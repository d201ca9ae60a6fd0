-- GCRA (ITU-T I.371) in its continuous-state leaky-bucket form: the one rate-limit arithmetic of
-- draftgate, prepended to each script that limits something (shared/gcra.py: with_gcra). A hash
-- holds up to two buckets: r (requests) and k (tokens), and t, when both were last drained (ms).
-- Each bucket holds what was charged and drains at limit / 60 s; a charge that would overflow a
-- bucket of size `limit` waits until it fits. A limit of 0 is off: its bucket always reads empty.
local WINDOW_MS = 60000
local NOISE = 1e-6  -- floating-point noise: overflows and waits this small are none

-- ARGV's clock: now in ms, or "" for the server's clock (one clock for every process).
local function gcra_now(arg)
  if arg == nil or arg == '' then
    local time = redis.call('TIME')
    return tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
  end
  return tonumber(arg)
end

-- Both buckets as stored (r, k, t: strings or nil), drained up to NOW.
local function gcra_drain(r, k, t, rpm, tpm, now)
  r, k = tonumber(r) or 0, tonumber(k) or 0
  local elapsed = math.max(0, now - (tonumber(t) or now))
  if rpm > 0 then r = math.max(0, r - elapsed * rpm / WINDOW_MS) else r = 0 end
  if tpm > 0 then k = math.max(0, k - elapsed * tpm / WINDOW_MS) else k = 0 end
  return r, k
end

-- Both buckets of KEY, drained up to NOW.
local function gcra_levels(key, rpm, tpm, now)
  local state = redis.call('HMGET', key, 'r', 'k', 't')
  return gcra_drain(state[1], state[2], state[3], rpm, tpm, now)
end

-- ms until AMOUNT more fits a bucket at LEVEL of size LIMIT; 0: it fits now (or no limit).
local function gcra_wait(level, amount, limit)
  if limit > 0 and level + amount - limit > NOISE then
    return (level + amount - limit) * WINDOW_MS / limit
  end
  return 0
end

-- ms until a bucket at LEVEL has drained empty.
local function gcra_empty_in(level, limit)
  if limit > 0 then return level * WINDOW_MS / limit end
  return 0
end

-- Keep both levels as of NOW, until both buckets have drained (an empty bucket and no key are the same).
local function gcra_store(key, r, k, now, rpm, tpm)
  redis.call('HSET', key, 'r', string.format('%.17g', r), 'k', string.format('%.17g', k),
    't', string.format('%.17g', now))
  local full_ms = math.max(gcra_empty_in(r, rpm), gcra_empty_in(k, tpm))
  redis.call('PEXPIRE', key, math.ceil(full_ms) + 1000)
end

-- A wait in whole ms, at least 1 (a refusal always says when to come back).
local function gcra_retry_ms(wait)
  return math.max(1, math.ceil(wait - NOISE))
end
