"""Find stores by URL scheme: entry points of the group ``socketio_delivery.stores``.

An adapter registers a class (or any callable) under its URL scheme::

    [project.entry-points."socketio_delivery.stores"]
    mystore = "my_package.store:MyEventStore"

``open_store("mystore://...")`` then loads it on first use and calls
``MyEventStore.from_url(url, **options)`` (or the callable itself when it has no
``from_url``). A ``+`` in a scheme is spelled ``.`` in the entry-point name
(``mongodb+srv`` -> ``mongodb.srv``). Apps and tests that are not packaged use
:func:`register`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

from .config import ENV_STORE_URL, parse_url, redact
from .errors import ConfigurationError
from .store import EventStore

__all__ = ["StoreFactory", "available_schemes", "open_store", "register", "scheme_info"]

GROUP = "socketio_delivery.stores"

StoreFactory = Callable[..., EventStore]

#: Schemes served by our own adapters, and what to install for each.
INSTALL_HINTS = {
    "sqlite": "socketio-delivery[sqlite]",
    "redis": "socketio-delivery[redis]",
    "rediss": "socketio-delivery[redis]",
    "unix": "socketio-delivery[redis]",
    "mongodb": "socketio-delivery[mongodb]",
    "mongodb+srv": "socketio-delivery[mongodb]",
}

_registered: dict[str, StoreFactory] = {}
_entry_points: dict[str, metadata.EntryPoint] | None = None
_loaded: dict[str, StoreFactory] = {}


def _scheme_of(entry_point_name: str) -> str:
    return entry_point_name.replace(".", "+").lower()


def _discovered() -> dict[str, metadata.EntryPoint]:
    """Entry points of the group, read once per process, not imported."""
    global _entry_points
    if _entry_points is None:
        _entry_points = {_scheme_of(ep.name): ep for ep in metadata.entry_points(group=GROUP)}
    return _entry_points


def register(scheme: str, factory: StoreFactory) -> None:
    """Serve ``scheme://`` URLs with ``factory`` in this process (overrides entry points)."""
    _registered[scheme.lower()] = factory


def unregister(scheme: str) -> None:
    _registered.pop(scheme.lower(), None)


def available_schemes() -> list[str]:
    """Every scheme that :func:`open_store` can serve now (registered or installed)."""
    return sorted(set(_registered) | set(_discovered()))


def scheme_info() -> list[dict[str, str]]:
    """One row per installed scheme: scheme, distribution, version, object."""
    rows = []
    for scheme, ep in sorted(_discovered().items()):
        dist = ep.dist
        rows.append(
            {
                "scheme": scheme,
                "distribution": dist.name if dist else "?",
                "version": dist.version if dist else "?",
                "object": ep.value,
            }
        )
    for scheme, factory in sorted(_registered.items()):
        name = getattr(factory, "__qualname__", repr(factory))
        rows.append({"scheme": scheme, "distribution": "(registered)", "version": "", "object": name})
    return rows


def _factory_for(scheme: str, url: str) -> StoreFactory:
    if scheme in _registered:
        return _registered[scheme]
    if scheme in _loaded:
        return _loaded[scheme]
    ep = _discovered().get(scheme)
    if ep is None:
        installed = ", ".join(available_schemes()) or "none"
        if scheme in INSTALL_HINTS:
            raise ConfigurationError(
                f"the store URL {redact(url)!r} needs an adapter that is not installed: "
                f"pip install '{INSTALL_HINTS[scheme]}' (installed schemes: {installed})"
            )
        raise ConfigurationError(
            f"no store is installed for the scheme {scheme!r} of {redact(url)!r}; "
            f"installed schemes: {installed}"
        )
    try:
        obj = ep.load()
    except Exception as exc:  # ImportError, or a broken module / wrong object name
        hint = ""
        if isinstance(exc, ImportError) and scheme in INSTALL_HINTS:
            hint = f" (pip install '{INSTALL_HINTS[scheme]}')"
        raise ConfigurationError(
            f"the store for {scheme!r} ({ep.value}) failed to import: {type(exc).__name__}: {exc}{hint}"
        ) from exc
    factory: StoreFactory = getattr(obj, "from_url", obj)
    _loaded[scheme] = factory
    return factory


def resolve(config: str | Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """Turn a URL, a config mapping or nothing (environment) into ``(url, options)``."""
    if config is None:
        url = os.environ.get(ENV_STORE_URL)
        if not url:
            raise ConfigurationError(f"no store configured: pass a URL or set {ENV_STORE_URL}")
        return url, {}
    if isinstance(config, str):
        return config, {}
    if isinstance(config, Mapping):
        unknown = set(config) - {"url", "options"}
        if unknown:
            raise ConfigurationError(
                f"unknown keys {sorted(unknown)} in the store config; valid keys: 'url', 'options'"
            )
        url = config.get("url") or os.environ.get(ENV_STORE_URL)
        if not isinstance(url, str) or not url:
            raise ConfigurationError(f"the store config needs a 'url' (or set {ENV_STORE_URL})")
        options = config.get("options") or {}
        if not isinstance(options, Mapping):
            raise ConfigurationError("'options' in the store config must be a mapping")
        return url, dict(options)
    raise ConfigurationError(
        f"a store is configured by a URL, a mapping {{'url': ..., 'options': {{...}}}} "
        f"or an EventStore object, got {type(config).__name__}"
    )


def open_store(config: str | Mapping[str, Any] | EventStore | None = None, **options: Any) -> EventStore:
    """Make the store a URL or config names; it is opened with ``await store.open()``.

    ``config`` is a URL (``"sqlite:///events.db"``), a mapping as loaded from
    TOML/YAML/JSON (``{"url": ..., "options": {...}}``), a store object (returned
    as it is), or ``None`` to read ``SOCKETIO_DELIVERY_STORE_URL``. Keyword
    ``options`` override the mapping's options and the URL's query string.
    """
    if isinstance(config, EventStore):
        if options:
            raise ConfigurationError("options cannot be applied to a store object; pass a URL")
        return config
    url, base = resolve(config)
    scheme = parse_url(url).scheme
    factory = _factory_for(scheme, url)
    store = factory(url, **{**base, **options})
    if not isinstance(store, EventStore):
        raise ConfigurationError(
            f"the factory for {scheme!r} returned {type(store).__name__}, which is not an EventStore"
        )
    return store
