"""The prediction log: one row per pass, off the request path, nothing lost to a killed worker or a NATS outage."""

from __future__ import annotations

import mmap
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import orjson
import pytest
import requests

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from config import SettingsError
from loadtest.servers import ROOT, gunicorn, nats_server, service_env, start, stop, wait_for_line
from model.records import MAX_LIST_CHARS
from service import create_app
from service.observe.metrics import ServiceMetrics
from service.predictions.parquet_store import remove_older_than
from service.predictions.query import by_request, connect, rows
from service.predictions.rows import batch_bytes, failed_row, label_row
from service.predictions.shipper import Shipper
from service.predictions.sinks import ParquetSink
from service.predictions.spool import PredictionLog, journal_bytes, sealed_files
from tests.conftest import API_KEY, KEYS_ENV, LABEL_KEY, ApiClient
from tests.test_metrics import _samples
from training.simulate import simulate, simulate_records

REGNO_LOG = str(Path(sys.executable).with_name("regno-log"))
REGNO_LOG_SINK = str(Path(sys.executable).with_name("regno-log-sink"))


def _post(client: ApiClient, body, request_id: str, path: str = "/reg/"):
    return client.post(path, json=body, headers={"X-Request-ID": request_id})


def _ship(app) -> None:
    """Write what the log holds and ship it, as the worker's threads do on their own."""
    state = app.extensions["regno"]
    assert state.prediction_log.flush()
    state.shipper.ship_once()


def test_every_pass_becomes_one_row(settings, tmp_path, simulated_records):
    """A miss, a resent body (L1 hit), a bad record (with its field) and a batch each give their rows."""
    app = create_app(replace(settings, prediction_log_dir=tmp_path))
    client = ApiClient(app.test_client())
    answers = {f"one-{index}": _post(client, record, f"one-{index}").get_json()["body"]
               for index, record in enumerate(simulated_records[:3])}
    assert _post(client, simulated_records[0], "again").headers["X-Cache"] == "hit-l1"
    assert _post(client, dict(simulated_records[0], direction=7), "bad").status_code == 400
    assert _post(client, [simulated_records[1], {"x": 1}], "batch", "/reg/batch").status_code == 200
    _ship(app)
    root = tmp_path / "parquet"
    for request_id, answer in answers.items():
        [row] = by_request(root, request_id)
        assert (row["model"], row["positive"], row["regno"], row["source"]) == (
            answer["model"], answer["positive"], answer["regno"], answer["source"])
        assert row["cache"] == "miss" and row["arm"] == "current" and row["latency_ms"] > 0
    [again] = by_request(root, "again")
    [first] = by_request(root, "one-0")
    assert again["cache"] == "hit-l1" and again["pass_id"] == first["pass_id"]
    assert again["regno_recognize"] == simulated_records[0]["regno_recognize"]
    [bad] = by_request(root, "bad")
    assert (bad["error_field"], bad["model"], bad["pass_id"]) == ("direction", None, None)
    batch = by_request(root, "batch")
    assert sorted(row["error_field"] or "" for row in batch) == ["", "regno_recognize"]
    assert {row["endpoint"] for row in batch} == {"batch"}
    samples = _samples(app)
    assert samples[("regno_prediction_log_rows_total", (("outcome", "logged"),))] == 3 + 1 + 1 + 2
    assert samples[("regno_prediction_log_shipped_rows_total", ())] == 7
    assert samples[("regno_prediction_log_segments_waiting", ())] == 0


