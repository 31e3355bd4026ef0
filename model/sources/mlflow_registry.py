"""An MLflow registry source: models:/<name>, its aliases for the pointers, through MLflow's own client.

The alias MODEL_ALIAS_CURRENT (`champion`) is `current`, MODEL_ALIAS_CANDIDATE (`challenger`) is
`candidate`, and `<champion>-previous` remembers the champion before the last promotion. Version N of the
registered model is served as `<name>-v<N>`. Our publisher records the model's sha256 and the probe's
answer as tags of the version (`regno.sha256`, `regno.probe_positive`) after the upload, and moves an
alias only after that. A CatBoost model logged with MLflow's CatBoost flavour by any other tool is taken
as it is: it has no such tags, so it is verified without a checksum.

Needs the optional extra: pip install 'regno-api[mlflow]'.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from config.extras import needs
from model.registry import CANDIDATE, CURRENT, MODEL_FILE, PREVIOUS
from model.scorer import Scorer, file_checksum
from model.sources.base import MissingVersion, SourceError, SourceOptions

try:
    import mlflow
    import yaml  # MLflow's own dependency, for its MLmodel files
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
except ImportError:  # pragma: no cover - the base image has no MLflow
    mlflow = None

SHA256_TAG, PROBE_TAG, METADATA_TAG = "regno.sha256", "regno.probe_positive", "regno.metadata"
#: The MLmodel file's flavour whose `data` is the .cbm.
FLAVOUR = "catboost"
#: The `user:password@` of a URL in a message (requests and urllib3 quote the URL they failed on).
USERINFO = re.compile(r"//[^/@\s]+@")


def redacted(uri: str) -> str:
    """A URI without the user and password it may carry, for logs and /health."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    return urlunsplit((parts.scheme, f"{host}:{parts.port}" if parts.port else host, parts.path, parts.query, ""))


def scrubbed(text: str, uri: str) -> str:
    """text (an error's message) without the user and password of uri, nor of any other URL in it."""
    password = urlsplit(uri).password
    if password:
        text = text.replace(password, "***")
    return USERINFO.sub("//", text)


def _absent(error: Exception) -> bool:
    """True when MLflow says the model, version or alias does not exist (a missing alias is a bad parameter to it)."""
    code = getattr(error, "error_code", "")
    return code == "RESOURCE_DOES_NOT_EXIST" or (code == "INVALID_PARAMETER_VALUE" and "not found" in str(error))


