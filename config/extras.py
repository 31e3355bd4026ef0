"""setup.cfg's optional extras: the one wording for a feature whose extra is not installed, for model/ and service/.

The base install holds what serving needs; Parquet and DuckDB (`log`), the report's charts (`report`),
boto3 (`s3`) and MLflow's client (`mlflow`) are extras. Whatever needs one says so in the same words:
`needs <what>: pip install 'regno-api[<extra>]'`.
"""

from __future__ import annotations

import importlib


def needs(what: str, extra: str) -> str:
    """`needs <what>: pip install 'regno-api[<extra>]'`, the end of every message about a missing extra."""
    return f"needs {what}: pip install 'regno-api[{extra}]'"


def missing(what: str, extra: str, *modules: str) -> str | None:
    """needs(what, extra) when one of modules cannot be imported, else None (they are imported by then)."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            return needs(what, extra)
    return None
