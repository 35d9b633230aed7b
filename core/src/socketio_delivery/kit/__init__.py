"""The adapter kit: what every store repeats, written once.

The contract stays the :class:`~socketio_delivery.store.EventStore` protocol; this
module is an optional convenience that makes a store short. Our SQLite, Redis and
MongoDB adapters are built on it, and so can yours:

* :class:`OffsetCodec`: ``"<epoch>-<hex counter>"`` offsets, parsed once and
  strictly (anchored pattern, counters below 2**63, epoch and position checks);
* :class:`AdapterOptions`: the options every batching store has (``max_batch``,
  ``retention_interval``, ``trim_chunk``), validated, filled from URLs by
  :func:`~socketio_delivery.config.build_options`;
* :class:`DriverErrors` and :func:`wrap_driver_errors`: driver exceptions become
  :class:`~socketio_delivery.errors.StoreError` /
  :class:`~socketio_delivery.errors.StoreUnavailableError` at the edge, cause chained;
* :class:`Persist`, :func:`prepare_persist` and :class:`GroupCommitWriter`: queue
  concurrent ``persist`` calls and write them in batches (group commit);
* :class:`MaintenanceLoop`: background retention that logs every failure and
  keeps running;
* :func:`encode_json`: compact JSON text of a payload, ``InvalidArgumentError`` if
  it is not JSON.

Stability: the names in ``__all__`` follow semantic versioning with the core
package; see ``docs/writing-an-adapter.md``.
"""

from __future__ import annotations

from ._errors import DriverErrors, wrap_driver_errors
from ._json import decode_json, encode_json
from ._maintenance import MaintenanceLoop
from ._offsets import MAX_COUNTER, OffsetCodec
from ._options import AdapterOptions, check_max_bytes
from ._records import KEEP, Change, Record, RecordStore
from ._thread import ConnectionThread
from ._writer import GroupCommitWriter, Persist, RoomFilter, check_fetch, prepare_persist, prepare_session

__all__ = [
    "KEEP",
    "MAX_COUNTER",
    "AdapterOptions",
    "Change",
    "ConnectionThread",
    "DriverErrors",
    "GroupCommitWriter",
    "MaintenanceLoop",
    "OffsetCodec",
    "Persist",
    "Record",
    "RecordStore",
    "RoomFilter",
    "decode_json",
    "encode_json",
    "check_fetch",
    "check_max_bytes",
    "prepare_persist",
    "prepare_session",
    "wrap_driver_errors",
]
