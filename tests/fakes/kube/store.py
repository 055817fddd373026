"""The fake API server's storage and object semantics: resource types (built-in ones, and
those every stored CustomResourceDefinition serves), resourceVersion and generation,
server-side apply and updates with managedFields, status subresources, finalizers, and
errors as the API server words them."""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.fakes.kube import ssa
from tests.fakes.kube.schemas import Node, builtin_schema

Obj = dict[str, Any]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    status: bool                   # has a status subresource
    schema: Node
    custom: bool = False           # served for a CustomResourceDefinition

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> str:
        """``plural.group``, as error messages name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _builtin(group: str, version: str, kind: str, plural: str, namespaced: bool,
             status: bool = False) -> ResourceType:
    return ResourceType(group, version, kind, plural, namespaced, status,
                        Node(builtin_schema(group, version, kind)))


BUILTIN = [
    _builtin("", "v1", "Namespace", "namespaces", False, status=True),
    _builtin("", "v1", "ServiceAccount", "serviceaccounts", True),
    _builtin("", "v1", "Secret", "secrets", True),
    _builtin("", "v1", "ConfigMap", "configmaps", True),
    _builtin("", "v1", "Pod", "pods", True, status=True),
    _builtin("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    _builtin("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    _builtin("apiextensions.k8s.io", "v1", "CustomResourceDefinition",
             "customresourcedefinitions", False, status=True),
]


class ApiStatus(Exception):
    """A failure, answered as a ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def body(self) -> Obj:
        body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


def not_found(rt: ResourceType, name: str) -> ApiStatus:
    return ApiStatus(404, "NotFound", f'{rt.resource} "{name}" not found',
                     {"name": name, "group": rt.group, "kind": rt.plural})


def crd_types(crd: Obj) -> list[ResourceType]:
    spec = crd["spec"]
    return [ResourceType(spec["group"], v["name"], spec["names"]["kind"], spec["names"]["plural"],
                         spec.get("scope") == "Namespaced", "status" in v.get("subresources", {}),
                         Node(v.get("schema", {}).get("openAPIV3Schema", {})), custom=True)
            for v in spec["versions"] if v.get("served", True)]


Key = tuple[str, str, str, str]      # group, plural, namespace ("" if cluster-scoped), name


