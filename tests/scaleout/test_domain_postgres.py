"""The cache plane's domain tests (tests/unit/cache), run again with their metadata in
PostgreSQL: the same assertions must hold without SQLite's global write lock."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.support import cacheworld
from tests.support.cacheworld import World
from tests.support.postgres import PostgresServer

_DOMAIN_TESTS = Path(__file__).parent.parent / "unit" / "cache"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_on_postgres_{name}",
                                                  _DOMAIN_TESTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


for _module in (_load("test_bazel_cas"), _load("test_nix_paths")):
    globals().update({name: getattr(_module, name) for name in dir(_module)
                      if name.startswith("test_")})


@pytest.fixture(autouse=True)
def _on_postgres(postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cacheworld, "database_for", lambda _root: postgres.create_database())


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()
