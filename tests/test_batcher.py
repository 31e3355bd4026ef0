"""Micro-batching of concurrent predictions (model/batcher.py)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from model.scorer import Score
from model.batcher import MicroBatcher


class SlowModel:
    """A stand-in predict that takes a while per call and records each call's size."""

    def __init__(self, seconds: float = 0.02):
        self.seconds = seconds
        self.sizes: list[int] = []

    def __call__(self, vectors):
        self.sizes.append(len(vectors))
        time.sleep(self.seconds)
        return [Score(1 - v[0], v[0]) for v in vectors]


def test_a_lone_request_predicts_at_once():
    """Nothing else running: one call of one row, no waiting."""
    model = SlowModel(0.0)
    batcher = MicroBatcher(model, max_size=8)
    assert batcher.score([0.25]) == Score(0.75, 0.25)
    assert model.sizes == [1]


def test_concurrent_requests_share_calls_and_get_their_own_answer():
    """Requests that arrive during a call go together in the next; each gets its own score."""
    model = SlowModel()
    batcher = MicroBatcher(model, max_size=8)
    values = [i / 100 for i in range(40)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda value: batcher.score([value]), values))
    assert results == [Score(1 - value, value) for value in values]
    assert sum(model.sizes) == 40
    assert len(model.sizes) < 40  # some calls carried several rows
    assert max(model.sizes) <= 8


def test_an_error_reaches_every_request_of_the_batch():
    """A failing call raises in every request it carried, and the batcher keeps working."""
    calls = []

    def failing(vectors):
        calls.append(len(vectors))
        time.sleep(0.02)
        if len(calls) <= 2:
            raise RuntimeError("model failed")
        return [Score(0.5, 0.5)] * len(vectors)

    batcher = MicroBatcher(failing, max_size=8)
    outcomes = []

    def one():
        try:
            outcomes.append(batcher.score([0.1]))
        except RuntimeError as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(outcomes) == 6 and "model failed" in outcomes
    assert batcher.score([0.1]) == Score(0.5, 0.5)


@pytest.mark.parametrize("size", [1, 3])
def test_batches_never_exceed_max_size(size):
    """max_size bounds every call."""
    model = SlowModel(0.01)
    batcher = MicroBatcher(model, max_size=size)
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda value: batcher.score([value]), [0.1] * 30))
    assert max(model.sizes) <= size and sum(model.sizes) == 30
