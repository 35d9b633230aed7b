"""The store registry: entry points, install hints, register(), config mappings, the environment."""

from __future__ import annotations

import re
from importlib import metadata
from typing import Any

import pytest
import socketio_delivery
from socketio_delivery import registry
from socketio_delivery.errors import ConfigurationError
from socketio_delivery.memory import MemoryEventStore, MemoryOptions


def entry_point(scheme: str, value: str) -> metadata.EntryPoint:
    return metadata.EntryPoint(name=scheme, value=value, group=registry.GROUP)


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> dict[str, metadata.EntryPoint]:
    """Replace the discovered entry points (a plain dict the test may edit) and the load cache."""
    discovered = {"memory": entry_point("memory", "socketio_delivery.memory:MemoryEventStore")}
    monkeypatch.setattr(registry, "_entry_points", discovered)
    monkeypatch.setattr(registry, "_loaded", {})
    monkeypatch.setattr(registry, "_registered", {})
    return discovered


@pytest.fixture(autouse=True)
def no_env_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOCKETIO_DELIVERY_STORE_URL", raising=False)


# -- entry points -----------------------------------------------------------------------------


def test_entry_points_of_the_dev_environment_list_memory_and_sqlite() -> None:
    names = {ep.name for ep in metadata.entry_points(group="socketio_delivery.stores")}
    assert {"memory", "sqlite"} <= names


def test_memory_url_opens_the_memory_store_through_its_entry_point() -> None:
    store = socketio_delivery.open_store("memory://")
    assert type(store) is MemoryEventStore
    assert isinstance(store, socketio_delivery.EventStore)
    assert {"memory", "sqlite"} <= set(socketio_delivery.available_schemes())


def test_every_url_opens_a_new_store() -> None:
    assert socketio_delivery.open_store("memory://") is not socketio_delivery.open_store("memory://")


def test_scheme_info_names_distribution_version_and_object() -> None:
    rows = {row["scheme"]: row for row in registry.scheme_info()}
    assert rows["memory"] == {
        "scheme": "memory",
        "distribution": "socketio-delivery",
        "version": metadata.version("socketio-delivery"),
        "object": "socketio_delivery.memory:MemoryEventStore",
    }
    assert rows["sqlite"]["distribution"] == "socketio-delivery-sqlite"


def test_plus_in_a_scheme_is_a_dot_in_the_entry_point_name(installed: dict[str, Any]) -> None:
    monkey_ep = entry_point("memory.srv", "socketio_delivery.memory:MemoryEventStore")
    installed[registry._scheme_of(monkey_ep.name)] = monkey_ep
    assert "memory+srv" in registry.available_schemes()
    assert type(registry.open_store("memory+srv://host/x")) is MemoryEventStore


