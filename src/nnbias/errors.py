"""User-facing errors.

Every bad value a user can pass is reported as one :class:`NNBiasError` whose
message names the value and what is allowed; the CLI prints that single line
and exits non-zero instead of showing a traceback from deep inside.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class NNBiasError(ValueError):
    """A bad input or an impossible request, explained in one line."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`NNBiasError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise NNBiasError(message)


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``; otherwise name both."""
    allowed = list(allowed)
    require(value in allowed, f"{name}={value!r} is not allowed; choose one of {allowed}")
    return value


def check_int(name: str, value: Any, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """Return ``value`` as an int if it is a whole number within bounds.

    Floats such as ``1e6`` are accepted when they are whole (the CLI and JSON
    configs write large counts that way); ``2.5``, ``True`` and strings are not.
    """
    ok_type = isinstance(value, int | float) and not isinstance(value, bool)
    whole = ok_type and float(value).is_integer()
    bounds = []
    if minimum is not None:
        bounds.append(f">= {minimum}")
    if maximum is not None:
        bounds.append(f"<= {maximum}")
    allowed = "a whole number" + (" " + " and ".join(bounds) if bounds else "")
    require(whole, f"{name}={value!r} is not allowed; expected {allowed}")
    value = int(value)
    require(minimum is None or value >= minimum, f"{name}={value} is not allowed; expected {allowed}")
    require(maximum is None or value <= maximum, f"{name}={value} is not allowed; expected {allowed}")
    return value


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a finite float > 0 (or >= 0)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    ok = ok and value == value and abs(value) != float("inf")
    ok = ok and (value >= 0 if allow_zero else value > 0)
    bound = ">= 0" if allow_zero else "> 0"
    require(ok, f"{name}={value!r} is not allowed; expected a finite number {bound}")
    return float(value)


SEED_MAX = 2**63 - 1  # the store keeps seeds as DuckDB BIGINT


def check_seed(value: Any) -> int:
    """A run seed: a whole number 0 <= seed < 2^63 (what the results store can hold)."""
    return check_int("seed", value, minimum=0, maximum=SEED_MAX)


def check_sweeps(settings: Any, spec_fields: tuple[str, ...] = ("hidden",)) -> None:
    """Every tuple field of an experiment's settings dataclass is a sweep (tasks, widths, methods, ...),
    and a sweep over nothing measures nothing: refuse an empty one. ``spec_fields`` are tuples that
    describe a network instead (``hidden=()`` is a perceptron)."""
    import dataclasses

    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if isinstance(value, tuple) and not value and field.name not in spec_fields:
            raise NNBiasError(f"{field.name}=() is not allowed; expected at least one value")


def check_device(device: str) -> str:
    """``cpu``, or ``cuda`` where a CUDA GPU is visible: where an experiment's tensors are computed."""
    import torch

    check_choice("device", device, ("cpu", "cuda"))
    if device == "cuda" and not torch.cuda.is_available():
        raise NNBiasError("device='cuda' is not allowed here: no CUDA GPU is visible; use 'cpu'")
    return device
