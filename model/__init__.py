"""The pick_regno contract: records, features, and the CatBoost scorer (no Flask here)."""

from pathlib import Path

#: The model the project ships, trained by `python -m model.train`.
BUNDLED_MODEL = Path(__file__).with_name("regno_model.cbm")
