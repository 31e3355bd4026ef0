"""The optional extras (config/extras.py): whatever needs a missing one says so in one line that names it.

Here a module is hidden from the import system; tests/test_wheel.py checks the same in a real base install.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from config.extras import missing, needs
from model import score_file
from model.sources import SourceError, SourceOptions, open_source
from service.predictions import query
from service.report import main as report


def test_needs_names_the_extra_to_install():
    """The one wording: what is needed, then the pip command with the extra."""
    assert needs("boto3", "s3") == "needs boto3: pip install 'regno-api[s3]'"


def test_missing_is_none_when_every_module_imports(monkeypatch):
    """None while the modules import; the extra's line as soon as one of them does not."""
    assert missing("JSON", "log", "json", "csv") is None
    monkeypatch.setitem(sys.modules, "csv", None)
    assert missing("JSON", "log", "json", "csv") == needs("JSON", "log")


@pytest.mark.parametrize("command,hidden,line", [
    (query.main, "duckdb", "regno-log: needs DuckDB and pyarrow: pip install 'regno-api[log]'"),
    (query.main, "pyarrow", "regno-log: needs DuckDB and pyarrow: pip install 'regno-api[log]'"),
    (report.main, "matplotlib", "regno-report: needs DuckDB, pyarrow and matplotlib: pip install 'regno-api[report]'"),
])
def test_a_command_without_its_extra_exits_2_with_one_line(command, hidden, line, monkeypatch, capsys):
    """Even --help: the command cannot run, so it says which extra to install instead of a traceback."""
    monkeypatch.setitem(sys.modules, hidden, None)
    assert command(["--help"]) == 2
    assert capsys.readouterr().err.splitlines() == [line]


def test_an_s3_source_without_boto3_names_the_s3_extra(monkeypatch):
    """MODEL_SOURCE=s3://... without boto3 is a SourceError, as a models:/ source without MLflow is."""
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(SourceError, match=r"^MODEL_SOURCE=s3://\.\.\. needs boto3: pip install 'regno-api\[s3\]'$"):
        open_source("s3://bucket/models", SourceOptions())


def test_parquet_without_pyarrow_names_the_log_extra(monkeypatch):
    """regno-score still takes CSV without pyarrow; a Parquet path names the extra that reads it."""
    monkeypatch.setattr(score_file, "pq", None)
    with pytest.raises(score_file.ScoreFileError, match=r"^passes\.parquet: Parquet needs pyarrow: "
                                                          r"pip install 'regno-api\[log\]'$"):
        score_file.open_table(Path("passes.parquet"))
