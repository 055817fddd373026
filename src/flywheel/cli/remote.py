"""Client commands against a remote flywheel server: ``login``, ``use``, ``push``,
``watch-store``, and the ``--server`` variants of ``cache ...`` and ``token ...``.

Thin: parse flags, call :mod:`flywheel.client`, print. Run standalone with
``python -m flywheel.cli.remote`` until the commands are registered on ``flywheel``."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flywheel.api.cache_config import CacheConfig
from flywheel.api.tokens import TokenRecord
from flywheel.client import admin, nixstore, profiles
from flywheel.client.api import Api
from flywheel.client.errors import ApiError, ClientError
from flywheel.client.nixstore import LocalStore
from flywheel.client.progress import RichReporter
from flywheel.client.push import push_paths
from flywheel.client.storedb import StoreDb, default_db
from flywheel.client.summary import PushSummary
from flywheel.client.use import configure_nix, default_netrc, nix_conf_path
from flywheel.client.watch import StoreWatcher, abort_at_once

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ServerOpt = Annotated[str | None, typer.Option(
    "--server", help="Server profile (see flywheel login) [default: the default profile]",
    show_default=False)]
JobsOpt = Annotated[int, typer.Option("-j", "--jobs", min=1, max=64,
                                      help="Uploads in parallel")]
UpstreamOpt = Annotated[bool, typer.Option(
    "--ignore-upstream-filter",
    help="Also push paths signed by the cache's upstream keys (e.g. cache.nixos.org-1)")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except ApiError as e:
        raise _fail(f"server refused ({e.status}): {e.message}") from None
    except ClientError as e:
        raise _fail(str(e)) from None


def _profile(server: str | None) -> profiles.Profile:
    return profiles.load(profiles.config_path()).select(server)


# -- login, use --


def login(
    name: Annotated[str, typer.Argument(help="Profile name, used with --server")],
    url: Annotated[str, typer.Argument(help="Server base URL, e.g. https://cache.example")],
    token: Annotated[str | None, typer.Argument(
        help="Access token; '-' reads it from stdin; omit for public pull only",
        show_default=False)] = None,
    set_default: Annotated[bool, typer.Option(
        "--set-default", help="Make this the default profile")] = False,
) -> None:
    """Save a server profile (the first one becomes the default)."""
    with _errors():
        profiles.check_name(name)
        if token == "-":
            token = sys.stdin.readline().strip() or None
        profile = profiles.Profile(name, profiles.normalize_url(url), token)
        with Api(profile) as api:
            api.healthz()
            if token:
                try:
                    api.caches()
                except ApiError as e:
                    # 401 is the only answer that proves the token bad; an Attic server
                    # without our listing endpoint says 404 and the token may be fine.
                    if e.status == 401:
                        raise ClientError(f"{profile.url} rejected the token: {e.message}"
                                          ) from None
        path = profiles.config_path()
        stored = profiles.load(path)
        stored.add(profile, make_default=set_default)
        profiles.save(path, stored)
        access = "with a token" if token else "without a token (public caches, pull only)"
        default = " (default)" if stored.default == name else ""
        out.print(f"Saved server {name!r}{default}: {profile.url} {access}")
        out.print(f"Profiles: {path}")


def use(
    cache: Annotated[str, typer.Argument(help="Cache name")],
    server: ServerOpt = None,
    nix_conf: Annotated[Path | None, typer.Option(
        "--nix-conf", help="nix.conf to edit [default: first of $NIX_USER_CONF_FILES, "
        "else $XDG_CONFIG_HOME/nix/nix.conf]", show_default=False)] = None,
) -> None:
    """Configure Nix to substitute from CACHE: substituter, trusted key, netrc token."""
    with _errors():
        profile = _profile(server)
        with Api(profile) as api:
            config = api.cache_config(cache)
        result = configure_nix(config, profile.token, nix_conf_path(nix_conf),
                               default_netrc())
        for change in result.changes:
            out.print(f"changed {change}")
        if not result.changed:
            out.print(f"Nix already uses cache {cache!r} from {config.substituter_endpoint}; "
                      "nothing changed")
        else:
            out.print(f"Nix now substitutes from {config.substituter_endpoint} "
                      f"(priority {config.priority}), trusting {config.public_key}")
        for note in result.notes:
            err.print(f"[yellow]note:[/] {note}")


# -- push, watch-store --


def _summary(summary: PushSummary, *, list_failures: bool = False) -> None:
    # push shows each failure as it happens; watch-store repeats them at the end, where
    # they would otherwise be scattered over a long log.
    if list_failures:
        for path, why in summary.failed.items():
            err.print(f"[red]not pushed[/] {path}: {why}")
    out.print(summary.line())


def push(
    cache: Annotated[str, typer.Argument(help="Cache name")],
    paths: Annotated[list[str] | None, typer.Argument(
        help="Store paths, files in them, or links to them (./result)",
        show_default=False)] = None,
    stdin: Annotated[bool, typer.Option("--stdin", help="Also read paths from stdin")] = False,
    no_closure: Annotated[bool, typer.Option(
        "--no-closure", help="Push only the given paths, not what they reference")] = False,
    jobs: JobsOpt = 4,
    ignore_upstream_filter: UpstreamOpt = False,
    server: ServerOpt = None,
) -> None:
    """Push store paths (and their closures) to CACHE; only what it lacks is uploaded."""
    with _errors():
        args = list(paths or [])
        if stdin:
            args += sys.stdin.read().split()
        if not args:
            raise _fail("give store paths to push (or --stdin)", 2)
        roots = [nixstore.to_store_path(a) for a in args]
        with Api(_profile(server), max_connections=jobs + 2) as api:
            plan, summary = push_paths(api, LocalStore(), cache, roots,
                                       reporter=RichReporter(err), with_closure=not no_closure,
                                       jobs=jobs, upstream_filter=not ignore_upstream_filter)
        if not plan.order and summary.ok:
            out.print(f"nothing to push: {cache!r} already has all "
                      f"{summary.present + summary.upstream} paths or their upstream does")
        _summary(summary)
        if not summary.ok:
            raise typer.Exit(1)


def watch_store(
    cache: Annotated[str, typer.Argument(help="Cache name")],
    jobs: JobsOpt = 4,
    ignore_upstream_filter: UpstreamOpt = False,
    server: ServerOpt = None,
    nix_db: Annotated[Path | None, typer.Option(
        "--nix-db", help="Nix database to watch [default: $NIX_STATE_DIR/db/db.sqlite]",
        show_default=False)] = None,
) -> None:
    """Push every path Nix adds to the store from now on, until interrupted."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            abort_at_once(signum)
        stop.set()
        err.print("stopping: pushing what is queued (signal again to abort)")

    with _errors():
        profile = _profile(server)
        db = StoreDb(nix_db or default_db())
        with Api(profile, max_connections=jobs + 2) as api:
            api.cache_config(cache)   # fail now, not at the first build, on a typo

            def push_batch(batch: list[str]) -> PushSummary:
                # With closures: a new path may reference older ones the cache lacks, and
                # asking the server what it has makes the rest of the closure free.
                return push_paths(api, LocalStore(), cache, batch, reporter=RichReporter(err),
                                  jobs=jobs, upstream_filter=not ignore_upstream_filter)[1]

            watcher = StoreWatcher(db, push_batch,
                                   on_error=lambda m: err.print(f"[red]error:[/] {m}"))
            previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                err.print(f"watching {db.path} for new store paths to push to {cache!r} on "
                          f"{profile.name!r} ({profile.url}); Ctrl-C to stop")
                total = watcher.run(stop)
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)
                db.close()
        _summary(total, list_failures=True)
        if not total.ok:
            raise typer.Exit(1)


