"""Starting real servers for benchmarks and tests: gunicorn, make serve's stack, Prometheus, nats-server, and the
model sources' stores: moto's S3 server and an MLflow tracking server."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import requests

ROOT = Path(__file__).resolve().parents[1]
GUNICORN = Path(sys.executable).with_name("gunicorn")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(**overrides: str) -> dict[str, str]:
    """The current environment without the service's settings, plus overrides."""
    from config import _VARIABLES, SECRET_VARIABLES

    names = {*_VARIABLES, *SECRET_VARIABLES}
    env = {name: value for name, value in os.environ.items() if name not in names}
    env.update(overrides)
    return env


class Server:
    """A running server process, its base URL and the file its stderr goes to."""

    def __init__(self, process: subprocess.Popen, base_url: str, log: Path):
        self.process, self.base_url, self.log = process, base_url, log

    def output(self) -> str:
        """What the server has written to stderr so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def worker_pids(self) -> list[int]:
        """PIDs of gunicorn's workers, when the started process is gunicorn."""
        return workers_of(self.process.pid)


def children(pid: int) -> list[int]:
    """PIDs of a process's direct children."""
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def workers_of(master: int) -> list[int]:
    """gunicorn's workers among a master's children: forked, so they share its command line (the prediction
    log's shipper, which the master also starts, has its own)."""
    def command(pid: int) -> bytes:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            return b""

    return [child for child in children(master) if command(child) == command(master)]


def memory(pid: int) -> tuple[int, int]:
    """RSS and PSS of a process, in kB."""
    fields = dict(re.findall(r"^(Rss|Pss):\s+(\d+) kB", Path(f"/proc/{pid}/smaps_rollup").read_text(), re.M))
    return int(fields["Rss"]), int(fields["Pss"])


