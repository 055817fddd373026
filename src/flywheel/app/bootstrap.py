"""What the first start of a server creates, and what later starts reuse."""

from __future__ import annotations

import logging
from pathlib import Path

from flywheel.app.secrets import write_private_file
from flywheel.app.services import Services
from flywheel.auth.permissions import CachePermission, Grants
from flywheel.errors import Conflict

log = logging.getLogger(__name__)

DEFAULT_CACHE = "main"
ADMIN_TOKEN_FILE = "admin-token"
ALL = CachePermission(r=True, w=True, d=True, cc=True, cr=True, cq=True, cd=True)


def admin_token_path(data_dir: Path) -> Path:
    return data_dir / ADMIN_TOKEN_FILE


def first_start(services: Services) -> None:
    if not services.caches.list():
        try:
            cache = services.caches.create(DEFAULT_CACHE, is_public=True)
            log.info("created public cache %r with key %s", cache.name, cache.public_key)
        except Conflict:
            pass  # another replica starting on the same database created it first
    path = admin_token_path(services.settings.data_dir)
    if not path.exists():
        token, _ = services.issue_token("admin", Grants((("*", ALL),), admin=True), None)
        write_private_file(path, token + "\n")
        log.info("wrote the admin token to %s (mode 0600)", path.absolute())
    else:
        log.info("admin token: %s", path.absolute())
