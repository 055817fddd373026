"""The Kubernetes API as the fleet commands use it, through lightkube: a kubeconfig (and
context) or the in-cluster service account, discovery, get/list, server-side apply with a
field manager, delete. Objects go in and come out as plain dicts; failures become
:class:`KubeError` with the server's own message."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flywheel.errors import Conflict, Unavailable
from flywheel.fleet.crds import ARC_GROUP, ARC_VERSION, Crds, schemas_of

if TYPE_CHECKING:
    from lightkube import ApiError
    from lightkube.config.kubeconfig import SingleConfig
    from lightkube.core.resource_registry import ResourceRegistry

# lightkube is imported where a cluster is used: ~4 MiB per server process, for fleet work only.

Object = dict[str, Any]

ARC_KINDS = {"AutoscalingRunnerSet": "autoscalingrunnersets",
             "EphemeralRunnerSet": "ephemeralrunnersets",
             "EphemeralRunner": "ephemeralrunners"}
# Read, never rendered: ARC's controller makes them (the operator plane restarts them).
ARC_READ_KINDS = {"AutoscalingListener": "autoscalinglisteners"}

IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
_REGISTERING = threading.Lock()


class KubeError(Unavailable):
    """The Kubernetes API could not be reached, or refused a call."""

    def __init__(self, message: str, *, status: int | None = None,
                 conflicts: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.conflicts = conflicts or []


class KubeConflict(KubeError, Conflict):
    """Another field manager owns fields this apply would change."""


@dataclass(frozen=True)
class Ref:
    api_version: str
    kind: str
    namespace: str | None
    name: str

    @classmethod
    def of(cls, obj: Object) -> Ref:
        meta = obj["metadata"]
        return cls(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


@functools.cache
def _registry() -> ResourceRegistry:
    """lightkube's resource registry with ARC's kinds in it, registered on first use."""
    from lightkube.codecs import resource_registry
    from lightkube.generic_resource import create_namespaced_resource

    with _REGISTERING:   # two threads registering one kind at once: the second is refused
        for kind, plural in (ARC_KINDS | ARC_READ_KINDS).items():
            create_namespaced_resource(ARC_GROUP, ARC_VERSION, kind, plural)
    return resource_registry


def load_config(kubeconfig: Path | None, context: str | None) -> SingleConfig:
    """The flag, else $KUBECONFIG, else ~/.kube/config, else the pod's service account."""
    from lightkube import ConfigError, KubeConfig

    try:
        path = kubeconfig or (Path(os.environ["KUBECONFIG"].split(os.pathsep)[0])
                              if os.environ.get("KUBECONFIG") else Path.home() / ".kube/config")
        if kubeconfig is None and not path.exists() and IN_CLUSTER_TOKEN.exists():
            config = KubeConfig.from_service_account().get(context)
        else:
            config = KubeConfig.from_file(path).get(context)
    except (ConfigError, OSError) as e:
        raise KubeError(f"no usable Kubernetes configuration: {e}") from None
    if config is None:
        raise KubeError("the kubeconfig names no context; give --context")
    return config


def _resource(api_version: str, kind: str) -> Any:
    # Any: lightkube's overloads pick on the class, which is only known at run time here.
    return _registry().load(api_version, kind)


def _plain(obj: Any) -> Object:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def _error(e: ApiError) -> KubeError:
    body = e.response.json() if e.response is not None else {}
    causes = (body.get("details") or {}).get("causes") or []
    fields = [c["field"] for c in causes if c.get("reason") == "FieldManagerConflict"]
    error = KubeConflict if body.get("code") == 409 else KubeError
    return error(str(body.get("message") or e), status=body.get("code"), conflicts=fields)


class Cluster:
    def __init__(self, config: SingleConfig) -> None:
        import httpx2
        from lightkube import Client
        from lightkube.config.client_adapter import Client as RawClient
        from lightkube.config.client_adapter import ConnectionParams

        _registry()    # ARC's kinds known before any object goes in or comes out
        self.config = config
        self.url = config.cluster.server
        params = ConnectionParams(timeout=httpx2.Timeout(20.0))
        self._client = Client(config, timeout=params.timeout)
        self._raw = RawClient(config, params)

    @classmethod
    def connect(cls, kubeconfig: Path | None = None, context: str | None = None) -> Cluster:
        return cls(load_config(kubeconfig, context))

    def close(self) -> None:
        self._client.close()
        self._raw.close()

    @contextmanager
    def _calls(self) -> Iterator[None]:
        import httpx2
        from lightkube import ApiError

        try:
            yield
        except ApiError as e:
            raise _error(e) from None
        except httpx2.TransportError as e:
            raise KubeError(f"cannot reach the Kubernetes API at {self.url}: "
                            f"{e or type(e).__name__}") from None

    def _get_json(self, path: str) -> Object | None:
        with self._calls():
            response = self._raw.get(path)
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise KubeError(f"{self.url}{path}: {response.json().get('message', response.text)}",
                            status=response.status_code)
        body: Object = response.json()
        return body

    def check_arc(self) -> None:
        """Discovery: is ARC's API served here at all?"""
        found = self._get_json(f"/apis/{ARC_GROUP}/{ARC_VERSION}")
        names = {r.get("name") for r in (found or {}).get("resources", [])}
        if "autoscalingrunnersets" not in names:
            raise KubeError(f"{self.url} does not serve {ARC_GROUP}/{ARC_VERSION} "
                            "autoscalingrunnersets: install the gha-runner-scale-set-controller "
                            "chart (ARC) first")

    def crds(self) -> Crds:
        """The ARC CRDs this cluster has, to validate against exactly what it serves."""
        documents = []
        for plural in ARC_KINDS.values():
            crd = self._get_json("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                                 f"{plural}.{ARC_GROUP}")
            if crd is not None:
                documents.append(crd)
        return Crds(schemas_of(documents), f"the cluster at {self.url}")

    def get(self, ref: Ref) -> Object | None:
        from lightkube import ApiError

        with self._calls():
            try:
                return _plain(self._client.get(_resource(ref.api_version, ref.kind), ref.name,
                                               namespace=ref.namespace))
            except ApiError as e:
                if e.status.code == 404:
                    return None
                raise

    def list(self, api_version: str, kind: str, *, namespace: str | None = None,
             labels: dict[str, str] | None = None) -> list[Object]:
        from lightkube.core.resource import NamespacedResource

        resource = _resource(api_version, kind)
        selector: dict[str, Any] = dict(labels or {})
        with self._calls():
            if issubclass(resource, NamespacedResource):
                found = self._client.list(resource, namespace=namespace or "*", labels=selector)
            else:
                found = self._client.list(resource, labels=selector)
            return [_plain(o) for o in found]

    def apply(self, obj: Object, manager: str, *, force: bool = False,
              dry_run: bool = False) -> Object:
        from lightkube.codecs import from_dict

        with self._calls():
            return _plain(self._client.apply(from_dict(obj), field_manager=manager, force=force,
                                             dry_run=dry_run))

    def delete(self, ref: Ref) -> None:
        with self._calls():
            self._client.delete(_resource(ref.api_version, ref.kind), ref.name,
                                namespace=ref.namespace)
