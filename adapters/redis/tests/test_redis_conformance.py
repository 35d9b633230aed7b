"""The Redis store passes the whole conformance suite on a real redis-server (one key prefix per store)."""

from __future__ import annotations

import uuid

import pytest
from redis_server import RedisClusterNodes, RedisServer
from socketio_delivery.testing import EventStoreConformance, UrlFactory

pytestmark = pytest.mark.redis


class TestRedisConformance(EventStoreConformance):
    @pytest.fixture
    def make_store_url(self, redis_server: RedisServer) -> UrlFactory:
        redis_server.start()  # in case an earlier test left it stopped
        return lambda: f"{redis_server.url}?prefix=t-{uuid.uuid4().hex[:12]}"


class TestRedisClusterConformance(EventStoreConformance):
    """The same suite on a three-primary Redis Cluster (``?cluster=true``): one slot per stream."""

    @pytest.fixture
    def make_store_url(self, redis_cluster: RedisClusterNodes) -> UrlFactory:
        return lambda: f"{redis_cluster.url}?cluster=true&prefix=t-{uuid.uuid4().hex[:12]}"
