"""gunicorn settings, read through config/, and the hooks the service needs; nothing else lives here."""

import sys

from config import Settings, SettingsError

try:
    _settings = Settings.from_env()
except SettingsError as _error:
    sys.exit(f"regno-api cannot start: {_error}")

wsgi_app = "service.wsgi:app"
bind = [_settings.bind]
workers = _settings.workers
worker_class = _settings.worker_class
threads = _settings.threads
timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive
# Preloading loads the model once in the master; the forked workers share its memory pages.
preload_app = _settings.preload
loglevel = _settings.log_level.lower()
accesslog = None
# The control socket sits at one fixed path per user, which clashes between instances; nothing here uses it.
control_socket_disable = True


def on_starting(server):
    """Without preload, build the app once in the master first: a bad model then stops gunicorn with one line, not a crash loop of workers."""
    if not preload_app:
        from service import create_app_or_exit

        create_app_or_exit()  # loads and checks only; no prediction runs in the master


def post_worker_init(worker):
    """Warm the model up in each worker: native thread pools do not survive the fork, so no prediction runs in the master."""
    from service import warm_up

    warm_up(worker.wsgi)
