"""API-key authentication: the x-api-key header against the configured keys of a scope, in constant time.

Two scopes, each an ApiKeys: scoring keys (API_KEYS) for /reg/, /reg/batch and /reg/explain, label keys
(LABEL_API_KEYS) for POST /reg/feedback; no key is in both. The name of the key that was accepted (never the
key) is kept in g.key_name, for the access line, the prediction log's rows and the label rows.
"""

from __future__ import annotations

import hmac

from flask import g, request
from werkzeug.exceptions import Forbidden, Unauthorized


def environ_key(header: str) -> str:
    """A request header's key in the WSGI environ, where reading it is cheaper than through request.headers."""
    return "HTTP_" + header.upper().replace("-", "_")


HEADER = "x-api-key"
_ENVIRON_KEY = environ_key(HEADER)
#: Set by the proxy alone, to nginx's $ssl_client_verify: "SUCCESS" after a client certificate it verified.
CERT_HEADER = "X-Client-Cert-Verified"
_CERT_ENVIRON_KEY = environ_key(CERT_HEADER)
#: The key name a request accepted by its client certificate alone is logged under.
CERTIFICATE_NAME = "client-certificate"


class ApiKeys:
    """The accepted (name, key) pairs of one scope, encoded once, and the check its requests go through."""

    def __init__(self, keys: tuple[tuple[str, str], ...], certificate_suffices: bool = False, scope: str = "scoring"):
        self._keys = tuple((name, key.encode("utf-8")) for name, key in keys)
        #: A client certificate the proxy verified stands in for a key (CLIENT_CERT_SUFFICES).
        self.certificate_suffices = certificate_suffices
        #: What the keys are for, as refusals name it: "scoring" or "label".
        self.scope = scope

    def __bool__(self) -> bool:
        """True when any key of this scope is configured."""
        return bool(self._keys)

    def matches(self, presented: bytes) -> str | None:
        """The name of the key presented equals, or None; every key is compared so timing tells nothing."""
        found = None
        for name, key in self._keys:
            if hmac.compare_digest(presented, key) and found is None:
                found = name
        return found

    def require(self, other: "ApiKeys | None" = None) -> None:
        """Raise 401 unless the request carries a key of this scope (a before_request hook); note its name in g.

        other: the keys of another scope, whose holders get 403 instead (they are known, but not allowed here).
        """
        environ = request.environ  # the environ directly: cheaper than request.headers
        if self.certificate_suffices and environ.get(_CERT_ENVIRON_KEY) == "SUCCESS":
            g.key_name = CERTIFICATE_NAME
            return
        header = environ.get(_ENVIRON_KEY)
        if header is None:
            raise Unauthorized(f"missing API key: send it in the {HEADER} header")
        # WSGI hands headers over as latin-1 text; that recovers the bytes that were sent.
        presented = header.encode("latin-1", errors="replace")
        name = self.matches(presented)
        if name is not None:
            g.key_name = name
            return
        known = other.matches(presented) if other is not None else None
        if known is not None:
            g.key_name = known
            if not self._keys:
                raise Forbidden(f"no {self.scope} key is configured, so this endpoint refuses every request")
            raise Forbidden(f"a {other.scope} key cannot be used here: this endpoint needs a {self.scope} key")
        raise Unauthorized(f"invalid API key in the {HEADER} header")
