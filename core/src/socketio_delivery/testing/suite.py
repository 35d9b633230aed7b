"""The conformance suite: one class an adapter's tests subclass.

::

    import pytest
    from socketio_delivery.testing import EventStoreConformance

    class TestMyStoreConformance(EventStoreConformance):
        store_options = {"pool_size": 2}        # optional: open_store(url, **store_options)

        @pytest.fixture
        def make_store_url(self, tmp_path):
            counter = iter(range(10**9))
            return lambda: f"mystore:///{tmp_path}/db-{next(counter)}"

``make_store_url`` returns a callable; each call gives the URL of a new, empty
store. Tests are plain sync functions that run their own event loop, so the
adapter's project needs only pytest and hypothesis
(``pip install 'socketio-delivery[testing]'``). Tests that need
:attr:`~socketio_delivery.Capability.DURABLE` or
:attr:`~socketio_delivery.Capability.MULTI_PROCESS` skip themselves when the
store does not declare it.
"""

from __future__ import annotations

from ._processes import ConcurrencyTests
from ._retention import RetentionTests
from ._state import KeyTests, StateTests
from ._streams import OffsetTests, StreamTests

__all__ = ["EventStoreConformance"]


class EventStoreConformance(StreamTests, OffsetTests, RetentionTests, StateTests, KeyTests, ConcurrencyTests):
    """Every guarantee of :mod:`socketio_delivery.store`, as tests. Subclass it once per store."""
