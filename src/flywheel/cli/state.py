"""``flywheel state ...``: workspaces, their history and content, rollback, force-unlock and
import from GitLab; against the local data directory, or a server with ``--server``."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import sys
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.table import Table

from flywheel.api.state import StateVersion, StateWorkspace
from flywheel.cli import remote
from flywheel.cli.common import ConfigOpt, DataDirOpt, fail, local_services, out
from flywheel.client import profiles
from flywheel.client import state as state_client
from flywheel.client.api import Api
from flywheel.client.errors import ApiError, ClientError
from flywheel.errors import FlywheelError

app = typer.Typer(help="OpenTofu/Terraform state: workspaces, history, rollback, unlock, "
                  "import.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON")]
# Who a change made on the server's own data directory is recorded as.
LOCAL_SUBJECT = "flywheel state (local)"


@contextlib.contextmanager
def _remote(server: str) -> Iterator[Api]:
    try:
        with Api(profiles.load(profiles.config_path()).select(server)) as api:
            yield api
    except ApiError as e:
        raise fail(f"server refused ({e.status}): {e.message}") from None
    except (ClientError, FlywheelError) as e:
        raise fail(str(e)) from None


def _when(ts: int) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


@app.command("list")
def list_(as_json: JsonOpt = False, config: ConfigOpt = None, data_dir: DataDirOpt = None,
          server: remote.ServerOpt = None) -> None:
    """Workspaces: current version, serial, size, and who holds the lock."""
    if server is not None:
        with _remote(server) as api:
            found = state_client.workspaces(api)
    else:
        from flywheel.state.views import workspace_view

        with local_services(config, data_dir) as s:
            found = [workspace_view(ws) for ws in s.state.workspaces()]
    if as_json:
        out.print_json(json.dumps([ws.model_dump(mode="json") for ws in found]))
        return
    table = Table("workspace", "version", "serial", "size", "updated", "locked by")
    for ws in found:
        table.add_row(ws.name, *_current(ws), ws.lock.locked_by if ws.lock else "-")
    out.print(table)


def _current(ws: StateWorkspace) -> tuple[str, str, str, str]:
    v = ws.current
    if v is None:
        return "-", "-", "-", "-"
    return (str(v.version), "-" if v.serial is None else str(v.serial), str(v.size),
            _when(v.created_at))


@app.command()
def history(workspace: str, as_json: JsonOpt = False, config: ConfigOpt = None,
            data_dir: DataDirOpt = None, server: remote.ServerOpt = None) -> None:
    """Every version kept, newest first: serial, lineage, who, when, size, checksum."""
    if server is not None:
        with _remote(server) as api:
            versions = state_client.history(api, workspace).versions
    else:
        from flywheel.state.views import version_view

        with local_services(config, data_dir) as s:
            versions = [version_view(v) for v in s.state.history(workspace)]
    if as_json:
        out.print_json(json.dumps([v.model_dump(mode="json") for v in versions]))
        return
    table = Table("version", "serial", "lineage", "by", "when", "size", "sha256", "note")
    for v in versions:
        table.add_row(str(v.version), "-" if v.serial is None else str(v.serial),
                      v.lineage or "-", v.created_by, _when(v.created_at), str(v.size),
                      v.sha256[:16], v.note or "")
    out.print(table)


@app.command()
def show(workspace: str,
         version: Annotated[int | None, typer.Option(
             "--version", min=1, help="A version from history [default: the current one]",
             show_default=False)] = None,
         config: ConfigOpt = None, data_dir: DataDirOpt = None,
         server: remote.ServerOpt = None) -> None:
    """Print a state as it was stored."""
    if server is not None:
        with _remote(server) as api:
            body = state_client.content(api, workspace, version)
    else:
        with local_services(config, data_dir) as s:
            body = s.state.show(workspace, version).body
    sys.stdout.buffer.write(body)
    sys.stdout.flush()


@app.command()
def rollback(workspace: str,
             to: Annotated[int, typer.Option("--to", min=1, help="The version to restore")],
             config: ConfigOpt = None, data_dir: DataDirOpt = None,
             server: remote.ServerOpt = None) -> None:
    """Make version N's content the current state, as a new version."""
    made: StateVersion
    if server is not None:
        with _remote(server) as api:
            made = state_client.rollback(api, workspace, to)
    else:
        from flywheel.state.views import version_view

        with local_services(config, data_dir) as s:
            made = version_view(s.state.rollback(workspace, to, by=LOCAL_SUBJECT))
    out.print(f"Rolled workspace {workspace!r} back to version {to}: now version "
              f"{made.version} (serial {made.serial if made.serial is not None else '-'})")


@app.command()
def unlock(workspace: str, config: ConfigOpt = None, data_dir: DataDirOpt = None,
           server: remote.ServerOpt = None) -> None:
    """Release the workspace's lock, whoever holds it."""
    if server is not None:
        with _remote(server) as api:
            released = state_client.unlock(api, workspace).released
        holder = None if released is None else (released.locked_by, released.id)
    else:
        with local_services(config, data_dir) as s:
            lock = s.state.unlock(workspace, None)
        holder = None if lock is None else (lock.locked_by, lock.id)
    if holder is None:
        out.print(f"Workspace {workspace!r} was not locked")
    else:
        out.print(f"Unlocked workspace {workspace!r} (held by {holder[0]!r}, "
                  f"lock ID {holder[1]})")


@app.command("import")
def import_(
    workspace: str,
    from_gitlab: Annotated[str, typer.Option("--from-gitlab", help="GitLab's URL")],
    project: Annotated[str, typer.Option("--project", help="Project id or path")],
    name: Annotated[str, typer.Option("--name", help="The state's name in GitLab")],
    token_env: Annotated[str, typer.Option(
        "--token-env", help="Variable holding a GitLab token that may read the state")],
    depth: Annotated[int, typer.Option(
        "--history", min=0, max=10_000,
        help="Older serials to look for and copy as history")] = 20,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace a state of another lineage or a higher serial "
                        "(needs the admin permission)")] = False,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, server: remote.ServerOpt = None,
) -> None:
    """Copy a GitLab-managed Terraform state, with its history, into a workspace; serial
    and lineage are kept."""
    from flywheel.state.gitlab import GitLabStates, gitlab_history

    token = os.environ.get(token_env)
    if not token:
        raise fail(f"${token_env} is not set (it should hold the GitLab token)", 2)
    note = f"imported from GitLab ({project}, state {name})"
    with _gitlab_errors():
        states = GitLabStates(from_gitlab, project, token)
        try:
            bodies = gitlab_history(states, name, depth)
        finally:
            states.close()
    if server is not None:
        with _remote(server) as api:
            for body in bodies:
                state_client.store(api, workspace, body, force=force)
    else:
        with local_services(config, data_dir) as s:
            for body in bodies:
                s.state.write(workspace, body, by=LOCAL_SUBJECT, lock_id=None, force=force,
                              note=note)
    out.print(f"Imported {len(bodies)} version{'s' if len(bodies) != 1 else ''} of GitLab "
              f"state {name!r} into workspace {workspace!r}")


@contextlib.contextmanager
def _gitlab_errors() -> Iterator[None]:
    try:
        yield
    except FlywheelError as e:
        raise fail(e.message) from None
