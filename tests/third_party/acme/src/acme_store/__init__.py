"""An example third-party store for socketio-delivery: ``acme:///path/to/events.db``."""

from .store import AcmeEventStore, AcmeOptions

__all__ = ["AcmeEventStore", "AcmeOptions"]
