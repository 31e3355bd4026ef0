"""Loading a CatBoost model once per process and scoring validated records with it."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
from catboost import CatBoostClassifier, CatBoostError, Pool

from model.features import CATEGORICAL, TEXT, unbuildable, vector_builder
from model.records import Record, parse_record

#: A record every model must score: the readiness probe and the per-worker warm-up.
PROBE_RECORD = {
    "regno_recognize": "А939НО196",
    "afts_regno_ai": "А939НО190",
    "recognition_accuracy": 6.4,
    "afts_regno_ai_score": 0.87,
    "afts_regno_ai_char_scores": "[0.99, 0.99, 0.99, 0.99, 0.99, 0.99, 1.0, 0.99, 0.87]",
    "afts_regno_ai_length_scores": "[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]",
    "camera_type": "Стационарная",
    "camera_class": "Астра-Трафик",
    "time_check": "2021-08-01 09:02:59",
    "direction": 0,
}


#: Pool's native initialiser after data, label, cat and text features, up to thread_count: embedding features
#: and their data, pairs, graph, weight, group id and weight, subgroup id, pair weights, baseline,
#: timestamp, feature names and tags, all unused here.
_NO_POOL_EXTRAS = (None,) * 13


class ModelLoadError(RuntimeError):
    """The model file is missing, unreadable, or declares features the contract cannot build."""


class FeatureMismatch(ModelLoadError):
    """The model loads but declares features the contract cannot build, or types them differently."""


class Score(NamedTuple):
    """predict_proba of one record: the probabilities of 'keep the camera plate' and 'take the AI plate'."""

    negative: float
    positive: float


def file_checksum(path: Path) -> str:
    """SHA-256 of a file, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Scorer:
    """A loaded model and the feature builder for its declared feature order."""

    model: CatBoostClassifier
    path: Path
    version: str
    checksum: str
    build_vector: Callable[[Record], list]
    cat_features: list[int]
    text_features: list[int]
    #: The pick threshold the model's publisher chose for it (model/registry.py reads it from its metadata); None
    #: leaves the engine's own (PICK_THRESHOLD).
    threshold: float | None = None
    #: PID of the process whose probe prediction succeeded; native thread pools are per process.
    _probed_pid: int | None = field(default=None, repr=False)
    #: True once the probe found the direct route (see _predict_direct) gives the public route's answer.
    _direct: bool = field(default=False, repr=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Scorer":
        """Load a .cbm file and check that every feature it declares can be built; no prediction runs."""
        path = Path(path)
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        model = CatBoostClassifier()
        try:
            model.load_model(str(path))
        except CatBoostError as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
            raise ModelLoadError(f"model file {path} is not a CatBoost model: {first_line}") from None
        names = list(model.feature_names_ or [])
        missing = unbuildable(names)
        if missing:
            raise FeatureMismatch(f"model {path} declares features the contract cannot build: {', '.join(missing)}")
        checksum = file_checksum(path)
        version = dict(model.get_metadata()).get("version") or f"sha256-{checksum[:12]}"
        kinds = {"categorical": set(CATEGORICAL), "text": set(TEXT)}
        cat = [i for i, name in enumerate(names) if name in kinds["categorical"]]
        text = [i for i, name in enumerate(names) if name in kinds["text"]]
        if cat != list(model.get_cat_feature_indices()) or text != list(model.get_text_feature_indices()):
            raise FeatureMismatch(f"model {path} types its features differently from the contract")
        return cls(model, path, version, checksum, vector_builder(names), cat, text)

    @property
    def feature_names(self) -> list[str]:
        """The features the model declares, in its order."""
        return list(self.model.feature_names_)

    def predict_vectors(self, vectors: list[list]) -> list[Score]:
        """predict_proba of feature vectors in one CatBoost call, on one thread."""
        if self._direct:
            try:
                probabilities = self._predict_direct(vectors)
            except Exception:  # noqa: BLE001 - the public route gives the answer or CatBoost's own error
                probabilities = self._predict_public(vectors)
        else:
            probabilities = self._predict_public(vectors)
        return [Score(float(row[0]), float(row[1])) for row in probabilities]

    def _predict_public(self, vectors: list[list]) -> np.ndarray:
        """predict_proba through CatBoost's documented API."""
        pool = Pool(vectors, cat_features=self.cat_features, text_features=self.text_features)
        return self.model.predict_proba(pool, thread_count=1)

    def _predict_direct(self, vectors: list[list]) -> np.ndarray:
        """predict_proba through the native calls that Pool() and predict_proba() end in.

        Their Python layers re-check arguments that features.py builds right by construction: about
        30 µs of a one-row call of 150 µs (python -m loadtest.bench.record). These are CatBoost internals
        (checked on CatBoost 1.2.10), so probe() turns this route on only after it has given the public
        route's exact answer; this and service/internals.py are the only shortcuts into private APIs.
        """
        pool = Pool.__new__(Pool)
        pool._init_pool(np.asarray(vectors, dtype=object), None, self.cat_features, self.text_features,
                        *_NO_POOL_EXTRAS, 1)
        return self.model._object._base_predict(pool, "Probability", 0, 0, 1, False, "CPU")

    def score(self, record: Record) -> Score:
        """predict_proba of one validated record."""
        return self.predict_vectors([self.build_vector(record)])[0]

    def probe(self) -> Score:
        """Score the probe record in this process; warms CatBoost up after a fork and proves it works.

        Also turns on the direct prediction route when it answers the probe exactly as the public one.
        """
        vector = self.build_vector(parse_record(PROBE_RECORD))
        public = self._predict_public([vector])
        try:
            self._direct = np.array_equal(self._predict_direct([vector]), public)
        except Exception:  # noqa: BLE001 - another CatBoost version: keep to the public route
            self._direct = False
        self._probed_pid = os.getpid()
        return Score(float(public[0][0]), float(public[0][1]))

    def ready(self) -> bool:
        """True once a probe prediction has succeeded in this process (running one if none has)."""
        if self._probed_pid != os.getpid():
            try:
                self.probe()
            except Exception:  # noqa: BLE001 - readiness reports failure, it does not raise
                return False
        return True
