"""Sessions and idempotency keys on one atomic primitive."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import SessionBusyError
from ..store import KeyState, Reservation, new_id
from ..validate import check_key, check_ttl
from ._json import encode_json
from ._writer import prepare_session

__all__ = ["KEEP", "Change", "Record", "RecordStore"]


@dataclass(frozen=True, slots=True)
class Record:
    """A session or an idempotency key as :class:`RecordStore` keeps it.

    ``value``: JSON text (the session record, the key's result; ``None``: a pending key).
    ``expires``: when it goes (seconds since the Unix epoch). ``leased``: until when a
    session is leased (0: not leased).
    """

    value: str | None
    expires: float
    leased: float = 0.0


#: What a :meth:`RecordStore.update_record` change returns to leave the record as it is.
KEEP: Any = object()

R = TypeVar("R")
Change = Callable[[Record | None, float], tuple[Any, R]]


class RecordStore:
    """Sessions and idempotency keys of the contract, on one primitive your store writes.

    Implement :meth:`update_record`: atomically (one transaction, one lock, one script)
    read the record ``(kind, key)``, call ``change(record, now)`` and write what it returns.
    This class does the rest (leases, busy sessions, pending and done keys, expiry) the
    same way for every store built on it::

        class AcmeEventStore(kit.RecordStore):
            async def update_record(self, kind, key, change):
                def run(db):
                    row = db.execute("SELECT value, expires, leased FROM kv WHERE ...").fetchone()
                    new, answer = change(None if row is None else kit.Record(*row), time.time())
                    ...  # new is None: delete; kit.KEEP: leave; else write new
                    return answer
                return await self._transaction(run)
    """

    def generate_id(self) -> str:
        """A fresh session id (``pid``) or key: :func:`~socketio_delivery.store.new_id`."""
        return new_id()

    async def update_record(self, kind: str, key: str, change: Change[R]) -> R:
        """Atomically apply ``change`` to the record ``(kind, key)``; return its answer.

        ``change(record or None, now)`` returns ``(new, answer)``: ``new`` is a
        :class:`Record` to write, ``None`` to delete, :data:`KEEP` to leave it. It may
        raise (a busy session): then nothing is written. Expired records may be passed
        in; ``change`` treats them as absent.
        """
        raise NotImplementedError

    async def save_session(
        self, key: str, record: Mapping[str, Any], ttl: float, *, lease: float | None = None
    ) -> None:
        text, seconds, lease_seconds = prepare_session(key, record, ttl, lease)

        def save(_: Record | None, now: float) -> tuple[Record, None]:
            return Record(text, now + seconds, now + lease_seconds if lease_seconds else 0.0), None

        await self.update_record("session", key, save)

    async def claim_session(self, key: str, *, lease: float | None = None) -> dict[str, Any] | None:
        check_key(key)
        seconds = None if lease is None else check_ttl(lease, "lease")

        def claim(found: Record | None, now: float) -> tuple[Any, str | None]:
            if found is None or found.expires <= now:
                return None, None
            if found.leased > now:
                raise SessionBusyError(
                    "the session is being recovered by another connection", retry_after=found.leased - now
                )
            kept = None if seconds is None else Record(found.value, found.expires, now + seconds)
            return kept, found.value

        text = await self.update_record("session", key, claim)
        return None if text is None else json.loads(text)

    async def reserve_key(self, key: str, lease: float) -> Reservation:
        check_key(key)
        seconds = check_ttl(lease, "lease")

        def reserve(found: Record | None, now: float) -> tuple[Any, Reservation]:
            if found is None or found.expires <= now:
                return Record(None, now + seconds), Reservation(KeyState.ACQUIRED)
            if found.value is None:
                return KEEP, Reservation(KeyState.PENDING)
            return KEEP, Reservation(KeyState.DONE, json.loads(found.value))

        return await self.update_record("key", key, reserve)

    async def complete_key(self, key: str, result: Any, ttl: float) -> None:
        check_key(key)
        seconds = check_ttl(ttl)
        text = encode_json(result, "result")
        await self.update_record("key", key, lambda _, now: (Record(text, now + seconds), None))

    async def release_key(self, key: str) -> None:
        check_key(key)

        def release(found: Record | None, now: float) -> tuple[Any, None]:
            return (None if found is not None and found.value is None else KEEP), None

        await self.update_record("key", key, release)
