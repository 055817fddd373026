"""The fake API server as tests run it: its own process, started as a user would
(``python -m tests.fakes.kube``), and a lightkube client on its kubeconfig for the test's
own moves (what ARC's controller or an operator would do)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from lightkube import Client, KubeConfig
from lightkube.codecs import from_dict, resource_registry
from lightkube.generic_resource import create_namespaced_resource
from lightkube.types import PatchType

REPO = Path(__file__).resolve().parents[3]
for _kind, _plural in (("AutoscalingRunnerSet", "autoscalingrunnersets"),
                       ("EphemeralRunnerSet", "ephemeralrunnersets"),
                       ("EphemeralRunner", "ephemeralrunners")):
    create_namespaced_resource("actions.github.com", "v1alpha1", _kind, _plural)


class FakeCluster:
    def __init__(self, workdir: Path, crds: Path | None) -> None:
        self.kubeconfig = workdir / "kubeconfig"
        self.log = workdir / "fake-kube.log"
        self.crds = crds
        self.proc: subprocess.Popen[bytes] | None = None
        self._client: Client | None = None

    def start(self) -> FakeCluster:
        args = [sys.executable, "-m", "tests.fakes.kube", "--listen", "127.0.0.1:0",
                "--kubeconfig", str(self.kubeconfig)]
        if self.crds is not None:
            args += ["--crds", str(self.crds)]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not (self.kubeconfig.exists() and "on https://" in self.log.read_text()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the fake API server did not start:\n"
                                     f"{self.log.read_text()}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def __enter__(self) -> FakeCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(KubeConfig.from_file(self.kubeconfig))
        return self._client

    # -- moves of other actors --

    @staticmethod
    def _type(api_version: str, kind: str) -> Any:
        return resource_registry.load(api_version, kind)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None
            ) -> dict[str, Any] | None:
        from lightkube import ApiError

        try:
            return dict(self.client.get(self._type(api_version, kind), name,
                                        namespace=namespace).to_dict())
        except ApiError as e:
            if e.status.code == 404:
                return None
            raise

    def create(self, obj: dict[str, Any]) -> None:
        self.client.create(from_dict(obj), field_manager="test")

    def patch(self, api_version: str, kind: str, name: str, namespace: str | None,
              patch: dict[str, Any], manager: str = "kubectl-edit",
              status: bool = False) -> None:
        res = self._type(api_version, kind)
        if status:
            res = res.Status
        self.client.patch(res, name, patch, namespace=namespace, field_manager=manager,
                          patch_type=PatchType.MERGE)
