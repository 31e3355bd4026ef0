"""The interface every model source keeps, its options and its two errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from model.registry import CANDIDATE, CURRENT


class SourceError(RuntimeError):
    """The source could not be reached, or answered with an error: nothing was learned of its models."""


class MissingVersion(LookupError):
    """A pointer names a version the source does not hold (deleted, or never finished)."""


@dataclass(frozen=True)
class SourceOptions:
    """How to reach a source; credentials are never here (boto3's chain and MLflow's own variables carry them)."""

    #: Seconds each call may take before it fails.
    timeout_s: float = 10.0
    #: Endpoint URL of an S3-compatible store; None for AWS.
    s3_endpoint: str | None = None
    #: The MLflow tracking server of a models:/ source.
    mlflow_tracking_uri: str | None = None
    #: The MLflow aliases that stand for the `current` and `candidate` pointers.
    alias_current: str = "champion"
    alias_candidate: str = "challenger"

    @classmethod
    def of(cls, settings) -> "SourceOptions":
        """The options in the service's settings (config.Settings)."""
        return cls(settings.model_source_timeout_s, settings.model_source_s3_endpoint, settings.mlflow_tracking_uri,
                   settings.model_alias_current, settings.model_alias_candidate)


class ModelSource(Protocol):
    """A place models are published to and synced from."""

    #: "folder", "s3" or "mlflow".
    kind: str
    #: The source as logs, /health and metrics may show it: never a credential.
    label: str

    def read_pointer(self, which: str) -> str | None:
        """The version a pointer names at the source; None when it names none. SourceError when unreachable."""

    def fetch(self, version: str, into: Path) -> dict:
        """Write the version's model file to into/model.cbm; the metadata its publisher recorded (may be {})."""

    def publish(self, model_file: Path, metadata: dict) -> str:
        """Upload a model and its metadata (the metadata last), never over an existing version; the version."""

    def set_pointer(self, which: str, version: str | None) -> None:
        """Point which at version (None removes the pointer), once the version is whole at the source."""


def wanted(source: ModelSource, pointers: tuple[str, ...] = (CURRENT, CANDIDATE)) -> dict[str, str | None]:
    """What each of pointers (`current` and `candidate` by default) names at the source, in one look."""
    return {which: source.read_pointer(which) for which in pointers}
