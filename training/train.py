"""Train the model the project ships on simulated passes: `python -m training.train`.

The records go through the same validation and feature code the service uses, so the model and
the service cannot disagree about a feature. Prints the held-out AUC and accuracy as one line and
stores them, with the version, the command and a profile of the training inputs (model/profile.py),
in the model's metadata.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Sequence

import pandas as pd
from catboost import CatBoostClassifier, Pool

from model import BUNDLED_MODEL
from model.engine import pick
from model.evaluation import accuracy, roc_auc
from model.features import CATEGORICAL, TEXT, record_features
from model.profile import inputs_of_records, profile_of, store_profile
from model.records import parse_record
from model.scorer import Score
from training.simulate import Pass, simulate

#: The team's feature order; the service builds vectors by name, but keeping theirs eases comparison.
FEATURE_ORDER = [
    "afts_regno_ai_score", "direction", "recognition_accuracy", "max_sym_score", "min_sym_score",
    "max_len_score", "ai_len", "cam_len", "1", "8", "7", "9", "5", "В", "Р", "М", "0", "2", "4", "О",
    "6", "А", "Х", "3", "К", "Е", "D", "С", "Н", "Т", "У", "foreign_sym", "hour", "camera_type",
    "camera_class", "weekday", "month", "regno_template", "regno_template_ai", "afts_regno_ai_text",
    "regno_recognize_text",
]
DEFAULT_OUT = BUNDLED_MODEL
DEFAULT_ROWS = 40_000
DEFAULT_SEED = 20261122
DEFAULT_ITERATIONS = 200
DEFAULT_VERSION = "regno-sim-1"
#: Share of the simulated passes kept out of training to measure the model.
HOLDOUT = 0.2
#: Tree depth: deep enough for the feature interactions, shallow enough to keep the file small.
DEPTH = 6
#: Fixed so CatBoost's results do not depend on the machine's core count.
THREADS = 2


def pick_accuracy(passes: Sequence[Pass], scores: Sequence[float], threshold: float = 0.5) -> float:
    """Share of passes where the picked plate (AI at or above threshold, else camera) is the true plate."""
    picks = (pick(parse_record(p.record), Score(1.0 - s, s), threshold)[0] for p, s in zip(passes, scores))
    return sum(pick == p.plate for pick, p in zip(picks, passes)) / len(passes)


def feature_frame(records: Sequence[dict]) -> pd.DataFrame:
    """The contract features of validated records, one row each, columns in FEATURE_ORDER."""
    rows = [record_features(parse_record(record)) for record in records]
    frame = pd.DataFrame([[row[name] for name in FEATURE_ORDER] for row in rows], columns=FEATURE_ORDER)
    # Plain object columns: CatBoost wants str categories and texts, not pandas' string dtype.
    for name in CATEGORICAL + TEXT:
        frame[name] = frame[name].astype(object)
    return frame.astype({"foreign_sym": float})


def split(n: int, seed: int, holdout: float = HOLDOUT) -> tuple[list[int], list[int]]:
    """Seeded shuffle of range(n) cut into train and held-out indexes."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    cut = n - int(n * holdout)
    return sorted(order[:cut]), sorted(order[cut:])


def shuffle_labels(labels: Sequence[int], share: float, seed: int) -> list[int]:
    """labels with those of a random share of positions shuffled among themselves: a model taught partly noise."""
    rng = random.Random(seed)
    chosen = rng.sample(range(len(labels)), round(share * len(labels)))
    shuffled = [labels[i] for i in chosen]
    rng.shuffle(shuffled)
    noisy = list(labels)
    for position, label in zip(chosen, shuffled):
        noisy[position] = label
    return noisy


def pool(frame: pd.DataFrame, labels: Sequence[int] | None = None) -> Pool:
    """A CatBoost pool with the contract's categorical and text features."""
    return Pool(frame, label=labels, cat_features=list(CATEGORICAL), text_features=list(TEXT))


