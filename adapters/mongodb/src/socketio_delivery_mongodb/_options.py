"""Options of the MongoDB store and the reading of ``mongodb://`` / ``mongodb+srv://`` URLs."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from socketio_delivery.config import build_options, parse_url, redact
from socketio_delivery.errors import ConfigurationError
from socketio_delivery.kit import AdapterOptions

__all__ = ["DEFAULT_DATABASE", "MongoOptions", "MongoTarget", "read_url"]

#: The database used when the URL (or the client) names none.
DEFAULT_DATABASE = "socketio_delivery"
_SCHEMES = ("mongodb", "mongodb+srv")
_PREFIX = re.compile(r"[A-Za-z0-9_]{0,40}")


@dataclass(frozen=True)
class MongoOptions(AdapterOptions):
    """Options of the MongoDB store (URL query string or keyword options).

    ``prefix``: start of the collection names (``sio_`` -> ``sio_events``,
    ``sio_streams``, ``sio_sessions``, ``sio_keys``), so several deployments or
    an application's own collections can share one database.
    ``max_batch``, ``retention_interval``, ``trim_chunk``: see
    :class:`~socketio_delivery.kit.AdapterOptions`. ``purge_delay``: seconds trimmed
    events stay in the collection (invisible) before they are deleted; it must exceed any stall of a writer or
    reader (see the adapter docs: it is what makes offsets never reused).
    """

    prefix: str = "sio_"
    purge_delay: float = 60.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.prefix, str) or not _PREFIX.fullmatch(self.prefix):
            raise ConfigurationError(
                f"prefix must be at most 40 letters, digits or underscores, got {self.prefix!r}"
            )
        if not self.purge_delay >= 0:
            raise ConfigurationError(f"purge_delay must be >= 0 seconds, got {self.purge_delay!r}")


@dataclass(frozen=True)
class MongoTarget:
    """What a URL names: the URI handed to PyMongo (our options removed) and the database."""

    uri: str
    database: str
    options: MongoOptions


def read_url(url: str, given: Mapping[str, Any]) -> MongoTarget:
    """Split a store URL into the PyMongo URI, the database name and our options.

    Query parameters named like a :class:`MongoOptions` field are ours; every
    other one is a MongoDB connection option and stays in the URI (PyMongo
    checks it: an unknown one is a :class:`ConfigurationError`).
    """
    parsed = parse_url(url)
    if parsed.scheme not in _SCHEMES:
        raise ConfigurationError(f"MongoEventStore opens mongodb:// or mongodb+srv:// URLs, got {parsed}")
    if not parsed.host:
        raise ConfigurationError(f"a MongoDB URL needs a host: mongodb://localhost/chat, got {parsed}")
    ours = {f.name for f in dataclasses.fields(MongoOptions)}
    base, _, query = url.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    mine = {k: v for k, v in pairs if k in ours}
    theirs = [(k, v) for k, v in pairs if k not in ours]
    uri = base + ("?" + urlencode(theirs) if theirs else "")
    options = build_options(MongoOptions, dataclasses.replace(parsed, query=mine), given)
    database = parsed.path.strip("/") or DEFAULT_DATABASE
    if "/" in database or any(c in database for c in ' ."$\\'):
        raise ConfigurationError(f"{database!r} is not a valid MongoDB database name (in {parsed})")
    _check_uri(uri)
    return MongoTarget(uri, database, options)


def _check_uri(uri: str) -> None:
    """Let PyMongo validate the connection options now (no network, no DNS)."""
    from pymongo import uri_parser
    from pymongo.errors import ConfigurationError as PyMongoConfigurationError
    from pymongo.errors import InvalidURI

    scheme, _, rest = uri.partition("://")
    plain = "mongodb://" + rest  # an SRV name is resolved only on connect; check the rest
    try:
        uri_parser.parse_uri(plain, validate=True, warn=False)
    except (PyMongoConfigurationError, InvalidURI, ValueError) as exc:
        hint = ""
        if str(exc).startswith("Unknown option"):  # PyMongo names only its own options
            ours = ", ".join(sorted(f.name for f in dataclasses.fields(MongoOptions)))
            hint = f" (store options: {ours}; other query parameters are MongoDB connection options)"
        raise ConfigurationError(f"bad MongoDB URL {redact(uri)!r}: {exc}{hint}") from exc
    if scheme == "mongodb+srv" and ("," in rest.split("/", 1)[0] or _has_port(rest)):
        raise ConfigurationError(f"a mongodb+srv:// URL names one host without a port, got {redact(uri)!r}")


def _has_port(rest: str) -> bool:
    hosts = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    return ":" in hosts
