"""Binary emit arguments in a JSON store: ``bytes`` travel as base64 text plus their paths.

Stores hold JSON only. An emit whose arguments contain ``bytes`` (anywhere: an argument,
an item of a list, a value of a dict) is persisted with each ``bytes`` value replaced by
its base64 text and the list of paths where that was done; delivery and replay put the
``bytes`` back, so clients receive the same binary Socket.IO packet as without the store::

    args, paths = split_binary([{"name": "a.png", "data": b"\\x89PNG"}])
    # args == [{"name": "a.png", "data": "iVBORw=="}], paths == [[0, "data"]]
    assert join_binary(args, paths) == [{"name": "a.png", "data": b"\\x89PNG"}]

Paths are explicit, so no string of the application is ever mistaken for binary data.
"""

from __future__ import annotations

import base64
from typing import Any

__all__ = ["Path", "join_binary", "split_binary"]

#: Where a ``bytes`` value sat: list indexes and dict keys, from the argument list down.
Path = list[int | str]


def split_binary(args: list[Any]) -> tuple[list[Any], list[Path]]:
    """``args`` with every ``bytes``/``bytearray`` as base64 text, and the paths of those values."""
    paths: list[Path] = []

    def walk(value: Any, path: Path) -> Any:
        if isinstance(value, (bytes, bytearray)):
            paths.append(path)
            return base64.b64encode(value).decode("ascii")
        if isinstance(value, (list, tuple)):
            return [walk(item, [*path, i]) for i, item in enumerate(value)]
        if isinstance(value, dict):
            return {key: walk(item, [*path, key]) for key, item in value.items()}
        return value

    return [walk(arg, [i]) for i, arg in enumerate(args)], paths


def join_binary(args: list[Any], paths: list[Path]) -> list[Any]:
    """The inverse of :func:`split_binary`: a copy of ``args`` with ``bytes`` back at ``paths``."""
    out = list(args)
    for path in paths:
        holder: Any = out
        for step in path[:-1]:
            child = holder[step]
            holder[step] = child = list(child) if isinstance(child, list) else dict(child)
            holder = child
        holder[path[-1]] = base64.b64decode(holder[path[-1]])
    return out
