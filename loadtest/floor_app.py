"""The floor of the benchmark: a bare Flask app that parses the JSON body and returns a constant answer."""

import orjson
from flask import Flask, Response, request

app = Flask(__name__)
_ANSWER = orjson.dumps({"body": {"positive": 0.5, "negative": 0.5}, "status": "ok"})


@app.post("/reg/")
def constant():
    """Parse the body like the service does, answer the same constant."""
    orjson.loads(request.get_data())
    return Response(_ANSWER, mimetype="application/json")
