-- wrk script for bench/e2e.py: every request carries one of the server's session cookies, taken
-- round-robin from the file named by $COOKIES (one `name=value` per line). Each wrk thread runs
-- its own copy and starts at its own offset, so threads do not walk the sessions in step.
local cookies = {}
for line in io.lines(os.getenv("COOKIES")) do
  if line ~= "" then
    cookies[#cookies + 1] = line
  end
end
local next_cookie = 0

setup = function(thread)
  thread:set("offset", math.random(#cookies))
end

init = function()
  next_cookie = (offset or 0) % #cookies
end

request = function()
  next_cookie = next_cookie % #cookies + 1
  return wrk.format("GET", "/", { ["Cookie"] = cookies[next_cookie] })
end
