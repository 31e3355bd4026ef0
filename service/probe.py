"""python -m service.probe PATH: ask this container's gunicorn for PATH where it listens (BIND, or BULK_BIND in the
bulk pool); 0 on a 200.

The health check of the api's image, compose's api service and the pod's liveness probe: gunicorn listens on a
TCP port when run alone and only on a unix socket behind the proxy, and this finds it either way.
"""

from __future__ import annotations

import http.client
import socket
import sys
from typing import Sequence

from config import Settings

TIMEOUT_S = 2.0


def connection_to(bind: str, timeout_s: float = TIMEOUT_S) -> http.client.HTTPConnection:
    """An HTTP connection to gunicorn's BIND: `unix:/path`, `host:port` or `[::]:port` (all addresses: loopback)."""
    if bind.startswith("unix:"):
        connection = http.client.HTTPConnection("localhost", timeout=timeout_s)
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.settimeout(timeout_s)
        unix.connect(bind.removeprefix("unix:"))
        connection.sock = unix
        return connection
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1" if host != "::" else "::1"
    return http.client.HTTPConnection(host, int(port), timeout=timeout_s)


def main(argv: Sequence[str] | None = None) -> int:
    """GET the path (default /health/live); exit 0 on 200, 1 otherwise, saying why in one line."""
    args = list(sys.argv[1:] if argv is None else argv)
    path = args[0] if args else "/health/live"
    bind = Settings.from_env().pool_bind  # the bulk pool's container asks its own gunicorn
    try:
        connection = connection_to(bind)
        connection.request("GET", path)
        status = connection.getresponse().status
    except OSError as error:
        print(f"probe: {bind}{path}: {error}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"probe: {bind}{path} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
