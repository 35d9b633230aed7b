"""The Redis store for socketio-delivery: ``redis://``, ``rediss://`` and ``unix://`` URLs."""

from .store import RedisEventStore, RedisOptions

__all__ = ["RedisEventStore", "RedisOptions"]
