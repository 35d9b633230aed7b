"""The one place that touches python-socketio's and python-engineio's private API.

python-socketio has no public hook for what connection state recovery and processed-once
handling need (a ``pid`` in the CONNECT reply, reusing an old sid, events sent before the
CONNECT reply, every inbound event and disconnect seen first), and its Python client drops
the ``pid`` and keeps the offset in the arguments. Every use of a private name, every patched
instance and every difference between the python-socketio releases we support is here:

- :mod:`._compat.server`: the hooks :class:`~socketio_delivery.Delivery` installs on one
  ``AsyncServer`` (a subclass of its manager's class for emits and rooms, python-socketio's
  own extension point; instance hooks for connect, inbound events, the trigger and
  ``save_session``), and the sends and checks it makes outside python-socketio's API;
- :mod:`._compat.client`: :class:`HookedAsyncClient`, the ``AsyncClient`` subclass the
  Python client builds on.

:func:`check_version` runs when a ``Delivery`` or a ``DeliveryClient`` is made and refuses
releases outside :data:`SUPPORTED`, the range ``make test`` proves: the core and end-to-end
suites run on the newest supported python-socketio (the main virtualenv) and on the oldest
(``scripts/version-matrix.sh``). ``core/tests/test_compat.py`` proves each hook by behaviour.
"""

from __future__ import annotations

import re
from importlib import metadata

from ..errors import ConfigurationError

__all__ = ["ENGINEIO_MINIMUM", "SUPPORTED", "check_version", "supported_range", "version_tuple"]

#: python-socketio releases supported: ``>= low, < high`` (``core/pyproject.toml`` pins the same).
SUPPORTED = ((5, 16), (5, 19))
#: Oldest python-engineio supported: before 4.13.2 a PONG could start a second ping loop.
ENGINEIO_MINIMUM = (4, 13, 2)


def version_tuple(text: str) -> tuple[int, ...]:
    """``"5.18.1"`` -> ``(5, 18, 1)``; pre-release and local suffixes are ignored."""
    parts = []
    for part in text.split(".")[:3]:
        match = re.match(r"\d+", part)
        if match is None:
            break
        parts.append(int(match.group()))
    if len(parts) < 2:
        raise ValueError(f"not a release version: {text!r}")
    return tuple(parts)


def supported_range() -> str:
    """The supported range as a requirement: ``python-socketio>=5.16,<5.19, python-engineio>=4.13.2``."""
    (low, high), engineio = SUPPORTED, ENGINEIO_MINIMUM
    return (
        f"python-socketio>={low[0]}.{low[1]},<{high[0]}.{high[1]}, "
        f"python-engineio>={'.'.join(map(str, engineio))}"
    )


def check_version(version: str | None = None, *, engineio_version: str | None = None) -> None:
    """Raise :class:`~socketio_delivery.ConfigurationError` outside the supported range.

    ``version`` / ``engineio_version`` default to the installed python-socketio / python-engineio.
    """
    found: list[str] = []
    socketio_text = version or metadata.version("python-socketio")
    engineio_text = engineio_version or metadata.version("python-engineio")
    try:
        if not SUPPORTED[0] <= version_tuple(socketio_text)[:2] < SUPPORTED[1]:
            found.append(f"python-socketio {socketio_text}")
    except ValueError:
        found.append(f"python-socketio {socketio_text!r} (unreadable version)")
    try:
        if (*version_tuple(engineio_text), 0) < ENGINEIO_MINIMUM:
            found.append(f"python-engineio {engineio_text}")
    except ValueError:
        found.append(f"python-engineio {engineio_text!r} (unreadable version)")
    if found:
        raise ConfigurationError(
            f"socketio-delivery does not support {' and '.join(found)}; supported: {supported_range()}. "
            "It hooks into python-socketio's private connect and event handling, which is "
            "re-checked for every release: install a supported version."
        )