def wait_until_ready(server: Server, seconds: float = 30.0) -> None:
    """Poll /health/ready until it answers 200; fail early if the server died."""
    deadline = time.monotonic() + seconds
    base_url, process = server.base_url, server.process
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {server.output()}")
        try:
            if requests.get(f"{base_url}/health/ready", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{base_url} not ready after {seconds} s")


def wait_for_workers(server: Server, workers: int, seconds: float = 30.0) -> None:
    """Wait until every worker has logged its warm-up, so tests meet all of them."""
    deadline = time.monotonic() + seconds
    while server.output().count("worker warmed up") < workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {workers} workers warmed up in {seconds} s")
        time.sleep(0.05)


def stop(server: Server, seconds: float = 20.0) -> str:
    """SIGTERM the server, wait for it, and return what it wrote to stderr."""
    process = server.process
    if process.poll() is None:
        # The whole group: `make run` is a parent of gunicorn and does not pass signals on.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return server.output()


def start(command: list[str], env: Mapping[str, str], log: Path, port: int, cwd: Path = ROOT) -> Server:
    """Start a server command (in the repo root unless told) with its stderr going to log (emptied first)."""
    log.write_bytes(b"")
    # Appending: nginx opens /dev/stderr anew, in append mode; a writer at its own offset would overwrite its lines.
    with open(log, "ab") as stream:
        process = subprocess.Popen(command, cwd=cwd, env=dict(env), stdout=subprocess.DEVNULL, stderr=stream,
                                   start_new_session=True)
    return Server(process, f"http://127.0.0.1:{port}", log)


def run_gunicorn(env: Mapping[str, str], seconds: float = 30.0) -> subprocess.CompletedProcess:
    """Run gunicorn to completion (for start-ups that must fail); stderr is captured."""
    return subprocess.run([str(GUNICORN), "-c", "gunicorn.conf.py"], cwd=ROOT, env=service_env(**env),
                          capture_output=True, text=True, timeout=seconds)


@contextmanager
def gunicorn(env: Mapping[str, str], log: Path, workers: int = 3) -> Iterator[Server]:
    """A real gunicorn running the service with several workers, ready to serve."""
    port = free_port()
    full_env = service_env(BIND=f"127.0.0.1:{port}", WORKERS=str(workers), **env)
    server = start([str(GUNICORN), "-c", "gunicorn.conf.py"], full_env, log, port)
    try:
        wait_until_ready(server)
        wait_for_workers(server, workers)
        yield server
    finally:
        stop(server)


class Nats:
    """A real nats-server with JetStream, its store in a folder; stop() and start() again keep the store."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Nats":
        """Start it (on the same port and store as before) and wait until it accepts connections."""
        executable = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(executable).exists():
            raise RuntimeError("nats-server is not installed (make test installs Debian's nats-server)")
        self.process = subprocess.Popen([executable, "-js", "-a", "127.0.0.1", "-p", str(self.port),
                                         "-sd", str(self.folder)], stdout=subprocess.DEVNULL,
                                        stderr=open(self.folder / "nats.log", "ab"), start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nats-server did not listen on {self.port}")

    def stop(self) -> None:
        """SIGTERM it and wait."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)


@contextmanager
def nats_server(folder: Path) -> Iterator[Nats]:
    """A real nats-server with JetStream for the block."""
    server = Nats(folder).start()
    try:
        yield server
    finally:
        server.stop()


def wait_for_http(url: str, process: subprocess.Popen, what: str, seconds: float = 60.0) -> None:
    """Poll url until it answers below 500; fail early, with what, if the process died."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer at {url} within {seconds} s")


class StoreServer:
    """A store a model source lives in, on a fixed port: stop() and start() again, pause() and resume() it."""

    name = "store"

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        """The server's command line."""
        raise NotImplementedError

    def start(self) -> "StoreServer":
        """Start it and wait until it answers."""
        command = self.command()
        if not Path(command[0]).exists():
            raise RuntimeError(f"{command[0]} is missing: `make test` installs the {self.name} server")
        self.process = subprocess.Popen(command, cwd=self.folder, stdout=subprocess.DEVNULL,
                                        stderr=open(self.folder / f"{self.name}.log", "ab"), start_new_session=True)
        wait_for_http(self.url + "/health" if self.name == "mlflow" else self.url, self.process, self.name)
        return self

    def __enter__(self) -> "StoreServer":
        """Start it, for a with block that stops it."""
        return self.start()

    def __exit__(self, *_exc) -> None:
        """Stop it."""
        self.stop()

    def pause(self) -> None:
        """SIGSTOP it: connections are accepted by the kernel and never answered, as with a hung server."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT it."""
        os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop it and wait."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGCONT)
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class Moto(StoreServer):
    """moto's standalone S3 server (moto[server], the test extra), spoken to over HTTP; it keeps buckets in memory."""

    name = "moto"

    def command(self) -> list[str]:
        """moto_server on 127.0.0.1."""
        return [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(self.port)]


class Mlflow(StoreServer):
    """A real MLflow tracking server: a SQLite backend and a local artifact folder, from make's .venv-mlflow."""

    name = "mlflow"

    def command(self) -> list[str]:
        """mlflow server, serving the artifacts itself."""
        return [str(ROOT / ".venv-mlflow" / "bin" / "mlflow"), "server", "--host", "127.0.0.1", "--port",
                str(self.port), "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
                "--artifacts-destination", str(self.folder / "artifacts"), "--workers", "1"]


@contextmanager
def prometheus(config: Path, folder: Path) -> Iterator[str]:
    """A real Prometheus server with this config, its data in folder; yields its base URL."""
    executable = shutil.which("prometheus")
    if executable is None:
        raise RuntimeError("prometheus is not installed: `make test` installs it (apt-get install prometheus)")
    port = free_port()
    command = [executable, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
               f"--web.listen-address=127.0.0.1:{port}"]
    server = start(command, os.environ, folder / "prometheus.log", port)
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                if requests.get(f"{server.base_url}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if server.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not start: {server.output()[-2000:]}")
            time.sleep(0.1)
        yield server.base_url
    finally:
        stop(server)


class Stack(Server):
    """A running `make serve` stack: the proxy's base URL, its internal door's, and where its exporters answer."""

    def __init__(self, server: Server, exporter_url: str, answers_url: str, internal_url: str = ""):
        super().__init__(server.process, server.base_url, server.log)
        self.exporter_url, self.answers_url = exporter_url, answers_url
        #: The proxy's internal door (PROXY_INTERNAL_BIND): /metrics, /docs, /openapi.json, the whole /health.
        self.internal_url = internal_url

    def gunicorn_pid(self, pool: str = "main") -> int:
        """The master of one of the supervisor's gunicorns: the main pool's, or the bulk pool's."""
        return next(pid for pid in children(self.process.pid)
                    if "gunicorn" in Path(f"/proc/{pid}/cmdline").read_text()
                    and f"\0POOL={pool}\0" in "\0" + Path(f"/proc/{pid}/environ").read_text(errors="replace"))


def wait_for_line(server: Server, text: str, seconds: float = 120.0) -> None:
    """Wait until the server has written text to stderr; fail early if it died."""
    deadline = time.monotonic() + seconds
    while text not in server.output():
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}: {server.output()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {text!r} after {seconds} s: {server.output()[-3000:]}")
        time.sleep(0.1)


def start_stack(env: Mapping[str, str], log: Path, workers: int = 2, command: list[str] | None = None) -> Stack:
    """Start `python -m service.proxy.serve` (or command, e.g. make serve) on free ports; wait until it serves."""
    port, exporter, answers, internal = free_port(), free_port(), free_port(), free_port()
    full_env = service_env(**{"PUBLIC_BIND": f"127.0.0.1:{port}", "PROXY_EXPORTER_BIND": f"127.0.0.1:{exporter}",
                              "PROXY_ANSWERS_BIND": f"127.0.0.1:{answers}", "PROXY_INTERNAL_BIND": f"127.0.0.1:{internal}",
                              "WORKERS": str(workers), **env})
    command = command or [sys.executable, "-m", "service.proxy.serve", "gunicorn.conf.py"]
    server = start(command, full_env, log, port)
    scheme = "https" if full_env.get("PROXY_TLS_CERT_FILE") else "http"
    server.base_url = f"{scheme}://127.0.0.1:{port}"
    try:
        wait_for_line(server, "regno-api serving on")
        wait_for_workers(server, workers)
    except Exception:
        stop(server)
        raise
    return Stack(server, f"http://127.0.0.1:{exporter}", f"http://127.0.0.1:{answers}",
                 f"http://127.0.0.1:{full_env['PROXY_INTERNAL_BIND'].rpartition(':')[2]}")


@contextmanager
def serve(env: Mapping[str, str], log: Path, workers: int = 2) -> Iterator[Stack]:
    """The production-shaped stack (nginx before a multi-worker gunicorn), ready through the proxy."""
    stack = start_stack(env, log, workers)
    try:
        yield stack
    finally:
        stop(stack)
