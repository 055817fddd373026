"""The pages' templates (Jinja2, autoescaped) and the filters that format figures."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2 import Environment

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def size(value: int | None) -> str:
    if value is None:
        return "—"
    amount = float(value)
    for unit in _UNITS:
        if amount < 1024 or unit == _UNITS[-1]:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 and seconds != s else f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def when(epoch: int | None) -> str:
    if epoch is None:
        return "—"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def perms(claims: dict[str, Any]) -> str:
    """A token's permissions as ``glob:bits`` (``main:r,w``), admin marked."""
    caches = (claims.get("https://jwt.attic.rs/v1") or {}).get("caches") or {}
    parts = [f"{glob}:{','.join(sorted(bits))}" for glob, bits in caches.items()]
    if (claims.get("https://flywheel.gloriousflywheel.dev/v1") or {}).get("admin"):
        parts.insert(0, "admin")
    return " ".join(parts) or "none"


def hit_chart(series: list[Any]) -> dict[str, Any] | None:
    """Bars of the hit rate per interval, 100 px for 100 %."""
    if not series:
        return None
    bars = []
    for i, point in enumerate(series):
        lookups = point.hits + point.misses
        rate = point.hits / lookups if lookups else 0.0
        bars.append({"x": 4 + i * 22, "h": round(rate * 100),
                     "label": f"{when(point.at)}: {rate:.0%} of {lookups} lookups"})
    return {"bars": bars, "width": max(200, 8 + len(series) * 22),
            "first": when(series[0].at)[11:16], "last": when(series[-1].at)[11:16]}


def environment() -> Environment:
    # Imported here: Jinja2 costs each server process ~1 MiB that only the pages need.
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("flywheel.operator", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(size=size, pct=pct, duration=duration, when=when, perms=perms,
                       hit_chart=hit_chart)
    return env


class Templates:
    """The templates, rendered with one environment built on the first render."""

    def __init__(self) -> None:
        self._env: Environment | None = None

    def render(self, template: str, **context: Any) -> str:
        if self._env is None:
            self._env = environment()
        return self._env.get_template(template).render(**context)
