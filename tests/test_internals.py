"""The shortcuts into private library parts (service/internals.py, model/scorer.py) against the public routes."""

from __future__ import annotations

from flask import Flask, g, request

from model import BUNDLED_MODEL
from model.records import parse_record
from model.scorer import Scorer
from service.internals import ServiceFlask, unproxied


def test_ensure_sync_gives_what_flask_gives_for_plain_functions_and_wraps_coroutines():
    """A plain function or bound method comes back as Flask gives it; a coroutine function still goes through Flask."""
    ours, flask = ServiceFlask(__name__), Flask(__name__)

    def view():
        return "plain"

    async def coroutine_view():
        return "async"

    for function in (view, ours.make_response, flask.make_response):
        assert ours.ensure_sync(function) is flask.ensure_sync(function) is function
    outcomes = []
    for app in (ours, flask):  # without asgiref, Flask refuses async views: ours must refuse them the same way
        try:
            outcomes.append("wrapped" if app.ensure_sync(coroutine_view) is not coroutine_view else "as it is")
        except RuntimeError as error:
            outcomes.append(str(error))
    assert outcomes[0] == outcomes[1] != "as it is"


def test_unproxied_is_the_object_the_proxy_stands_for():
    """In a request, unproxied(request) and unproxied(g) are what the proxies read through; others pass as they are."""
    app = Flask(__name__)
    with app.test_request_context("/reg/", method="POST", data=b"{}"):
        g.marker = object()
        assert unproxied(request).method == request.method == "POST"
        assert type(unproxied(request)) is type(request._get_current_object()) and unproxied(g).marker is g.marker
    plain = object()
    assert unproxied(plain) is plain


def test_direct_catboost_route_gives_the_public_answer(simulated_records):
    """Once the probe turns the direct route on, it gives predict_proba's exact numbers, single rows and batches."""
    scorer = Scorer.load(BUNDLED_MODEL)
    scorer.probe()
    assert scorer._direct, "the direct route is off: CatBoost changed, every call takes the public route"
    vectors = [scorer.build_vector(parse_record(record)) for record in simulated_records]
    assert (scorer._predict_direct(vectors) == scorer._predict_public(vectors)).all()
    assert (scorer._predict_direct(vectors[:1]) == scorer._predict_public(vectors[:1])).all()
