"""One migration history for SQLite and PostgreSQL: a first start creates the schema,
``serve`` refuses a schema an older version made and names the command that upgrades it,
and ``flywheel db upgrade`` does."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from alembic import command

from flywheel.db.engine import _alembic_config, make_engine
from tests.support.postgres import PostgresServer
from tests.support.server import FLYWHEEL, FlywheelServer, clean_env, free_port, run_cli


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'meta.db'}"
    postgres: PostgresServer = request.getfixturevalue("postgres")
    return postgres.create_database()


def test_serve_refuses_an_old_schema_until_db_upgrade(database_url: str,
                                                      tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = run_cli(data, "db", "upgrade", "--database-url", database_url)
    assert "from revision none to" in first.stdout
    engine = make_engine(database_url)
    with engine.begin() as conn:
        command.downgrade(_alembic_config(conn), "0005")
    engine.dispose()

    refused = subprocess.run([FLYWHEEL, "serve", "--data-dir", str(data), "--database-url",
                              database_url, "--listen", f"127.0.0.1:{free_port()}",
                              "--grpc-listen", f"127.0.0.1:{free_port()}"],
                             capture_output=True, text=True, env=clean_env(), timeout=120)
    assert refused.returncode == 1
    said = " ".join(refused.stderr.split())
    assert "schema is at revision 0005" in said and "run `flywheel db upgrade`" in said

    upgraded = run_cli(data, "db", "upgrade", "--database-url", database_url)
    assert "from revision 0005 to" in upgraded.stdout
    assert "schema is current" in run_cli(data, "db", "upgrade", "--database-url",
                                          database_url).stdout
    srv = FlywheelServer(data, workers=1,
                         extra_args=["--database-url", database_url]).start()
    srv.stop()


def test_db_upgrade_on_an_unreachable_database_says_so(tmp_path: Path) -> None:
    proc = run_cli(tmp_path / "data", "db", "upgrade", "--database-url",
                   "postgresql://nobody@127.0.0.1:9/none", check=False)
    assert proc.returncode == 1
    assert "cannot reach the database" in proc.stderr
