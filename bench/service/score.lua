-- wrk script for the scoring-service benchmark (bench/service/run.sh).
-- Posts single-customer /v1/score bodies, rotating through the JSON lines of the file
-- named by BODIES (one request body per line; built from a real feature snapshot).
-- Every wrk thread starts at a different offset so concurrent connections score
-- different customers. Non-2xx answers are counted by wrk itself ("Non-2xx or 3xx").
--
-- UNIQUE=1 keeps the features of the rotation but gives every request a customer id
-- never sent before ("u<RUN_TAG>-<thread>-<n>"; run.sh sets RUN_TAG to the run's name,
-- else the start time is used), as when a CRM scores each account it touches:
-- churnguard then records a new customer state in its outbox on every request, where a
-- short rotation re-records the same rows (unchanged within the same second).
local bodies_file = os.getenv("BODIES") or "bodies.jsonl"
local api_key = os.getenv("API_KEY") or "benchkey"
local unique = os.getenv("UNIQUE") == "1"
local run_tag = os.getenv("RUN_TAG") or tostring(os.time())
local requests = {}
local rests = {}
local headers = nil
local i = 0
local n = 0
local threads_started = 0

function setup(thread)
   -- `tid` becomes a global of that thread's own Lua state
   thread:set("tid", threads_started)
   threads_started = threads_started + 1
end

function init(args)
   headers = {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer " .. api_key,
   }
   for line in io.lines(bodies_file) do
      if #line > 0 then
         requests[#requests + 1] = wrk.format("POST", "/v1/score", headers, line)
         -- the body after its customer id: {"customer_id":"c1","features":...} -> ,"features":...
         local rest = line:match('^{"customer_id":"[^"]*"(.*)$')
         if unique and not rest then
            error("UNIQUE=1 needs bodies that start with {\"customer_id\":\"...\"")
         end
         rests[#rests + 1] = rest
      end
   end
   if #requests == 0 then
      error("no request bodies in " .. bodies_file)
   end
   i = ((tid or 0) * 7919) % #requests
end

function request()
   i = i % #requests + 1
   if unique then
      n = n + 1
      local body = '{"customer_id":"u' .. run_tag .. '-' .. (tid or 0) .. '-' .. n .. '"' .. rests[i]
      return wrk.format("POST", "/v1/score", headers, body)
   end
   return requests[i]
end
