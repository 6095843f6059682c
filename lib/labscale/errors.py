"""The package's errors, all under one base class, :class:`LabscaleError` (``except LabscaleError`` catches every
error labscale raises on purpose, and nothing else).

* :class:`InvalidParameter` (also a ``ValueError``): bad user input, raised before any model loads or any API call
  is paid for; the message names the value and the valid choices.
* :class:`DataUnavailable` (also a ``RuntimeError``): data that exists but cannot be had here.

Other modules subclass :class:`LabscaleError` for their own failures (a fine-tuning job that failed, a data file
whose checksum does not match...).
"""

from __future__ import annotations

from collections.abc import Iterable


class LabscaleError(Exception):
    """The base class of every error labscale raises on purpose."""


class InvalidParameter(LabscaleError, ValueError):
    """A parameter value that is not allowed; the message names the value and the valid choices."""


def invalid_choice(what: str, value: object, choices: Iterable[object]) -> InvalidParameter:
    """Build an :class:`InvalidParameter` naming ``value`` and listing the valid ``choices``."""
    valid = ", ".join(repr(c) for c in choices)
    return InvalidParameter(f"unknown {what} {value!r}; valid choices: {valid}")


def check_choice(what: str, value: object, choices: Iterable[object]) -> None:
    """Raise :class:`InvalidParameter` unless ``value`` is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise invalid_choice(what, value, choices)


def check_choices(what: str, values: object, choices: Iterable[object]) -> list:
    """``values`` (one value or a list) as a non-empty list of valid ``choices``; :class:`InvalidParameter` naming
    the first bad value and the valid ones otherwise."""
    choices = list(choices)
    chosen = [values] if isinstance(values, str) or not isinstance(values, Iterable) else list(values)
    if not chosen:
        raise InvalidParameter(f"{what} must not be empty; valid choices: {', '.join(map(repr, choices))}")
    for value in chosen:
        check_choice(what, value, choices)
    return chosen


def check_range(
    what: str, value: object, low: int | float | None = None, high: int | float | None = None, *, integer: bool = False
) -> None:
    """Raise :class:`InvalidParameter` unless ``low <= value <= high`` (bounds optional)."""
    if integer and (isinstance(value, bool) or not isinstance(value, int)):
        raise InvalidParameter(f"{what} must be an integer, got {value!r}")
    if not integer and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise InvalidParameter(f"{what} must be a number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise InvalidParameter(f"{what}={value!r} is out of range; valid range: [{lo}, {hi}]")


class DataUnavailable(LabscaleError, RuntimeError):
    """Data that exists but cannot be had here (offline mode, no network, no cache, gated dataset)."""


class AdapterParityError(LabscaleError, RuntimeError):
    """A served LoRA adapter that does not answer as the local adapter does (or answers as its base model): the
    parity gate of :mod:`labscale.backends.served` stops the run before any evaluation. ``report`` holds the
    evidence (a :class:`~labscale.backends.served.ParityReport`, or None when the gate could not run)."""

    def __init__(self, message: str, report: object = None):
        super().__init__(message)
        self.report = report
