-- wrk script: each request asks for the next file of a numbered set, so that a run spreads over
-- the whole set instead of hammering one file.
--   wrk -t2 -c16 -d5s --latency -s rotate.lua http://127.0.0.1:PORT -- /w8/f 32
-- asks for /w8/f00.bin .. /w8/f31.bin in turn; each thread starts at its own place in the set.
local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  prefix = args[1] or "/w8/f"
  count = tonumber(args[2] or "32")
  counter = (id or 0) * 7
end

function request()
  counter = counter + 1
  return wrk.format("GET", string.format("%s%02d.bin", prefix, counter % count))
end
