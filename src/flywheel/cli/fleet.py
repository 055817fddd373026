"""``flywheel fleet ...``: validate, render, plan, apply, enroll, offboard, status and
reconcile a fleet spec. Thin: parse flags, call :mod:`flywheel.fleet`, print."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flywheel.fleet.crds import CrdError, crds_directory, from_directory
from flywheel.fleet.desired import RenderError, desired, keys_for
from flywheel.fleet.loader import LoadedSpec, SpecError, load
from flywheel.fleet.manifests import ManifestError, write
from flywheel.fleet.validate import Validator

app = typer.Typer(help="Runner fleet: one spec rendered to ARC runner scale sets.",
                  no_args_is_help=True)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

SPEC_ERROR = 2      # the spec (or what it renders to) is wrong: fix the file

SpecArg = Annotated[Path, typer.Argument(help="The fleet spec", show_default=False)]
CrdsOpt = Annotated[Path | None, typer.Option(
    "--crds", help="Directory with the ARC CRDs (actions.github.com_*.yaml) [default: $ARC_CRDS]",
    show_default=False)]
ServerOpt = Annotated[str | None, typer.Option(
    "--server", help="Server profile (flywheel login) to read cache keys through "
    "[default: the spec's cacheServer.url, anonymously]", show_default=False)]
AtOpt = Annotated[str | None, typer.Option(
    "--at", help="Evaluate schedules at this ISO time instead of now", show_default=False)]


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@contextlib.contextmanager
def errors() -> Iterator[None]:
    try:
        yield
    except (SpecError, RenderError) as e:
        for line in e.lines:
            err.print(line)
        raise typer.Exit(SPEC_ERROR) from None
    except (CrdError, ManifestError) as e:
        raise fail(str(e), SPEC_ERROR) from None


def parse_at(at: str | None) -> datetime | None:
    if at is None:
        return None
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        raise fail(f"--at {at!r} is not an ISO date and time (2025-03-03T08:00+01:00)", 2
                   ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def server_profile(name: str | None) -> tuple[str | None, str | None]:
    """URL and token of a `flywheel login` profile, or (None, None) without one."""
    if name is None:
        return None, None
    from flywheel.client import profiles
    from flywheel.client.errors import ClientError

    try:
        profile = profiles.load(profiles.config_path()).select(name)
    except ClientError as e:
        raise fail(str(e)) from None
    return profile.url, profile.token


def offline_validator(spec: LoadedSpec, crds: Path | None) -> Validator:
    return Validator(from_directory(crds_directory(crds)), spec.fleet.kubernetes_version)


@app.command()
def validate(file: SpecArg, crds: CrdsOpt = None) -> None:
    """Check the spec (exit 0, or 2 with FILE:LINE: FIELD: MESSAGE per problem); with CRDs,
    also every object it renders. Offline: unpinned cache keys are not looked up."""
    with errors():
        spec = load(file)
        objects = 0
        if crds is not None or crds_directory_given():
            fleet = spec.fleet
            placeholder = {name: "unchecked:offline" for name in _cache_names(spec)}
            keys = {**placeholder, **(fleet.cache_server.public_keys if fleet.cache_server
                                      else {})}
            objects = len(desired(spec, keys, offline_validator(spec, crds)))
    checked = f"; its {objects} objects are valid" if objects else ""
    out.print(f"{file}: valid ({len(spec.fleet.pools)} pools, "
              f"{len(spec.fleet.enrollments)} enrollments){checked}")


def crds_directory_given() -> bool:
    with contextlib.suppress(CrdError):
        crds_directory(None)
        return True
    return False


def _cache_names(spec: LoadedSpec) -> list[str]:
    from flywheel.fleet.keys import caches_named

    return caches_named(spec.fleet)


@app.command()
def render(
    file: SpecArg,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write (replaced whole)")],
    crds: CrdsOpt = None, server: ServerOpt = None, at: AtOpt = None,
) -> None:
    """Write the Kubernetes objects of every scale set, one file each, after validating all
    of them (nothing is written if any is invalid)."""
    when = parse_at(at)
    url, token = server_profile(server)
    with errors():
        spec = load(file)
        validator = offline_validator(spec, crds)
        objects = desired(spec, keys_for(spec, server_url=url, token=token), validator, when)
        written = write(objects, out_dir)
    for path in written:
        out.print(f"wrote {path}")
    out.print(f"{len(written)} objects for {len(spec.fleet.pools)} pools and "
              f"{len(spec.fleet.enrollments)} enrollments in {out_dir}")
