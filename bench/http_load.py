"""HTTP load on a server of the bench's own, on loopback: wrk (Debian's package) with a Lua
script that spreads requests over many paths and shoppers and checks every answer's status,
and the server's CPU per request read from /proc."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

# wrk's script: a path drawn at random for every request (with its If-None-Match, if tags are
# given), from one of `shoppers` shoppers (documentation-range addresses in X-Forwarded-For);
# answers whose status is not the expected one are counted beside wrk's own errors.
_LUA = """\
local paths = {%(paths)s}
local tags = %(tags)s
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args) unexpected = 0; math.randomseed(7) end
request = function()
  local i = math.random(#paths)
  local headers = {["X-Forwarded-For"] = string.format("2001:db8::%%x", math.random(%(shoppers)d))}
  if tags then headers["If-None-Match"] = tags[i] end
  return wrk.format("GET", paths[i], headers)
end
response = function(status, headers, body)
  if status ~= %(expected)d then unexpected = unexpected + 1 end
end
done = function(summary, latency, requests)
  local e = summary.errors
  local bad = 0
  for _, thread in ipairs(threads) do bad = bad + thread:get("unexpected") end
  io.write(string.format('{"requests": %%d, "duration_us": %%d, "p50_us": %%.0f, ' ..
    '"p99_us": %%.0f, "errors": %%d, "unexpected": %%d}\\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout + e.status, bad))
end
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET a URL of the bench's own server (http://127.0.0.1:port)."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"not the bench's server: {url}")
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - checked above
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _lua_list(values: list[str]) -> str:
    return "{" + ", ".join(json.dumps(v) for v in values) + "}"  # JSON strings are Lua's too


def lua_script(paths: list[str], *, tags: list[str] | None, expected: int, shoppers: int) -> str:
    """wrk's script for ``paths`` (``tags[i]`` sent as If-None-Match with ``paths[i]``)."""
    return _LUA % {"paths": _lua_list(paths)[1:-1], "tags": _lua_list(tags) if tags else "nil",
                   "expected": expected, "shoppers": shoppers}


def server_cpu(proc: subprocess.Popen[Any]) -> float:
    """CPU seconds (user + system) of a server process and its children (gunicorn's master
    and workers) so far."""
    tick = os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    total = 0.0
    for pid in [proc.pid, *map(int, children)]:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def wrk(base: str, script: Path, *, seconds: float, connections: int,
        server: subprocess.Popen[Any]) -> dict[str, float]:
    """One wrk run of one thread: requests/s, p50 and p99 (ms), errors (wrk's and unexpected
    statuses), the server's and wrk's CPU per request (ms)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = server_cpu(server)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s",
         str(script), base], capture_output=True, text=True, check=True)
    cpu = server_cpu(server) - cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    requests = max(1, r["requests"])
    wrk_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"rps": r["requests"] / (r["duration_us"] / 1e6), "p50": r["p50_us"] / 1000,
            "p99": r["p99_us"] / 1000, "errors": r["errors"] + r["unexpected"],
            "requests": r["requests"],
            "cpu_ms": cpu * 1000 / requests, "wrk_cpu_ms": wrk_cpu * 1000 / requests}


