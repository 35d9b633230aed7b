"""The MongoDB event store for socketio-delivery: ``MongoEventStore`` and its ``MongoOptions``."""

from ._options import MongoOptions
from .store import MongoEventStore

__all__ = ["MongoEventStore", "MongoOptions"]
