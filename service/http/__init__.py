"""HTTP around the views: reading JSON bodies, the response envelope and its error handlers, API-key auth, who sees
what (the internal and the public side), and gunicorn's own refusals in the envelope."""
