"""`make serve`: nginx in front of a multi-worker gunicorn on one machine, with the proxy's exporters beside them.

gunicorn listens only on a unix socket in the run folder; nginx, on PUBLIC_BIND, is the one door in. A second
gunicorn, the bulk pool (BULK_WORKERS workers at a lower CPU priority, on a socket of its own), takes batches,
explanations and labels, so they never hold a worker that /reg/ needs; the two pools share one metrics folder,
so either's /metrics counts both. The stack is ready when /health/ready answers 200 through nginx and from the
bulk pool. SIGTERM or SIGINT stops nginx gracefully first (it stops accepting and finishes what it has in hand),
then both gunicorns (which finish their own requests), so no request that reached the proxy is dropped.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from config import Settings, SettingsError
from service.probe import connection_to
from service.proxy.nginx_config import render

MTAIL_PROGRAM = Path(__file__).with_name("proxy_answers.mtail")
#: The processes that serve; the exporters only observe, so losing one (say, its port is taken) is a warning.
ESSENTIAL = ("gunicorn", "gunicorn-bulk", "nginx")
#: Debian puts nginx in /usr/sbin, which a user's PATH may lack.
_SYSTEM_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


class ServeError(RuntimeError):
    """The stack cannot start; the message is one line an operator can act on."""


def find_program(name: str, package: str) -> str:
    """The path of a system program, or ServeError naming the package to install."""
    found = shutil.which(name, path=_SYSTEM_PATH)
    if found is None:
        raise ServeError(f"{name} is not installed: install the '{package}' package (make serve does, with apt-get)")
    return found


def ready_through_proxy(run_dir: Path) -> bool:
    """True when GET /health/ready, sent through nginx (its internal listener) to gunicorn, answers 200."""
    return ready_at(run_dir / "nginx-status.sock")


def ready_at(socket_path: Path) -> bool:
    """True when GET /health/ready on this unix socket answers 200."""
    try:
        connection = connection_to(f"unix:{socket_path}")
    except OSError:
        return False
    try:
        connection.request("GET", "/health/ready")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


class Stack:
    """The processes of one `make serve`, started in order and stopped in the reverse order."""

    def __init__(self, settings: Settings, run_dir: Path, gunicorn_config: Path, metrics_dir: Path):
        self.settings, self.run_dir, self.gunicorn_config = settings, run_dir, gunicorn_config
        #: The Prometheus folder both pools write to (the main pool empties it as it starts).
        self.metrics_dir = metrics_dir
        self.processes: dict[str, subprocess.Popen] = {}
        #: Signals received; a wait gives up as soon as one arrives.
        self.stopping: list[int] = []
        #: Exporters already reported as gone.
        self.lost: set[str] = set()

    def _start(self, name: str, command: list[str], env: dict[str, str] | None = None, quiet: bool = False) -> None:
        """Start one process in its own group, so a terminal's Ctrl-C reaches only this supervisor."""
        output = open(self.run_dir / f"{name}.log", "ab") if quiet else None
        # The exporters read variables of their own (the nginx exporter's TIMEOUT clashes with ours): none of ours.
        env = env if env is not None else {"PATH": os.environ.get("PATH", "")}
        self.processes[name] = subprocess.Popen(command, env=env, stdout=output or sys.stdout, stderr=output,
                                                start_new_session=True)
        if output is not None:
            output.close()

    def start(self) -> None:
        """mtail, gunicorn, nginx, then the nginx exporter; raises ServeError when one cannot start."""
        nginx = find_program("nginx", "nginx")
        mtail = find_program("mtail", "mtail")
        exporter = find_program("prometheus-nginx-exporter", "prometheus-nginx-exporter")
        conf = self.run_dir / "nginx.conf"
        conf.write_text(render(self.settings, self.run_dir), encoding="utf-8")
        check = subprocess.run([nginx, "-t", "-q", "-c", str(conf)], capture_output=True, text=True)
        if check.returncode != 0:
            lines = check.stderr.strip().splitlines()
            raise ServeError(f"nginx refuses its configuration: {next((l for l in lines if '[emerg]' in l), lines[0])}")
        # mtail first: nginx logs its own answers to mtail's socket from its first request on.
        host, _, port = self.settings.proxy_answers_bind.rpartition(":")
        self._start("mtail", [mtail, "-progs", str(MTAIL_PROGRAM.parent), "-logs",
                              f"unixgram://{self.run_dir / 'proxy-answers.sock'}", "-address", host, "-port", port,
                              "-logtostderr"], quiet=True)
        answers = self.run_dir / "proxy-answers.sock"
        self._wait_for(lambda: answers.exists() or "mtail" in self.lost, "mtail's socket", 10)
        if answers.exists():
            # nginx's workers drop to an unprivileged user when it starts as root: they must reach the socket too.
            answers.chmod(0o666)
        gunicorn = [str(Path(sys.executable).with_name("gunicorn")), "-c", str(self.gunicorn_config)]
        env = {**os.environ, "BIND": self.settings.bind, "BULK_BIND": self.settings.bulk_bind or "",
               "FORWARDED_HOPS": str(self.settings.forwarded_hops), "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)}
        self._start("gunicorn", gunicorn, env={**env, "POOL": "main"})
        # nginx after gunicorn has bound its socket (it loads the model first): no 502 while the stack starts.
        self._wait_for(lambda: (self.run_dir / "gunicorn.sock").exists(), "gunicorn's socket", 120)
        if self.settings.bulk_bind:
            # The bulk pool after the main one has emptied the metrics folder they share.
            self._start("gunicorn-bulk", gunicorn, env={**env, "POOL": "bulk"})
            self._wait_for(lambda: (self.run_dir / "gunicorn-bulk.sock").exists(), "the bulk pool's socket", 120)
        self._start("nginx", [nginx, "-c", str(conf)], env=dict(os.environ))
        self._wait_for(lambda: (self.run_dir / "nginx-status.sock").exists(), "nginx's status socket", 30)
        self._start("nginx-exporter", [exporter, "-nginx.scrape-uri",
                                       f"unix:{self.run_dir / 'nginx-status.sock'}:/stub_status",
                                       # nginx may take a moment to accept on the socket it has made
                                       "-nginx.retries", "20", "-nginx.retry-interval", "500ms",
                                       "-web.listen-address", self.settings.proxy_exporter_bind], quiet=True)

    def _wait_for(self, condition, what: str, seconds: float) -> None:
        """Poll condition until true; ServeError when a process died or time ran out."""
        deadline = time.monotonic() + seconds
        while not condition():
            self.check_alive()
            if self.stopping:
                raise ServeError(f"stopped by signal {self.stopping[0]} before {what} was ready")
            if time.monotonic() > deadline:
                raise ServeError(f"{what} not ready after {seconds:.0f} s")
            time.sleep(0.1)

    def wait_until_ready(self, seconds: float) -> None:
        """Wait until /health/ready answers 200 through nginx, and from the bulk pool."""
        self._wait_for(lambda: ready_through_proxy(self.run_dir), "/health/ready through nginx", seconds)
        if self.settings.bulk_bind:
            self._wait_for(lambda: ready_at(self.run_dir / "gunicorn-bulk.sock"), "the bulk pool's /health/ready",
                           seconds)

    def check_alive(self) -> None:
        """ServeError naming a serving process that has exited; one warning line for an exporter that has."""
        for name, process in self.processes.items():
            if process.poll() is None or name in self.lost:
                continue
            if name in ESSENTIAL:
                raise ServeError(f"{name} exited with status {process.returncode}")
            self.lost.add(name)
            print(f"regno-api warning: {name} exited with status {process.returncode} (see {self.run_dir}/{name}.log);"
                  f" serving goes on without its metrics", file=sys.stderr, flush=True)

    def stop(self) -> None:
        """nginx gracefully (SIGQUIT), then both gunicorns (SIGTERM: they finish their requests), then the exporters."""
        grace = self.settings.graceful_timeout + 5
        for names, sig in ((("nginx",), signal.SIGQUIT), (("gunicorn", "gunicorn-bulk"), signal.SIGTERM),
                           (("nginx-exporter", "mtail"), signal.SIGTERM)):
            stopping = [process for name in names
                        if (process := self.processes.get(name)) is not None and process.poll() is None]
            for process in stopping:
                process.send_signal(sig)
            for process in stopping:
                try:
                    process.wait(grace)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def serving_settings(settings: Settings, run_dir: Path) -> Settings:
    """The settings as make serve runs them: both pools on sockets in run_dir, trusting one proxy's headers."""
    bulk_bind = f"unix:{run_dir / 'gunicorn-bulk.sock'}" if settings.bulk_workers else None
    return replace(settings, bind=f"unix:{run_dir / 'gunicorn.sock'}", bulk_bind=bulk_bind, forwarded_hops=1)


def main(argv: list[str] | None = None) -> int:
    """Run the stack until SIGTERM or SIGINT; exit 2 with one line when it cannot start, 1 when a part dies."""
    gunicorn_config = Path(argv[0] if argv else "gunicorn.conf.py")
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"regno-api cannot start: {error}", file=sys.stderr)
        return 2
    owned = settings.proxy_run_dir is None
    run_dir = Path(tempfile.mkdtemp(prefix="regno-serve-")) if owned else settings.proxy_run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o755)  # mkdtemp's 0700 would shut out nginx's workers when it starts as root
    settings = serving_settings(settings, run_dir)
    # One metrics folder for both pools, on tmpfs when there is one (as gunicorn.conf.py picks its own).
    metrics_dir = settings.prometheus_multiproc_dir or Path(tempfile.mkdtemp(
        prefix="regno-metrics-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None))
    stack = Stack(settings, run_dir, gunicorn_config, metrics_dir)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, frame: stack.stopping.append(number))
    status = 0
    try:
        settings.check()
        stack.start()
        stack.wait_until_ready(120)
        scheme = "https" if settings.proxy_tls else "http"
        print(f"regno-api serving on {scheme}://{settings.public_bind} (nginx -> gunicorn at {settings.bind}; "
              f"/metrics, /docs and the whole /health on http://{settings.proxy_internal_bind})",
              file=sys.stderr, flush=True)
        while not stack.stopping:
            stack.check_alive()
            time.sleep(0.2)
    except (ServeError, SettingsError) as error:
        print(f"regno-api cannot serve: {error}", file=sys.stderr, flush=True)
        status = 2 if not stack.processes or isinstance(error, SettingsError) else 1
    finally:
        stack.stop()
        if owned:
            shutil.rmtree(run_dir, ignore_errors=True)
        if settings.prometheus_multiproc_dir is None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
