"""pytest fixtures for socketio-delivery: ``delivery_store``, ``delivery_store_factory``,
``delivery_store_opener``, ``delivery_store_url``, ``delivery_server`` and ``delivery_client``
(see :mod:`socketio_delivery_pytest.plugin`)."""

from .app import (
    AppFactory,
    AppLike,
    DeliveryClientFactory,
    DeliveryServer,
    DeliveryServerFactory,
    DeliveryTestClient,
    Received,
)
from .plugin import DEFAULT_URL, DeliveryStoreFactory

__all__ = [
    "DEFAULT_URL",
    "AppFactory",
    "AppLike",
    "DeliveryClientFactory",
    "DeliveryServer",
    "DeliveryServerFactory",
    "DeliveryStoreFactory",
    "DeliveryTestClient",
    "Received",
]
