"""Settings from the environment (config/)."""

from __future__ import annotations

import pytest

from config import (DEVELOPMENT_KEY, DEVELOPMENT_LABEL_KEY, DEVELOPMENT_PASS_ID_SECRET, Settings, SettingsError,
                    key_name, named_keys)
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

    from config import _VARIABLES, SECRET_VARIABLES

    secrets = {"api_keys", "label_api_keys", "pass_id_secret"}
    assert {field for field, _ in _VARIABLES.values()} | secrets == {f.name for f in fields(Settings)}
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    for name in [*_VARIABLES, *SECRET_VARIABLES]:
        assert f"| `{name}` |" in readme, name


SECRET = "a-pass-id-secret-long-enough"


def test_keys_have_names_and_scopes(tmp_path):
    """`name:key` entries name their key; a bare key is named by a hash of it; a key may not be in both scopes."""
    labels = tmp_path / "labels"
    labels.write_text("# the review desk\nreview-desk:label-secret\n")
    settings = Settings.from_env({"API_KEYS": "gateway:score-secret, bare-key", "LABEL_API_KEYS_FILE": str(labels)})
    assert named_keys(settings.api_keys, "API_KEYS") == (("gateway", "score-secret"),
                                                         (key_name("bare-key"), "bare-key"))
    assert named_keys(settings.label_api_keys, "LABEL_API_KEYS") == (("review-desk", "label-secret"),)
    assert key_name("bare-key").startswith("key-") and len(key_name("bare-key")) == 12
    settings.check()
    with pytest.raises(SettingsError, match="both in API_KEYS and in LABEL_API_KEYS"):
        Settings.from_env({"API_KEYS": "a:same-key", "LABEL_API_KEYS": "b:same-key"}).check()
    with pytest.raises(SettingsError, match="LABEL_API_KEYS: entry 2") as caught:
        Settings.from_env({"API_KEYS": "k", "LABEL_API_KEYS": "ok:k1,bad name:secret-part"}).check()
    assert "secret-part" not in str(caught.value)  # a malformed entry may be a key: never echoed


def test_development_label_key_only_in_development():
    """Development mode falls back to a documented label key; production refuses it in either scope."""
    development = Settings.from_env({"REGNO_ENV": "development"})
    development.check()
    assert development.effective_label_api_keys() == (DEVELOPMENT_LABEL_KEY,)
    assert Settings.from_env({"API_KEYS": "k"}).effective_label_api_keys() == ()
    for variable in ("LABEL_API_KEYS", "API_KEYS"):
        with pytest.raises(SettingsError, match="not allowed outside development"):
            Settings.from_env({"API_KEYS": "k", variable: f"desk:{DEVELOPMENT_LABEL_KEY}"}).check()


def test_pass_id_secret_is_required_in_production_with_the_log(tmp_path):
    """PREDICTION_LOG_DIR in production needs PASS_ID_SECRET (or its file), long enough and not development's own."""
    logged = {"API_KEYS": "k", "PREDICTION_LOG_DIR": str(tmp_path)}
    with pytest.raises(SettingsError, match="PREDICTION_LOG_DIR needs PASS_ID_SECRET") as caught:
        Settings.from_env(logged).check()
    assert "\n" not in str(caught.value)
    Settings.from_env({"API_KEYS": "k"}).check()  # no log: no label can name a pass, ids stay unkeyed
    assert Settings.from_env({"API_KEYS": "k"}).effective_pass_id_secret() == ""
    Settings.from_env({**logged, "PASS_ID_SECRET": SECRET}).check()
    secret_file = tmp_path / "pass-id-secret"
    secret_file.write_text(SECRET + "\n")
    from_file = Settings.from_env({**logged, "PASS_ID_SECRET_FILE": str(secret_file)})
    assert from_file.pass_id_secret == SECRET and SECRET not in repr(from_file)
    for environ, message in (({"PASS_ID_SECRET": "short"}, "at least 16"),
                             ({"PASS_ID_SECRET": DEVELOPMENT_PASS_ID_SECRET}, "not allowed outside development"),
                             ({"PASS_ID_SECRET_FILE": str(tmp_path / "missing")}, "PASS_ID_SECRET_FILE"),
                             ({"PASS_ID_SECRET": SECRET, "PASS_ID_SECRET_FILE": str(secret_file)}, "not both")):
        with pytest.raises(SettingsError, match=message):
            Settings.from_env({**logged, **environ}).check()
    development = Settings.from_env({"REGNO_ENV": "development", "PREDICTION_LOG_DIR": str(tmp_path)})
    development.check()
    assert development.effective_pass_id_secret() == DEVELOPMENT_PASS_ID_SECRET


def test_label_clock_skew_is_a_setting():
    """LABEL_CLOCK_SKEW_S: 300 s by default, any number of seconds from 0."""
    assert Settings.from_env({}).label_clock_skew_s == 300.0
    assert Settings.from_env({"LABEL_CLOCK_SKEW_S": "30"}).label_clock_skew_s == 30.0
    with pytest.raises(SettingsError, match="LABEL_CLOCK_SKEW_S"):
        Settings.from_env({"LABEL_CLOCK_SKEW_S": "-1"})
