"""Store URLs: which query parameters are the store's options and which go on to redis-py.

::

    own, redis_url = split_url("redis://h/0?prefix=chat&socket_timeout=2", {"prefix"})
    own.query        # {'prefix': 'chat'}
    redis_url        # 'redis://h/0?socket_timeout=2'
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Collection
from urllib.parse import parse_qsl, urlencode

from redis.asyncio.connection import (
    URL_QUERY_ARGUMENT_PARSERS,
    AbstractConnection,
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
)
from socketio_delivery.config import StoreURL, parse_url
from socketio_delivery.errors import ConfigurationError

__all__ = ["SCHEMES", "redis_parameters", "split_url"]

SCHEMES = ("redis", "rediss", "unix")
_CONNECTIONS: dict[str, type[AbstractConnection]] = {
    "redis": Connection,
    "rediss": SSLConnection,
    "unix": UnixDomainSocketConnection,
}
_NOT_FROM_URLS = {"connection_class", "path", "host", "port", "encoder_class", "parser_class", "self"}
_TRUE = ("1", "true", "yes", "on")


def redis_parameters(scheme: str) -> set[str]:
    """Query parameters redis-py accepts in a URL of ``scheme`` (its connection and pool arguments)."""
    names = set(URL_QUERY_ARGUMENT_PARSERS) | {"max_connections"}
    for cls in (*_CONNECTIONS[scheme].__mro__, ConnectionPool):
        init = cls.__dict__.get("__init__")
        if init is not None:
            names |= {
                p.name
                for p in inspect.signature(init).parameters.values()
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            }
    return names - _NOT_FROM_URLS


def split_url(url: str, ours: Collection[str]) -> tuple[StoreURL, str]:
    """Check ``url``; return it parsed with only the ``ours`` parameters, and the URL for redis-py.

    Raises :class:`~socketio_delivery.errors.ConfigurationError` for another scheme, a
    parameter that is neither ours nor redis-py's, or a redis-py parameter it refuses.
    """
    parsed = parse_url(url)
    if parsed.scheme not in SCHEMES:
        raise ConfigurationError(f"RedisEventStore opens redis://, rediss:// and unix:// URLs, got {parsed}")
    if parsed.scheme == "unix":
        if parsed.query.get("cluster", "").lower() in _TRUE:
            raise ConfigurationError(f"a Redis Cluster is reached over TCP, not a unix socket: {parsed}")
        if not parsed.path:
            raise ConfigurationError(
                f"a unix:// URL needs a socket path (unix:///run/redis.sock), got {parsed}"
            )
    passthrough = redis_parameters(parsed.scheme)
    for name in parsed.query:
        if name not in ours and name not in passthrough:
            raise ConfigurationError(
                f"unknown option {name!r} in {parsed}: store options are {', '.join(sorted(ours))}; "
                f"redis-py connection parameters (socket_timeout, ssl_cert_reqs, ...) are passed on"
            )
    own = dataclasses.replace(parsed, query={k: v for k, v in parsed.query.items() if k in ours})
    base, _, query = url.partition("?")
    rest = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in ours]
    redis_url = base + ("?" + urlencode(rest) if rest else "")
    try:  # redis-py checks its parameters when it makes a connection: do it now (no I/O)
        pool = ConnectionPool.from_url(redis_url)
        pool.connection_class(**pool.connection_kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"invalid redis-py connection parameters in {parsed}: {exc}") from exc
    return own, redis_url
