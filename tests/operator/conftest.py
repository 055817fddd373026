"""One operator plane for the package's tests: a real ``flywheel serve`` configured with
roles, a fake GitHub holding the fleet spec (and answering as GitHub documents), the fake
Kubernetes API with the fleet applied and ARC's runners in it, and a ``tailscale serve``
stand-in in front for browser sign-in."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lightkube.generic_resource import create_namespaced_resource

from tests.fakes.github.server import FakeGitHub, running
from tests.fakes.kube.process import FakeCluster
from tests.fleet.conftest import ARC, EXAMPLE
from tests.operator.tailnet_proxy import PROXY_ADDRESS, Tailnet, tailnet_front
from tests.support.server import FLYWHEEL, FlywheelServer, clean_env

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "test-artifacts" / "operator"
WEBHOOK_SECRET = "it-is-a-secret-to-everybody"
ARC_API = "actions.github.com/v1alpha1"
NS = "arc-runners"
# The tests play ARC's controller, which makes listeners too.
create_namespaced_resource("actions.github.com", "v1alpha1", "AutoscalingListener",
                           "autoscalinglisteners")
ADMIN, OPERATOR, VIEWER, NOBODY = ("alice@example.com", "olivia@example.com",
                                   "victor@example.com", "nobody@example.com")


@dataclass
class Plane:
    srv: FlywheelServer
    github: FakeGitHub
    cluster: FakeCluster
    tailnet: Tailnet
    tokens: dict[str, str]     # role (or "nobody") -> a token mapped to it in [auth]
    workdir: Path

    @property
    def url(self) -> str:
        return self.srv.url

    def api(self, role: str | None) -> httpx.Client:
        """A client calling with the token of ``role`` (None: anonymous)."""
        headers = {"authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def person(self, login: str | None, name: str | None = None) -> httpx.Client:
        """A client coming through the trusted proxy's address with tailnet identity
        headers, as ``tailscale serve`` sends them."""
        headers = {"tailscale-user-login": login, "tailscale-user-name": name or login} \
            if login else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60,
                            transport=httpx.HTTPTransport(local_address=PROXY_ADDRESS))


def _app_key(workdir: Path) -> tuple[Path, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = workdir / "github-app.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return path, public.decode()


def _config(workdir: Path, github: FakeGitHub, cluster: FakeCluster, public_url: str,
            app_key: Path) -> Path:
    secret = workdir / "webhook-secret"
    secret.write_text(WEBHOOK_SECRET + "\n")
    config = workdir / "flywheel.toml"
    config.write_text(f'''
public-url = "{public_url}"

[auth]
trusted-proxies = ["{PROXY_ADDRESS}"]
admins = ["tailnet:{ADMIN}"]
operators = ["tailnet:{OPERATOR}", "token:ops-bot"]
viewers = ["tailnet:{VIEWER}", "token:viewer-bot", "github-team:acme/sre"]

[ui]
changes = "gitops"
pending-threshold = "1s"
lock-alert = "1s"
kubeconfig = "{cluster.kubeconfig}"

[forge]
kind = "github"
url = "{github.url}"
repository = "{github.owner}/{github.repo}"
spec-path = "fleet.yaml"
branch = "main"
app-id = {github.app_id}
app-key-file = "{app_key}"
installation-id = {github.installation_id}
webhook-secret-file = "{secret}"
''')
    return config


def _runners(cluster: FakeCluster) -> None:
    """What ARC's controller and the kubelet would have made: runners busy, idle, failed
    five times, and pending on an image that cannot be pulled; a listener per scale set."""
    labels = {"actions.github.com/scale-set-name": "nix",
              "actions.github.com/scale-set-namespace": NS}
    cluster.patch(ARC_API, "AutoscalingRunnerSet", "nix", NS,
                  {"status": {"currentRunners": 4}}, manager="arc-controller", status=True)
    cluster.create({"apiVersion": ARC_API, "kind": "EphemeralRunnerSet",
                    "metadata": {"name": "nix-7xk2p", "namespace": NS, "labels": labels},
                    "spec": {"replicas": 4, "patchID": 0}})
    runners: dict[str, tuple[str, dict[str, Any]]] = {
        "nix-7xk2p-busy": ("Running", {"jobRepositoryName": "acme/web",
                                       "jobDisplayName": "build (linux)"}),
        "nix-7xk2p-idle": ("Running", {}),
        "nix-7xk2p-failed": ("Failed", {"message": "Pod has failed to start more than 5 times",
                                        "failures": {str(i): f"2025-03-03T0{i}:00:00Z"
                                                     for i in range(5)}}),
        "nix-7xk2p-pull": ("Pending", {})}
    for name, (phase, extra) in runners.items():
        cluster.create({"apiVersion": ARC_API, "kind": "EphemeralRunner",
                        "metadata": {"name": name, "namespace": NS, "labels": labels,
                                     "creationTimestamp": "2025-03-03T08:00:00Z"},
                        "spec": {"githubConfigUrl": "https://github.com/acme",
                                 "githubConfigSecret": "github-app", "runnerScaleSetId": 1}})
        cluster.patch(ARC_API, "EphemeralRunner", name, NS, {"status": {"phase": phase,
                                                                       **extra}},
                      manager="arc-controller", status=True)
    for name in ("nix-7xk2p-busy", "nix-7xk2p-idle", "nix-7xk2p-pull"):
        state = {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}} \
            if name.endswith("pull") else {"running": {}}
        cluster.create({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": name, "namespace": NS},
                        "spec": {"containers": [{"name": "runner", "image": "x"}]}})
        cluster.patch("v1", "Pod", name, NS, {"status": {"containerStatuses": [
            {"name": "runner", "state": state, "ready": False, "restartCount": 0,
             "image": "x", "imageID": ""}]}}, manager="kubelet", status=True)
    cluster.create({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": "arc-systems"}})
    cluster.create({"apiVersion": ARC_API, "kind": "AutoscalingListener",
                    "metadata": {"name": "nix-754b578d-listener", "namespace": "arc-systems",
                                 "labels": labels},
                    "spec": {"autoscalingRunnerSetName": "nix",
                             "autoscalingRunnerSetNamespace": NS,
                             "ephemeralRunnerSetName": "nix-7xk2p", "maxRunners": 20,
                             "minRunners": 1, "image": "ghcr.io/actions/gha-runner-scale-set-"
                             "controller:0.14.2", "runnerScaleSetId": 1,
                             "githubConfigUrl": "https://github.com/acme",
                             "githubConfigSecret": "github-app"}})


def apply_example(cluster: FakeCluster, *args: str) -> None:
    """``flywheel fleet apply`` of the example spec, as the fleet's operators run it."""
    applied = subprocess.run(
        [FLYWHEEL, "fleet", "apply", str(EXAMPLE), "--kubeconfig", str(cluster.kubeconfig),
         "--at", "2025-03-03T22:00:00+01:00", *args], capture_output=True, text=True,
        env=clean_env(), timeout=300)
    assert applied.returncode == 0, applied.stderr


