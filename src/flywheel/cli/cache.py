"""``flywheel cache ...`` against a local data directory, or a server with ``--server``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from flywheel.cli import remote
from flywheel.cli.common import ConfigOpt, DataDirOpt, fail, local_services, out
from flywheel.nix.storepath import parse_base_name, parse_path

if TYPE_CHECKING:
    from flywheel.app.services import Services
    from flywheel.cache.tenancy import Cache

app = typer.Typer(help="Create, inspect, configure and destroy caches.", no_args_is_help=True)


def _describe(services: Services, cache: Cache) -> dict[str, object]:
    paths, size = services.caches.stats(cache)
    return {
        "name": cache.name,
        "substituter_endpoint": f"{services.settings.base_url}/{cache.name}",
        "public_key": cache.public_key,
        "is_public": cache.is_public,
        "priority": cache.priority,
        "store_dir": cache.store_dir,
        "upstream_cache_key_names": list(cache.upstream_cache_key_names),
        "paths": paths,
        "nar_bytes": size,
    }


@app.command()
def create(
    name: str,
    private: Annotated[bool, typer.Option("--private", help="Require a token to pull")] = False,
    priority: Annotated[int | None, typer.Option(
        help="Substituter priority, lower wins [default: 41, just below cache.nixos.org]",
        show_default=False)] = None,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, server: remote.ServerOpt = None,
) -> None:
    """Create a cache with its own signing key."""
    if server is not None:
        return remote.cache_create(server, name, private=private, priority=priority)
    with local_services(config, data_dir) as s:
        cache = s.caches.create(name, is_public=not private, priority=priority)
        out.print(f"Created {'private' if private else 'public'} cache {cache.name!r}")
        out.print(f"Public Key: {cache.public_key}")


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json")] = False,
          config: ConfigOpt = None, data_dir: DataDirOpt = None,
          server: remote.ServerOpt = None) -> None:
    """List caches."""
    if server is not None:
        return remote.cache_list(server, as_json=as_json)
    with local_services(config, data_dir) as s:
        if as_json:
            out.print_json(json.dumps([_describe(s, c) for c in s.caches.list()]))
            return
        table = Table("name", "visibility", "priority", "paths")
        table.add_column("public key", no_wrap=True)
        for cache in s.caches.list():
            paths, _ = s.caches.stats(cache)
            table.add_row(cache.name, "public" if cache.is_public else "private",
                          str(cache.priority), str(paths), cache.public_key)
        out.print(table)


@app.command()
def info(name: str, as_json: Annotated[bool, typer.Option("--json")] = False,
         config: ConfigOpt = None, data_dir: DataDirOpt = None,
         server: remote.ServerOpt = None) -> None:
    """Show how to use a cache: substituter URL and public key."""
    if server is not None:
        return remote.cache_info(server, name, as_json=as_json)
    with local_services(config, data_dir) as s:
        cache = s.caches.get(name)
        d = _describe(s, cache)
        if as_json:
            out.print_json(json.dumps(d))
            return
        out.print(f"               Cache: {d['name']}")
        out.print(f"   Substituter (URL): {d['substituter_endpoint']}")
        out.print(f"          Public Key: {d['public_key']}")
        out.print(f"              Public: {d['is_public']}")
        out.print(f"            Priority: {d['priority']}")
        out.print(f"  Upstream Key Names: {', '.join(cache.upstream_cache_key_names)}")
        out.print(f"               Paths: {d['paths']} ({d['nar_bytes']} NAR bytes)")


@app.command()
def configure(
    name: str,
    public: Annotated[bool | None, typer.Option("--public/--private",
                                                show_default=False)] = None,
    priority: Annotated[int | None, typer.Option(show_default=False)] = None,
    upstream_key: Annotated[list[str] | None, typer.Option(
        "--upstream-key", help="Key name of an upstream cache (repeatable; replaces the list)",
        show_default=False)] = None,
    regenerate_keypair: Annotated[bool, typer.Option(
        "--regenerate-keypair", help="New signing key; every path is re-signed")] = False,
    config: ConfigOpt = None, data_dir: DataDirOpt = None, server: remote.ServerOpt = None,
) -> None:
    """Change a cache's visibility, priority, upstream keys or signing key."""
    if server is not None:
        return remote.cache_configure(server, name, public=public, priority=priority,
                                      upstream_key=upstream_key,
                                      regenerate_keypair=regenerate_keypair)
    with local_services(config, data_dir) as s:
        cache = s.caches.configure(
            name, is_public=public, priority=priority,
            upstream_cache_key_names=tuple(upstream_key) if upstream_key is not None else None,
            regenerate_keypair=regenerate_keypair)
        if regenerate_keypair:
            s.paths.resign_stale(cache)
        out.print(f"Configured cache {cache.name!r}: "
                  f"{'public' if cache.is_public else 'private'}, priority {cache.priority}")
        out.print(f"Public Key: {cache.public_key}")


@app.command()
def destroy(name: str,
            yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False,
            config: ConfigOpt = None, data_dir: DataDirOpt = None,
            server: remote.ServerOpt = None) -> None:
    """Destroy a cache and everything it lists (content shared with others stays)."""
    if server is not None:
        return remote.cache_destroy(server, name, yes=yes)
    with local_services(config, data_dir) as s:
        s.caches.get(name)
        if not yes and not typer.confirm(f"Destroy cache {name!r} and all its paths?"):
            raise fail("not confirmed")
        s.caches.destroy(name)
        out.print(f"Destroyed cache {name!r}")


@app.command("delete-path")
def delete_path(name: str, path: Annotated[str, typer.Argument(
        help="Store path, its base name, or its 32-character hash")],
                config: ConfigOpt = None, data_dir: DataDirOpt = None,
                server: remote.ServerOpt = None) -> None:
    """Remove one store path from one cache."""
    if server is not None:
        return remote.cache_delete_path(server, name, path)
    with local_services(config, data_dir) as s:
        cache = s.caches.get(name)
        if path.startswith("/"):
            hash_part = parse_path(path, cache.store_dir).hash_part
        elif len(path) == 32:
            hash_part = parse_base_name(path + "-x").hash_part
        else:
            hash_part = parse_base_name(path).hash_part
        if not s.paths.delete(cache, hash_part):
            raise fail(f"{path} is not in cache {name!r}")
        out.print(f"Deleted {path} from cache {name!r}")