def fit(train: Pool, iterations: int, seed: int) -> CatBoostClassifier:
    """A Logloss CatBoost classifier trained deterministically on the pool."""
    model = CatBoostClassifier(
        loss_function="Logloss",
        iterations=iterations,
        depth=DEPTH,
        random_seed=seed,
        thread_count=THREADS,
        allow_writing_files=False,
        verbose=False,
    )
    return model.fit(train)


def positive_scores(model: CatBoostClassifier, data: Pool) -> list[float]:
    """predict_proba's positive column."""
    return [float(row[1]) for row in model.predict_proba(data, thread_count=THREADS)]


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces the model; --out is left out, it does not change the model."""
    shuffled = f" --shuffle-labels {args.shuffle_labels}" if args.shuffle_labels else ""
    return (
        f"python -m training.train --rows {args.rows} --seed {args.seed} "
        f"--iterations {args.iterations} --version {args.version}{shuffled}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="simulated passes, train and held-out")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of simulation, split and CatBoost")
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS, help="boosting iterations")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the .cbm model")
    parser.add_argument("--version", default=DEFAULT_VERSION, help="version stored in the model's metadata")
    parser.add_argument("--shuffle-labels", type=float, default=0.0, metavar="SHARE",
                        help="shuffle the training labels of this share of passes (0 to 1): a deliberately worse model")
    parser.add_argument("--publish", metavar="SOURCE", help="then publish it (regno-model publish) to a folder, "
                        "s3://bucket/prefix or models:/<name>")
    parser.add_argument("--as", dest="point", choices=("candidate", "current"),
                        help="with --publish: make it the candidate or the current model")
    args = parser.parse_args(argv)
    if args.rows < 50 or args.iterations < 1:
        parser.error("--rows must be at least 50 and --iterations at least 1")
    if not 0.0 <= args.shuffle_labels <= 1.0:
        parser.error("--shuffle-labels must be a share from 0 to 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Simulate, train, evaluate on the held-out passes, write the model; 0 on success."""
    args = parse_args(argv)
    started = time.monotonic()
    passes = simulate(args.rows, args.seed)
    frame = feature_frame([p.record for p in passes])
    labels = [p.label for p in passes]
    train_idx, test_idx = split(len(passes), args.seed)
    taught = shuffle_labels([labels[i] for i in train_idx], args.shuffle_labels, args.seed)
    model = fit(pool(frame.iloc[train_idx], taught), args.iterations, args.seed)

    test_labels = [labels[i] for i in test_idx]
    scores = positive_scores(model, pool(frame.iloc[test_idx]))
    auc, acc = roc_auc(test_labels, scores), accuracy(test_labels, scores)
    picked = pick_accuracy([passes[i] for i in test_idx], scores)

    metadata = model.get_metadata()
    for key, value in {
        "version": args.version,
        "seed": args.seed,
        "rows": args.rows,
        "holdout_auc": f"{auc:.6f}",
        "holdout_accuracy": f"{acc:.6f}",
        "trained_with": command_line(args),
    }.items():
        metadata[key] = str(value)
    # The training split's inputs, so a report can tell how far live traffic has drifted from them.
    store_profile(model, profile_of(inputs_of_records([parse_record(passes[i].record) for i in train_idx])))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save_model(str(args.out))

    print(
        f"held-out AUC {auc:.4f}, accuracy {acc:.4f} at 0.5 (pick right {picked:.4f}) on {len(test_idx)} "
        f"of {args.rows} passes; {args.iterations} iterations, {time.monotonic() - started:.1f} s in all -> {args.out}"
    )
    if args.publish:
        from model.lifecycle.manage import main as regno_model  # the team's one way to publish, with its settings and errors

        point = [f"--{args.point}"] if args.point else []
        return regno_model(["publish", str(args.out), "--to", args.publish, "--version", args.version, *point])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
