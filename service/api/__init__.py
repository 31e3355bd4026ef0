"""The blueprints, one per concern: scoring (/reg/), health, docs (with the OpenAPI document) and debug."""
