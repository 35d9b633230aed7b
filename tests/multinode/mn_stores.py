"""The store setups a multi-node test runs on, as parameters of the ``cluster`` fixture.

::

    STORES            # the default of every test that takes ``cluster``: redis, mongodb
    @on_stores("redis", "mongodb", "mongodb-nobus")   # a test (or module) on other setups
    async def test_x(cluster: Cluster) -> None: ...

    @on_store_pairs("mix", [("redis", "py"), ("redis", JS), ("mongodb", "py")])
    async def test_y(cluster: Cluster, mix: str) -> None: ...   # only these combinations

``redis``          ``Delivery(store="redis://...")`` + python-socketio's ``AsyncRedisManager``
                   on the same Redis.
``mongodb``        ``Delivery(store="mongodb://...")`` (SecantusDB) + ``AsyncRedisManager`` on a
                   Redis of its own: the usual setup of a MongoDB user with several nodes.
``mongodb-nobus``  ``Delivery(store="mongodb://...")`` and no client manager at all: each node's
                   log tailing is the only fan-out (the "without a message queue" setup).

Each parameter carries the marks of the servers it needs (``redis``, ``mongodb``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

__all__ = ["SETUPS", "STORES", "on_store_pairs", "on_stores", "store_param"]

#: setup -> the servers it needs (pytest marks)
SETUPS: dict[str, tuple[str, ...]] = {
    "redis": ("redis",),
    "mongodb": ("mongodb", "redis"),
    "mongodb-nobus": ("mongodb",),
}


def store_param(name: str) -> Any:
    """``pytest.param(name)`` with the marks of the servers ``name`` needs."""
    return pytest.param(name, marks=[getattr(pytest.mark, mark) for mark in SETUPS[name]])


#: the setups every multi-node test runs on unless it says otherwise
STORES = [store_param("redis"), store_param("mongodb")]


def on_stores(*names: str) -> Any:
    """Run a test (or, as ``pytestmark``, a module) on these store setups instead of :data:`STORES`."""
    return pytest.mark.parametrize("cluster", [store_param(name) for name in names], indirect=True)


def on_store_pairs(argname: str, pairs: Iterable[tuple[str, Any]]) -> Any:
    """Run a test on exactly these ``(store setup, value of argname)`` pairs, not on every product.

    A value may be a ``pytest.param`` with marks (``node``, ``xfail``): they are kept.
    """
    params = []
    for store, value in pairs:
        marks = [getattr(pytest.mark, mark) for mark in SETUPS[store]]
        if hasattr(value, "values"):  # a pytest.param
            marks += list(value.marks)
            (value,) = value.values
        params.append(pytest.param(store, value, marks=marks, id=f"{store}-{value}"))
    return pytest.mark.parametrize(("cluster", argname), params, indirect=["cluster"])
