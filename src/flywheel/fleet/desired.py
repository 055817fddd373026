"""The desired objects of a fleet: the spec rendered with its caches' keys and the
schedules' minRunners at one instant, every object validated. Either all of them, or an
error listing what is wrong and where."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from flywheel.errors import Invalid
from flywheel.fleet.keys import CacheLookupError, resolve_keys
from flywheel.fleet.loader import LoadedSpec, line_of
from flywheel.fleet.render import Object, render
from flywheel.fleet.schedule import min_runners_at
from flywheel.fleet.spec import Pool
from flywheel.fleet.validate import Validator


class RenderError(Invalid):
    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def keys_for(spec: LoadedSpec, *, server_url: str | None, token: str | None) -> dict[str, str]:
    try:
        return resolve_keys(spec.fleet, server_url=server_url, token=token)
    except CacheLookupError as e:
        line = line_of(spec.document, ("cacheServer",))
        raise RenderError([f"{spec.path}:{line}: cacheServer: {e}"]) from None


def min_runners(at: datetime | None) -> Callable[[Pool], int] | None:
    """Each pool's minRunners at ``at`` (its schedules'), or its own minRunners without one."""
    if at is None:
        return None
    return lambda pool: min_runners_at(pool, at).min_runners


def desired(spec: LoadedSpec, keys: dict[str, str], validator: Validator,
            at: datetime | None = None) -> list[Object]:
    objects = render(spec.fleet, keys, min_runners(at))
    found = validator.all_problems(objects)
    if found:
        raise RenderError(found)
    return objects
