"""Argument checks shared by every store, so all of them refuse bad input the same way."""

from __future__ import annotations

from collections.abc import Collection

from .errors import InvalidArgumentError, InvalidOffsetError
from .store import MAX_KEY_LENGTH, MAX_OFFSET_LENGTH, MAX_PAGE_SIZE, MAX_STREAM_LENGTH

__all__ = ["check_key", "check_limit", "check_offset", "check_rooms", "check_stream", "check_ttl"]


def check_stream(stream: object) -> str:
    if not isinstance(stream, str) or not stream or len(stream) > MAX_STREAM_LENGTH:
        raise InvalidArgumentError(
            f"stream must be a non-empty string of at most {MAX_STREAM_LENGTH} characters, "
            f"got {_show(stream)}"
        )
    return stream


def check_key(key: object) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidArgumentError(
            f"key must be a non-empty string of at most {MAX_KEY_LENGTH} characters, got {_show(key)}"
        )
    return key


def check_offset(offset: object) -> str:
    """Type and size only; each store checks the shape of its own offsets."""
    if not isinstance(offset, str) or not offset or len(offset) > MAX_OFFSET_LENGTH:
        raise InvalidOffsetError(
            f"offset must be a non-empty string of at most {MAX_OFFSET_LENGTH} characters, "
            f"got {_show(offset)}"
        )
    return offset


def check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidArgumentError(f"limit must be an int from 1 to {MAX_PAGE_SIZE}, got {_show(limit)}")
    return limit


def check_ttl(ttl: object, name: str = "ttl") -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise InvalidArgumentError(f"{name} must be a positive number of seconds, got {_show(ttl)}")
    return float(ttl)


def check_rooms(rooms: object, name: str = "rooms") -> tuple[str, ...]:
    if isinstance(rooms, (str, bytes)) or not isinstance(rooms, Collection):
        raise InvalidArgumentError(f"{name} must be a collection of strings, got {_show(rooms)}")
    out = tuple(rooms)
    for room in out:
        if not isinstance(room, str):
            raise InvalidArgumentError(f"{name} must hold strings only, got {_show(room)}")
    return out


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
