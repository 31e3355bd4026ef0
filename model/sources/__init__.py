"""Where the data-science team publishes models: a folder, an S3 prefix or an MLflow registry.

Each source keeps the same small interface (base.ModelSource): read a pointer (`current`, `candidate`,
`previous`), fetch a version's model file and the metadata its publisher recorded, publish, move a pointer.
The syncer (model/lifecycle/sync.py) copies from any of them into MODELS_DIR and verifies there; regno-model
(model/lifecycle/manage.py) publishes to any of them.
"""

from __future__ import annotations

from pathlib import Path

from config.extras import missing
from model.sources.base import MissingVersion, ModelSource, SourceError, SourceOptions, wanted

__all__ = ["MissingVersion", "ModelSource", "SourceError", "SourceOptions", "open_source", "wanted"]


def open_source(uri: str, options: SourceOptions) -> ModelSource:
    """The source a MODEL_SOURCE value names: s3://bucket/prefix, models:/<name>, or a folder (file:// or a path)."""
    if uri.startswith("s3://"):
        absent = missing("boto3", "s3", "boto3")  # the optional extra, loaded only where S3 is used
        if absent:
            raise SourceError(f"MODEL_SOURCE=s3://... {absent}")
        from model.sources.s3 import S3Source

        return S3Source.from_uri(uri, options)
    if uri.startswith("models:/"):
        from model.sources.mlflow_registry import MlflowSource  # the optional extra

        return MlflowSource.from_uri(uri, options)
    from model.sources.folder import FolderSource

    return FolderSource(Path(uri.removeprefix("file://")))
