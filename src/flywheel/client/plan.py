"""Deciding what a push uploads: the closure, minus what the cache already lists, minus
what an upstream cache serves; in dependency order."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Protocol

from flywheel.client.nixstore import PathInfo, hash_part
from flywheel.client.order import Graph


class Store(Protocol):
    def closure(self, paths: Iterable[str]) -> list[str]: ...
    def path_infos(self, paths: Iterable[str]) -> dict[str, PathInfo]: ...


class MissingQuery(Protocol):
    def missing_paths(self, cache: str, hash_parts: list[str]) -> set[str]: ...


@dataclass(frozen=True)
class PushPlan:
    cache: str
    uploads: dict[str, PathInfo]     # path -> info, for every path to upload
    order: list[str]                 # references before referrers
    graph: Graph
    present: int                     # already listed by the cache
    upstream: list[str]              # signed by an upstream cache's key: left to it

    @property
    def upload_bytes(self) -> int:
        return sum(i.nar_size for i in self.uploads.values())


def signed_by_upstream(info: PathInfo, key_names: Collection[str]) -> bool:
    # A signature is "<key name>:<base64>"; only the name says who vouches for the path.
    return any(sig.split(":", 1)[0] in key_names for sig in info.signatures)


def plan_push(server: MissingQuery, store: Store, cache: str, roots: Iterable[str], *,
              with_closure: bool = True, upstream_keys: Collection[str] = ()) -> PushPlan:
    paths = store.closure(roots) if with_closure else sorted(set(roots))
    by_hash = {hash_part(p): p for p in paths}
    # Ask the server first: path-info is only needed for what it lacks, which on a
    # re-push of a large closure is almost nothing.
    missing = server.missing_paths(cache, sorted(by_hash))
    todo = sorted(by_hash[h] for h in missing if h in by_hash)
    infos = store.path_infos(todo) if todo else {}
    upstream = {p for p, i in infos.items() if signed_by_upstream(i, upstream_keys)}
    uploads = {p: i for p, i in infos.items() if p not in upstream}
    graph = Graph.build({p: i.references for p, i in uploads.items()})
    return PushPlan(cache=cache, uploads=uploads, order=graph.order(), graph=graph,
                    present=len(paths) - len(todo), upstream=sorted(upstream))
