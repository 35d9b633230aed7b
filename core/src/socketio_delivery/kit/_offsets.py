"""The ``<epoch>-<hex counters>`` offset codec."""

from __future__ import annotations

import re
import secrets

from ..errors import EpochChangedError, InvalidOffsetError, OffsetUnavailableError
from ..validate import check_offset

__all__ = ["MAX_COUNTER", "OffsetCodec"]

#: The largest counter an offset may carry (a signed 64-bit integer, what SQLite,
#: MongoDB and most databases store). A larger one is malformed: no store counts that far.
MAX_COUNTER = 2**63 - 1


class OffsetCodec:
    """Offsets ``"<epoch>-<counter>"``: an 8-hex-digit epoch and fixed-width hex counters.

    Fixed width makes offsets of one epoch compare as plain strings. ``groups`` gives
    the width of each counter (``(16,)``: one 64-bit counter; Redis uses ``(16, 16)``
    for its ``ms-seq`` ids). Positions are tuples of ints, one per group, compared as
    tuples. Parsing is anchored (``fullmatch``): trailing junk, upper case, signs or
    spaces are :class:`InvalidOffsetError`, and so is any counter above
    :data:`MAX_COUNTER`::

        codec = OffsetCodec("acme")
        epoch = codec.new_epoch()                       # e.g. '9f86d081'
        codec.format(epoch, 5)                          # '9f86d081-0000000000000005'
        codec.position("9f86d081-0000000000000005", epoch)   # (5,)
        codec.check(offset, (5,), first=(2,), last=(9,))     # OffsetUnavailableError if outside
    """

    def __init__(self, store: str, groups: tuple[int, ...] = (16,)) -> None:
        if not groups or any(not 1 <= width <= 16 for width in groups):
            raise ValueError(f"counter widths are 1 to 16 hex digits, got {groups!r}")
        self.store = store
        self.groups = groups
        counters = "-".join(f"([0-9a-f]{{{width}}})" for width in groups)
        self._pattern = re.compile(f"([0-9a-f]{{8}})-{counters}", re.ASCII)

    @staticmethod
    def new_epoch() -> str:
        """A fresh random epoch: 8 hex digits."""
        return secrets.token_hex(4)

    def format(self, epoch: str, *counters: int) -> str:
        """The offset of ``counters`` (one per group) in ``epoch``."""
        parts = (f"{n:0{width}x}" for n, width in zip(counters, self.groups, strict=True))
        return f"{epoch}-" + "-".join(parts)

    def start(self, epoch: str) -> str:
        """The start-of-stream offset of ``epoch`` (every counter 0)."""
        return self.format(epoch, *([0] * len(self.groups)))

    def parse(self, offset: object) -> tuple[str, tuple[int, ...]]:
        """``(epoch, counters)`` of a well-formed offset; :class:`InvalidOffsetError` otherwise."""
        text = check_offset(offset)
        match = self._pattern.fullmatch(text)
        if match is None:
            raise InvalidOffsetError(f"{text[:40]!r} is not an offset of the {self.store} store")
        counters = tuple(int(group, 16) for group in match.groups()[1:])
        if any(n > MAX_COUNTER for n in counters):
            raise InvalidOffsetError(f"{text!r}: a counter over 2**63 - 1 is not an offset of any store")
        return match.group(1), counters

    def position(self, offset: object, epoch: str) -> tuple[int, ...]:
        """The counters of ``offset``, which must be of ``epoch`` (else :class:`EpochChangedError`)."""
        got, counters = self.parse(offset)
        if got != epoch:
            raise EpochChangedError(
                f"offset {offset!r} is from another epoch (the data was wiped, or it is another store)",
                offset=str(offset),
            )
        return counters

    @staticmethod
    def check(
        offset: str, at: int | tuple[int, ...], first: int | tuple[int, ...], last: int | tuple[int, ...]
    ) -> None:
        """Refuse to resume from ``at`` unless ``first <= at <= last`` (ints for one counter).

        ``first``: the position of the newest trimmed event (0 if none); ``last``: the
        newest event's. Below ``first`` events were trimmed; above ``last`` the offset
        is ahead of the stream (``fetch_since`` from it would skip every event persisted
        up to it). Both raise :class:`OffsetUnavailableError`::

            OffsetCodec.check(offset, seq, trimmed_upto, last_seq)
        """
        at, first, last = (n if isinstance(n, tuple) else (n,) for n in (at, first, last))
        if at < first:
            raise OffsetUnavailableError(
                f"events after offset {offset!r} were removed by retention", offset=offset
            )
        if at > last:
            raise OffsetUnavailableError(
                f"offset {offset!r} is ahead of the newest event of the stream", offset=offset
            )
