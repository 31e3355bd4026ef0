"""Settings: the only place that reads the environment. Defaults are documented in the README.

extras.py holds the one message for an optional extra (setup.cfg) that is not installed.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, TypeVar

from model import BUNDLED_MODEL

T = TypeVar("T")

#: The key `make run` and development mode use when no key is configured; never valid in production.
DEVELOPMENT_KEY = "dev-key"
#: The label key `make run` and development mode use when no label key is configured; never valid in production.
DEVELOPMENT_LABEL_KEY = "dev-label-key"
#: The pass-id secret of development mode when none is set; documented, so never valid in production.
DEVELOPMENT_PASS_ID_SECRET = "development-pass-id-secret"
#: Fewest characters PASS_ID_SECRET may have: a short one could be guessed, and pass ids computed with it.
MIN_PASS_ID_SECRET_CHARS = 16
#: The variables read by their own functions rather than through _VARIABLES: the secrets.
SECRET_VARIABLES = ("API_KEYS", "API_KEYS_FILE", "LABEL_API_KEYS", "LABEL_API_KEYS_FILE", "PASS_ID_SECRET",
                    "PASS_ID_SECRET_FILE")
#: A key's name in a `name:key` entry: it appears in logs and label rows, so it is plain and short.
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class SettingsError(ValueError):
    """A setting in the environment has a value that cannot be used."""


def _cpu_count() -> int:
    """Cores this process may run on (the affinity mask, not the whole machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Settings:
    """Every setting of the service, typed, with its default."""

    #: "production" or "development"; development allows the documented development key.
    env: str = "production"
    #: The CatBoost model file; the bundled model by default.
    model_path: Path = BUNDLED_MODEL
    #: A models directory (model folders and `current`/`candidate` pointer files); it wins over MODEL_PATH.
    models_dir: Path | None = None
    #: Seconds between two looks at the models directory's pointers, in each worker.
    model_poll_s: float = 2.0
    #: Where models are published: a folder, s3://bucket/prefix or models:/<name> (MLflow); MODELS_DIR is its cache.
    model_source: str | None = None
    #: Seconds between two looks of the syncer at the model source.
    model_sync_s: float = 30.0
    #: Seconds each call to the model source may take before it counts as a failure.
    model_source_timeout_s: float = 10.0
    #: Endpoint URL of an S3-compatible store (MinIO, Ceph, moto); unset for AWS itself.
    model_source_s3_endpoint: str | None = None
    #: The MLflow tracking server of a models:/ source; MLflow's own variable.
    mlflow_tracking_uri: str | None = None
    #: The MLflow alias that names the current model.
    model_alias_current: str = "champion"
    #: The MLflow alias that names the candidate model.
    model_alias_candidate: str = "challenger"
    #: Share of scored requests the candidate model also scores after the answer is sent, to compare.
    shadow_share: float = 0.0
    #: Share of passes the candidate model answers, chosen by a hash of the record (the same pass, the same model).
    canary_share: float = 0.0
    #: Scoring keys: accepted values of the x-api-key header (several at once, so keys can rotate); `name:key` or `key`.
    api_keys: tuple[str, ...] = ()
    #: Label keys: the only keys POST /reg/feedback takes, and they score nothing; entries as in api_keys.
    label_api_keys: tuple[str, ...] = field(default=(), repr=False)
    #: Keys the pass ids (blake2b), so only who was answered knows a pass's id; every replica shares it. A secret.
    pass_id_secret: str | None = field(default=None, repr=False)
    #: `positive` at or above this picks the AI plate.
    pick_threshold: float = 0.5
    #: Largest request body accepted, in bytes; larger gives 413.
    max_body_bytes: int = 64 * 1024
    #: Most records one CatBoost call takes when concurrent requests in a worker are batched together.
    batch_max_size: int = 32
    #: Most records one POST /reg/batch may carry; more gives 413.
    batch_request_max_records: int = 10_000
    #: Largest POST /reg/batch body accepted, in bytes; larger gives 413.
    batch_request_max_bytes: int = 16 * 1024 * 1024
    #: Redis for the shared (L2) cache, e.g. redis://:password@host:6379/0; none means L1 only.
    redis_url: str | None = None
    #: Seconds a cached score lives in Redis.
    cache_ttl_s: int = 3600
    #: Entries of the in-process (L1) LRU cache in each worker; 0 turns it off.
    cache_l1_size: int = 10_000
    #: Connect and read timeout of each Redis call, in milliseconds.
    redis_timeout_ms: int = 20
    #: Prefix of every cache key in Redis.
    cache_prefix: str = "regno:"
    #: Consecutive Redis failures that open the circuit breaker.
    cache_breaker_failures: int = 3
    #: Seconds the breaker stays open before one probe call may try Redis again.
    cache_breaker_cooldown_s: float = 5.0
    #: Export Prometheus metrics at /metrics.
    metrics_enabled: bool = True
    #: Require the API key on /metrics on the internal side too (it needs none there by default, for scrapers).
    metrics_require_key: bool = False
    #: The public door serves /metrics, /docs and /openapi.json too, to callers with an API key; else only internally.
    public_operator_endpoints: bool = False
    #: Folder where gunicorn's workers keep their metrics; set by gunicorn.conf.py when unset.
    prometheus_multiproc_dir: Path | None = None
    #: Sentry DSN; unset turns Sentry off. A secret: comes from the environment only.
    sentry_dsn: str | None = None
    #: Sentry environment name; REGNO_ENV when unset.
    sentry_environment: str | None = None
    #: Share of requests traced by Sentry.
    sentry_traces_sample_rate: float = 0.0
    #: Serve POST /debug/sentry, which raises on purpose, to check that errors reach Sentry.
    sentry_debug_route: bool = False
    #: Log level of the service's own logger.
    log_level: str = "INFO"
    #: gunicorn: address to listen on.
    bind: str = "127.0.0.1:5000"
    #: gunicorn: worker processes; the model is CPU-bound, so one per core.
    workers: int = field(default_factory=_cpu_count)
    #: gunicorn: worker class.
    worker_class: str = "sync"
    #: gunicorn: threads per worker (gthread only).
    threads: int = 1
    #: gunicorn: seconds a worker may be silent before it is killed and replaced.
    timeout: int = 30
    #: gunicorn: seconds workers get to finish in-flight requests on shutdown.
    graceful_timeout: int = 30
    #: gunicorn: seconds to hold an idle keep-alive connection.
    keepalive: int = 5
    #: gunicorn: load the app (and model) in the master so workers share its pages.
    preload: bool = True
    #: Which pool this gunicorn is: "main" (every route; /reg/ above all) or "bulk" (batches, explanations, labels).
    pool: str = "main"
    #: The bulk pool's address: the proxy sends /reg/batch, /reg/explain and /reg/feedback there; unset, to BIND.
    bulk_bind: str | None = None
    #: The bulk pool's worker processes; 0 runs no bulk pool (make serve), bulk work then goes to the main pool.
    bulk_workers: int = 1
    #: How much lower the bulk pool's CPU priority is (nice, 0-19): /reg/ wins the CPU when both want it.
    bulk_nice: int = 10
    #: Proxies in front whose X-Forwarded-* headers are trusted (werkzeug's ProxyFix); 0 when clients connect directly.
    forwarded_hops: int = 0
    #: The proxy (`make serve`): the address clients connect to.
    public_bind: str = "127.0.0.1:8080"
    #: The proxy: folder for gunicorn's socket, the rendered nginx.conf, nginx's sockets and temp files.
    proxy_run_dir: Path | None = None
    #: The proxy: nginx worker processes; one event loop carries tens of thousands of requests a second.
    proxy_workers: int = 1
    #: The proxy: seconds a client has to send its whole request header.
    proxy_header_timeout_s: int = 10
    #: The proxy: seconds a client may stay silent between two reads of its body (nginx times reads, not the body).
    proxy_body_timeout_s: float = 10.0
    #: The proxy: seconds an idle kept-alive client connection is held.
    proxy_keepalive_s: int = 75
    #: The proxy: open connections one client address may hold; 0 for no limit.
    proxy_connections_per_address: int = 1024
    #: The proxy: requests a second one client address may make to /reg/; 0 for no limit.
    proxy_rate_per_address: float = 0.0
    #: The proxy: requests a second one API key may make to /reg/; 0 for no limit.
    proxy_rate_per_key: float = 0.0
    #: The proxy: requests over the rate a client may send at once before it gets 429.
    proxy_rate_burst: int = 20
    #: The proxy: TLS server certificate (PEM); with the key, the proxy speaks HTTPS only.
    proxy_tls_cert_file: Path | None = None
    #: The proxy: the TLS certificate's private key (PEM).
    proxy_tls_key_file: Path | None = None
    #: The proxy: CA bundle (PEM); set, every client must present a certificate it signed.
    proxy_tls_client_ca_file: Path | None = None
    #: A client certificate verified by the proxy is enough: no API key is asked of such a client.
    client_cert_suffices: bool = False
    #: The proxy: where prometheus-nginx-exporter serves nginx's connection and request metrics.
    proxy_exporter_bind: str = "127.0.0.1:9113"
    #: The proxy: where mtail serves the counts of answers the proxy gave itself (refusals, 502, 504).
    proxy_answers_bind: str = "127.0.0.1:3903"
    #: The proxy's internal door: /metrics, /docs, /openapi.json and the whole /health, for Prometheus; never published.
    proxy_internal_bind: str = "127.0.0.1:8081"
    #: The prediction log's local spool of segment files; unset turns the log off. Holds plates: personal data.
    prediction_log_dir: Path | None = None
    #: Where the log's day-partitioned Parquet files go (the embedded sink); PREDICTION_LOG_DIR/parquet when unset.
    prediction_log_parquet_dir: Path | None = None
    #: NATS with JetStream to ship sealed segments to instead of the local Parquet folder, e.g. nats://host:4222.
    prediction_log_nats_url: str | None = None
    #: The JetStream stream the log publishes to (created with its subject when missing).
    prediction_log_nats_stream: str = "REGNO_PREDICTIONS"
    #: The subject the log publishes on.
    prediction_log_nats_subject: str = "regno.predictions"
    #: Share of scored passes logged, chosen at random per pass.
    prediction_log_sample: float = 1.0
    #: Days of Parquet partitions kept; older days are removed; 0 keeps everything.
    prediction_log_retention_days: int = 30
    #: Rows (about 1 kB each) of a worker's journal kept for /reg/, beside room for the largest batch; past it a
    #: /reg/ row is dropped and counted.
    prediction_log_queue_size: int = 10_000
    #: Seconds a batch's rows (or a request's labels) may wait, all together, for room in the journal before a row is
    #: dropped (or a label refused); /reg/ never waits.
    prediction_log_batch_wait_s: float = 5.0
    #: Seconds after which the open segment file is sealed and may be shipped.
    prediction_log_segment_s: float = 10.0
    #: Bytes after which the open segment file is sealed.
    prediction_log_segment_bytes: int = 8 * 1024 * 1024
    #: Most bytes of unshipped segments in the spool; past this, rows are dropped and counted, the disk never fills.
    prediction_log_spool_max_bytes: int = 1024 * 1024 * 1024
    #: Days after its pass that a label is still taken: how long the pass index keeps a pass.
    label_window_days: int = 7
    #: Redis for the pass index, shared by replicas (give it its own, non-evicting); unset: a SQLite file per host.
    pass_index_url: str | None = None
    #: Pick accuracy over the last hour below this, per model and arm, fires RegnoPickAccuracyLow.
    quality_pick_accuracy_floor: float = 0.8
    #: Labels an hour must hold, per model and arm, before RegnoPickAccuracyLow may fire.
    quality_min_labels: int = 20
    #: Seconds a label's labelled_at may lie in the future, or before its pass was answered (clocks differ).
    label_clock_skew_s: float = 300.0
    #: Seconds a request's labels may wait, all together, for passes the log has answered but not yet indexed.
    label_pass_wait_s: float = 1.0
    #: Labelled passes a candidate's replay must hold before `regno-model promote` may refuse it as worse.
    replay_min_labels: int = 200
    #: Processes regno-replay scores with; 0 means one per CPU.
    replay_workers: int = 0

    @property
    def prediction_log_on(self) -> bool:
        """True when the prediction log is configured."""
        return self.prediction_log_dir is not None

    @property
    def prediction_log_parquet(self) -> Path | None:
        """Where the log's Parquet files are (the setting, or PREDICTION_LOG_DIR/parquet)."""
        if self.prediction_log_parquet_dir is not None:
            return self.prediction_log_parquet_dir
        return self.prediction_log_dir / "parquet" if self.prediction_log_dir is not None else None

    @property
    def proxy_tls(self) -> bool:
        """True when the proxy serves HTTPS."""
        return self.proxy_tls_cert_file is not None

    @property
    def development(self) -> bool:
        """True in development mode."""
        return self.env == "development"

    def effective_api_keys(self) -> tuple[str, ...]:
        """The accepted keys; the development key when none is set in development mode."""
        if self.api_keys:
            return self.api_keys
        return (DEVELOPMENT_KEY,) if self.development else ()

    def effective_label_api_keys(self) -> tuple[str, ...]:
        """The accepted label keys; the development label key when none is set in development mode."""
        if self.label_api_keys:
            return self.label_api_keys
        return (DEVELOPMENT_LABEL_KEY,) if self.development else ()

    def effective_pass_id_secret(self) -> str:
        """The pass-id secret; the development one when none is set in development mode; "" (unkeyed) otherwise."""
        if self.pass_id_secret:
            return self.pass_id_secret
        return DEVELOPMENT_PASS_ID_SECRET if self.development else ""

    def check(self) -> None:
        """Raise SettingsError when the service must not start with these settings."""
        if self.env not in ("production", "development"):
            raise SettingsError(f"REGNO_ENV must be 'production' or 'development', got {self.env!r}")
        if not self.development and not self.api_keys:
            raise SettingsError("no API key configured: set API_KEYS or API_KEYS_FILE (or REGNO_ENV=development)")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError("REDIS_URL must start with redis://, rediss:// or unix://")
        self.check_proxy()
        self.check_model_source()
        self.check_pool()
        self.check_keys()
        if self.prediction_log_nats_url and not self.prediction_log_nats_url.startswith(("nats://", "tls://")):
            raise SettingsError("PREDICTION_LOG_NATS_URL must start with nats:// or tls://")
        if self.prediction_log_nats_url and not self.prediction_log_on:
            raise SettingsError("PREDICTION_LOG_NATS_URL needs PREDICTION_LOG_DIR: rows spool there until NATS "
                                "has them")
        if self.pass_index_url and not self.pass_index_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError("PASS_INDEX_URL must start with redis://, rediss:// or unix://")
        if not self.development and DEVELOPMENT_KEY in self.api_keys:
            raise SettingsError(f"the development key {DEVELOPMENT_KEY!r} is not allowed outside development mode")

    def check_keys(self) -> None:
        """Raise SettingsError when the keys' names, scopes or the pass-id secret cannot be used."""
        scoring = {key for _, key in named_keys(self.effective_api_keys(), "API_KEYS")}
        labelling = {key for _, key in named_keys(self.effective_label_api_keys(), "LABEL_API_KEYS")}
        if scoring & labelling:
            raise SettingsError("a key is both in API_KEYS and in LABEL_API_KEYS: a key either scores or labels, "
                                "give each its own")
        if not self.development and {DEVELOPMENT_KEY, DEVELOPMENT_LABEL_KEY} & (scoring | labelling):
            raise SettingsError(f"the development keys {DEVELOPMENT_KEY!r} and {DEVELOPMENT_LABEL_KEY!r} are not "
                                "allowed outside development mode")
        secret = self.pass_id_secret
        if secret is not None and len(secret) < MIN_PASS_ID_SECRET_CHARS:
            raise SettingsError(f"PASS_ID_SECRET must have at least {MIN_PASS_ID_SECRET_CHARS} characters")
        if not self.development and secret == DEVELOPMENT_PASS_ID_SECRET:
            raise SettingsError("the development PASS_ID_SECRET is not allowed outside development mode")
        if not self.development and self.prediction_log_on and not secret:
            raise SettingsError("PREDICTION_LOG_DIR needs PASS_ID_SECRET or PASS_ID_SECRET_FILE: a secret every "
                                "replica shares, so that pass ids (which labels name) cannot be computed by others")

    def check_pool(self) -> None:
        """Raise SettingsError when this gunicorn's pool cannot be run as set."""
        if self.pool not in ("main", "bulk"):
            raise SettingsError(f"POOL must be 'main' or 'bulk', got {self.pool!r}")
        if self.pool == "bulk" and not self.bulk_bind:
            raise SettingsError("POOL=bulk needs BULK_BIND, the address the bulk pool listens on")
        if self.pool == "bulk" and self.bulk_workers < 1:
            raise SettingsError("POOL=bulk needs BULK_WORKERS of at least 1")

    @property
    def pool_bind(self) -> str:
        """Where this gunicorn listens: BULK_BIND for the bulk pool, BIND for the main one."""
        return self.bulk_bind if self.pool == "bulk" and self.bulk_bind else self.bind

    @property
    def pool_workers(self) -> int:
        """This gunicorn's worker processes: BULK_WORKERS for the bulk pool, WORKERS for the main one."""
        return self.bulk_workers if self.pool == "bulk" else self.workers

    def check_model_source(self) -> None:
        """Raise SettingsError when the model source's settings do not fit together (all the syncer's start needs)."""
        if self.model_source is None:
            return
        if self.models_dir is None:
            raise SettingsError("MODEL_SOURCE needs MODELS_DIR: the syncer verifies each model there before it serves")
        if self.model_source.startswith("models:/"):
            if not self.mlflow_tracking_uri:
                raise SettingsError("MODEL_SOURCE=models:/... needs MLFLOW_TRACKING_URI, the registry's server")
            if self.model_alias_current == self.model_alias_candidate:
                raise SettingsError("MODEL_ALIAS_CURRENT and MODEL_ALIAS_CANDIDATE must differ")
        elif "://" in self.model_source and not self.model_source.startswith(("s3://", "file://")):
            raise SettingsError("MODEL_SOURCE must be a folder, s3://bucket/prefix or models:/<name>")

    def check_proxy(self) -> None:
        """Raise SettingsError when the proxy's settings do not fit together (all the proxy's own start needs)."""
        if (self.proxy_tls_cert_file is None) != (self.proxy_tls_key_file is None):
            raise SettingsError("PROXY_TLS_CERT_FILE and PROXY_TLS_KEY_FILE go together: set both or neither")
        if self.proxy_tls_client_ca_file is not None and not self.proxy_tls:
            raise SettingsError("PROXY_TLS_CLIENT_CA_FILE needs the proxy's own certificate: set PROXY_TLS_CERT_FILE and "
                                "PROXY_TLS_KEY_FILE too")
        if self.client_cert_suffices and (self.proxy_tls_client_ca_file is None or self.forwarded_hops < 1):
            raise SettingsError("CLIENT_CERT_SUFFICES needs the proxy to verify clients: set PROXY_TLS_CLIENT_CA_FILE, "
                                "and run behind it (make serve, or FORWARDED_HOPS=1)")
        if self.proxy_internal_bind == self.public_bind:
            raise SettingsError("PROXY_INTERNAL_BIND must differ from PUBLIC_BIND: the internal door is never public")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Settings from environment variables; unset or empty ones keep their defaults."""
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        default = cls()
        values = {field: reader.get(name, parse, getattr(default, field)) for name, (field, parse) in _VARIABLES.items()}
        return cls(api_keys=_api_keys(env), label_api_keys=_api_keys(env, "LABEL_API_KEYS"),
                   pass_id_secret=_secret(env, "PASS_ID_SECRET"), **values)


class _Reader:
    """Reads typed values from an environment mapping, naming the variable in every error."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ

    def get(self, name: str, parse: Callable[[str], T], default: T) -> T:
        """The parsed value of variable name, or default when it is unset or empty."""
        raw = self.environ.get(name, "").strip()
        if not raw:
            return default
        try:
            return parse(raw)
        except (ValueError, TypeError) as error:
            raise SettingsError(f"{name}={raw!r} is invalid: {error}") from None


def _api_keys(environ: Mapping[str, str], variable: str = "API_KEYS") -> tuple[str, ...]:
    """Key entries from variable (comma-separated) plus the file variable_FILE names (one per line, # comments)."""
    keys = [key.strip() for key in environ.get(variable, "").split(",")]
    path = environ.get(f"{variable}_FILE", "").strip()
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise SettingsError(f"{variable}_FILE={path!r} cannot be read: {error.strerror}") from None
        keys += [line.strip() for line in lines if not line.lstrip().startswith("#")]
    return tuple(dict.fromkeys(key for key in keys if key))  # their names are checked by Settings.check_keys


def _secret(environ: Mapping[str, str], variable: str) -> str | None:
    """A secret from variable, or from the file variable_FILE names (its text without surrounding white space)."""
    value = environ.get(variable, "").strip()
    path = environ.get(f"{variable}_FILE", "").strip()
    if value and path:
        raise SettingsError(f"set {variable} or {variable}_FILE, not both")
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise SettingsError(f"{variable}_FILE={path!r} cannot be read: {error.strerror}") from None
    return value or None


def key_name(key: str) -> str:
    """The name of a key given without one: `key-` and the first 8 hex digits of its sha256 (not the key)."""
    return "key-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


def named_keys(entries: tuple[str, ...], variable: str) -> tuple[tuple[str, str], ...]:
    """(name, key) of each entry: `name:key` splits at the first colon; a bare key gets key_name's name."""
    named = []
    for position, entry in enumerate(entries, 1):
        name, colon, key = entry.partition(":")
        if not colon:
            named.append((key_name(entry), entry))
        elif _KEY_NAME.fullmatch(name) and key:
            named.append((name, key))
        else:  # the entry may be a key with a colon in it: never echo it
            raise SettingsError(f"{variable}: entry {position} is not `name:key` with a name of letters, digits, "
                                "'.', '_' and '-' (at most 64) before the first ':', and a key after it")
    return tuple(named)


def _positive_int(raw: str) -> int:
    """A whole number of at least 1."""
    value = int(raw)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _non_negative_int(raw: str) -> int:
    """A whole number of at least 0."""
    value = int(raw)
    if value < 0:
        raise ValueError("must be at least 0")
    return value


def _positive_float(raw: str) -> float:
    """A finite number above 0."""
    value = float(raw)
    if not (math.isfinite(value) and value > 0):
        raise ValueError("must be a number above 0")
    return value


def _probability(raw: str) -> float:
    """A number between 0 and 1."""
    value = float(raw)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError("must be between 0 and 1")
    return value


def _non_negative_float(raw: str) -> float:
    """A finite number of at least 0."""
    value = float(raw)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError("must be a number of at least 0")
    return value


def _nice(raw: str) -> int:
    """A niceness increment from 0 (as the main pool) to 19 (only what no one else wants)."""
    value = int(raw)
    if not 0 <= value <= 19:
        raise ValueError("must be between 0 and 19")
    return value


def _boolean(raw: str) -> bool:
    """true/false, yes/no, on/off or 1/0."""
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


#: Environment variable -> (setting, parser). SECRET_VARIABLES are read by _api_keys and _secret.
_VARIABLES: dict[str, tuple[str, Callable[[str], object]]] = {
    "REGNO_ENV": ("env", str),
    "MODEL_PATH": ("model_path", Path),
    "MODELS_DIR": ("models_dir", Path),
    "MODEL_POLL_S": ("model_poll_s", _positive_float),
    "MODEL_SOURCE": ("model_source", str),
    "MODEL_SYNC_S": ("model_sync_s", _positive_float),
    "MODEL_SOURCE_TIMEOUT_S": ("model_source_timeout_s", _positive_float),
    "MODEL_SOURCE_S3_ENDPOINT": ("model_source_s3_endpoint", str),
    "MLFLOW_TRACKING_URI": ("mlflow_tracking_uri", str),
    "MODEL_ALIAS_CURRENT": ("model_alias_current", str),
    "MODEL_ALIAS_CANDIDATE": ("model_alias_candidate", str),
    "SHADOW_SHARE": ("shadow_share", _probability),
    "CANARY_SHARE": ("canary_share", _probability),
    "PICK_THRESHOLD": ("pick_threshold", _probability),
    "MAX_BODY_BYTES": ("max_body_bytes", _positive_int),
    "BATCH_MAX_SIZE": ("batch_max_size", _positive_int),
    "BATCH_REQUEST_MAX_RECORDS": ("batch_request_max_records", _positive_int),
    "BATCH_REQUEST_MAX_BYTES": ("batch_request_max_bytes", _positive_int),
    "REDIS_URL": ("redis_url", str),
    "CACHE_TTL_S": ("cache_ttl_s", _positive_int),
    "CACHE_L1_SIZE": ("cache_l1_size", _non_negative_int),
    "REDIS_TIMEOUT_MS": ("redis_timeout_ms", _positive_int),
    "CACHE_PREFIX": ("cache_prefix", str),
    "CACHE_BREAKER_FAILURES": ("cache_breaker_failures", _positive_int),
    "CACHE_BREAKER_COOLDOWN_S": ("cache_breaker_cooldown_s", _positive_float),
    "METRICS_ENABLED": ("metrics_enabled", _boolean),
    "METRICS_REQUIRE_KEY": ("metrics_require_key", _boolean),
    "PUBLIC_OPERATOR_ENDPOINTS": ("public_operator_endpoints", _boolean),
    "PROMETHEUS_MULTIPROC_DIR": ("prometheus_multiproc_dir", Path),
    "SENTRY_DSN": ("sentry_dsn", str),
    "SENTRY_ENVIRONMENT": ("sentry_environment", str),
    "SENTRY_TRACES_SAMPLE_RATE": ("sentry_traces_sample_rate", _probability),
    "SENTRY_DEBUG_ROUTE": ("sentry_debug_route", _boolean),
    "LOG_LEVEL": ("log_level", str.upper),
    "BIND": ("bind", str),
    "WORKERS": ("workers", _positive_int),
    "WORKER_CLASS": ("worker_class", str),
    "THREADS": ("threads", _positive_int),
    "TIMEOUT": ("timeout", _positive_int),
    "GRACEFUL_TIMEOUT": ("graceful_timeout", _positive_int),
    "KEEPALIVE": ("keepalive", _non_negative_int),
    "PRELOAD": ("preload", _boolean),
    "POOL": ("pool", str.lower),
    "BULK_BIND": ("bulk_bind", str),
    "BULK_WORKERS": ("bulk_workers", _non_negative_int),
    "BULK_NICE": ("bulk_nice", _nice),
    "FORWARDED_HOPS": ("forwarded_hops", _non_negative_int),
    "PUBLIC_BIND": ("public_bind", str),
    "PROXY_RUN_DIR": ("proxy_run_dir", Path),
    "PROXY_WORKERS": ("proxy_workers", _positive_int),
    "PROXY_HEADER_TIMEOUT_S": ("proxy_header_timeout_s", _positive_int),
    "PROXY_BODY_TIMEOUT_S": ("proxy_body_timeout_s", _positive_float),
    "PROXY_KEEPALIVE_S": ("proxy_keepalive_s", _non_negative_int),
    "PROXY_CONNECTIONS_PER_ADDRESS": ("proxy_connections_per_address", _non_negative_int),
    "PROXY_RATE_PER_ADDRESS": ("proxy_rate_per_address", _non_negative_float),
    "PROXY_RATE_PER_KEY": ("proxy_rate_per_key", _non_negative_float),
    "PROXY_RATE_BURST": ("proxy_rate_burst", _non_negative_int),
    "PROXY_TLS_CERT_FILE": ("proxy_tls_cert_file", Path),
    "PROXY_TLS_KEY_FILE": ("proxy_tls_key_file", Path),
    "PROXY_TLS_CLIENT_CA_FILE": ("proxy_tls_client_ca_file", Path),
    "CLIENT_CERT_SUFFICES": ("client_cert_suffices", _boolean),
    "PROXY_EXPORTER_BIND": ("proxy_exporter_bind", str),
    "PROXY_ANSWERS_BIND": ("proxy_answers_bind", str),
    "PROXY_INTERNAL_BIND": ("proxy_internal_bind", str),
    "PREDICTION_LOG_DIR": ("prediction_log_dir", Path),
    "PREDICTION_LOG_PARQUET_DIR": ("prediction_log_parquet_dir", Path),
    "PREDICTION_LOG_NATS_URL": ("prediction_log_nats_url", str),
    "PREDICTION_LOG_NATS_STREAM": ("prediction_log_nats_stream", str),
    "PREDICTION_LOG_NATS_SUBJECT": ("prediction_log_nats_subject", str),
    "PREDICTION_LOG_SAMPLE": ("prediction_log_sample", _probability),
    "PREDICTION_LOG_RETENTION_DAYS": ("prediction_log_retention_days", _non_negative_int),
    "PREDICTION_LOG_QUEUE_SIZE": ("prediction_log_queue_size", _positive_int),
    "PREDICTION_LOG_BATCH_WAIT_S": ("prediction_log_batch_wait_s", _non_negative_float),
    "PREDICTION_LOG_SEGMENT_S": ("prediction_log_segment_s", _positive_float),
    "PREDICTION_LOG_SEGMENT_BYTES": ("prediction_log_segment_bytes", _positive_int),
    "PREDICTION_LOG_SPOOL_MAX_BYTES": ("prediction_log_spool_max_bytes", _positive_int),
    "LABEL_WINDOW_DAYS": ("label_window_days", _positive_int),
    "PASS_INDEX_URL": ("pass_index_url", str),
    "QUALITY_PICK_ACCURACY_FLOOR": ("quality_pick_accuracy_floor", _probability),
    "QUALITY_MIN_LABELS": ("quality_min_labels", _positive_int),
    "LABEL_CLOCK_SKEW_S": ("label_clock_skew_s", _non_negative_float),
    "LABEL_PASS_WAIT_S": ("label_pass_wait_s", _non_negative_float),
    "REPLAY_MIN_LABELS": ("replay_min_labels", _positive_int),
    "REPLAY_WORKERS": ("replay_workers", _non_negative_int),
}
