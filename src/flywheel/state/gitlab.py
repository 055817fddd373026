"""Reading GitLab-managed Terraform state through GitLab's documented API:
``GET /api/v4/projects/:id/terraform/state/:name`` (the latest state) and
``GET .../terraform/state/:name/versions/:serial`` (an older one; GitLab numbers versions by
the state's serial), with a personal, project or group access token."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from flywheel.errors import Forbidden, Invalid, NotFound, Unauthenticated, Unavailable
from flywheel.state.document import read_lineage

TIMEOUT = httpx.Timeout(60.0, connect=10.0)


class GitLabStates:
    def __init__(self, url: str, project: str, token: str, *,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise Invalid(f"not a GitLab URL: {url[:100]!r}")
        # A project is its numeric id or its full path, which GitLab takes URL-encoded.
        self._base = f"{url.rstrip('/')}/api/v4/projects/{quote(project, safe='')}"
        self._http = httpx.Client(headers={"PRIVATE-TOKEN": token}, timeout=TIMEOUT,
                                  transport=transport)
        self.where = f"{url.rstrip('/')} project {project}"

    def close(self) -> None:
        self._http.close()

    def latest(self, name: str) -> bytes | None:
        return self._get(f"/terraform/state/{quote(name, safe='')}")

    def version(self, name: str, serial: int) -> bytes | None:
        return self._get(f"/terraform/state/{quote(name, safe='')}/versions/{serial}")

    def _get(self, path: str) -> bytes | None:
        try:
            response = self._http.get(self._base + path)
        except httpx.TransportError as e:
            raise Unavailable(f"cannot reach GitLab at {self.where}: {e}") from None
        if response.status_code == 204 or response.status_code == 404:
            return None
        if response.status_code == 401:
            raise Unauthenticated(f"GitLab refused the token ({self.where})")
        if response.status_code == 403:
            raise Forbidden(f"the token may not read Terraform state of {self.where}")
        if response.status_code != 200:
            raise Unavailable(f"GitLab answered {response.status_code} ({self.where})")
        return response.content


def gitlab_history(states: GitLabStates, name: str, depth: int) -> list[bytes]:
    """The state and the versions of its lineage among the ``depth`` serials below its own,
    oldest first."""
    latest = states.latest(name)
    if latest is None:
        raise NotFound(f"GitLab has no Terraform state {name!r} in {states.where}")
    current = read_lineage(latest)
    older: list[bytes] = []
    if current.serial is not None:
        for serial in range(current.serial - 1, max(current.serial - 1 - depth, -1), -1):
            body = states.version(name, serial)
            if body is not None and read_lineage(body).lineage == current.lineage:
                older.append(body)
    return [*reversed(older), latest]
