"""What each server process imports. Every HTTP worker and the gRPC process hold what they
import for their whole life, so the operator plane's and the fleet's libraries (Kubernetes
client, WebAuthn, schema validators, templates, round-trip YAML, forge clients) must wait
for a request that needs them; and HTTP workers never load gRPC."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

OPERATOR_LIBRARIES = ("lightkube", "webauthn", "kubernetes_validate", "jsonschema", "jinja2",
                      "ruamel", "githubkit", "gitlab")
GRPC = ("grpc", "grpc_tools")

# Prints, after each step, the watched top-level packages sys.modules holds by then.
PROBE = """
import json, sys
from pathlib import Path

WATCHED = set(sys.argv[2].split(","))
found = {}

def step(name):
    found[name] = sorted({m.split(".")[0] for m in sys.modules} & WATCHED)

%s
print(json.dumps(found))
"""

HTTP_WORKER = """
import flywheel.server.app
step("import flywheel.server.app")
from flywheel.app.services import Services
from flywheel.app.settings import Settings
services = Services.open(Settings(data_dir=Path(sys.argv[1])))
step("Services.open")
flywheel.server.app.FlywheelApp(services)
step("FlywheelApp")
services.close()
"""

GRPC_PROCESS = """
import flywheel.server.grpc.server
step("import flywheel.server.grpc.server")
from flywheel.app.services import Services
from flywheel.app.settings import Settings
services = Services.open(Settings(data_dir=Path(sys.argv[1])))
step("Services.open")
flywheel.server.grpc.server.build_server(services)
step("build_server")
services.close()
"""


def _imported(steps: str, data_dir: Path, watched: tuple[str, ...]) -> dict[str, list[str]]:
    proc = subprocess.run([sys.executable, "-c", PROBE % steps, str(data_dir),
                           ",".join(watched)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    found: dict[str, list[str]] = json.loads(proc.stdout.splitlines()[-1])
    return found


def test_http_workers_load_neither_the_operator_libraries_nor_grpc(tmp_path: Path) -> None:
    found = _imported(HTTP_WORKER, tmp_path / "data", OPERATOR_LIBRARIES + GRPC)
    assert found == {"import flywheel.server.app": [], "Services.open": [],
                     "FlywheelApp": []}


def test_the_grpc_process_loads_no_operator_library(tmp_path: Path) -> None:
    found = _imported(GRPC_PROCESS, tmp_path / "data", OPERATOR_LIBRARIES)
    assert found == {"import flywheel.server.grpc.server": [], "Services.open": [],
                     "build_server": []}
