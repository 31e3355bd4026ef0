"""The biggest legal bulk work, as a careless client with a valid key may send it, for tests and the benchmark.

max_batch_body() builds one POST /reg/batch body of as many distinct records and as many bytes as the limits
allow; BatchClients sends such bodies back to back from a few threads until it is stopped.
"""

from __future__ import annotations

import multiprocessing
import re
import time
from collections import Counter

import orjson
import requests

from training.simulate import simulate_records

_NUMBER = re.compile(r"(\d\.\d+)")


def _padded(record: dict, extra: int) -> dict:
    """The record with about extra more bytes: zeros after its scores' digits (the same numbers, longer)."""
    fields = ("afts_regno_ai_char_scores", "afts_regno_ai_length_scores")
    numbers = sum(len(_NUMBER.findall(record[field])) for field in fields)
    zeros = "0" * max(0, extra // max(1, numbers))
    return dict(record, **{field: _NUMBER.sub(lambda match: match.group(1) + zeros, record[field]) for field in fields})


def max_batch_body(max_records: int, max_bytes: int, seed: int = 5) -> bytes:
    """A JSON array of max_records distinct records, padded to just under max_bytes."""
    records = simulate_records(max_records, seed=seed)
    plain = len(orjson.dumps(records))
    extra = (max_bytes - plain) // max_records - 64  # a margin for the rounding of the padding
    body = orjson.dumps([_padded(record, extra) for record in records])
    if len(body) > max_bytes:
        raise ValueError(f"the padded batch is {len(body)} bytes, over {max_bytes}")
    return body


class BatchClients:
    """clients processes, each POSTing body to url back to back until stop(); their answers counted.

    Processes, not threads: a client's sending and reading must not take the interpreter from whatever else the
    calling process measures (the benchmark's paced /reg/ client).
    """

    def __init__(self, url: str, body: bytes, key: str, clients: int = 2):
        self.url, self.body, self.key = url, body, key
        context = multiprocessing.get_context("fork")
        self._stopping = context.Event()
        #: Answers by status (HTTP status, or 0 for a failed connection), and the seconds they took in all.
        self._answers = context.Array("i", 600)
        self._seconds = context.Value("d", 0.0)
        self._processes = [context.Process(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> "BatchClients":
        for process in self._processes:
            process.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def statuses(self) -> Counter:
        """The answers so far, by status (0: the connection failed)."""
        with self._answers.get_lock():
            return Counter({status: count for status, count in enumerate(self._answers) if count})

    @property
    def mean_s(self) -> float:
        """The mean seconds an answered batch took."""
        answered = sum(self.statuses.values())
        return self._seconds.value / answered if answered else float("nan")

    def stop(self) -> None:
        """Let each client finish the batch it has in flight, then stop."""
        self._stopping.set()
        for process in self._processes:
            process.join()

    def _run(self) -> None:
        headers = {"Content-Type": "application/json", "x-api-key": self.key}
        with requests.Session() as session:
            while not self._stopping.is_set():
                began = time.monotonic()
                try:
                    status = session.post(self.url, data=self.body, headers=headers, timeout=120).status_code
                except requests.RequestException:
                    status = 0
                with self._answers.get_lock():
                    self._answers[status] += 1
                    self._seconds.value += time.monotonic() - began