def test_the_documented_query_finds_a_known_pass(settings, tmp_path, simulated_records):
    """regno-log request ID prints the pass's row; regno-log decided answers "what did the model decide"."""
    app = create_app(replace(settings, prediction_log_dir=tmp_path))
    client = ApiClient(app.test_client())
    record = simulated_records[4]
    answer = _post(client, record, "known-pass").get_json()["body"]
    _ship(app)
    env = {**os.environ, "PREDICTION_LOG_DIR": str(tmp_path)}
    found = subprocess.run([REGNO_LOG, "request", "known-pass"], env=env, capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr
    [row] = [orjson.loads(line) for line in found.stdout.splitlines()]
    assert (row["regno_recognize"], row["positive"], row["source"]) == (record["regno_recognize"],
                                                                         answer["positive"], answer["source"])
    decided = subprocess.run([REGNO_LOG, "decided", "--model", answer["model"], "--day", "today", "--like",
                              orjson.dumps(record).decode()], env=env, capture_output=True, text=True, timeout=60)
    assert decided.returncode == 0, decided.stderr
    summary = [orjson.loads(line) for line in decided.stdout.splitlines()]
    assert [entry["source"] for entry in summary] == [answer["source"]] and summary[0]["passes"] >= 1
    bad = subprocess.run([REGNO_LOG, "sql", "SELECT nonsense FROM predictions"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def _lines(spool: Path) -> list[list]:
    """The rows in a spool's segments, open and sealed, decoded."""
    return [orjson.loads(line) for path in sorted(spool.glob("seg-*")) for line in path.read_bytes().splitlines()]


def _log_metrics(folder: Path, wait_s: float) -> tuple[PredictionLog, CollectorRegistry]:
    """A log whose batches have 32 kB of the journal to themselves and wait up to wait_s for more, and its metrics."""
    registry = CollectorRegistry()
    return PredictionLog(folder, queue_size=10, segment_s=3600, segment_bytes=1 << 30, spool_max_bytes=1 << 30,
                         observer=ServiceMetrics(registry), batch_bytes=32 * 1024, batch_wait_s=wait_s), registry


def _rows_counted(registry: CollectorRegistry, outcome: str) -> float:
    """regno_prediction_log_rows_total{outcome} (0 before the first)."""
    return registry.get_sample_value("regno_prediction_log_rows_total", {"outcome": outcome}) or 0.0


def test_a_batch_waits_for_room_and_drops_only_once_its_wait_runs_out(tmp_path):
    """Rows and labels ten times the journal's room for batches wait for the writer and all arrive, the waits
    counted; with no wait allowed, rows past the room are dropped and counted, and /reg/'s room stays free."""
    batch = [failed_row(f"b{index}", "batch", "direction", "must be 0 or 1", 1.0) for index in range(2000)]
    waiting, registry = _log_metrics(tmp_path / "waiting", wait_s=30.0)
    waiting.log_batch(batch)
    deadline = waiting.wait_deadline()
    assert all(waiting.log_label(label_row((index,)), deadline) for index in range(500))
    assert waiting.flush()
    lines = _lines(tmp_path / "waiting")
    assert sorted(line[1] for line in lines if line[0] != "label") == sorted(row[1] for row in batch)
    assert sorted(line[1] for line in lines if line[0] == "label") == list(range(500))
    assert _rows_counted(registry, "dropped_queue_full") == 0 and _rows_counted(registry, "logged") == len(batch)
    assert registry.get_sample_value("regno_prediction_log_wait_seconds_count") > 0
    waiting.close()

    hurried, registry = _log_metrics(tmp_path / "hurried", wait_s=0.0)
    hurried.log_batch(batch)
    dropped = _rows_counted(registry, "dropped_queue_full")
    hurried.log(failed_row("reg", "reg", "direction", "must be 0 or 1", 1.0))  # /reg/'s room is never the batch's
    assert hurried.flush()
    logged = _rows_counted(registry, "logged")
    assert dropped > 0 and logged + dropped == len(batch) + 1
    assert "reg" in {line[1] for line in _lines(tmp_path / "hurried")}
    assert _rows_counted(registry, "dropped_queue_full") == dropped
    hurried.close()


def _largest_batch(count: int, limit: int, element: str) -> list[dict]:
    """count records whose JSON takes about limit bytes, the rest of each record's share in its two score lists."""
    records = simulate_records(count, seed=41)
    spare = (limit - len(orjson.dumps(records)) - count * 16) // count  # what each record may still grow by
    for record in records:
        for field in ("afts_regno_ai_char_scores", "afts_regno_ai_length_scores"):
            inner = record[field][1:-1]  # "[]" is a list too
            grown = "[" + ", ".join([inner] * bool(inner) + [element] * ((spare // 2) // (len(element) + 2))) + "]"
            assert len(grown) <= MAX_LIST_CHARS
            record[field] = grown
    assert len(orjson.dumps(records)) <= limit
    return records


@pytest.mark.slow
def test_the_largest_legal_batch_fits_the_journal_beside_reg(settings, tmp_path, simulated_records):
    """BATCH_REQUEST_MAX_RECORDS records in BATCH_REQUEST_MAX_BYTES, each growing into the longest line it can
    ("1e15" is written "1000000000000000.0"), take no more than the journal's room for a batch: no row waits or
    is dropped, and a /reg/ pass right after has its row."""
    app = create_app(replace(settings, prediction_log_dir=tmp_path))
    client = ApiClient(app.test_client())
    records = _largest_batch(settings.batch_request_max_records, settings.batch_request_max_bytes, "1e15")
    response = _post(client, records, "largest", "/reg/batch")
    assert response.status_code == 200 and len(response.get_json()["body"]) == len(records)
    assert _post(client, simulated_records[0], "after").status_code == 200
    assert app.extensions["regno"].prediction_log.flush()
    spool = tmp_path / "spool"
    lines = [line for path in sealed_files(spool) for line in path.read_bytes().splitlines(keepends=True)]
    ids = [orjson.loads(line)[1] for line in lines]
    assert ids.count("largest") == len(records) and ids.count("after") == 1
    largest = sum(len(line) for line in lines if b'"largest"' in line)
    assert largest <= batch_bytes(settings.batch_request_max_records, settings.batch_request_max_bytes)
    assert largest > settings.prediction_log_queue_size * 1024  # more than the whole journal held before
    samples = _samples(app)
    assert samples[("regno_prediction_log_rows_total", (("outcome", "dropped_queue_full"),))] == 0
    assert samples[("regno_prediction_log_wait_seconds_count", ())] == 0


def test_a_spool_cap_below_a_journal_refuses_to_start(settings, tmp_path):
    """PREDICTION_LOG_SPOOL_MAX_BYTES must hold a whole journal (/reg/'s rows and the largest batch): one line."""
    with pytest.raises(SettingsError, match="PREDICTION_LOG_SPOOL_MAX_BYTES") as refused:
        create_app(replace(settings, prediction_log_dir=tmp_path, prediction_log_spool_max_bytes=50 * 1024 * 1024))
    assert "\n" not in str(refused.value)


def test_a_full_spool_drops_and_counts_instead_of_filling_the_disk(settings, tmp_path, simulated_records):
    """Past PREDICTION_LOG_SPOOL_MAX_BYTES, rows are dropped and counted; the spool stays under its cap."""
    # The smallest cap allowed: one whole journal, with batches of one record of 1 kB at most.
    small = replace(settings, prediction_log_dir=tmp_path, prediction_log_queue_size=1, batch_request_max_records=1,
                    batch_request_max_bytes=1024)
    cap = journal_bytes(1, batch_bytes(1, 1024))
    app = create_app(replace(small, prediction_log_spool_max_bytes=cap))
    client = ApiClient(app.test_client())
    for index, record in enumerate(simulated_records):
        assert _post(client, record, f"r{index}").status_code == 200
        assert app.extensions["regno"].prediction_log.flush()
    spool = sum(path.stat().st_size for path in (tmp_path / "spool").glob("seg-*"))
    samples = _samples(app)
    assert 0 < spool <= cap
    assert samples[("regno_prediction_log_rows_total", (("outcome", "dropped_spool_full"),))] > 0


def test_sampling_logs_a_share_and_counts_the_rest(settings, tmp_path, simulated_records):
    """PREDICTION_LOG_SAMPLE=0 logs nothing and counts every pass as sampled out."""
    app = create_app(replace(settings, prediction_log_dir=tmp_path, prediction_log_sample=0.0))
    client = ApiClient(app.test_client())
    for index, record in enumerate(simulated_records[:5]):
        assert _post(client, record, f"s{index}").status_code == 200
    _ship(app)
    assert _samples(app)[("regno_prediction_log_rows_total", (("outcome", "sampled_out"),))] == 5
    assert not list((tmp_path / "parquet").glob("day=*/*.parquet"))


def test_retention_removes_old_days(tmp_path):
    """Days before the retention window go; the window's days stay (regno-log retention does the same)."""
    for day in ("2026-11-01", "2026-11-30", "2026-12-01", "2026-12-03"):
        (tmp_path / f"day={day}").mkdir()
        (tmp_path / f"day={day}" / "x.parquet").write_bytes(b"")
    assert remove_older_than(tmp_path, 3, date(2026, 12, 3)) == ["2026-11-01", "2026-11-30"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["day=2026-12-01", "day=2026-12-03"]
    assert remove_older_than(tmp_path, 0, date(2030, 1, 1)) == []
    (tmp_path / "day=2001-01-01").mkdir()
    result = subprocess.run([REGNO_LOG, "--dir", str(tmp_path), "retention"], capture_output=True, text=True,
                            env={**os.environ, "PREDICTION_LOG_RETENTION_DAYS": "30"}, timeout=60)
    assert result.returncode == 0 and "2001-01-01" in result.stdout and not (tmp_path / "day=2001-01-01").exists()


class Load:
    """Sends POST /reg/ with unique request ids from a thread until stopped; remembers what was answered."""

    def __init__(self, base_url: str, records: list[dict], pause_s: float = 0.0):
        self.base_url, self.records, self.pause_s = base_url, records, pause_s
        self.answered: dict[str, int] = {}
        self.failed: list[str] = []
        self.slowest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        session, index = requests.Session(), 0
        while not self._stop.is_set():
            request_id = f"load-{index}"
            record = self.records[index % len(self.records)]
            body = record if index % 10 else dict(record, direction=9)  # every tenth fails validation
            started = time.monotonic()
            try:
                response = session.post(f"{self.base_url}/reg/", json=body, timeout=10,
                                        headers={"x-api-key": API_KEY, "X-Request-ID": request_id})
                self.answered[request_id] = response.status_code
            except requests.RequestException:
                self.failed.append(request_id)  # its answer never came: it may or may not have a row
            self.slowest = max(self.slowest, time.monotonic() - started)
            index += 1
            time.sleep(self.pause_s)


def _wait_for_rows(root: Path, request_ids: set[str], seconds: float = 60.0) -> dict[str, int]:
    """Rows per request id, once every one of request_ids has a row (or the time is up)."""
    deadline, counts = time.monotonic() + seconds, {}
    while time.monotonic() < deadline:
        if any(root.glob("day=*/*.parquet")):
            counts = {row["request_id"]: row["n"] for row in rows(
                connect(root), "SELECT request_id, count(*) AS n FROM predictions GROUP BY request_id")}
            if request_ids <= counts.keys():
                break
        time.sleep(0.5)
    return counts


@pytest.mark.gunicorn
def test_a_killed_worker_loses_no_answered_row(tmp_path):
    """Under load on 3 workers, one is SIGKILLed; every answer given, before and after, has exactly one row."""
    env = {**KEYS_ENV, "PREDICTION_LOG_DIR": str(tmp_path / "log"), "PREDICTION_LOG_SEGMENT_S": "0.5"}
    with gunicorn(env, tmp_path / "gunicorn.log", workers=3) as server:
        with Load(server.base_url, simulate_records(400, seed=21)) as load:
            time.sleep(3)
            victim = server.worker_pids()[0]
            os.kill(victim, signal.SIGKILL)
            time.sleep(3)
        assert len(load.answered) > 100 and set(load.answered.values()) <= {200, 400}
        counts = _wait_for_rows(tmp_path / "log" / "parquet", set(load.answered))
    missing = sorted(set(load.answered) - counts.keys(), key=lambda name: int(name.split("-")[1]))
    assert not missing, f"{len(missing)} answered requests have no row: {missing[:10]}"
    assert all(counts[request_id] == 1 for request_id in load.answered)
    assert set(counts) - set(load.answered) <= set(load.failed)


@pytest.mark.gunicorn
def test_a_stop_of_the_whole_group_ships_the_workers_last_rows(tmp_path):
    """SIGTERM to gunicorn's whole process group (as a terminal's Ctrl-C sends it) reaches the shipper with the
    workers: it still ships the row of a request the workers finish on their way out, before it goes."""
    env = {**KEYS_ENV, "PREDICTION_LOG_DIR": str(tmp_path / "log"), "PREDICTION_LOG_SEGMENT_S": "60"}
    with gunicorn(env, tmp_path / "gunicorn.log", workers=2) as server:
        wait_for_line(server, "prediction-log shipper:", seconds=60)
        body = orjson.dumps(simulate_records(1, seed=24)[0])
        port = int(server.base_url.rsplit(":", 1)[1])
        slow = socket.create_connection(("127.0.0.1", port), timeout=10)
        slow.sendall(f"POST /reg/ HTTP/1.1\r\nHost: x\r\nx-api-key: {API_KEY}\r\nX-Request-ID: last\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:-1])
        # The rest of the body comes a second after the stop: its worker answers it, then seals its last segment.
        threading.Timer(1.0, slow.sendall, (body[-1:],)).start()
    answer = slow.recv(65536)
    slow.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    logged = rows(connect(tmp_path / "log" / "parquet"), "SELECT request_id FROM predictions")  # no waiting here
    assert [row["request_id"] for row in logged] == ["last"]
    assert not list((tmp_path / "log" / "spool").glob("seg-*"))


@pytest.mark.gunicorn
@pytest.mark.slow
def test_a_nats_outage_spools_and_everything_arrives_once_it_is_back(tmp_path):
    """nats-server stops for 30 s under load: no request fails or slows, rows spool, and all of them arrive."""
    parquet = tmp_path / "parquet"
    with nats_server(tmp_path) as nats:
        env = {**KEYS_ENV, "PREDICTION_LOG_DIR": str(tmp_path / "log"), "PREDICTION_LOG_SEGMENT_S": "0.5",
               "PREDICTION_LOG_NATS_URL": nats.url, "PREDICTION_LOG_PARQUET_DIR": str(parquet)}
        sink = start([REGNO_LOG_SINK], service_env(**env), tmp_path / "sink.log", 0)
        try:
            with gunicorn(env, tmp_path / "gunicorn.log", workers=2) as server:
                labelled = simulate(1, seed=23)[0]
                headers = {"x-api-key": API_KEY}
                pass_id = requests.post(f"{server.base_url}/reg/", json=labelled.record, timeout=10,
                                        headers={**headers, "X-Request-ID": "labelled"}).json()["body"]["pass_id"]
                with Load(server.base_url, simulate_records(400, seed=22), pause_s=0.02) as load:
                    time.sleep(3)
                    nats.stop()
                    label = requests.post(f"{server.base_url}/reg/feedback", headers={"x-api-key": LABEL_KEY},
                                          timeout=10,
                                          json={"pass_id": pass_id, "true_regno": labelled.plate})
                    time.sleep(30)
                    spooled = list((tmp_path / "log" / "spool").glob("seg-*.seg"))
                    nats.start()
                    time.sleep(3)
                assert not load.failed and set(load.answered.values()) <= {200, 400}
                assert load.slowest < 1.0, load.slowest
                assert spooled, "nothing spooled while NATS was down"
                assert label.status_code == 200  # taken while the sink was away
                counts = _wait_for_rows(parquet, set(load.answered), seconds=90)
                deadline = time.monotonic() + 30
                while not any((parquet / "labels").glob("day=*/*.parquet")) and time.monotonic() < deadline:
                    time.sleep(0.5)
                stored = rows(connect(parquet), "SELECT pass_id, true_regno FROM labels")
        finally:
            stop(sink)
    missing = set(load.answered) - counts.keys()
    assert not missing, f"{len(missing)} answered requests have no row"
    assert all(counts[request_id] == 1 for request_id in load.answered)
    assert set(counts) - {"labelled"} == set(load.answered)
    assert stored == [{"pass_id": pass_id, "true_regno": labelled.plate}]  # the label arrived once, like the rows


def test_a_journal_outlives_the_process_that_wrote_it(tmp_path):
    """Rows put in a journal are there after its process is SIGKILLed; a live process's journal is not taken."""
    from service.predictions.journal import Journal, read_leftover

    script = (f"import os, signal, sys\nfrom pathlib import Path\nfrom service.predictions.journal import Journal\n"
              f"journal = Journal(Path({str(tmp_path / 'journal-1-2.journal')!r}), 4096)\n"
              f"for n in range(3): journal.put(b'[%d]\\n' % n)\n"
              f"journal.taken(journal.pending()[0] - 4)\n"  # the writer took the first two rows, not the third
              f"journal.put(b'[3]\\n')\nos.kill(os.getpid(), signal.SIGKILL)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=60)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert read_leftover(tmp_path / "journal-1-2.journal") == (b"[2]\n[3]\n", None, 0, False)
    alive = Journal(tmp_path / "journal-3-4.journal", 4096)
    alive.put(b"[9]\n")
    assert read_leftover(tmp_path / "journal-3-4.journal") is None


def test_a_header_torn_by_a_kill_reads_as_the_state_before(tmp_path):
    """A kill inside a header write leaves that slot with two generations that differ: the journal reads as it was
    before the write (the row being put is not seen), never as a mix of the two."""
    from service.predictions.journal import read_leftover

    script = (f"import os, signal, struct\nfrom pathlib import Path\n"
              f"from service.predictions.journal import _SLOT, _SLOTS, Journal\n"
              f"journal = Journal(Path({str(tmp_path / 'journal-1-2.journal')!r}), 4096)\n"
              f"for n in range(4): journal.put(b'[%d]\\n' % n)\n"
              f"slot = _SLOTS[journal._generation & 1] + _SLOT.size - 8\n"  # the last put's slot, its last field
              f"struct.pack_into('<Q', journal.memory, slot, journal._generation - 2)\n"  # as it was before
              f"os.kill(os.getpid(), signal.SIGKILL)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=60)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert read_leftover(tmp_path / "journal-1-2.journal").rows == b"[0]\n[1]\n[2]\n"


def test_flush_seals_every_row_logged_before_it_while_rows_keep_coming(tmp_path):
    """Rows logged before flush() are all in sealed segments when it returns, even with a logger running beside it."""
    spool_log = PredictionLog(tmp_path, queue_size=100_000, segment_s=3600, segment_bytes=1 << 30,
                              spool_max_bytes=1 << 30)
    logged, stop_logging = [0], threading.Event()

    def keep_logging() -> None:
        while not stop_logging.is_set():
            spool_log.log((logged[0],))
            logged[0] += 1
            time.sleep(0.0001)

    spool_log.start()
    logger = threading.Thread(target=keep_logging)
    logger.start()
    try:
        for _ in range(20):
            before = logged[0]
            assert spool_log.flush()
            sealed = {orjson.loads(line)[0] for path in sealed_files(tmp_path) for line in path.read_bytes().splitlines()}
            assert set(range(before)) <= sealed
    finally:
        stop_logging.set()
        logger.join()
        spool_log.close()


#: A process with a real PredictionLog that logs rows r0, r1, ... and counts in the file `progress` (memory that
#: survives a kill) how many were put; it is SIGKILLed at the nth call of a step of the writer (argv: folder,
#: where, n), or, with where "anywhere", by the test at a moment of its choosing, its writer kept busy.
_KILLED_WRITER = """
import mmap, os, signal, struct, sys, time
from pathlib import Path
from service.predictions import journal, spool
from service.predictions.rows import failed_row

folder, where, nth = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
progress = mmap.mmap(os.open(folder / "progress", os.O_RDWR), 8)
calls = []

def killed_at_nth(step, before_dying=lambda *args: None):
    def patched(*args):
        calls.append(None)
        if len(calls) == nth:
            before_dying(*args)
            os.kill(os.getpid(), signal.SIGKILL)
        return step(*args)
    return patched

if where == "released":  # the rows are in the segment, fsynced; the journal still holds them
    journal.Journal.taken = killed_at_nth(journal.Journal.taken)
elif where == "unwritten":  # about to append
    spool._Segment.append = killed_at_nth(spool._Segment.append)
elif where == "cut":  # a write the kill cut short: half the rows, the last one torn
    half = lambda segment, data: os.write(segment.fd, data[:len(data) // 2])
    spool._Segment.append = killed_at_nth(spool._Segment.append, half)
else:
    spool.WRITE_INTERVAL_S = 0.001  # writing nearly all the time: a kill often lands inside a write or an fsync
log = spool.PredictionLog(folder / "spool", queue_size=100_000, segment_s=3600, segment_bytes=64 * 1024,
                          spool_max_bytes=1 << 30)
row = 0
while True:
    log.log(failed_row(f"r{row}", "reg", "direction", "must be 0 or 1", 1.0))
    row += 1
    struct.pack_into("<Q", progress, 0, row)
    if row % 10 == 0:  # a few groups to each of the writer's passes, or (anywhere) to each of its many
        time.sleep(0.02 if where != "anywhere" else 0.001)
"""


def _kill_a_writer(folder: Path, where: str, nth: int = 0, after_s: float | None = None) -> int:
    """Run _KILLED_WRITER until it is killed (by itself, or after_s after its first row); how many rows it put."""
    folder.mkdir()
    (folder / "progress").write_bytes(bytes(8))
    progress = mmap.mmap(os.open(folder / "progress", os.O_RDWR), 8)
    child = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(folder), where, str(nth)], cwd=ROOT,
                             stderr=subprocess.PIPE)
    if after_s is not None:
        while not struct.unpack_from("<Q", progress)[0] and child.poll() is None:
            time.sleep(0.001)
        time.sleep(after_s)
        child.kill()
    _, errors = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, errors.decode()
    return struct.unpack_from("<Q", progress)[0]


def _ship_all(folder: Path) -> dict[str, int]:
    """A shipper takes over the dead writer's spool and ships all of it: rows in the sink by request id."""
    Shipper(folder / "spool", ParquetSink(folder / "parquet")).ship_once()
    assert not list((folder / "spool").glob("journal-*")) and not list((folder / "spool").glob("seg-*"))
    return {row["request_id"]: row["n"] for row in rows(
        connect(folder / "parquet"), "SELECT request_id, count(*) AS n FROM predictions GROUP BY request_id")}


def _shipped_once(folder: Path, put: int) -> None:
    """Once a shipper took over the dead writer's spool, each of the put rows is in the sink exactly once."""
    counts = _ship_all(folder)
    twice = sorted(request_id for request_id, count in counts.items() if count > 1)
    assert not twice, f"{len(twice)} rows shipped more than once, of {put}: {twice[:5]}"
    missing = [f"r{row}" for row in range(put) if f"r{row}" not in counts]
    assert not missing, f"{len(missing)} rows put before the kill were not shipped, of {put}: {missing[:5]}"
    assert set(counts) <= {f"r{row}" for row in range(put + 1)}  # and the one being put, maybe


@pytest.mark.parametrize("where", ["released", "unwritten", "cut"])
def test_a_writer_killed_mid_append_leaves_each_row_to_ship_once(tmp_path, where):
    """Killed between the segment's fsync and the journal's release, before its write, or in the middle of it,
    a writer's rows are shipped exactly once: the journal's commit says which of them the segment holds."""
    put = _kill_a_writer(tmp_path / "killed", where, nth=3)
    assert put >= 20
    _shipped_once(tmp_path / "killed", put)


def test_a_journal_the_version_before_left_is_recovered(tmp_path):
    """A worker killed before an upgrade left a journal of the older layout (start and end, then the rows): its
    unread rows ship, those it had taken do not."""
    lines = [orjson.dumps(failed_row(f"r{row}", "reg", "direction", "must be 0 or 1", 1.0)) + b"\n" for row in range(3)]
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "journal-0000000000001-7.journal").write_bytes(
        struct.pack("<QQ", len(lines[0]), len(b"".join(lines))) + b"".join(lines) + bytes(4096))
    assert _ship_all(tmp_path) == {"r1": 1, "r2": 1}


def test_a_dead_writers_segment_is_not_sealed_before_its_journal_is_recovered(tmp_path):
    """A writer may die between the shipper's recovery of journals and its sealing of open segments: an open
    segment its dead writer's journal names in a commit is left open (unshippable) until that journal is recovered."""
    folder = tmp_path / "killed"
    _kill_a_writer(folder, "released", nth=3)
    shipper = Shipper(folder / "spool", ParquetSink(folder / "parquet"))
    [segment] = (folder / "spool").glob("seg-*.open")
    assert shipper.awaits_journal(segment)
    shipper.recover_journals()
    assert not shipper.awaits_journal(segment)


@pytest.mark.slow
def test_a_writer_killed_at_any_moment_leaves_each_row_to_ship_once(tmp_path):
    """A busy writer SIGKILLed at random moments, again and again: every row put before the kill ships exactly once."""
    chance = random.Random(26)
    for run in range(24):
        folder = tmp_path / f"run-{run}"
        _shipped_once(folder, _kill_a_writer(folder, "anywhere", after_s=chance.uniform(0.0, 0.3)))


def _dropped(base_url: str) -> dict[str, float]:
    """The dropped outcomes of regno_prediction_log_rows_total, as the server's /metrics (all workers) has them."""
    text = requests.get(f"{base_url}/metrics", timeout=10).text
    return {sample.labels["outcome"]: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "regno_prediction_log_rows_total" and sample.labels["outcome"].startswith("dropped")}


@pytest.mark.gunicorn
@pytest.mark.slow
def test_the_largest_batches_beside_reg_traffic_lose_no_row(settings, tmp_path):
    """Batches of BATCH_REQUEST_MAX_RECORDS records in nearly BATCH_REQUEST_MAX_BYTES, two at a time on 3 workers,
    beside /reg/ traffic: every answered record, in a batch or not, has exactly one row, and none is dropped."""
    env = {**KEYS_ENV, "PREDICTION_LOG_DIR": str(tmp_path / "log"), "PREDICTION_LOG_SEGMENT_S": "0.5"}
    limit = settings.batch_request_max_records  # the defaults the server runs with
    body = orjson.dumps(_largest_batch(limit, settings.batch_request_max_bytes, "0.5"))
    answered: dict[str, int] = {}

    def send(base_url: str, request_id: str) -> None:
        response = requests.post(f"{base_url}/reg/batch", data=body, timeout=300,
                                 headers={"x-api-key": API_KEY, "X-Request-ID": request_id,
                                          "Content-Type": "application/json"})
        answered[request_id] = len(response.json()["body"]) if response.status_code == 200 else response.status_code

    with gunicorn(env, tmp_path / "gunicorn.log", workers=3) as server:
        with Load(server.base_url, simulate_records(400, seed=31), pause_s=0.005) as load:
            for wave in range(2):
                senders = [threading.Thread(target=send, args=(server.base_url, f"batch-{wave}-{index}"))
                           for index in range(2)]
                for sender in senders:
                    sender.start()
                for sender in senders:
                    sender.join(300)
        assert answered == {f"batch-{wave}-{index}": limit for wave in range(2) for index in range(2)}
        assert len(load.answered) > 100 and set(load.answered.values()) <= {200, 400}
        counts = _wait_for_rows(tmp_path / "log" / "parquet", set(load.answered) | set(answered), seconds=240)
        dropped = _dropped(server.base_url)
    assert {request_id: counts.get(request_id) for request_id in answered} == answered
    missing = sorted(set(load.answered) - counts.keys())
    assert not missing, f"{len(missing)} answered /reg/ requests have no row: {missing[:10]}"
    assert all(counts[request_id] == 1 for request_id in load.answered)
    assert dropped == {"dropped_queue_full": 0, "dropped_spool_full": 0}


def test_a_journal_from_before_the_host_restarted_is_not_recovered(tmp_path):
    """After a host crash a journal's pages may never have reached the disk, or hold rows of an earlier turn that
    are in segments already: none of its rows is recovered, so none ships twice, and the segments' rows all ship."""
    from service.predictions.journal import _BOOT

    folder = tmp_path / "crashed"
    _kill_a_writer(folder, "released", nth=3)
    [journal] = (folder / "spool").glob("journal-*")
    with open(journal, "r+b") as stream:  # as if the host had restarted since: another boot's id
        stream.seek(_BOOT.start)
        stream.write(bytes(range(1, 17)))
    segments = [orjson.loads(line)[1] for path in (folder / "spool").glob("seg-*")
                for line in path.read_bytes().splitlines()]
    counts = _ship_all(folder)
    assert segments and counts == {request_id: 1 for request_id in segments}
