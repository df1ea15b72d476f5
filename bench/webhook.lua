-- POSTs pre-signed webhook requests read from $BENCH_REQUESTS (one "signature<TAB>body" a line).
-- Each wrk thread takes its own interleaved share of the lines, so with enough lines every
-- request is a distinct message (a real insert); with $BENCH_REQUESTS holding a few ids that
-- were already stored, every request is a duplicate. Several wrk processes (one per server
-- instance) split the lines too: $BENCH_SHARD of $BENCH_SHARDS (default 0 of 1).
-- $BENCH_PATH (default /webhook) and $BENCH_SIGNATURE_HEADER (default X-Signature, the value
-- prefixed with $BENCH_SIGNATURE_PREFIX) let the same script post a sender's payloads.
dofile(os.getenv("BENCH_DIR") .. "/report.lua")

local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local threads = tonumber(os.getenv("BENCH_THREADS"))
  local shard = tonumber(os.getenv("BENCH_SHARD") or "0")
  local total = threads * tonumber(os.getenv("BENCH_SHARDS") or "1")
  local mine = shard * threads + id
  bodies, signatures = {}, {}
  local i = 0
  for line in io.lines(os.getenv("BENCH_REQUESTS")) do
    if i % total == mine then
      local signature, body = line:match("^(%x+)\t(.*)$")
      table.insert(signatures, signature)
      table.insert(bodies, body)
    end
    i = i + 1
  end
  next_index = 1
end

local path = os.getenv("BENCH_PATH") or "/webhook"
local signature_header = os.getenv("BENCH_SIGNATURE_HEADER") or "X-Signature"
local signature_prefix = os.getenv("BENCH_SIGNATURE_PREFIX") or ""

function request()
  local index = next_index
  next_index = next_index + 1
  if next_index > #bodies then next_index = 1 end
  return wrk.format("POST", path,
    {["Content-Type"] = "application/json",
     [signature_header] = signature_prefix .. signatures[index]},
    bodies[index])
end
