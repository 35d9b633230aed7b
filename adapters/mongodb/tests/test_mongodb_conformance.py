"""The MongoDB store passes the whole conformance suite, on a new database per store."""

from __future__ import annotations

import uuid

import pytest
from mongo_server import MongoServer
from socketio_delivery.testing import EventStoreConformance, UrlFactory

pytestmark = pytest.mark.mongodb


class TestMongoConformance(EventStoreConformance):
    # The test server is a Python process: worker processes on a busy 2-core machine are slow.
    test_timeout = 180.0

    @pytest.fixture
    def make_store_url(self, mongo_server: MongoServer) -> UrlFactory:
        mongo_server.start()  # in case an earlier test left it stopped
        return lambda: f"{mongo_server.url}/t_{uuid.uuid4().hex[:12]}"
