"""State at rest is encrypted with the server's key: the database never holds the bytes in
the clear, the key file is private, a row moved to another version or read with another
key does not decrypt, and the key never reaches the log."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from flywheel.app.secrets import STATE_KEY_FILE
from flywheel.app.services import Services
from flywheel.app.settings import Settings
from flywheel.state.crypto import StateCipher, StateKeyError, new_key_text
from flywheel.state.schema import versions
from tests.state.conftest import state_body

SECRET = "s3cr3t-database-password"


@pytest.fixture
def services(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Services]:
    with caplog.at_level(logging.DEBUG):
        s = Services.open(Settings(data_dir=tmp_path / "data"))
    yield s
    s.close()


def test_state_is_stored_encrypted_under_a_private_key_file(
        services: Services, caplog: pytest.LogCaptureFixture) -> None:
    body = state_body(1, password=SECRET)
    services.state.write("prod-db", body, by="t", lock_id=None)
    with services.db.read() as conn:
        stored = conn.execute(select(versions.c.content)).scalar_one()
    assert SECRET.encode() not in stored and len(stored) > len(body)
    db_file = services.settings.data_dir / "flywheel.db"
    for path in db_file.parent.glob("flywheel.db*"):
        assert SECRET.encode() not in path.read_bytes()
    key_file = services.settings.data_dir / STATE_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    logged = "\n".join(r.getMessage() for r in caplog.get_records("setup"))
    assert key not in logged and STATE_KEY_FILE in logged
    assert services.state.current("prod-db").body == body  # type: ignore[union-attr]


def test_the_key_survives_a_restart(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = Services.open(settings)
    first.state.write("prod-a", state_body(1), by="t", lock_id=None)
    first.close()
    second = Services.open(settings)
    assert second.state.current("prod-a").body == state_body(1)  # type: ignore[union-attr]
    second.close()


def test_a_moved_row_or_another_key_does_not_decrypt(services: Services) -> None:
    services.state.write("prod-a", state_body(1), by="t", lock_id=None)
    services.state.write("prod-a", state_body(2), by="t", lock_id=None)
    with services.db.write() as conn:
        first = conn.execute(select(versions.c.content)
                             .where(versions.c.version == 1)).scalar_one()
        conn.execute(update(versions).where(versions.c.version == 2).values(content=first))
    with pytest.raises(StateKeyError, match="does not decrypt"):
        services.state.current("prod-a")
    sealed = StateCipher(new_key_text()).seal(b"x", "prod-a", 1)
    with pytest.raises(StateKeyError):
        StateCipher(new_key_text()).open(sealed, "prod-a", 1)
    with pytest.raises(StateKeyError, match="not base64"):
        StateCipher("%%%")
