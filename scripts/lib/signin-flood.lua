-- wrk script: a closed-loop flood of right-password sign-ins over the accounts
-- bench01@bench.keyhold.test … benchNN@… in turn (NN = KH_ACCOUNTS), each
-- connection sending the next as soon as the last is answered. Counts signed
-- in (303), shed (503), throttled (429) and other, and prints one FLOOD line.
-- Environment: KH_ACCOUNTS, KH_TOKEN (CSRF token), KH_PASSWORD, KH_COOKIE
-- (the CSRF cookie that goes with the token). Used by scripts/bench-signin.sh
-- and scripts/bench.sh.
local threads = {}
local n = tonumber(os.getenv("KH_ACCOUNTS"))
function setup(thread)
  thread:set("first", #threads)
  table.insert(threads, thread)
end
function init(args)
  signed_in, shed, throttled, other = 0, 0, 0, 0
  -- the threads start half-way round from each other
  i = math.floor((first or 0) * n / 2)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Cookie"] = os.getenv("KH_COOKIE")
local token, password = os.getenv("KH_TOKEN"), os.getenv("KH_PASSWORD")
function request()
  i = i % n + 1
  local body = string.format("csrf_token=%s&email=bench%02d%%40bench.keyhold.test&password=%s", token, i, password)
  return wrk.format(nil, nil, nil, body)
end
function response(status, headers, body)
  if status == 303 then signed_in = signed_in + 1
  elseif status == 503 then shed = shed + 1
  elseif status == 429 then throttled = throttled + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local s, d, t, o = 0, 0, 0, 0
  for _, th in ipairs(threads) do
    s = s + th:get("signed_in"); d = d + th:get("shed")
    t = t + th:get("throttled"); o = o + th:get("other")
  end
  local secs = summary.duration / 1e6
  io.write(string.format("FLOOD seconds=%.1f signed_in=%d shed=%d throttled=%d other=%d timeouts=%d signed_in_per_s=%.1f shed_per_s=%.1f\n",
    secs, s, d, t, o, summary.errors.timeout, s / secs, d / secs))
end
