"""What the server reads of a state body: its serial and lineage when it is a JSON state.
Anything else (a client-encrypted OpenTofu state) is stored as opaque bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass

MAX_LINEAGE_CHARS = 255


@dataclass(frozen=True)
class Lineage:
    serial: int | None
    lineage: str | None


OPAQUE = Lineage(None, None)


def read_lineage(body: bytes) -> Lineage:
    # A body that is not a JSON object (client-side encrypted, say) is not parsed at all.
    if body.lstrip()[:1] != b"{":
        return OPAQUE
    try:
        state = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return OPAQUE
    if not isinstance(state, dict):
        return OPAQUE
    serial, lineage = state.get("serial"), state.get("lineage")
    return Lineage(
        serial if type(serial) is int and 0 <= serial < 1 << 63 else None,
        lineage if isinstance(lineage, str) and 0 < len(lineage) <= MAX_LINEAGE_CHARS
        else None)