@dataclass
class Store:
    types: list[ResourceType] = field(default_factory=lambda: list(BUILTIN))
    objects: dict[Key, Obj] = field(default_factory=dict)
    revision: int = 1
    lock: threading.RLock = field(default_factory=threading.RLock)

    # -- types --

    def find(self, group: str, version: str, plural: str) -> ResourceType | None:
        return next((t for t in self.types if (t.group, t.version, t.plural)
                     == (group, version, plural)), None)

    def _refresh_types(self) -> None:
        crds = [o for (g, p, _, _), o in self.objects.items()
                if (g, p) == ("apiextensions.k8s.io", "customresourcedefinitions")]
        self.types = list(BUILTIN) + [t for crd in crds for t in crd_types(crd)]

    # -- reads --

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        with self.lock:
            obj = self.objects.get((rt.group, rt.plural, namespace, name))
            if obj is None:
                raise not_found(rt, name)
            return copy.deepcopy(obj)

    def list(self, rt: ResourceType, namespace: str | None,
             selector: Callable[[dict[str, str]], bool]) -> tuple[list[Obj], str]:
        with self.lock:
            items = [copy.deepcopy(o) for (g, p, ns, _), o in sorted(self.objects.items())
                     if (g, p) == (rt.group, rt.plural) and namespace in (None, ns)
                     and selector(o["metadata"].get("labels") or {})]
            return items, str(self.revision)

    # -- writes --

    def _check_namespace(self, rt: ResourceType, namespace: str) -> None:
        if rt.namespaced and ("", "namespaces", "", namespace) not in self.objects:
            raise ApiStatus(404, "NotFound", f'namespaces "{namespace}" not found',
                            {"name": namespace, "kind": "namespaces"})

    def _check_identity(self, rt: ResourceType, namespace: str, name: str, body: Obj) -> None:
        if (body.get("apiVersion"), body.get("kind")) != (rt.api_version, rt.kind):
            raise ApiStatus(400, "BadRequest",
                            f"the body is a {body.get('apiVersion')} {body.get('kind')}, not a "
                            f"{rt.api_version} {rt.kind}")
        meta = body.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise ApiStatus(400, "BadRequest", "the name of the object "
                            f"({meta.get('name')}) does not match the name on the URL ({name})")
        if rt.namespaced and meta.get("namespace") not in (None, namespace):
            raise ApiStatus(400, "BadRequest", "the namespace of the provided object does not "
                            "match the namespace sent on the request")

    def _store(self, rt: ResourceType, namespace: str, name: str, old: Obj | None, new: Obj,
               dry_run: bool) -> Obj:
        """Bump resourceVersion (and generation when more than metadata or status changed),
        then keep ``new``; nothing happens for a write that changes nothing."""
        if old is not None and old == new:
            return copy.deepcopy(old)
        meta = new["metadata"]
        if old is None:
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        elif _content(old) != _content(new):
            meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        if dry_run:
            meta.setdefault("resourceVersion", str(self.revision))
            return copy.deepcopy(new)
        self.revision += 1
        meta["resourceVersion"] = str(self.revision)
        key = (rt.group, rt.plural, namespace, name)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            del self.objects[key]
        else:
            self.objects[key] = new
        if rt.kind == "CustomResourceDefinition":
            self._refresh_types()
        return copy.deepcopy(new)

    def _new(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        meta: Obj = {"name": name}
        if rt.namespaced:
            meta["namespace"] = namespace
        return {"apiVersion": rt.api_version, "kind": rt.kind, "metadata": meta}

    def create(self, rt: ResourceType, namespace: str, body: Obj, manager: str,
               dry_run: bool) -> Obj:
        name = (body.get("metadata") or {}).get("name")
        if not name:
            raise ApiStatus(422, "Invalid", f"{rt.kind}.{rt.group} is invalid: metadata.name: "
                            "Required value: name or generateName is required")
        with self.lock:
            self._check_identity(rt, namespace, name, body)
            self._check_namespace(rt, namespace)
            if (rt.group, rt.plural, namespace, name) in self.objects:
                raise ApiStatus(409, "AlreadyExists", f'{rt.resource} "{name}" already exists',
                                {"name": name, "group": rt.group, "kind": rt.plural})
            new = ssa.merge(self._new(rt, namespace, name), _writable(rt, body), rt.schema)
            if rt.status and "status" in body:
                new["status"] = copy.deepcopy(body["status"])
            _set_owner(new, manager, "Update", ssa.managed(new, rt.schema), rt.api_version)
            return self._store(rt, namespace, name, None, new, dry_run)

    def apply(self, rt: ResourceType, namespace: str, name: str, body: Obj, manager: str,
              force: bool, dry_run: bool) -> Obj:
        with self.lock:
            self._check_identity(rt, namespace, name, body)
            self._check_namespace(rt, namespace)
            key = (rt.group, rt.plural, namespace, name)
            old = copy.deepcopy(self.objects.get(key))
            live = copy.deepcopy(old) if old is not None else self._new(rt, namespace, name)
            applied = _writable(rt, body)
            wanted = ssa.managed(applied, rt.schema)
            owners = _owners(live)
            mine = owners.pop((manager, "Apply"), ("", set()))[1]
            others = {m: v for (m, _), v in owners.items()}
            found = ssa.conflicts(live, applied, wanted, others)
            if found and not force:
                raise _conflict_status(rt, name, found)
            for c in found:
                for (m, _op), (_v, fields) in owners.items():
                    if m == c.manager:
                        fields.discard(c.path)
            merged = ssa.merge(live, applied, rt.schema)
            still_owned = set().union(*(f for _v, f in owners.values()))
            for path in sorted(mine - wanted - still_owned, key=len, reverse=True):
                if path[-1] == "." and any(p[:len(path) - 1] == path[:-1]
                                           for p in still_owned):
                    continue
                ssa.remove_at(merged, path)
            _keep_owners(merged, owners)
            _set_owner(merged, manager, "Apply", wanted, rt.api_version)
            if old is not None and _unchanged(old, merged):
                return old
            return self._store(rt, namespace, name, old, merged, dry_run)

    def update(self, rt: ResourceType, namespace: str, name: str,
               change: Callable[[Obj], Obj], manager: str, dry_run: bool,
               subresource: str | None = None) -> Obj:
        """A write that is not an apply (merge patch, replace, status): ``change`` gets the
        live object and returns the new one."""
        with self.lock:
            old = self.get(rt, namespace, name)
            new = change(copy.deepcopy(old))
            version = new.get("metadata", {}).get("resourceVersion")
            if version is not None and version != old["metadata"]["resourceVersion"]:
                raise ApiStatus(409, "Conflict", f'Operation cannot be fulfilled on {rt.resource} '
                                f'"{name}": the object has been modified; please apply your '
                                "changes to the latest version and try again",
                                {"name": name, "group": rt.group, "kind": rt.plural})
            for server_field in ("uid", "creationTimestamp", "generation", "managedFields",
                                 "deletionTimestamp", "resourceVersion"):
                if server_field in old["metadata"]:
                    new.setdefault("metadata", {})[server_field] = \
                        old["metadata"][server_field]
            if subresource == "status":
                new = {**old, "status": new.get("status")}
            elif rt.status:
                new = {**new, "status": old.get("status")}
                if new["status"] is None:
                    del new["status"]
            if old["metadata"].get("deletionTimestamp") and \
                    len(new["metadata"].get("finalizers") or []) > \
                    len(old["metadata"].get("finalizers") or []):
                raise ApiStatus(422, "Invalid", "finalizers cannot be added to an object being "
                                "deleted")
            if subresource is None:
                took = ssa.changed(old, new, rt.schema)
                gone = ssa.dropped(old, new, rt.schema)
                owners = {k: (v, fields - took - gone) for k, (v, fields) in _owners(new).items()}
                _keep_owners(new, owners)
                previous = owners.get((manager, "Update"), ("", set()))[1]
                _set_owner(new, manager, "Update", (previous | took) - gone, rt.api_version)
            return self._store(rt, namespace, name, old, new, dry_run)

    def delete(self, rt: ResourceType, namespace: str, name: str, dry_run: bool) -> Obj:
        with self.lock:
            obj = self.get(rt, namespace, name)
            key = (rt.group, rt.plural, namespace, name)
            if dry_run:
                return obj
            if obj["metadata"].get("finalizers"):
                if not obj["metadata"].get("deletionTimestamp"):
                    obj["metadata"].update(deletionTimestamp=now(), deletionGracePeriodSeconds=0)
                    self.revision += 1
                    obj["metadata"]["resourceVersion"] = str(self.revision)
                    self.objects[key] = obj
                return copy.deepcopy(obj)
            del self.objects[key]
            if rt.kind == "Namespace":
                for other in [k for k in self.objects if k[2] == name]:
                    del self.objects[other]
            if rt.kind == "CustomResourceDefinition":
                self._refresh_types()
            return obj


def _content(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _writable(rt: ResourceType, body: Obj) -> Obj:
    out = {k: copy.deepcopy(v) for k, v in body.items() if not (rt.status and k == "status")}
    meta = {k: v for k, v in (out.pop("metadata", None) or {}).items()
            if k not in ssa.SERVER_FIELDS}
    if meta:
        out["metadata"] = meta
    return out


def _owners(obj: Obj) -> dict[tuple[str, str], tuple[str, set[ssa.Path]]]:
    return {(e["manager"], e["operation"]): (e["apiVersion"],
                                              ssa.from_fields_v1(e.get("fieldsV1", {})))
            for e in obj["metadata"].get("managedFields") or []}


def _unchanged(old: Obj, new: Obj) -> bool:
    """Same object and same ownership: a no-op apply, which the server does not write."""
    def bare(obj: Obj) -> Obj:
        return {**obj, "metadata": {k: v for k, v in obj["metadata"].items()
                                    if k != "managedFields"}}

    def owned(obj: Obj) -> dict[tuple[str, str], set[ssa.Path]]:
        return {k: v[1] for k, v in _owners(obj).items()}

    return bare(old) == bare(new) and owned(old) == owned(new)


def _keep_owners(obj: Obj, owners: dict[tuple[str, str], tuple[str, set[ssa.Path]]]) -> None:
    """Managers' entries with their (possibly reduced) fields; an entry whose fields did not
    change is kept as it was, time included, as the API server does."""
    before = {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields")
              or []}
    obj["metadata"]["managedFields"] = []
    for (manager, operation), (version, fields) in owners.items():
        old = before.get((manager, operation))
        if old is not None and ssa.from_fields_v1(old.get("fieldsV1", {})) == fields:
            obj["metadata"]["managedFields"].append(old)
        else:
            _set_owner(obj, manager, operation, fields, version)


def _set_owner(obj: Obj, manager: str, operation: str, fields: set[ssa.Path],
               api_version: str) -> None:
    entries = [e for e in obj["metadata"].get("managedFields") or []
               if (e["manager"], e["operation"]) != (manager, operation)]
    if fields:
        entries.append({"manager": manager, "operation": operation, "apiVersion": api_version,
                        "time": now(), "fieldsType": "FieldsV1",
                        "fieldsV1": ssa.to_fields_v1(fields)})
    obj["metadata"]["managedFields"] = entries


def _conflict_status(rt: ResourceType, name: str, found: list[ssa.Conflict]) -> ApiStatus:
    causes = [{"reason": "FieldManagerConflict",
               "message": f'conflict with "{c.manager}" using {c.api_version}',
               "field": ssa.dotted(c.path)} for c in found]
    if len(found) == 1:
        c = found[0]
        message = (f'Apply failed with 1 conflict: conflict with "{c.manager}" using '
                   f"{c.api_version}: {ssa.dotted(c.path)}")
    else:
        lines = "".join(f"\n- {ssa.dotted(c.path)}" for c in found)
        managers = ", ".join(sorted({f'"{c.manager}"' for c in found}))
        message = f"Apply failed with {len(found)} conflicts: conflicts with {managers}:{lines}"
    return ApiStatus(409, "Conflict", message,
                     {"name": name, "group": rt.group, "kind": rt.plural, "causes": causes})
