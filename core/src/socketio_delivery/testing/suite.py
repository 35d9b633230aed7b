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
store does not declare it. ``test_room_filtered_read_does_not_grow_with_the_stream`` fills a
stream with 100,000 events (``room_scaling_events`` lowers it; the ratio stays 100); a store
whose room-filtered reads walk the stream says so in ``room_reads_scan`` (the test then skips
with that reason).
"""

from __future__ import annotations

from ._processes import ConcurrencyTests
from ._retention import RetentionTests
from ._scaling import RoomScalingTests
from ._state import KeyTests, StateTests
from ._streams import OffsetTests, StreamTests

__all__ = ["EventStoreConformance"]


class EventStoreConformance(
    StreamTests, OffsetTests, RetentionTests, StateTests, KeyTests, ConcurrencyTests, RoomScalingTests
):
    """Every guarantee of :mod:`socketio_delivery.store`, as tests. Subclass it once per store."""
