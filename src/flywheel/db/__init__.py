"""Metadata: schema, migrations and queries (SQLite by default, PostgreSQL at scale)."""
