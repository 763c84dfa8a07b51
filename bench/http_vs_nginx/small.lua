-- wrk script for the small-files scenario: each request asks for the next file of a numbered set
-- of many small files, in a scrambled order that is the same for every server.
--   wrk -t2 -c16 -d5s --latency -s small.lua http://127.0.0.1:PORT -- /s10k/f 10000
-- asks for /s10k/f00000.bin .. /s10k/f09999.bin; each thread starts at its own place.
local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  prefix = args[1] or "/s10k/f"
  count = tonumber(args[2] or "10000")
  counter = (id or 0) * 4999
end

function request()
  counter = counter + 1
  -- 7919 is prime and does not divide the count: the walk visits every file before repeating.
  return wrk.format("GET", string.format("%s%05d.bin", prefix, (counter * 7919) % count))
end
