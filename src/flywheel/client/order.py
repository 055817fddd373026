"""References before referrers.

A substituter that finds a path on the server will fetch its references next; uploading
in dependency order means the server never lists a path whose closure it lacks, even if
the push stops half-way (and a resumed push then has nothing to repair)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class CycleError(ValueError):
    pass


@dataclass
class Graph:
    """References among a set of paths; references outside the set are ignored (they are
    on the server already, or deliberately left to an upstream cache)."""

    refs: dict[str, set[str]] = field(default_factory=dict)
    referrers: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, references: Mapping[str, Iterable[str]]) -> Graph:
        graph = cls({p: set() for p in references}, {p: set() for p in references})
        for path, refs in references.items():
            for ref in refs:
                # Self-references are normal (a binary naming its own prefix).
                if ref != path and ref in graph.refs:
                    graph.refs[path].add(ref)
                    graph.referrers[ref].add(path)
        return graph

    def order(self) -> list[str]:
        """Kahn's algorithm; ties broken by path so the order is reproducible."""
        waiting = {p: len(r) for p, r in self.refs.items()}
        ready = [p for p, n in waiting.items() if n == 0]
        heapq.heapify(ready)
        out: list[str] = []
        while ready:
            path = heapq.heappop(ready)
            out.append(path)
            for referrer in self.referrers[path]:
                waiting[referrer] -= 1
                if waiting[referrer] == 0:
                    heapq.heappush(ready, referrer)
        if len(out) != len(self.refs):
            stuck = sorted(p for p, n in waiting.items() if n > 0)
            raise CycleError(f"reference cycle among {len(stuck)} paths, e.g. {stuck[0]}")
        return out

    def dependents(self, path: str) -> set[str]:
        """Every path that needs ``path``, directly or not."""
        seen: set[str] = set()
        todo = [path]
        while todo:
            for referrer in self.referrers[todo.pop()]:
                if referrer not in seen:
                    seen.add(referrer)
                    todo.append(referrer)
        return seen


def topological(references: Mapping[str, Iterable[str]]) -> list[str]:
    return Graph.build(references).order()
