-- wrk script: absolute-form GET through a forward proxy.
-- ORIGIN (e.g. 127.0.0.1:18080) and PATH (e.g. /small) come from the environment.
local origin = os.getenv("ORIGIN") or "127.0.0.1:18080"
local path = os.getenv("PATH_") or "/small"
wrk.method = "GET"
wrk.path = "http://" .. origin .. path
wrk.headers["Host"] = origin
