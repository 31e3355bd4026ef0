"""The score cache: keys and values (keys), the two tiers (score_cache), Redis behind them (redis_store, breaker)."""

from service.cache.keys import body_key
from service.cache.score_cache import ScoreCache

__all__ = ["ScoreCache", "body_key"]
