"""Adding and removing enrollments in ``fleet.yaml`` itself: a round-trip edit that keeps
comments, order and layout, refused when the result would not be a valid spec (two scale
sets with one name in a namespace, ARC #3587, among others). Also the steps only a person
can take (installing the App, creating the Secret) and a check of that Secret."""

from __future__ import annotations

import base64
import io
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flywheel.client.files import atomic_write, existing_mode
from flywheel.errors import Invalid
from flywheel.fleet.kube import Cluster, KubeError, Ref
from flywheel.fleet.loader import LoadedSpec, SpecError, load_text, yaml_parser
from flywheel.fleet.scalesets import ScaleSet, scale_sets
from flywheel.fleet.spec import Fleet

APP_KEYS = ("github_app_id", "github_app_installation_id", "github_app_private_key")
PAT_KEYS = ("github_token",)
# ruamel.yaml is imported in enroll(): the server imports this module (pool_edits) but never that.


class EnrollError(Invalid):
    """An enrollment the spec cannot take (an unknown pool, a colliding scale set)."""


@dataclass
class Edit:
    spec: LoadedSpec                 # the spec after the edit
    scale_set: ScaleSet              # the scale set added or removed
    steps: list[str] = field(default_factory=list)


def _indent(text: str) -> tuple[int, int, int]:
    """(mapping, sequence, offset) as the file already writes them, so an edit does not
    re-indent every other line."""
    lines = text.splitlines()
    for before, line in itertools.pairwise(lines):
        dash = re.match(r"^(\s*)- ", line)
        key = re.match(r"^(\s*)[^\s#-][^:]*:\s*$", before)
        if dash and key:
            offset = len(dash[1]) - len(key[1])
            return 2, offset + 2, offset
    return 2, 4, 2


def _dump(document: Any, text: str) -> str:
    yaml = yaml_parser()
    mapping, sequence, offset = _indent(text)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    yaml.width = 4096
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    return buffer.getvalue()


def _target(org: str | None, repo: str | None) -> dict[str, str]:
    if (org is None) == (repo is None):
        raise EnrollError("give --org ORG or --repo OWNER/REPO")
    return {"org": org} if org else {"repo": str(repo)}


def _matches(entry: Any, target: dict[str, str], pool: str | None) -> bool:
    key, value = next(iter(target.items()))
    return bool(isinstance(entry, dict) and str(entry.get(key, "")).lower() == value.lower()
                and (pool is None or entry.get("pool") == pool))


def _save(path: Path, before: str, document: Any) -> LoadedSpec:
    text = _dump(document, before)
    try:
        spec = load_text(path, text)
    except SpecError as e:
        raise EnrollError("the change would make the spec invalid, so nothing was written:\n"
                          + "\n".join(e.lines)) from None
    atomic_write(path, text, existing_mode(path, 0o644))
    return spec


def _scale_set_of(spec: LoadedSpec, index: int) -> ScaleSet:
    return next(s for s in scale_sets(spec.fleet) if s.source == ("enrollments", index))


def secret_steps(fleet: Fleet, s: ScaleSet, installation_id: int | None) -> list[str]:
    ns, secret = s.namespace, s.github_secret
    if fleet.github.app is not None:
        owner = s.scope.removeprefix("https://github.com/").split("/")[0]
        installation = str(installation_id) if installation_id else "INSTALLATION_ID"
        return [
            f"Install the GitHub App on {owner} (for a repository: on its owner, with access "
            f"to it): https://github.com/organizations/{owner}/settings/installations; the "
            "installation id ends the URL of the installation's settings page",
            f"Create the Secret ARC reads the App from:\n"
            f"  kubectl create secret generic {secret} --namespace {ns} "
            f"--from-literal=github_app_id={fleet.github.app.id} "
            f"--from-literal=github_app_installation_id={installation} "
            "--from-file=github_app_private_key=PRIVATE_KEY.pem",
        ]
    return [f"Make sure the token in Secret {ns}/{secret} may manage runners of {s.scope}; "
            "without that Secret:\n"
            f"  kubectl create secret generic {secret} --namespace {ns} "
            "--from-literal=github_token=TOKEN"]


def enroll(path: Path, *, org: str | None, repo: str | None, pool: str,
           installation_id: int | None, name: str | None) -> Edit:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    before = path.read_text(encoding="utf-8")
    spec = load_text(path, before)
    target = _target(org, repo)
    document = spec.document
    entries = document.get("enrollments")
    if entries is None:
        entries = document["enrollments"] = CommentedSeq()
    if any(_matches(e, target, pool) for e in entries):
        raise EnrollError(f"{next(iter(target.values()))} is already enrolled in pool {pool!r}")
    entry = CommentedMap(target)
    entry["pool"] = pool
    if installation_id is not None:
        entry["installationId"] = installation_id
    if name is not None:
        entry["name"] = name
    entries.append(entry)
    after = _save(path, before, document)
    s = _scale_set_of(after, len(entries) - 1)
    return Edit(after, s, [*secret_steps(after.fleet, s, installation_id),
                           f"Then: flywheel fleet plan {path} and flywheel fleet apply {path}"])


def offboard(path: Path, *, org: str | None, repo: str | None, pool: str | None) -> Edit:
    before = path.read_text(encoding="utf-8")
    spec = load_text(path, before)
    target = _target(org, repo)
    entries = spec.document.get("enrollments") or []
    found = [i for i, e in enumerate(entries) if _matches(e, target, pool)]
    who = next(iter(target.values()))
    if not found:
        raise EnrollError(f"{who} is not enrolled" + (f" in pool {pool!r}" if pool else ""))
    if len(found) > 1:
        pools = ", ".join(str(entries[i].get("pool")) for i in found)
        raise EnrollError(f"{who} is enrolled in pools {pools}: say which with --pool")
    gone = _scale_set_of(spec, found[0])
    del entries[found[0]]
    after = _save(path, before, spec.document)
    steps = [f"Then: flywheel fleet apply {path} --prune deletes scale set "
             f"{gone.namespace}/{gone.name} (the plan shows it first)"]
    if all(s.github_secret != gone.github_secret or s.namespace != gone.namespace
           for s in scale_sets(after.fleet)):
        steps.append(f"Nothing else uses Secret {gone.namespace}/{gone.github_secret} now:\n"
                     f"  kubectl delete secret {gone.github_secret} --namespace "
                     f"{gone.namespace}")
    return Edit(after, gone, steps)


def check_secret(cluster: Cluster, fleet: Fleet, s: ScaleSet,
                 installation_id: int | None) -> tuple[bool, str]:
    """(ready, what was found) for the scale set's GitHub Secret."""
    where = f"{s.namespace}/{s.github_secret}"
    try:
        secret = cluster.get(Ref("v1", "Secret", s.namespace, s.github_secret))
    except KubeError as e:
        return False, f"could not check Secret {where}: {e}"
    if secret is None:
        return False, f"Secret {where} does not exist yet: create it as above"
    wanted = APP_KEYS if fleet.github.app is not None else PAT_KEYS
    data = secret.get("data") or {}
    missing = [k for k in wanted if not data.get(k)]
    if missing:
        return False, f"Secret {where} lacks {', '.join(missing)}"
    if installation_id is not None and fleet.github.app is not None:
        stored = base64.b64decode(data["github_app_installation_id"]).decode().strip()
        if stored != str(installation_id):
            return False, (f"Secret {where} holds installation id {stored}, not "
                           f"{installation_id}")
    return True, f"Secret {where} is ready ({', '.join(wanted)})"
