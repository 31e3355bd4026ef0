"""The apps `make bench` compares the service with, behind the same gunicorn: `floor` and `team`.

- `floor`: a bare Flask app that parses the JSON body and returns a constant answer (the ceiling of any
  Flask app on this machine);
- `team`: the team's original approach, which loads the model and builds a pandas Series per request.
"""

import os

import orjson
from flask import Flask, Response, request

floor = Flask("floor")
team = Flask("team")
_ANSWER = orjson.dumps({"body": {"positive": 0.5, "negative": 0.5}, "status": "ok"})
# Read once at import, as a benchmark fixture: the service itself reads settings in config/ only.
_MODEL = os.environ.get("MODEL_PATH")


@floor.post("/reg/")
def constant():
    """Parse the body like the service does, answer the same constant."""
    orjson.loads(request.get_data())
    return Response(_ANSWER, mimetype="application/json")


@team.post("/reg/")
def score():
    """pick_regno on the posted record, the model file loaded anew for this request."""
    # Imported on the first request, so the floor's workers never hold pandas and CatBoost.
    from model import BUNDLED_MODEL
    from training.reference import pick_regno

    negative, positive = (float(p) for p in pick_regno(orjson.loads(request.get_data()), _MODEL or str(BUNDLED_MODEL)))
    return Response(orjson.dumps({"body": {"positive": positive, "negative": negative}, "status": "ok"}),
                    mimetype="application/json")
