"""Secrets every replica must hold the same, kept in the shared database.

With SQLite the database is one server's own, and such secrets stay in its data directory.
With a shared database, the first replica to start stores its secret here and every other
replica takes that one, so a token minted through one replica is accepted by all."""

from __future__ import annotations

from sqlalchemy import select

from flywheel.db.engine import Database, insert_ignore
from flywheel.db.schema import server_secrets


def is_shared(db: Database) -> bool:
    return db.dialect != "sqlite"


def shared_secret(db: Database, name: str, candidate: str) -> str:
    """The secret stored under ``name``; ``candidate`` becomes it if none is stored yet."""
    with db.write() as conn:
        conn.execute(insert_ignore(conn, server_secrets).values(name=name, value=candidate))
        return str(conn.execute(select(server_secrets.c.value)
                                .where(server_secrets.c.name == name)).scalar_one())
