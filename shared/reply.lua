-- A router's replies to one gateway's stream (shared/bus.reply), in one command: appended, the stream's
-- expiry pushed back and its length read, and the request they finish acknowledged.
--
-- KEYS[1] the gateway's reply stream (never created here: only its reader creates it)
-- KEYS[2] the request stream to acknowledge the request on, or '' for none
-- ARGV[1] the reply stream's TTL (s); ARGV[2] the consumer group and ARGV[3] the entry to acknowledge
-- ARGV[4..] the replies, each one entry's `m` field
--
-- Returns the stream's length after the appends; nil when the stream does not exist (then nothing was
-- written, nor acknowledged). An error (a group gone with a restarted Redis) is the command's error.
for i = 4, #ARGV do
  if not redis.call('XADD', KEYS[1], 'NOMKSTREAM', '*', 'm', ARGV[i]) then return false end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
local length = redis.call('XLEN', KEYS[1])
if KEYS[2] ~= '' then redis.call('XACK', KEYS[2], ARGV[2], ARGV[3]) end
return length
