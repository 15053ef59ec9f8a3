-- Dubernetes ingress routing (nginx's Lua module, Debian's libnginx-mod-http-lua
-- with lua-resty-core; the same API as OpenResty and ingress-nginx).
--
-- Which replicas serve a pod is data, not config: the controller rewrites the
-- pod's endpoint files (/etc/dubernetes/endpoints/<pod>.{a,b}) whenever
-- replicas are added, removed or drained, and nginx is never reloaded for it,
-- so no client keep-alive connection is closed. Every route proxies to the one
-- `upstream dubernetes` block, whose balancer (`balance` below) sets the
-- replica per request: its `keepalive` pool keeps idle connections to the
-- replicas open and reuses them (keyed by the replica's address), which a
-- `proxy_pass` to a variable cannot do.
--
-- Each worker keeps the parsed files in memory and watches the directory with
-- inotify (through LuaJIT's FFI): a request costs one non-blocking read() of
-- the inotify descriptor (EAGAIN while nothing changed), not two file reads.
-- Any event (a file written, renamed, removed; a queue overflow) forgets the
-- whole cache, so the next request of every pod reads its files again. The
-- event is queued before the engine's write returns, so a request that starts
-- after the controller wrote a file sees it, as when the files were read per
-- request. Without inotify (no such directory yet, no watch left), files are
-- read per request, and the cache never lives longer than MAX_AGE anyway.
--
-- Format (see dubernetes-core/src/ingress/endpoints.rs): each pod has two
-- slots; the complete one (header and trailer carry the same number) with the
-- higher number is current, so a slot caught half written is never used.
--   dubernetes-endpoints 1 <seq>
--   <ip:port>        (one a line, none when no replica is ready)
--   end <seq>
local ffi = require("ffi")
local balancer = require("ngx.balancer")

local DIR = "/etc/dubernetes/endpoints"
local MAGIC = "dubernetes-endpoints 1 "
-- Seconds a cached list is used at most, even if no inotify event came.
local MAX_AGE = 1

-- Declared one by one: another module may have declared one of them already.
for _, decl in ipairs({
    "int inotify_init1(int flags);",
    "int inotify_add_watch(int fd, const char *pathname, uint32_t mask);",
    "long read(int fd, void *buf, unsigned long count);",
}) do
    pcall(ffi.cdef, decl)
end
local C = ffi.C
local IN_NONBLOCK, IN_CLOEXEC = 0x800, 0x80000
-- modify, attrib, close_write, moved_from, moved_to, create, delete, delete_self, move_self
local WATCH_MASK = 0x2 + 0x4 + 0x8 + 0x40 + 0x80 + 0x100 + 0x200 + 0x400 + 0x800
local BUF_SIZE = 4096
local buf = ffi.new("char[?]", BUF_SIZE)

local notify_fd = -1 -- this worker's inotify descriptor
local watching = false -- a watch on DIR is in place
local cache = {} -- pod -> { servers = {...}, at = seconds }

local function watch()
    if notify_fd < 0 then
        notify_fd = C.inotify_init1(IN_NONBLOCK + IN_CLOEXEC)
        if notify_fd < 0 then
            return
        end
    end
    watching = C.inotify_add_watch(notify_fd, DIR, WATCH_MASK) >= 0
end

-- Forgets the cache if the directory changed since the last request.
local function check_changes()
    if not watching then
        cache = {}
        watch()
        return
    end
    local changed = false
    while true do
        local n = tonumber(C.read(notify_fd, buf, BUF_SIZE))
        if n <= 0 then
            break -- EAGAIN: nothing (more) happened
        end
        changed = true
        -- struct inotify_event: wd, mask, cookie, len (4 bytes each), name.
        -- IN_IGNORED (0x8000: the directory is gone, its watch removed),
        -- IN_Q_OVERFLOW (0x4000), IN_DELETE_SELF, IN_MOVE_SELF: watch again.
        local off = 0
        while off + 16 <= n do
            local head = ffi.cast("uint32_t *", buf + off)
            if bit.band(head[1], 0x8000 + 0x4000 + 0x400 + 0x800) ~= 0 then
                watching = false
            end
            off = off + 16 + head[3]
        end
    end
    if changed then
        cache = {}
        if not watching then
            watch()
        end
    end
end

local function slot(path)
    local f = io.open(path, "rb")
    if not f then
        return nil
    end
    local text = f:read("*a")
    f:close()
    if not text or text:sub(1, #MAGIC) ~= MAGIC or text:sub(-1) ~= "\n" then
        return nil
    end
    local lines = {}
    for line in text:gmatch("([^\n]*)\n") do
        lines[#lines + 1] = line
    end
    if #lines < 2 then
        return nil
    end
    local seq = lines[1]:sub(#MAGIC + 1)
    if seq == "" or lines[#lines] ~= "end " .. seq then
        return nil
    end
    local servers = {}
    for i = 2, #lines - 1 do
        -- "10.0.0.2:80" or "[fd00::2]:80"
        local host, port = lines[i]:match("^(.+):(%d+)$")
        if host then
            servers[#servers + 1] = { addr = lines[i], host = host, port = tonumber(port) }
        end
    end
    return { seq = tonumber(seq) or 0, servers = servers }
end

-- The ready replicas of a pod (pod names are DNS labels: the API validated them).
local function servers(pod)
    check_changes()
    local now = ngx.now()
    local hit = cache[pod]
    if hit and now - hit.at < MAX_AGE then
        return hit.servers
    end
    local a = slot(DIR .. "/" .. pod .. ".a")
    local b = slot(DIR .. "/" .. pod .. ".b")
    local best = a
    if b and (not a or b.seq > a.seq) then
        best = b
    end
    local list = best and best.servers or {}
    cache[pod] = { servers = list, at = now }
    return list
end

local _M = {}

function _M.init_worker()
    -- Workers are forked from one master: each draws its own replicas.
    math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
    watch()
end

-- `set_by_lua` of a route's retry location: "1" when the pod has a ready
-- replica (the balancer's tries failed: 502), "0" when none (503).
function _M.ready(pod)
    return #servers(pod) > 0 and "1" or "0"
end

-- `balancer_by_lua` of the upstream: a random ready replica of the route's
-- pod ($dub_pod); after a failed connection (or no answer) one other.
-- Everything happens here, with no access-phase handler and no per-request
-- context: each Lua hook a request runs costs some microseconds, which is
-- what the ingress costs beyond plain nginx.
function _M.balance()
    local pod = ngx.var.dub_pod
    local list = servers(pod)
    local n = #list
    if n == 0 then
        -- nginx answers 500; the route's error_page sends it to its retry
        -- location, which answers 503 naming the pod.
        return ngx.exit(ngx.ERROR)
    end
    local peer
    if balancer.get_last_failure() == nil then
        peer = list[math.random(n)]
        -- One more try, on another replica, if this one fails. nginx decides
        -- whether a request may be retried: always when nothing was sent (a
        -- refused or timed-out connection), never a POST, LOCK or PATCH that
        -- reached the replica (no `non_idempotent` in proxy_next_upstream).
        if n > 1 then
            balancer.set_more_tries(1)
        end
    else
        -- A retry: a replica not tried yet ($upstream_addr lists those
        -- tried), else the same again (a kept-alive connection it had closed
        -- does not count as a try; nginx then connects afresh).
        local tried = {}
        for addr in (ngx.var.upstream_addr or ""):gmatch("[^,%s]+") do
            tried[addr] = true
        end
        local others = {}
        for i = 1, n do
            if not tried[list[i].addr] then
                others[#others + 1] = list[i]
            end
        end
        peer = others[1] and others[math.random(#others)] or list[math.random(n)]
    end
    local ok, err = balancer.set_current_peer(peer.host, peer.port)
    if not ok then
        ngx.log(ngx.ERR, "pod ", pod, ": cannot route to ", peer.addr, ": ", err)
        return ngx.exit(ngx.ERROR)
    end
end

return _M
