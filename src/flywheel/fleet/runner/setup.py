"""``flywheel runner setup``: at the start of a job, from the variables the pool injected,
a user nix.conf with the substituter, the trusted key and a netrc-file (plus the netrc), a
``.bazelrc`` fragment for the remote cache, and optionally ``watch-store`` in the
background. It says what it set. When the cache cannot be used it warns and leaves the job
to run without it: a cache never fails a job."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from flywheel.api.cache_config import CacheConfig
from flywheel.client.use import configure_nix, default_netrc, nix_conf_path
from flywheel.client.xdg import config_home
from flywheel.fleet.runner import bazelrc, watch
from flywheel.fleet.wiring import NIX_CONFIG, InjectedWiring, without_our_substituter

EMPTY_BLOB = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class CacheUnusable(Exception):
    pass


@dataclass
class Setup:
    said: list[str] = field(default_factory=list)          # what was set, for the log
    warnings: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)      # for the job's later steps
    outputs: dict[str, str] = field(default_factory=lambda: {"reachable": "false",
                                                             "can-push": "false"})


@dataclass(frozen=True)
class Places:
    nix_conf: Path
    netrc: Path
    bazel_fragment: Path
    user_bazelrc: Path
    state: Path

    @classmethod
    def default(cls, environ: Mapping[str, str]) -> Places:
        home = Path(environ.get("HOME") or Path.home())
        state = Path(environ["RUNNER_TEMP"]) / "flywheel" if environ.get("RUNNER_TEMP") \
            else config_home(environ) / "flywheel" / "runner"
        return cls(nix_conf=nix_conf_path(None, environ), netrc=default_netrc(environ),
                   bazel_fragment=state / "remote-cache.bazelrc",
                   user_bazelrc=home / ".bazelrc", state=state)


def _get(http: httpx.Client, wiring: InjectedWiring, path: str) -> httpx.Response:
    try:
        return http.get(f"{wiring.url}{path}")
    except httpx.TransportError as e:
        raise CacheUnusable(f"cannot reach the cache server at {wiring.url} "
                            f"({e or type(e).__name__})") from None


def _cache_config(http: httpx.Client, wiring: InjectedWiring, cache: str) -> CacheConfig:
    response = _get(http, wiring, f"/_api/v1/cache-config/{cache}")
    if response.status_code != 200:
        raise CacheUnusable(f"{wiring.url} refused cache {cache!r} ({response.status_code}"
                            f"{': ' + response.text[:200] if response.text else ''})")
    try:
        return CacheConfig.model_validate_json(response.content)
    except ValueError:
        raise CacheUnusable(f"{wiring.url} does not answer like a flywheel server") from None


def _readable(http: httpx.Client, wiring: InjectedWiring, cache: str) -> None:
    # The empty blob is in every cache: a 200 proves the server is up and the token may read.
    response = _get(http, wiring, f"/{cache}/cas/{EMPTY_BLOB}")
    if response.status_code != 200:
        raise CacheUnusable(f"{wiring.url} refused Bazel cache {cache!r} "
                            f"({response.status_code})")


def may_write(http: httpx.Client, wiring: InjectedWiring, cache: str) -> bool:
    """Ask the server: storing the empty blob changes nothing, and is refused (401/403)
    unless the token may write to the cache."""
    if not wiring.token:
        return False
    try:
        response = http.put(f"{wiring.url}/{cache}/cas/{EMPTY_BLOB}", content=b"")
    except httpx.TransportError:
        return False
    return response.is_success


def _nix(http: httpx.Client, wiring: InjectedWiring, cache: str, places: Places,
         result: Setup) -> None:
    config = _cache_config(http, wiring, cache)
    key = wiring.pinned_key or config.public_key
    if wiring.pinned_key and wiring.pinned_key != config.public_key:
        result.warnings.append(f"cache {cache!r} now signs with {config.public_key}, but this "
                               f"pool was rendered with {wiring.pinned_key}; trusting the "
                               "rendered key (re-render the fleet after a key rotation)")
    # Runners use the address the pool was given, not the server's public URL.
    ours = config.model_copy(update={"substituter_endpoint": wiring.substituter,
                                     "public_key": key})
    used = configure_nix(ours, wiring.token, places.nix_conf, places.netrc)
    result.said += used.changes or [f"{places.nix_conf}: already substitutes from "
                                    f"{wiring.substituter}"]
    result.said.append(f"Nix substitutes from {wiring.substituter}, trusting {key}")
    result.outputs["nix-conf"] = str(places.nix_conf)
    result.outputs["substituter"] = str(wiring.substituter)


def _bazel(http: httpx.Client, wiring: InjectedWiring, cache: str, places: Places,
           result: Setup) -> bool:
    _readable(http, wiring, cache)
    writes = may_write(http, wiring, cache)
    assert wiring.bazel_url is not None
    bazelrc.write_fragment(places.bazel_fragment,
                           bazelrc.fragment(wiring.bazel_url, wiring.token, writes))
    added = bazelrc.ensure_imported(places.user_bazelrc, places.bazel_fragment)
    result.said.append(f"{places.bazel_fragment}: --remote_cache={wiring.bazel_url}"
                       + (" with the token" if wiring.token else "")
                       + ("" if writes else ", --remote_upload_local_results=false (the "
                          "token may not write)"))
    if added:
        result.said.append(f"{places.user_bazelrc}: + "
                           f"{bazelrc.import_line(places.bazel_fragment)}")
    result.outputs["bazelrc"] = str(places.bazel_fragment)
    return writes


def _unusable(environ: Mapping[str, str], wiring: InjectedWiring, why: CacheUnusable,
              result: Setup) -> Setup:
    result.warnings.append(f"{why}; the job runs without the cache")
    nix_config = environ.get(NIX_CONFIG, "")
    if wiring.substituter and wiring.substituter in nix_config:
        # Nix would otherwise try the dead substituter in every build of the job.
        result.env[NIX_CONFIG] = without_our_substituter(nix_config, wiring.url)
        result.said.append(f"{NIX_CONFIG}: dropped {wiring.substituter} for the rest of the job")
    return result


def setup(environ: Mapping[str, str], places: Places, *, watch_store: bool) -> Setup:
    result = Setup()
    wiring = InjectedWiring.from_env(environ)
    if wiring is None:
        result.warnings.append("FLYWHEEL_URL is not set: no cache is wired into this runner; "
                               "the job runs without one")
        return result
    headers = {"authorization": f"Bearer {wiring.token}"} if wiring.token else {}
    with httpx.Client(headers=headers, timeout=TIMEOUT) as http:
        try:
            nix_pushes = bazel_pushes = False
            if wiring.nix_cache:
                _nix(http, wiring, wiring.nix_cache, places, result)
                nix_pushes = may_write(http, wiring, wiring.nix_cache)
            if wiring.bazel_cache:
                bazel_pushes = _bazel(http, wiring, wiring.bazel_cache, places, result)
        except CacheUnusable as e:
            return _unusable(environ, wiring, e, result)
    pushes = nix_pushes if wiring.nix_cache else bazel_pushes
    result.outputs.update({"reachable": "true", "can-push": "true" if pushes else "false"})
    if watch_store:
        if wiring.nix_cache and wiring.token and nix_pushes:
            try:
                pid = watch.start(places.state, wiring.url, wiring.token, wiring.nix_cache)
            except watch.WatchError as e:
                result.warnings.append(str(e))
            else:
                result.said.append(f"watch-store (pid {pid}) pushes new store paths to "
                                   f"{wiring.nix_cache!r}; `flywheel runner finish` flushes it")
        else:
            result.warnings.append("watch-store not started: the token may not push to "
                                   f"{wiring.nix_cache or 'a Nix cache'}")
    return result


def finish(places: Places, timeout: float) -> str | None:
    return watch.stop(places.state, timeout)
