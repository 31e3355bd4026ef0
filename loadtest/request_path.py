"""The modules of this project that one cache miss on POST /reg/ runs code in, in order of first call.

python -m loadtest.request_path [--hit]

Builds the app in process (metrics on, no Redis), sends one record it has not seen through Flask's test
client with a profiler on, and lists each module of service/ and model/ whose functions ran, with the
number of times the path crossed between service/ and model/. Runs on any tree of this project
that has create_app, so a refactor can be measured before and after.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("service", "model")


def module_of(filename: str) -> str | None:
    """The dotted module of a file of service/ or model/, else None."""
    path = Path(filename).resolve()
    try:
        relative = path.relative_to(ROOT)
    except ValueError:
        return None
    if relative.parts[0] not in PACKAGES or path.suffix != ".py":
        return None
    return ".".join(relative.with_suffix("").parts).removesuffix(".__init__")


def trace_request(app, body: bytes, key: str) -> list[str]:
    """The project modules whose functions ran while app answered body, in call order (repeats kept)."""
    calls: list[str] = []

    def profile(frame, event, _arg):
        if event == "call":
            module = module_of(frame.f_code.co_filename)
            if module is not None and (not calls or calls[-1] != module):
                calls.append(module)

    client = app.test_client()
    sys.setprofile(profile)
    try:
        response = client.post("/reg/", data=body, headers={"Content-Type": "application/json", "x-api-key": key})
    finally:
        sys.setprofile(None)
    if response.status_code != 200:
        raise SystemExit(f"request_path: the request failed: {response.status_code} {response.data[:200]!r}")
    return calls


def main(argv: list[str] | None = None) -> int:
    """Print the modules of one /reg/ request, their count and the crossings between service/ and model/."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hit", action="store_true", help="trace a repeat of the record (an L1 hit) instead")
    args = parser.parse_args(argv)
    from config import Settings
    from model import BUNDLED_MODEL
    from model.scorer import PROBE_RECORD
    from service import create_app

    key = "path-key"
    app = create_app(Settings(model_path=BUNDLED_MODEL, api_keys=(key,), log_level="WARNING"))
    client = app.test_client()
    client.get("/health/ready")  # the probe, so the traced request is a plain miss in a warm process
    record = dict(PROBE_RECORD, recognition_accuracy=7.25)
    if args.hit:
        client.post("/reg/", json=dict(record, extra=1), headers={"x-api-key": key})  # same record, other bytes
    calls = trace_request(app, orjson.dumps(record), key)
    packages = [module.split(".")[0] for module in calls]
    crossings = sum(1 for before, after in zip(packages, packages[1:]) if before != after)
    distinct = list(dict.fromkeys(calls))
    print(f"{'cache hit (L1)' if args.hit else 'cache miss'} on POST /reg/: {len(distinct)} modules "
          f"({sum(m.startswith('service') for m in distinct)} of service/, "
          f"{sum(m.startswith('model') for m in distinct)} of model/), {crossings} crossings between them")
    print("in order of first call: " + " -> ".join(distinct))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
