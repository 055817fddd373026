"""Cut the slices of GitHub's published OpenAPI descriptions that the fake answers with, and
write them here (``openapi/``). Run it to follow a newer release:

    python -m tests.fakes.github.vendor

It fetches the npm packages ``@octokit/openapi`` and ``@octokit/openapi-webhooks`` with
``npm pack`` and keeps only the operations and webhooks listed below, with every component
they reference (examples dropped)."""

from __future__ import annotations

import json
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent / "openapi"
REST_PACKAGE = "@octokit/openapi@23.0.2"
WEBHOOKS_PACKAGE = "@octokit/openapi-webhooks@12.1.0"
OPERATIONS = {
    "/repos/{owner}/{repo}/contents/{path}": ("get", "put"),
    "/repos/{owner}/{repo}/git/ref/{ref}": ("get",),
    "/repos/{owner}/{repo}/git/refs": ("post",),
    "/repos/{owner}/{repo}/pulls": ("post",),
    "/repos/{owner}/{repo}/pulls/{pull_number}": ("get",),
    "/repos/{owner}/{repo}/commits/{ref}/check-runs": ("get",),
    "/app/installations/{installation_id}/access_tokens": ("post",),
    "/orgs/{org}/teams/{team_slug}/memberships/{username}": ("get",),
}
WEBHOOKS = ("workflow-job-queued", "workflow-job-in-progress", "workflow-job-completed")


def _strip_examples(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_examples(v) for k, v in node.items()
                if k not in ("examples", "example", "x-github", "x-octokit")}
    if isinstance(node, list):
        return [_strip_examples(v) for v in node]
    return node


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            found.add(ref)
        for v in node.values():
            _refs(v, found)
    elif isinstance(node, list):
        for v in node:
            _refs(v, found)


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _with_components(doc: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
    """``kept`` plus every component it references, transitively."""
    components: dict[str, dict[str, Any]] = {}
    todo: set[str] = set()
    _refs(kept, todo)
    seen: set[str] = set()
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _section, kind, name = ref.removeprefix("#/").split("/", 2)
        node = _strip_examples(_resolve(doc, ref))
        components.setdefault(kind, {})[name] = node
        _refs(node, todo)
    return {**kept, "components": components}


def _package(name: str, workdir: Path) -> Path:
    out = subprocess.run(["npm", "pack", name, "--silent"], cwd=workdir, check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    with tarfile.open(workdir / out) as tar:
        tar.extractall(workdir / name.split("@")[1].replace("/", "-"), filter="data")
    return workdir / name.split("@")[1].replace("/", "-") / "package"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rest = _package(REST_PACKAGE, Path(tmp))
        hooks = _package(WEBHOOKS_PACKAGE, Path(tmp))
        doc = json.loads((rest / "generated/api.github.com.json").read_text())
        paths = {p: {m: _strip_examples(doc["paths"][p][m]) for m in methods}
                 for p, methods in OPERATIONS.items()}
        sliced = _with_components(doc, {"openapi": doc["openapi"], "info": doc["info"],
                                        "paths": paths})
        (HERE / "api.github.com.json").write_text(json.dumps(sliced, indent=1, sort_keys=True))
        wdoc = json.loads((hooks / "generated/api.github.com.json").read_text())
        kept = {"openapi": wdoc["openapi"], "info": wdoc["info"],
                "webhooks": {w: _strip_examples(wdoc["webhooks"][w]) for w in WEBHOOKS}}
        (HERE / "webhooks.json").write_text(json.dumps(_with_components(wdoc, kept), indent=1,
                                                       sort_keys=True))
        (HERE / "LICENSE").write_text((rest / "LICENSE").read_text())
        (HERE / "SOURCE").write_text(f"Cut by tests/fakes/github/vendor.py from the npm "
                                     f"packages {REST_PACKAGE} and {WEBHOOKS_PACKAGE}.\n")


if __name__ == "__main__":
    main()
