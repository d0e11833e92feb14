-- tests/bench/fill.lua: wrk script of bench.py's big-store figure.  Each
-- wrk thread GETs its share of the paths listed in a file (one per line,
-- thread k takes lines k+1, k+1+T, ...) once, then stops.  Every answer's
-- status is counted; wrk reports non-2xx ones.
--   wrk -t T -c C -d LIMIT -s fill.lua URL -- PATHS_FILE T
local threads = {}
local n = 0

function setup(thread)
	thread:set("id", n)
	n = n + 1
	table.insert(threads, thread)
end

function init(args)
	paths = {}
	local step = tonumber(args[2])
	local k = 0
	for line in io.lines(args[1]) do
		if k % step == id then
			paths[#paths + 1] = line
		end
		k = k + 1
	end
	next_i = 1
	done = 0
end

function request()
	local p = paths[next_i]
	if p == nil then
		p = paths[1] -- already stored: a hit, until the thread stops
	end
	next_i = next_i + 1
	return wrk.format("GET", p)
end

function response(status, headers, body)
	done = done + 1
	if done >= #paths then
		wrk.thread:stop()
	end
end
