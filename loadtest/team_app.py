"""The team's original approach behind the same gunicorn: load the model and build a pandas Series per request."""

import os

import orjson
from flask import Flask, Response, request

from model import BUNDLED_MODEL
from training.reference import pick_regno

app = Flask(__name__)
# Read once at import, as a benchmark fixture: the service itself reads settings in config/ only.
_MODEL = os.environ.get("MODEL_PATH") or str(BUNDLED_MODEL)


@app.post("/reg/")
def score():
    """pick_regno on the posted record, the model file loaded anew for this request."""
    negative, positive = (float(p) for p in pick_regno(orjson.loads(request.get_data()), _MODEL))
    return Response(orjson.dumps({"body": {"positive": positive, "negative": negative}, "status": "ok"}),
                    mimetype="application/json")
