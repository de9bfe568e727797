"""What experiments share about their inputs: named tasks and the small/paper scale presets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from nnbias.errors import require
from nnbias.tasks.datasets import Dataset

Settings = TypeVar("Settings")


def check_task(tasks: dict[str, Callable[[int], Dataset]], name: str) -> str:
    """``name`` if the experiment's registry has it, else one line saying which names exist."""
    require(name in tasks, f"task={name!r} is not allowed; choose one of {sorted(tasks)}")
    return name


def named_task(tasks: dict[str, Callable[[int], Dataset]], name: str, seed: int) -> Dataset:
    """Build task ``name`` of an experiment's registry."""
    return tasks[check_task(tasks, name)](seed)


def scaled_settings(cls: Callable[..., Settings], paper: dict[str, Any], scale: str,
                    overrides: dict[str, Any]) -> Settings:
    """Settings at ``small`` (the class defaults, what ``reproduce`` runs) or ``paper`` scale;
    options given explicitly (not None) win over either."""
    require(scale in ("small", "paper"), f"scale={scale!r} is not allowed; choose small or paper")
    base = paper if scale == "paper" else {}
    return cls(**{**base, **{k: v for k, v in overrides.items() if v is not None}})
