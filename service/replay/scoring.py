"""Scoring the window's passes with the candidate: the service's scoring engine, in a pool of processes.

Each worker loads the candidate once and scores whole Arrow batches through model.engine.ScoringEngine,
the engine POST /reg/batch scores with (no cache, unkeyed pass ids, which go nowhere), so a replayed pass
gets the answer the candidate would have given it. The parent keeps a bounded window of batches in flight,
handing them out and taking the answers back in order, so memory does not grow with the window's size.
"""

from __future__ import annotations

import gc
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import datetime
from multiprocessing import get_context
from typing import Iterable, Iterator, NamedTuple

from model.engine import ScoringEngine
from model.records import FIELDS, Record
from model.routing import ModelSlot, Routing
from service.replay.candidate import ModelFile

#: Batches each worker may have waiting beside the one it scores: enough to keep it busy, few enough to stay small.
QUEUED_PER_WORKER = 1
#: The micro-batcher's size in the worker's slot; unused here (a batch is one CatBoost call), but a slot needs one.
_SLOT_BATCH_SIZE = 32
_LIST_FIELDS = ("afts_regno_ai_char_scores", "afts_regno_ai_length_scores")

#: The worker's engine and routing, set once by start_worker.
_scoring: tuple[ScoringEngine, Routing] | None = None


class Answers(NamedTuple):
    """The candidate's answers to a batch of passes, in their order."""

    positive: list[float]
    regno: list[str]
    source: list[str]


def cores() -> int:
    """Cores this process may run on (its affinity mask, not the whole machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def records_of(batch) -> list[Record]:
    """The Records of a batch of logged passes, exactly as they were scored: the log holds each field as validation
    left it, the score lists as float64 lists and time_check as orjson's ISO text of the datetime."""
    columns = {name: batch.column(name).to_pylist() for name in FIELDS}
    for name in _LIST_FIELDS:
        columns[name] = map(tuple, columns[name])
    columns["time_check"] = map(datetime.fromisoformat, columns["time_check"])
    return list(map(Record._make, zip(*(columns[name] for name in FIELDS))))


def start_worker(model: ModelFile, threshold: float) -> None:
    """A worker's start: load the candidate once, probe it (which warms CatBoost up), keep its engine and routing."""
    global _scoring
    scorer = model.load()
    scorer.probe()
    _scoring = ScoringEngine(threshold), Routing(ModelSlot.of(scorer, _SLOT_BATCH_SIZE))
    # The scorer and engine live as long as the worker: the collector need not walk them after every batch.
    gc.freeze()


def score_batch(batch) -> Answers:
    """The candidate's answer to each pass of a batch (its contract fields), in one engine call."""
    engine, routing = _scoring
    results = engine.score(records_of(batch), routing)
    return Answers([result.score.positive for result in results], [result.regno for result in results],
                   [result.source for result in results])


def _ready() -> int:
    """A task that returns once a worker has started: its pid."""
    return os.getpid()


class ReplayPool:
    """Worker processes that score batches of passes with the candidate, each loading it once."""

    def __init__(self, model: ModelFile, threshold: float, workers: int):
        self.workers = workers
        # fork: a worker starts in milliseconds with the modules already imported. It is started before the
        # parent opens DuckDB (start()), so no thread of DuckDB's is running when the parent forks.
        self.executor = ProcessPoolExecutor(workers, mp_context=get_context("fork"), initializer=start_worker,
                                            initargs=(model, threshold))

    def start(self) -> None:
        """Start every worker now and wait until each has loaded the candidate."""
        for future in [self.executor.submit(_ready) for _ in range(self.workers)]:
            future.result()

    def scored(self, batches: Iterable) -> Iterator[tuple[object, Answers]]:
        """Each batch with the candidate's answers, in order; at most a bounded number of batches in flight."""
        in_flight = self.workers * (1 + QUEUED_PER_WORKER)
        pending: deque[tuple[object, Future]] = deque()
        for batch in batches:
            pending.append((batch, self.executor.submit(score_batch, batch.select(FIELDS))))
            if len(pending) >= in_flight:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()

    def close(self) -> None:
        """Stop the workers (at once when a run is cut short)."""
        self.executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "ReplayPool":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
