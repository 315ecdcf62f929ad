"""Container healthcheck for the web service: GET /healthz/ on this container's gunicorn.

Asks with the first host in ALLOWED_HOSTS, so Django's host check lets it through; exits 0
only when the answer is 200 (the database and Redis answer).
"""

from __future__ import annotations

import http.client
import os
import sys


def health_host() -> str:
    hosts = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h.strip()]
    host = hosts[0].lstrip(".") if hosts else "localhost"
    return "localhost" if host == "*" else host


def main() -> int:
    conn = http.client.HTTPConnection("127.0.0.1", int(os.environ.get("PORT", "8000")), timeout=8)
    try:
        conn.request("GET", "/healthz/", headers={"Host": health_host()})
        response = conn.getresponse()
        body = response.read(500).decode(errors="replace")
    except OSError as exc:
        print(f"health check failed: {exc}", file=sys.stderr)
        return 1
    print(response.status, body)
    return 0 if response.status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
