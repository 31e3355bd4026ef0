"""API-key authentication: the x-api-key header against the configured keys, in constant time."""

from __future__ import annotations

import hmac

from flask import request
from werkzeug.exceptions import Unauthorized

HEADER = "x-api-key"
_ENVIRON_KEY = "HTTP_" + HEADER.upper().replace("-", "_")


class ApiKeys:
    """The accepted keys, encoded once, and the check every protected request goes through."""

    def __init__(self, keys: tuple[str, ...]):
        self._keys = tuple(key.encode("utf-8") for key in keys)

    def matches(self, presented: bytes) -> bool:
        """True if presented equals one of the keys; every key is compared so timing tells nothing."""
        found = False
        for key in self._keys:
            found |= hmac.compare_digest(presented, key)
        return found

    def require(self) -> None:
        """Raise 401 unless the request carries an accepted key (a before_request hook)."""
        header = request.environ.get(_ENVIRON_KEY)  # the environ directly: cheaper than request.headers
        if header is None:
            raise Unauthorized(f"missing API key: send it in the {HEADER} header")
        # WSGI hands headers over as latin-1 text; that recovers the bytes that were sent.
        if not self.matches(header.encode("latin-1", errors="replace")):
            raise Unauthorized(f"invalid API key in the {HEADER} header")
