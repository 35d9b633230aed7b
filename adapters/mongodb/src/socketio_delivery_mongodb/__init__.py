"""mongodb store for socketio-delivery."""

from .store import MongoEventStore

__all__ = ["MongoEventStore"]