@pytest.fixture(scope="session")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    if not (ARC / "actions.github.com_autoscalingrunnersets.yaml").is_file():
        pytest.fail(f"the ARC reference data is missing: {ARC}")
    workdir = tmp_path_factory.mktemp("operator")
    app_key, public = _app_key(workdir)
    github = FakeGitHub(app_public_key=public)
    github.commit("main", {"fleet.yaml": EXAMPLE.read_text()})
    github.teams[("acme", "sre")] = {"octocat"}
    with running(github), FakeCluster(workdir, ARC) as cluster:
        apply_example(cluster)
        _runners(cluster)
        srv = FlywheelServer(workdir / "data", workers=2)
        with tailnet_front(Tailnet(srv.port, ADMIN, "Alice Müller")) as tailnet:
            config = _config(workdir, github, cluster, tailnet.url, app_key)
            srv.extra_args = ["--config", str(config)]
            srv.start()
            try:
                for cache in ("team-x", "ci"):
                    srv.cli("cache", "create", cache, "--private", "--config", str(config))
                # Roles come from [auth] (token:SUB); the cache grant is only what a
                # token must carry.
                tokens = {"admin": srv.admin_token, **{
                    role: srv.mint(sub, "--pull", "main", "--config", str(config))
                    for role, sub in (("operator", "ops-bot"), ("viewer", "viewer-bot"),
                                      ("nobody", "nobody-bot"))}}
                yield Plane(srv, github, cluster, tailnet, tokens, workdir)
            finally:
                srv.stop()
    assert not github.mismatches, github.mismatches


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def chromium_args() -> list[str]:
    args = ["--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run"]
    return ["--no-sandbox", *args] if os.geteuid() == 0 else args
