"""gunicorn's own answers in the envelope: the requests it refuses before the app sees them.

A request line or header gunicorn cannot parse or that is over its limits, an unknown transfer coding: gunicorn
27 answers those in Worker.handle_error with an HTML page. The worker classes here (gunicorn.conf.py runs them for
WORKER_CLASS sync and gthread) override that one method, which gunicorn's sync and gthread workers call with
(request or None, client socket, address, exception), and answer in the envelope instead: 4xx for the client's
fault, 500 for the service's, with a fresh X-Request-ID. Checked on gunicorn 27.0.1 (tests/test_gunicorn.py sends
each kind of bad request to a real gunicorn).
"""

from __future__ import annotations

import os
import ssl

import orjson
from gunicorn import util
from gunicorn.http import errors
from gunicorn.workers.gthread import ThreadWorker
from gunicorn.workers.sync import SyncWorker

#: What gunicorn refused, by the exception it raised (the first entry that matches): status, reason, message.
#: Never the request's own bytes: a message that echoed them would carry whatever the client sent.
REFUSALS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], int, str, str], ...] = (
    # A header the app tried to send is the app's fault, not the client's (they subclass the client errors).
    ((errors.InvalidResponseHeader, errors.InvalidResponseHeaderName), 500, "Internal Server Error",
     "internal error"),
    (errors.LimitRequestLine, 414, "URI Too Long", "request line is too long"),
    (errors.LimitRequestHeaders, 431, "Request Header Fields Too Large",
     "request header is too large: too many fields, or one too long"),
    # gunicorn says 501, as RFC 9112 suggests; here bad input is a 4xx, whatever it is.
    (errors.UnsupportedTransferCoding, 400, "Bad Request",
     "unsupported Transfer-Encoding: send the body with Content-Length or chunked"),
    (errors.ExpectationFailed, 417, "Expectation Failed", "unsupported Expect header: only 100-continue is understood"),
    ((errors.ForbiddenProxyRequest, ssl.SSLError), 403, "Forbidden", "request refused: not allowed from here"),
    # The forwarded headers contradict gunicorn's own settings: the deployment's fault.
    (errors.ConfigurationProblem, 500, "Internal Server Error", "internal error: the server's configuration "
     "refuses this request"),
    (errors.ParseException, 400, "Bad Request", "bad request: the service could not read it as HTTP"),
)
_FAILED = (500, "Internal Server Error", "internal error")


def refusal(error: BaseException) -> tuple[int, str, str]:
    """The status, reason and message for an error gunicorn met in a request; 500 for one not of the client."""
    for kinds, status, reason, message in REFUSALS:
        if isinstance(error, kinds):
            return status, reason, message
    return _FAILED


def envelope_answer(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP answer, the connection closed after it, with the failure envelope and a new request id."""
    body = orjson.dumps({"body": message, "status": "fail"})
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Request-ID: {os.urandom(16).hex()}\r\n\r\n")
    return head.encode("ascii") + body


class EnvelopeErrors:
    """Mixin for a gunicorn worker class: its own error answers in the envelope."""

    def handle_error(self, req, client, addr, exc) -> None:
        """Answer exc in the envelope; log the client's errors by kind alone, the service's with the traceback."""
        status, reason, message = refusal(exc)
        if (status, reason, message) == _FAILED:
            self.log.exception("Error handling request")
        else:
            # The kind, not str(exc): that holds the request line or a header, which may be anything.
            self.log.warning("refused a request: %s, answered %d", type(exc).__name__, status)
        try:
            util.write_nonblock(client, envelope_answer(status, reason, message))
        except Exception:  # noqa: BLE001 - the client may be gone; gunicorn's own handler only notes it too
            self.log.debug("Failed to send error message.")


class EnvelopeSyncWorker(EnvelopeErrors, SyncWorker):
    """gunicorn's sync worker, answering its own errors in the envelope."""


class EnvelopeThreadWorker(EnvelopeErrors, ThreadWorker):
    """gunicorn's gthread worker, answering its own errors in the envelope."""


def worker_class(name: str, threads: int) -> str:
    """The worker class gunicorn runs for WORKER_CLASS: ours for sync and gthread, any other as named (its errors
    stay gunicorn's HTML). sync with more than one thread is gthread, as gunicorn itself decides."""
    if name == "sync" and threads > 1:
        name = "gthread"
    ours = {"sync": EnvelopeSyncWorker, "gthread": EnvelopeThreadWorker}.get(name)
    return f"{__name__}.{ours.__name__}" if ours else name