class MlflowSource:
    """A registered model of an MLflow tracking server."""

    kind = "mlflow"

    def __init__(self, name: str, options: SourceOptions):
        if mlflow is None:
            raise SourceError("MODEL_SOURCE=models:/... " + needs("MLflow's client", "mlflow"))
        if not options.mlflow_tracking_uri:
            raise SourceError("MODEL_SOURCE=models:/... needs MLFLOW_TRACKING_URI")
        # MLflow's client retries a dead server for minutes by default; a poll must fail fast and try next time.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, round(options.timeout_s))))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        # MLflow prints each run's URL to stdout, user and password included.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        # Its download progress bars would fill the syncer's log with a line per poll that fetches.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        self.name, self.tracking_uri = name, options.mlflow_tracking_uri
        self.aliases = {CURRENT: options.alias_current, CANDIDATE: options.alias_candidate,
                        PREVIOUS: f"{options.alias_current}-previous"}
        self.label = f"models:/{name} at {redacted(self.tracking_uri)}"
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    @classmethod
    def from_uri(cls, uri: str, options: SourceOptions) -> "MlflowSource":
        """The source of a models:/<name> URI."""
        name = uri.removeprefix("models:/").strip("/")
        if not name or "/" in name or "@" in name:
            raise ValueError(f"{uri!r} must be models:/<registered model name>; the aliases come from settings")
        return cls(name, options)

    def version_name(self, number: str) -> str:
        """The served version of registry version number."""
        return f"{self.name}-v{number}"

    def _number(self, version: str) -> str:
        """The registry version number of a served version; MissingVersion when it is not one of this model's."""
        prefix = f"{self.name}-v"
        if not version.startswith(prefix) or not version[len(prefix):].isdigit():
            raise MissingVersion(f"{version} is not a version of {self.label}")
        return version[len(prefix):]

    def _call(self, what: str, call, *args):
        """Call the client; MLflow's own errors and the network's become SourceError, absence stays MlflowException."""
        try:
            return call(*args)
        except MlflowException as error:
            if _absent(error):
                raise
            message = str(error).splitlines()[0]
        except Exception as error:  # noqa: BLE001 - requests, urllib3 and socket errors all mean unreachable
            message = f"{type(error).__name__}: {error}"
        # The client's messages quote the URL it called, with the tracking URI's user and password in it.
        raise SourceError(f"{self.label}: {what} failed: {scrubbed(message, self.tracking_uri)}")

    def read_pointer(self, which: str) -> str | None:
        """The version the alias names; None when the alias (or the model) does not exist."""
        try:
            found = self._call(f"reading alias {self.aliases[which]}", self.client.get_model_version_by_alias,
                               self.name, self.aliases[which])
        except MlflowException:
            return None
        return self.version_name(found.version)

    def fetch(self, version: str, into: Path) -> dict:
        """Download the version's artifacts, keep the CatBoost flavour's file; the tags our publisher set."""
        number = self._number(version)
        try:
            found = self._call(f"reading version {number}", self.client.get_model_version, self.name, number)
        except MlflowException:
            raise MissingVersion(f"{self.label} holds no version {number}") from None
        download = into / "mlflow"
        self._call(f"downloading version {number}", lambda: mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{self.name}/{number}", dst_path=str(download), tracking_uri=self.tracking_uri))
        try:
            description = yaml.safe_load((download / "MLmodel").read_text(encoding="utf-8"))
            model_data = description["flavors"][FLAVOUR]["data"]
        except (OSError, KeyError, TypeError, yaml.YAMLError):
            raise ValueError(f"version {number} is not a model logged with MLflow's CatBoost flavour") from None
        shutil.move(download / model_data, into / MODEL_FILE)
        shutil.rmtree(download, ignore_errors=True)
        tags = found.tags or {}
        published = json.loads(tags[METADATA_TAG]) if METADATA_TAG in tags else {}
        published.pop("sha256", None)
        published.pop("probe_positive", None)
        if SHA256_TAG in tags:
            published["sha256"] = tags[SHA256_TAG]
        if PROBE_TAG in tags:
            published["probe_positive"] = float(tags[PROBE_TAG])
        published["mlflow"] = {"name": self.name, "version": number, "run_id": found.run_id, "source": found.source}
        return published

    def publish(self, model_file: Path, metadata: dict) -> str:
        """Log the model with MLflow's CatBoost flavour and register it; tag it with what was stored, then return."""
        import catboost

        scorer = Scorer.load(model_file)
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        with mlflow.start_run(run_name=f"publish {metadata['version']}"):
            info = mlflow.catboost.log_model(scorer.model, name="model", registered_model_name=self.name,
                                             pip_requirements=[f"catboost=={catboost.__version__}"])
        number = str(info.registered_model_version)
        with tempfile.TemporaryDirectory() as scratch:
            # The checksum is of the file the registry holds (the flavour saves the model again), read back.
            stored = Path(scratch)
            self.fetch(self.version_name(number), stored)
            sha256 = file_checksum(stored / MODEL_FILE)
        described = {key: value for key, value in metadata.items() if key not in ("sha256", "probe_positive")}
        for key, value in ((METADATA_TAG, json.dumps(described)), (PROBE_TAG, repr(metadata["probe_positive"])),
                           (SHA256_TAG, sha256)):  # the checksum last: with it, the version is whole
            self.client.set_model_version_tag(self.name, number, key, value)
        return self.version_name(number)

    def set_pointer(self, which: str, version: str | None) -> None:
        """Move (or delete) the alias that stands for which."""
        alias = self.aliases[which]
        if version is None:
            try:
                self._call(f"deleting alias {alias}", self.client.delete_registered_model_alias, self.name, alias)
            except MlflowException:
                pass  # already gone
            return
        number = self._number(version)
        try:
            self._call(f"reading version {number}", self.client.get_model_version, self.name, number)
        except MlflowException:
            raise MissingVersion(f"{self.label} holds no version {number}") from None
        self._call(f"moving alias {alias}", self.client.set_registered_model_alias, self.name, alias, number)
