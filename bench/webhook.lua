-- POSTs pre-signed webhook requests read from $BENCH_REQUESTS (one "signature<TAB>body" a line).
-- Each wrk thread takes its own interleaved share of the lines, so with enough lines every
-- request is a distinct message (a real insert); with $BENCH_REQUESTS holding a few ids that
-- were already stored, every request is a duplicate.
dofile(os.getenv("BENCH_DIR") .. "/report.lua")

local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local total = tonumber(os.getenv("BENCH_THREADS"))
  bodies, signatures = {}, {}
  local i = 0
  for line in io.lines(os.getenv("BENCH_REQUESTS")) do
    if i % total == id then
      local signature, body = line:match("^(%x+)\t(.*)$")
      table.insert(signatures, signature)
      table.insert(bodies, body)
    end
    i = i + 1
  end
  next_index = 1
end

function request()
  local index = next_index
  next_index = next_index + 1
  if next_index > #bodies then next_index = 1 end
  return wrk.format("POST", "/webhook",
    {["Content-Type"] = "application/json", ["X-Signature"] = signatures[index]},
    bodies[index])
end