# -- remote variants of `flywheel cache ...` and `flywheel token ...` --
# Called by cli/cache.py and cli/token.py when --server is given.


def _print_config(name: str, config: CacheConfig) -> None:
    out.print(f"               Cache: {name}")
    out.print(f"   Substituter (URL): {config.substituter_endpoint}")
    out.print(f"          Public Key: {config.public_key}")
    out.print(f"              Public: {config.is_public}")
    out.print(f"            Priority: {config.priority}")
    out.print(f"  Upstream Key Names: {', '.join(config.upstream_cache_key_names)}")


def cache_create(server: str, name: str, *, private: bool, priority: int | None) -> None:
    with _errors(), Api(_profile(server)) as api:
        config = admin.create_cache(api, name, is_public=not private, priority=priority)
        out.print(f"Created {'private' if private else 'public'} cache {name!r} on {server!r}")
        out.print(f"Public Key: {config.public_key}")


def cache_list(server: str, *, as_json: bool) -> None:
    with _errors(), Api(_profile(server)) as api:
        caches = admin.list_caches(api)
        if as_json:
            out.print_json(json.dumps([c.model_dump(mode="json") for c in caches]))
            return
        table = Table("name", "visibility", "priority")
        table.add_column("public key", no_wrap=True)
        for c in caches:
            table.add_row(c.name, "public" if c.is_public else "private", str(c.priority),
                          c.public_key)
        out.print(table)


