"""regno-log-sink: the prediction log from NATS JetStream to the same day-partitioned Parquet folder.

    regno-log-sink            (PREDICTION_LOG_NATS_URL, PREDICTION_LOG_PARQUET_DIR or PREDICTION_LOG_DIR)
    regno-log-sink --check    exit 0 while a running sink's consumer is connected and fetching (health checks)

A durable pull consumer takes messages in batches; each message (up to 512 kB of rows) becomes one
Parquet file named after its Nats-Msg-Id, and is acknowledged only once that file is in place. A message
delivered twice therefore rewrites the same file: no row is counted twice. Retention runs once an hour.
SIGTERM finishes the batch in hand, then stops.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from config import Settings, SettingsError, extras
from service.observe import heartbeat

log = logging.getLogger("regno.sink")

CONSUMER = "regno-log-sink"
#: Messages taken per fetch.
FETCH_BATCH = 64
#: Touched after every fetch the consumer makes while connected (one a second at least, with the fetch's timeout).
HEARTBEAT = Path(tempfile.gettempdir()) / "regno-log-sink.alive"
#: Older than this, the consumer is stuck or cut off: a batch of FETCH_BATCH messages is written well within it.
HEARTBEAT_MAX_AGE_S = 30.0


async def consume(settings: Settings, root: Path, stop: asyncio.Event) -> int:
    """Write every message of the stream to Parquet until stop is set; the messages written."""
    import nats
    from nats.errors import TimeoutError as NatsTimeout

    # Here, not at the top: `--check` runs every few seconds and must not load pyarrow and the row types.
    from service.predictions.parquet_store import RETENTION_EVERY_S, decode_lines, remove_expired, write_rows
    from service.predictions.sinks import ensure_stream

    client = await nats.connect(settings.prediction_log_nats_url, max_reconnect_attempts=-1, reconnect_time_wait=1)
    stream, subject = settings.prediction_log_nats_stream, settings.prediction_log_nats_subject
    jetstream = await ensure_stream(client.jetstream(), stream, subject)
    subscription = await jetstream.pull_subscribe(subject, durable=CONSUMER, stream=stream)
    written, retained_at = 0, -RETENTION_EVERY_S
    try:
        while not stop.is_set():
            try:
                messages = await subscription.fetch(FETCH_BATCH, timeout=1)
            except NatsTimeout:
                messages = []
            except Exception as error:  # noqa: BLE001 - NATS is away: the client reconnects; try again
                log.warning("regno-log-sink: fetch failed, retrying: %s: %s", type(error).__name__, error)
                await asyncio.sleep(1)
                continue
            if client.is_connected:
                heartbeat.beat(HEARTBEAT)
            for message in messages:
                name = (message.headers or {}).get("Nats-Msg-Id") or f"seq-{message.metadata.sequence.stream}"
                write_rows(root, name, decode_lines(message.data.splitlines(keepends=True)))
                await message.ack()  # only now: the file is in place
                written += 1
            if time.monotonic() - retained_at >= RETENTION_EVERY_S:
                retained_at = time.monotonic()
                remove_expired(root, settings.prediction_log_retention_days)
    finally:
        await client.close()
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sink until SIGTERM or SIGINT, or with --check tell whether a running one is alive."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    absent = None if arguments == ["--check"] else extras.missing("pyarrow", "log", "pyarrow.parquet")
    if absent:  # the health check needs no pyarrow; everything else does, --help included
        print(f"regno-log-sink: {absent}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="regno-log-sink", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 0 while a running sink's consumer is alive")
    if parser.parse_args(arguments).check:
        return heartbeat.check("regno-log-sink", HEARTBEAT, HEARTBEAT_MAX_AGE_S)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
        if not settings.prediction_log_nats_url:
            raise SettingsError("regno-log-sink needs PREDICTION_LOG_NATS_URL")
        root = settings.prediction_log_parquet
        if root is None:
            raise SettingsError("regno-log-sink needs PREDICTION_LOG_PARQUET_DIR or PREDICTION_LOG_DIR")
    except SettingsError as error:
        print(f"regno-log-sink: {error}", file=sys.stderr)
        return 2
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("regno-log-sink: %s stream %s -> %s", settings.prediction_log_nats_url,
             settings.prediction_log_nats_stream, root)
    written = loop.run_until_complete(consume(settings, root, stop))
    log.info("regno-log-sink: stopped after %d messages", written)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
