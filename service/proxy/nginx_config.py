"""nginx.conf for the proxy, rendered from the service's settings: `python -m service.proxy.nginx_config -o FILE`."""

from __future__ import annotations

import argparse
import math
import resource
import sys
from pathlib import Path

import jinja2

from config import Settings, SettingsError
from service.http.exposure import INTERNAL_HEADER
from service.observe.access_log import SAFE_ID_PATTERN

TEMPLATE = Path(__file__).with_name("nginx.conf.j2")
#: Where containers share gunicorn's socket, the rendered configuration and nginx's sockets.
CONTAINER_RUN_DIR = Path("/run/regno")

#: The answers nginx gives itself, each in the envelope: status -> message (JSON-safe, no quotes). A client cut at
#: the header or body timeout gets no answer at all: nginx closes the connection (and logs and counts a 408).
REFUSALS: dict[int, str] = {
    400: "bad request: the proxy could not read it as HTTP",
    404: "not found: no such endpoint on this door",
    405: "method not allowed",
    413: "request body is larger than $regno_body_limit bytes",
    414: "request line is too long",
    429: "too many requests or connections from this client: slow down and retry",
    494: "request header is too large",
    495: "client certificate refused: it is not signed by the configured CA",
    496: "client certificate required: present one signed by the configured CA",
    497: "plain HTTP sent to the HTTPS port: use https",
    500: "internal error in the proxy",
    501: "unsupported Transfer-Encoding: send the body with Content-Length or chunked",
    502: "the scoring service is not reachable: retry shortly",
    503: "the scoring service is unavailable: retry shortly",
    504: "the scoring service did not answer in time: retry shortly",
    505: "HTTP version not supported: use HTTP/1.1",
}
#: nginx's internal codes, and its 5xx for bad input (bad input is a 4xx here), and the status the client sees.
ANSWERED_AS = {494: 400, 495: 403, 496: 403, 497: 400, 501: 400, 505: 400}
#: The one refusal answered from a named location (its message names the route's limit, through $uri).
_NAMED = {413}
#: File descriptors each nginx worker asks for: clients, plus one upstream socket for each request in flight.
_FILE_LIMIT = 65536


def file_limit() -> int:
    """The descriptors an nginx worker may hold here: _FILE_LIMIT, or the hard limit when that is lower."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return _FILE_LIMIT if hard == resource.RLIM_INFINITY else min(_FILE_LIMIT, hard)


def upstream_address(bind: str) -> str:
    """gunicorn's BIND as nginx names it: `unix:/path` stays, host:port stays, `0.0.0.0` becomes loopback."""
    if bind.startswith("unix:"):
        return bind
    host, _, port = bind.rpartition(":")
    return f"{'127.0.0.1' if host in ('0.0.0.0', '', '[::]') else host}:{port}"


def nginx_rate(per_second: float) -> str:
    """A requests-per-second rate as nginx writes it: whole per second, else per minute."""
    if per_second == int(per_second):
        return f"{int(per_second)}r/s"
    return f"{max(1, math.ceil(per_second * 60))}r/m"


def own_answers() -> list[tuple[int, str, int, str]]:
    """(status, where nginx answers it, the status the client sees, message) for each of nginx's own answers."""
    return [(status, f"@regno_{status}" if status in _NAMED else f"/__regno_errors/{status}",
             ANSWERED_AS.get(status, status), message) for status, message in sorted(REFUSALS.items())]


def render(settings: Settings, run_dir: Path) -> str:
    """The whole nginx.conf for these settings, with its sockets and temporary files in run_dir."""
    template = jinja2.Template(TEMPLATE.read_text(encoding="utf-8"), trim_blocks=True, lstrip_blocks=True,
                               undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return template.render(
        run_dir=run_dir,
        workers=settings.proxy_workers,
        file_limit=file_limit(),
        worker_connections=file_limit() // 2,
        upstream=upstream_address(settings.bind),
        bulk_upstream=settings.bulk_bind and upstream_address(settings.bulk_bind),
        bulk_pool="regno_bulk" if settings.bulk_bind else "regno_gunicorn",
        public_bind=settings.public_bind,
        header_timeout_s=settings.proxy_header_timeout_s,
        body_timeout_ms=max(1, round(settings.proxy_body_timeout_s * 1000)),
        keepalive_s=settings.proxy_keepalive_s,
        max_body_bytes=settings.max_body_bytes,
        batch_max_body_bytes=settings.batch_request_max_bytes,
        connections_per_address=settings.proxy_connections_per_address,
        rate_per_address=settings.proxy_rate_per_address and nginx_rate(settings.proxy_rate_per_address),
        rate_per_key=settings.proxy_rate_per_key and nginx_rate(settings.proxy_rate_per_key),
        rate_burst=settings.proxy_rate_burst,
        tls=settings.proxy_tls,
        tls_cert_file=settings.proxy_tls_cert_file,
        tls_key_file=settings.proxy_tls_key_file,
        tls_client_ca_file=settings.proxy_tls_client_ca_file,
        upstream_timeout_s=settings.timeout + 5,
        own_answers_list=own_answers(),
        request_id_pattern=SAFE_ID_PATTERN,
        internal_header=INTERNAL_HEADER,
        internal_bind=settings.proxy_internal_bind,
        public_operator_endpoints=settings.public_operator_endpoints,
    )


def main(argv: list[str] | None = None) -> int:
    """Write nginx.conf for the settings in the environment (the containers' start step)."""
    parser = argparse.ArgumentParser(prog="python -m service.proxy.nginx_config", description=__doc__)
    parser.add_argument("-o", "--output", type=Path, required=True, help="where to write nginx.conf")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        settings.check_proxy()  # the proxy needs no API key: the service checks those
    except SettingsError as error:
        print(f"regno-api proxy cannot start: {error}", file=sys.stderr)
        return 2
    run_dir = settings.proxy_run_dir or CONTAINER_RUN_DIR
    args.output.write_text(render(settings, run_dir), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
