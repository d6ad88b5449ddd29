-- One GCRA step for one bucket, on Redis's own clock (TIME): every replica
-- of the fleet measures a bucket against the same clock, whatever its own
-- says. The bucket is the theoretical arrival time in microseconds.
--
-- KEYS[1]  the bucket
-- ARGV[1]  T, the emission interval (microseconds)
-- ARGV[2]  burst x T, how far ahead of now the bucket may run
-- Returns {1, 0} when admitted (and the bucket moved), {0, wait} when not
-- (nothing written; wait = microseconds until one request is admitted).
--
-- Numbers stay below 2^53 (microseconds since 1970 plus at most a day), so
-- Lua's doubles hold them exactly; they are written with %.0f, never %g.

-- Scripts that read TIME may write only with effects replication (the
-- default from Redis 5; a no-op in Redis 7).
if redis.replicate_commands then redis.replicate_commands() end

local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local tat = tonumber(redis.call('GET', KEYS[1]) or 0) or 0
if tat < now then
  tat = now
end
local new_tat = tat + interval
local ahead = new_tat - now
if ahead > window then
  return {0, ahead - window}
end
-- The key lives exactly as long as the bucket is not rested: a missing key
-- and a rested bucket mean the same.
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil(ahead / 1000))
return {1, 0}
