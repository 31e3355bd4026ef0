"""Settings from the environment (config/)."""

from __future__ import annotations

import pytest

from config import DEVELOPMENT_KEY, Settings, SettingsError
from model import BUNDLED_MODEL


def test_defaults():
    """With nothing set: production, bundled model, threshold 0.5, no keys."""
    settings = Settings.from_env({})
    assert settings.env == "production"
    assert settings.model_path == BUNDLED_MODEL
    assert settings.pick_threshold == 0.5
    assert settings.api_keys == ()
    assert settings.workers >= 1
    assert settings.bind == "127.0.0.1:5000"


def test_environment_is_read():
    """Each variable lands in its typed setting."""
    settings = Settings.from_env({
        "REGNO_ENV": "development", "MODEL_PATH": "/m.cbm", "API_KEYS": " a, b ,,a", "PICK_THRESHOLD": "0.7",
        "MAX_BODY_BYTES": "1000", "BIND": "0.0.0.0:8000", "WORKERS": "3", "WORKER_CLASS": "gthread",
        "THREADS": "4", "TIMEOUT": "10", "GRACEFUL_TIMEOUT": "5", "KEEPALIVE": "0", "PRELOAD": "off",
        "LOG_LEVEL": "debug",
    })
    assert settings.development
    assert str(settings.model_path) == "/m.cbm"
    assert settings.api_keys == ("a", "b")
    assert (settings.pick_threshold, settings.max_body_bytes) == (0.7, 1000)
    assert (settings.bind, settings.workers, settings.worker_class, settings.threads) == ("0.0.0.0:8000", 3, "gthread", 4)
    assert (settings.timeout, settings.graceful_timeout, settings.keepalive) == (10, 5, 0)
    assert settings.preload is False
    assert settings.log_level == "DEBUG"


def test_keys_file_adds_keys(tmp_path):
    """API_KEYS_FILE gives one key a line, skipping comments and blanks, after API_KEYS."""
    keys = tmp_path / "keys"
    keys.write_text("# rotated 2026-11\nnew-key\n\n old-key \n")
    settings = Settings.from_env({"API_KEYS": "env-key", "API_KEYS_FILE": str(keys)})
    assert settings.api_keys == ("env-key", "new-key", "old-key")


def test_unreadable_keys_file_is_named(tmp_path):
    """A keys file that cannot be read stops start-up, naming it."""
    with pytest.raises(SettingsError, match="API_KEYS_FILE"):
        Settings.from_env({"API_KEYS_FILE": str(tmp_path / "missing")})


@pytest.mark.parametrize(
    "name, value",
    [("WORKERS", "0"), ("WORKERS", "many"), ("PICK_THRESHOLD", "1.5"), ("PICK_THRESHOLD", "nan"),
     ("PRELOAD", "maybe"), ("MAX_BODY_BYTES", "-1"), ("KEEPALIVE", "-1")],
)
def test_bad_values_name_the_variable(name, value):
    """A bad value stops start-up with the variable's name and value."""
    with pytest.raises(SettingsError, match=f"{name}='{value}' is invalid"):
        Settings.from_env({name: value})


def test_production_without_key_refuses_to_start():
    """Outside development mode a key is required."""
    with pytest.raises(SettingsError, match="no API key configured"):
        Settings.from_env({}).check()


def test_development_key_only_in_development():
    """Development mode falls back to the documented key; production refuses that key."""
    development = Settings.from_env({"REGNO_ENV": "development"})
    development.check()
    assert development.effective_api_keys() == (DEVELOPMENT_KEY,)
    assert Settings.from_env({"REGNO_ENV": "development", "API_KEYS": "k"}).effective_api_keys() == ("k",)
    with pytest.raises(SettingsError, match="not allowed outside development"):
        Settings.from_env({"API_KEYS": DEVELOPMENT_KEY}).check()


def test_unknown_environment_name_is_refused():
    """A typo in REGNO_ENV does not silently mean production or development."""
    with pytest.raises(SettingsError, match="REGNO_ENV"):
        Settings.from_env({"REGNO_ENV": "prod", "API_KEYS": "k"}).check()


def test_every_setting_has_a_variable_documented_in_the_readme():
    """Each setting is read from one variable, and the README's settings table names every variable."""
    from dataclasses import fields
    from pathlib import Path

    from config import _VARIABLES

    assert {field for field, _ in _VARIABLES.values()} | {"api_keys"} == {f.name for f in fields(Settings)}
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    for name in [*_VARIABLES, "API_KEYS", "API_KEYS_FILE"]:
        assert f"| `{name}` |" in readme, name
