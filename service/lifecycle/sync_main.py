"""regno-sync: the model syncer as a process of its own, one per host or pod (model/lifecycle/sync.py does the work).

    regno-sync                 sync every MODEL_SYNC_S until SIGTERM (the sidecar; make serve starts it)
    regno-sync --until-ready   sync until MODELS_DIR holds a verified current model, then exit 0 (init container)
    regno-sync --once          one pass; exit 0 when a verified current model is there, 1 when not
    regno-sync --check         exit 0 while a running syncer's passes keep coming (health checks)

With the source down and MODELS_DIR already holding a model, the service starts on it and the syncer
catches up later; with nothing cached, --until-ready waits (the pod stays not ready) and says so once.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING, Sequence

from config import Settings, SettingsError
from model import SYNC_STATUS_FILE
from service.observe import heartbeat

if TYPE_CHECKING:
    from model.lifecycle.sync import ModelSyncer

log = logging.getLogger("regno")


def build_syncer(settings: Settings) -> ModelSyncer:
    """The syncer the settings describe, reporting refusals to Sentry when it is on."""
    # Here, not at the top: `regno-sync --check` runs every few seconds and needs no CatBoost, source or Sentry.
    from model.sources import SourceOptions, open_source
    from model.lifecycle.sync import ModelSyncer
    from service.observe import sentry

    source = open_source(settings.model_source, SourceOptions.of(settings))
    if sentry.init_sentry(settings, "syncer"):
        return ModelSyncer(source, settings.models_dir, on_refusal=lambda refusal, which, version:
                           sentry.report_model_refused(refusal.reason, which, version, str(refusal)))
    return ModelSyncer(source, settings.models_dir)


def until_ready(syncer: ModelSyncer, every_s: float, stop: threading.Event) -> bool:
    """Sync until a verified current model is in MODELS_DIR; True when it is, False if stopped first."""
    waiting_said = False
    while not stop.is_set():
        answered = syncer.sync_once()
        if syncer.has_current():
            return True
        if not waiting_said:  # one clear line, not one a poll
            why = "the source is unreachable" if not answered else "the source names no current model it can serve"
            log.error("no verified model in %s yet and %s (%s): waiting, the service stays not ready",
                      syncer.models_dir, why, syncer.source.label)
            waiting_said = True
        stop.wait(every_s)
    return False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the syncer as the arguments say."""
    parser = argparse.ArgumentParser(prog="regno-sync", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one pass; exit 1 when no verified current model is there")
    mode.add_argument("--until-ready", action="store_true", help="sync until a verified current model is there")
    mode.add_argument("--check", action="store_true", help="exit 0 while a running syncer's passes keep coming")
    args = parser.parse_args(argv)
    if args.check:
        # Every pass rewrites the status file, reachable source or not; three missed passes mean a stuck syncer.
        settings = Settings.from_env()
        return heartbeat.check("regno-sync", settings.models_dir / SYNC_STATUS_FILE,
                               3 * settings.model_sync_s + settings.model_source_timeout_s)
    from model.sources import SourceError
    from service.observe import sentry

    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
        if not settings.model_source:
            raise SettingsError("MODEL_SOURCE is not set: there is nothing to sync (MODELS_DIR is used as it is)")
        settings.check_model_source()
        syncer = build_syncer(settings)
    except (SettingsError, SourceError, ValueError) as error:
        print(f"regno-sync: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("model syncer: %s into %s every %ss", syncer.source.label, settings.models_dir, settings.model_sync_s)
    try:
        if args.once:
            syncer.sync_once()
            return 0 if syncer.has_current() else 1
        if args.until_ready:
            return 0 if until_ready(syncer, min(settings.model_sync_s, 5.0), stop) else 1
        syncer.run(settings.model_sync_s, stop)
        return 0
    finally:
        sentry.flush()


if __name__ == "__main__":
    raise SystemExit(main())
