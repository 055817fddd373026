"""Alembic environment: the engine comes from the caller, never from an ini file."""

from alembic import context

from flywheel.db.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
