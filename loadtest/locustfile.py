"""Replay traffic for POST /reg/ at a fixed total rate: `make load`, or locust -f loadtest/locustfile.py --host URL.

Settings, all from the environment:

| variable | default | meaning |
|---|---|---|
| `API_KEY` | `dev-key` | the `x-api-key` sent (`make run`'s development key) |
| `LOAD_RATE` | `100` | target requests/s of the whole run, shared evenly by the users |
| `LOAD_USERS` | locust's target user count | users the rate is shared by; set it to the total `-u` in distributed runs |
| `LOAD_REPEAT_SHARE` | `0.3` | share of requests that resend one of a small hot set of records (cache hits) |
| `LOAD_BAD_SHARE` | `0.02` | share of malformed requests (direction 7, a missing field, not JSON): success = 400 with the fail envelope |
| `LOAD_RECORDS_CSV` | none | a CSV with the contract's ten columns to replay; unset, records come from `training.simulate` |
| `LOAD_SAMPLE_SIZE` | `5000` | simulated records made at start |
| `LOAD_HOT_RECORDS` | `20` | size of the hot set (at most half the sample) |
| `LOAD_SEED` | `20261122` | seed of the simulator and of the request mix |

Each user paces itself with `constant_throughput(LOAD_RATE / users)`, from a random phase so the users
do not fire in step: a closed loop, so a service slower than 1 / (per-user rate) per request gets less
than `LOAD_RATE`, and the summary shows it. Fresh requests walk the sample in order and, once it is used
up, send it again with every `time_check` a day later, so only the hot set gives cache hits. The mix is
seeded per Locust process: with `--processes N` each process sends the same fresh records.

With `--csv PREFIX`, the run also reads the service's latency histogram from `--host`/metrics before and
after, and writes the service's own p50/p95/p99 of the run to `PREFIX_server.json`: Locust's figures
include Locust itself, which on a small machine shares the service's cores.
"""

from __future__ import annotations

import csv
import os
import random
import time
from datetime import date, timedelta
from typing import NamedTuple

import orjson
from locust import FastHttpUser, constant_throughput, events, task
from locust.runners import WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

try:
    from loadtest import server_latency
except ImportError:  # run as `locust -f loadtest/locustfile.py`, which puts only this folder on sys.path
    import server_latency

#: The contract's ten fields, and the ones a CSV gives as numbers.
FIELDS = ("regno_recognize", "afts_regno_ai", "recognition_accuracy", "afts_regno_ai_score",
          "afts_regno_ai_char_scores", "afts_regno_ai_length_scores", "camera_type", "camera_class",
          "time_check", "direction")
FLOAT_FIELDS = ("recognition_accuracy", "afts_regno_ai_score")
#: Request names, so Locust's report splits latency by traffic kind.
FRESH, REPEAT, MALFORMED = "/reg/ fresh", "/reg/ repeat", "/reg/ malformed"


class Options(NamedTuple):
    """The load's settings, read from the environment."""

    api_key: str
    rate: float
    users: int | None
    repeat_share: float
    bad_share: float
    records_csv: str | None
    sample_size: int
    hot_records: int
    seed: int

    @classmethod
    def from_env(cls, env=os.environ) -> Options:
        """Options from env; a bad value raises ValueError naming the variable."""
        def number(name, default, kind=float, low=0.0, high=float("inf")):
            text = env.get(name) or str(default)
            try:
                value = kind(text)
            except ValueError:
                raise ValueError(f"{name} must be a {kind.__name__}, got {text!r}") from None
            if not low <= value <= high:
                raise ValueError(f"{name} must be in [{low}, {high}], got {text!r}")
            return value

        options = cls(
            api_key=env.get("API_KEY") or "dev-key",
            rate=number("LOAD_RATE", 100, low=0.001),
            users=number("LOAD_USERS", 0, int) or None,
            repeat_share=number("LOAD_REPEAT_SHARE", 0.3, high=1.0),
            bad_share=number("LOAD_BAD_SHARE", 0.02, high=1.0),
            records_csv=env.get("LOAD_RECORDS_CSV") or None,
            sample_size=number("LOAD_SAMPLE_SIZE", 5000, int, low=2),
            hot_records=number("LOAD_HOT_RECORDS", 20, int, low=1),
            seed=number("LOAD_SEED", 20261122, int),
        )
        if options.repeat_share + options.bad_share > 1.0:
            raise ValueError("LOAD_REPEAT_SHARE + LOAD_BAD_SHARE must not exceed 1")
        return options


