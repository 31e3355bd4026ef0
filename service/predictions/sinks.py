"""Where sealed segments go: the local Parquet folder (the embedded default), or a NATS JetStream stream.

A sink's ship() returns only once the sink has the rows (the files renamed into place and fsynced, or
every message acknowledged by JetStream); the shipper deletes a segment only after that. Shipping the
same segment twice is harmless: Parquet files are named after the segment, and JetStream drops a
message whose Nats-Msg-Id it has already stored (within its duplicate window).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

from service.predictions.parquet_store import decode_lines, write_rows

#: Largest JetStream message the sink builds, in bytes (NATS allows 1 MB by default).
MESSAGE_BYTES = 512 * 1024
#: Seconds JetStream gets to acknowledge a batch of messages.
ACK_TIMEOUT_S = 10.0
#: How long JetStream remembers message ids to drop a re-shipped duplicate.
DUPLICATE_WINDOW_S = 24 * 3600


class Sink(Protocol):
    """Takes a sealed segment's lines for good."""

    def ship(self, name: str, lines: list[bytes]) -> None:
        """Store the lines of segment name; raise if the sink did not confirm them."""


class ParquetSink:
    """Writes each segment as day-partitioned zstd Parquet files under root."""

    def __init__(self, root: Path):
        self.root = root

    def ship(self, name: str, lines: list[bytes]) -> None:
        """Write the segment's rows; returns once the files are in place."""
        write_rows(self.root, name, decode_lines(lines))


def chunks(lines: list[bytes], limit: int = MESSAGE_BYTES) -> list[bytes]:
    """Lines joined into payloads of at most limit bytes (a longer single line gets a payload of its own)."""
    payloads, current, size = [], [], 0
    for line in lines:
        if current and size + len(line) > limit:
            payloads.append(b"".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line)
    if current:
        payloads.append(b"".join(current))
    return payloads


class NatsSink:
    """Publishes each segment to JetStream in batched messages and waits for every acknowledgement."""

    def __init__(self, url: str, stream: str, subject: str, connect_timeout_s: float = 2.0):
        self.url, self.stream, self.subject = url, stream, subject
        self.connect_timeout_s = connect_timeout_s
        self._loop = asyncio.new_event_loop()  # the shipper's thread runs it; nats-py is asyncio only
        self._client = None
        self._jetstream = None

    def ship(self, name: str, lines: list[bytes]) -> None:
        """Publish the segment's lines; raise unless JetStream acknowledged all of them."""
        try:
            self._loop.run_until_complete(self._publish(name, chunks(lines)))
        except BaseException:
            self._loop.run_until_complete(self._disconnect())  # a new connection next time
            raise

    async def _publish(self, name: str, payloads: list[bytes]) -> None:
        jetstream = await self._connected()
        publishes = [jetstream.publish(self.subject, payload, timeout=ACK_TIMEOUT_S,
                                       headers={"Nats-Msg-Id": f"{name}.{index}"})
                     for index, payload in enumerate(payloads)]
        await asyncio.wait_for(asyncio.gather(*publishes), ACK_TIMEOUT_S)

    async def _connected(self):
        """The JetStream context, connecting and creating the stream when needed."""
        if self._jetstream is not None and self._client.is_connected:
            return self._jetstream
        await self._disconnect()
        import nats

        self._client = await nats.connect(self.url, connect_timeout=self.connect_timeout_s, allow_reconnect=False,
                                          max_reconnect_attempts=0)
        self._jetstream = await ensure_stream(self._client.jetstream(), self.stream, self.subject)
        return self._jetstream

    async def _disconnect(self) -> None:
        client, self._client, self._jetstream = self._client, None, None
        if client is not None:
            try:
                await asyncio.wait_for(client.close(), 2.0)
            except Exception:  # noqa: BLE001 - a dead connection is closed enough
                pass


async def ensure_stream(jetstream, stream: str, subject: str):
    """The JetStream context, once the stream exists (created on file, with the duplicate window, if missing)."""
    from nats.js.errors import NotFoundError

    try:
        await jetstream.stream_info(stream)
    except NotFoundError:
        await jetstream.add_stream(name=stream, subjects=[subject], storage="file", duplicate_window=DUPLICATE_WINDOW_S)
    return jetstream


def sink_for(parquet_root: Path | None, nats_url: str | None, stream: str, subject: str) -> Sink:
    """JetStream when a NATS URL is set, else the Parquet folder."""
    if nats_url:
        return NatsSink(nats_url, stream, subject)
    return ParquetSink(parquet_root)
