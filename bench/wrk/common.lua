-- Shared by the scenarios: fresh ids per thread and run, and JSON POSTs.
-- Ids start at a block chosen by the run's start second (mod 1000) and the thread, so that runs
-- following each other never create an id twice.
N = 1000
local created = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
  thread:set("run_base", 100000000 + (os.time() % 1000) * 1000000)
end

function fresh_id()
  created = created + 1
  return run_base + thread_number * 400000 + created
end

function post_json(path, body)
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
end