def test_unknown_scheme_lists_the_installed_schemes(installed: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as info:
        registry.open_store("nosuch://host/db")
    assert str(info.value) == (
        "no store is installed for the scheme 'nosuch' of 'nosuch://host/db'; installed schemes: memory"
    )


def test_unknown_scheme_message_never_shows_the_password(installed: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as info:
        registry.open_store("nosuch://user:s3cr3t@host/db")
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        ("sqlite:///events.db", "sqlite"),
        ("redis://localhost:6379/0", "redis"),
        ("rediss://:pw@localhost:6380/0", "redis"),
        ("unix:///run/redis.sock", "redis"),
        ("mongodb://localhost/chat", "mongodb"),
        ("mongodb+srv://app:pw@cluster0.example.net/chat", "mongodb"),
    ],
)
def test_our_scheme_whose_package_is_missing_says_what_to_install(
    installed: dict[str, Any], url: str, extra: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        registry.open_store(url)
    message = str(info.value)
    assert f"pip install 'socketio-delivery[{extra}]'" in message
    assert "installed schemes: memory" in message
    assert ":pw@" not in message


def test_entry_point_that_fails_to_import_is_a_configuration_error(installed: dict[str, Any]) -> None:
    installed["broken"] = entry_point("broken", "no_such_module_for_socketio_delivery:Store")
    with pytest.raises(ConfigurationError) as info:
        registry.open_store("broken://")
    assert "the store for 'broken' (no_such_module_for_socketio_delivery:Store) failed to import" in str(
        info.value
    )
    assert isinstance(info.value.__cause__, ImportError)


def test_our_entry_point_that_fails_to_import_adds_the_install_hint(installed: dict[str, Any]) -> None:
    installed["redis"] = entry_point("redis", "no_such_module_for_socketio_delivery:RedisEventStore")
    with pytest.raises(
        ConfigurationError, match=r"failed to import.*pip install 'socketio-delivery\[redis\]'"
    ):
        registry.open_store("redis://localhost/0")


def test_entry_point_naming_a_missing_object_is_a_configuration_error(installed: dict[str, Any]) -> None:
    installed["typo"] = entry_point("typo", "socketio_delivery.memory:NoSuchStore")
    with pytest.raises(ConfigurationError, match="failed to import: AttributeError") as info:
        registry.open_store("typo://")
    assert isinstance(info.value.__cause__, AttributeError)


def test_entry_points_are_imported_lazily_and_once(
    installed: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []

    class CountingEntryPoint:
        name = value = "counting"
        dist = None

        def load(self) -> Any:
            loads.append("load")
            return MemoryEventStore

    installed["counting"] = CountingEntryPoint()
    registry.available_schemes()
    registry.scheme_info()
    assert loads == []
    registry.open_store("counting://")
    registry.open_store("counting://")
    assert loads == ["load"]


def test_entry_points_are_read_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    real = metadata.entry_points

    def counting(**kwargs: Any) -> Any:
        reads.append(kwargs.get("group", ""))
        return real(**kwargs)

    monkeypatch.setattr(registry, "_entry_points", None)
    monkeypatch.setattr(registry.metadata, "entry_points", counting)
    registry.available_schemes()
    registry.open_store("memory://")
    registry.scheme_info()
    assert reads == [registry.GROUP]


def test_a_factory_without_from_url_is_called_with_the_url(installed: dict[str, Any]) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def factory(url: str, **options: Any) -> MemoryEventStore:
        seen.append((url, options))
        return MemoryEventStore()

    class FactoryEntryPoint:
        name = value = "fn"
        dist = None

        def load(self) -> Any:
            return factory

    installed["fn"] = FactoryEntryPoint()
    registry.open_store("fn://x?a=1", b=2)
    assert seen == [("fn://x?a=1", {"b": 2})]


def test_a_factory_returning_something_else_is_refused(installed: dict[str, Any]) -> None:
    registry.register("notastore", lambda url, **options: object())
    with pytest.raises(ConfigurationError, match="returned object, which is not an EventStore"):
        registry.open_store("notastore://")


# -- register / unregister --------------------------------------------------------------------


def test_register_serves_a_scheme_in_this_process_and_unregister_removes_it(
    installed: dict[str, Any],
) -> None:
    registry.register("Custom", MemoryEventStore.from_url)
    assert "custom" in registry.available_schemes()
    assert type(registry.open_store("custom://")) is MemoryEventStore
    assert type(registry.open_store("CUSTOM://")) is MemoryEventStore
    assert {"scheme": "custom", "distribution": "(registered)", "version": ""}.items() <= {
        row["scheme"]: row for row in registry.scheme_info()
    }["custom"].items()
    registry.unregister("custom")
    assert "custom" not in registry.available_schemes()
    with pytest.raises(ConfigurationError, match="no store is installed for the scheme 'custom'"):
        registry.open_store("custom://")
    registry.unregister("custom")  # unregistering twice is harmless


def test_register_overrides_an_installed_entry_point(installed: dict[str, Any]) -> None:
    class Special(MemoryEventStore):
        pass

    registry.register("memory", lambda url, **options: Special())
    assert type(registry.open_store("memory://")) is Special
    registry.unregister("memory")
    assert type(registry.open_store("memory://")) is MemoryEventStore


def test_register_is_exported_from_the_package() -> None:
    assert socketio_delivery.register is registry.register
    try:
        socketio_delivery.register("exported", MemoryEventStore.from_url)
        assert "exported" in socketio_delivery.available_schemes()
    finally:
        registry.unregister("exported")


# -- extras -----------------------------------------------------------------------------------

ADAPTERS = {
    "sqlite": "socketio-delivery-sqlite",
    "redis": "socketio-delivery-redis",
    "mongodb": "socketio-delivery-mongodb",
}


def extra_requirements(extra: str) -> set[str]:
    """Names of the distributions ``socketio-delivery[extra]`` adds (from the installed metadata)."""
    from packaging.requirements import Requirement  # a dependency of pytest

    added = set()
    for line in metadata.requires("socketio-delivery") or []:
        requirement = Requirement(line)
        if requirement.marker is not None and requirement.marker.evaluate({"extra": extra}):
            added.add(requirement.name)
    return added


def test_the_core_distribution_provides_an_extra_per_adapter_and_all() -> None:
    extras = set(metadata.metadata("socketio-delivery").get_all("Provides-Extra") or [])
    assert {"sqlite", "redis", "mongodb", "all"} <= extras


@pytest.mark.parametrize("extra", sorted(ADAPTERS))
def test_each_adapter_extra_requires_its_adapter_distribution(extra: str) -> None:
    assert extra_requirements(extra) == {ADAPTERS[extra]}


def test_the_all_extra_requires_every_adapter() -> None:
    assert extra_requirements("all") == set(ADAPTERS.values())


def test_every_install_hint_names_an_extra_that_exists() -> None:
    extras = set(metadata.metadata("socketio-delivery").get_all("Provides-Extra") or [])
    for scheme, hint in registry.INSTALL_HINTS.items():
        match = re.fullmatch(r"socketio-delivery\[(\w+)\]", hint)
        assert match is not None, scheme
        assert match.group(1) in extras, scheme


# -- config mappings, options and the environment ---------------------------------------------


def test_mapping_config_passes_its_options() -> None:
    store = registry.open_store({"url": "memory://", "options": {"max_events": 10, "max_age": 60}})
    assert isinstance(store, MemoryEventStore)
    assert store.options == MemoryOptions(max_age=60, max_events=10)


def test_mapping_config_without_options() -> None:
    assert isinstance(registry.open_store({"url": "memory://"}), MemoryEventStore)


def test_keyword_options_override_mapping_options_and_the_query_string() -> None:
    store = registry.open_store(
        {"url": "memory://?max_events=5&max_age=7", "options": {"max_events": 10}}, max_events=20
    )
    assert isinstance(store, MemoryEventStore)
    assert store.options == MemoryOptions(max_age=7, max_events=20)


def test_mapping_config_with_unknown_keys_names_the_valid_ones() -> None:
    with pytest.raises(ConfigurationError) as info:
        registry.open_store({"url": "memory://", "option": {"max_events": 1}})
    assert str(info.value) == "unknown keys ['option'] in the store config; valid keys: 'url', 'options'"


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({}, "the store config needs a 'url'"),
        ({"url": ""}, "the store config needs a 'url'"),
        ({"url": 42}, "the store config needs a 'url'"),
        (
            {"url": "memory://", "options": ["max_events", 1]},
            "'options' in the store config must be a mapping",
        ),
        ({"url": "memory://", "options": {"max_event": 1}}, "unknown option 'max_event' given"),
        ({"url": "memory"}, "a store URL looks like"),
    ],
)
def test_bad_mapping_configs_are_configuration_errors(config: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        registry.open_store(config)


def test_mapping_without_url_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCKETIO_DELIVERY_STORE_URL", "memory://?max_age=9")
    store = registry.open_store({"options": {"max_events": 3}})
    assert isinstance(store, MemoryEventStore)
    assert store.options == MemoryOptions(max_age=9, max_events=3)


def test_nothing_given_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCKETIO_DELIVERY_STORE_URL", "memory://?max_events=4")
    store = registry.open_store()
    assert isinstance(store, MemoryEventStore)
    assert store.options.max_events == 4
    store = registry.open_store(None, max_events=8)
    assert isinstance(store, MemoryEventStore)
    assert store.options.max_events == 8


def test_nothing_given_and_no_environment_says_what_to_set() -> None:
    with pytest.raises(ConfigurationError, match="no store configured: pass a URL or set SOCKETIO_DELIVERY"):
        registry.open_store()


def test_an_explicit_url_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCKETIO_DELIVERY_STORE_URL", "nosuch://")
    assert isinstance(registry.open_store("memory://"), MemoryEventStore)


@pytest.mark.parametrize(
    ("url", "options", "where"),
    [("memory://?bogus=1", {}, "in the URL query string"), ("memory://", {"bogus": 1}, "given")],
)
def test_unknown_option_names_the_valid_ones(url: str, options: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        registry.open_store(url, **options)
    assert str(info.value) == (
        f"unknown option 'bogus' {where} for MemoryOptions; valid options: max_age, max_bytes, max_events"
    )


def test_query_string_options_are_typed() -> None:
    store = registry.open_store("memory://?max_events=12&max_age=1.5")
    assert isinstance(store, MemoryEventStore)
    assert store.options == MemoryOptions(max_age=1.5, max_events=12)
    store = registry.open_store("memory://?max_events=none&max_age=null")
    assert isinstance(store, MemoryEventStore)
    assert store.options == MemoryOptions(max_age=None, max_events=None)


def test_a_store_object_is_returned_as_it_is() -> None:
    store = MemoryEventStore()
    assert registry.open_store(store) is store
    with pytest.raises(ConfigurationError, match="options cannot be applied to a store object"):
        registry.open_store(store, max_events=1)


@pytest.mark.parametrize("config", [42, ["memory://"], b"memory://"])
def test_other_config_types_are_refused(config: Any) -> None:
    with pytest.raises(ConfigurationError, match="a store is configured by a URL, a mapping"):
        registry.open_store(config)
