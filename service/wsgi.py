"""The WSGI entry point for gunicorn: the app from the environment, or one clear line and exit."""

from service import create_app_or_exit

app = create_app_or_exit()
