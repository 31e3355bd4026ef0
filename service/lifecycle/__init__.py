"""Models over a process's life: the watcher that swaps them from MODELS_DIR, and shadow scoring of the candidate."""
