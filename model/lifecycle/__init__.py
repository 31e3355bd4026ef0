"""A model's way from the team to serving: `manage.py` (`regno-model`: publish, promote past the replay's gate,
roll back), `sync.py` (the syncer that copies what the source names into MODELS_DIR), `verify.py` (a fetched
version checked before it may serve or be replayed) and `promotion_gate.py` (a candidate's latest replay, read
before `current` moves)."""
