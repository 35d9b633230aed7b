"""The conformance suite every store runs, and helpers for store tests.

Install with ``pip install 'socketio-delivery[testing]'`` (pytest + hypothesis)::

    import pytest
    from socketio_delivery.testing import EventStoreConformance

    class TestAcmeConformance(EventStoreConformance):
        @pytest.fixture
        def make_store_url(self):
            return lambda: "acme://"

See ``docs/writing-an-adapter.md`` for a complete walk-through.
"""

from ._base import UrlFactory, store_test, url_test
from ._runner import EventLoop, opened_store, run
from ._support import (
    StreamReader,
    assert_json_equal,
    assert_same_event,
    assert_same_events,
    json_values,
    read_all,
)
from ._workers import run_workers
from .suite import EventStoreConformance

__all__ = [
    "EventLoop",
    "EventStoreConformance",
    "StreamReader",
    "UrlFactory",
    "assert_json_equal",
    "assert_same_event",
    "assert_same_events",
    "json_values",
    "opened_store",
    "read_all",
    "run",
    "run_workers",
    "store_test",
    "url_test",
]
