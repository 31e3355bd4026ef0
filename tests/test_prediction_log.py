"""The prediction log: one row per pass, off the request path, nothing lost to a killed worker or a NATS outage."""

from __future__ import annotations

import os
import signal
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

from loadtest.servers import ROOT, gunicorn, nats_server, service_env, start, stop
from service import create_app
from service.predictions.parquet_store import remove_older_than
from service.predictions.query import by_request, connect, rows
from tests.conftest import API_KEY, ApiClient
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


def test_a_full_queue_drops_and_counts_and_answers_keep_flowing(settings, tmp_path, simulated_records):
    """With room for one row, a batch of many passes drops most of them, counted; every answer still comes."""
    app = create_app(replace(settings, prediction_log_dir=tmp_path, prediction_log_queue_size=1))
    client = ApiClient(app.test_client())
    records = simulate_records(2000, seed=9)
    response = _post(client, records, "burst", "/reg/batch")
    assert response.status_code == 200 and len(response.get_json()["body"]) == 2000
    _ship(app)
    samples = _samples(app)
    dropped = samples[("regno_prediction_log_rows_total", (("outcome", "dropped_queue_full"),))]
    logged = samples[("regno_prediction_log_rows_total", (("outcome", "logged"),))]
    assert dropped > 0 and dropped + logged == 2000
    assert len(by_request(tmp_path / "parquet", "burst")) == logged
    assert _post(client, simulated_records[0], "after").status_code == 200


def test_a_full_spool_drops_and_counts_instead_of_filling_the_disk(settings, tmp_path, simulated_records):
    """Past PREDICTION_LOG_SPOOL_MAX_BYTES, rows are dropped and counted; the spool stays under its cap."""
    app = create_app(replace(settings, prediction_log_dir=tmp_path, prediction_log_spool_max_bytes=3000))
    client = ApiClient(app.test_client())
    for index, record in enumerate(simulated_records[:10]):
        assert _post(client, record, f"r{index}").status_code == 200
        assert app.extensions["regno"].prediction_log.flush()
    spool = sum(path.stat().st_size for path in (tmp_path / "spool").glob("seg-*"))
    samples = _samples(app)
    assert 0 < spool <= 3000
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
    env = {"API_KEYS": API_KEY, "PREDICTION_LOG_DIR": str(tmp_path / "log"), "PREDICTION_LOG_SEGMENT_S": "0.5"}
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
@pytest.mark.slow
def test_a_nats_outage_spools_and_everything_arrives_once_it_is_back(tmp_path):
    """nats-server stops for 30 s under load: no request fails or slows, rows spool, and all of them arrive."""
    parquet = tmp_path / "parquet"
    with nats_server(tmp_path) as nats:
        env = {"API_KEYS": API_KEY, "PREDICTION_LOG_DIR": str(tmp_path / "log"), "PREDICTION_LOG_SEGMENT_S": "0.5",
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
                    label = requests.post(f"{server.base_url}/reg/feedback", headers=headers, timeout=10,
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
    from service.predictions.journal import Journal, recover

    script = (f"import os, signal, sys\nfrom pathlib import Path\nfrom service.predictions.journal import Journal\n"
              f"journal = Journal(Path({str(tmp_path / 'journal-1-2.journal')!r}), 4096)\n"
              f"for n in range(3): journal.put(b'[%d]\\n' % n)\n"
              f"journal.taken(journal.pending()[0] - 4)\n"  # the writer took the first two rows, not the third
              f"journal.put(b'[3]\\n')\nos.kill(os.getpid(), signal.SIGKILL)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=60)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert recover(tmp_path / "journal-1-2.journal") == b"[2]\n[3]\n"
    alive = Journal(tmp_path / "journal-3-4.journal", 4096)
    alive.put(b"[9]\n")
    assert recover(tmp_path / "journal-3-4.journal") is None


def test_flush_seals_every_row_logged_before_it_while_rows_keep_coming(tmp_path):
    """Rows logged before flush() are all in sealed segments when it returns, even with a logger running beside it."""
    from service.predictions.spool import PredictionLog, sealed_files

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
