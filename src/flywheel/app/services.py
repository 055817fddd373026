"""Everything a process needs, built once from the settings."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from flywheel.app.settings import Settings
from flywheel.auth.permissions import Grants
from flywheel.auth.registry import TokenRegistry
from flywheel.auth.tokens import TokenClaims, TokenSigner, new_secret
from flywheel.cache.bazel.service import BazelService
from flywheel.cache.nix.paths import PathService
from flywheel.cache.tenancy import CacheService
from flywheel.db.engine import make_engine, migrate
from flywheel.db.hot import HotReads
from flywheel.storage.local import LocalBlobStore

log = logging.getLogger(__name__)

TOKEN_SECRET_FILE = "token-secret"


def write_private_file(path: Path, content: str) -> None:
    """Create a file only its owner can read, atomically, never widening an existing one."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _load_or_create_secret(data_dir: Path) -> str:
    path = data_dir / TOKEN_SECRET_FILE
    if not path.exists():
        write_private_file(path, new_secret() + "\n")
        log.info("created the token-signing secret in %s", path)
    return path.read_text().strip()


@dataclass
class Services:
    settings: Settings
    engine: Engine
    blobs: LocalBlobStore
    caches: CacheService
    paths: PathService
    bazel: BazelService
    tokens: TokenRegistry
    signer: TokenSigner

    @classmethod
    def open(cls, settings: Settings, *, migrate_schema: bool = True) -> Services:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url)
        if migrate_schema:
            migrate(engine)
        blobs = LocalBlobStore(settings.data_dir.absolute())
        reads = HotReads(engine)
        host = settings.base_url.split("://", 1)[1].split("/", 1)[0].split(":")[0]
        local = host in ("127.0.0.1", "localhost", "[::1]")
        key_prefix = socket.gethostname() if local else host
        return cls(settings=settings, engine=engine, blobs=blobs,
                   caches=CacheService(engine, reads, key_prefix),
                   paths=PathService(engine, reads, blobs, settings.max_nar_size),
                   bazel=BazelService(engine, reads, blobs, settings.bazel_max_size),
                   tokens=TokenRegistry(engine, reads),
                   signer=TokenSigner(_load_or_create_secret(settings.data_dir)))

    def issue_token(self, sub: str, grants: Grants,
                    validity_seconds: int | None) -> tuple[str, TokenClaims]:
        """Mint a token and record it, so it can be listed and revoked by id."""
        token, claims = self.signer.mint(sub, grants, validity_seconds)
        self.tokens.record(claims)
        return token, claims

    def close(self) -> None:
        self.engine.dispose()
