-- A virtual key's admission and the charges of answers, shared by every gateway: the key's record, its
-- models, its budget and its rpm / tpm buckets (the GCRA functions of shared/gcra.lua, prepended to
-- this script), the request's session, and the request's publication, all in one command: one round
-- trip per request.
--
-- KEYS[1] the key's record (shared/keys.virtual_key: by the SHA-256 of the key)
-- KEYS[2] the ids of all keys (VIRTUAL_KEY_IDS: its size says whether any key exists)
-- KEYS[3] the key's usage (key_usage): one hash of its rpm / tpm buckets (r, k, t) and its spend this
--         UTC day and month (d and ds: the day and its USD; m and ms: the month and its USD)
-- KEYS[4] the request's session (its stored turns are returned when it is admitted), or "" for none
-- KEYS[5] the request stream to publish the admitted request on, or "" to publish nothing
-- KEYS[6..] per charge: the charged key's usage
-- ARGV[1] "admit": check everything and charge one request; "auth": the key alone, nothing charged;
--         "settle": only the charges (KEYS[1..5] unused); "publish": no key, only the session's read and
--         the publication (a caller the gateway admitted itself: a static key, or anonymous)
-- ARGV[2] now in ms, or "" for the server's clock
-- ARGV[3] the request to publish (shared.messages.encode_for_admission: a ChatRequest whose last value,
--         `history`, is nil), ARGV[4] the request stream's MAXLEN (approximate), ARGV[5] the tenant the
--         gateway encoded it for: it is published only if that is the key's (a virtual key's tenant is
--         the gateway's guess from an earlier admission; a wrong guess publishes nothing)
-- ARGV[6], ARGV[7] this UTC day (YYYY-MM-DD) and month (YYYY-MM); ARGV[8] how long a usage hash is kept
--         from its month's first write (s: until the month ends, and a little)
-- ARGV[9] how many charges; then per charge: rpm, tpm, tokens, cost in USD
-- admit: the ARGV after the charges: the names the request goes by (tier, the tier's model, a
--        deployment): one must be among the key's models, when it names any
--
-- The charges are made first, so a budget they exhaust refuses the request that carries them. A key's usage
-- is read and written once per command (one HMGET, one HSET), however many charges and admissions touch it;
-- its expiry is set only when a month's first write makes it (a spend of another day or month reads as 0).
-- ARGV[1] "batch": several of the calls above in one command, run in order as if sent one after another
--        (services/gateway/limits.py: the admissions of one turn of a gateway's event loop): ARGV[2] and
--        ARGV[6..8] as above, for all of them (the clock is read once); ARGV[9] how many calls; then per
--        call its KEYS count, its ARGV count and its ARGV, its KEYS in KEYS in the same order. A key's
--        record and usage are read once and its usage written once per command, whatever the calls.
--        Returns each call's answer, in order; a call that raised an error: {'failed', the error}.
--
-- admit / auth return {verdict, detail, tenant, rpm, tpm, budget day, budget month, requests in the
-- bucket, tokens in the bucket, spent today, spent this month, wait ms, the session's turns, the
-- published entry's id}, numbers as strings; verdict: ok | unknown (detail: how many keys exist; none:
-- {'unknown', '0', turns}) | revoked | expired | forbidden (detail: the key's models) | budget (detail:
-- day | month) | rate (detail: rpm | tpm). The session's turns, when asked for and the caller is served,
-- are the reply's 13th element (a list); when the request was published they went with it (the router
-- prepends them: its `history`), and the list is empty. The 14th, the entry's id, only when published.
-- publish returns {'published', id}.
local MAX_STORED_TURNS = 1000  -- shared/sessions.py's: the turns read back, whatever their size
local now = gcra_now(ARGV[2])
local DAY, MONTH, KEEP_S = ARGV[6], ARGV[7], ARGV[8]

-- Each key's usage as read (once) and changed by the command's calls; written by written() before it returns.
-- Reading a bucket back is the same as reading it from Redis would be: stored as of `now`, nothing drains.
local usages = {}
-- Each key's record as read (once): the script never writes one.
local records = {}

local function usage(key)
  local found = usages[key]
  if found then return found end
  local f = redis.call('HMGET', key, 'r', 'k', 't', 'd', 'ds', 'm', 'ms')
  found = {stored = f, day = f[4] == DAY and tonumber(f[5]) or 0, month = f[6] == MONTH and tonumber(f[7]) or 0,
           new_month = f[6] ~= MONTH, bucket = nil, changed = false}
  usages[key] = found
  return found
end

local function bucket_levels(key, rpm, tpm)
  local u = usage(key)
  if not u.bucket then return gcra_drain(u.stored[1], u.stored[2], u.stored[3], rpm, tpm, now) end
  return rpm > 0 and u.bucket.r or 0, tpm > 0 and u.bucket.k or 0
end

local function bucket_store(key, r, k)
  local u = usage(key)
  u.bucket, u.changed = {r = r, k = k}, true
end

local function spend(key, cost)
  local u = usage(key)
  u.day, u.month, u.changed = u.day + cost, u.month + cost, true
end

local function number(value) return string.format('%.17g', value) end

-- What the command changed, written once, after its calls.
local function written()
  for key, u in pairs(usages) do
    if u.changed then
      if u.bucket then
        redis.call('HSET', key, 'r', number(u.bucket.r), 'k', number(u.bucket.k), 't', number(now),
          'd', DAY, 'ds', number(u.day), 'm', MONTH, 'ms', number(u.month))
      else
        redis.call('HSET', key, 'd', DAY, 'ds', number(u.day), 'm', MONTH, 'ms', number(u.month))
      end
      if u.new_month then redis.call('EXPIRE', key, KEEP_S) end
    end
  end
