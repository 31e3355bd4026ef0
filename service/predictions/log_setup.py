"""The prediction log and its shipper as the settings describe them, for create_app and the shipper process."""

from __future__ import annotations

import functools

from config import Settings, SettingsError, extras
from service.predictions.parquet_store import remove_expired
from service.predictions.rows import batch_bytes
from service.predictions.shipper import Shipper, ShipObserver
from service.predictions.sinks import sink_for
from service.predictions.spool import LogObserver, PredictionLog, journal_bytes


def from_settings(settings: Settings, observer, index=None) -> tuple[PredictionLog | None, Shipper | None]:
    """The log and its shipper the settings describe; (None, None) when PREDICTION_LOG_DIR is unset.

    index, the pass index (service/quality/passes.py), hears every batch the writers write, and the
    shipper's retention forgets its old passes.
    """
    if not settings.prediction_log_on:
        return None, None
    if not settings.prediction_log_nats_url:
        # The shipper writes Parquet itself: import pyarrow here, in gunicorn's master when it preloads the app, so
        # the workers share it instead of each paying about half a second of CPU for the import while serving.
        # With JetStream, regno-log-sink writes it, and the api (and its image) need no pyarrow.
        problem = extras.missing("pyarrow to write Parquet (or set PREDICTION_LOG_NATS_URL)", "log", "pyarrow.parquet")
        if problem:
            raise SettingsError(f"the prediction log {problem}")
    largest_batch = batch_bytes(settings.batch_request_max_records, settings.batch_request_max_bytes)
    journal = journal_bytes(settings.prediction_log_queue_size, largest_batch)
    if settings.prediction_log_spool_max_bytes < journal:
        # The writer takes what a journal holds at once: a cap below that would drop a batch with the sink up.
        raise SettingsError(f"PREDICTION_LOG_SPOOL_MAX_BYTES={settings.prediction_log_spool_max_bytes} is below a "
                            f"worker's journal ({journal} bytes: PREDICTION_LOG_QUEUE_SIZE rows of 1 kB and the "
                            f"largest batch BATCH_REQUEST_MAX_RECORDS and BATCH_REQUEST_MAX_BYTES allow)")
    spool = settings.prediction_log_dir / "spool"
    prediction_log = PredictionLog(spool, settings.prediction_log_queue_size, settings.prediction_log_segment_s,
                                   settings.prediction_log_segment_bytes, settings.prediction_log_spool_max_bytes,
                                   settings.prediction_log_sample, observer=observer,
                                   on_written=index.add_lines if index is not None else None,
                                   batch_bytes=largest_batch, batch_wait_s=settings.prediction_log_batch_wait_s)
    sink = sink_for(settings.prediction_log_parquet, settings.prediction_log_nats_url,
                    settings.prediction_log_nats_stream, settings.prediction_log_nats_subject)
    return prediction_log, Shipper(spool, sink, observer, functools.partial(retain, settings, index))


def retain(settings: Settings, index) -> list[str]:
    """Retention now: the Parquet days (unless regno-log-sink owns them) and the index's old passes; days removed."""
    if index is not None:
        index.remove_older_than(settings.label_window_days)
    # With JetStream, regno-log-sink writes the Parquet files and applies retention to them.
    if settings.prediction_log_nats_url:
        return []
    return remove_expired(settings.prediction_log_parquet, settings.prediction_log_retention_days)


