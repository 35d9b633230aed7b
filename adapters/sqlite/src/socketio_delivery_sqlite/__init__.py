"""sqlite store for socketio-delivery."""

from .store import SQLiteEventStore

__all__ = ["SQLiteEventStore"]