def read_csv_records(path: str) -> list[dict]:
    """The contract's fields of every CSV row, typed as production sends them (other columns are dropped)."""
    with open(path, encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        missing = [field for field in FIELDS if field not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"LOAD_RECORDS_CSV {path}: missing columns {', '.join(missing)}")
        records = []
        for row in reader:
            record = {field: row[field] for field in FIELDS}
            for field in FLOAT_FIELDS:
                record[field] = float(record[field])
            record["direction"] = int(record["direction"])
            records.append(record)
    return records


def load_records(options: Options) -> list[dict]:
    """The records to replay: the CSV's when LOAD_RECORDS_CSV is set, else simulated ones."""
    if options.records_csv:
        records = read_csv_records(options.records_csv)
    else:
        from training.simulate import simulate_records  # only here: a CSV replay needs no simulator

        records = simulate_records(options.sample_size, seed=options.seed)
    if len(records) < 2:
        raise ValueError("the load needs at least 2 records (a hot set and fresh ones)")
    return records


def shift_days(record: dict, days: int) -> dict:
    """The record moved `days` later: a new pass to the cache, whose key includes time_check."""
    stamp = record["time_check"]
    try:
        day = date.fromisoformat(stamp[:10]) + timedelta(days=days)
    except (TypeError, ValueError):
        return record  # not a date the service accepts either; leave it as it is
    return dict(record, time_check=day.isoformat() + stamp[10:])


def malformed_bodies(records: list[dict]) -> list[tuple[str, bytes]]:
    """(kind, body) of requests the service must refuse with 400, made from a few good records."""
    bodies = []
    for index, record in enumerate(records[:10]):
        bodies.append(("direction 7", orjson.dumps(dict(record, direction=7))))
        missing = FIELDS[index % len(FIELDS)]
        bodies.append((f"no {missing}", orjson.dumps({k: v for k, v in record.items() if k != missing})))
        bodies.append(("not JSON", orjson.dumps(record)[:-1]))  # the closing brace dropped
    return bodies


class Traffic:
    """The request mix of one Locust process: fresh records, hot-set repeats and malformed bodies."""

    def __init__(self, options: Options, records: list[dict]):
        self.options = options
        self.rng = random.Random(options.seed)
        hot = min(options.hot_records, len(records) // 2)
        # Bodies are encoded once, not per request, so the load generator spends its CPU on sending.
        self.hot = [orjson.dumps(record) for record in records[:hot]]
        self.fresh_records = records[hot:]
        self.malformed = malformed_bodies(records)
        self.epoch, self.position = 0, 0
        self.fresh = [orjson.dumps(record) for record in self.fresh_records]

    def next_fresh(self) -> bytes:
        """The next record never sent before: the sample in order, then again a day later, and so on."""
        if self.position == len(self.fresh):
            # Without the shift a wrapped sample would turn into cache hits and the repeat share would drift up.
            self.epoch, self.position = self.epoch + 1, 0
        index = self.position
        self.position += 1
        if not self.epoch:
            return self.fresh[index]
        # Shifted bodies are encoded as they are sent (a few µs): re-encoding the whole sample at the wrap
        # would stall every user of the process for about 20 ms.
        return orjson.dumps(shift_days(self.fresh_records[index], self.epoch))

    def next_request(self) -> tuple[str, bytes, str]:
        """(request name, body, what is wrong with it or "" for a good one) of the next request."""
        draw = self.rng.random()
        if draw < self.options.bad_share:
            kind, body = self.rng.choice(self.malformed)
            return MALFORMED, body, kind
        if draw < self.options.bad_share + self.options.repeat_share:
            return REPEAT, self.rng.choice(self.hot), ""
        return FRESH, self.next_fresh(), ""


def verdict(status: int, content: bytes | None, malformed: str) -> str | None:
    """None when the answer is right (200 "ok" for a good record, 400 "fail" for a malformed one), else why not."""
    expected_code, expected_status = (400, "fail") if malformed else (200, "ok")
    prefix = f"{malformed}: " if malformed else ""
    if status != expected_code:
        return f"{prefix}expected HTTP {expected_code}, got {status}"
    try:
        answer = orjson.loads(content or b"")
    except orjson.JSONDecodeError:
        return f"{prefix}answer is not JSON"
    if not isinstance(answer, dict) or answer.get("status") != expected_status:
        return f"{prefix}expected status {expected_status!r} in the answer"
    return None


#: Made once per Locust process, in the init hook, so the simulator runs before the clock starts.
TRAFFIC: Traffic | None = None
#: The Locust environment, for the quit hook, which is not given it.
ENVIRONMENT = None


@events.init.add_listener
def _prepare(environment, **_kwargs):
    """Read the settings and build the sample before any user starts."""
    global TRAFFIC, ENVIRONMENT
    try:
        options = Options.from_env()
        TRAFFIC, ENVIRONMENT = Traffic(options, load_records(options)), environment
    except (OSError, ValueError) as error:
        raise SystemExit(f"locustfile: {error}") from None  # one line, not a traceback


#: The service's latency histogram at the start of the run; None when its /metrics could not be read.
SERVER_BEFORE: dict[float, float] | None = None


def _scrape_server(environment) -> dict[float, float] | None:
    """The service's histogram now, or None (metrics off, another host, a network error)."""
    try:
        return server_latency.scrape(environment.host, TRAFFIC.options.api_key)
    except (OSError, ValueError) as error:
        print(f"locustfile: the service's /metrics could not be read, no server-side latency: {error}")
        return None


@events.test_start.add_listener
def _scrape_server_at_start(environment, **_kwargs):
    """Note the service's latency histogram before the first request."""
    global SERVER_BEFORE
    if not isinstance(environment.runner, WorkerRunner):
        SERVER_BEFORE = _scrape_server(environment)


@events.test_stop.add_listener
def _write_server_latency(environment, **_kwargs):
    """Write the service's own p50/p95/p99 of the run next to Locust's CSV reports (<prefix>_server.json)."""
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if not prefix or SERVER_BEFORE is None or isinstance(environment.runner, WorkerRunner):
        return
    after = _scrape_server(environment)
    if after is not None:
        figures = server_latency.summary(server_latency.difference(SERVER_BEFORE, after))
        with open(f"{prefix}_server.json", "wb") as stream:
            stream.write(orjson.dumps(figures))


@events.quit.add_listener
def _write_final_csv(**_kwargs):
    """Rewrite --csv's stats and failures with the final figures, as the console and --html show them."""
    # Locust refreshes these files once a second and never after the users stop, so they miss the last
    # second or so (locustio/locust#1806, #2299); its writer has flushed (truncate flushes) and only closes next.
    options = getattr(ENVIRONMENT, "parsed_options", None)
    prefix = getattr(options, "csv_prefix", None)
    if not prefix or isinstance(ENVIRONMENT.runner, WorkerRunner):
        return
    writer = StatsCSV(ENVIRONMENT, PERCENTILES_TO_REPORT)
    with open(f"{prefix}_stats.csv", "w", newline="") as stream:
        writer.requests_csv(csv.writer(stream))
    with open(f"{prefix}_failures.csv", "w", newline="") as stream:
        writer.failures_csv(csv.writer(stream))


class RegUser(FastHttpUser):
    """One production client posting records to /reg/ at its share of LOAD_RATE."""

    # A stuck service shows as failed requests instead of users waiting a minute each.
    connection_timeout = 5.0
    network_timeout = 10.0

    def on_start(self):
        """Pace this user at LOAD_RATE / users, users being LOAD_USERS or Locust's target user count."""
        options = TRAFFIC.options
        # target_user_count is set before users spawn, so every user sees the full -u count (one process);
        # in distributed runs it is only this worker's share, hence LOAD_USERS.
        users = options.users or max(1, self.environment.runner.target_user_count)
        rate = options.rate / users
        self._pace = constant_throughput(rate)
        self._headers = {"x-api-key": options.api_key, "content-type": "application/json"}
        # Users spawned together would fire together every 1/rate s: bursts of `users` requests that queue at
        # the workers. A random phase spreads them out (time.sleep is gevent's under Locust).
        time.sleep(TRAFFIC.rng.uniform(0.0, 1.0 / rate))
        # constant_pacing counts from the user's creation (_cp_last_run); without a restart its first wait
        # would absorb the phase and bring the users back in step.
        self._cp_last_run = time.perf_counter()

    def wait_time(self):
        """constant_throughput's wait, kept per user (it tracks each user's last run on the user)."""
        return self._pace(self)

    @task
    def post_record(self):
        """POST one record of the mix and check the answer."""
        name, body, malformed = TRAFFIC.next_request()
        with self.client.post("/reg/", data=body, headers=self._headers, name=name, catch_response=True) as response:
            problem = verdict(response.status_code, response.content, malformed)
            if problem:
                response.failure(problem)
            else:
                response.success()
