"""Compact JSON text of payloads, and back."""

from __future__ import annotations

import json
from collections.abc import Callable
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from ..errors import InvalidArgumentError

__all__ = ["decode_json", "encode_json"]

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
#: ``_ENCODER``'s C encoder, built once (``encode`` builds it on every call). Without
#: circular-reference markers: it keeps no state, so any thread may use it; a circular
#: value ends in ``RecursionError``, which :func:`encode_json` reports as not JSON.
_C_ENCODER = (
    None
    if c_make_encoder is None
    else c_make_encoder(None, _ENCODER.default, encode_basestring, None, ":", ",", False, False, True)
)
#: ``json.loads`` without its whitespace checks, for text :func:`encode_json` wrote.
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_SCALARS = (str, int, float, bool, type(None))


def encode_json(value: Any, what: str = "value") -> str:
    """Compact JSON text of ``value`` (non-ASCII kept); :class:`InvalidArgumentError` if not JSON.

    ::

        encode_json({"a": [1, "é"]})        # '{"a":[1,"é"]}'
        encode_json({1j}, "event data")     # InvalidArgumentError: event data must be a JSON value
    """
    try:
        if _C_ENCODER is None:  # pragma: no cover - CPython has the C encoder
            return _ENCODER.encode(value)
        return "".join(_C_ENCODER(value, 0))
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidArgumentError(f"{what} must be a JSON value: {exc}") from exc


_NOTHING: Any = object()


def decode_json(text: str, original: Any = _NOTHING) -> Any:
    """The value of JSON ``text`` that :func:`encode_json` wrote (``original``: scalars reused).

    What ``persist`` returns in its :class:`~socketio_delivery.store.Event`: the payload
    as ``fetch_since`` will return it (tuples become lists), not the caller's object.
    """
    if original is not _NOTHING and type(original) in _SCALARS:
        return original
    return _SCAN(text, 0)[0]
