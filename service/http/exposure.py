"""Which side of the proxy a request came in on, and what each side may see.

The internal side is the proxy's internal door (PROXY_INTERNAL_BIND: Prometheus, operators), or any caller when
there is no proxy (FORWARDED_HOPS=0, `make run`). Behind the proxy, a request is internal only when nginx marked
it so: nginx sets INTERNAL_HEADER on its internal door and clears a client's copy on the public one, and only
nginx reaches gunicorn's socket. The operator endpoints (/metrics, /docs, /openapi.json) are internal; the public
door has them only with PUBLIC_OPERATOR_ENDPOINTS, and then only for callers with an API key.
"""

from __future__ import annotations

from flask import request
from werkzeug.exceptions import NotFound

from config import Settings
from service.http.auth import ApiKeys, environ_key

#: Set by the proxy alone: "1" on its internal door; the public door never passes a client's copy.
INTERNAL_HEADER = "X-Regno-Internal"
_ENVIRON_KEY = environ_key(INTERNAL_HEADER)


def internal(settings: Settings) -> bool:
    """True when the request came in on the internal side (no proxy in front, or the proxy's internal door)."""
    return settings.forwarded_hops == 0 or request.environ.get(_ENVIRON_KEY) == "1"


def require_operator(settings: Settings, keys: ApiKeys, key_inside: bool = False) -> None:
    """Let an operator endpoint answer: internal callers (with a key when key_inside), public ones with a key when
    PUBLIC_OPERATOR_ENDPOINTS allows them; 404 to the others, as if it did not exist, 401 for a missing key."""
    if internal(settings):
        if key_inside:
            keys.require()
        return
    if not settings.public_operator_endpoints:
        raise NotFound()
    keys.require()
