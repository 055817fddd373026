"""``flywheel token ...``: mint and revoke JWTs with the server's secret, or through a
server's admin API with ``--server``."""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from flywheel.api.tokens import TokenRecord
from flywheel.auth.permissions import CachePermission, Grants, WorkspacePermission, check_glob
from flywheel.auth.tokens import parse_duration
from flywheel.cli import remote
from flywheel.cli.common import ConfigOpt, DataDirOpt, err, fail, local_services, out
from flywheel.client.admin import workspace_permissions

app = typer.Typer(help="Mint, list and revoke access tokens.", no_args_is_help=True)

Globs = Annotated[list[str] | None, typer.Option(show_default=False)]
StateGlobs = Annotated[list[str] | None, typer.Option(show_default=False,
                                                      help="State workspace glob")]
NEEDS_ONE_OF = ("--pull, --push, --delete, --create-cache, --configure-cache, --destroy-cache, "
                "--state-read, --state-lock, --state-write, --state-admin, --admin")


def grants_from(pull: list[str], push: list[str], delete: list[str], create: list[str],
                configure: list[str], destroy: list[str], admin: bool) -> Grants:
    """Merge per-flag globs into one permission per glob, keeping first-seen order.

    Pushing implies pulling: ``nix copy --to`` reads narinfos to skip what is there."""
    order: list[str] = []
    perms: dict[str, CachePermission] = {}
    flags = [(pull, CachePermission(r=True)), (push, CachePermission(r=True, w=True)),
             (delete, CachePermission(r=True, d=True)), (create, CachePermission(cc=True)),
             (configure, CachePermission(cr=True, cq=True)), (destroy, CachePermission(cd=True))]
    for globs, perm in flags:
        for glob in globs:
            check_glob(glob)
            if glob not in perms:
                order.append(glob)
                perms[glob] = perm
            else:
                perms[glob] = perms[glob].merged(perm)
    return Grants(tuple((g, perms[g]) for g in order), admin=admin)


@app.command()
def mint(
    sub: Annotated[str, typer.Option("--sub", help="Who the token is for")],
    validity: Annotated[str, typer.Option(help="Lifetime, e.g. 30d, 12h, 1y")] = "30d",
    pull: Globs = None, push: Globs = None, delete: Globs = None,
    create_cache: Globs = None, configure_cache: Globs = None, destroy_cache: Globs = None,
    state_read: StateGlobs = None, state_lock: StateGlobs = None,
    state_write: StateGlobs = None, state_admin: StateGlobs = None,
    admin: Annotated[bool, typer.Option("--admin", help="May manage tokens")] = False,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, server: remote.ServerOpt = None,
) -> None:
    """Print a new token (Attic's JWT claim format). Globs name caches: main, team-*, *;
    the --state-* globs name state workspaces (--state-write also reads and locks)."""
    workspaces = workspace_permissions(state_read=state_read or [], state_lock=state_lock or [],
                                       state_write=state_write or [],
                                       state_admin=state_admin or [])
    if server is not None:
        return remote.token_mint(server, sub, validity=validity, pull=pull or [],
                                 push=push or [], delete=delete or [],
                                 create_cache=create_cache or [],
                                 configure_cache=configure_cache or [],
                                 destroy_cache=destroy_cache or [], admin_token=admin,
                                 workspaces=workspaces)
    with local_services(config, data_dir) as s:
        grants = grants_from(pull or [], push or [], delete or [], create_cache or [],
                             configure_cache or [], destroy_cache or [], admin)
        grants = Grants(grants.caches, grants.admin, tuple(
            (check_glob(g, "workspace"), WorkspacePermission.from_claim(bits))
            for g, bits in workspaces.items()))
        if not grants.caches and not grants.workspaces and not admin:
            raise fail(f"a token needs at least one of {NEEDS_ONE_OF}")
        token, claims = s.issue_token(sub, grants, parse_duration(validity))
        print(token)
        err.print(f"token id {claims.jti} for {sub!r}, expires {_when(claims.expires_at)} UTC",
                  highlight=False)


@app.command()
def revoke(
    token_id: Annotated[str | None, typer.Option("--id", help="Token id (jti)",
                                                 show_default=False)] = None,
    sub: Annotated[str | None, typer.Option("--sub", help="Revoke every token of this subject "
                                            "issued until now", show_default=False)] = None,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, server: remote.ServerOpt = None,
) -> None:
    """Revoke tokens; takes effect on the next request, on every replica."""
    if (token_id is None) == (sub is None):
        raise fail("give exactly one of --id or --sub", 2)
    if server is not None:
        return remote.token_revoke(server, token_id=token_id, sub=sub)
    with local_services(config, data_dir) as s:
        n = s.tokens.revoke(jti=token_id, sub=sub)
        if token_id is not None and n == 0:
            raise fail(f"no token with id {token_id!r}")
        out.print(f"Revoked {'token ' + token_id if token_id else f'tokens of {sub!r}'}"
                  f"{f' ({n} recorded)' if sub else ''}")


def _when(ts: object) -> str:
    if not isinstance(ts, int):
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M")


@app.command("list")
def list_(sub: Annotated[str | None, typer.Option("--sub", show_default=False)] = None,
          as_json: Annotated[bool, typer.Option("--json")] = False,
          config: ConfigOpt = None, data_dir: DataDirOpt = None,
          server: remote.ServerOpt = None) -> None:
    """List the tokens a server minted (ids and dates, never the tokens themselves)."""
    records: list[TokenRecord]
    if server is not None:
        records = remote.token_list(server, sub)
    else:
        with local_services(config, data_dir) as s:
            records = [TokenRecord.model_validate(asdict(r)) for r in s.tokens.list(sub)]
    if as_json:
        out.print_json(json.dumps([r.model_dump() for r in records]))
        return
    table = Table("subject", "issued", "expires", "revoked")
    table.add_column("id", no_wrap=True)
    for t in records:
        table.add_row(t.sub, _when(t.issued_at), _when(t.expires_at), _when(t.revoked_at),
                      t.id)
    out.print(table)
