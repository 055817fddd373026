"""Real servers for the scale-out tests, started once per session: PostgreSQL and SeaweedFS."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess

import obstore
import pytest
from obstore.store import S3Store

from tests.support.postgres import PostgresServer
from tests.support.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedServer
from tests.support.server import FlywheelServer, run_cli


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path_factory.mktemp("postgres")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed")).start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Backends:
    """One PostgreSQL database and one bucket, as every replica of a cluster sees them."""

    database_url: str
    bucket: str
    seaweed: SeaweedServer
    config: Path

    @classmethod
    def make(cls, postgres: PostgresServer, seaweed: SeaweedServer, root: Path,
             **extra: dict[str, str]) -> Backends:
        root.mkdir(parents=True, exist_ok=True)
        credentials = root / "s3-credentials"
        credentials.write_text(f"[default]\naws_access_key_id = {ACCESS_KEY}\n"
                               f"aws_secret_access_key = {SECRET_KEY}\n")
        credentials.chmod(0o600)
        url, bucket = postgres.create_database(), seaweed.new_bucket_name()
        sections = {"storage": {"url": f"s3://{bucket}/flywheel",
                                "endpoint": seaweed.endpoint, "region": "us-east-1",
                                "credentials-file": str(credentials)}}
        for name, values in extra.items():
            sections.setdefault(name, {}).update(values)
        lines = [f'database-url = "{url}"']
        for name, values in sections.items():
            lines.append(f"[{name}]")
            lines += [f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}"
                      for k, v in values.items()]
        config = root / "flywheel.toml"
        config.write_text("\n".join(lines) + "\n")
        return cls(url, bucket, seaweed, config)

    @property
    def store(self) -> S3Store:
        """The bucket itself, as someone acting behind the servers' back sees it."""
        return S3Store(self.bucket, prefix="flywheel", endpoint=self.seaweed.endpoint,
                       region="us-east-1", access_key_id=ACCESS_KEY,
                       secret_access_key=SECRET_KEY, virtual_hosted_style_request=False,
                       client_options={"allow_http": True})

    def keys(self, prefix: str = "") -> list[str]:
        return sorted(m["path"] for batch in obstore.list(self.store, prefix=prefix or None)
                      for m in batch)

    def replica(self, data_dir: Path, *args: str) -> FlywheelServer:
        return FlywheelServer(data_dir, workers=1,
                              extra_args=["--config", str(self.config), *args])

    def cli(self, data_dir: Path, *args: str, check: bool = True) -> CompletedProcess[str]:
        return run_cli(data_dir, *args, "--config", str(self.config), check=check)
