"""The WSGI entry point for gunicorn: the app from the environment, or one clear line and exit."""

import sys

from config import SettingsError
from model.scorer import ModelLoadError
from service import create_app

#: gunicorn's exit code for "App failed to load": its master halts instead of respawning workers.
APP_LOAD_ERROR = 4

try:
    app = create_app()
except (SettingsError, ModelLoadError) as error:
    # One line an operator can act on, instead of a traceback from inside gunicorn.
    print(f"regno-api cannot start: {error}", file=sys.stderr, flush=True)
    sys.exit(APP_LOAD_ERROR)
