"""The regno-api Flask application: create_app builds it from settings (service/factory.py).

The factory and the worker hooks are imported on first use, not with the package: a process that needs only
a small part of service/ (a health check run every few seconds, such as `python -m service.probe`) does not
pay for Flask, CatBoost and the whole app on each run.
"""

from __future__ import annotations

#: What `from service import ...` gives from the factory module.
_FACTORY_NAMES = frozenset({"APP_LOAD_ERROR", "create_app", "create_app_or_exit", "register_blueprints",
                            "start_worker", "stop_worker"})


def __getattr__(name: str):
    """The factory's names, imported on first use."""
    if name in _FACTORY_NAMES:
        from service import factory

        return getattr(factory, name)
    raise AttributeError(f"module 'service' has no attribute {name!r}")
