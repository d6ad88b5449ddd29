-- ekey: consume one use of a trace, atomically. One call per request.
--
-- KEYS[1]  usage hash of the trace   <prefix>:{<trace>}:u
--            field "n"              uses consumed so far
--            field "p" .. proof id  one per DPoP proof accepted: request id .. used
--            field "q" .. request id  one per proof-less (mTLS) use: request id .. used
-- KEYS[2]  revocation marker         <prefix>:{<trace>}:x   (written by the issuer)
-- ARGV[1]  cap.limit (1 or more)
-- ARGV[2]  seconds to keep the entries (1 or more)
-- ARGV[3]  the field recording this use ("p" .. proof id, or "q" .. request id)
-- ARGV[4]  request id: 16 bytes, unique per verify call, the same on its retries
--
-- Returns {code, used}: 1 accepted, 2 exhausted, 3 replayed proof, 4 revoked.
-- Both keys share the hash tag {<trace>}: one slot, one node, one script.

local usage, revoked = KEYS[1], KEYS[2]
local limit = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local field, rid = ARGV[3], ARGV[4]
if not limit or not ttl or limit < 1 or ttl < 1 or #rid ~= 16 then
  return redis.error_reply('ERR ekey consume: bad arguments')
end

local prev = redis.call('HGET', usage, field)
-- The same request again (a retry after a lost reply): its first answer,
-- without counting it twice.
if prev and string.sub(prev, 1, 16) == rid then
  return {1, tonumber(string.sub(prev, 17))}
end
if redis.call('EXISTS', revoked) == 1 then
  return {4, 0}
end
local used = tonumber(redis.call('HGET', usage, 'n') or '0')
if used >= limit then
  return {2, used}
end
if prev then
  return {3, used}
end
used = redis.call('HINCRBY', usage, 'n', 1)
redis.call('HSET', usage, field, rid .. used)
-- Only ever extend: a later proof may need the entries longer.
if redis.call('TTL', usage) < ttl then
  redis.call('EXPIRE', usage, ttl)
end
return {1, used}
