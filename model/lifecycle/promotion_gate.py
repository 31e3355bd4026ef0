"""The promotion gate: a candidate whose latest replay found it worse, on enough labelled passes, is not promoted.

regno-replay (service/replay/) writes each candidate version's replay beside the prediction log, under
`<parquet root>/replays/<version>/`, with what it showed in `summary.json`; `regno-model promote` reads that
file here and asks judge() before moving `current`. Only a "worse" verdict (McNemar's exact test below 0.05)
on at least REPLAY_MIN_LABELS labelled passes refuses; any other verdict, or a worse one on fewer labels, lets
the promotion go on and says so. Plain files and JSON only: model/ never imports the service.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

#: The folder of the replays under the log's Parquet root, and each replay's summary in its version's folder.
REPLAYS_FOLDER = "replays"
SUMMARY_FILE = "summary.json"
WORSE = "worse"


@dataclass(frozen=True)
class Decision:
    """Whether a replay refuses the promotion, and what it showed in one line."""

    refuse: bool
    words: str


def replay_folder(parquet_root: Path, version: str) -> Path:
    """The folder of version's latest replay, <root>/replays/<version>: its rows' day partitions and its summary."""
    return parquet_root / REPLAYS_FOLDER / version


def summary_path(parquet_root: Path, version: str) -> Path:
    """Where the summary of version's latest replay is: <root>/replays/<version>/summary.json."""
    return replay_folder(parquet_root, version) / SUMMARY_FILE


def latest_replay(parquet_root: Path, version: str) -> dict | None:
    """The summary of version's latest replay; None when it was never replayed. ValueError when it is unreadable."""
    path = summary_path(parquet_root, version)
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable replay summary: {error}") from None
    if not isinstance(summary, dict) or "verdict" not in summary or "paired" not in summary:
        raise ValueError(f"{path} is not a replay summary: it has no verdict")
    return summary


def _what(summary: dict) -> str:
    """Which replay: the candidate, its window and when it ran."""
    window = summary.get("window") or {}
    return (f"the replay of {summary.get('candidate', '?')} over {window.get('from', '?')} to {window.get('to', '?')}"
            f" (run {summary.get('replayed_at', '?')})")


def judge(summary: dict, min_labels: int) -> Decision:
    """Refuse only when the replay's verdict is "worse" on at least min_labels labelled passes."""
    labelled = int(summary["paired"]["labelled"])
    words = summary.get("verdict_words") or summary["verdict"]
    if summary["verdict"] != WORSE:
        return Decision(False, f"{_what(summary)} found {words}")
    if labelled < min_labels:
        return Decision(False, f"{_what(summary)} found {words}; that is fewer than the {min_labels} labelled passes "
                               "(REPLAY_MIN_LABELS) a refusal needs")
    return Decision(True, f"{_what(summary)} found {words}")
