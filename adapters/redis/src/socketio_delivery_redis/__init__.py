"""redis store for socketio-delivery."""

from .store import RedisEventStore

__all__ = ["RedisEventStore"]
