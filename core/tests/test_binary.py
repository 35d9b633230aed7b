"""bytes in emit arguments survive a JSON store: split before persisting, joined on delivery."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from socketio_delivery.binary import join_binary, split_binary

CASES: list[list[Any]] = [
    [b"raw"],
    [b""],
    ["text", 1, None, {"a": [1, 2]}],
    [{"name": "a.png", "data": b"\x89PNG\r\n", "parts": [b"x", "y", {"deep": bytearray(b"\xff")}]}],
    [[b"a", [b"b", [b"c"]]], {"k": {"j": b"d"}}, b"e"],
    [{"data": "aGk="}],  # application text that looks like base64 stays text
]


@pytest.mark.parametrize("args", CASES)
def test_split_gives_json_and_join_restores_the_arguments(args: list[Any]) -> None:
    stored, paths = split_binary(args)
    restored = json.loads(json.dumps({"a": stored, "b": paths}))
    before = copy.deepcopy(restored)
    assert join_binary(restored["a"], restored["b"]) == _as_bytes(args)
    assert restored == before  # the stored payload is shared between deliveries: never mutated


def test_no_binary_no_paths() -> None:
    assert split_binary(["a", {"b": [1]}]) == (["a", {"b": [1]}], [])


def _as_bytes(value: Any) -> Any:
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, (list, tuple)):
        return [_as_bytes(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_bytes(v) for k, v in value.items()}
    return value
