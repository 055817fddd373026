"""A figure with where it came from, or why that source could not be read: pages show the
error, never a zero or a made-up value in its place."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from flywheel.errors import FlywheelError
from flywheel.fleet.kube import KubeError
from flywheel.fleet.loader import SpecError
from flywheel.operator.forges.base import ForgeError

log = logging.getLogger(__name__)
T = TypeVar("T")

# What a source that cannot be read raises; anything else is a fault of ours and propagates.
UNREACHABLE: tuple[type[Exception], ...] = (KubeError, ForgeError, SpecError, FlywheelError,
                                            OSError)


@dataclass(frozen=True)
class Sourced(Generic[T]):
    source: str
    value: T | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def fetch(source: str, read: Callable[[], T]) -> Sourced[T]:
    try:
        return Sourced(source, read())
    except UNREACHABLE as e:
        message = e.message if isinstance(e, FlywheelError) else str(e) or type(e).__name__
        log.info("source %s unreachable: %s", source, message)
        return Sourced(source, error=message)