end

local function charge(key, rpm, tpm, tokens, cost)
  if tpm > 0 and tokens > 0 then
    local r, k = bucket_levels(key, rpm, tpm)
    bucket_store(key, r, k + tokens)
  end
  if cost > 0 then spend(key, cost) end
end

-- One call (admit, auth, settle or publish) with its own KEYS and ARGV; its answer.
local function run(KEYS, ARGV)
  local op = ARGV[1]
  local charges = tonumber(ARGV[9])
  local at = 10
  for i = 1, charges do
    charge(KEYS[5 + i], tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3]))
    at = at + 4
  end
  if op == 'settle' then return {'ok'} end

  local function turns()
    return KEYS[4] ~= '' and redis.call('LRANGE', KEYS[4], -MAX_STORED_TURNS, -1) or {}
  end
  -- The request on the stream, the session's turns in its last value (msgpack nil, one byte, replaced by
  -- the turns as a msgpack array): the router finds them as the request's `history`.
  local function publish(stored)
    local request = ARGV[3]
    if #stored > 0 then request = string.sub(request, 1, -2) .. cmsgpack.pack(stored) end
    return redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[4], '*', 'm', request)
  end
  if op == 'publish' then return {'published', publish(turns())} end

  -- The admission (or the authentication) of the key, as its answer.
  local function decided()
    local key = records[KEYS[1]]
    if not key then
      key = redis.call('HMGET', KEYS[1], 'tenant', 'models', 'rpm', 'tpm', 'budget_usd_day', 'budget_usd_month',
        'expires_at', 'revoked', 'id')
      records[KEYS[1]] = key
    end
    if not key[9] then
      local count = redis.call('HLEN', KEYS[2])
      -- No key at all (open mode): the caller may be served anonymously, with its session.
      if count == 0 then return {'unknown', '0', turns()} end
      return {'unknown', tostring(count)}
    end
    if key[8] and key[8] ~= '' then return {'revoked', ''} end
    if key[7] and key[7] ~= '' and tonumber(key[7]) * 1000 <= now then return {'expired', ''} end

    local tenant, models = key[1] or '', key[2] or ''
    local rpm, tpm = tonumber(key[3]) or 0, tonumber(key[4]) or 0
    local budget_day, budget_month = key[5] or '', key[6] or ''
    -- Only what the key limits is read: a key without budgets or rates costs the record's HMGET alone.
    local r, k = 0, 0
    if rpm > 0 or tpm > 0 then r, k = bucket_levels(KEYS[3], rpm, tpm) end
    local spent_day, spent_month = 0, 0
    if budget_day ~= '' or budget_month ~= '' then
      local u = usage(KEYS[3])
      if budget_day ~= '' then spent_day = u.day end
      if budget_month ~= '' then spent_month = u.month end
    end

    local function reply(verdict, detail, wait)
      return {verdict, detail, tenant, tostring(rpm), tostring(tpm), budget_day, budget_month,
        number(r), number(k), number(spent_day), number(spent_month), tostring(wait)}
    end

    -- Admitted: the answer, with the session's stored turns (none asked for: an empty list), or with the
    -- request published (its turns in it) and the entry's id.
    local function admitted()
      local answer = reply('ok', '', 0)
      if op == 'admit' and KEYS[5] ~= '' and ARGV[5] == tenant then
        answer[13] = {}
        answer[14] = publish(turns())
      else
        answer[13] = turns()
      end
      return answer
    end

    if op ~= 'admit' then return admitted() end

    if models ~= '' then
      local allowed = {}
      for _, name in ipairs(cjson.decode(models)) do allowed[name] = true end
      local found = false
      for i = at, #ARGV do
        if ARGV[i] ~= '' and allowed[ARGV[i]] then found = true end
      end
      if not found then return {'forbidden', models} end
    end
    if budget_day ~= '' and spent_day >= tonumber(budget_day) then return reply('budget', 'day', 0) end
    if budget_month ~= '' and spent_month >= tonumber(budget_month) then return reply('budget', 'month', 0) end

    -- rpm: one more request must fit; tpm: the answer is charged after it (settle), so a request needs
    -- only room for one token: a key over its tpm waits until its bucket has drained below it.
    local wait_r, wait_k = gcra_wait(r, 1, rpm), gcra_wait(k, 1, tpm)
    if wait_r > 0 or wait_k > 0 then
      if wait_k > wait_r then return reply('rate', 'tpm', gcra_retry_ms(wait_k)) end
      return reply('rate', 'rpm', gcra_retry_ms(wait_r))
    end
    if rpm > 0 then
      r = r + 1
      bucket_store(KEYS[3], r, k)
    end
    return admitted()
  end
  return decided()
end

local answer
if ARGV[1] == 'batch' then
  answer = {}
  local key_at, at = 0, 10
  for i = 1, tonumber(ARGV[9]) do
    local key_count, arg_count = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
    local keys, args = {}, {}
    for j = 1, key_count do keys[j] = KEYS[key_at + j] end
    for j = 1, arg_count do args[j] = ARGV[at + 1 + j] end
    key_at, at = key_at + key_count, at + 2 + arg_count
    -- A call that fails (a key's record Redis holds malformed, say) fails alone: its caller hears why, the
    -- others are answered. What it had charged before it failed stays charged.
    local ok, result = pcall(run, keys, args)
    if ok then
      answer[i] = result
    else
      answer[i] = {'failed', type(result) == 'table' and tostring(result.err) or tostring(result)}
    end
  end
else
  answer = run(KEYS, ARGV)
end
written()
return answer
