"""The built wheel in a clean venv: the files it carries, its console scripts, and what each extra adds.

What ships is what runs (docs/style.md): the source tree hides what a wheel leaves out, as it hid the proxy's
nginx.conf.j2 until `python -m service.proxy.nginx_config` failed in an installed wheel.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from loadtest.servers import ROOT
from tests.conftest import clean_venv

pytestmark = pytest.mark.slow

#: The console scripts that need an extra, and that extra; every other one runs on the base install.
NEEDS_EXTRA = {"regno-log": "log", "regno-log-sink": "log", "regno-report": "report"}
#: The extras the commands and the model sources need, installed together once the base install is checked.
EXTRAS = "log,report,s3"
#: The data files the code reads at run time today; the generic check below must at least find these.
KNOWN_DATA = {"model/regno_model.cbm", "service/proxy/nginx.conf.j2", "service/proxy/proxy_answers.mtail",
              "service/report/templates/report.html.j2"}
#: Opens an S3 and an MLflow source and prints what each gives: its kind, or the one-line refusal.
OPEN_SOURCES = """
from model.sources import SourceError, SourceOptions, open_source
options = SourceOptions(s3_endpoint="http://127.0.0.1:9", mlflow_tracking_uri="http://127.0.0.1:9")
for uri in ("s3://bucket/models", "models:/plates"):
    try:
        print(open_source(uri, options).kind)
    except SourceError as error:
        print(error)
"""


def _work_tree_files() -> list[str]:
    """The files git tracks, and those it would add (untracked, not ignored), as the work tree has them."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    return [name for name in listed.stdout.splitlines() if (ROOT / name).is_file()]


def _data_files() -> list[str]:
    """Every file of the installed packages (config, model, service) that is not Python: all must ship."""
    return [name for name in _work_tree_files() if name.split("/")[0] in ("config", "model", "service")
            and not name.endswith(".py") and not Path(name).name.startswith(".")]


def _console_scripts() -> list[str]:
    """The console scripts setup.cfg declares."""
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg", encoding="utf-8")
    return [line.split("=")[0].strip() for line in setup["options.entry_points"]["console_scripts"].split("\n")
            if line.strip()]


def _not_as_expected(script: str, run: subprocess.CompletedProcess, extra: str | None) -> str | None:
    """What is wrong with `script --help`'s answer: with extra, it must exit 2 on one line naming it; else 0."""
    if extra is None:
        return None if run.returncode == 0 and "usage:" in run.stdout else f"exit {run.returncode}: {run.stderr}"
    lines = run.stderr.splitlines()
    if (run.returncode, len(lines)) == (2, 1) and lines[0].startswith(f"{script}: ") \
            and f"pip install 'regno-api[{extra}]'" in lines[0]:
        return None
    return f"exit {run.returncode}, not 2 with one line naming regno-api[{extra}]: {run.stderr}"


class Venv:
    """A clean venv, and its programs run from a folder outside the repo, so nothing is imported from the work tree."""

    def __init__(self, folder: Path, cwd: Path):
        self.env = clean_venv(folder)
        self.bin, self.cwd = folder / "bin", cwd
        self.site = next((folder / "lib").glob("python3.*/site-packages"))

    def run(self, program: str, *arguments: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
        """Run one of the venv's programs with arguments, env added to the clean environment."""
        return subprocess.run([str(self.bin / program), *arguments], cwd=self.cwd, env={**self.env, **env},
                              capture_output=True, text=True, timeout=timeout)

    def install(self, requirement: str) -> None:
        """pip install requirement with its dependencies (pip's cache makes a second run fast)."""
        run = self.run("python", "-m", "pip", "install", "--quiet", requirement, timeout=900)
        assert run.returncode == 0, run.stdout + run.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the work tree's files, as a fresh clone with these changes would build it."""
    # A copy: setuptools reuses the tree's build/ folder, which would still hold what setup.cfg no longer ships.
    source = tmp_path_factory.mktemp("source")
    for name in _work_tree_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    return next(out.glob("regno_api-*.whl"))


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Venv:
    """A clean venv with the wheel and its base dependencies only."""
    venv = Venv(tmp_path_factory.mktemp("venv") / "venv", tmp_path_factory.mktemp("cwd"))
    venv.install(str(wheel))
    return venv


def test_every_data_file_of_the_packages_is_in_the_wheel(wheel):
    """Each non-Python file under config/, model/ and service/ is in the wheel: package data no one declared shows."""
    data = _data_files()
    assert KNOWN_DATA <= set(data)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert [name for name in data if name not in names] == []


def test_the_installed_packages_are_the_ones_imported_and_hold_their_data(installed):
    """The venv imports config, model and service from its site-packages, where every data file is."""
    where = installed.run("python", "-c", "import config, model, service; "
                          "print(config.__file__, model.__file__, service.__file__)")
    assert where.returncode == 0 and all(path.startswith(str(installed.site)) for path in where.stdout.split()), where
    assert [name for name in _data_files() if not (installed.site / name).is_file()] == []


def test_the_proxy_configuration_renders_from_the_installed_template(installed, tmp_path):
    """`python -m service.proxy.nginx_config -o OUT` works from the wheel: nginx in the foreground, our socket."""
    out, socket = tmp_path / "nginx.conf", tmp_path / "gunicorn.sock"
    run = installed.run("python", "-m", "service.proxy.nginx_config", "-o", str(out), BIND=f"unix:{socket}",
                        PROXY_RUN_DIR=str(tmp_path))
    assert run.returncode == 0, run.stderr
    text = out.read_text(encoding="utf-8")
    assert "daemon off;" in text and f"server unix:{socket};" in text


def test_each_command_runs_or_names_its_extra_until_the_extras_are_installed(installed, wheel):
    """On the base install a command either works or exits 2 on one line naming its extra, as an S3 or MLflow source
    names its own; with the extras installed, every command works and an S3 source opens."""
    scripts = _console_scripts()
    assert set(NEEDS_EXTRA) <= set(scripts)
    wrong = {script: _not_as_expected(script, installed.run(script, "--help"), NEEDS_EXTRA.get(script))
             for script in scripts}
    assert {script: why for script, why in wrong.items() if why} == {}
    sources = installed.run("python", "-c", OPEN_SOURCES)
    assert sources.returncode == 0, sources.stderr
    assert sources.stdout.splitlines() == ["MODEL_SOURCE=s3://... needs boto3: pip install 'regno-api[s3]'",
                                           "MODEL_SOURCE=models:/... needs MLflow's client: "
                                           "pip install 'regno-api[mlflow]'"]
    installed.install(f"{wheel}[{EXTRAS}]")
    wrong = {script: _not_as_expected(script, installed.run(script, "--help"), None) for script in NEEDS_EXTRA}
    assert {script: why for script, why in wrong.items() if why} == {}
    sources = installed.run("python", "-c", OPEN_SOURCES)
    assert sources.returncode == 0 and sources.stdout.splitlines()[0] == "s3", sources.stderr
