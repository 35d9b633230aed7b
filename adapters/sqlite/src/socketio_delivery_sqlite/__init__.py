"""SQLite store for socketio-delivery: ``sqlite:///events.db`` (registered by its entry point)."""

from .store import SQLiteEventStore, SQLiteOptions

__all__ = ["SQLiteEventStore", "SQLiteOptions"]
