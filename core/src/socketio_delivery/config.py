"""Store URLs and store options: parsing and validation shared by every adapter.

An adapter describes its options as a dataclass deriving from :class:`StoreOptions`;
:func:`build_options` fills it from the URL's query string and keyword options,
converting strings to the declared types and refusing unknown names with a
message that lists the valid ones.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import ConfigurationError

__all__ = ["StoreOptions", "StoreURL", "build_options", "parse_url"]

#: Environment variable read when no store is configured.
ENV_STORE_URL = "SOCKETIO_DELIVERY_STORE_URL"
_Store = TypeVar("_Store")
#: The store of a ``Delivery`` or ``Emitter`` given none, when ``SOCKETIO_DELIVERY_STORE_URL``
#: is not set either: the embedded SQLite store, in ``events.db`` in the working directory.
DEFAULT_STORE_URL = "sqlite:///events.db"


def default_store(store: _Store) -> _Store | str:
    """``store``, or :data:`DEFAULT_STORE_URL` when it is ``None`` and the environment names none."""
    if store is None and not os.environ.get(ENV_STORE_URL):
        return DEFAULT_STORE_URL
    return store


_MEMORY = ":memory:"


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL. ``query`` holds the query string parameters (options)."""

    raw: str
    scheme: str
    username: str | None = None
    password: str | None = None
    host: str | None = None
    port: int | None = None
    path: str = ""
    query: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:  # never print a password
        return redact(self.raw)


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def parse_url(url: str) -> StoreURL:
    """Split a store URL. ``sqlite:///rel.db`` has path ``rel.db``, ``sqlite:////abs.db`` ``/abs.db``.

    ``sqlite://:memory:`` (and ``sqlite:///:memory:``) has path ``:memory:`` and no host.
    A host list (``mongodb://h1:27017,h2:27017/db``) is kept whole in ``host``, ``port`` None.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"a store URL looks like 'memory://' or 'sqlite:///events.db', got {url!r}")
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if not scheme:
        raise ConfigurationError(f"store URL {redact(url)!r} has no scheme")
    if rest.startswith(_MEMORY):  # 'sqlite://:memory:' is not a host and port
        tail = rest[len(_MEMORY) :]
        if tail and not tail.startswith("?"):
            raise ConfigurationError(f"cannot parse store URL {redact(url)!r}: unexpected {tail!r}")
        return StoreURL(
            raw=url, scheme=scheme, path=_MEMORY, query=dict(parse_qsl(tail[1:], keep_blank_values=True))
        )
    try:
        parts = urlsplit("x://" + rest)
        hosts = parts.netloc.rpartition("@")[2]
        host = parts.hostname if parts.netloc else None
        if "," in hosts:  # a host list ('mongodb://h1:27017,h2:27017/db'): the adapter reads it
            host, port = hosts, None
        else:
            port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"cannot parse store URL {redact(url)!r}: {exc}") from exc
    path = parts.path
    if path.startswith("/"):
        path = path[1:]  # 'sqlite:///events.db' -> 'events.db', '////abs' -> '/abs'
    return StoreURL(
        raw=url,
        scheme=scheme,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        host=host,
        port=port,
        path=unquote(path),
        query=dict(parse_qsl(parts.query, keep_blank_values=True)),
    )


@dataclass(frozen=True)
class StoreOptions:
    """Options every store accepts. Adapters subclass this with their own fields.

    ``max_age``: seconds an event is kept (``None``: no age limit).
    ``max_events``: events kept per stream (``None``: no count limit).
    """

    max_age: float | None = 24 * 3600.0
    max_events: int | None = 1_000_000

    def __post_init__(self) -> None:
        if self.max_age is not None and not self.max_age > 0:
            raise ConfigurationError(f"max_age must be > 0 seconds or None, got {self.max_age!r}")
        if self.max_events is not None and not self.max_events > 0:
            raise ConfigurationError(f"max_events must be > 0 or None, got {self.max_events!r}")


OptionsT = TypeVar("OptionsT", bound=StoreOptions)


def build_options(cls: type[OptionsT], url: StoreURL | None, given: Mapping[str, Any]) -> OptionsT:
    """Make ``cls`` from the URL query string, overridden by ``given`` keyword options.

    Query values are converted to the declared field types (``int``, ``float``,
    ``bool``, ``str``, with ``None`` spelled ``none``/``null``/empty); so are
    string values in ``given`` for fields that are not strings.
    """
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    sources: list[tuple[Mapping[str, Any], bool]] = [(url.query if url else {}, True), (given, False)]
    for source, from_url in sources:
        for name, value in source.items():
            if name not in fields:
                valid = ", ".join(sorted(fields)) or "(none)"
                where = "in the URL query string" if from_url else "given"
                raise ConfigurationError(
                    f"unknown option {name!r} {where} for {cls.__name__}; valid options: {valid}"
                )
            # Query values are text; so are values from env/INI-style config: read them as the type.
            if from_url or (isinstance(value, str) and set(_kinds(hints[name])) <= _SCALARS):
                value = _coerce(name, value, hints[name])
            values[name] = value
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigurationError):
            raise
        raise ConfigurationError(f"invalid options for {cls.__name__}: {exc}") from exc


_SCALARS: set[Any] = {int, float, bool, type(None)}


def _kinds(hint: Any) -> tuple[Any, ...]:
    """The members of a union (``int | None``, ``Optional[int]``), else ``(hint,)``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def _coerce(name: str, text: str, hint: Any) -> Any:
    """Convert a query-string value to the declared type of option ``name``."""
    kinds = _kinds(hint)
    if not set(kinds) <= _SCALARS | {str}:
        return text  # a type we do not convert (Any, Literal, ...): the options class checks it
    if type(None) in kinds and text.lower() in ("", "none", "null"):
        return None
    for kind in kinds:
        try:
            if kind is bool:
                if text.lower() in ("1", "true", "yes", "on"):
                    return True
                if text.lower() in ("0", "false", "no", "off"):
                    return False
                continue
            if kind in (int, float, str):
                return kind(text)
        except ValueError:
            continue
    raise ConfigurationError(f"option {name!r}: cannot read {text!r} as {hint}")
