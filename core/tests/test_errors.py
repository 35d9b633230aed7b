"""The exception tree of ``socketio_delivery.errors``, as its docstring draws it."""

from __future__ import annotations

import pytest
import socketio_delivery
from socketio_delivery import errors
from socketio_delivery.errors import (
    ConfigurationError,
    DeliveryError,
    InvalidArgumentError,
    InvalidOffsetError,
    OffsetUnavailableError,
    SessionBusyError,
    StoreError,
    StoreUnavailableError,
)

PUBLIC = [getattr(errors, name) for name in errors.__all__]


def test_every_public_error_is_exported_from_the_package() -> None:
    for cls in PUBLIC:
        assert getattr(socketio_delivery, cls.__name__) is cls


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda cls: cls.__name__)
def test_every_public_error_derives_from_delivery_error(cls: type[Exception]) -> None:
    assert issubclass(cls, DeliveryError)
    assert issubclass(cls, Exception)


def test_delivery_error_is_the_root() -> None:
    assert DeliveryError.__bases__ == (Exception,)


@pytest.mark.parametrize(
    ("cls", "parents"),
    [
        (ConfigurationError, (DeliveryError, ValueError)),
        (InvalidArgumentError, (DeliveryError, ValueError)),
        (InvalidOffsetError, (InvalidArgumentError,)),
        (OffsetUnavailableError, (DeliveryError,)),
        (SessionBusyError, (DeliveryError,)),
        (StoreError, (DeliveryError,)),
        (StoreUnavailableError, (StoreError,)),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else "",
)
def test_each_error_has_its_documented_parents(cls: type[Exception], parents: tuple[type, ...]) -> None:
    assert cls.__bases__ == parents


def test_bad_arguments_and_configuration_are_value_errors() -> None:
    for cls in (ConfigurationError, InvalidArgumentError, InvalidOffsetError):
        assert issubclass(cls, ValueError)
    for cls in (OffsetUnavailableError, SessionBusyError, StoreError, StoreUnavailableError):
        assert not issubclass(cls, ValueError)


def test_an_unavailable_offset_is_not_an_invalid_one() -> None:
    # "cannot recover from there" must stay distinct from "that is not an offset"
    assert not issubclass(OffsetUnavailableError, InvalidArgumentError)
    assert not issubclass(InvalidOffsetError, OffsetUnavailableError)


def test_offset_unavailable_error_carries_its_offset() -> None:
    exc = OffsetUnavailableError("trimmed by retention", offset="abc-0001")
    assert exc.offset == "abc-0001"
    assert str(exc) == "trimmed by retention"
    assert OffsetUnavailableError("from another epoch").offset is None
