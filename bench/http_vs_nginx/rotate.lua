-- wrk script: each request asks for the next file of a numbered set, so that a run spreads over
-- the whole set instead of hammering one file.
--   wrk -t2 -c16 -d5s --latency -s rotate.lua http://127.0.0.1:PORT -- PREFIX COUNT [WIDTH] [STRIDE]
-- asks for PREFIX..(n as WIDTH digits)..".bin", n = (k * STRIDE) % COUNT for k = 1, 2, ...; each
-- thread starts at its own place. `-- /w8/f 32` walks /w8/f00.bin .. /w8/f31.bin in turn;
-- `-- /s10k/f 10000 5 7919` walks /s10k/f00000.bin .. f09999.bin in a scrambled order (a stride
-- that is prime and no divisor of the count visits every file before any repeats).
local threads = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  prefix = args[1] or "/w8/f"
  count = tonumber(args[2] or "32")
  format = "%s%0" .. tonumber(args[3] or "2") .. "d.bin"
  stride = tonumber(args[4] or "1")
  counter = (id or 0) * 7
end

function request()
  counter = counter + 1
  return wrk.format("GET", string.format(format, prefix, (counter * stride) % count))
end
