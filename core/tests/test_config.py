"""Store URLs and options: parse_url, redact, build_options (validation and type coercion)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

import pytest
from socketio_delivery.config import StoreOptions, StoreURL, build_options, parse_url, redact
from socketio_delivery.errors import ConfigurationError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("memory://", StoreURL("memory://", "memory")),
        ("sqlite:///rel.db", StoreURL("sqlite:///rel.db", "sqlite", path="rel.db")),
        ("sqlite:///sub/dir/rel.db", StoreURL("sqlite:///sub/dir/rel.db", "sqlite", path="sub/dir/rel.db")),
        ("sqlite:////abs.db", StoreURL("sqlite:////abs.db", "sqlite", path="/abs.db")),
        ("sqlite://:memory:", StoreURL("sqlite://:memory:", "sqlite", path=":memory:")),
        ("sqlite:///:memory:", StoreURL("sqlite:///:memory:", "sqlite", path=":memory:")),
        (
            "sqlite://:memory:?max_events=3",
            StoreURL("sqlite://:memory:?max_events=3", "sqlite", path=":memory:", query={"max_events": "3"}),
        ),
        (
            "redis://user:pw@host:6379/0",
            StoreURL("redis://user:pw@host:6379/0", "redis", "user", "pw", "host", 6379, "0"),
        ),
        ("redis://:pw@host/1", StoreURL("redis://:pw@host/1", "redis", None, "pw", "host", None, "1")),
        ("REDIS://Host:1", StoreURL("REDIS://Host:1", "redis", host="host", port=1)),
        ("redis://[::1]:6380/2", StoreURL("redis://[::1]:6380/2", "redis", host="::1", port=6380, path="2")),
        (
            "mongodb+srv://app:p%40ss@cluster0.example.net/chat?retryWrites=true&max_age=60",
            StoreURL(
                "mongodb+srv://app:p%40ss@cluster0.example.net/chat?retryWrites=true&max_age=60",
                "mongodb+srv",
                "app",
                "p@ss",
                "cluster0.example.net",
                None,
                "chat",
                {"retryWrites": "true", "max_age": "60"},
            ),
        ),
        (
            "mongodb://u:p@h1:27017,h2:27018/db?replicaSet=rs0",
            StoreURL(
                "mongodb://u:p@h1:27017,h2:27018/db?replicaSet=rs0",
                "mongodb",
                "u",
                "p",
                "h1:27017,h2:27018",
                None,
                "db",
                {"replicaSet": "rs0"},
            ),
        ),
    ],
)
def test_parse_url_forms(url: str, expected: StoreURL) -> None:
    assert parse_url(url) == expected


def test_query_keeps_blank_values() -> None:
    assert parse_url("memory://?max_age=&max_events=5").query == {"max_age": "", "max_events": "5"}


@pytest.mark.parametrize(
    "url", ["", "events.db", "/tmp/events.db", "://x", "redis://host:notaport/0", 42, None]
)
def test_malformed_urls_raise_configuration_error(url: Any) -> None:
    with pytest.raises(ConfigurationError):
        parse_url(url)


def test_parse_error_does_not_show_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_url("redis://app:s3cr3t@host:port/0")
    assert "s3cr3t" not in str(info.value)
    assert "app:***@host" in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:pw@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:pw@host/1", "redis://:***@host/1"),
        ("mongodb+srv://app:p%40ss@cluster0/db?w=1", "mongodb+srv://app:***@cluster0/db?w=1"),
        ("redis://pw:pw@pw/pw", "redis://pw:***@pw/pw"),
        ("redis://user@host/0", "redis://user@host/0"),
        ("sqlite:///events.db", "sqlite:///events.db"),
    ],
)
def test_redact_hides_passwords(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_str_of_a_parsed_url_is_redacted() -> None:
    parsed = parse_url("redis://user:s3cr3t@host/0")
    assert str(parsed) == "redis://user:***@host/0"
    assert "s3cr3t" not in str(parsed)


# -- build_options --------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoOptions(StoreOptions):
    pool_size: int = 4
    timeout: float | None = 5.0
    tls: bool = False
    prefix: str = "sio"
    legacy: Optional[int] = None  # noqa: UP045 - third-party adapters may spell it this way
    mode: Literal["fast", "safe"] = "safe"


def options(url: str = "memory://", **given: Any) -> DemoOptions:
    return build_options(DemoOptions, parse_url(url), given)


def test_defaults_are_the_common_retention_options() -> None:
    assert StoreOptions() == StoreOptions(max_age=24 * 3600.0, max_events=1_000_000)
    assert options() == DemoOptions()


@pytest.mark.parametrize(
    ("query", "field", "value"),
    [
        ("pool_size=10", "pool_size", 10),
        ("timeout=2.5", "timeout", 2.5),
        ("timeout=3", "timeout", 3.0),
        ("timeout=none", "timeout", None),
        ("timeout=null", "timeout", None),
        ("timeout=", "timeout", None),
        ("tls=true", "tls", True),
        ("tls=1", "tls", True),
        ("tls=yes", "tls", True),
        ("tls=ON", "tls", True),
        ("tls=false", "tls", False),
        ("tls=0", "tls", False),
        ("tls=off", "tls", False),
        ("prefix=abc", "prefix", "abc"),
        ("prefix=12", "prefix", "12"),
        ("legacy=7", "legacy", 7),
        ("legacy=none", "legacy", None),
        ("mode=fast", "mode", "fast"),
        ("max_age=60", "max_age", 60.0),
        ("max_age=none", "max_age", None),
        ("max_events=10", "max_events", 10),
        ("max_events=null", "max_events", None),
    ],
)
def test_query_string_values_are_read_as_the_declared_type(query: str, field: str, value: Any) -> None:
    got = getattr(options(f"memory://?{query}"), field)
    assert got == value
    assert type(got) is type(value)


@pytest.mark.parametrize(
    "query",
    ["pool_size=many", "pool_size=1.5", "timeout=soon", "tls=maybe", "pool_size=", "max_events=ten"],
)
def test_unreadable_query_values_name_the_option(query: str) -> None:
    name = query.split("=")[0]
    with pytest.raises(ConfigurationError, match=f"option '{name}': cannot read"):
        options(f"memory://?{query}")


def test_keyword_options_override_the_query_string() -> None:
    got = options("memory://?pool_size=10&tls=true", pool_size=20)
    assert (got.pool_size, got.tls) == (20, True)


def test_keyword_options_keep_their_python_values() -> None:
    assert options(timeout=None, prefix="x", tls=True) == DemoOptions(timeout=None, prefix="x", tls=True)


def test_text_keyword_options_for_numeric_fields_are_read_as_numbers() -> None:
    # e.g. options loaded from an INI file or environment variables arrive as strings
    got = options(pool_size="8", max_age="30", tls="false", prefix="007")
    assert (got.pool_size, got.max_age, got.tls, got.prefix) == (8, 30.0, False, "007")


@pytest.mark.parametrize(("url", "given"), [("memory://?bogus=1", {}), ("memory://", {"bogus": 1})])
def test_unknown_option_names_the_valid_ones(url: str, given: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as info:
        options(url, **given)
    message = str(info.value)
    assert "unknown option 'bogus'" in message
    assert ("in the URL query string" in message) == ("?" in url)
    assert "valid options: legacy, max_age, max_events, mode, pool_size, prefix, timeout, tls" in message


@pytest.mark.parametrize(
    ("given", "match"),
    [
        ({"max_age": 0}, "max_age must be > 0"),
        ({"max_age": -1.5}, "max_age must be > 0"),
        ({"max_events": 0}, "max_events must be > 0"),
        ({"max_events": "lots"}, "option 'max_events': cannot read 'lots'"),
    ],
)
def test_invalid_retention_values_are_configuration_errors(given: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        options(**given)


def test_options_without_a_url() -> None:
    assert build_options(DemoOptions, None, {"pool_size": 2}).pool_size == 2


def test_options_class_errors_become_configuration_errors() -> None:
    @dataclass(frozen=True)
    class Checked(StoreOptions):
        port: int = 1

        def __post_init__(self) -> None:
            super().__post_init__()
            if not 0 < self.port < 65536:
                raise ValueError(f"port out of range: {self.port}")

    with pytest.raises(ConfigurationError, match="invalid options for Checked: port out of range: 70000"):
        build_options(Checked, parse_url("x://?port=70000"), {})
