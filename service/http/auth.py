"""API-key authentication: the x-api-key header against the configured keys, in constant time."""

from __future__ import annotations

import hmac

from flask import request
from werkzeug.exceptions import Unauthorized


def environ_key(header: str) -> str:
    """A request header's key in the WSGI environ, where reading it is cheaper than through request.headers."""
    return "HTTP_" + header.upper().replace("-", "_")


HEADER = "x-api-key"
_ENVIRON_KEY = environ_key(HEADER)
#: Set by the proxy alone, to nginx's $ssl_client_verify: "SUCCESS" after a client certificate it verified.
CERT_HEADER = "X-Client-Cert-Verified"
_CERT_ENVIRON_KEY = environ_key(CERT_HEADER)


class ApiKeys:
    """The accepted keys, encoded once, and the check every protected request goes through."""

    def __init__(self, keys: tuple[str, ...], certificate_suffices: bool = False):
        self._keys = tuple(key.encode("utf-8") for key in keys)
        #: A client certificate the proxy verified stands in for a key (CLIENT_CERT_SUFFICES).
        self.certificate_suffices = certificate_suffices

    def matches(self, presented: bytes) -> bool:
        """True if presented equals one of the keys; every key is compared so timing tells nothing."""
        found = False
        for key in self._keys:
            found |= hmac.compare_digest(presented, key)
        return found

    def require(self) -> None:
        """Raise 401 unless the request carries an accepted key (a before_request hook)."""
        environ = request.environ  # the environ directly: cheaper than request.headers
        if self.certificate_suffices and environ.get(_CERT_ENVIRON_KEY) == "SUCCESS":
            return
        header = environ.get(_ENVIRON_KEY)
        if header is None:
            raise Unauthorized(f"missing API key: send it in the {HEADER} header")
        # WSGI hands headers over as latin-1 text; that recovers the bytes that were sent.
        if not self.matches(header.encode("latin-1", errors="replace")):
            raise Unauthorized(f"invalid API key in the {HEADER} header")
