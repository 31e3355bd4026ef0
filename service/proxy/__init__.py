"""The front door: nginx before gunicorn, its configuration rendered from settings, and `make serve` that runs both.

gunicorn's sync workers must sit behind a buffering proxy: a client that stalls inside its header or body would
otherwise hold a worker until gunicorn's timeout kills it. nginx reads each request whole, buffers each answer,
holds kept-alive and idle connections for free, and answers its own refusals in the service's envelope.
"""
