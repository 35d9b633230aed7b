"""The memory store, the reference implementation, passes the whole conformance suite."""

from __future__ import annotations

import pytest
from socketio_delivery.testing import EventStoreConformance, UrlFactory


class TestMemoryConformance(EventStoreConformance):
    @pytest.fixture
    def make_store_url(self) -> UrlFactory:
        return lambda: "memory://"
