"""The WSGI entry point for gunicorn.conf.py: the app from the environment, or one clear line and exit.

Its workers share their metrics through the folder gunicorn.conf.py sets up, so the app is made for that.
"""

from service import create_app_or_exit

app = create_app_or_exit(shared_metrics=True)
