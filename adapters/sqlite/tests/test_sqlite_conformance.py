"""The SQLite store passes the whole conformance suite, on a new database file per store."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from socketio_delivery.testing import EventStoreConformance, UrlFactory


class TestSQLiteConformance(EventStoreConformance):
    @pytest.fixture
    def make_store_url(self, tmp_path: Path) -> UrlFactory:
        counter = itertools.count()
        return lambda: f"sqlite:///{tmp_path}/events-{next(counter)}.db"