def cache_info(server: str, name: str, *, as_json: bool) -> None:
    with _errors(), Api(_profile(server)) as api:
        config = admin.cache_info(api, name)
        if as_json:
            out.print_json(json.dumps({"name": name, **config.model_dump(mode="json")}))
            return
        _print_config(name, config)


def cache_configure(server: str, name: str, *, public: bool | None, priority: int | None,
                    upstream_key: list[str] | None, regenerate_keypair: bool) -> None:
    with _errors(), Api(_profile(server)) as api:
        config = admin.configure_cache(api, name, is_public=public, priority=priority,
                                       upstream_cache_key_names=upstream_key,
                                       regenerate_keypair=regenerate_keypair)
        out.print(f"Configured cache {name!r}: "
                  f"{'public' if config.is_public else 'private'}, priority {config.priority}")
        out.print(f"Public Key: {config.public_key}")


def cache_destroy(server: str, name: str, *, yes: bool) -> None:
    with _errors(), Api(_profile(server)) as api:
        admin.cache_info(api, name)
        if not yes and not typer.confirm(f"Destroy cache {name!r} on {server!r} and all "
                                         "its paths?"):
            raise _fail("not confirmed")
        admin.destroy_cache(api, name)
        out.print(f"Destroyed cache {name!r} on {server!r}")


def cache_delete_path(server: str, name: str, path: str) -> None:
    with _errors(), Api(_profile(server)) as api:
        hash_part = (nixstore.hash_part(path) if path.startswith("/")
                     else path[:32])
        admin.delete_path(api, name, hash_part)
        out.print(f"Deleted {path} from cache {name!r} on {server!r}")


def token_mint(server: str, sub: str, *, validity: str, pull: list[str], push: list[str],
               delete: list[str], create_cache: list[str], configure_cache: list[str],
               destroy_cache: list[str], admin_token: bool,
               workspaces: dict[str, dict[str, int]]) -> None:
    with _errors(), Api(_profile(server)) as api:
        caches = admin.permissions(pull=pull, push=push, delete=delete,
                                   create_cache=create_cache, configure_cache=configure_cache,
                                   destroy_cache=destroy_cache)
        if not caches and not workspaces and not admin_token:
            raise _fail("a token needs at least one of --pull, --push, --delete, "
                        "--create-cache, --configure-cache, --destroy-cache, --state-read, "
                        "--state-lock, --state-write, --state-admin, --admin")
        minted = admin.mint_token(api, sub, validity=validity, caches=caches,
                                  admin=admin_token, workspaces=workspaces)
        print(minted.token)
        err.print(f"token id {minted.id} for {sub!r} from {server!r}")


def token_revoke(server: str, *, token_id: str | None, sub: str | None) -> None:
    with _errors(), Api(_profile(server)) as api:
        n = admin.revoke_tokens(api, token_id=token_id, sub=sub)
        out.print(f"Revoked {'token ' + token_id if token_id else f'tokens of {sub!r}'} "
                  f"on {server!r} ({n} recorded)")


def token_list(server: str, sub: str | None) -> list[TokenRecord]:
    with _errors(), Api(_profile(server)) as api:
        return admin.list_tokens(api, sub)


def register(app: typer.Typer) -> None:
    """Add the client commands to a Typer app (``flywheel`` itself, or the one below)."""
    app.command()(login)
    app.command()(use)
    app.command()(push)
    app.command("watch-store")(watch_store)


app = typer.Typer(help="flywheel client commands.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
register(app)

if __name__ == "__main__":
    app()
