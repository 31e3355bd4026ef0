"""What production runs to score, without Flask: the contract and the scoring engine.

records (validation) and record_schema, features, scorer (CatBoost); the engine (with the pick rule),
routing and batcher; registry (model folders, and the one way to find the model); score_file (regno-score).
"""

from pathlib import Path

#: The model the project ships, trained by `python -m training.train`.
BUNDLED_MODEL = Path(__file__).with_name("regno_model.cbm")
#: What the model syncer (sync.py) last did, in MODELS_DIR; here so that a health check reads it without CatBoost.
SYNC_STATUS_FILE = ".sync-status.json"
