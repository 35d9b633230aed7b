"""pytest fixtures for socketio-delivery: ``delivery_store``, ``delivery_store_factory``,
``delivery_store_opener`` and ``delivery_store_url`` (see :mod:`socketio_delivery_pytest.plugin`)."""

from .plugin import DEFAULT_URL, DeliveryStoreFactory

__all__ = ["DEFAULT_URL", "DeliveryStoreFactory"]
